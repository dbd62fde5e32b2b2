/*
 * sambench-h5, sambench's own weight format: one float32 dataset per tensor
 * at the root, named by its state-dict key, in the original order (link
 * creation order is tracked); root attributes sambench_format
 * ("sambench-weights-1"), source (file name) and source_sha256; a "dtype"
 * attribute per dataset with the tensor's dtype in the source file.
 * Contiguous, uncompressed datasets: a load is one read per tensor.
 */
#include "weights_internal.h"

#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#define SB_H5_FORMAT "sambench-weights-1"

sb_weights *weights_new(const char *path, int fmt);
int weights_add(sb_weights *w, const char *name, int dtype, int ndim, const int64_t *shape, float *data,
                sb_error *err);

static int set_str_attr(hid_t obj, const char *name, const char *value)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(value) + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = a >= 0 ? H5Awrite(a, t, value) : -1;
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return e < 0 ? -1 : 0;
}

/* Reads a fixed or variable length string attribute; "" if absent. */
static void get_str_attr(hid_t obj, const char *name, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (H5Aexists(obj, name) <= 0)
        return;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return;
    hid_t ft = H5Aget_type(a);
    if (H5Tget_class(ft) == H5T_STRING) {
        if (H5Tis_variable_str(ft) > 0) {
            char *s = NULL;
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, H5T_VARIABLE);
            if (H5Aread(a, mt, &s) >= 0 && s) {
                snprintf(buf, cap, "%s", s);
                H5free_memory(s);
            }
            H5Tclose(mt);
        } else {
            size_t n = H5Tget_size(ft);
            if (n > 0 && n < 65536) {
                char *s = calloc(1, n + 1);
                hid_t mt = H5Tcopy(H5T_C_S1);
                H5Tset_size(mt, n + 1);
                if (s && H5Aread(a, mt, s) >= 0)
                    snprintf(buf, cap, "%s", s);
                H5Tclose(mt);
                free(s);
            }
        }
    }
    H5Tclose(ft);
    H5Aclose(a);
}

int sb_weights_save_h5(const sb_weights *w, const char *path, const char *source, const char *sha,
                       sb_error *err)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_link_creation_order(fcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    H5Pclose(fcpl);
    if (f < 0)
        return sb_fail(err, SB_EIO, "%s: cannot create HDF5 file", path);
    int rc = SB_OK;
    if (set_str_attr(f, "sambench_format", SB_H5_FORMAT) || set_str_attr(f, "source", source ? source : "") ||
        set_str_attr(f, "source_sha256", sha ? sha : "")) {
        rc = sb_fail(err, SB_EIO, "%s: cannot write attributes", path);
        goto out;
    }
    for (size_t i = 0; i < sb_weights_count(w); i++) {
        sb_tensor_info t;
        sb_weights_info(w, i, &t);
        if (strchr(t.name, '/') || strcmp(t.name, ".") == 0 || !t.name[0]) {
            rc = sb_fail(err, SB_EINVAL, "%s: key '%s' cannot be an HDF5 dataset name", path, t.name);
            goto out;
        }
        hsize_t dims[SB_MAX_DIMS];
        for (int d = 0; d < t.ndim; d++)
            dims[d] = (hsize_t)t.shape[d];
        hid_t sp = t.ndim ? H5Screate_simple(t.ndim, dims, NULL) : H5Screate(H5S_SCALAR);
        hid_t ds = H5Dcreate2(f, t.name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        herr_t e = -1;
        if (ds >= 0) {
            e = t.numel ? H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data) : 0;
            if (e >= 0 && set_str_attr(ds, "dtype", sb_dtype_name(t.dtype)))
                e = -1;
            H5Dclose(ds);
        }
        H5Sclose(sp);
        if (e < 0) {
            rc = sb_fail(err, SB_EIO, "%s: cannot write dataset '%s'", path, t.name);
            goto out;
        }
    }
out:
    if (H5Fclose(f) < 0 && rc == SB_OK)
        rc = sb_fail(err, SB_EIO, "%s: cannot close HDF5 file", path);
    if (rc)
        remove(path);
    return rc;
}

typedef struct {
    sb_weights *w;
    const char *path;
    sb_error *err;
    int rc;
    uint64_t file_size, used;
    int sizing;   /* first pass: only sum the sizes */
    char *block;  /* second pass: tensors go here */
    uint64_t at;
} iter_ctx;

float *weights_block(sb_weights *w, size_t bytes);

static herr_t visit(hid_t g, const char *name, const H5L_info_t *info, void *arg)
{
    iter_ctx *c = arg;
    (void)info;
    hid_t obj = H5Oopen(g, name, H5P_DEFAULT);
    int is_ds = obj >= 0 && H5Iget_type(obj) == H5I_DATASET;
    if (obj >= 0)
        H5Oclose(obj);
    if (!is_ds) {
        c->rc = sb_fail(c->err, SB_EFORMAT, "%s: '%s' is not a dataset (sambench-h5 has datasets only)", c->path,
                        name);
        return -1;
    }
    hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
    if (ds < 0) {
        c->rc = sb_fail(c->err, SB_EFORMAT, "%s: cannot open dataset '%s'", c->path, name);
        return -1;
    }
    hid_t sp = H5Dget_space(ds), ft = H5Dget_type(ds);
    int nd = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[H5S_MAX_RANK];
    int64_t shape[SB_MAX_DIMS] = {0};
    uint64_t numel = 1;
    float *data = NULL;
    H5T_class_t cls = H5Tget_class(ft);
    if (nd < 0 || nd > SB_MAX_DIMS || (cls != H5T_FLOAT && cls != H5T_INTEGER)) {
        c->rc = sb_fail(c->err, SB_EFORMAT, "%s: dataset '%s' is not a numeric tensor of <= %d dims", c->path, name,
                        SB_MAX_DIMS);
        goto done;
    }
    H5Sget_simple_extent_dims(sp, dims, NULL);
    for (int d = 0; d < nd; d++) {
        shape[d] = (int64_t)dims[d];
        if (dims[d] && numel > (UINT64_C(1) << 40) / dims[d]) {
            c->rc = sb_fail(c->err, SB_EFORMAT, "%s: dataset '%s' is too large", c->path, name);
            goto done;
        }
        numel *= dims[d];
    }
    /* storage really in the file, so no allocation is sized by a bare header */
    uint64_t stored = H5Dget_storage_size(ds);
    uint64_t want = numel * H5Tget_size(ft);
    if (c->sizing)
        c->used += (numel * 4 + 63) / 64 * 64;
    if (want > 1032 * stored + 4096 || c->used > 16 * c->file_size + (1u << 20)) {
        c->rc = sb_fail(c->err, SB_EFORMAT, "%s: dataset '%s' declares %llu elements but stores %llu bytes", c->path,
                        name, (unsigned long long)numel, (unsigned long long)stored);
        goto done;
    }
    if (c->sizing) {
        c->at += (numel * 4 + 63) / 64 * 64;
        goto done;
    }
    if (c->at + numel * 4 > c->used) { /* the file changed between the passes */
        c->rc = sb_fail(c->err, SB_EFORMAT, "%s: dataset '%s' changed while reading", c->path, name);
        goto done;
    }
    data = (float *)(c->block + c->at);
    c->at += (numel * 4 + 63) / 64 * 64;
    if (numel && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
        c->rc = sb_fail(c->err, SB_EFORMAT, "%s: cannot read dataset '%s' (corrupt file?)", c->path, name);
        goto done;
    }
    char dts[64];
    get_str_attr(ds, "dtype", dts, sizeof dts);
    int dt = dts[0] ? sb_dtype_from_torch_name(dts) : SB_DT_F32;
    c->rc = weights_add(c->w, name, dt >= 0 ? dt : SB_DT_F32, nd, shape, data, c->err);
done:
    H5Tclose(ft);
    H5Sclose(sp);
    H5Dclose(ds);
    return c->rc ? -1 : 0;
}

static herr_t count_links(hid_t g, const char *name, const H5L_info_t *info, void *arg)
{
    (void)g, (void)name, (void)info, (void)arg;
    return 0;
}

int weights_load_h5(sb_weights *w, const char *path, sb_error *err)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return sb_fail(err, SB_EFORMAT, "%s: truncated or corrupt HDF5 file", path);
    char fmt[64];
    get_str_attr(f, "sambench_format", fmt, sizeof fmt);
    if (strcmp(fmt, SB_H5_FORMAT) != 0) {
        H5Fclose(f);
        return sb_fail(err, SB_EFORMAT, "%s: an HDF5 file but not sambench-h5 weights (no sambench_format=%s)", path,
                       SB_H5_FORMAT);
    }
    iter_ctx c = {w, path, err, SB_OK, 0, 0, 0, NULL, 0};
    hsize_t fsz = 0;
    H5Fget_filesize(f, &fsz);
    c.file_size = fsz;
    /* creation order when the file tracks it (ours do), else by name */
    hsize_t idx = 0;
    H5_index_t by = H5Literate(f, H5_INDEX_CRT_ORDER, H5_ITER_INC, &idx, count_links, NULL) >= 0 ? H5_INDEX_CRT_ORDER
                                                                                                  : H5_INDEX_NAME;
    idx = 0;
    c.sizing = 1;
    herr_t e = H5Literate(f, by, H5_ITER_INC, &idx, visit, &c);
    if (e >= 0 && c.rc == SB_OK) {
        c.block = (char *)weights_block(w, (size_t)c.used);
        if (!c.block && c.used)
            c.rc = sb_fail(err, SB_ENOMEM, "%s: out of memory (%llu bytes)", path, (unsigned long long)c.used);
        c.sizing = 0;
        c.at = 0;
        idx = 0;
        if (c.rc == SB_OK)
            e = H5Literate(f, by, H5_ITER_INC, &idx, visit, &c);
    }
    H5Fclose(f);
    if (c.rc)
        return c.rc;
    if (e < 0)
        return sb_fail(err, SB_EFORMAT, "%s: cannot list the datasets (corrupt file?)", path);
    return SB_OK;
}

int sb_weights_h5_attrs(const char *path, char *fmt, char *source, char *sha, size_t cap)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return -1;
    get_str_attr(f, "sambench_format", fmt, cap);
    get_str_attr(f, "source", source, cap);
    get_str_attr(f, "source_sha256", sha, cap);
    H5Fclose(f);
    return 0;
}
