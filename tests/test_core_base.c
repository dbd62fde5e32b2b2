/* The core's foundation: errors, arena, thread pool, HDF5 tensor I/O, SHA-256. */
#include "util_test.h"

#include <math.h>
#include <zlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_error_messages(void **state)
{
    (void)state;
    sb_error err;
    sb_error_clear(&err);
    assert_int_equal(err.code, SB_OK);
    assert_int_equal(sb_fail(&err, SB_EKEY, "missing key '%s'", "a.b"), SB_EKEY);
    assert_string_equal(err.msg, "missing key 'a.b'");
    assert_int_equal(sb_error_prefix(&err, "%s", "model.pth"), SB_EKEY);
    assert_string_equal(err.msg, "model.pth: missing key 'a.b'");
    assert_int_equal(sb_fail(NULL, SB_EIO, "ignored"), SB_EIO);
    assert_string_equal(sb_status_name(SB_ESHAPE), "wrong shape");
}

static void test_arena(void **state)
{
    (void)state;
    sb_error err;
    sb_arena *a;
    assert_sb_ok(err, sb_arena_create(&a, 1000, &err));
    assert_true(sb_arena_capacity(a) >= 1000);
    float *x = sb_arena_floats(a, 10);
    assert_non_null(x);
    assert_int_equal((uintptr_t)x % 64, 0);
    size_t m = sb_arena_mark(a);
    assert_int_equal(m, 64);
    void *y = sb_arena_alloc(a, 65);
    assert_non_null(y);
    assert_int_equal((uintptr_t)y % 64, 0);
    assert_int_equal(sb_arena_used(a), 64 + 128);
    sb_arena_reset(a, m);
    assert_int_equal(sb_arena_used(a), 64);
    assert_int_equal(sb_arena_peak(a), 192);
    /* too large: NULL and, with the checked variant, a message naming it */
    assert_null(sb_arena_alloc(a, 1 << 20));
    assert_null(sb_arena_alloc_checked(a, 1 << 20, "qkv buffer", &err));
    assert_int_equal(err.code, SB_ENOMEM);
    assert_non_null(strstr(err.msg, "qkv buffer"));
    assert_int_equal(sb_arena_used(a), 64);
    sb_arena_free(a);

    /* measuring arena: records the peak of the same sequence, hands out nothing */
    assert_sb_ok(err, sb_arena_create(&a, 0, &err));
    assert_null(sb_arena_alloc(a, 100));
    size_t mk = sb_arena_mark(a);
    assert_null(sb_arena_alloc(a, 1000));
    sb_arena_reset(a, mk);
    assert_null(sb_arena_alloc(a, 10));
    assert_int_equal(sb_arena_peak(a), 128 + 1024);
    sb_arena_free(a);
    sb_arena_free(NULL);
}

typedef struct {
    double *partial; /* one slot per worker */
    int64_t *hits;
} sum_job;

static void sum_range(void *arg, int64_t b, int64_t e, int worker)
{
    sum_job *j = arg;
    for (int64_t i = b; i < e; i++) {
        j->partial[worker] += (double)i;
        j->hits[i]++;
    }
}

static void test_parallel_for(void **state)
{
    (void)state;
    const int64_t n = 100003;
    for (int threads = 1; threads <= 3; threads++) {
        sb_error err;
        sb_ctx *ctx;
        assert_sb_ok(err, sb_ctx_create(&ctx, threads, &err));
        assert_int_equal(sb_ctx_threads(ctx), threads);
        for (int rep = 0; rep < 20; rep++) {
            double partial[3] = {0, 0, 0};
            int64_t *hits = calloc((size_t)n, sizeof *hits);
            sum_job j = {partial, hits};
            sb_parallel_for(ctx, n, 7, sum_range, &j);
            double total = partial[0] + partial[1] + partial[2];
            assert_true(total == (double)n * (double)(n - 1) / 2.0);
            for (int64_t i = 0; i < n; i++)
                assert_int_equal(hits[i], 1); /* every index exactly once */
            free(hits);
        }
        sb_ctx_free(ctx);
    }
    /* a NULL ctx runs serially */
    double partial[3] = {0, 0, 0};
    int64_t hits[10] = {0};
    sum_job j = {partial, hits};
    sb_parallel_for(NULL, 10, 1, sum_range, &j);
    assert_true(partial[0] == 45.0);
}

static void test_default_threads(void **state)
{
    (void)state;
    int cores = sb_cores_available();
    assert_true(cores >= 1);
    setenv("SAMBENCH_THREADS", "3", 1);
    assert_int_equal(sb_default_threads(1), 3);
    assert_int_equal(sb_default_threads(8), 3); /* explicit setting wins */
    setenv("SAMBENCH_THREADS", "junk", 1);
    assert_int_equal(sb_default_threads(1), cores);
    unsetenv("SAMBENCH_THREADS");
    assert_int_equal(sb_default_threads(1), cores);
    assert_int_equal(sb_default_threads(cores * 4), 1); /* never below one */
    int t2 = sb_default_threads(2);
    assert_int_equal(t2, cores / 2 > 0 ? cores / 2 : 1);
    setenv("SAMBENCH_THREADS", "1", 1);
}

static void test_h5_fixture_read(void **state)
{
    (void)state;
    sb_error err;
    sb_h5 *f;
    assert_sb_ok(err, sb_h5_open(&f, fixture_path("samed2_step0.h5"), SB_H5_READ, &err));
    float *img = NULL;
    int nd;
    int64_t sh[SB_MAX_DIMS];
    assert_sb_ok(err, sb_h5_read_f32(f, "input/image", &img, &nd, sh, &err));
    assert_int_equal(nd, 4);
    assert_int_equal(sh[0], 2);
    assert_int_equal(sh[1], 3);
    assert_int_equal(sh[2], 192);
    assert_int_equal(sh[3], 192);
    /* ToTensor output of a grey image: three identical channels in [0,1] */
    size_t plane = 192 * 192;
    float lo = 1, hi = 0;
    for (size_t i = 0; i < plane; i++) {
        assert_true(img[i] == img[plane + i] && img[i] == img[2 * plane + i]);
        lo = img[i] < lo ? img[i] : lo;
        hi = img[i] > hi ? img[i] : hi;
    }
    assert_true(lo >= 0.0f && hi <= 1.0f && hi > lo);
    free(img);

    int32_t *order = NULL;
    assert_sb_ok(err, sb_h5_read_i32(f, "bank_update/order_after", &order, &nd, sh, &err));
    assert_int_equal(nd, 1);
    assert_int_equal(sh[0], 6);
    for (int i = 0; i < 6; i++)
        assert_int_equal(order[i], i); /* inventory.json: step 0 keeps the order */
    free(order);

    assert_int_equal(sb_h5_has(f, "input/boxes"), 1);
    assert_int_equal(sb_h5_has(f, "input/nothing"), 0);
    assert_int_equal(sb_h5_has(f, "nogroup/nothing"), 0);
    float *none = NULL;
    assert_int_equal(sb_h5_read_f32(f, "input/nothing", &none, &nd, sh, &err), SB_EKEY);
    assert_non_null(strstr(err.msg, "input/nothing"));
    assert_non_null(strstr(err.msg, "samed2_step0.h5"));
    assert_null(none);
    char flow[64];
    assert_sb_ok(err, sb_h5_get_attr_str(f, "/", "flow", flow, sizeof flow, &err));
    assert_string_equal(flow, "sam2/function.py:validation_step");
    sb_h5_close(f);
}

static void test_h5_roundtrip_and_errors(void **state)
{
    (void)state;
    sb_error err;
    sb_h5 *f;
    const char *path = temp_path("roundtrip.h5");
    assert_sb_ok(err, sb_h5_open(&f, path, SB_H5_CREATE, &err));
    float v[6] = {1.5f, -2.0f, 3.25f, NAN, 0.0f, 1e-30f};
    int64_t shape[2] = {2, 3};
    assert_sb_ok(err, sb_h5_write_f32(f, "a/b/values", v, 2, shape, &err));
    int32_t iv[3] = {-1, 0, 7};
    int64_t ishape[1] = {3};
    assert_sb_ok(err, sb_h5_write_i32(f, "a/idx", iv, 1, ishape, &err));
    assert_int_equal(sb_h5_write_i32(f, "a/idx", iv, 1, ishape, &err), SB_EINVAL);
    assert_sb_ok(err, sb_h5_set_attr_str(f, "a/b/values", "layout", "NCHW", &err));
    sb_h5_close(f);

    assert_sb_ok(err, sb_h5_open(&f, path, SB_H5_READ, &err));
    float *r;
    int nd;
    int64_t sh[SB_MAX_DIMS];
    assert_sb_ok(err, sb_h5_read_f32(f, "a/b/values", &r, &nd, sh, &err));
    assert_int_equal(nd, 2);
    assert_int_equal(sh[1], 3);
    assert_memory_equal(r, v, sizeof v); /* bit-exact, NaN included */
    free(r);
    int32_t *ri;
    assert_sb_ok(err, sb_h5_read_i32(f, "a/idx", &ri, &nd, sh, &err));
    assert_memory_equal(ri, iv, sizeof iv);
    free(ri);
    char buf[16];
    assert_sb_ok(err, sb_h5_get_attr_str(f, "a/b/values", "layout", buf, sizeof buf, &err));
    assert_string_equal(buf, "NCHW");
    sb_h5_close(f);

    /* not an HDF5 file / missing file: an error naming the path */
    const char *junk = temp_path("junk.h5");
    FILE *j = fopen(junk, "wb");
    fputs("this is not hdf5", j);
    fclose(j);
    assert_int_equal(sb_h5_open(&f, junk, SB_H5_READ, &err), SB_EIO);
    assert_non_null(strstr(err.msg, "junk.h5"));
    assert_int_equal(sb_h5_open(&f, temp_path("missing.h5"), SB_H5_READ, &err), SB_EIO);
    assert_non_null(strstr(err.msg, "missing.h5"));

    /* a truncated copy of a fixture: open or read fails with a message, no crash */
    FILE *in = fopen(fixture_path("sam_step0.h5"), "rb");
    assert_non_null(in);
    fseek(in, 0, SEEK_END);
    long size = ftell(in);
    fseek(in, 0, SEEK_SET);
    char *bytes = malloc((size_t)size);
    assert_int_equal(fread(bytes, 1, (size_t)size, in), (size_t)size);
    fclose(in);
    const char *trunc = temp_path("truncated.h5");
    FILE *o = fopen(trunc, "wb");
    fwrite(bytes, 1, (size_t)size / 2, o);
    fclose(o);
    free(bytes);
    int rc = sb_h5_open(&f, trunc, SB_H5_READ, &err);
    if (rc == SB_OK) {
        float *x = NULL;
        rc = sb_h5_read_f32(f, "logits/high_res", &x, &nd, sh, &err);
        free(x);
        sb_h5_close(f);
    }
    assert_int_not_equal(rc, SB_OK);
    assert_non_null(strstr(err.msg, "truncated.h5"));
}

static void test_sha256(void **state)
{
    (void)state;
    char hex[65];
    sb_sha256_buffer("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sb_sha256_buffer("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    /* 56 bytes: the padding spills into a second block */
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sb_sha256_buffer(m, strlen(m), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* a fixture file against the recorded SHA256SUMS line */
    sb_error err;
    assert_sb_ok(err, sb_sha256_file(fixture_path("sam2_tiny.pth"), hex, &err));
    FILE *s = fopen(fixture_path("SHA256SUMS"), "r");
    assert_non_null(s);
    char line[512];
    int found = 0;
    while (fgets(line, sizeof line, s))
        if (strstr(line, " sam2_tiny.pth")) {
            found = 1;
            assert_memory_equal(line, hex, 64);
        }
    fclose(s);
    assert_true(found);
    assert_int_equal(sb_sha256_file(temp_path("nope.bin"), hex, &err), SB_EIO);
}

/* sb_crc32 equals zlib's crc32 for every length and alignment tried, and
 * composes across calls. */
static void test_crc32(void **state)
{
    (void)state;
    assert_int_equal(sb_crc32_update(0, "123456789", 9), 0xCBF43926u); /* the check value of CRC-32 */
    size_t cap = (1 << 20) + 300;
    unsigned char *buf = malloc(cap);
    uint64_t st = 7;
    for (size_t i = 0; i < cap; i++) {
        st = st * 6364136223846793005ULL + 1442695040888963407ULL;
        buf[i] = (unsigned char)(st >> 56);
    }
    size_t lens[] = {0, 1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 1000, 4096, 65537, (1 << 20) + 7};
    for (size_t o = 0; o < 5; o++)
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
            uint32_t want = (uint32_t)crc32(crc32(0L, Z_NULL, 0), buf + o, (uInt)lens[i]);
            uint32_t got = sb_crc32_update(0, buf + o, lens[i]);
            if (got != want)
                fail_msg("crc32 offset %zu length %zu: %08x, zlib %08x", o, lens[i], got, want);
        }
    uint32_t whole = sb_crc32_update(0, buf, 200000);
    uint32_t parts = sb_crc32_update(sb_crc32_update(sb_crc32_update(0, buf, 77), buf + 77, 100000), buf + 100077, 99923);
    assert_int_equal(whole, parts);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_messages),    cmocka_unit_test(test_arena),
        cmocka_unit_test(test_parallel_for),      cmocka_unit_test(test_default_threads),
        cmocka_unit_test(test_h5_fixture_read),   cmocka_unit_test(test_h5_roundtrip_and_errors),
        cmocka_unit_test(test_sha256),          cmocka_unit_test(test_crc32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
