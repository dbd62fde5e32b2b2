/*
 * sambench replay --flow FLOW --model-config CFG --checkpoint CKPT --output-dir DIR STEP.h5 [STEP.h5 ...]
 *
 * Runs one flow on the inputs of golden-format HDF5 files (input/image
 * [B,3,S,S], input/boxes [B,4]; each file is one batch, exactly as the
 * reference's DataLoader formed it) and writes DIR/<same file name> with
 * the flow's outputs under the golden files' names and layouts, so any
 * HDF5 tool can diff them against the PyTorch reference.
 *
 * The flows are a table: each entry names the datasets it writes. The
 * SAM ViT and SAMed-2 work add their entries here.
 */
#include "cli.h"
#include "run.h"

#include <errno.h>
#include <hdf5.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct replay_flow {
    const char *name; /* --flow value */
    int flow;         /* enum sb_flow */
    const char *const *outputs; /* NULL-terminated dataset names written */
} replay_flow;

static const char *const sam2_outputs[] = {
    "encoder/backbone_fpn_0", "encoder/backbone_fpn_1", "encoder/backbone_fpn_2",
    "prompt_encoder/sparse",  "mask_decoder/low_res_masks", "mask_decoder/iou_pred",
    "logits/final",           "output/binary_mask",         NULL};

/* SAMed-2 (issue 5): the SAM2 outputs plus the memory path and bank decisions */
static const char *const samed2_outputs[] = {
    "encoder/backbone_fpn_0", "encoder/backbone_fpn_1", "encoder/backbone_fpn_2",
    "prompt_encoder/sparse",  "mask_decoder/low_res_masks", "mask_decoder/iou_pred",
    "logits/final",           "output/binary_mask",         "memory_select/indices",
    "memory_attention/output", "memory_encoder/vision_features", "bank_update/order_after",
    NULL};

/* Index datasets, written as int32 like the golden files. */
static int is_index_dataset(const char *name)
{
    return !strcmp(name, "memory_select/indices") || !strcmp(name, "bank_update/order_after");
}

/* SAM ViT-B / MedSAM ViT-B (issue 6): MedSAM.forward's outputs */
static const char *const sam_vit_outputs[] = {
    "encoder/image_embeddings", "prompt_encoder/sparse", "mask_decoder/low_res_masks",
    "mask_decoder/iou_pred",    "logits/high_res",       "output/binary_mask",
    NULL};

static const replay_flow replay_flows[] = {
    {"samed2", SB_FLOW_SAMED2, samed2_outputs},
    {"sam2", SB_FLOW_SAM2, sam2_outputs},
    {"medsam2", SB_FLOW_MEDSAM2, sam2_outputs},
    {"sam", SB_FLOW_SAM, sam_vit_outputs},
    {"medsam", SB_FLOW_MEDSAM, sam_vit_outputs},
};

static void replay_usage(FILE *f)
{
    fprintf(f, "usage: sambench replay --flow FLOW --model-config CFG --checkpoint CKPT --output-dir DIR\n"
               "                      [--memory-bank PKL] [--threads T] STEP.h5 [STEP.h5 ...]\n\n"
               "Runs the flow on input/image and input/boxes of each golden-format HDF5 file (one batch per\n"
               "file) and writes DIR/<same file name> with the outputs under the golden names and layouts:\n");
    for (size_t i = 0; i < sizeof replay_flows / sizeof replay_flows[0]; i++) {
        fprintf(f, "  --flow %-8s", replay_flows[i].name);
        for (const char *const *o = replay_flows[i].outputs; *o; o++)
            fprintf(f, " %s", *o);
        fprintf(f, "\n");
    }
    fprintf(f, "--memory-bank (samed2, required): the bank is loaded once and carried from one file to\n"
               "the next in the order given (global scope, as the published validation loop does).\n");
}

typedef struct {
    const char *const *wanted;
    char names[32][96];
    float *data[32];
    int ndim[32];
    int64_t shape[32][SB_MAX_DIMS];
    int n;
} capture;

static void capture_dump(void *arg, const char *name, const float *data, int ndim, const int64_t *shape)
{
    capture *c = arg;
    int want = 0;
    for (const char *const *o = c->wanted; *o; o++)
        if (strcmp(*o, name) == 0)
            want = 1;
    if (!want || c->n >= 32)
        return;
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    float *copy = malloc(n * sizeof(float));
    if (!copy)
        return; /* reported as missing when writing */
    memcpy(copy, data, n * sizeof(float));
    snprintf(c->names[c->n], sizeof c->names[c->n], "%s", name);
    c->data[c->n] = copy;
    c->ndim[c->n] = ndim;
    memcpy(c->shape[c->n], shape, (size_t)ndim * sizeof(int64_t));
    c->n++;
}

static void capture_clear(capture *c)
{
    for (int i = 0; i < c->n; i++)
        free(c->data[i]);
    c->n = 0;
}


/* Copies the attributes (layout, shape, note) of each written dataset from
 * the same-named dataset of the input file when it has one, with their
 * exact HDF5 types (variable-length strings), so h5diff sees identical
 * metadata; otherwise writes `layout` and `shape` in the same types. */
static int copy_attr(hid_t src, const char *name, void *op_data)
{
    hid_t dst = *(hid_t *)op_data;
    hid_t a = H5Aopen(src, name, H5P_DEFAULT);
    if (a < 0)
        return 0;
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    hid_t mt = H5Tget_native_type(t, H5T_DIR_ASCEND);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    size_t sz = H5Tget_size(mt);
    void *buf = calloc((size_t)(n > 0 ? n : 1), sz > 0 ? sz : 1);
    if (buf && H5Aread(a, mt, buf) >= 0) {
        if (H5Aexists(dst, name) > 0)
            H5Adelete(dst, name);
        hid_t b = H5Acreate2(dst, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
        if (b >= 0) {
            H5Awrite(b, mt, buf);
            H5Aclose(b);
        }
        if (H5Tdetect_class(mt, H5T_VLEN) > 0 || H5Tis_variable_str(mt) > 0)
            H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, buf);
    }
    free(buf);
    H5Tclose(mt);
    H5Tclose(t);
    H5Sclose(sp);
    H5Aclose(a);
    return 0;
}

static herr_t copy_attr_iter(hid_t loc, const char *name, const H5A_info_t *info, void *op_data)
{
    (void)info;
    return copy_attr(loc, name, op_data);
}

/* 1 if every component of a path exists (H5Lexists needs the parents). */
static int path_exists(hid_t f, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        int ok = buf[0] == '\0' || H5Lexists(f, buf, H5P_DEFAULT) > 0;
        *p = '/';
        if (!ok)
            return 0;
    }
    return H5Lexists(f, buf, H5P_DEFAULT) > 0;
}

static void write_default_attrs(hid_t d, int ndim, const int64_t *shape)
{
    const char *layout = ndim == 4 ? "NCHW" : NULL;
    if (layout) {
        hid_t st = H5Tcopy(H5T_C_S1);
        H5Tset_size(st, H5T_VARIABLE);
        H5Tset_cset(st, H5T_CSET_UTF8);
        hid_t sp = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(d, "layout", st, sp, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0) {
            H5Awrite(a, st, &layout);
            H5Aclose(a);
        }
        H5Sclose(sp);
        H5Tclose(st);
    }
    hsize_t n = (hsize_t)ndim;
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t a = H5Acreate2(d, "shape", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        H5Awrite(a, H5T_NATIVE_INT64, shape);
        H5Aclose(a);
    }
    H5Sclose(sp);
}

static void copy_dataset_attrs(const char *in_path, const char *out_path, const char *const *names,
                               const capture *cap)
{
    H5E_auto2_t efn;
    void *edata;
    H5Eget_auto2(H5E_DEFAULT, &efn, &edata);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t fi = H5Fopen(in_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t fo = H5Fopen(out_path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (fi >= 0 && fo >= 0) {
        for (const char *const *o = names; *o; o++) {
            hid_t dd = H5Dopen2(fo, *o, H5P_DEFAULT);
            if (dd < 0)
                continue;
            hid_t ds = path_exists(fi, *o) ? H5Dopen2(fi, *o, H5P_DEFAULT) : -1;
            if (ds >= 0) {
                hsize_t idx = 0;
                H5Aiterate2(ds, H5_INDEX_NAME, H5_ITER_INC, &idx, copy_attr_iter, &dd);
                H5Dclose(ds);
            } else {
                for (int i = 0; i < cap->n; i++)
                    if (!strcmp(cap->names[i], *o))
                        write_default_attrs(dd, cap->ndim[i], cap->shape[i]);
            }
            H5Dclose(dd);
        }
    }
    if (fi >= 0)
        H5Fclose(fi);
    if (fo >= 0)
        H5Fclose(fo);
    H5Eset_auto2(H5E_DEFAULT, efn, edata);
}

static int mkdir_p(const char *dir, sb_error *err)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return sb_fail(err, SB_EIO, "%s: cannot create directory: %s", buf, strerror(errno));
            *p = '/';
        }
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return sb_fail(err, SB_EIO, "%s: cannot create directory: %s", buf, strerror(errno));
    return SB_OK;
}

static int replay_one(const replay_flow *rf, sb_model *m, sb_ctx *ctx, const char *in_path, const char *out_dir,
                      sb_error *err)
{
    sb_h5 *in = NULL, *out = NULL;
    float *img = NULL, *boxes = NULL;
    int nd, nb, rc;
    int64_t shp[SB_MAX_DIMS], bsh[SB_MAX_DIMS];
    capture cap;
    memset(&cap, 0, sizeof cap);
    cap.wanted = rf->outputs;
    sb_model_output mo;
    memset(&mo, 0, sizeof mo);
    if ((rc = sb_h5_open(&in, in_path, SB_H5_READ, err)))
        return rc;
    if ((rc = sb_h5_read_f32(in, "input/image", &img, &nd, shp, err)) ||
        (rc = sb_h5_read_f32(in, "input/boxes", &boxes, &nb, bsh, err)))
        goto done;
    int64_t S = sb_model_image_size(m);
    if (nd != 4 || shp[1] != 3 || shp[2] != S || shp[3] != S) {
        rc = sb_fail(err, SB_ESHAPE, "%s: input/image has shape [%lld,%lld,%lld,%lld], the model needs [B,3,%lld,%lld]",
                     in_path, (long long)shp[0], (long long)(nd > 1 ? shp[1] : 0), (long long)(nd > 2 ? shp[2] : 0),
                     (long long)(nd > 3 ? shp[3] : 0), (long long)S, (long long)S);
        goto done;
    }
    if (nb != 2 || bsh[0] != shp[0] || bsh[1] != 4) {
        rc = sb_fail(err, SB_ESHAPE, "%s: input/boxes must be [%lld,4] (x0,y0,x1,y1 per image)", in_path,
                     (long long)shp[0]);
        goto done;
    }
    sb_forward_options fo;
    sb_forward_options_default(&fo);
    fo.dump = capture_dump;
    fo.dump_arg = &cap;
    sb_prompts pr;
    memset(&pr, 0, sizeof pr);
    pr.boxes = boxes;
    if ((rc = sb_model_forward(m, ctx, img, shp[0], &pr, &fo, &mo, err))) {
        sb_error_prefix(err, "%s", in_path);
        goto done;
    }
    char tmp[4096], path[4096];
    snprintf(tmp, sizeof tmp, "%s", in_path);
    snprintf(path, sizeof path, "%s/%s", out_dir, basename(tmp));
    if ((rc = sb_h5_open(&out, path, SB_H5_CREATE, err)))
        goto done;
    /* no attributes: the golden files' are variable-length strings, and h5diff
     * calls attributes of another string type "not comparable" */
    for (const char *const *o = rf->outputs; *o; o++) {
        int k = -1;
        for (int i = 0; i < cap.n; i++)
            if (strcmp(cap.names[i], *o) == 0)
                k = i;
        if (k < 0) {
            rc = sb_fail(err, SB_EKEY, "%s: the %s flow produced no %s", in_path, rf->name, *o);
            goto done;
        }
        if (is_index_dataset(*o)) {
            int64_t n = 1;
            for (int d = 0; d < cap.ndim[k]; d++)
                n *= cap.shape[k][d];
            int32_t *iv = malloc((size_t)(n > 0 ? n : 1) * sizeof *iv);
            if (!iv) {
                rc = sb_fail(err, SB_ENOMEM, "%s: out of memory", path);
                goto done;
            }
            for (int64_t i = 0; i < n; i++)
                iv[i] = (int32_t)cap.data[k][i];
            rc = sb_h5_write_i32(out, *o, iv, cap.ndim[k], cap.shape[k], err);
            free(iv);
            if (rc)
                goto done;
        } else if ((rc = sb_h5_write_f32(out, *o, cap.data[k], cap.ndim[k], cap.shape[k], err))) {
            goto done;
        }
    }
    sb_h5_close(out);
    out = NULL;
    copy_dataset_attrs(in_path, path, rf->outputs, &cap);
    printf("replay: %s -> %s (%s, batch %lld)\n", in_path, path, rf->name, (long long)shp[0]);
done:
    capture_clear(&cap);
    sb_model_output_free(&mo);
    sb_h5_close(out);
    sb_h5_close(in);
    free(img);
    free(boxes);
    return rc;
}

int cmd_replay(int argc, char **argv)
{
    const char *flow = NULL, *cfg = NULL, *ckpt = NULL, *outdir = NULL, *bank_path = NULL;
    int threads = 0;
    const char **files = calloc((size_t)argc + 1, sizeof *files);
    if (!files)
        return SB_EXIT_FAIL;
    sb_opt_list steps = {files, 0, argc};
    const sb_opt opts[] = {
        {"--flow", SB_OPT_STR, &flow, 0, 0, NULL, NULL},
        {"--model-config", SB_OPT_STR, &cfg, 0, 0, NULL, NULL},
        {"--checkpoint", SB_OPT_STR, &ckpt, 0, 0, NULL, NULL},
        {"--output-dir", SB_OPT_STR, &outdir, 0, 0, NULL, NULL},
        {"--memory-bank", SB_OPT_STR, &bank_path, 0, 0, NULL, NULL},
        {"--threads", SB_OPT_INT, &threads, 1, 4096, "an integer in [1, 4096]", NULL},
        {NULL, 0, NULL, 0, 0, NULL, NULL},
    };
    int prc = sb_opts_parse("replay", argc, argv, opts, &steps, replay_usage);
    if (prc) {
        free(files);
        return prc == 1 ? SB_EXIT_OK : prc;
    }
    const int nf = steps.n;
    if (!flow || !cfg || !ckpt || !outdir || nf == 0) {
        fprintf(stderr, "sambench replay: --flow, --model-config, --checkpoint, --output-dir and at least one "
                        "STEP.h5 are required\n");
        replay_usage(stderr);
        free(files);
        return SB_EXIT_USAGE;
    }
    const replay_flow *rf = NULL;
    for (size_t i = 0; i < sizeof replay_flows / sizeof replay_flows[0]; i++)
        if (!strcmp(replay_flows[i].name, flow))
            rf = &replay_flows[i];
    if (!rf) {
        fprintf(stderr, "sambench replay: --flow %s is not supported (", flow);
        for (size_t i = 0; i < sizeof replay_flows / sizeof replay_flows[0]; i++)
            fprintf(stderr, "%s%s", i ? ", " : "", replay_flows[i].name);
        fprintf(stderr, ")\n");
        free(files);
        return SB_EXIT_USAGE;
    }
    if ((rf->flow == SB_FLOW_SAMED2) != (bank_path != NULL)) {
        fprintf(stderr, "sambench replay: --memory-bank is %s for --flow %s\n",
                bank_path ? "not used" : "required", rf->name);
        free(files);
        return SB_EXIT_USAGE;
    }
    sb_error err;
    sb_error_clear(&err);
    sb_ctx *ctx = NULL;
    sb_weights *w = NULL;
    sb_model *m = NULL;
    sb_model_bank bank = {NULL, NULL, NULL};
    int rc = sb_ctx_create(&ctx, threads > 0 ? threads : sb_default_threads(1), &err);
    if (!rc) {
        sb_weights_opts wo = {0};
        wo.threads = sb_ctx_threads(ctx);
        rc = sb_weights_load_ex(&w, ckpt, &wo, &err);
    }
    if (!rc) {
        sb_model_options mo;
        memset(&mo, 0, sizeof mo);
        mo.flow = rf->flow;
        mo.config_path = cfg;
        mo.weights = w;
        rc = sb_model_create(&m, &mo, ctx, &err);
    }
    if (!rc && bank_path)
        rc = sb_model_bank_attach(&bank, m, ctx, bank_path, NULL, SB_BANK_GLOBAL, &err);
    if (!rc)
        rc = mkdir_p(outdir, &err);
    for (int i = 0; !rc && i < nf; i++)
        rc = replay_one(rf, m, ctx, files[i], outdir, &err);
    sb_model_free(m);
    sb_model_bank_free(&bank);
    sb_weights_free(w);
    sb_ctx_free(ctx);
    free(files);
    if (rc)
        return sb_report_error("replay", &err);
    return SB_EXIT_OK;
}
