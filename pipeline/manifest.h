/*
 * Dataset manifests (configs/datasets/NAME.yaml), read with libyaml.
 *
 *   collection: medbank100k          # name of the collection
 *   defaults:                         # optional: applied to every dataset
 *     layout: medbank
 *   datasets:
 *     - name: Spleen_CT               # unique; shard file name SHARD_DIR/<name>.h5
 *       task: Spleen
 *       modality: CT                  # one of sb_modality_canonical()'s names
 *       layout: medbank               # medbank | msd
 *       path: "Spleen_CT_*"           # folder(s) under --data-root (glob allowed)
 *       split: test.txt               # medbank: split file in each folder;
 *                                     # msd: optional file of case ids (else dataset.json "training")
 *       sources: [BTCV, AMOS]         # where the images come from (informative)
 *       label_ids: [1]                # msd: label values forming the binary target
 *       channel: 0                    # msd: channel of a multi-channel image
 *       intensity: ct_window          # ct_window | percentile | none
 *       window_level: 40              # ct_window
 *       window_width: 400
 *       percentiles: [0.5, 99.5]      # percentile (of the non-zero voxels)
 *       slice_axis: 2                 # msd: 0, 1 or 2 (NIfTI i, j, k)
 *       nonempty_only: true           # keep only slices with a non-empty label
 *       nsd_tolerance: 2.0            # pixels for 2-D tasks, mm for 3-D
 *       published_dice: {samed2: .8566, medsam2: .8260, sam2: .4441, medsam: .8755, sam: .8402, unet: .5239}
 *
 * Unknown keys are errors (a typo must not silently change a benchmark).
 */
#ifndef SB_MANIFEST_H
#define SB_MANIFEST_H

#include "../core/sambench.h"

#include <stdio.h>

enum { SB_LAYOUT_MEDBANK = 0, SB_LAYOUT_MSD = 1 };
enum { SB_INTENSITY_NONE = 0, SB_INTENSITY_CT_WINDOW = 1, SB_INTENSITY_PERCENTILE = 2 };

#define SB_MAX_LABELS 16
#define SB_PUBLISHED_MODELS 6
/* Column order of published_dice: samed2, medsam2, sam2, medsam, sam, unet. */
extern const char *const sb_published_model_names[SB_PUBLISHED_MODELS];

typedef struct {
    char name[128];
    char task[64];
    char modality[32];
    int layout; /* SB_LAYOUT_* */
    char path[1024];
    char split[256];
    char sources[256]; /* comma-separated */
    int label_ids[SB_MAX_LABELS];
    int nlabels;
    int channel;
    int intensity; /* SB_INTENSITY_* */
    double window_level, window_width;
    double pct_lo, pct_hi;
    int slice_axis;
    int nonempty_only;
    double nsd_tolerance;
    double published_dice[SB_PUBLISHED_MODELS]; /* NaN when not given */
} sb_dataset_spec;

typedef struct {
    char collection[64];
    char path[1024];
    int n;
    sb_dataset_spec *d;
} sb_manifest;

/* Canonical modality name for a name or alias (case-insensitive: "MRI" ->
 * "MR", "Echo" -> "Echocardiography", "Xray" -> "X-Ray", "Ultrasound" ->
 * "US"), or NULL if unknown. */
const char *sb_modality_canonical(const char *name);

/* Fills a spec with the defaults (layout medbank, split test.txt, label 1,
 * intensity none, percentiles 0.5/99.5, axis 2, nsd_tolerance 2, no
 * published values). */
void sb_dataset_spec_defaults(sb_dataset_spec *s);

int sb_manifest_load(sb_manifest **out, const char *path, sb_error *err);
void sb_manifest_free(sb_manifest *m);
const sb_dataset_spec *sb_manifest_find(const sb_manifest *m, const char *name);
/* Writes a manifest in the format above (what `synth` writes). */
int sb_manifest_write(const sb_manifest *m, const char *path, sb_error *err);

#endif
