/*
 * Weights loaded on several threads (sb_weights_opts.threads): the same
 * checkpoint read at 1, 2 and 3 threads gives identical tensors (names,
 * shapes, dtypes, bytes), and a corrupted entry gives the same message at
 * every thread count, the first bad tensor in file order winning whether it
 * is read by the worker threads (float32, an entry of its own) or in the
 * file-order pass (other dtypes, shared storages, views).
 */
#include "util_test.h"
#include "util_weights.h"
#include "../core/weights_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int thread_counts[] = {1, 2, 3};
#define NCOUNTS 3

static int load_at(sb_weights **w, const char *path, int threads, sb_error *err)
{
    sb_weights_opts o;
    memset(&o, 0, sizeof o);
    o.threads = threads;
    return sb_weights_load_ex(w, path, &o, err);
}

/* a and b hold the same tensors, in the same order, with the same bytes */
static void assert_same_weights(const sb_weights *a, const sb_weights *b)
{
    assert_int_equal(sb_weights_count(a), sb_weights_count(b));
    for (size_t i = 0; i < sb_weights_count(a); i++) {
        sb_tensor_info x, y;
        assert_int_equal(sb_weights_info(a, i, &x), SB_OK);
        assert_int_equal(sb_weights_info(b, i, &y), SB_OK);
        assert_string_equal(x.name, y.name);
        assert_int_equal(x.dtype, y.dtype);
        assert_int_equal(x.ndim, y.ndim);
        assert_memory_equal(x.shape, y.shape, sizeof x.shape);
        assert_int_equal(x.numel, y.numel);
        if (x.numel)
            assert_memory_equal(x.data, y.data, (size_t)x.numel * sizeof(float));
    }
}

/* How many tensors of a torch zip file the worker threads may read (as the
 * loader decides it: refs counted over the state dict). */
static size_t parallel_tensors(const char *path)
{
    torchfile tf;
    sb_error err;
    assert_sb_ok(err, torchfile_open(&tf, path, NULL, 0, SB_FMT_TORCH_ZIP, &err));
    pv *sd = tf.root;
    pv *m = pv_dict_get(sd, "model");
    if (m && m->kind == PV_DICT)
        sd = m;
    for (size_t i = 1; i < sd->n; i += 2)
        sd->items[i]->storage->refs = 0;
    for (size_t i = 1; i < sd->n; i += 2)
        sd->items[i]->storage->refs++;
    size_t k = 0;
    for (size_t i = 1; i < sd->n; i += 2)
        k += (size_t)torchfile_tensor_parallel_ok(sd->items[i]);
    torchfile_close(&tf);
    return k;
}

/* The official-format fixtures at 1, 2 and 3 threads. */
static void test_fixtures_same_at_every_thread_count(void **state)
{
    (void)state;
    static const char *const files[] = {"samed2_tiny.pth", "sam2_tiny.pth", "sam_vit_tiny.pth"};
    static const size_t tensors[] = {445, 347, 202};
    sb_error err;
    for (int f = 0; f < 3; f++) {
        const char *p = fixture_path(files[f]);
        /* the worker threads really read them: every tensor is float32 in an entry of its own */
        assert_int_equal(parallel_tensors(p), tensors[f]);
        sb_weights *ref;
        assert_sb_ok(err, load_at(&ref, p, 1, &err));
        assert_int_equal(sb_weights_count(ref), tensors[f]);
        for (int c = 1; c < NCOUNTS; c++) {
            sb_weights *w;
            assert_sb_ok(err, load_at(&w, p, thread_counts[c], &err));
            assert_same_weights(ref, w);
            sb_weights_free(w);
        }
        /* the default (0) and sb_weights_load agree too */
        sb_weights *w;
        assert_sb_ok(err, load_at(&w, p, 0, &err));
        assert_same_weights(ref, w);
        sb_weights_free(w);
        assert_sb_ok(err, sb_weights_load(&w, p, &err));
        assert_same_weights(ref, w);
        sb_weights_free(w);
        sb_weights_free(ref);
    }
}

/* ---- a mixed checkpoint: worker-read and file-order-read tensors ------- */
#define NF 6 /* float32 entries of 64 values each */
static float fdata[NF][64];
static uint16_t bfdata[8] = {0x3f80, 0x4049, 0xc000, 0x3e80, 0x0000, 0x8000, 0x4120, 0xbf00};
static float shared[16];

static const tspec mixed_spec[] = {
    {"a.f0", "FloatStorage", "0", 64, 0, 2, {8, 8}, {8, 1}},
    {"b.bf", "BFloat16Storage", "1", 8, 0, 1, {8}, {1}},      /* converted: file-order pass */
    {"c.f1", "FloatStorage", "2", 64, 0, 1, {64}, {1}},
    {"d.shared0", "FloatStorage", "3", 16, 0, 1, {8}, {1}},   /* storage 3 used twice */
    {"e.f2", "FloatStorage", "4", 64, 0, 3, {4, 4, 4}, {16, 4, 1}},
    {"f.shared1", "FloatStorage", "3", 16, 8, 1, {8}, {1}},
    {"g.f3t", "FloatStorage", "5", 64, 0, 2, {8, 8}, {1, 8}}, /* transposed view of a whole entry */
    {"h.f4", "FloatStorage", "6", 64, 0, 2, {2, 32}, {32, 1}},
    {"i.f5", "FloatStorage", "7", 64, 0, 1, {64}, {1}},
};
#define NMIXED (sizeof mixed_spec / sizeof mixed_spec[0])

static void write_mixed(const char *path)
{
    for (int k = 0; k < NF; k++)
        fill_uniform(fdata[k], 64, (uint64_t)k + 11, -2.0f, 2.0f);
    fill_uniform(shared, 16, 99, -1.0f, 1.0f);
    pbuf pk = {0};
    build_state_dict_pickle(&pk, NULL, mixed_spec, (int)NMIXED, 0);
    const char *names[] = {"mx/data.pkl", "mx/data/0", "mx/data/1", "mx/data/2", "mx/data/3",
                           "mx/data/4",   "mx/data/5", "mx/data/6", "mx/data/7", "mx/version"};
    const void *data[] = {pk.data, fdata[0], bfdata, fdata[1], shared, fdata[2], fdata[3], fdata[4], fdata[5], "3\n"};
    size_t lens[] = {pk.len, 256, sizeof bfdata, 256, sizeof shared, 256, 256, 256, 256, 2};
    write_zip(path, 10, names, data, lens);
    free(pk.data);
}

/* Offset of a stored entry's local header in a zip file image (found by name). */
static size_t entry_header(const uint8_t *z, size_t n, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i + 30 + nl <= n; i++)
        if (z[i] == 'P' && z[i + 1] == 'K' && z[i + 2] == 3 && z[i + 3] == 4 &&
            (size_t)(z[i + 26] | z[i + 27] << 8) == nl && memcmp(z + i + 30, name, nl) == 0)
            return i;
    fail_msg("no local header for %s", name);
    return 0;
}

/* Offset of its data (after the header's name and extra field). */
static size_t entry_data(const uint8_t *z, size_t n, const char *name)
{
    size_t h = entry_header(z, n, name);
    return h + 30 + strlen(name) + (size_t)(z[h + 28] | z[h + 29] << 8);
}

static void test_mixed_same_at_every_thread_count(void **state)
{
    (void)state;
    const char *p = temp_path("mixed.pth");
    write_mixed(p);
    /* the float32 entries of their own go to the workers (a, c, e, h, i); bf16, the shared storage and the
     * transposed view do not */
    assert_int_equal(parallel_tensors(p), 5);
    sb_error err;
    sb_weights *ref;
    assert_sb_ok(err, load_at(&ref, p, 1, &err));
    assert_int_equal(sb_weights_count(ref), NMIXED);
    /* values against the data written */
    assert_memory_equal(sb_weights_get(ref, "a.f0", -1, NULL, &err), fdata[0], 256);
    assert_memory_equal(sb_weights_get(ref, "c.f1", -1, NULL, &err), fdata[1], 256);
    assert_memory_equal(sb_weights_get(ref, "e.f2", -1, NULL, &err), fdata[2], 256);
    assert_memory_equal(sb_weights_get(ref, "h.f4", -1, NULL, &err), fdata[4], 256);
    assert_memory_equal(sb_weights_get(ref, "i.f5", -1, NULL, &err), fdata[5], 256);
    assert_memory_equal(sb_weights_get(ref, "d.shared0", -1, NULL, &err), shared, 32);
    assert_memory_equal(sb_weights_get(ref, "f.shared1", -1, NULL, &err), shared + 8, 32);
    const float *g = sb_weights_get(ref, "g.f3t", -1, NULL, &err);
    for (int r = 0; r < 8; r++)
        for (int c = 0; c < 8; c++)
            assert_true(g[r * 8 + c] == fdata[3][c * 8 + r]);
    const float *b = sb_weights_get(ref, "b.bf", -1, NULL, &err);
    assert_true(b[0] == 1.0f && b[1] == 3.140625f && b[2] == -2.0f && b[6] == 10.0f && b[7] == -0.5f);
    for (int c = 1; c < NCOUNTS; c++) {
        sb_weights *w;
        assert_sb_ok(err, load_at(&w, p, thread_counts[c], &err));
        assert_same_weights(ref, w);
        sb_weights_free(w);
    }
    sb_weights_free(ref);
}

/* Loads path at every thread count: each fails, all with one message, returned in msg. */
static void same_failure(const char *path, char *msg, size_t cap)
{
    char first[SB_ERROR_MSG_MAX] = "";
    int first_code = 0;
    for (int c = 0; c < NCOUNTS; c++) {
        sb_error err;
        sb_weights *w = (sb_weights *)1;
        int rc = load_at(&w, path, thread_counts[c], &err);
        assert_int_not_equal(rc, SB_OK);
        assert_null(w);
        assert_int_equal(rc, err.code);
        if (c == 0) {
            snprintf(first, sizeof first, "%s", err.msg);
            first_code = rc;
        } else {
            assert_int_equal(rc, first_code);
            assert_string_equal(err.msg, first);
        }
    }
    snprintf(msg, cap, "%s", first);
}

/* Copies src to dst with the byte at each offs[i] flipped. */
static void corrupt_copy(const char *src, const char *dst, const size_t *offs, int n)
{
    size_t len;
    uint8_t *z = read_file(src, &len);
    assert_non_null(z);
    for (int i = 0; i < n; i++) {
        assert_true(offs[i] < len);
        z[offs[i]] ^= 0x5a;
    }
    write_file(dst, z, len);
    free(z);
}

static void test_corrupt_fixture_same_message(void **state)
{
    (void)state;
    const char *src = fixture_path("samed2_tiny.pth");
    size_t len;
    uint8_t *z = read_file(src, &len);
    assert_non_null(z);
    size_t d5 = entry_data(z, len, "samed2_tiny/data/5");
    size_t d300 = entry_data(z, len, "samed2_tiny/data/300");
    size_t h7 = entry_header(z, len, "samed2_tiny/data/7");
    size_t h400 = entry_header(z, len, "samed2_tiny/data/400");
    free(z);
    char msg[SB_ERROR_MSG_MAX], want[4200];

    /* one flipped data byte: the CRC-32 check fails, the message names file, tensor and entry */
    const char *p1 = temp_path("corrupt_one.pth");
    corrupt_copy(src, p1, (size_t[]){d5 + 3}, 1);
    same_failure(p1, msg, sizeof msg);
    snprintf(want, sizeof want, "%s: tensor '", p1);
    assert_true(strncmp(msg, want, strlen(want)) == 0);
    assert_non_null(strstr(msg, "': zip entry samed2_tiny/data/5 is corrupt (CRC-32 mismatch)"));

    /* two: the earlier one in file order is reported at every thread count */
    const char *p2 = temp_path("corrupt_two.pth");
    corrupt_copy(src, p2, (size_t[]){d300 + 1, d5 + 3}, 2);
    same_failure(p2, msg, sizeof msg);
    assert_non_null(strstr(msg, "samed2_tiny/data/5 is corrupt"));
    assert_null(strstr(msg, "data/300"));

    /* a broken local header (checked by the thread that reads the entry) before a corrupt entry */
    const char *p3 = temp_path("corrupt_header.pth");
    corrupt_copy(src, p3, (size_t[]){d300 + 1, h7 + 1}, 2);
    same_failure(p3, msg, sizeof msg);
    assert_non_null(strstr(msg, "zip entry 'samed2_tiny/data/7': bad local header (corrupt zip)"));
    snprintf(want, sizeof want, "%s: tensor '", p3);
    assert_true(strncmp(msg, want, strlen(want)) == 0);

    /* a local header that disagrees with the directory (its method field), late in the file */
    const char *p4 = temp_path("corrupt_header_method.pth");
    corrupt_copy(src, p4, (size_t[]){h400 + 8}, 1);
    same_failure(p4, msg, sizeof msg);
    assert_non_null(strstr(msg, "zip entry 'samed2_tiny/data/400': local header disagrees with the central directory"));
}

/* In the mixed file, a corrupt entry read in the file-order pass (bf16) and
 * one read by the workers (float32): whichever comes first in file order is
 * reported, at every thread count. */
static void test_corrupt_mixed_first_in_file_order(void **state)
{
    (void)state;
    const char *src = temp_path("mixed_src.pth");
    write_mixed(src);
    size_t len;
    uint8_t *z = read_file(src, &len);
    assert_non_null(z);
    size_t bf = entry_data(z, len, "mx/data/1"), f1 = entry_data(z, len, "mx/data/2");
    size_t f0 = entry_data(z, len, "mx/data/0"), f5 = entry_data(z, len, "mx/data/7");
    size_t ft = entry_data(z, len, "mx/data/5");
    free(z);
    char msg[SB_ERROR_MSG_MAX];

    /* b.bf (file-order pass) before c.f1 and i.f5 (workers) */
    const char *p1 = temp_path("mixed_bad1.pth");
    corrupt_copy(src, p1, (size_t[]){f5 + 9, bf + 2, f1 + 5}, 3);
    same_failure(p1, msg, sizeof msg);
    assert_non_null(strstr(msg, ": tensor 'b.bf': zip entry mx/data/1 is corrupt (CRC-32 mismatch)"));

    /* a.f0 (workers) before b.bf (file-order pass) */
    const char *p2 = temp_path("mixed_bad2.pth");
    corrupt_copy(src, p2, (size_t[]){bf + 2, f0 + 100}, 2);
    same_failure(p2, msg, sizeof msg);
    assert_non_null(strstr(msg, ": tensor 'a.f0': zip entry mx/data/0 is corrupt (CRC-32 mismatch)"));

    /* the transposed view (file-order pass: its whole entry read, then gathered) before i.f5 (workers, the
     * last tensor) */
    const char *p3 = temp_path("mixed_bad3.pth");
    corrupt_copy(src, p3, (size_t[]){f5 + 200, ft + 4}, 2);
    same_failure(p3, msg, sizeof msg);
    assert_non_null(strstr(msg, ": tensor 'g.f3t': zip entry mx/data/5 is corrupt (CRC-32 mismatch)"));

    /* the last tensor alone */
    const char *p4 = temp_path("mixed_bad4.pth");
    corrupt_copy(src, p4, (size_t[]){f5 + 200}, 1);
    same_failure(p4, msg, sizeof msg);
    assert_non_null(strstr(msg, ": tensor 'i.f5': zip entry mx/data/7 is corrupt (CRC-32 mismatch)"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures_same_at_every_thread_count),
        cmocka_unit_test(test_mixed_same_at_every_thread_count),
        cmocka_unit_test(test_corrupt_fixture_same_message),
        cmocka_unit_test(test_corrupt_mixed_first_in_file_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
