/* Internals shared by pipeline/data*.c (not for other modules: use data.h). */
#ifndef SB_DATA_INTERNAL_H
#define SB_DATA_INTERNAL_H

#include "data.h"

#include <hdf5.h>

#define SB_MAX_SIDE_DATA 65535

enum { SRC_MEDBANK = 0, SRC_MSD = 1, SRC_SHARD = 2 };

typedef struct {
    char id[256];
    int nslices;     /* -1: unknown until decoded */
    char **img;      /* medbank: nslices image paths; msd: [0] = image file */
    char **msk;      /* medbank: nslices mask paths; msd: [0] = label file */
    int64_t *sidx;   /* medbank: slice numbers */
    char folder[1024]; /* medbank: the dataset folder the case lives in */
    int shard_index; /* shard: case number */
} dcase;

typedef struct {
    sb_dataset_spec spec;
    int kind; /* SRC_* */
    char where[1024]; /* folder (msd), shard file (shard) */
    dcase *cases;
    int ncases, cap;
    hid_t shard; /* open shard file, or -1 */
} dset;

struct sb_data {
    int flags;
    dset *d;
    int n, cap;
    sb_data_problem *p;
    int np, pcap;
    int skipped_cases, skipped_datasets;
    int64_t slices_loaded;
};

/* Records a problem (and logs it unless quiet). counts: 1 case skipped, or
 * a whole dataset (is_dataset). */
void sb_data_note(sb_data *d, const char *dataset, const char *case_id, const char *file, const char *reason,
                  int is_dataset);
dcase *sb_data_add_case(dset *s, const char *id);
void sb_data_case_free(dcase *c);

int sb_data_list_msd(sb_data *d, dset *s, const char *folder);
int sb_data_load_msd(const dset *s, const dcase *c, sb_volume *v, sb_error *err);
int sb_data_list_shard(sb_data *d, dset *s, const char *path);
int sb_data_load_shard(const dset *s, const dcase *c, sb_volume *v, sb_error *err);

/* Volume allocation: rgb, mask, slice_index, slice_names for n slices. */
int sb_volume_alloc(sb_volume *v, int n, int h, int w, sb_error *err);
/* Drops slices whose mask is all zero (nonempty_only); returns kept count. */
int sb_volume_keep_nonempty(sb_volume *v);

#endif
