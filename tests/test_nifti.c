/*
 * NIfTI reader/writer (pipeline/nifti.c): round trips for every datatype,
 * NIfTI-1 and -2, .nii and .nii.gz, scaling, 4-D/5-D, big-endian files built
 * by hand here, and corrupt / truncated / hostile files (clear errors naming
 * the file, nothing allocated from a lying header).
 */
#include "util_test.h"

#include "../pipeline/nifti.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static const int all_types[] = {SB_NIFTI_UINT8,  SB_NIFTI_INT8,   SB_NIFTI_INT16, SB_NIFTI_UINT16,
                                SB_NIFTI_INT32,  SB_NIFTI_UINT32, SB_NIFTI_FLOAT32, SB_NIFTI_FLOAT64,
                                SB_NIFTI_INT64,  SB_NIFTI_UINT64};

/* A value representable in every type, varying with i. */
static double sample(int type, int64_t i)
{
    double v = (double)(i % 97);
    switch (type) {
    case SB_NIFTI_INT8: return v - 48;
    case SB_NIFTI_INT16: return (v - 48) * 300;
    case SB_NIFTI_UINT16: return v * 600;
    case SB_NIFTI_INT32: return (v - 48) * 40000000.0;
    case SB_NIFTI_UINT32: return v * 40000000.0;
    case SB_NIFTI_FLOAT32: return (v - 48) * 0.25;
    case SB_NIFTI_FLOAT64: return (v - 48) * 1e-3 + 1e10;
    case SB_NIFTI_INT64: return (v - 48) * 1e15;
    case SB_NIFTI_UINT64: return v * 1e15;
    default: return v;
    }
}

static void set_value(sb_nifti *img, int64_t i, double v)
{
    uint8_t *p = (uint8_t *)img->data + i * img->bytes_per_voxel;
    switch (img->datatype) {
    case SB_NIFTI_UINT8: *p = (uint8_t)v; break;
    case SB_NIFTI_INT8: *(int8_t *)p = (int8_t)v; break;
    case SB_NIFTI_INT16: { int16_t x = (int16_t)v; memcpy(p, &x, 2); break; }
    case SB_NIFTI_UINT16: { uint16_t x = (uint16_t)v; memcpy(p, &x, 2); break; }
    case SB_NIFTI_INT32: { int32_t x = (int32_t)v; memcpy(p, &x, 4); break; }
    case SB_NIFTI_UINT32: { uint32_t x = (uint32_t)v; memcpy(p, &x, 4); break; }
    case SB_NIFTI_FLOAT32: { float x = (float)v; memcpy(p, &x, 4); break; }
    case SB_NIFTI_FLOAT64: memcpy(p, &v, 8); break;
    case SB_NIFTI_INT64: { int64_t x = (int64_t)v; memcpy(p, &x, 8); break; }
    case SB_NIFTI_UINT64: { uint64_t x = (uint64_t)v; memcpy(p, &x, 8); break; }
    }
}

static uint8_t *slurp_bin(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *n = 0;
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

static void test_roundtrip_all_types(void **state)
{
    (void)state;
    sb_error err;
    int64_t dims[3] = {5, 4, 3};
    double sp[3] = {0.8, 0.7, 2.5};
    for (size_t t = 0; t < sizeof all_types / sizeof all_types[0]; t++)
        for (int version = 1; version <= 2; version++)
            for (int gz = 0; gz < 2; gz++) {
                sb_nifti img, back;
                assert_sb_ok(err, sb_nifti_init(&img, all_types[t], 3, dims, sp, &err));
                img.version = version;
                for (int64_t i = 0; i < img.nvox; i++)
                    set_value(&img, i, sample(all_types[t], i));
                char name[64];
                snprintf(name, sizeof name, "rt_%d_v%d.nii%s", all_types[t], version, gz ? ".gz" : "");
                const char *path = temp_path(name);
                assert_sb_ok(err, sb_nifti_write(&img, path, &err));
                size_t mn;
                uint8_t *mb = slurp_bin(path, &mn);
                assert_sb_ok(err, sb_nifti_read_mem(&back, mb, mn, path, &err));
                assert_int_equal(back.nvox, 60);
                assert_memory_equal(back.data, img.data, (size_t)(60 * img.bytes_per_voxel));
                free(mb);
                sb_nifti_free(&back);
                assert_sb_ok(err, sb_nifti_read(&back, path, &err));
                assert_int_equal(back.version, version);
                assert_int_equal(back.datatype, all_types[t]);
                assert_int_equal(back.ndim, 3);
                assert_int_equal(back.nvox, 60);
                for (int a = 0; a < 3; a++) {
                    assert_int_equal(back.dim[a + 1], dims[a]);
                    assert_true(back.pixdim[a + 1] == (version == 1 ? (double)(float)sp[a] : sp[a]));
                }
                for (int64_t i = 0; i < back.nvox; i++)
                    if (sb_nifti_get(&back, i) != sample(all_types[t], i))
                        fail_msg("%s voxel %lld: %.17g != %.17g", name, (long long)i, sb_nifti_get(&back, i),
                                 sample(all_types[t], i));
                /* the gz file is really compressed, the .nii is not */
                FILE *f = fopen(path, "rb");
                uint8_t m[2];
                assert_int_equal(fread(m, 1, 2, f), 2);
                fclose(f);
                assert_int_equal(m[0] == 0x1f && m[1] == 0x8b, gz);
                sb_nifti_free(&img);
                sb_nifti_free(&back);
            }
}

static void test_scaling_and_dims(void **state)
{
    (void)state;
    sb_error err;
    int64_t dims[5] = {3, 2, 2, 2, 3}; /* 5-D: x, y, z, t, channels */
    sb_nifti img, back;
    assert_sb_ok(err, sb_nifti_init(&img, SB_NIFTI_INT16, 5, dims, NULL, &err));
    for (int64_t i = 0; i < img.nvox; i++)
        set_value(&img, i, (double)i - 30);
    img.scl_slope = 0.5;
    img.scl_inter = 10;
    const char *path = temp_path("scaled.nii.gz");
    assert_sb_ok(err, sb_nifti_write(&img, path, &err));
    assert_sb_ok(err, sb_nifti_read(&back, path, &err));
    assert_int_equal(back.ndim, 5);
    assert_int_equal(back.nvox, 72);
    assert_int_equal(back.dim[5], 3);
    float *f;
    double *d;
    assert_sb_ok(err, sb_nifti_to_f32(&back, &f, &err));
    assert_sb_ok(err, sb_nifti_to_f64(&back, &d, &err));
    for (int64_t i = 0; i < back.nvox; i++) {
        assert_true(d[i] == ((double)i - 30) * 0.5 + 10);
        assert_true(f[i] == (float)d[i]);
        assert_true(sb_nifti_get(&back, i) == (double)i - 30); /* raw */
    }
    free(f);
    free(d);
    /* slope 0 means "no scaling" */
    back.scl_slope = 0;
    assert_sb_ok(err, sb_nifti_to_f64(&back, &d, &err));
    assert_true(d[5] == -25);
    free(d);
    sb_nifti_free(&back);
    /* header-only read */
    assert_sb_ok(err, sb_nifti_read_header(&back, path, &err));
    assert_null(back.data);
    assert_int_equal(back.dim[4], 2);
    sb_nifti_free(&back);
    /* NIfTI-1 cannot hold dims > 32767 */
    img.dim[1] = 40000;
    assert_int_equal(sb_nifti_write(&img, temp_path("big.nii"), &err), SB_EINVAL);
    assert_non_null(strstr(err.msg, "version 2"));
    img.dim[1] = 3;
    sb_nifti_free(&img);
}

/* ---- hand-built files -------------------------------------------------- */

static void put(uint8_t *h, int off, const void *v, int n, int big)
{
    const uint8_t *b = v;
    for (int i = 0; i < n; i++)
        h[off + i] = big ? b[n - 1 - i] : b[i];
}

/* A NIfTI-1 file (header + 4 extension bytes + data) in either byte order. */
static size_t build_nifti1(uint8_t *buf, int big, int16_t ndim, const int16_t *dims, int16_t dtype,
                           const void *data, size_t data_bytes, int elem)
{
    memset(buf, 0, 352);
    int32_t sz = 348;
    put(buf, 0, &sz, 4, big);
    int16_t d[8] = {ndim, 1, 1, 1, 1, 1, 1, 1};
    for (int i = 0; i < ndim; i++)
        d[i + 1] = dims[i];
    for (int i = 0; i < 8; i++)
        put(buf, 40 + 2 * i, &d[i], 2, big);
    put(buf, 70, &dtype, 2, big);
    for (int i = 0; i < 8; i++) {
        float p = i == 0 ? 1.0f : 1.5f + (float)i;
        put(buf, 76 + 4 * i, &p, 4, big);
    }
    float vo = 352, one = 1, zero = 0;
    put(buf, 108, &vo, 4, big);
    put(buf, 112, &one, 4, big);
    put(buf, 116, &zero, 4, big);
    memcpy(buf + 344, "n+1", 4);
    const uint8_t *src = data;
    for (size_t i = 0; i < data_bytes; i += (size_t)elem)
        put(buf + 352, (int)i, src + i, elem, big);
    return 352 + data_bytes;
}

static const char *write_file(const char *name, const void *buf, size_t n)
{
    const char *path = temp_path(name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, n, f), n);
    fclose(f);
    return path;
}

static void test_big_endian(void **state)
{
    (void)state;
    uint8_t buf[512];
    int16_t dims[3] = {2, 3, 2};
    int16_t vals[12];
    for (int i = 0; i < 12; i++)
        vals[i] = (int16_t)(i * 1000 - 5000);
    size_t n = build_nifti1(buf, 1, 3, dims, SB_NIFTI_INT16, vals, sizeof vals, 2);
    const char *path = write_file("be.nii", buf, n);
    sb_nifti img;
    sb_error err;
    assert_sb_ok(err, sb_nifti_read(&img, path, &err));
    assert_int_equal(img.dim[2], 3);
    assert_true(img.pixdim[1] == 2.5 && img.pixdim[3] == 4.5);
    for (int i = 0; i < 12; i++)
        assert_true(sb_nifti_get(&img, i) == vals[i]);
    sb_nifti_free(&img);
    /* and little-endian, same content */
    n = build_nifti1(buf, 0, 3, dims, SB_NIFTI_INT16, vals, sizeof vals, 2);
    path = write_file("le.nii", buf, n);
    assert_sb_ok(err, sb_nifti_read(&img, path, &err));
    for (int i = 0; i < 12; i++)
        assert_true(sb_nifti_get(&img, i) == vals[i]);
    sb_nifti_free(&img);
}

static void expect_error(const char *path, int code, const char *needle)
{
    /* the memory reader must fail the same way */
    size_t mn;
    uint8_t *mb = slurp_bin(path, &mn);
    if (mb) {
        sb_nifti mi;
        sb_error merr;
        int mrc = sb_nifti_read_mem(&mi, mb, mn, path, &merr);
        if (mrc == SB_OK)
            fail_msg("%s: memory read succeeded", path);
        if (code >= 0)
            assert_int_equal(mrc, code);
        assert_null(mi.data);
        assert_non_null(strstr(merr.msg, needle));
        free(mb);
    }
    sb_nifti img;
    sb_error err;
    sb_error_clear(&err);
    int rc = sb_nifti_read(&img, path, &err);
    if (rc == SB_OK)
        fail_msg("%s: read succeeded, expected an error containing '%s'", path, needle);
    if (code >= 0)
        assert_int_equal(rc, code);
    assert_null(img.data);
    if (!strstr(err.msg, path))
        fail_msg("message does not name the file: %s", err.msg);
    if (!strstr(err.msg, needle))
        fail_msg("message '%s' does not mention '%s'", err.msg, needle);
}

static void test_corrupt_files(void **state)
{
    (void)state;
    uint8_t buf[600];
    int16_t dims[2] = {4, 4};
    uint8_t vals[16] = {0};
    size_t n = build_nifti1(buf, 0, 2, dims, SB_NIFTI_UINT8, vals, 16, 1);

    expect_error(write_file("trunc_data.nii", buf, n - 5), SB_EFORMAT, "truncated");
    expect_error(write_file("trunc_hdr.nii", buf, 100), SB_EFORMAT, "truncated");
    expect_error(write_file("empty.nii", buf, 0), SB_EFORMAT, "truncated");

    uint8_t bad[600];
    memcpy(bad, buf, n);
    memcpy(bad + 344, "xyz", 4);
    expect_error(write_file("magic.nii", bad, n), SB_EFORMAT, "magic");
    memcpy(bad, buf, n);
    memcpy(bad + 344, "ni1", 4);
    expect_error(write_file("pair.nii", bad, n), SB_EUNSUPPORTED, ".hdr/.img");

    memcpy(bad, buf, n);
    int32_t sz = 123;
    memcpy(bad, &sz, 4);
    expect_error(write_file("sizeof.nii", bad, n), SB_EFORMAT, "sizeof_hdr");

    memcpy(bad, buf, n);
    int16_t d0 = 9;
    memcpy(bad + 40, &d0, 2);
    expect_error(write_file("dim0.nii", bad, n), SB_EFORMAT, "dim[0]");

    memcpy(bad, buf, n);
    int16_t neg = -4;
    memcpy(bad + 42, &neg, 2);
    expect_error(write_file("negdim.nii", bad, n), SB_EFORMAT, "dim[1]");

    memcpy(bad, buf, n);
    int16_t cplx = 32;
    memcpy(bad + 70, &cplx, 2);
    expect_error(write_file("complex.nii", bad, n), SB_EUNSUPPORTED, "complex64");

    /* a header claiming 32767^3 float64 voxels (256 TiB) in a tiny file */
    memcpy(bad, buf, n);
    int16_t big[4] = {3, 32767, 32767, 32767}, f64 = 64;
    memcpy(bad + 40, big, 8);
    memcpy(bad + 70, &f64, 2);
    expect_error(write_file("huge.nii", bad, n), SB_EFORMAT, "too large");
    /* 2048^3 bytes = 8 GiB claimed, file of 368 bytes: truncated, no 8 GiB malloc */
    memcpy(bad, buf, n);
    int16_t big2[4] = {3, 2048, 2048, 2048};
    memcpy(bad + 40, big2, 8);
    expect_error(write_file("lying.nii", bad, n), SB_EFORMAT, "truncated");

    memcpy(bad, buf, n);
    float vo = 100;
    memcpy(bad + 108, &vo, 4);
    expect_error(write_file("voxoff.nii", bad, n), SB_EFORMAT, "vox_offset");

    /* gzip: truncated stream, corrupted stream, lying header in a gz */
    const char *gzp = temp_path("ok.nii.gz");
    gzFile gf = gzopen(gzp, "wb");
    uint8_t *bigbuf = calloc(1, 352 + 4096);
    int16_t dims2[2] = {64, 64};
    uint8_t *v2 = malloc(4096);
    for (int i = 0; i < 4096; i++)
        v2[i] = (uint8_t)(i * 7919 >> 3);
    size_t n2 = build_nifti1(bigbuf, 0, 2, dims2, SB_NIFTI_UINT8, v2, 4096, 1);
    assert_int_equal(gzwrite(gf, bigbuf, (unsigned)n2), (int)n2);
    gzclose(gf);
    sb_nifti img;
    sb_error err;
    assert_sb_ok(err, sb_nifti_read(&img, gzp, &err));
    sb_nifti_free(&img);
    FILE *f = fopen(gzp, "rb");
    uint8_t gzb[8192];
    size_t gn = fread(gzb, 1, sizeof gzb, f);
    fclose(f);
    expect_error(write_file("cut.nii.gz", gzb, gn / 2), SB_EFORMAT, "");
    for (size_t i = gn / 3; i < gn / 3 + 40 && i < gn; i++)
        gzb[i] ^= 0x5a;
    expect_error(write_file("garbled.nii.gz", gzb, gn), SB_EFORMAT, "");
    free(bigbuf);
    free(v2);

    expect_error(temp_path("does_not_exist.nii"), SB_EIO, "cannot open");
}

static void test_nifti2_header_fields(void **state)
{
    (void)state;
    sb_error err;
    int64_t dims[2] = {70000, 2}; /* beyond NIfTI-1's int16 */
    sb_nifti img, back;
    assert_sb_ok(err, sb_nifti_init(&img, SB_NIFTI_UINT8, 2, dims, NULL, &err));
    img.version = 2;
    ((uint8_t *)img.data)[69999] = 7;
    snprintf(img.descrip, sizeof img.descrip, "sambench test");
    const char *path = temp_path("wide.nii.gz");
    assert_sb_ok(err, sb_nifti_write(&img, path, &err));
    assert_sb_ok(err, sb_nifti_read(&back, path, &err));
    assert_int_equal(back.version, 2);
    assert_int_equal(back.dim[1], 70000);
    assert_string_equal(back.descrip, "sambench test");
    assert_true(sb_nifti_get(&back, 69999) == 7);
    assert_int_equal(back.sform_code, 1);
    sb_nifti_free(&img);
    sb_nifti_free(&back);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_all_types), cmocka_unit_test(test_scaling_and_dims),
        cmocka_unit_test(test_big_endian),          cmocka_unit_test(test_corrupt_files),
        cmocka_unit_test(test_nifti2_header_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
