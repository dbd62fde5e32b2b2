/*
 * NIfTI-1 / NIfTI-2 reader and writer (nifti.h). zlib's gz* functions read
 * .nii and .nii.gz alike. Header layouts: nifti1.h / nifti2.h of the NIfTI
 * standard (348- and 540-byte headers, either byte order).
 */
#include "nifti.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

/* Largest image we agree to read: 64 GiB of voxel data. */
#define NIFTI_MAX_BYTES ((int64_t)1 << 36)

int sb_nifti_type_size(int datatype)
{
    switch (datatype) {
    case SB_NIFTI_UINT8:
    case SB_NIFTI_INT8:
        return 1;
    case SB_NIFTI_INT16:
    case SB_NIFTI_UINT16:
        return 2;
    case SB_NIFTI_INT32:
    case SB_NIFTI_UINT32:
    case SB_NIFTI_FLOAT32:
        return 4;
    case SB_NIFTI_FLOAT64:
    case SB_NIFTI_INT64:
    case SB_NIFTI_UINT64:
        return 8;
    default:
        return 0;
    }
}

const char *sb_nifti_type_name(int datatype)
{
    switch (datatype) {
    case SB_NIFTI_UINT8: return "uint8";
    case SB_NIFTI_INT8: return "int8";
    case SB_NIFTI_INT16: return "int16";
    case SB_NIFTI_UINT16: return "uint16";
    case SB_NIFTI_INT32: return "int32";
    case SB_NIFTI_UINT32: return "uint32";
    case SB_NIFTI_FLOAT32: return "float32";
    case SB_NIFTI_FLOAT64: return "float64";
    case SB_NIFTI_INT64: return "int64";
    case SB_NIFTI_UINT64: return "uint64";
    case 1: return "binary";
    case 32: return "complex64";
    case 128: return "rgb24";
    case 1536: return "float128";
    case 1792: return "complex128";
    case 2048: return "complex256";
    case 2304: return "rgba32";
    default: return "unknown";
    }
}

/* ---- byte helpers ----------------------------------------------------- */

static void swap_bytes(void *p, int n)
{
    uint8_t *b = p;
    for (int i = 0; i < n / 2; i++) {
        uint8_t t = b[i];
        b[i] = b[n - 1 - i];
        b[n - 1 - i] = t;
    }
}

static int16_t rd_i16(const uint8_t *h, int off, int sw)
{
    int16_t v;
    memcpy(&v, h + off, 2);
    if (sw)
        swap_bytes(&v, 2);
    return v;
}
static int32_t rd_i32(const uint8_t *h, int off, int sw)
{
    int32_t v;
    memcpy(&v, h + off, 4);
    if (sw)
        swap_bytes(&v, 4);
    return v;
}
static int64_t rd_i64(const uint8_t *h, int off, int sw)
{
    int64_t v;
    memcpy(&v, h + off, 8);
    if (sw)
        swap_bytes(&v, 8);
    return v;
}
static double rd_f32(const uint8_t *h, int off, int sw)
{
    float v;
    memcpy(&v, h + off, 4);
    if (sw)
        swap_bytes(&v, 4);
    return (double)v;
}
static double rd_f64(const uint8_t *h, int off, int sw)
{
    double v;
    memcpy(&v, h + off, 8);
    if (sw)
        swap_bytes(&v, 8);
    return v;
}
static void wr_i16(uint8_t *h, int off, int v)
{
    int16_t x = (int16_t)v;
    memcpy(h + off, &x, 2);
}
static void wr_i32(uint8_t *h, int off, int32_t v) { memcpy(h + off, &v, 4); }
static void wr_i64(uint8_t *h, int off, int64_t v) { memcpy(h + off, &v, 8); }
static void wr_f32(uint8_t *h, int off, double v)
{
    float x = (float)v;
    memcpy(h + off, &x, 4);
}
static void wr_f64(uint8_t *h, int off, double v) { memcpy(h + off, &v, 8); }

/* ---- reading ---------------------------------------------------------- */

void sb_nifti_free(sb_nifti *img)
{
    if (!img)
        return;
    free(img->data);
    memset(img, 0, sizeof *img);
}

/* A byte source: a file through zlib's gz* (plain or gzip), or a memory
 * buffer (plain, or gzip inflated on the fly, concatenated members allowed). */
typedef struct {
    gzFile gz;
    const uint8_t *mem;
    size_t len, pos;
    int zmem; /* memory buffer is gzip */
    z_stream zs;
    int zdone;
} nsrc;

/* Reads exactly n bytes; 0 on success, else fills err. */
static int src_read(nsrc *S, void *buf, size_t n, const char *path, const char *what, sb_error *err)
{
    uint8_t *p = buf;
    if (S->gz) {
        while (n > 0) {
            unsigned chunk = n > (1u << 30) ? (1u << 30) : (unsigned)n;
            int got = gzread(S->gz, p, chunk);
            if (got < 0) {
                int zerr = 0;
                const char *m = gzerror(S->gz, &zerr);
                return sb_fail(err, SB_EFORMAT, "%s: corrupt compressed data reading the %s (%s)", path, what,
                               m ? m : "zlib error");
            }
            if (got == 0)
                return sb_fail(err, SB_EFORMAT, "%s: truncated: file ends inside the %s", path, what);
            p += got;
            n -= (size_t)got;
        }
        return SB_OK;
    }
    if (!S->zmem) {
        if (S->len - S->pos < n)
            return sb_fail(err, SB_EFORMAT, "%s: truncated: data ends inside the %s", path, what);
        memcpy(p, S->mem + S->pos, n);
        S->pos += n;
        return SB_OK;
    }
    while (n > 0) {
        if (S->zdone)
            return sb_fail(err, SB_EFORMAT, "%s: truncated: data ends inside the %s", path, what);
        unsigned chunk = n > (1u << 30) ? (1u << 30) : (unsigned)n;
        S->zs.next_out = p;
        S->zs.avail_out = chunk;
        int zr = inflate(&S->zs, Z_NO_FLUSH);
        size_t got = chunk - S->zs.avail_out;
        p += got;
        n -= got;
        if (zr == Z_STREAM_END) {
            /* another gzip member may follow */
            if (S->zs.avail_in > 2 && S->zs.next_in[0] == 0x1f && S->zs.next_in[1] == 0x8b)
                inflateReset(&S->zs);
            else
                S->zdone = 1;
        } else if (zr != Z_OK) {
            if (zr == Z_BUF_ERROR && S->zs.avail_in == 0)
                return sb_fail(err, SB_EFORMAT, "%s: truncated: compressed data ends inside the %s", path, what);
            return sb_fail(err, SB_EFORMAT, "%s: corrupt compressed data reading the %s (%s)", path, what,
                           S->zs.msg ? S->zs.msg : "zlib error");
        } else if (got == 0 && S->zs.avail_in == 0) {
            return sb_fail(err, SB_EFORMAT, "%s: truncated: compressed data ends inside the %s", path, what);
        }
    }
    return SB_OK;
}

static void src_close(nsrc *S)
{
    if (S->gz)
        gzclose(S->gz);
    if (S->zmem)
        inflateEnd(&S->zs);
    memset(S, 0, sizeof *S);
}

static int parse_header(sb_nifti *img, const uint8_t *h, int version, int sw, int64_t *vox_offset,
                        const char *path, sb_error *err)
{
    memset(img, 0, sizeof *img);
    img->version = version;
    int64_t dim[8];
    double pix[8];
    if (version == 1) {
        if (memcmp(h + 344, "n+1\0", 4) != 0) {
            if (memcmp(h + 344, "ni1\0", 4) == 0)
                return sb_fail(err, SB_EUNSUPPORTED,
                               "%s: a .hdr/.img pair (magic ni1); convert it to a single .nii file", path);
            return sb_fail(err, SB_EFORMAT, "%s: not a NIfTI-1 file (bad magic)", path);
        }
        for (int i = 0; i < 8; i++) {
            dim[i] = rd_i16(h, 40 + 2 * i, sw);
            pix[i] = rd_f32(h, 76 + 4 * i, sw);
        }
        img->datatype = rd_i16(h, 70, sw);
        *vox_offset = (int64_t)rd_f32(h, 108, sw);
        img->scl_slope = rd_f32(h, 112, sw);
        img->scl_inter = rd_f32(h, 116, sw);
        img->xyzt_units = (uint8_t)h[123];
        memcpy(img->descrip, h + 148, 80);
        img->qform_code = rd_i16(h, 252, sw);
        img->sform_code = rd_i16(h, 254, sw);
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++)
                img->srow[r][c] = rd_f32(h, 280 + 16 * r + 4 * c, sw);
    } else {
        if (memcmp(h + 4, "n+2\0\r\n\032\n", 8) != 0) {
            if (memcmp(h + 4, "ni2\0", 4) == 0)
                return sb_fail(err, SB_EUNSUPPORTED,
                               "%s: a .hdr/.img pair (magic ni2); convert it to a single .nii file", path);
            return sb_fail(err, SB_EFORMAT, "%s: not a NIfTI-2 file (bad magic)", path);
        }
        img->datatype = rd_i16(h, 12, sw);
        for (int i = 0; i < 8; i++) {
            dim[i] = rd_i64(h, 16 + 8 * i, sw);
            pix[i] = rd_f64(h, 104 + 8 * i, sw);
        }
        *vox_offset = rd_i64(h, 168, sw);
        img->scl_slope = rd_f64(h, 176, sw);
        img->scl_inter = rd_f64(h, 184, sw);
        memcpy(img->descrip, h + 240, 80);
        img->qform_code = rd_i32(h, 344, sw);
        img->sform_code = rd_i32(h, 348, sw);
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++)
                img->srow[r][c] = rd_f64(h, 400 + 32 * r + 8 * c, sw);
        img->xyzt_units = rd_i32(h, 500, sw);
    }
    img->descrip[80] = '\0';
    if (dim[0] < 1 || dim[0] > SB_NIFTI_MAX_DIMS)
        return sb_fail(err, SB_EFORMAT, "%s: dim[0] = %lld (must be 1 to 7)", path, (long long)dim[0]);
    img->ndim = (int)dim[0];
    img->bytes_per_voxel = sb_nifti_type_size(img->datatype);
    if (img->bytes_per_voxel == 0)
        return sb_fail(err, SB_EUNSUPPORTED, "%s: datatype %d (%s) is not supported", path, img->datatype,
                       sb_nifti_type_name(img->datatype));
    int64_t nvox = 1;
    for (int i = 0; i < 8; i++) {
        img->dim[i] = 1;
        img->pixdim[i] = 1.0;
    }
    img->dim[0] = img->ndim;
    for (int i = 1; i <= img->ndim; i++) {
        if (dim[i] < 1)
            return sb_fail(err, SB_EFORMAT, "%s: dim[%d] = %lld (must be >= 1)", path, i, (long long)dim[i]);
        if (nvox > NIFTI_MAX_BYTES / dim[i])
            return sb_fail(err, SB_EFORMAT, "%s: image too large (dims multiply beyond %lld bytes)", path,
                           (long long)NIFTI_MAX_BYTES);
        nvox *= dim[i];
        img->dim[i] = dim[i];
        img->pixdim[i] = fabs(pix[i]);
    }
    if (nvox > NIFTI_MAX_BYTES / img->bytes_per_voxel)
        return sb_fail(err, SB_EFORMAT, "%s: image too large (%lld voxels of %d bytes)", path,
                       (long long)nvox, img->bytes_per_voxel);
    img->nvox = nvox;
    int64_t hdr = version == 1 ? 348 : 540;
    if (*vox_offset < hdr)
        return sb_fail(err, SB_EFORMAT, "%s: vox_offset %lld lies inside the header", path,
                       (long long)*vox_offset);
    if (*vox_offset > ((int64_t)1 << 32))
        return sb_fail(err, SB_EFORMAT, "%s: vox_offset %lld is implausible", path, (long long)*vox_offset);
    return SB_OK;
}

/* Header, extensions and (if with_data) voxels from an open source.
 * known_size: bytes available for a plain source (-1 unknown). */
static int read_source(sb_nifti *img, nsrc *S, const char *path, int with_data, int64_t known_size, sb_error *err)
{
    uint8_t h[540];
    int rc = src_read(S, h, 4, path, "header", err);
    if (rc)
        return rc;
    int32_t sz = rd_i32(h, 0, 0), szs = rd_i32(h, 0, 1);
    int version, sw;
    if (sz == 348 || szs == 348) {
        version = 1;
        sw = sz != 348;
    } else if (sz == 540 || szs == 540) {
        version = 2;
        sw = sz != 540;
    } else {
        return sb_fail(err, SB_EFORMAT, "%s: not a NIfTI file (sizeof_hdr %d, expected 348 or 540)", path, sz);
    }
    int hdr = version == 1 ? 348 : 540;
    rc = src_read(S, h + 4, (size_t)hdr - 4, path, "header", err);
    int64_t vox_offset = 0;
    if (!rc)
        rc = parse_header(img, h, version, sw, &vox_offset, path, err);
    if (rc || !with_data)
        return rc;
    int64_t nbytes = img->nvox * img->bytes_per_voxel;
    if (known_size >= 0 && known_size < vox_offset + nbytes)
        return sb_fail(err, SB_EFORMAT, "%s: truncated: %lld bytes, the header needs %lld", path,
                       (long long)known_size, (long long)(vox_offset + nbytes));
    /* skip extensions up to vox_offset */
    uint8_t skip[4096];
    int64_t pos = hdr;
    while (pos < vox_offset) {
        size_t n = (size_t)(vox_offset - pos < (int64_t)sizeof skip ? vox_offset - pos : (int64_t)sizeof skip);
        rc = src_read(S, skip, n, path, "header extensions", err);
        if (rc)
            return rc;
        pos += (int64_t)n;
    }
    /* data: grow the buffer while reading so a lying header cannot make us
     * allocate more than the file really holds (times two) */
    size_t cap = (size_t)(nbytes < (1 << 20) ? nbytes : (1 << 20));
    if (cap == 0)
        cap = 1;
    uint8_t *data = malloc(cap);
    size_t have = 0;
    while (data && (int64_t)have < nbytes) {
        if (have == cap) {
            size_t ncap = cap * 2 > (size_t)nbytes ? (size_t)nbytes : cap * 2;
            uint8_t *nd = realloc(data, ncap);
            if (!nd) {
                free(data);
                data = NULL;
                break;
            }
            data = nd;
            cap = ncap;
        }
        size_t want = cap - have;
        rc = src_read(S, data + have, want, path, "voxel data", err);
        if (rc) {
            free(data);
            return rc;
        }
        have += want;
    }
    if (!data)
        return sb_fail(err, SB_ENOMEM, "%s: out of memory for %lld bytes of voxel data", path, (long long)nbytes);
    if (sw && img->bytes_per_voxel > 1)
        for (int64_t i = 0; i < img->nvox; i++)
            swap_bytes(data + i * img->bytes_per_voxel, img->bytes_per_voxel);
    img->data = data;
    return SB_OK;
}

static int read_impl(sb_nifti *img, const char *path, int with_data, sb_error *err)
{
    memset(img, 0, sizeof *img);
    struct stat st;
    if (stat(path, &st) != 0)
        return sb_fail(err, SB_EIO, "%s: cannot open (%s)", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return sb_fail(err, SB_EIO, "%s: is a directory", path);
    FILE *raw = fopen(path, "rb");
    if (!raw)
        return sb_fail(err, SB_EIO, "%s: cannot open (%s)", path, strerror(errno));
    uint8_t magic[2] = {0, 0};
    int gz = fread(magic, 1, 2, raw) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    fclose(raw);
    nsrc S;
    memset(&S, 0, sizeof S);
    S.gz = gzopen(path, "rb");
    if (!S.gz)
        return sb_fail(err, SB_EIO, "%s: cannot open (%s)", path, strerror(errno));
    gzbuffer(S.gz, 1 << 17);
    int rc = read_source(img, &S, path, with_data, gz ? -1 : (int64_t)st.st_size, err);
    src_close(&S);
    if (rc)
        memset(img, 0, sizeof *img);
    return rc;
}

int sb_nifti_read_mem(sb_nifti *img, const void *buf, size_t len, const char *name, sb_error *err)
{
    memset(img, 0, sizeof *img);
    nsrc S;
    memset(&S, 0, sizeof S);
    S.mem = buf;
    S.len = len;
    if (len >= 2 && S.mem[0] == 0x1f && S.mem[1] == 0x8b) {
        S.zmem = 1;
        if (inflateInit2(&S.zs, 16 + MAX_WBITS) != Z_OK)
            return sb_fail(err, SB_ENOMEM, "%s: cannot initialise zlib", name);
        S.zs.next_in = (Bytef *)(uintptr_t)S.mem;
        S.zs.avail_in = (uInt)(len > UINT32_MAX ? UINT32_MAX : len);
    }
    int rc = read_source(img, &S, name, 1, S.zmem ? -1 : (int64_t)len, err);
    src_close(&S);
    if (rc)
        memset(img, 0, sizeof *img);
    return rc;
}

int sb_nifti_read(sb_nifti *img, const char *path, sb_error *err) { return read_impl(img, path, 1, err); }

int sb_nifti_read_header(sb_nifti *img, const char *path, sb_error *err)
{
    return read_impl(img, path, 0, err);
}

/* ---- values ----------------------------------------------------------- */

double sb_nifti_get(const sb_nifti *img, int64_t i)
{
    const uint8_t *p = (const uint8_t *)img->data + i * img->bytes_per_voxel;
    switch (img->datatype) {
    case SB_NIFTI_UINT8: return *p;
    case SB_NIFTI_INT8: return *(const int8_t *)p;
    case SB_NIFTI_INT16: { int16_t v; memcpy(&v, p, 2); return v; }
    case SB_NIFTI_UINT16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case SB_NIFTI_INT32: { int32_t v; memcpy(&v, p, 4); return v; }
    case SB_NIFTI_UINT32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case SB_NIFTI_FLOAT32: { float v; memcpy(&v, p, 4); return v; }
    case SB_NIFTI_FLOAT64: { double v; memcpy(&v, p, 8); return v; }
    case SB_NIFTI_INT64: { int64_t v; memcpy(&v, p, 8); return (double)v; }
    case SB_NIFTI_UINT64: { uint64_t v; memcpy(&v, p, 8); return (double)v; }
    default: return NAN;
    }
}

static int has_scaling(const sb_nifti *img)
{
    return img->scl_slope != 0.0 && isfinite(img->scl_slope) && isfinite(img->scl_inter) &&
           !(img->scl_slope == 1.0 && img->scl_inter == 0.0);
}

int sb_nifti_to_f64(const sb_nifti *img, double **out, sb_error *err)
{
    *out = NULL;
    if (!img->data)
        return sb_fail(err, SB_EINVAL, "NIfTI image has no data");
    double *o = malloc(sizeof(double) * (size_t)(img->nvox ? img->nvox : 1));
    if (!o)
        return sb_fail(err, SB_ENOMEM, "out of memory converting %lld voxels", (long long)img->nvox);
    int sc = has_scaling(img);
    for (int64_t i = 0; i < img->nvox; i++) {
        double v = sb_nifti_get(img, i);
        o[i] = sc ? v * img->scl_slope + img->scl_inter : v;
    }
    *out = o;
    return SB_OK;
}

int sb_nifti_to_f32(const sb_nifti *img, float **out, sb_error *err)
{
    *out = NULL;
    if (!img->data)
        return sb_fail(err, SB_EINVAL, "NIfTI image has no data");
    float *o = malloc(sizeof(float) * (size_t)(img->nvox ? img->nvox : 1));
    if (!o)
        return sb_fail(err, SB_ENOMEM, "out of memory converting %lld voxels", (long long)img->nvox);
    int sc = has_scaling(img);
    for (int64_t i = 0; i < img->nvox; i++) {
        double v = sb_nifti_get(img, i);
        o[i] = (float)(sc ? v * img->scl_slope + img->scl_inter : v);
    }
    *out = o;
    return SB_OK;
}

/* ---- writing ---------------------------------------------------------- */

int sb_nifti_init(sb_nifti *img, int datatype, int ndim, const int64_t *dims, const double *spacing,
                  sb_error *err)
{
    memset(img, 0, sizeof *img);
    if (ndim < 1 || ndim > SB_NIFTI_MAX_DIMS)
        return sb_fail(err, SB_EINVAL, "NIfTI: %d dimensions (1 to 7)", ndim);
    int bpv = sb_nifti_type_size(datatype);
    if (!bpv)
        return sb_fail(err, SB_EUNSUPPORTED, "NIfTI: datatype %d not supported", datatype);
    int64_t nvox = 1;
    for (int i = 0; i < 8; i++) {
        img->dim[i] = 1;
        img->pixdim[i] = 1.0;
    }
    for (int i = 0; i < ndim; i++) {
        if (dims[i] < 1 || nvox > NIFTI_MAX_BYTES / dims[i])
            return sb_fail(err, SB_EINVAL, "NIfTI: bad size %lld on axis %d", (long long)dims[i], i);
        nvox *= dims[i];
        img->dim[i + 1] = dims[i];
        if (spacing)
            img->pixdim[i + 1] = spacing[i];
    }
    if (nvox > NIFTI_MAX_BYTES / bpv)
        return sb_fail(err, SB_EINVAL, "NIfTI: image too large");
    img->version = 1;
    img->ndim = ndim;
    img->dim[0] = ndim;
    img->datatype = datatype;
    img->bytes_per_voxel = bpv;
    img->scl_slope = 1.0;
    img->scl_inter = 0.0;
    img->nvox = nvox;
    img->xyzt_units = 2; /* mm */
    img->data = calloc((size_t)nvox, (size_t)bpv);
    if (!img->data)
        return sb_fail(err, SB_ENOMEM, "NIfTI: out of memory for %lld voxels", (long long)nvox);
    return SB_OK;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

int sb_nifti_write(const sb_nifti *img, const char *path, sb_error *err)
{
    if (!img || !img->data || img->ndim < 1 || img->ndim > SB_NIFTI_MAX_DIMS)
        return sb_fail(err, SB_EINVAL, "%s: nothing to write (empty image)", path);
    int bpv = sb_nifti_type_size(img->datatype);
    if (!bpv)
        return sb_fail(err, SB_EUNSUPPORTED, "%s: datatype %d not supported", path, img->datatype);
    int v2 = img->version == 2;
    int hdr = v2 ? 540 : 348;
    uint8_t h[544];
    memset(h, 0, sizeof h);
    double srow[3][4];
    int sform = img->sform_code;
    if (sform > 0) {
        memcpy(srow, img->srow, sizeof srow);
    } else {
        memset(srow, 0, sizeof srow);
        for (int r = 0; r < 3; r++)
            srow[r][r] = r < img->ndim ? img->pixdim[r + 1] : 1.0;
        sform = 1;
    }
    if (!v2) {
        for (int i = 1; i <= img->ndim; i++)
            if (img->dim[i] > 32767)
                return sb_fail(err, SB_EINVAL, "%s: dim[%d] = %lld does not fit NIfTI-1 (use version 2)", path,
                               i, (long long)img->dim[i]);
        wr_i32(h, 0, 348);
        h[38] = 'r';
        for (int i = 0; i < 8; i++) {
            wr_i16(h, 40 + 2 * i, (int)(i == 0 ? img->ndim : (i <= img->ndim ? img->dim[i] : 1)));
            wr_f32(h, 76 + 4 * i, i == 0 ? 1.0 : (i <= img->ndim ? img->pixdim[i] : 1.0));
        }
        wr_i16(h, 70, img->datatype);
        wr_i16(h, 72, bpv * 8);
        wr_f32(h, 108, 352.0);
        wr_f32(h, 112, img->scl_slope);
        wr_f32(h, 116, img->scl_inter);
        h[123] = (uint8_t)img->xyzt_units;
        memcpy(h + 148, img->descrip, strnlen(img->descrip, 79));
        wr_i16(h, 252, img->qform_code);
        wr_i16(h, 254, sform);
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++)
                wr_f32(h, 280 + 16 * r + 4 * c, srow[r][c]);
        memcpy(h + 344, "n+1\0", 4);
    } else {
        wr_i32(h, 0, 540);
        memcpy(h + 4, "n+2\0\r\n\032\n", 8);
        wr_i16(h, 12, img->datatype);
        wr_i16(h, 14, bpv * 8);
        for (int i = 0; i < 8; i++) {
            wr_i64(h, 16 + 8 * i, i == 0 ? img->ndim : (i <= img->ndim ? img->dim[i] : 1));
            wr_f64(h, 104 + 8 * i, i == 0 ? 1.0 : (i <= img->ndim ? img->pixdim[i] : 1.0));
        }
        wr_i64(h, 168, 544);
        wr_f64(h, 176, img->scl_slope);
        wr_f64(h, 184, img->scl_inter);
        memcpy(h + 240, img->descrip, strnlen(img->descrip, 79));
        wr_i32(h, 344, img->qform_code);
        wr_i32(h, 348, sform);
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++)
                wr_f64(h, 400 + 32 * r + 8 * c, srow[r][c]);
        wr_i32(h, 500, img->xyzt_units);
    }
    int64_t nbytes = img->nvox * bpv;
    int gz = ends_with(path, ".gz");
    gzFile f = gzopen(path, gz ? "wb6" : "wbT");
    if (!f)
        return sb_fail(err, SB_EIO, "%s: cannot create (%s)", path, strerror(errno));
    int ok = gzwrite(f, h, (unsigned)(hdr + 4)) == hdr + 4;
    const uint8_t *p = img->data;
    int64_t left = nbytes;
    while (ok && left > 0) {
        unsigned chunk = left > (1 << 30) ? (1u << 30) : (unsigned)left;
        ok = gzwrite(f, p, chunk) == (int)chunk;
        p += chunk;
        left -= chunk;
    }
    if (gzclose(f) != Z_OK)
        ok = 0;
    if (!ok)
        return sb_fail(err, SB_EIO, "%s: write failed (%s)", path, strerror(errno));
    return SB_OK;
}
