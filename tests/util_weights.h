/* Builders of small torch files for the weights tests (tests/util_weights.c):
 * hand-made pickles (via the core's pickle emitters) in a libzip archive. */
#ifndef SB_UTIL_WEIGHTS_H
#define SB_UTIL_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "../core/weights_pickle_emit.h"

typedef struct {
    const char *name;  /* state-dict key */
    const char *stype; /* storage class name, e.g. "FloatStorage" */
    const char *key;   /* storage key ("0") */
    int64_t numel;     /* declared storage elements */
    int64_t offset;
    int ndim;
    int64_t shape[4], stride[4];
} tspec;

/* data.pkl of OrderedDict(name -> _rebuild_tensor_v2(...)), protocol 2;
 * wrap: NULL for a bare dict, else {wrap: dict}. 5-tuple persistent ids
 * (zip format) unless legacy (6-tuple). */
void build_state_dict_pickle(pbuf *b, const char *wrap, const tspec *t, int n, int legacy);
/* A zip with entries names[i] -> data[i] (stored). */
void write_zip(const char *path, int n, const char *const *names, const void *const *data, const size_t *lens);
void write_file(const char *path, const void *data, size_t len);
/* Whole file into memory (malloc'ed). */
uint8_t *read_file(const char *path, size_t *len);

#endif
