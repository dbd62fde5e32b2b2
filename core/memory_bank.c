/*
 * SAMed-2's confidence-driven memory bank (MODEL.md 4): a read-only base
 * (the loaded pkl) plus an overlay holding the list order and the entries
 * that updates inserted. See the samed2 section of sambench.h.
 */
#include "samed2_internal.h"

#ifdef __AVX2__
#include <immintrin.h>
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct sb_membank_base {
    const sb_bank *bank;
    float *feat_norm; /* ||backbone_features_n|| */
    float *mem_norm;  /* ||maskmem_n|| */
};

typedef struct {
    uint16_t *maskmem; /* bf16, C*H*W (MODEL.md 4.3: stored as bf16) */
    uint16_t *pos;     /* bf16 */
    float *feat;       /* float32, feat_len (stored as computed) */
    float iou;
    float feat_norm, mem_norm;
    int used;
} overlay_slot;

struct sb_membank {
    const sb_membank_base *base;
    int scope;
    int64_t n, chw, feat_len;
    int32_t *order; /* n codes */
    overlay_slot *slot;
    int64_t n_slots, cap_slots;
};

static const float NORM_EPS = 1e-12f; /* F.normalize's eps */

static double norm_of(const void *p, int dtype, int64_t n)
{
    double s = 0;
    if (dtype == SB_DT_BF16) {
        const uint16_t *u = p;
        for (int64_t i = 0; i < n; i++) {
            double v = sb_bf16_to_f32(u[i]);
            s += v * v;
        }
    } else {
        const float *f = p;
        for (int64_t i = 0; i < n; i++)
            s += (double)f[i] * f[i];
    }
    return sqrt(s);
}

typedef struct {
    const sb_bank *bk;
    float *fn, *mn;
} norm_job;

static void norm_range(void *arg, int64_t b, int64_t e, int worker)
{
    (void)worker;
    norm_job *j = arg;
    int64_t chw = j->bk->C * j->bk->H * j->bk->W;
    for (int64_t i = b; i < e; i++) {
        j->fn[i] = (float)norm_of(j->bk->feat[i], j->bk->feat_dtype, j->bk->feat_len);
        j->mn[i] = (float)norm_of(j->bk->maskmem[i], j->bk->mem_dtype, chw);
    }
}

int sb_membank_base_create(sb_membank_base **out, const sb_bank *bank, sb_ctx *ctx, sb_error *err)
{
    *out = NULL;
    if (!bank || bank->n < 1 || !bank->maskmem || !bank->feat || !bank->pos)
        return sb_fail(err, SB_EINVAL, "memory bank: empty, or loaded without its payload");
    if (bank->C < 1 || bank->H < 1 || bank->W < 1 || bank->feat_len < 1)
        return sb_fail(err, SB_ESHAPE, "memory bank: bad entry shape (%lld,%lld,%lld), features %lld",
                       (long long)bank->C, (long long)bank->H, (long long)bank->W,
                       (long long)bank->feat_len);
    for (int64_t i = 0; i < bank->n; i++)
        if (!isfinite(bank->iou[i]))
            return sb_fail(err, SB_ENUMERIC, "memory bank: entry %lld has a non-finite iou", (long long)i);
    sb_membank_base *b = calloc(1, sizeof *b);
    if (!b)
        return sb_fail(err, SB_ENOMEM, "memory bank: out of memory");
    b->bank = bank;
    b->feat_norm = malloc((size_t)bank->n * sizeof(float));
    b->mem_norm = malloc((size_t)bank->n * sizeof(float));
    if (!b->feat_norm || !b->mem_norm) {
        sb_membank_base_free(b);
        return sb_fail(err, SB_ENOMEM, "memory bank: out of memory for %lld norms", (long long)bank->n);
    }
    norm_job j = {bank, b->feat_norm, b->mem_norm};
    sb_parallel_for(ctx, bank->n, 1, norm_range, &j);
    *out = b;
    return SB_OK;
}

void sb_membank_base_free(sb_membank_base *b)
{
    if (!b)
        return;
    free(b->feat_norm);
    free(b->mem_norm);
    free(b);
}

const sb_bank *sb_membank_base_bank(const sb_membank_base *b) { return b->bank; }

static void slot_release(overlay_slot *s)
{
    free(s->maskmem);
    free(s->pos);
    free(s->feat);
    memset(s, 0, sizeof *s);
}

void sb_membank_reset(sb_membank *mb)
{
    for (int64_t i = 0; i < mb->n; i++)
        mb->order[i] = (int32_t)i;
    for (int64_t s = 0; s < mb->n_slots; s++)
        slot_release(&mb->slot[s]);
    mb->n_slots = 0;
}

int sb_membank_create(sb_membank **out, const sb_membank_base *base, int scope, sb_error *err)
{
    *out = NULL;
    if (!base || (scope != SB_BANK_GLOBAL && scope != SB_BANK_VOLUME))
        return sb_fail(err, SB_EINVAL, "memory bank: bad base or scope");
    const sb_bank *bk = base->bank;
    if (bk->n > INT32_MAX / 2)
        return sb_fail(err, SB_EINVAL, "memory bank: %lld entries is too many", (long long)bk->n);
    sb_membank *mb = calloc(1, sizeof *mb);
    if (!mb)
        return sb_fail(err, SB_ENOMEM, "memory bank: out of memory");
    mb->base = base;
    mb->scope = scope;
    mb->n = bk->n;
    mb->chw = bk->C * bk->H * bk->W;
    mb->feat_len = bk->feat_len;
    mb->order = malloc((size_t)mb->n * sizeof(int32_t));
    if (!mb->order) {
        free(mb);
        return sb_fail(err, SB_ENOMEM, "memory bank: out of memory");
    }
    sb_membank_reset(mb);
    *out = mb;
    return SB_OK;
}

void sb_membank_free(sb_membank *mb)
{
    if (!mb)
        return;
    for (int64_t s = 0; s < mb->n_slots; s++)
        slot_release(&mb->slot[s]);
    free(mb->slot);
    free(mb->order);
    free(mb);
}

int sb_membank_scope(const sb_membank *mb) { return mb->scope; }

void sb_membank_begin_volume(sb_membank *mb)
{
    if (mb->scope == SB_BANK_VOLUME)
        sb_membank_reset(mb);
}

int64_t sb_membank_entries(const sb_membank *mb) { return mb->n; }

void sb_membank_order(const sb_membank *mb, int32_t *codes)
{
    memcpy(codes, mb->order, (size_t)mb->n * sizeof(int32_t));
}

size_t sb_membank_overlay_bytes(const sb_membank *mb)
{
    size_t bytes = sizeof *mb + (size_t)mb->n * sizeof(int32_t) +
                   (size_t)mb->cap_slots * sizeof(overlay_slot);
    for (int64_t s = 0; s < mb->n_slots; s++)
        if (mb->slot[s].used)
            bytes += (size_t)mb->chw * 2 * sizeof(uint16_t) + (size_t)mb->feat_len * sizeof(float);
    return bytes;
}

void sb_membank_shape(const sb_membank *mb, int64_t *C, int64_t *H, int64_t *W, int64_t *feat_len)
{
    const sb_bank *bk = mb->base->bank;
    if (C)
        *C = bk->C;
    if (H)
        *H = bk->H;
    if (W)
        *W = bk->W;
    if (feat_len)
        *feat_len = bk->feat_len;
}

/* Entry accessors: payload pointer + dtype of the entry at order code c. */
static const void *entry_feat(const sb_membank *mb, int32_t c, int *dtype)
{
    if (c >= 0) {
        *dtype = mb->base->bank->feat_dtype;
        return mb->base->bank->feat[c];
    }
    *dtype = SB_DT_F32;
    return mb->slot[-1 - c].feat;
}

static const void *entry_maskmem(const sb_membank *mb, int32_t c, int *dtype)
{
    if (c >= 0) {
        *dtype = mb->base->bank->mem_dtype;
        return mb->base->bank->maskmem[c];
    }
    *dtype = SB_DT_BF16;
    return mb->slot[-1 - c].maskmem;
}

static const void *entry_pos(const sb_membank *mb, int32_t c, int *dtype)
{
    if (c >= 0) {
        *dtype = mb->base->bank->pos_dtype;
        return mb->base->bank->pos[c];
    }
    *dtype = SB_DT_BF16;
    return mb->slot[-1 - c].pos;
}

static float entry_iou(const sb_membank *mb, int32_t c)
{
    return c >= 0 ? mb->base->bank->iou[c] : mb->slot[-1 - c].iou;
}

static float entry_feat_norm(const sb_membank *mb, int32_t c)
{
    return c >= 0 ? mb->base->feat_norm[c] : mb->slot[-1 - c].feat_norm;
}

static float entry_mem_norm(const sb_membank *mb, int32_t c)
{
    return c >= 0 ? mb->base->mem_norm[c] : mb->slot[-1 - c].mem_norm;
}

void sb_membank_entry_f32(const sb_membank *mb, int64_t pos, float *maskmem, float *mem_pos,
                          float *iou)
{
    int32_t c = mb->order[pos];
    int dt;
    if (maskmem) {
        const void *p = entry_maskmem(mb, c, &dt);
        sb_bank_to_f32(p, dt, mb->chw, maskmem);
    }
    if (mem_pos) {
        const void *p = entry_pos(mb, c, &dt);
        sb_bank_to_f32(p, dt, mb->chw, mem_pos);
    }
    if (iou)
        *iou = entry_iou(mb, c);
}

/* <x, f> over n floats: float partial sums over blocks of 1024 (8 lanes,
 * vectorisable), accumulated in double. */
/* Dot products of the B rows of x[B, len] with the payloads of entries
 * [n0, n1) (positions in the current order), into dots[n * B + b].
 * Chunk-major: for each 1024-element block, every entry's block is read once
 * (the bank streams from memory once per call, widened from bf16 on the fly)
 * while the B rows' block stays in cache; entry-major order re-read x, which
 * does not fit in cache at full size (4 MiB a row), once per entry. Within a
 * block each row accumulates in eight float lanes with FMA, the lanes are
 * summed in double and the blocks in double: the same arithmetic in any
 * loop order, so the result does not depend on the thread split. */
static inline float bank_elem(const void *p, int dtype, int64_t i)
{
    return dtype == SB_DT_BF16 ? sb_bf16_to_f32(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

static double lanes_sum(const float a[8])
{
    return (((double)a[0] + a[1]) + ((double)a[2] + a[3])) + (((double)a[4] + a[5]) + ((double)a[6] + a[7]));
}

/* One row's sum over [i, e) (e - i <= 1024): eight float lanes with FMA,
 * the lanes summed in double. */
static double block_dot(const float *xr, const void *p, int dtype, int64_t i, int64_t e)
{
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#ifdef __AVX2__
    __m256 va = _mm256_setzero_ps();
    if (dtype == SB_DT_BF16) {
        const uint16_t *h = p;
        for (; i + 8 <= e; i += 8) {
            __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(h + i)));
            va = _mm256_fmadd_ps(_mm256_loadu_ps(xr + i), _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)), va);
        }
    } else {
        const float *g = p;
        for (; i + 8 <= e; i += 8)
            va = _mm256_fmadd_ps(_mm256_loadu_ps(xr + i), _mm256_loadu_ps(g + i), va);
    }
    _mm256_storeu_ps(acc, va);
#else
    for (; i + 8 <= e; i += 8)
        for (int u = 0; u < 8; u++)
            acc[u] = fmaf(xr[i + u], bank_elem(p, dtype, i + u), acc[u]);
#endif
    for (; i < e; i++)
        acc[0] = fmaf(xr[i], bank_elem(p, dtype, i), acc[0]);
    return lanes_sum(acc);
}

enum { DOTS_CHUNK = 4096 }; /* a chunk of x's B rows stays in L2 while every entry's chunk passes */

static void dots_block(const float *x, int64_t B, int64_t len, const void *const *pay, const int *dt, int64_t nent,
                       double *dots)
{
    for (int64_t q = 0; q < nent * B; q++)
        dots[q] = 0;
    for (int64_t c0 = 0; c0 < len; c0 += DOTS_CHUNK) {
        const int64_t ce = len - c0 < DOTS_CHUNK ? len : c0 + DOTS_CHUNK;
        for (int64_t n = 0; n < nent; n++)
            for (int64_t b = 0; b < B; b++) {
                double sum = 0; /* the chunk's blocks, then the chunk into the total */
                for (int64_t i0 = c0; i0 < ce; i0 += 1024)
                    sum += block_dot(x + b * len, pay[n], dt[n], i0, ce - i0 < 1024 ? ce : i0 + 1024);
                dots[n * B + b] += sum;
            }
    }
}

enum { DOTS_GROUP = 64 }; /* entries per pass: their block pointers and x's block stay in cache */

typedef struct {
    const sb_membank *mb;
    const float *x;
    int64_t B, len;
    int feat;     /* 1: backbone features, 0: maskmem */
    double *dots; /* [N, B] */
} dots_job;

static void dots_range(void *arg, int64_t b, int64_t e, int worker)
{
    (void)worker;
    dots_job *j = arg;
    const void *pay[DOTS_GROUP];
    int dt[DOTS_GROUP];
    for (int64_t g = b; g < e; g += DOTS_GROUP) {
        const int64_t ng = e - g < DOTS_GROUP ? e - g : DOTS_GROUP;
        for (int64_t n = 0; n < ng; n++) {
            int32_t c = j->mb->order[g + n];
            pay[n] = j->feat ? entry_feat(j->mb, c, &dt[n]) : entry_maskmem(j->mb, c, &dt[n]);
        }
        dots_block(j->x, j->B, j->len, pay, dt, ng, j->dots + g * j->B);
    }
}

static float sigmoidf_ref(float x) { return 1.0f / (1.0f + expf(-x)); }

int sb_membank_select(const sb_membank *mb, sb_ctx *ctx, const float *cur, int64_t B, int64_t len,
                      int64_t k, int32_t *idx, float *scores, sb_arena *a, sb_error *err)
{
    if (len != mb->feat_len)
        return sb_fail(err, SB_ESHAPE,
                       "memory bank: current features have %lld values but the bank's backbone features have %lld",
                       (long long)len, (long long)mb->feat_len);
    if (k < 1 || k > mb->n)
        return sb_fail(err, SB_EINVAL, "memory bank: top-%lld selection from %lld entries", (long long)k,
                       (long long)mb->n);
    size_t mark = a ? sb_arena_mark(a) : 0;
    size_t dots_bytes = (size_t)(mb->n * B) * sizeof(double);
    double *dots = a ? sb_arena_alloc_checked(a, dots_bytes, "bank similarity", err) : malloc(dots_bytes);
    double *sc = a ? sb_arena_alloc_checked(a, dots_bytes, "bank scores", err) : malloc(dots_bytes);
    if (!dots || !sc) {
        if (!a) {
            free(dots);
            free(sc);
        } else {
            sb_arena_reset(a, mark);
        }
        return a ? SB_ENOMEM : sb_fail(err, SB_ENOMEM, "memory bank: out of memory for selection");
    }
    dots_job j = {mb, cur, B, len, 1, dots};
    sb_parallel_for(ctx, mb->n, 1, dots_range, &j);
    for (int64_t b = 0; b < B; b++) {
        double cn = 0;
        const float *x = cur + b * len;
        for (int64_t i = 0; i < len; i++)
            cn += (double)x[i] * x[i];
        float cnorm = (float)sqrt(cn);
        if (cnorm < NORM_EPS)
            cnorm = NORM_EPS;
        for (int64_t n = 0; n < mb->n; n++) {
            int32_t c = mb->order[n];
            float fnorm = entry_feat_norm(mb, c);
            if (fnorm < NORM_EPS)
                fnorm = NORM_EPS;
            float s = (float)(dots[n * B + b] / ((double)cnorm * (double)fnorm));
            if (s < 0.0f) /* .clamp(min=0) */
                s = 0.0f;
            /* the iou is already a sigmoid output: sigmoid again (MODEL.md 4.2) */
            float v = s + sigmoidf_ref(entry_iou(mb, c));
            sc[b * mb->n + n] = v;
            if (scores)
                scores[b * mb->n + n] = v;
        }
        /* top-k, best first; ties keep the lower position first */
        const double *row = sc + b * mb->n;
        for (int64_t t = 0; t < k; t++) {
            int64_t best = -1;
            for (int64_t n = 0; n < mb->n; n++) {
                int taken = 0;
                for (int64_t u = 0; u < t; u++)
                    if (idx[b * k + u] == n) {
                        taken = 1;
                        break;
                    }
                if (taken)
                    continue;
                if (best < 0 || row[n] > row[best])
                    best = n;
            }
            idx[b * k + t] = (int32_t)best;
        }
    }
    if (a)
        sb_arena_reset(a, mark);
    else {
        free(dots);
        free(sc);
    }
    return SB_OK;
}

static int slot_take(sb_membank *mb, int64_t *out, sb_error *err)
{
    for (int64_t s = 0; s < mb->n_slots; s++)
        if (!mb->slot[s].used) {
            *out = s;
            return SB_OK;
        }
    if (mb->n_slots == mb->cap_slots) {
        int64_t cap = mb->cap_slots ? 2 * mb->cap_slots : 8;
        overlay_slot *ns = realloc(mb->slot, (size_t)cap * sizeof *ns);
        if (!ns)
            return sb_fail(err, SB_ENOMEM, "memory bank: out of memory for the overlay");
        memset(ns + mb->cap_slots, 0, (size_t)(cap - mb->cap_slots) * sizeof *ns);
        mb->slot = ns;
        mb->cap_slots = cap;
    }
    overlay_slot *s = &mb->slot[mb->n_slots];
    s->maskmem = malloc((size_t)mb->chw * sizeof(uint16_t));
    s->pos = malloc((size_t)mb->chw * sizeof(uint16_t));
    s->feat = malloc((size_t)mb->feat_len * sizeof(float));
    if (!s->maskmem || !s->pos || !s->feat) {
        slot_release(s);
        return sb_fail(err, SB_ENOMEM, "memory bank: out of memory for a new entry");
    }
    *out = mb->n_slots++;
    return SB_OK;
}

int sb_membank_update(sb_membank *mb, const float *maskmem, const float *mem_pos,
                      const float *iou, const float *feat, int64_t B, int32_t *replaced,
                      int32_t *order_after, sb_error *err)
{
    if (B < 1)
        return sb_fail(err, SB_EINVAL, "memory bank update: empty batch");
    for (int64_t b = 0; b < B; b++)
        if (!isfinite(iou[b]))
            return sb_fail(err, SB_ENUMERIC, "memory bank update: item %lld has a non-finite iou",
                           (long long)b);
    const int64_t chw = mb->chw, N = mb->n;
    /* everything that can fail first: rounded copies, dots, enough free slots */
    float *rounded = malloc((size_t)chw * sizeof(float));
    double *dots = malloc((size_t)N * sizeof(double));
    int32_t *before = malloc((size_t)N * sizeof(int32_t));
    int64_t *slots = malloc((size_t)B * sizeof(int64_t));
    int rc = SB_OK;
    if (!rounded || !dots || !before || !slots) {
        rc = sb_fail(err, SB_ENOMEM, "memory bank update: out of memory");
        goto done;
    }
    for (int64_t b = 0; b < B; b++) {
        if ((rc = slot_take(mb, &slots[b], err)))
            goto done;
        mb->slot[slots[b]].used = 2; /* reserved for this update */
    }
    memcpy(before, mb->order, (size_t)N * sizeof(int32_t));
    for (int64_t b = 0; b < B; b++) {
        overlay_slot *s = &mb->slot[slots[b]];
        /* new entries are stored in bf16 (round to nearest even), MODEL.md 4.3 / 6.10 */
        for (int64_t i = 0; i < chw; i++) {
            s->maskmem[i] = sb_f32_to_bf16(maskmem[b * chw + i]);
            s->pos[i] = sb_f32_to_bf16(mem_pos[b * chw + i]);
            rounded[i] = sb_bf16_to_f32(s->maskmem[i]);
        }
        double nn = 0;
        for (int64_t i = 0; i < chw; i++)
            nn += (double)rounded[i] * rounded[i];
        float newnorm = (float)sqrt(nn);
        float nclamp = newnorm < NORM_EPS ? NORM_EPS : newnorm;
        dots_job j = {mb, rounded, 1, chw, 0, dots};
        dots_range(&j, 0, N, 0);
        int64_t best = 0;
        float best_s = 0;
        for (int64_t n = 0; n < N; n++) {
            float en = entry_mem_norm(mb, mb->order[n]);
            if (en < NORM_EPS)
                en = NORM_EPS;
            float sim = (float)(dots[n] / ((double)en * (double)nclamp));
            if (n == 0 || sim > best_s) { /* argmax: first maximum */
                best = n;
                best_s = sim;
            }
        }
        int32_t victim = mb->order[best];
        if (iou[b] > entry_iou(mb, victim)) {
            s->iou = iou[b];
            memcpy(s->feat, feat + b * mb->feat_len, (size_t)mb->feat_len * sizeof(float));
            double fn = 0;
            for (int64_t i = 0; i < mb->feat_len; i++)
                fn += (double)s->feat[i] * s->feat[i];
            s->feat_norm = (float)sqrt(fn);
            s->mem_norm = newnorm;
            s->used = 1;
            /* remove the victim, append the new entry (list.pop + append) */
            memmove(mb->order + best, mb->order + best + 1, (size_t)(N - 1 - best) * sizeof(int32_t));
            mb->order[N - 1] = (int32_t)(-1 - slots[b]);
            if (victim < 0)
                mb->slot[-1 - victim].used = 0; /* its arrays are reused by later inserts */
            if (replaced)
                replaced[b] = (int32_t)best;
        } else if (replaced) {
            replaced[b] = -1;
        }
    }
    if (order_after) {
        for (int64_t i = 0; i < N; i++) {
            int32_t c = mb->order[i];
            order_after[i] = INT32_MIN;
            for (int64_t p = 0; p < N; p++)
                if (before[p] == c) {
                    order_after[i] = (int32_t)p;
                    break;
                }
            if (order_after[i] == INT32_MIN)
                for (int64_t b = 0; b < B; b++)
                    if (c == -1 - slots[b])
                        order_after[i] = (int32_t)(-(b + 1));
        }
    }
done:
    /* slots reserved for items that did not replace anything go back */
    for (int64_t i = 0; i < mb->n_slots; i++)
        if (mb->slot[i].used == 2)
            mb->slot[i].used = 0;
    free(rounded);
    free(dots);
    free(before);
    free(slots);
    return rc;
}
