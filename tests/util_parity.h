/* Parity helpers shared by the model tests: capture the core's dumps and
 * compare them with the PyTorch golden files (tests/util_parity.c). */
#ifndef SB_UTIL_PARITY_H
#define SB_UTIL_PARITY_H

#include "util_test.h"

typedef struct {
    char name[96];
    float *data;
    int ndim;
    int64_t shape[SB_MAX_DIMS];
    size_t n;
} dumped;

typedef struct {
    dumped *items;
    int n, cap;
} dump_store;

/* An sb_dump_fn: copies every dumped tensor into the store (arg). */
void store_dump(void *arg, const char *name, const float *data, int ndim, const int64_t *shape);
void store_free(dump_store *s);
/* The last dump under this name, or NULL. */
const dumped *store_find(const dump_store *s, const char *name);
/* Compares a golden tensor (if the file has it) with the dump of the same
 * name: max |c - r| <= 1e-4 max|r| + 1e-6, printing the errors. Returns 1
 * if compared; counts failures (missing, shape, tolerance). */
int compare_tensor(sb_h5 *f, const dump_store *s, const char *name, int *failures);
/* Exact comparison (indices, orders): returns 1 if compared. */
int compare_exact(sb_h5 *f, const dump_store *s, const char *name, int *failures);
/* output/binary_mask identical except where |logit - 0.5| < 1e-4 max|logit|
 * (logit_name: the golden logits the mask was thresholded from). */
int check_binary(sb_h5 *f, const dump_store *s, const char *logit_name, int *failures);

/* Reads NAME from two HDF5 files (e.g. replay's output and the golden
 * file), asserts the shapes agree and returns the element count; *a and *b
 * are malloc'ed. */
size_t read_h5_pair(sb_h5 *got, sb_h5 *ref, const char *name, float **a, float **b);

#endif
