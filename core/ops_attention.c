/*
 * Blocked (flash-attention style) multi-head scaled-dot-product attention;
 * contract in core/sambench.h ("Attention").
 *
 * For one (batch, head) and one block of bq queries, the keys are visited in
 * blocks of bk:
 *     S    = scale * Q_blk K_blk^T (+ bias)          sgemm into a bq x bk tile
 *     m'   = max(m, rowmax S);  P = exp(S - m')      in place in the tile
 *     l    = l exp(m - m') + rowsum P
 *     O    = O exp(m - m') + P V_blk                 sgemm, beta = 1
 * and at the end O /= l. O is accumulated directly in the caller's `out`
 * rows (they are ours to write), so the only scratch is the score tile and
 * the m, l, correction vectors: bq * (bk + 3) floats per worker.
 *
 * Threading scheme (chosen by measurement, see bench/bench_ops.c): the work
 * items (batch, head, query block) are independent, so they are spread over
 * the ctx's pthread pool and every worker calls sgemm on its own tiles with
 * OpenBLAS set to ONE thread for the duration of the region (restored
 * after). This keeps the rule of core/sambench.h (our parallel regions never
 * call multi-threaded BLAS; the process never has more than `threads` busy
 * threads), parallelises the exp pass together with the GEMMs, and has no
 * fork/join per tile. The alternative (a serial tile loop with OpenBLAS
 * threading each small sgemm) pays two BLAS fork/joins per tile and leaves
 * the exp pass serial. When there are fewer work items than threads the
 * query block is shrunk (down to 32 rows) to make enough items.
 */
#include "sambench.h"
#include "vecmath.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ATTN_BQ_DEFAULT 256
#define ATTN_BK_DEFAULT 512
#define ATTN_BQ_MIN 32

typedef struct {
    int64_t bq, bk, nqb; /* block sizes and query blocks per (batch, head) */
    int workers;         /* scratch slots */
} attn_plan;

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static attn_plan make_plan(const sb_attn_args *a, int threads)
{
    attn_plan p;
    if (threads < 1)
        threads = 1;
    p.bq = a->block_q > 0 ? a->block_q : ATTN_BQ_DEFAULT;
    p.bk = a->block_k > 0 ? a->block_k : ATTN_BK_DEFAULT;
    p.bq = min64(p.bq, a->Lq > 0 ? a->Lq : 1);
    p.bk = min64(p.bk, a->Lk > 0 ? a->Lk : 1);
    int64_t bh = a->batch * a->heads;
    if (a->block_q <= 0 && threads > 1 && bh > 0) {
        /* enough items for every thread, if the queries allow it */
        while (bh * ((a->Lq + p.bq - 1) / p.bq) < threads && p.bq / 2 >= ATTN_BQ_MIN)
            p.bq /= 2;
    }
    p.nqb = a->Lq > 0 ? (a->Lq + p.bq - 1) / p.bq : 0;
    /* sb_parallel_for may hand an item to any worker id < threads */
    p.workers = (threads > 1 && bh * p.nqb > 1) ? threads : 1;
    return p;
}

/* Per worker: score tile bq*bk, then m, l, corr (bq each), each 64-byte aligned. */
static size_t slot_bytes(const attn_plan *p)
{
    return align64((size_t)(p->bq * p->bk) * sizeof(float)) +
           3 * align64((size_t)p->bq * sizeof(float));
}

size_t sb_attention_scratch_bytes(const sb_attn_args *args, int threads)
{
    if (!args)
        return 0;
    attn_plan p = make_plan(args, threads);
    return (size_t)p.workers * slot_bytes(&p);
}

typedef struct {
    const sb_attn_args *a;
    attn_plan plan;
    unsigned char *scratch; /* workers * slot_bytes */
    size_t slot;
} attn_job;

/*
 * Row pass over the tile: new running max, P = exp(S - m') in place,
 * l = l * corr + rowsum(P), corr = exp(m - m').
 */
static void online_softmax_tile(float *S, int64_t nq, int64_t nk, int64_t ld, float *m, float *l,
                                float *corr)
{
    for (int64_t i = 0; i < nq; i++) {
        float *s = S + i * ld;
        float mx = -INFINITY;
        int64_t j = 0;
#if SB_HAVE_AVX2
        if (nk >= 8) {
            __m256 v0 = _mm256_set1_ps(-INFINITY), v1 = v0;
            for (; j + 16 <= nk; j += 16) {
                v0 = _mm256_max_ps(v0, _mm256_loadu_ps(s + j));
                v1 = _mm256_max_ps(v1, _mm256_loadu_ps(s + j + 8));
            }
            for (; j + 8 <= nk; j += 8)
                v0 = _mm256_max_ps(v0, _mm256_loadu_ps(s + j));
            mx = sb_hmax8(_mm256_max_ps(v0, v1));
        }
#endif
        for (; j < nk; j++)
            mx = s[j] > mx ? s[j] : mx;
        float mnew = m[i] > mx ? m[i] : mx;
        if (mnew == -INFINITY) { /* every key so far masked out by the bias */
            for (j = 0; j < nk; j++)
                s[j] = 0.0f;
            corr[i] = 1.0f;
            continue;
        }
        /* the first finite block of a row: nothing to rescale (exp(-inf)) */
        float c = m[i] == -INFINITY ? 0.0f : sb_expf(m[i] - mnew);
        float sum = 0.0f;
        j = 0;
#if SB_HAVE_AVX2
        {
            __m256 vm = _mm256_set1_ps(mnew);
            __m256 a0 = _mm256_setzero_ps(), a1 = a0;
            for (; j + 16 <= nk; j += 16) {
                __m256 e0 = sb_exp8_nonpos(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm));
                __m256 e1 = sb_exp8_nonpos(_mm256_sub_ps(_mm256_loadu_ps(s + j + 8), vm));
                _mm256_storeu_ps(s + j, e0);
                _mm256_storeu_ps(s + j + 8, e1);
                a0 = _mm256_add_ps(a0, e0);
                a1 = _mm256_add_ps(a1, e1);
            }
            for (; j + 8 <= nk; j += 8) {
                __m256 e0 = sb_exp8_nonpos(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm));
                _mm256_storeu_ps(s + j, e0);
                a0 = _mm256_add_ps(a0, e0);
            }
            sum = sb_hsum8(_mm256_add_ps(a0, a1));
        }
#endif
        for (; j < nk; j++) {
            s[j] = sb_expf(s[j] - mnew);
            sum += s[j];
        }
        m[i] = mnew;
        l[i] = l[i] * c + sum;
        corr[i] = c;
    }
}

static void attn_item(const attn_job *J, int64_t item, unsigned char *slot)
{
    const sb_attn_args *a = J->a;
    const attn_plan *p = &J->plan;
    const int64_t hd = a->head_dim;
    const int64_t qb = item % p->nqb;
    const int64_t bh = item / p->nqb;
    const int64_t h = bh % a->heads, b = bh / a->heads;
    const int64_t q0 = qb * p->bq;
    const int64_t nq = min64(p->bq, a->Lq - q0);

    float *S = (float *)slot;
    float *m = (float *)(slot + align64((size_t)(p->bq * p->bk) * sizeof(float)));
    float *l = (float *)((unsigned char *)m + align64((size_t)p->bq * sizeof(float)));
    float *corr = (float *)((unsigned char *)l + align64((size_t)p->bq * sizeof(float)));

    const float *Q = a->q + b * a->q_batch + q0 * a->q_row + h * hd;
    const float *K = a->k + b * a->k_batch + h * hd;
    const float *V = a->v + b * a->v_batch + h * hd;
    float *O = a->out + b * a->o_batch + q0 * a->o_row + h * hd;
    /* cblas wants ld >= row length even for single-row matrices */
    const blasint ldq = (blasint)(a->q_row > hd ? a->q_row : hd);
    const blasint ldk = (blasint)(a->k_row > hd ? a->k_row : hd);
    const blasint ldv = (blasint)(a->v_row > hd ? a->v_row : hd);
    const blasint ldo = (blasint)(a->o_row > hd ? a->o_row : hd);

    for (int64_t i = 0; i < nq; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
    }
    for (int64_t k0 = 0; k0 < a->Lk; k0 += p->bk) {
        const int64_t nk = min64(p->bk, a->Lk - k0);
        const blasint lds = (blasint)nk;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)nq, (blasint)nk, (blasint)hd,
                    a->scale, Q, ldq, K + k0 * a->k_row, ldk, 0.0f, S, lds);
        if (a->bias)
            a->bias(a->bias_arg, b, h, q0, nq, k0, nk, S, nk);
        online_softmax_tile(S, nq, nk, nk, m, l, corr);
        if (k0 > 0) {
            for (int64_t i = 0; i < nq; i++) {
                float c = corr[i];
                if (c != 1.0f) {
                    float *o = O + i * a->o_row;
                    for (int64_t d = 0; d < hd; d++)
                        o[d] *= c;
                }
            }
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)nq, (blasint)hd, (blasint)nk,
                    1.0f, S, lds, V + k0 * a->v_row, ldv, k0 > 0 ? 1.0f : 0.0f, O, ldo);
    }
    for (int64_t i = 0; i < nq; i++) {
        float inv = 1.0f / l[i];
        float *o = O + i * a->o_row;
        for (int64_t d = 0; d < hd; d++)
            o[d] *= inv;
    }
}

static void attn_range(void *arg, int64_t i0, int64_t i1, int worker)
{
    const attn_job *J = arg;
    unsigned char *slot = J->scratch + (size_t)worker * J->slot;
    for (int64_t it = i0; it < i1; it++)
        attn_item(J, it, slot);
}

static int check_args(const sb_attn_args *a, sb_error *err)
{
    if (!a)
        return sb_fail(err, SB_EINVAL, "attention: args is NULL");
    if (a->batch < 0 || a->heads < 1 || a->Lq < 0 || a->Lk < 1 || a->head_dim < 1)
        return sb_fail(err, SB_EINVAL,
                       "attention: bad sizes batch=%lld heads=%lld Lq=%lld Lk=%lld head_dim=%lld "
                       "(need batch, Lq >= 0 and heads, Lk, head_dim >= 1)",
                       (long long)a->batch, (long long)a->heads, (long long)a->Lq, (long long)a->Lk,
                       (long long)a->head_dim);
    if (!a->q || !a->k || !a->v || !a->out)
        return sb_fail(err, SB_EINVAL, "attention: q, k, v and out must not be NULL");
    int64_t w = a->heads * a->head_dim;
    if ((a->Lq > 1 && (a->q_row < w || a->o_row < w)) || (a->Lk > 1 && (a->k_row < w || a->v_row < w)))
        return sb_fail(err, SB_EINVAL,
                       "attention: row strides q=%lld k=%lld v=%lld out=%lld must be >= heads*head_dim=%lld",
                       (long long)a->q_row, (long long)a->k_row, (long long)a->v_row,
                       (long long)a->o_row, (long long)w);
    if (a->batch > 1 && (a->q_batch < 0 || a->k_batch < 0 || a->v_batch < 0 || a->o_batch < 0))
        return sb_fail(err, SB_EINVAL, "attention: negative batch stride");
    if (a->block_q < 0 || a->block_k < 0)
        return sb_fail(err, SB_EINVAL, "attention: negative block size (0 means default)");
    if (!isfinite(a->scale))
        return sb_fail(err, SB_EINVAL, "attention: scale is not finite");
    int64_t bq = a->block_q > 0 ? a->block_q : ATTN_BQ_DEFAULT;
    int64_t bk = a->block_k > 0 ? a->block_k : ATTN_BK_DEFAULT;
    if (bq > (1 << 20) || bk > (1 << 20) || bq * bk > ((int64_t)1 << 28))
        return sb_fail(err, SB_EINVAL, "attention: block %lld x %lld is too large", (long long)bq,
                       (long long)bk);
    return SB_OK;
}

int sb_attention(sb_ctx *ctx, const sb_attn_args *args, sb_arena *scratch, sb_error *err)
{
    int rc = check_args(args, err);
    if (rc)
        return rc;
    if (args->batch == 0 || args->Lq == 0)
        return SB_OK;
    const int threads = sb_ctx_threads(ctx);
    attn_job J;
    J.a = args;
    J.plan = make_plan(args, threads);
    J.slot = slot_bytes(&J.plan);
    size_t bytes = (size_t)J.plan.workers * J.slot;
    size_t mark = 0;
    void *heap = NULL;
    if (scratch) {
        mark = sb_arena_mark(scratch);
        J.scratch = sb_arena_alloc_checked(scratch, bytes, "attention score tiles", err);
        if (!J.scratch)
            return SB_ENOMEM;
    } else {
        heap = aligned_alloc(64, bytes);
        if (!heap)
            return sb_fail(err, SB_ENOMEM, "attention: cannot allocate %zu bytes of score tiles",
                           bytes);
        J.scratch = heap;
    }
    int64_t items = args->batch * args->heads * J.plan.nqb;
    if (J.plan.workers > 1) {
        /* each worker runs sgemm on its own tiles: BLAS single-threaded meanwhile */
        int blas_threads = openblas_get_num_threads();
        openblas_set_num_threads(1);
        sb_parallel_for(ctx, items, 1, attn_range, &J);
        openblas_set_num_threads(blas_threads);
    } else {
        attn_range(&J, 0, items, 0);
    }
    if (scratch)
        sb_arena_reset(scratch, mark);
    free(heap);
    return SB_OK;
}

void sb_attn_args_packed(sb_attn_args *a, int64_t batch, int64_t heads, int64_t Lq, int64_t Lk,
                         int64_t head_dim, const float *q, const float *k, const float *v, float *out)
{
    const int64_t row = heads * head_dim;
    memset(a, 0, sizeof *a);
    a->batch = batch;
    a->heads = heads;
    a->Lq = Lq;
    a->Lk = Lk;
    a->head_dim = head_dim;
    a->q = q;
    a->q_row = row;
    a->q_batch = Lq * row;
    a->k = k;
    a->k_row = row;
    a->k_batch = Lk * row;
    a->v = v;
    a->v_row = row;
    a->v_batch = Lk * row;
    a->out = out;
    a->o_row = row;
    a->o_batch = Lq * row;
    a->scale = 1.0f / sqrtf((float)head_dim);
}
