/*
 * The one interface through which the pipeline gets volumes.
 *
 * A collection is opened from a dataset manifest (configs/datasets/NAME.yaml)
 * plus a data root (the raw layouts: MedBank PNG folders, MSD NIfTI), or
 * from HDF5 shards written by `sambench prepare`, or directly from a
 * MedBank root and a split file name. Listing is cheap (no pixel is
 * decoded); sb_data_load() decodes one case into an sb_volume:
 * RGB uint8 slices exactly as PIL convert('RGB') gives them and the mask as
 * PIL convert('L') values (NIfTI targets: 0 / 255), in slice order, with
 * task, modality, spacing and source names. The raw layouts and their
 * shards give byte-identical volumes.
 *
 * Bad input never stops a run: a case with a missing mask, disagreeing
 * sizes, a corrupt or truncated PNG/NIfTI, a split entry naming a missing
 * file, or a dataset that is empty or has an unknown modality is reported
 * (file and reason, one warning line) and skipped; the collection keeps
 * the list (sb_data_problems) and sb_data_summary() counts it.
 *
 * Not thread-safe: one sb_data per thread (each MPI rank opens its own).
 */
#ifndef SB_DATA_H
#define SB_DATA_H

#include "manifest.h"

#include <stdint.h>
#include <stdio.h>

typedef struct sb_data sb_data;

enum {
    SB_DATA_QUIET = 1,  /* do not log problems as warnings (they are still recorded) */
    SB_DATA_NO_STAT = 2 /* MedBank listing without a stat() per image and mask (parallel file
                         * systems): each folder's path rule is learned from its first entry
                         * that exists; a missing image or mask is then found, reported and
                         * skipped when the case is loaded */
};

typedef struct {
    char dataset[128];
    char task[64];
    char modality[32];
    char case_id[256];
    int nslices, height, width;
    uint8_t *rgb;         /* [nslices][height][width][3] */
    uint8_t *mask;        /* [nslices][height][width], PIL 'L' values (0..255; NIfTI targets 0/255) */
    int64_t *slice_index; /* per slice: the slice number in its source (MedBank _slice_NNN, NIfTI index) */
    char **slice_names;   /* per slice: source file name (MedBank) or "<file>#<axis>=<index>" (NIfTI) */
    double spacing[3];    /* mm: column (x), row (y), between slices (z); 0 = unknown (PNG) */
    char source[1024];    /* image source: folder (MedBank), NIfTI file, or shard file */
} sb_volume;

typedef struct {
    char dataset[128];
    char case_id[256]; /* "" when the whole dataset is affected */
    char file[1024];
    char reason[512];
} sb_data_problem;

/* From a manifest. data_root NULL = the manifest's directory. shard_dir
 * non-NULL: read SHARD_DIR/<dataset name>.h5 instead of the raw layouts. */
int sb_data_open(sb_data **out, const char *manifest_path, const char *data_root, const char *shard_dir,
                 int flags, sb_error *err);
/* The same with an already loaded manifest (copied). */
int sb_data_open_manifest(sb_data **out, const sb_manifest *m, const char *data_root, const char *shard_dir,
                          int flags, sb_error *err);
/* Every <ObjectofInterest>_<Modality>_<ID> folder of a MedBank root is one
 * dataset (task and modality from the folder name); `split` is the split
 * file name in each folder (e.g. "test.txt"). */
int sb_data_open_medbank(sb_data **out, const char *root, const char *split, int flags, sb_error *err);
void sb_data_free(sb_data *d);

int sb_data_ndatasets(const sb_data *d);
const sb_dataset_spec *sb_data_dataset(const sb_data *d, int i);
int sb_data_ncases(const sb_data *d, int i);
const char *sb_data_case_id(const sb_data *d, int i, int c);
/* Slices as listed (before nonempty_only filtering of NIfTI); -1 when not
 * known without decoding (NIfTI). */
int sb_data_case_nslices(const sb_data *d, int i, int c);
/* Where the dataset's cases come from: "medbank", "msd" or "shard". */
const char *sb_data_source_kind(const sb_data *d, int i);

/* Decodes case c of dataset i. On failure the problem is recorded (and
 * logged unless SB_DATA_QUIET), err names the file and reason, and *v is
 * empty; the caller skips the case. */
int sb_data_load(sb_data *d, int i, int c, sb_volume *v, sb_error *err);
void sb_volume_free(sb_volume *v);

/* Problems found while listing and loading, in order. */
int sb_data_nproblems(const sb_data *d);
const sb_data_problem *sb_data_problem_at(const sb_data *d, int k);
/* Cases skipped so far (listing + failed loads), datasets skipped whole. */
int sb_data_skipped_cases(const sb_data *d);
int sb_data_skipped_datasets(const sb_data *d);
/* One line: "data: D datasets, C cases listed, S slices loaded; skipped K cases, E datasets" */
void sb_data_summary(const sb_data *d, FILE *out);

/* Writes one volume into an open shard file as case number `index`
 * (used by `sambench prepare`); shard files are made by sb_shard_create. */
typedef struct sb_shard sb_shard;
int sb_shard_create(sb_shard **out, const char *path, const sb_dataset_spec *spec, const char *source_kind,
                    sb_error *err);
int sb_shard_add(sb_shard *s, const sb_volume *v, sb_error *err);
int sb_shard_close(sb_shard *s, sb_error *err);

/* Intensity rule of a manifest entry applied to a float64 volume of n
 * voxels -> uint8 (MedSAM's convention; see data_nifti.c). */
void sb_intensity_to_u8(const sb_dataset_spec *spec, const double *x, int64_t n, uint8_t *out);

/* `sambench synth`: writes a deterministic miniature of MedBank-100k
 * (DIR/MedBank/, 21 PNG-folder tasks with split files) and of the external
 * datasets (DIR/external/: three PNG folders, six MSD tasks as NIfTI), plus
 * DIR/medbank100k.yaml and DIR/external10.yaml with paths relative to DIR.
 * scale: "tiny" (2 cases of 3-4 slices, 64-128 px) or "small" (4 cases of
 * 8 slices, 192-256 px). Same arguments -> byte-identical files. */
int sb_synth_write(const char *dir, const char *scale, sb_error *err);

#endif
