/*
 * Blocked attention (core/ops_attention.c) against a naive double-precision
 * softmax(scale q k^T + bias) v: several block sizes (including 1 x 1 and
 * blocks that do not divide the lengths), batch and heads, strided layouts
 * (q/k/v as views into packed qkv rows, padded out rows), an additive bias
 * through the callback (checked to receive the right tile offsets), fully
 * masked key blocks, 1-3 threads; the scratch accounting; and a
 * 4096 queries x 16384 keys run whose extra memory, measured by the arena
 * passed as scratch, stays under 64 MiB.
 */
#include "util_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tolerance: each output is a convex combination of v values in [-1, 1];
 * the float path has exp (~1.2e-7 relative per weight), score GEMMs of
 * length head_dim <= 64 (~1e-7 relative, times |scale q k| <= ~10 in the
 * exponent: ~1e-6 relative on a weight) and the P v GEMM / running sums over
 * Lk <= 16384 terms. Observed errors are ~1e-7; the 1e-5 relative to
 * max |out| holds with margin. */
#define ATTN_REL_TOL 1e-5

typedef struct {
    int64_t batch, heads, Lq, Lk, hd;
    /* layout: q, k, v live in one packed row [q | k | v] per token of width
     * 3*H*hd + pad (a qkv projection output); out rows have width H*hd + opad */
    int64_t pad, opad;
    int64_t bq, bk;
    int bias;    /* 0 none, 1 smooth, 2 smooth + masks (-inf) */
    int threads;
} attn_case;

/* bias(b, h, i, j) with the query/key indices of the full problem */
static double bias_value(int kind, int64_t b, int64_t h, int64_t i, int64_t j)
{
    if (kind == 0)
        return 0.0;
    if (kind == 2) {
        /* even queries: keys below 20 masked (whole first blocks for small bk);
         * every 7th key masked for all */
        if ((i % 2 == 0 && j < 20) || j % 7 == 3)
            return -INFINITY;
    }
    return 0.5 * sin(0.37 * (double)i - 0.11 * (double)j + 0.7 * (double)h + 1.3 * (double)b);
}

typedef struct {
    int kind;
    int64_t Lq, Lk;
    int calls;
    int bad; /* offsets outside the problem */
} bias_ctx;

static void bias_cb(void *arg, int64_t b, int64_t h, int64_t q0, int64_t nq, int64_t k0, int64_t nk,
                    float *scores, int64_t ld)
{
    bias_ctx *bc = arg;
    __atomic_add_fetch(&bc->calls, 1, __ATOMIC_RELAXED);
    if (q0 < 0 || k0 < 0 || nq < 1 || nk < 1 || q0 + nq > bc->Lq || k0 + nk > bc->Lk || ld < nk)
        __atomic_store_n(&bc->bad, 1, __ATOMIC_RELAXED);
    for (int64_t i = 0; i < nq; i++)
        for (int64_t j = 0; j < nk; j++)
            scores[i * ld + j] += (float)bias_value(bc->kind, b, h, q0 + i, k0 + j);
}

static void attn_ref(const attn_case *c, const float *qkv, float scale, float *ref)
{
    const int64_t H = c->heads, hd = c->hd, row = 3 * H * hd + c->pad, orow = H * hd + c->opad;
    double *s = malloc((size_t)c->Lk * sizeof *s);
    assert_non_null(s);
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < c->Lq; i++) {
                const float *q = qkv + (b * c->Lq + i) * row + h * hd;
                double m = -INFINITY;
                for (int64_t j = 0; j < c->Lk; j++) {
                    const float *k = qkv + (b * c->Lk + j) * row + H * hd + h * hd;
                    double acc = 0;
                    for (int64_t d = 0; d < hd; d++)
                        acc += (double)q[d] * k[d];
                    s[j] = (double)scale * acc + bias_value(c->bias, b, h, i, j);
                    m = fmax(m, s[j]);
                }
                double sum = 0;
                for (int64_t j = 0; j < c->Lk; j++)
                    sum += (s[j] = exp(s[j] - m));
                for (int64_t d = 0; d < hd; d++) {
                    double acc = 0;
                    for (int64_t j = 0; j < c->Lk; j++)
                        acc += s[j] * qkv[(b * c->Lk + j) * row + 2 * H * hd + h * hd + d];
                    ref[(b * c->Lq + i) * orow + h * hd + d] = (float)(acc / sum);
                }
            }
    free(s);
}

static void run_case(const attn_case *c, uint64_t seed)
{
    const int64_t H = c->heads, hd = c->hd, row = 3 * H * hd + c->pad, orow = H * hd + c->opad;
    /* queries and keys share the packed buffer; Lk rows cover both when Lq <= Lk */
    const int64_t L = c->Lq > c->Lk ? c->Lq : c->Lk;
    const size_t nin = (size_t)(c->batch * L * row), nout = (size_t)(c->batch * c->Lq * orow);
    float *qkv = malloc(nin * sizeof(float)), *out = malloc(nout * sizeof(float)),
          *ref = malloc(nout * sizeof(float));
    assert_true(qkv && out && ref);
    fill_uniform(qkv, nin, seed, -1, 1);
    for (size_t i = 0; i < nout; i++)
        out[i] = ref[i] = 7.0f; /* padding columns must stay untouched */
    const float scale = 1.0f / sqrtf((float)hd) * 2.0f; /* sharper than usual softmax */

    /* packed rows: q of query i is row i of its batch; k/v of key j are row j */
    sb_attn_args a;
    memset(&a, 0, sizeof a);
    a.batch = c->batch;
    a.heads = H;
    a.Lq = c->Lq;
    a.Lk = c->Lk;
    a.head_dim = hd;
    a.q = qkv;
    a.q_row = row;
    a.q_batch = c->Lq * row;
    a.k = qkv + H * hd;
    a.k_row = row;
    a.k_batch = c->Lk * row;
    a.v = qkv + 2 * H * hd;
    a.v_row = row;
    a.v_batch = c->Lk * row;
    a.out = out;
    a.o_row = orow;
    a.o_batch = c->Lq * orow;
    a.scale = scale;
    bias_ctx bc = {c->bias, c->Lq, c->Lk, 0, 0};
    if (c->bias) {
        a.bias = bias_cb;
        a.bias_arg = &bc;
    }
    a.block_q = c->bq;
    a.block_k = c->bk;
    /* batch b's queries are packed rows b*Lq.., its keys rows b*Lk.. (the
     * reference uses the same convention) */
    attn_ref(c, qkv, scale, ref);

    sb_error err;
    sb_ctx *ctx = NULL;
    assert_sb_ok(err, sb_ctx_create(&ctx, c->threads, &err));
    sb_arena *arena = NULL;
    const size_t need = sb_attention_scratch_bytes(&a, c->threads);
    assert_sb_ok(err, sb_arena_create(&arena, need, &err));
    assert_sb_ok(err, sb_attention(ctx, &a, arena, &err));
    /* the plan is exact: the arena was sized by it and fully used */
    assert_int_equal(sb_arena_peak(arena), need);
    assert_int_equal(sb_arena_used(arena), 0);

    char label[160];
    snprintf(label, sizeof label, "attn B%lld H%lld %lldx%lld hd%lld blk %lldx%lld bias%d thr%d",
             (long long)c->batch, (long long)H, (long long)c->Lq, (long long)c->Lk, (long long)hd,
             (long long)c->bq, (long long)c->bk, c->bias, c->threads);
    /* padding columns untouched; valid ones compared on their own */
    size_t nvalid = 0;
    float *gv = malloc(nout * sizeof(float)), *rv = malloc(nout * sizeof(float));
    assert_true(gv && rv);
    for (size_t i = 0; i < nout; i++) {
        if ((int64_t)(i % (size_t)orow) >= H * hd) {
            assert_true(out[i] == 7.0f);
            continue;
        }
        gv[nvalid] = out[i];
        rv[nvalid++] = ref[i];
    }
    cmp_stats st = compare_f32(label, gv, rv, nvalid);
    assert_true(st.max_rel <= ATTN_REL_TOL);
    free(gv), free(rv);
    if (c->bias) {
        assert_true(bc.calls > 0);
        assert_int_equal(bc.bad, 0);
    }
    /* same result, bit for bit, with malloc'ed scratch (no arena) */
    float *out2 = malloc(nout * sizeof(float));
    assert_non_null(out2);
    for (size_t i = 0; i < nout; i++)
        out2[i] = 7.0f;
    a.out = out2;
    assert_sb_ok(err, sb_attention(ctx, &a, NULL, &err));
    assert_memory_equal(out2, out, nout * sizeof(float));
    free(out2);
    sb_arena_free(arena);
    sb_ctx_free(ctx);
    free(qkv), free(out), free(ref);
}

static void test_attention_blocks(void **state)
{
    (void)state;
    const int64_t blocks[][2] = {{0, 0}, {1, 1}, {3, 5}, {7, 16}, {64, 32}, {1000, 1000}};
    uint64_t seed = 100;
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++)
        for (int bias = 0; bias <= 2; bias++) {
            attn_case c = {2, 3, 37, 53, 13, 5, 3, blocks[i][0], blocks[i][1], bias, 1};
            run_case(&c, seed++);
        }
}

static void test_attention_shapes_threads(void **state)
{
    (void)state;
    const attn_case cases[] = {
        /* batch heads Lq Lk hd pad opad bq bk bias threads */
        {1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1},
        {1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 2},
        {1, 2, 1, 300, 8, 1, 0, 0, 64, 1, 2},    /* one query, many key blocks */
        {3, 1, 300, 1, 8, 0, 1, 0, 0, 1, 3},     /* one key */
        {1, 8, 7, 129, 16, 0, 0, 0, 0, 2, 2},    /* decoder-like: few tokens, 8 heads */
        {2, 2, 257, 200, 32, 2, 5, 0, 0, 2, 3},  /* default blocks, uneven split */
        {1, 1, 600, 700, 64, 0, 0, 256, 512, 1, 2},
        {1, 1, 513, 1100, 9, 0, 0, 0, 0, 0, 1},  /* defaults with a partial last block */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i], 200 + i);
}

static void test_attention_errors(void **state)
{
    (void)state;
    sb_error err;
    float buf[64] = {0};
    sb_attn_args a;
    memset(&a, 0, sizeof a);
    a.batch = 1, a.heads = 2, a.Lq = 2, a.Lk = 2, a.head_dim = 4;
    a.q = a.k = a.v = buf;
    a.out = buf + 32;
    a.q_row = a.k_row = a.v_row = a.o_row = 8;
    a.scale = 0.5f;
    assert_int_equal(sb_attention(NULL, NULL, NULL, &err), SB_EINVAL);
    a.q_row = 4; /* < heads * head_dim */
    assert_int_equal(sb_attention(NULL, &a, NULL, &err), SB_EINVAL);
    assert_non_null(strstr(err.msg, "row strides"));
    a.q_row = 8;
    a.head_dim = 0;
    assert_int_equal(sb_attention(NULL, &a, NULL, &err), SB_EINVAL);
    assert_non_null(strstr(err.msg, "head_dim=0"));
    a.head_dim = 4;
    a.scale = NAN;
    assert_int_equal(sb_attention(NULL, &a, NULL, &err), SB_EINVAL);
    a.scale = 0.5f;
    a.v = NULL;
    assert_int_equal(sb_attention(NULL, &a, NULL, &err), SB_EINVAL);
    a.v = buf;
    /* scratch too small: a clear ENOMEM naming the request, arena unchanged */
    sb_arena *small;
    assert_sb_ok(err, sb_arena_create(&small, 64, &err));
    assert_int_equal(sb_attention(NULL, &a, small, &err), SB_ENOMEM);
    assert_non_null(strstr(err.msg, "attention"));
    assert_int_equal(sb_arena_used(small), 0);
    sb_arena_free(small);
    /* valid: succeeds with a measuring-size arena */
    sb_arena *ok;
    assert_sb_ok(err, sb_arena_create(&ok, sb_attention_scratch_bytes(&a, 1), &err));
    assert_sb_ok(err, sb_attention(NULL, &a, ok, &err));
    sb_arena_free(ok);
}

/*
 * 4096 queries x 16384 keys, 1 head: the full score matrix would be 256 MiB;
 * the blocked version's extra memory is the arena peak (score tiles), which
 * must stay under 64 MiB, at 1 and 2 threads. head_dim 16 keeps it fast
 * under the sanitizers (~4.3 GFLOP). Rows spread over the output are checked
 * against the double reference.
 */
static void test_attention_large_memory(void **state)
{
    (void)state;
    const int64_t Lq = 4096, Lk = 16384, hd = 16;
    float *q = malloc((size_t)(Lq * hd) * sizeof(float)), *kv = malloc((size_t)(2 * Lk * hd) * sizeof(float));
    float *out = malloc((size_t)(Lq * hd) * sizeof(float));
    assert_true(q && kv && out);
    fill_uniform(q, (size_t)(Lq * hd), 301, -1, 1);
    fill_uniform(kv, (size_t)(2 * Lk * hd), 302, -1, 1);
    sb_attn_args a;
    memset(&a, 0, sizeof a);
    a.batch = 1, a.heads = 1, a.Lq = Lq, a.Lk = Lk, a.head_dim = hd;
    a.q = q, a.q_row = hd, a.q_batch = Lq * hd;
    a.k = kv, a.k_row = hd, a.k_batch = Lk * hd;
    a.v = kv + Lk * hd, a.v_row = hd, a.v_batch = Lk * hd;
    a.out = out, a.o_row = hd, a.o_batch = Lq * hd;
    a.scale = 0.25f;
    const size_t limit = 64u << 20;
    for (int threads = 1; threads <= 2; threads++) {
        sb_error err;
        sb_ctx *ctx;
        assert_sb_ok(err, sb_ctx_create(&ctx, threads, &err));
        sb_arena *arena;
        assert_sb_ok(err, sb_arena_create(&arena, limit, &err)); /* never more than 64 MiB */
        assert_sb_ok(err, sb_attention(ctx, &a, arena, &err));
        size_t peak = sb_arena_peak(arena);
        printf("  attention 4096q x 16384k hd16 thr=%d: scratch peak %.2f MiB (limit 64 MiB, full "
               "scores would be %.0f MiB)\n",
               threads, (double)peak / 1048576.0, (double)Lq * (double)Lk * 4 / 1048576.0);
        assert_true(peak > 0 && peak < limit);
        assert_int_equal(peak, sb_attention_scratch_bytes(&a, threads));
        /* spot-check rows against the double reference */
        const int64_t rows[] = {0, 1, 255, 256, 2047, 4095};
        double *s = malloc((size_t)Lk * sizeof *s);
        assert_non_null(s);
        float got[6 * 16], ref[6 * 16];
        for (int r = 0; r < 6; r++) {
            const float *qi = q + rows[r] * hd;
            double m = -INFINITY, sum = 0;
            for (int64_t j = 0; j < Lk; j++) {
                double acc = 0;
                for (int64_t d = 0; d < hd; d++)
                    acc += (double)qi[d] * kv[j * hd + d];
                s[j] = 0.25 * acc;
                m = fmax(m, s[j]);
            }
            for (int64_t j = 0; j < Lk; j++)
                sum += (s[j] = exp(s[j] - m));
            for (int64_t d = 0; d < hd; d++) {
                double acc = 0;
                for (int64_t j = 0; j < Lk; j++)
                    acc += s[j] * kv[(Lk + j) * hd + d];
                ref[r * hd + d] = (float)(acc / sum);
                got[r * hd + d] = out[rows[r] * hd + d];
            }
        }
        free(s);
        assert_true(compare_f32("attention 4096x16384 sampled rows", got, ref, 6 * 16).max_rel <=
                    ATTN_REL_TOL);
        sb_arena_free(arena);
        sb_ctx_free(ctx);
    }
    free(q), free(kv), free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention_blocks),
        cmocka_unit_test(test_attention_shapes_threads),
        cmocka_unit_test(test_attention_errors),
        cmocka_unit_test(test_attention_large_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
