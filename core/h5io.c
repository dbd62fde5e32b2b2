/*
 * HDF5 tensor I/O: numeric datasets as float32 / int32 with their shapes.
 * HDF5's automatic error printing is switched off; every failure becomes an
 * sb_error naming the file and the dataset.
 */
#include "sambench.h"

#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

struct sb_h5 {
    hid_t file;
    char path[4096];
};

static void quiet_hdf5(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

int sb_h5_open(sb_h5 **out, const char *path, int mode, sb_error *err)
{
    *out = NULL;
    quiet_hdf5();
    hid_t f;
    if (mode == SB_H5_CREATE)
        f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    else if (mode == SB_H5_APPEND)
        f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    else
        f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return sb_fail(err, SB_EIO, "%s: cannot %s as HDF5 (missing, unreadable or not an HDF5 file)",
                       path, mode == SB_H5_CREATE ? "create" : "open");
    sb_h5 *h = calloc(1, sizeof *h);
    if (!h) {
        H5Fclose(f);
        return sb_fail(err, SB_ENOMEM, "%s: out of memory", path);
    }
    h->file = f;
    snprintf(h->path, sizeof h->path, "%s", path);
    *out = h;
    return SB_OK;
}

void sb_h5_close(sb_h5 *h)
{
    if (!h)
        return;
    H5Fclose(h->file);
    free(h);
}

const char *sb_h5_path(const sb_h5 *h) { return h->path; }

/* H5Lexists on "a/b/c" fails if "a" is missing, so walk the components. */
static int link_exists(hid_t file, const char *name)
{
    char buf[1024];
    size_t len = strlen(name);
    if (len == 0 || len >= sizeof buf)
        return 0;
    memcpy(buf, name, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (H5Lexists(file, buf, H5P_DEFAULT) <= 0)
                return 0;
            buf[i] = c;
        }
    }
    return 1;
}

int sb_h5_has(sb_h5 *h, const char *name) { return link_exists(h->file, name); }

static int open_dataset(sb_h5 *h, const char *name, hid_t *ds, int *ndim, int64_t shape[SB_MAX_DIMS],
                        int64_t *count, sb_error *err)
{
    if (!link_exists(h->file, name))
        return sb_fail(err, SB_EKEY, "%s: no dataset '%s'", h->path, name);
    *ds = H5Dopen2(h->file, name, H5P_DEFAULT);
    if (*ds < 0)
        return sb_fail(err, SB_EFORMAT, "%s: '%s' is not a readable dataset", h->path, name);
    hid_t sp = H5Dget_space(*ds);
    int nd = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[H5S_MAX_RANK];
    if (nd < 0 || nd > SB_MAX_DIMS || H5Sget_simple_extent_dims(sp, dims, NULL) < 0) {
        H5Sclose(sp);
        H5Dclose(*ds);
        return sb_fail(err, SB_EFORMAT, "%s: dataset '%s' has an unsupported rank", h->path, name);
    }
    H5Sclose(sp);
    int64_t n = 1;
    for (int i = 0; i < nd; i++) {
        shape[i] = (int64_t)dims[i];
        if (dims[i] != 0 && n > INT64_MAX / 16 / (int64_t)dims[i]) {
            H5Dclose(*ds);
            return sb_fail(err, SB_EFORMAT, "%s: dataset '%s' is too large", h->path, name);
        }
        n *= (int64_t)dims[i];
    }
    *ndim = nd;
    *count = n;
    return SB_OK;
}

int sb_h5_shape(sb_h5 *h, const char *name, int *ndim, int64_t shape[SB_MAX_DIMS], sb_error *err)
{
    hid_t ds;
    int64_t n;
    int rc = open_dataset(h, name, &ds, ndim, shape, &n, err);
    if (rc)
        return rc;
    H5Dclose(ds);
    return SB_OK;
}

static int read_as(sb_h5 *h, const char *name, hid_t memtype, size_t elem, void **data, int *ndim,
                   int64_t shape[SB_MAX_DIMS], sb_error *err)
{
    *data = NULL;
    hid_t ds;
    int64_t n;
    int rc = open_dataset(h, name, &ds, ndim, shape, &n, err);
    if (rc)
        return rc;
    hid_t ft = H5Dget_type(ds);
    H5T_class_t cls = H5Tget_class(ft);
    H5Tclose(ft);
    if (cls != H5T_FLOAT && cls != H5T_INTEGER) {
        H5Dclose(ds);
        return sb_fail(err, SB_EFORMAT, "%s: dataset '%s' is not numeric", h->path, name);
    }
    void *buf = malloc((size_t)(n > 0 ? n : 1) * elem);
    if (!buf) {
        H5Dclose(ds);
        return sb_fail(err, SB_ENOMEM, "%s: cannot allocate %lld elements for '%s'", h->path,
                       (long long)n, name);
    }
    if (n > 0 && H5Dread(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        free(buf);
        H5Dclose(ds);
        return sb_fail(err, SB_EFORMAT, "%s: cannot read dataset '%s' (corrupt or truncated?)",
                       h->path, name);
    }
    H5Dclose(ds);
    *data = buf;
    return SB_OK;
}

int sb_h5_read_f32(sb_h5 *h, const char *name, float **data, int *ndim, int64_t shape[SB_MAX_DIMS],
                   sb_error *err)
{
    return read_as(h, name, H5T_NATIVE_FLOAT, sizeof(float), (void **)data, ndim, shape, err);
}

int sb_h5_read_i32(sb_h5 *h, const char *name, int32_t **data, int *ndim,
                   int64_t shape[SB_MAX_DIMS], sb_error *err)
{
    return read_as(h, name, H5T_NATIVE_INT32, sizeof(int32_t), (void **)data, ndim, shape, err);
}

static int write_as(sb_h5 *h, const char *name, hid_t memtype, hid_t filetype, const void *data,
                    int ndim, const int64_t *shape, sb_error *err)
{
    if (ndim < 0 || ndim > SB_MAX_DIMS)
        return sb_fail(err, SB_EINVAL, "%s: rank %d of '%s' is out of range", h->path, ndim, name);
    if (link_exists(h->file, name))
        return sb_fail(err, SB_EINVAL, "%s: dataset '%s' already exists", h->path, name);
    hsize_t dims[SB_MAX_DIMS];
    for (int i = 0; i < ndim; i++)
        dims[i] = (hsize_t)shape[i];
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t sp = ndim == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(ndim, dims, NULL);
    hid_t ds = H5Dcreate2(h->file, name, filetype, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    int rc = SB_OK;
    if (ds < 0)
        rc = sb_fail(err, SB_EIO, "%s: cannot create dataset '%s'", h->path, name);
    else if (H5Dwrite(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        rc = sb_fail(err, SB_EIO, "%s: cannot write dataset '%s'", h->path, name);
    if (ds >= 0)
        H5Dclose(ds);
    H5Sclose(sp);
    H5Pclose(lcpl);
    return rc;
}

int sb_h5_write_f32(sb_h5 *h, const char *name, const float *data, int ndim, const int64_t *shape,
                    sb_error *err)
{
    return write_as(h, name, H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, data, ndim, shape, err);
}

int sb_h5_write_i32(sb_h5 *h, const char *name, const int32_t *data, int ndim,
                    const int64_t *shape, sb_error *err)
{
    return write_as(h, name, H5T_NATIVE_INT32, H5T_STD_I32LE, data, ndim, shape, err);
}

int sb_h5_set_attr_str(sb_h5 *h, const char *obj, const char *attr, const char *value, sb_error *err)
{
    hid_t o = H5Oopen(h->file, obj, H5P_DEFAULT);
    if (o < 0)
        return sb_fail(err, SB_EKEY, "%s: no object '%s' for attribute '%s'", h->path, obj, attr);
    if (H5Aexists(o, attr) > 0)
        H5Adelete(o, attr);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(value) + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(o, attr, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = SB_OK;
    if (a < 0 || H5Awrite(a, t, value) < 0)
        rc = sb_fail(err, SB_EIO, "%s: cannot write attribute '%s' on '%s'", h->path, attr, obj);
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    H5Oclose(o);
    return rc;
}

int sb_h5_get_attr_str(sb_h5 *h, const char *obj, const char *attr, char *buf, size_t cap,
                       sb_error *err)
{
    if (cap == 0)
        return sb_fail(err, SB_EINVAL, "attribute buffer of size 0");
    buf[0] = '\0';
    hid_t o = H5Oopen(h->file, obj, H5P_DEFAULT);
    if (o < 0)
        return sb_fail(err, SB_EKEY, "%s: no object '%s'", h->path, obj);
    if (H5Aexists(o, attr) <= 0) {
        H5Oclose(o);
        return sb_fail(err, SB_EKEY, "%s: '%s' has no attribute '%s'", h->path, obj, attr);
    }
    hid_t a = H5Aopen(o, attr, H5P_DEFAULT);
    hid_t ft = H5Aget_type(a);
    int rc = SB_OK;
    if (H5Tget_class(ft) != H5T_STRING) {
        rc = sb_fail(err, SB_EFORMAT, "%s: attribute '%s' of '%s' is not a string", h->path, attr, obj);
    } else if (H5Tis_variable_str(ft) > 0) {
        char *s = NULL;
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(ft)); /* h5py writes UTF-8 */
        if (H5Aread(a, mt, &s) < 0 || !s) {
            rc = sb_fail(err, SB_EFORMAT, "%s: cannot read attribute '%s'", h->path, attr);
        } else {
            snprintf(buf, cap, "%s", s);
            H5free_memory(s);
        }
        H5Tclose(mt);
    } else {
        size_t sz = H5Tget_size(ft);
        char *tmp = calloc(1, sz + 1);
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, sz + 1);
        H5Tset_strpad(mt, H5T_STR_NULLTERM);
        H5Tset_cset(mt, H5Tget_cset(ft));
        if (!tmp || H5Aread(a, mt, tmp) < 0)
            rc = sb_fail(err, SB_EFORMAT, "%s: cannot read attribute '%s'", h->path, attr);
        else
            snprintf(buf, cap, "%s", tmp);
        free(tmp);
        H5Tclose(mt);
    }
    H5Tclose(ft);
    H5Aclose(a);
    H5Oclose(o);
    return rc;
}
