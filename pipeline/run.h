/*
 * The distributed evaluation (issue 9): internal interfaces of `sambench run`,
 * `sambench report` and `sambench compare`.
 *
 *   run_source.c   work units (volumes / datasets) from a MedBank-layout root
 *   run_model.c    the model interface; model_box.c the weight-free `box` baseline
 *   run_eval.c     evaluation of one unit -> records (both protocols)
 *   journal.c      per-rank append-only journals with length + CRC32 records
 *   sched.c        cost ordering of units (shared with bench/bench_schedule_sim.c)
 *   results.c      RESULTS/results.h5 (write and read back)
 *   stats.c        mean/std/median/IQR, seeded bootstrap, Wilcoxon signed-rank
 *   report.c       the reducer and the tables (md, csv, tex, json, per_case.csv)
 *   compare.c      the release gate
 *   run_mpi.c      the MPI driver (counter window, signals, merge)
 */
#ifndef SB_RUN_H
#define SB_RUN_H

#include "../core/sambench.h"
#include "metrics.h" /* SB_EMPTY_* policies, sb_metrics_pair */

#include <stddef.h>
#include <stdint.h>

#define SB_NAME_MAX 128
#define SB_CASE_MAX 256
#define SB_REASON_MAX 256
#define SB_CASES_MAX 1024

enum { SB_PROTO_VOLUME = 0, SB_PROTO_REFERENCE = 1 };
enum { SB_REC_OK = 0, SB_REC_FAILED = 1 };

/* One scored image (slice) or, with slice == -1, one case summary. All
 * metrics are derived at report time from the raw counts and surfaces, so
 * any empty-mask policy can be applied without re-running. */
typedef struct sb_rec {
    char dataset[SB_NAME_MAX];
    char task[SB_NAME_MAX];
    char modality[SB_NAME_MAX];
    char case_id[SB_CASE_MAX]; /* volume: case id; reference: the split entry as written */
    int32_t slice;             /* slice index within the case, -1 for a case record */
    int32_t status;            /* SB_REC_OK / SB_REC_FAILED */
    int32_t height, width;     /* metric grid */
    int32_t batch;             /* reference: batch index, -1 = not scored (drop_last); volume: -1 */
    int32_t nslices;           /* case records: slices in the case */
    float box[4];              /* prompt box x0 y0 x1 y1 on the model grid */
    int64_t gt, pred, tp, fp, fn;
    double surf_gt, surf_pred;       /* surface length/area of GT and prediction (NaN if not computed) */
    double surf_gt_in, surf_pred_in; /* parts within the tolerance of the other surface */
    double seconds;
    char reason[SB_REASON_MAX]; /* failed: why */
} sb_rec;

/* One scored batch of the reference protocol. */
typedef struct sb_batch_rec {
    char dataset[SB_NAME_MAX];
    int32_t batch;
    char cases[SB_CASES_MAX]; /* split entries joined by ';' */
    int64_t inter, uni;
    double iou, dice;
} sb_batch_rec;

/* Growable arrays of records. */
typedef struct {
    sb_rec *v;
    size_t n, cap;
} sb_recs;
typedef struct {
    sb_batch_rec *v;
    size_t n, cap;
} sb_batches;
sb_rec *sb_recs_push(sb_recs *r);
void sb_recs_free(sb_recs *r);
sb_batch_rec *sb_batches_push(sb_batches *b);
void sb_batches_free(sb_batches *b);
/* Sorts by (dataset, case, slice), case records (slice -1) first. */
void sb_recs_sort(sb_recs *r);
/* Sorts by (dataset, batch). */
void sb_batches_sort(sb_batches *b);

/* Derived metrics under an empty-mask policy. */
double sb_rec_dice(const sb_rec *r, int empty_policy);
double sb_rec_iou(const sb_rec *r, int empty_policy);
double sb_rec_nsd(const sb_rec *r, int empty_policy);
/* nan, one or zero -> *(int *)out (an SB_OPT_FN parser, pipeline/cli.h) */
int sb_run_parse_empty_policy(const char *s, void *out);
const char *sb_empty_policy_name(int p);

/* ---- work units ---------------------------------------------------------- */
typedef struct sb_item {
    char entry[SB_CASE_MAX]; /* split-file entry as written */
    char case_id[SB_CASE_MAX];
    int32_t slice;
    char *image_path, *mask_path;
} sb_item;

typedef struct sb_unit {
    char dataset[SB_NAME_MAX], task[SB_NAME_MAX], modality[SB_NAME_MAX];
    char case_id[SB_CASE_MAX]; /* volume protocol: the case; reference: "" */
    sb_item *items;            /* slices in order (reference: the sorted split list) */
    int nitems;
    double cost;
    int index; /* position in the canonical (dataset, case) order */
    /* --manifest units: the case comes from the data module (pipeline/data.h) */
    void *data; /* sb_data *, NULL for MedBank-folder units */
    int data_ds, data_case;
    double tolerance_mm; /* 3-D NSD tolerance of the dataset (manifest nsd_tolerance) */
} sb_unit;

typedef struct sb_units {
    sb_unit *v;
    int n;
} sb_units;

/* Units of a MedBank-layout root: each `<Object>_<Modality>_<ID>` folder with
 * `<split>.txt`. protocol picks volumes or whole datasets. */
int sb_units_medbank(sb_units *out, const char *root, const char *split, int protocol, sb_error *err);
void sb_units_free(sb_units *u);
/* Units of one or more manifests through the data module: volume protocol,
 * one per case; reference, one per MedBank-layout dataset folder (its split
 * list as written, sorted; an msd-layout dataset is an error). *datas
 * receives the opened collections (free with sb_units_free_data). */
int sb_units_manifests(sb_units *out, const char *const *manifests, int n, const char *data_root, int protocol,
                       void ***datas, sb_error *err);
void sb_units_free_data(void **datas, int n);
/* Splits a MedBank folder name into task and modality; 0 if it does not match. */
int sb_medbank_name(const char *folder, char *task, size_t tcap, char *modality, size_t mcap);
/* Case id and slice index of a split entry (basename without extension; a
 * trailing _<digits> is the slice, a trailing "_slice" is dropped). */
void sb_entry_case(const char *entry, char *case_id, size_t cap, int32_t *slice);

/* ---- scheduling (sched.c) ------------------------------------------------ */
/* order[i] = unit index to hand out i-th: descending cost, ties by index. */
void sb_sched_order(const double *cost, int n, int *order);
/* Simulated makespan of greedy dynamic dispatch of the given order on
 * `ranks` identical ranks, with a per-fetch overhead. */
double sb_sched_makespan(const double *cost, const int *order, int n, int ranks, double fetch_overhead);

/* ---- models (run_model.c) ------------------------------------------------ */
/* A SAMed-2 model's memory bank: the bank read from PATH (or a caller's
 * already loaded SHARED one, e.g. the node's MPI window), its read-only base
 * and the mutable view the model uses with SCOPE (SB_BANK_GLOBAL/VOLUME). */
typedef struct {
    sb_bank *owned; /* NULL when SHARED was given */
    sb_membank_base *base;
    sb_membank *mb;
} sb_model_bank;
int sb_model_bank_attach(sb_model_bank *b, sb_model *m, sb_ctx *ctx, const char *path, const sb_bank *shared,
                         int scope, sb_error *err);
void sb_model_bank_free(sb_model_bank *b);

typedef struct sb_run_model sb_run_model;
struct sb_run_model {
    char name[32];
    int image_size;       /* model grid S */
    int logits_size;      /* logits come out L x L (box: S) */
    int needs_image;      /* 0: the image is not decoded (box) */
    double cost_per_slice; /* relative, for scheduling */
    void *state;
    /* A new memory bank scope starts (per volume / per dataset). */
    int (*begin_scope)(sb_run_model *m, sb_error *err);
    /* imgs: B x S x S x 3 uint8 (NULL if !needs_image); boxes B x 4; logits B x L x L. */
    int (*predict)(sb_run_model *m, const uint8_t *imgs, const float *boxes, int B, float *logits,
                   sb_error *err);
    void (*destroy)(sb_run_model *m);
};
typedef struct {
    const char *model, *model_config, *checkpoint, *memory_bank;
    int threads;
    int protocol; /* SB_PROTO_*: reference wants the flow's own S x S logits and one bank per dataset */
    const sb_bank *bank; /* samed2: the base bank already loaded (e.g. once per node in shared
                          * memory), borrowed; NULL: loaded from memory_bank */
} sb_model_opts;
int sb_run_model_create(sb_run_model **out, const sb_model_opts *o, sb_error *err);
void sb_run_model_free(sb_run_model *m);
int sb_model_box_create(sb_run_model **out, int image_size, sb_error *err);

/* ---- evaluation of one unit (run_eval.c) ---------------------------------- */
typedef struct sb_eval_opts {
    int protocol, batch, box_jitter;
    uint64_t seed;
    double threshold, tolerance_2d;
    volatile int *stop; /* set asynchronously: abandon the unit between batches */
} sb_eval_opts;
/* Appends the unit's slice records, one case record (volume) and batches
 * (reference). A failing input gives a failed case record, not an error;
 * the return value is an error only for "stopped" (SB_EUNSUPPORTED) or out of memory. */
/* Seconds this process has spent in model inference (sb_run_model predict). */
double sb_eval_inference_seconds(void);
int sb_eval_unit(const sb_unit *u, sb_run_model *m, const sb_eval_opts *o, sb_recs *recs,
                 sb_batches *batches, sb_error *err);
/* Bilinear (align_corners=False, PyTorch) resize of one float plane. */
void sb_resize_bilinear_f32(const float *x, int h, int w, float *y, int oh, int ow);

/* ---- journals (journal.c) ------------------------------------------------ */
/* File: "SBJOURNAL1\n" then records: u32 magic 0x5342524a ("SBRJ"), u32 payload
 * length, payload, u32 CRC32 (zlib) of the payload. Payload: one finished unit. */
typedef struct sb_journal sb_journal;
/* Opens for appending; with resume=1 keeps valid records and truncates a torn
 * tail, otherwise truncates the file. */
int sb_journal_open(sb_journal **out, const char *path, int resume, uint64_t fingerprint, sb_error *err);
/* Appends one unit (its records and batches), then fflush + fsync. */
int sb_journal_append(sb_journal *j, const char *dataset, const char *case_id, const sb_rec *recs,
                      size_t nrecs, const sb_batch_rec *b, size_t nb, sb_error *err);
void sb_journal_close(sb_journal *j);
/* Reads every valid record of a journal; stops at the first torn/corrupt one
 * (counted in *torn). Unit keys go to keys ("dataset\tcase" strings) if not NULL. */
int sb_journal_read(const char *path, uint64_t fingerprint, sb_recs *recs, sb_batches *b,
                    char ***keys, size_t *nkeys, size_t *torn, sb_error *err);
uint32_t sb_crc32(const void *data, size_t len);

/* ---- results.h5 (results.c) ----------------------------------------------- */
typedef struct sb_prov {
    char model[64], checkpoint[1024], checkpoint_sha256[65], bank[1024], bank_sha256[65];
    char source[2048], protocol[16], options[2048], version[32], hosts[4096];
    char published[4096]; /* "dataset=dice;...": published Dice of this model from the manifests */
    int ranks, threads;
    double wall_seconds, start_time;
    double seed;
    int empty_policy;
} sb_prov;
int sb_results_write(const char *path, const sb_recs *recs, const sb_batches *b, const sb_prov *p,
                     sb_error *err);
int sb_results_read(const char *path, sb_recs *recs, sb_batches *b, sb_prov *p, sb_error *err);

/* ---- statistics (stats.c) ------------------------------------------------- */
typedef struct sb_summary {
    int n, nan_count;
    double mean, std, median, q1, q3, iqr, ci_lo, ci_hi;
} sb_summary;
/* NaNs are counted and excluded. std is the sample std (n-1). Quantiles are
 * linear (numpy default). CI: percentile bootstrap of the mean, `resamples`
 * resamples from a splitmix64 stream seeded by `seed`. */
void sb_summarize(const double *x, int n, int resamples, uint64_t seed, sb_summary *s);
double sb_quantile_sorted(const double *x, int n, double q);
/* Two-sided Wilcoxon signed-rank p-value of the differences d (zeros dropped,
 * ties averaged): exact for n <= 50 without ties, else normal approximation
 * with tie correction (no continuity correction), as scipy's default. */
double sb_wilcoxon_p(const double *d, int n);
uint64_t sb_hash_str(const char *s);
uint64_t sb_splitmix64(uint64_t *state);

/* ---- report (report.c) ---------------------------------------------------- */
typedef struct sb_report_opts {
    int empty_policy;
    int md, csv, tex, json;
    uint64_t seed;
    int resamples;
} sb_report_opts;
/* Renders summary.* and per_case.csv into dir from records. */
int sb_report_write(const char *dir, const sb_recs *recs, const sb_batches *b, const sb_prov *p,
                    const sb_report_opts *o, sb_error *err);
/* One table, one column per results folder (mean Dice and NSD per task). */
int sb_report_multi(const char **dirs, int n, const char *outdir, const sb_report_opts *o,
                    sb_error *err);
/* Published Dice for a task/modality and model (NAN if not known). */
double sb_published_dice(const char *task, const char *modality, const char *model, int external);

/* ---- compare (compare.c) -------------------------------------------------- */
typedef struct sb_compare_opts {
    const char *metric;
    double max_drop, alpha;
    int empty_policy;
    uint64_t seed;
    const char *out;
} sb_compare_opts;
/* Returns 0 (no regression), 1 (regression) or -1 with err set. */
int sb_compare(const char *base, const char *cand, const sb_compare_opts *o, sb_error *err);

/* ---- small helpers (run_source.c) ------------------------------------------ */
int sb_mkdir_p(const char *path, sb_error *err);
/* CSV field with quotes when needed, into buf. */
const char *sb_csv_field(const char *s, char *buf, size_t cap);

#endif
