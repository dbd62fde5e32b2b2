/*
 * HDF5 shards (`sambench prepare`): one file per dataset, SHARD_DIR/<name>.h5.
 *
 *   /                       attrs: format = "sambench-shard/1", dataset, task, modality,
 *                                  source_kind (medbank | msd), sources, sambench_version,
 *                                  ncases (int)
 *   /cases/NNNNNN           one group per case, in listing order; attrs: case_id,
 *                                  source (image folder or file), slice_names ('\n'-joined),
 *                                  spacing (float64[3]: x, y, z mm; 0 = unknown)
 *   /cases/NNNNNN/image     uint8 (Z, H, W, 3), or (Z, H, W) when every pixel has R = G = B
 *                           (grey sources: 3x smaller; the reader replicates)
 *   /cases/NNNNNN/mask      uint8 (Z, H, W), PIL 'L' values
 *   /cases/NNNNNN/slice_index  int64 (Z)
 * Image and mask are chunked one slice per chunk and deflate-compressed
 * (level 4), so a reader touches only the slices it reads and the shards
 * stay close to the PNGs' size.
 */
#include "data_internal.h"

#include <stdlib.h>
#include <string.h>

#define SHARD_FORMAT "sambench-shard/1"

struct sb_shard {
    hid_t file;
    int ncases;
    char path[1024];
};

static void quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static int attr_str(hid_t obj, const char *name, const char *value)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, t, &value) >= 0;
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return ok ? 0 : -1;
}

static int attr_num(hid_t obj, const char *name, hid_t mem, const void *v, hsize_t n)
{
    hid_t sp = n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL);
    hid_t a = H5Acreate2(obj, name, mem == H5T_NATIVE_DOUBLE ? H5T_IEEE_F64LE : H5T_STD_I64LE, sp, H5P_DEFAULT,
                         H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, mem, v) >= 0;
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    return ok ? 0 : -1;
}

/* malloc'ed string attribute or NULL */
static char *get_attr_str(hid_t obj, const char *name)
{
    if (H5Aexists(obj, name) <= 0)
        return NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return NULL;
    hid_t ft = H5Aget_type(a);
    char *out = NULL;
    if (H5Tget_class(ft) == H5T_STRING) {
        if (H5Tis_variable_str(ft) > 0) {
            hid_t t = H5Tcopy(H5T_C_S1);
            H5Tset_size(t, H5T_VARIABLE);
            H5Tset_cset(t, H5Tget_cset(ft));
            char *s = NULL;
            if (H5Aread(a, t, &s) >= 0 && s) {
                out = strdup(s);
                H5free_memory(s);
            }
            H5Tclose(t);
        } else {
            size_t n = H5Tget_size(ft);
            out = calloc(n + 1, 1);
            hid_t t = H5Tcopy(H5T_C_S1);
            H5Tset_size(t, n + 1);
            H5Tset_cset(t, H5Tget_cset(ft));
            if (out && H5Aread(a, t, out) < 0) {
                free(out);
                out = NULL;
            }
            H5Tclose(t);
        }
    }
    H5Tclose(ft);
    H5Aclose(a);
    return out;
}

static int get_attr_num(hid_t obj, const char *name, hid_t mem, void *v)
{
    if (H5Aexists(obj, name) <= 0)
        return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return -1;
    int rc = H5Aread(a, mem, v) >= 0 ? 0 : -1;
    H5Aclose(a);
    return rc;
}

int sb_shard_create(sb_shard **out, const char *path, const sb_dataset_spec *spec, const char *source_kind,
                    sb_error *err)
{
    *out = NULL;
    quiet();
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0)
        return sb_fail(err, SB_EIO, "%s: cannot create the shard file", path);
    sb_shard *s = calloc(1, sizeof *s);
    if (!s) {
        H5Fclose(f);
        return sb_fail(err, SB_ENOMEM, "out of memory");
    }
    s->file = f;
    snprintf(s->path, sizeof s->path, "%s", path);
    int bad = attr_str(f, "format", SHARD_FORMAT) | attr_str(f, "dataset", spec->name) |
              attr_str(f, "task", spec->task) | attr_str(f, "modality", spec->modality) |
              attr_str(f, "source_kind", source_kind) | attr_str(f, "sources", spec->sources) |
              attr_str(f, "sambench_version", SB_VERSION_STRING);
    hid_t g = H5Gcreate2(f, "cases", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0 || bad) {
        if (g >= 0)
            H5Gclose(g);
        H5Fclose(f);
        free(s);
        return sb_fail(err, SB_EIO, "%s: cannot write the shard header", path);
    }
    H5Gclose(g);
    *out = s;
    return SB_OK;
}

static int write_u8(hid_t g, const char *name, const uint8_t *data, int rank, const hsize_t *dims)
{
    hsize_t chunk[4] = {1, dims[1], dims[2], rank == 4 ? dims[3] : 1};
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t pl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(pl, rank, chunk);
    H5Pset_deflate(pl, 4);
    hid_t ds = H5Dcreate2(g, name, H5T_STD_U8LE, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
    int ok = ds >= 0 && H5Dwrite(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0;
    if (ds >= 0)
        H5Dclose(ds);
    H5Pclose(pl);
    H5Sclose(sp);
    return ok ? 0 : -1;
}

int sb_shard_add(sb_shard *s, const sb_volume *v, sb_error *err)
{
    char name[64];
    snprintf(name, sizeof name, "cases/%06d", s->ncases);
    hid_t g = H5Gcreate2(s->file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        return sb_fail(err, SB_EIO, "%s: cannot create group %s", s->path, name);
    const size_t px = (size_t)v->height * v->width, Z = (size_t)v->nslices;
    int grey = 1;
    for (size_t i = 0; i < px * Z && grey; i++)
        grey = v->rgb[3 * i] == v->rgb[3 * i + 1] && v->rgb[3 * i] == v->rgb[3 * i + 2];
    int bad = 0;
    hsize_t dims[4] = {Z, (hsize_t)v->height, (hsize_t)v->width, 3};
    if (grey) {
        uint8_t *g1 = malloc(px * Z + 1);
        if (!g1) {
            H5Gclose(g);
            return sb_fail(err, SB_ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < px * Z; i++)
            g1[i] = v->rgb[3 * i];
        bad |= write_u8(g, "image", g1, 3, dims);
        free(g1);
    } else {
        bad |= write_u8(g, "image", v->rgb, 4, dims);
    }
    bad |= write_u8(g, "mask", v->mask, 3, dims);
    hsize_t nz = Z;
    hid_t sp = H5Screate_simple(1, &nz, NULL);
    hid_t ds = H5Dcreate2(g, "slice_index", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    bad |= ds < 0 || H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v->slice_index) < 0;
    if (ds >= 0)
        H5Dclose(ds);
    H5Sclose(sp);
    size_t len = 1;
    for (size_t z = 0; z < Z; z++)
        len += strlen(v->slice_names[z] ? v->slice_names[z] : "") + 1;
    char *names = calloc(len, 1);
    if (names) {
        for (size_t z = 0; z < Z; z++) {
            if (z)
                strcat(names, "\n");
            strcat(names, v->slice_names[z] ? v->slice_names[z] : "");
        }
    }
    bad |= !names || attr_str(g, "case_id", v->case_id) | attr_str(g, "source", v->source) |
                         attr_str(g, "slice_names", names) | attr_num(g, "spacing", H5T_NATIVE_DOUBLE, v->spacing, 3);
    free(names);
    H5Gclose(g);
    if (bad)
        return sb_fail(err, SB_EIO, "%s: cannot write case %s (disk full?)", s->path, v->case_id);
    s->ncases++;
    return SB_OK;
}

int sb_shard_close(sb_shard *s, sb_error *err)
{
    if (!s)
        return SB_OK;
    int64_t n = s->ncases;
    int bad = attr_num(s->file, "ncases", H5T_NATIVE_INT64, &n, 1);
    bad |= H5Fclose(s->file) < 0;
    int rc = bad ? sb_fail(err, SB_EIO, "%s: cannot finish the shard file", s->path) : SB_OK;
    free(s);
    return rc;
}

int sb_data_list_shard(sb_data *d, dset *s, const char *path)
{
    quiet();
    const char *name = s->spec.name;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        sb_data_note(d, name, "", path, "shard missing or not an HDF5 file (run sambench prepare)", 1);
        return SB_OK;
    }
    char *fmt = get_attr_str(f, "format");
    int64_t n = -1;
    if (!fmt || strcmp(fmt, SHARD_FORMAT) != 0 || get_attr_num(f, "ncases", H5T_NATIVE_INT64, &n) || n < 0) {
        free(fmt);
        H5Fclose(f);
        sb_data_note(d, name, "", path, "not a complete sambench shard (format/ncases attributes missing)", 1);
        return SB_OK;
    }
    free(fmt);
    s->shard = f;
    for (int64_t k = 0; k < n; k++) {
        char g[64];
        snprintf(g, sizeof g, "cases/%06lld", (long long)k);
        hid_t gid = H5Gopen2(f, g, H5P_DEFAULT);
        char *id = gid >= 0 ? get_attr_str(gid, "case_id") : NULL;
        hid_t ds = gid >= 0 ? H5Dopen2(gid, "image", H5P_DEFAULT) : -1;
        hsize_t dims[4] = {0, 0, 0, 0};
        int rank = -1;
        if (ds >= 0) {
            hid_t sp = H5Dget_space(ds);
            rank = H5Sget_simple_extent_ndims(sp);
            if (rank >= 3 && rank <= 4)
                H5Sget_simple_extent_dims(sp, dims, NULL);
            H5Sclose(sp);
            H5Dclose(ds);
        }
        if (gid >= 0)
            H5Gclose(gid);
        if (!id || rank < 3 || rank > 4) {
            sb_data_note(d, name, id ? id : g, path, "corrupt shard case (missing case_id or image)", 0);
            free(id);
            continue;
        }
        dcase *c = sb_data_add_case(s, id);
        free(id);
        if (!c)
            break;
        c->shard_index = (int)k;
        c->nslices = (int)dims[0];
    }
    if (s->ncases == 0)
        sb_data_note(d, name, "", path, "shard holds no case (empty dataset)", 1);
    return SB_OK;
}

static int read_u8(hid_t g, const char *name, int *rank, hsize_t dims[4], uint8_t **out)
{
    hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
    if (ds < 0)
        return -1;
    hid_t sp = H5Dget_space(ds);
    *rank = H5Sget_simple_extent_ndims(sp);
    int rc = -1;
    if (*rank >= 1 && *rank <= 4) {
        H5Sget_simple_extent_dims(sp, dims, NULL);
        size_t n = 1;
        for (int i = 0; i < *rank; i++)
            n *= dims[i];
        *out = malloc(n + 1);
        if (*out && H5Dread(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) >= 0)
            rc = 0;
        else {
            free(*out);
            *out = NULL;
        }
    }
    H5Sclose(sp);
    H5Dclose(ds);
    return rc;
}

int sb_data_load_shard(const dset *s, const dcase *c, sb_volume *v, sb_error *err)
{
    char g[64];
    snprintf(g, sizeof g, "cases/%06d", c->shard_index);
    hid_t gid = H5Gopen2(s->shard, g, H5P_DEFAULT);
    if (gid < 0)
        return sb_fail(err, SB_EFORMAT, "%s: case group %s missing", s->where, g);
    uint8_t *img = NULL, *msk = NULL;
    int ri = 0, rm = 0, rc = SB_OK;
    hsize_t di[4] = {0}, dm[4] = {0};
    if (read_u8(gid, "image", &ri, di, &img) || read_u8(gid, "mask", &rm, dm, &msk)) {
        rc = sb_fail(err, SB_EFORMAT, "%s: case %s: cannot read image/mask (corrupt shard)", s->where, c->id);
        goto done;
    }
    if ((ri != 3 && ri != 4) || (ri == 4 && di[3] != 3) || rm != 3 || dm[0] != di[0] || dm[1] != di[1] ||
        dm[2] != di[2] || di[1] == 0 || di[2] == 0) {
        rc = sb_fail(err, SB_ESHAPE, "%s: case %s: image and mask shapes disagree", s->where, c->id);
        goto done;
    }
    rc = sb_volume_alloc(v, (int)di[0], (int)di[1], (int)di[2], err);
    if (rc != SB_OK)
        goto done;
    const size_t n = (size_t)di[0] * di[1] * di[2];
    if (ri == 4)
        memcpy(v->rgb, img, n * 3);
    else
        for (size_t i = 0; i < n; i++)
            v->rgb[3 * i] = v->rgb[3 * i + 1] = v->rgb[3 * i + 2] = img[i];
    memcpy(v->mask, msk, n);
    {
        hid_t ds = H5Dopen2(gid, "slice_index", H5P_DEFAULT);
        if (ds < 0 || H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v->slice_index) < 0)
            rc = sb_fail(err, SB_EFORMAT, "%s: case %s: slice_index missing", s->where, c->id);
        if (ds >= 0)
            H5Dclose(ds);
    }
    if (rc == SB_OK) {
        char *src = get_attr_str(gid, "source"), *names = get_attr_str(gid, "slice_names");
        snprintf(v->source, sizeof v->source, "%s", src ? src : s->where);
        char *p = names;
        for (int z = 0; z < v->nslices; z++) {
            char *nl = p ? strchr(p, '\n') : NULL;
            if (nl)
                *nl = '\0';
            v->slice_names[z] = strdup(p ? p : "");
            p = nl ? nl + 1 : NULL;
        }
        free(src);
        free(names);
        if (get_attr_num(gid, "spacing", H5T_NATIVE_DOUBLE, v->spacing))
            v->spacing[0] = v->spacing[1] = v->spacing[2] = 0;
    }
done:
    if (rc != SB_OK)
        sb_volume_free(v);
    free(img);
    free(msk);
    H5Gclose(gid);
    return rc;
}
