/*
 * Weights: the official-format fixtures (torch zip checkpoints written by
 * torch 1.13, the memory bank pickle), dtypes and strided views, the legacy
 * torch.save stream, validation against the variants' tables, and the round
 * trips init-random -> load and convert -> load.
 */
#include "util_test.h"
#include "util_weights.h"
#include "../core/weights_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

static void test_fixture_checkpoints(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        size_t tensors;
        int64_t params;
        const char *variant;
    } want[] = {{"samed2_tiny.pth", 445, 916226, "samed2"},
                {"sam2_tiny.pth", 347, 676666, "sam2_hiera_s"},
                {"sam_vit_tiny.pth", 202, 142476, "sam_vit_b"}};
    sb_error err;
    for (size_t f = 0; f < 3; f++) {
        sb_weights *w;
        assert_sb_ok(err, sb_weights_load(&w, fixture_path(want[f].file), &err));
        assert_int_equal(sb_weights_count(w), want[f].tensors);
        assert_int_equal(sb_weights_parameters(w), want[f].params);
        assert_int_equal(sb_weights_file_format(w), SB_FMT_TORCH_ZIP);
        /* reduced-size fixtures: their key structure is the variant's */
        assert_sb_ok(err, sb_weights_validate(w, want[f].variant, SB_VALIDATE_STRUCTURE, &err));
        /* but not its full-size shapes: the error names the key, expected and found shape */
        assert_int_not_equal(sb_weights_validate(w, want[f].variant, SB_VALIDATE_FULL, &err), SB_OK);
        assert_non_null(strstr(err.msg, "expected shape"));
        assert_non_null(strstr(err.msg, "found"));
        /* a variant of another family is refused */
        assert_int_not_equal(
            sb_weights_validate(w, f == 2 ? "samed2" : "sam_vit_b", SB_VALIDATE_STRUCTURE, &err), SB_OK);
        sb_weights_free(w);
    }
    /* SAMed-2 has the adapter keys, SAM2 not (sam2 vs samed2 tables) */
    sb_weights *w;
    assert_sb_ok(err, sb_weights_load(&w, fixture_path("sam2_tiny.pth"), &err));
    assert_int_not_equal(sb_weights_validate(w, "samed2", SB_VALIDATE_STRUCTURE, &err), SB_OK);
    assert_non_null(strstr(err.msg, "adapter"));
    sb_weights_free(w);
}

/* Cross-check values against the raw zip entry read with libzip directly. */
static void test_fixture_values_vs_raw_zip(void **state)
{
    (void)state;
    sb_error err;
    sb_weights *w;
    assert_sb_ok(err, sb_weights_load(&w, fixture_path("samed2_tiny.pth"), &err));
    int e = 0;
    zip_t *z = zip_open(fixture_path("samed2_tiny.pth"), ZIP_RDONLY, &e);
    assert_non_null(z);
    /* the first pickled tensors: maskmem_tpos_enc -> data/0, no_mem_embed -> data/1 (file order) */
    const char *keys[2] = {"maskmem_tpos_enc", "no_mem_embed"};
    const char *entries[2] = {"samed2_tiny/data/0", "samed2_tiny/data/1"};
    for (int k = 0; k < 2; k++) {
        int nd;
        int64_t shape[SB_MAX_DIMS];
        assert_sb_ok(err, sb_weights_shape(w, keys[k], &nd, shape, &err));
        const float *got = sb_weights_get(w, keys[k], nd, shape, &err);
        assert_non_null(got);
        int64_t n = 1;
        for (int d = 0; d < nd; d++)
            n *= shape[d];
        zip_file_t *zf = zip_fopen(z, entries[k], 0);
        assert_non_null(zf);
        float *raw = malloc((size_t)n * 4);
        assert_int_equal(zip_fread(zf, raw, (zip_uint64_t)n * 4), n * 4);
        zip_fclose(zf);
        assert_memory_equal(got, raw, (size_t)n * 4);
        free(raw);
    }
    zip_close(z);
    sb_tensor_info ti;
    assert_sb_ok(err, sb_weights_info(w, 0, &ti));
    assert_string_equal(ti.name, "maskmem_tpos_enc");
    assert_int_equal(ti.dtype, SB_DT_F32);
    assert_int_equal(ti.ndim, 4);
    assert_int_equal(ti.shape[0], 7);
    assert_int_equal(ti.shape[3], 16);
    assert_int_equal(ti.file_bytes, 7 * 16 * 4);
    /* shape mismatch names the file, key, expected and found shape */
    int64_t bad[1] = {5};
    assert_null(sb_weights_get(w, "no_mem_embed", 1, bad, &err));
    assert_int_equal(err.code, SB_ESHAPE);
    assert_non_null(strstr(err.msg, "samed2_tiny.pth: key 'no_mem_embed': expected shape [5], found [1, 1, 32]"));
    assert_null(sb_weights_get(w, "nope", -1, NULL, &err));
    assert_int_equal(err.code, SB_EKEY);
    assert_false(sb_weights_has(w, "nope"));
    assert_true(sb_weights_has(w, "no_mem_embed"));
    sb_weights_free(w);

    /* the bare SAM layout: keys at the top level */
    assert_sb_ok(err, sb_weights_load(&w, fixture_path("sam_vit_tiny.pth"), &err));
    assert_true(sb_weights_has(w, "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"));
    sb_weights_free(w);
}

static float bank_val(const void *p, int dt, int64_t i)
{
    float v;
    sb_bank_to_f32((const uint8_t *)p + i * (dt == SB_DT_BF16 ? 2 : 4), dt, 1, &v);
    return v;
}

static void check_bank_vs_golden(const sb_bank *b, const char *golden, const char *group)
{
    sb_error err;
    sb_h5 *h;
    assert_sb_ok(err, sb_h5_open(&h, golden, SB_H5_READ, &err));
    const char *names[4] = {"maskmem_features", "maskmem_pos_enc", "iou", "backbone_features"};
    for (int k = 0; k < 4; k++) {
        char ds[128];
        snprintf(ds, sizeof ds, "%s/%s", group, names[k]);
        float *ref;
        int nd;
        int64_t shape[SB_MAX_DIMS];
        assert_sb_ok(err, sb_h5_read_f32(h, ds, &ref, &nd, shape, &err));
        assert_int_equal(shape[0], b->n);
        int64_t per = k < 2 ? b->C * b->H * b->W : k == 2 ? 1 : b->feat_len;
        size_t mism = 0;
        for (int64_t i = 0; i < b->n; i++)
            for (int64_t j = 0; j < per; j++) {
                float got = k == 0   ? bank_val(b->maskmem[i], b->mem_dtype, j)
                            : k == 1 ? bank_val(b->pos[i], b->pos_dtype, j)
                            : k == 2 ? b->iou[i]
                                     : bank_val(b->feat[i], b->feat_dtype, j);
                if (got != ref[i * per + j]) /* exact: bf16 values are stored exactly */
                    mism++;
            }
        if (mism)
            fail_msg("%s: %zu values differ from %s", ds, mism, golden);
        free(ref);
    }
    sb_h5_close(h);
}

static void test_bank_fixture(void **state)
{
    (void)state;
    sb_error err;
    sb_bank *b;
    assert_sb_ok(err, sb_bank_load(&b, fixture_path("memory_bank_list_6.pkl"), &err));
    assert_int_equal(b->n, 6);
    assert_int_equal(b->C, 16);
    assert_int_equal(b->H, 12);
    assert_int_equal(b->W, 12);
    assert_int_equal(b->feat_len, 32 * 12 * 12);
    assert_int_equal(b->mem_dtype, SB_DT_BF16); /* kept as bf16 in memory */
    assert_int_equal(b->pos_dtype, SB_DT_BF16);
    assert_int_equal(b->feat_dtype, SB_DT_F32);
    assert_int_equal(b->iou_dtype, SB_DT_F32);
    assert_string_equal(b->location, "cpu");
    assert_int_equal(b->payload_bytes, 6 * (2 * 2304 * 2 + 4608 * 4 + 4));
    /* the entries are strided views (channels-last strides, offsets): equal to the golden bank */
    check_bank_vs_golden(b, fixture_path("samed2_step0.h5"), "bank_before");

    /* write it back in the real format (as from a GPU, bf16 iou) and read again */
    const char *p = temp_path("bank_rt.pkl");
    b->iou_dtype = SB_DT_BF16;
    float iou0 = b->iou[0];
    assert_sb_ok(err, sb_bank_save(b, p, "cuda:0", &err));
    sb_bank *c;
    assert_sb_ok(err, sb_bank_load(&c, p, &err));
    assert_string_equal(c->location, "cuda:0");
    assert_int_equal(c->iou_dtype, SB_DT_BF16);
    assert_true(fabsf(c->iou[0] - iou0) <= 0.004f * iou0 && c->iou[0] != iou0); /* bf16-rounded */
    for (int64_t i = 0; i < 6; i++) {
        assert_memory_equal(c->maskmem[i], b->maskmem[i], 2304 * 2);
        assert_memory_equal(c->pos[i], b->pos[i], 2304 * 2);
        assert_memory_equal(c->feat[i], b->feat[i], 4608 * 4);
    }
    sb_bank *s;
    assert_sb_ok(err, sb_bank_inspect(&s, p, &err));
    assert_null(s->maskmem);
    assert_int_equal(s->n, 6);
    assert_true(s->iou[3] == c->iou[3]);
    sb_bank_free(s);
    sb_bank_free(c);
    sb_bank_free(b);

    /* inspect --format json on the fixture */
    char *out = NULL;
    assert_int_equal(run_sambench(&out, "inspect %s --format json", fixture_path("memory_bank_list_6.pkl")), 0);
    assert_non_null(strstr(out, "\"kind\": \"memory bank\""));
    assert_non_null(strstr(out, "\"entries\": 6"));
    assert_non_null(strstr(out, "{\"name\": \"maskmem_features\", \"dtype\": \"bfloat16\", \"shape\": [1, 16, 12, 12]"));
    assert_non_null(strstr(out, "\"iou_min\": 0.55175"));
    free(out);
}

/* Hand-made zip: dtypes, a transposed view with an offset, a shared storage, a 0-d tensor. */
static void test_dtypes_and_views(void **state)
{
    (void)state;
    double f64[7] = {-1, 1, 2, 3, 4, 5, 6}; /* offset 1, shape (2,3) stride (1,2): [[1,3,5],[2,4,6]] */
    uint16_t f16[3] = {0x3c00, 0xc000, 0x3555}; /* 1, -2, 0.333252 */
    uint16_t bf16[2] = {0x3f80, 0x4049};         /* 1, 3.140625 */
    int64_t i64[2] = {-7, 1234567};
    uint8_t bools[3] = {1, 0, 1};
    float f32[4] = {10, 20, 30, 40};
    tspec t[] = {
        {"a.t64", "DoubleStorage", "0", 7, 1, 2, {2, 3}, {1, 2}},
        {"b.half", "HalfStorage", "1", 3, 0, 1, {3}, {1}},
        {"c.bf", "BFloat16Storage", "2", 2, 0, 2, {1, 2}, {2, 1}},
        {"d.long", "LongStorage", "3", 2, 0, 1, {2}, {1}},
        {"e.bool", "BoolStorage", "4", 3, 0, 1, {3}, {1}},
        {"f.first", "FloatStorage", "5", 4, 0, 1, {2}, {1}},
        {"g.shared", "FloatStorage", "5", 4, 2, 1, {2}, {1}},
        {"h.scalar", "FloatStorage", "5", 4, 3, 0, {0}, {0}},
    };
    pbuf pk = {0};
    build_state_dict_pickle(&pk, "model", t, 8, 0);
    const char *names[] = {"m/data.pkl", "m/data/0", "m/data/1", "m/data/2", "m/data/3", "m/data/4", "m/data/5", "m/version"};
    const void *data[] = {pk.data, f64, f16, bf16, i64, bools, f32, "3\n"};
    size_t lens[] = {pk.len, sizeof f64, sizeof f16, sizeof bf16, sizeof i64, sizeof bools, sizeof f32, 2};
    const char *p = temp_path("dtypes.pth");
    write_zip(p, 8, names, data, lens);
    free(pk.data);
    sb_error err;
    sb_weights *w;
    assert_sb_ok(err, sb_weights_load(&w, p, &err));
    assert_int_equal(sb_weights_count(w), 8);
    int64_t s23[2] = {2, 3};
    const float *a = sb_weights_get(w, "a.t64", 2, s23, &err);
    assert_non_null(a);
    float wa[6] = {1, 3, 5, 2, 4, 6};
    assert_memory_equal(a, wa, sizeof wa);
    const float *b = sb_weights_get(w, "b.half", -1, NULL, &err);
    assert_true(b[0] == 1.0f && b[1] == -2.0f && fabsf(b[2] - 0.333252f) < 1e-6f);
    const float *c = sb_weights_get(w, "c.bf", -1, NULL, &err);
    assert_true(c[0] == 1.0f && c[1] == 3.140625f);
    const float *d = sb_weights_get(w, "d.long", -1, NULL, &err);
    assert_true(d[0] == -7.0f && d[1] == 1234567.0f);
    const float *e = sb_weights_get(w, "e.bool", -1, NULL, &err);
    assert_true(e[0] == 1.0f && e[1] == 0.0f && e[2] == 1.0f);
    const float *g = sb_weights_get(w, "g.shared", -1, NULL, &err);
    assert_true(g[0] == 30.0f && g[1] == 40.0f);
    const float *h = sb_weights_get(w, "h.scalar", 0, NULL, &err);
    assert_true(h && h[0] == 40.0f);
    sb_tensor_info ti;
    sb_weights_info(w, 0, &ti);
    assert_int_equal(ti.dtype, SB_DT_F64);
    assert_int_equal(ti.file_bytes, 6 * 8);
    sb_weights_info(w, 2, &ti);
    assert_int_equal(ti.dtype, SB_DT_BF16);
    sb_weights_free(w);

    /* inspect shows the original dtypes */
    char *out = NULL;
    assert_int_equal(run_sambench(&out, "inspect %s --format json", p), 0);
    assert_non_null(strstr(out, "{\"name\": \"a.t64\", \"dtype\": \"float64\", \"shape\": [2, 3], \"bytes\": 48}"));
    assert_non_null(strstr(out, "\"kind\": \"checkpoint\""));
    free(out);
}

/* A legacy (non-zip) torch.save file: magic, protocol, sys info, object, keys, storages. */
static void test_legacy_format(void **state)
{
    (void)state;
    pbuf b = {0};
    static const uint8_t magic[] = {0x80, 2, 0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'};
    static const uint8_t proto[] = {0x80, 2, 'M', 0xe9, 0x03, '.'};
    pbuf_put(&b, magic, sizeof magic);
    pbuf_put(&b, proto, sizeof proto);
    static const uint8_t sys[] = {0x80, 2, '}', '.'};
    pbuf_put(&b, sys, sizeof sys);
    tspec t[] = {{"w", "FloatStorage", "94011", 6, 2, 2, {2, 2}, {1, 2}}, /* [[s2, s4], [s3, s5]] */
                 {"v", "DoubleStorage", "94012", 2, 0, 1, {2}, {1}}};
    build_state_dict_pickle(&b, NULL, t, 2, 1);
    static const uint8_t keys[] = {0x80, 2, ']', 'q', 0, '(', 'X', 5, 0, 0, 0, '9', '4', '0', '1', '1',
                                   'X', 5, 0, 0, 0, '9', '4', '0', '1', '2', 'e', '.'};
    pbuf_put(&b, keys, sizeof keys);
    int64_t n6 = 6, n2 = 2;
    float s[6] = {0, 1, 2, 3, 4, 5};
    double dv[2] = {0.5, -0.25};
    pbuf_put(&b, &n6, 8);
    pbuf_put(&b, s, sizeof s);
    pbuf_put(&b, &n2, 8);
    pbuf_put(&b, dv, sizeof dv);
    const char *p = temp_path("legacy.pt");
    write_file(p, b.data, b.len);
    sb_error err;
    sb_weights *w;
    assert_sb_ok(err, sb_weights_load(&w, p, &err));
    assert_int_equal(sb_weights_file_format(w), SB_FMT_TORCH_LEGACY);
    const float *x = sb_weights_get(w, "w", -1, NULL, &err);
    float want[4] = {2, 4, 3, 5};
    assert_memory_equal(x, want, sizeof want);
    const float *v = sb_weights_get(w, "v", -1, NULL, &err);
    assert_true(v[0] == 0.5f && v[1] == -0.25f);
    sb_weights_free(w);
    /* the stream cut inside the last storage */
    write_file(p, b.data, b.len - 3);
    assert_int_not_equal(sb_weights_load(&w, p, &err), SB_OK);
    assert_non_null(strstr(err.msg, "ends early"));
    free(b.data);
}

/* Our writer: bare and wrapped layouts, round trip exact. */
static void test_torch_writer_roundtrip(void **state)
{
    (void)state;
    sb_error err;
    for (int wrap = 0; wrap < 2; wrap++) {
        const char *p = temp_path(wrap ? "wr_wrap.pth" : "wr_bare.pth");
        sb_torch_writer *tw;
        assert_sb_ok(err, sb_torch_writer_open(&tw, p, wrap, &err));
        float a[24], s0 = 3.5f;
        fill_uniform(a, 24, 7, -2, 2);
        int64_t sa[3] = {2, 3, 4};
        assert_sb_ok(err, sb_torch_writer_add(tw, "x.weight", 3, sa, a, &err));
        assert_sb_ok(err, sb_torch_writer_add(tw, "x.scalar", 0, NULL, &s0, &err));
        float *big = malloc(70000 * 4);
        fill_uniform(big, 70000, 9, -1, 1);
        int64_t sb[2] = {700, 100};
        assert_sb_ok(err, sb_torch_writer_add(tw, "y", 2, sb, big, &err));
        assert_sb_ok(err, sb_torch_writer_close(tw, &err));
        sb_weights *w;
        assert_sb_ok(err, sb_weights_load(&w, p, &err));
        assert_int_equal(sb_weights_count(w), 3);
        assert_memory_equal(sb_weights_get(w, "x.weight", 3, sa, &err), a, sizeof a);
        assert_true(sb_weights_get(w, "x.scalar", 0, NULL, &err)[0] == 3.5f);
        assert_memory_equal(sb_weights_get(w, "y", 2, sb, &err), big, 70000 * 4);
        sb_weights_free(w);
        free(big);
        /* the data of every entry is 64-byte aligned, as torch writes it */
        int e = 0;
        zip_t *z = zip_open(p, ZIP_RDONLY, &e);
        assert_non_null(z);
        assert_true(zip_name_locate(z, "archive/data.pkl", 0) >= 0);
        assert_true(zip_name_locate(z, "archive/version", 0) >= 0);
        zip_close(z);
    }
}

/* {'state_dict': {'module.a': ...}}: refused by default, read with the explicit options. */
static void test_unwrap_and_prefix(void **state)
{
    (void)state;
    float v[3] = {1, 2, 3};
    tspec t[] = {{"module.a", "FloatStorage", "0", 3, 0, 1, {3}, {1}}};
    pbuf pk = {0};
    build_state_dict_pickle(&pk, "state_dict", t, 1, 0);
    const char *names[] = {"ck/data.pkl", "ck/data/0", "ck/version"};
    const void *data[] = {pk.data, v, "3\n"};
    size_t lens[] = {pk.len, sizeof v, 2};
    const char *p = temp_path("wrapped.pth");
    write_zip(p, 3, names, data, lens);
    free(pk.data);
    sb_error err;
    sb_weights *w;
    assert_int_equal(sb_weights_load(&w, p, &err), SB_EFORMAT);
    assert_non_null(strstr(err.msg, "key 'state_dict' holds a dict, not a tensor (use --unwrap state_dict)"));
    sb_weights_opts o = {0};
    o.unwrap = "state_dict";
    o.strip_prefix = "module.";
    assert_sb_ok(err, sb_weights_load_ex(&w, p, &o, &err));
    assert_true(sb_weights_has(w, "a"));
    assert_false(sb_weights_has(w, "module.a"));
    sb_weights_free(w);
    char *out = NULL;
    assert_int_equal(run_sambench(&out, "inspect %s --unwrap state_dict --strip-prefix module. --format json", p), 0);
    assert_non_null(strstr(out, "{\"name\": \"a\", \"dtype\": \"float32\", \"shape\": [3]"));
    free(out);
    /* convert records the source's SHA-256; inspect shows it */
    const char *h5 = temp_path("wrapped.h5");
    assert_int_equal(run_sambench(&out, "convert %s %s --unwrap state_dict --strip-prefix module.", p, h5), 0);
    free(out);
    char sha[65];
    assert_sb_ok(err, sb_sha256_file(p, sha, &err));
    assert_int_equal(run_sambench(&out, "inspect %s --format json", h5), 0);
    assert_non_null(strstr(out, "\"kind\": \"sambench-h5\""));
    assert_non_null(strstr(out, sha));
    assert_non_null(strstr(out, "\"source\": \"wrapped.pth\""));
    free(out);
}

/* Full size: init-random (CLI) -> load == the generator's values; convert -> load == same. */
static void test_init_random_and_convert_roundtrip(void **state)
{
    (void)state;
    const char *pth = temp_path("rand_t.pth"), *h5 = temp_path("rand_t.h5");
    char *out = NULL;
    int rc = run_sambench(&out, "init-random --variant sam2_hiera_t --seed 42 %s", pth);
    if (rc != 0)
        fail_msg("init-random: %s", out ? out : "");
    free(out);
    sb_error err;
    sb_weights *w;
    sb_weights_opts o = {0};
    o.variant = "sam2_hiera_t"; /* full validation: every key with its official shape */
    assert_sb_ok(err, sb_weights_load_ex(&w, pth, &o, &err));
    assert_int_equal(sb_weights_count(w), 468);
    assert_int_equal(sb_weights_parameters(w), 38946242);
    size_t maxn = 0;
    for (size_t i = 0; i < sb_weights_count(w); i++) {
        sb_tensor_info t;
        sb_weights_info(w, i, &t);
        if ((size_t)t.numel > maxn)
            maxn = (size_t)t.numel;
    }
    float *buf = malloc(maxn * 4);
    for (size_t i = 0; i < sb_weights_count(w); i++) {
        sb_tensor_info t;
        sb_weights_info(w, i, &t);
        sb_weights_random_values(t.name, t.ndim, t.shape, 42, buf);
        if (memcmp(buf, t.data, (size_t)t.numel * 4) != 0)
            fail_msg("tensor %s differs from the generator", t.name);
    }
    /* the seed matters */
    sb_tensor_info t0;
    sb_weights_info(w, 10, &t0);
    sb_weights_random_values(t0.name, t0.ndim, t0.shape, 43, buf);
    assert_true(memcmp(buf, t0.data, (size_t)t0.numel * 4) != 0);
    free(buf);

    rc = run_sambench(&out, "convert %s %s", pth, h5);
    if (rc != 0)
        fail_msg("convert: %s", out ? out : "");
    free(out);
    sb_weights *h;
    assert_sb_ok(err, sb_weights_load_ex(&h, h5, &o, &err));
    assert_int_equal(sb_weights_file_format(h), SB_FMT_H5);
    assert_int_equal(sb_weights_count(h), sb_weights_count(w));
    for (size_t i = 0; i < sb_weights_count(w); i++) {
        sb_tensor_info a, b;
        sb_weights_info(w, i, &a);
        sb_weights_info(h, i, &b); /* same order */
        assert_string_equal(a.name, b.name);
        assert_int_equal(a.ndim, b.ndim);
        assert_memory_equal(a.shape, b.shape, sizeof a.shape);
        if (memcmp(a.data, b.data, (size_t)a.numel * 4) != 0)
            fail_msg("converted tensor %s differs", a.name);
    }
    sb_weights_free(h);
    sb_weights_free(w);
    /* provenance attributes (the SHA-256 itself is checked on the small files of test_unwrap...) */
    char fmt[512], src[512], sha[512];
    assert_int_equal(sb_weights_h5_attrs(h5, fmt, src, sha, sizeof fmt), 0);
    assert_string_equal(fmt, "sambench-weights-1");
    assert_string_equal(src, "rand_t.pth");
    assert_int_equal(strlen(sha), 64);
    remove(pth);
    remove(h5);
}

/* Missing keys: refused, or with allow_missing initialised and listed. */
static void test_validation_missing_and_shape(void **state)
{
    (void)state;
    const char *p = temp_path("partial.pth");
    sb_error err;
    sb_torch_writer *tw;
    assert_sb_ok(err, sb_torch_writer_open(&tw, p, 1, &err));
    float v[256];
    fill_uniform(v, 256, 3, -1, 1);
    int64_t s[3] = {1, 1, 256};
    assert_sb_ok(err, sb_torch_writer_add(tw, "no_mem_embed", 3, s, v, &err));
    assert_sb_ok(err, sb_torch_writer_close(tw, &err));
    sb_weights *w;
    sb_weights_opts o = {0};
    o.variant = "sam2_hiera_t";
    assert_int_equal(sb_weights_load_ex(&w, p, &o, &err), SB_EKEY);
    assert_non_null(strstr(err.msg, "missing key 'maskmem_tpos_enc' (expected shape [7, 1, 1, 64]) for variant sam2_hiera_t"));
    o.allow_missing = 1;
    assert_sb_ok(err, sb_weights_load_ex(&w, p, &o, &err));
    const char *init = sb_weights_initialised(w);
    assert_non_null(strstr(init, "maskmem_tpos_enc\n"));
    assert_null(strstr(init, "no_mem_embed"));
    assert_memory_equal(sb_weights_get(w, "no_mem_embed", 3, s, &err), v, sizeof v);
    assert_int_equal(sb_weights_count(w), 468);
    sb_weights_free(w);
    char *out = NULL;
    assert_int_equal(run_sambench(&out, "inspect %s --variant sam2_hiera_t", p), 2);
    assert_non_null(strstr(out, "missing key 'maskmem_tpos_enc'"));
    free(out);
    assert_int_equal(run_sambench(&out, "inspect %s --variant sam2_hiera_t --allow-missing", p), 0);
    assert_non_null(strstr(out, "467 missing keys initialised"));
    free(out);

    /* wrong shape: names the key, the expected and the found shape */
    assert_sb_ok(err, sb_torch_writer_open(&tw, p, 1, &err));
    int64_t s2[3] = {1, 1, 32};
    assert_sb_ok(err, sb_torch_writer_add(tw, "no_mem_embed", 3, s2, v, &err));
    assert_sb_ok(err, sb_torch_writer_close(tw, &err));
    assert_int_equal(sb_weights_load_ex(&w, p, &o, &err), SB_ESHAPE);
    assert_non_null(strstr(err.msg, "key 'no_mem_embed': expected shape [1, 1, 256], found [1, 1, 32]"));
    /* an unexpected key under a module the model has */
    assert_sb_ok(err, sb_torch_writer_open(&tw, p, 1, &err));
    assert_sb_ok(err, sb_torch_writer_add(tw, "image_encoder.trunk.extra", 3, s, v, &err));
    assert_sb_ok(err, sb_torch_writer_close(tw, &err));
    assert_int_equal(sb_weights_load_ex(&w, p, &o, &err), SB_EKEY);
    assert_non_null(strstr(err.msg, "unexpected key 'image_encoder.trunk.extra'"));
    remove(p);
}

static void test_variant_tables(void **state)
{
    (void)state;
    assert_int_equal(sb_variant_tensor_count("samed2"), 740);
    assert_int_equal(sb_variant_tensor_count("sam2_hiera_s"), 516);
    assert_int_equal(sb_variant_tensor_count("sam2_hiera_t"), 468);
    assert_int_equal(sb_variant_tensor_count("sam_vit_b"), 314);
    assert_int_equal(sb_variant_tensor_count("vit_h"), -1);
    assert_false(sb_variant_known("vit_h"));
}

/* Tables derived from configs: the official configs give the embedded KEYS
 * tables, the fixture configs give exactly the fixture checkpoints (keys,
 * shapes, order); init-random --config writes such reduced checkpoints. */
static int same_table(const sb_key_shape *a, size_t na, const sb_key_shape *b, size_t nb, char *why, size_t cap)
{
    if (na != nb) {
        snprintf(why, cap, "%zu vs %zu tensors", na, nb);
        return 0;
    }
    for (size_t i = 0; i < na; i++) {
        int ok = strcmp(a[i].key, b[i].key) == 0 && a[i].ndim == b[i].ndim;
        for (int d = 0; ok && d < a[i].ndim; d++)
            ok = a[i].shape[d] == b[i].shape[d];
        if (!ok) {
            snprintf(why, cap, "entry %zu: %s vs %s", i, a[i].key, b[i].key);
            return 0;
        }
    }
    return 1;
}

static void test_config_tables(void **state)
{
    (void)state;
    sb_error err;
    char why[512];
    const char *v[4] = {"samed2", "sam2_hiera_s", "sam2_hiera_t", "sam_vit_b"};
    for (int i = 0; i < 4; i++) {
        size_t n, m;
        sb_key_shape *t;
        const sb_key_shape *e = sb_variant_table(v[i], &n);
        assert_sb_ok(err, sb_key_table_from_config(v[i], NULL, &t, &m, &err));
        if (!same_table(t, m, e, n, why, sizeof why))
            fail_msg("%s: derived table differs from the embedded one: %s", v[i], why);
        sb_key_table_free(t, m);
    }
    static const struct {
        const char *variant, *config, *pth;
        size_t tensors;
        int64_t params;
    } fx[3] = {{"samed2", "samed2_tiny_config.json", "samed2_tiny.pth", 445, 916226},
               {"sam2_hiera_s", "sam2_tiny_config.json", "sam2_tiny.pth", 347, 676666},
               {"sam_vit_b", "sam_vit_tiny_config.json", "sam_vit_tiny.pth", 202, 142476}};
    for (int i = 0; i < 3; i++) {
        char cfg[4096];
        snprintf(cfg, sizeof cfg, "%s", fixture_path(fx[i].config));
        size_t m;
        sb_key_shape *t;
        assert_sb_ok(err, sb_key_table_from_config(fx[i].variant, cfg, &t, &m, &err));
        sb_weights *w;
        assert_sb_ok(err, sb_weights_load(&w, fixture_path(fx[i].pth), &err));
        size_t nw = sb_weights_count(w);
        sb_key_shape *f = calloc(nw, sizeof *f);
        for (size_t k = 0; k < nw; k++) {
            sb_tensor_info ti;
            sb_weights_info(w, k, &ti);
            f[k].key = ti.name;
            f[k].ndim = ti.ndim;
            for (int d = 0; d < ti.ndim && d < 5; d++)
                f[k].shape[d] = ti.shape[d];
        }
        if (!same_table(t, m, f, nw, why, sizeof why))
            fail_msg("%s: derived table differs from %s: %s", fx[i].config, fx[i].pth, why);
        free(f);
        assert_sb_ok(err, sb_weights_validate_config(w, fx[i].variant, cfg, &err));
        sb_weights_free(w);
        sb_key_table_free(t, m);
        /* init-random --config: a reduced checkpoint with exactly those keys and shapes */
        const char *p = temp_path("tiny_random.pth");
        char *out = NULL;
        int rc = run_sambench(&out, "init-random --variant %s --config %s --seed 5 %s", fx[i].variant, cfg, p);
        if (rc != 0)
            fail_msg("init-random --config: %s", out ? out : "");
        free(out);
        assert_sb_ok(err, sb_weights_load(&w, p, &err));
        assert_int_equal(sb_weights_count(w), fx[i].tensors);
        assert_int_equal(sb_weights_parameters(w), fx[i].params);
        assert_sb_ok(err, sb_weights_validate_config(w, fx[i].variant, cfg, &err));
        sb_tensor_info ti;
        sb_weights_info(w, 7, &ti);
        float *buf = malloc((size_t)ti.numel * 4 + 4);
        sb_weights_random_values(ti.name, ti.ndim, ti.shape, 5, buf);
        assert_memory_equal(buf, ti.data, (size_t)ti.numel * 4);
        free(buf);
        sb_weights_free(w);
        remove(p);
    }
    /* a config of the other trunk is refused, naming both */
    sb_key_shape *t;
    size_t m;
    assert_int_equal(sb_key_table_from_config("samed2", fixture_path("sam2_tiny_config.json"), &t, &m, &err),
                     SB_EINVAL);
    assert_non_null(strstr(err.msg, "does not match variant samed2"));
    /* and a wrong shape against a config names key and shapes */
    sb_weights *w;
    assert_sb_ok(err, sb_weights_load(&w, fixture_path("samed2_tiny.pth"), &err));
    assert_int_not_equal(sb_weights_validate_config(w, "samed2", NULL, &err), SB_OK);
    assert_non_null(strstr(err.msg, "expected shape [7, 1, 1, 64], found [7, 1, 1, 16]"));
    sb_weights_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_variant_tables),
        cmocka_unit_test(test_config_tables),
        cmocka_unit_test(test_fixture_checkpoints),
        cmocka_unit_test(test_fixture_values_vs_raw_zip),
        cmocka_unit_test(test_bank_fixture),
        cmocka_unit_test(test_dtypes_and_views),
        cmocka_unit_test(test_legacy_format),
        cmocka_unit_test(test_torch_writer_roundtrip),
        cmocka_unit_test(test_unwrap_and_prefix),
        cmocka_unit_test(test_validation_missing_and_shape),
        cmocka_unit_test(test_init_random_and_convert_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
