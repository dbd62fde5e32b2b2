/*
 * Private vector math for the tensor ops (core/ops_linear.c,
 * core/ops_attention.c): a float exp and erfc that vectorise, with AVX2+FMA
 * versions (8 lanes) when the compiler targets them and scalar versions that
 * compute the same formula (used for loop tails and non-AVX2 builds).
 *
 * exp: x = n ln2 + r with n = rint(x log2 e), |r| <= ln2/2 (Cody-Waite split
 *   of ln2 so r is exact to ~1e-10), exp(r) by its degree-7 Taylor polynomial
 *   (truncation error r^8/8! <= 5.3e-9 relative), 2^n built in the exponent
 *   bits. Max relative error against double exp, measured over every
 *   float in [-87.3, 88]: 7.9e-8 (scalar and AVX2 alike; the sigmoid test
 *   in tests/test_ops_linear.c checks it through sb_sigmoid). Inputs below -87.33
 *   (where 2^n would be subnormal) return 0; inputs above 88.3 are clamped
 *   (callers only use x <= 0 or bounded arguments). NaN propagates.
 * erfc: the Chebyshev-fitted form erfc(z) = t exp(-z^2 + P(t)), t = 1/(1+z/2)
 *   (Numerical Recipes, "erfcc"), fractional error < 1.2e-7 for all z >= 0;
 *   erfc(-z) = 2 - erfc(z). Used for the exact-erf GELU:
 *   gelu(x) = 0.5 x (1 + erf(x/sqrt2)) = 0.5 x erfc(-x/sqrt2), which keeps
 *   full relative accuracy on the negative tail (no 1 - erf cancellation).
 *
 * Not part of the public API (core/sambench.h).
 */
#ifndef SB_VECMATH_H
#define SB_VECMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SB_HAVE_AVX2 1
#else
#define SB_HAVE_AVX2 0
#endif

#define SB_EXP_LO (-87.33654f) /* below: result would be subnormal -> 0 */
#define SB_EXP_HI 88.3f /* n <= 127, so 2^n * exp(r) stays finite */
#define SB_LOG2E 1.44269504088896341f
#define SB_LN2_HI 0.693359375f        /* 8 significant bits: n*LN2_HI exact */
#define SB_LN2_LO (-2.12194440e-4f)   /* ln2 - LN2_HI */

/* 1/k! for the Taylor polynomial of exp(r), r in [-ln2/2, ln2/2] */
#define SB_EXP_C2 0.5f
#define SB_EXP_C3 1.66666667e-1f
#define SB_EXP_C4 4.16666667e-2f
#define SB_EXP_C5 8.33333333e-3f
#define SB_EXP_C6 1.38888889e-3f
#define SB_EXP_C7 1.98412698e-4f

static inline float sb_expf(float x)
{
    if (!(x >= SB_EXP_LO)) /* underflow, or NaN (returned as is) */
        return x < SB_EXP_LO ? 0.0f : x;
    float xc = x > SB_EXP_HI ? SB_EXP_HI : x;
    float n = rintf(xc * SB_LOG2E);
    float r = fmaf(-n, SB_LN2_HI, xc);
    r = fmaf(-n, SB_LN2_LO, r);
    float p = fmaf(SB_EXP_C7, r, SB_EXP_C6);
    p = fmaf(p, r, SB_EXP_C5);
    p = fmaf(p, r, SB_EXP_C4);
    p = fmaf(p, r, SB_EXP_C3);
    p = fmaf(p, r, SB_EXP_C2);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &bits, sizeof s);
    return p * s;
}

/* erfc(z) for z >= 0 (see above); z2 = z^2, passed in so callers can form
 * it with one rounding (gelu: x*x/2 rather than (x/sqrt2)^2). */
/* The degree-9 polynomial P(t) is evaluated by Estrin's scheme (pairs, then
 * t^2, t^4, t^8), the same way in the scalar and the 8-wide versions: a
 * shorter dependency chain than Horner's (GELU 8.6 -> 7.5 ns per 8 floats,
 * measured), the same accuracy (tests/test_ops_linear.c test_gelu). */
#define SB_ERFC_C0 (-1.26551223f)
#define SB_ERFC_C1 1.00002368f
#define SB_ERFC_C2 0.37409196f
#define SB_ERFC_C3 0.09678418f
#define SB_ERFC_C4 (-0.18628806f)
#define SB_ERFC_C5 0.27886807f
#define SB_ERFC_C6 (-1.13520398f)
#define SB_ERFC_C7 1.48851587f
#define SB_ERFC_C8 (-0.82215223f)
#define SB_ERFC_C9 0.17087277f

static inline float sb_erfc_pos(float z, float z2)
{
    float t = 1.0f / fmaf(0.5f, z, 1.0f);
    float t2 = t * t, t4 = t2 * t2, t8 = t4 * t4;
    float a01 = fmaf(SB_ERFC_C1, t, SB_ERFC_C0), a23 = fmaf(SB_ERFC_C3, t, SB_ERFC_C2);
    float a45 = fmaf(SB_ERFC_C5, t, SB_ERFC_C4), a67 = fmaf(SB_ERFC_C7, t, SB_ERFC_C6);
    float a89 = fmaf(SB_ERFC_C9, t, SB_ERFC_C8);
    float p = fmaf(a89, t8, fmaf(fmaf(a67, t2, a45), t4, fmaf(a23, t2, a01)));
    return t * sb_expf(p - z2);
}

/* Exact-erf GELU: 0.5 x erfc(-x/sqrt2). */
static inline float sb_gelu1(float x)
{
    float z = x * -0.70710678118654752f;
    float e = sb_erfc_pos(fabsf(z), 0.5f * (x * x));
    e = z < 0.0f ? 2.0f - e : e;
    return 0.5f * x * e;
}

/* Logistic sigmoid without overflow: e = exp(-|x|). */
static inline float sb_sigmoid1(float x)
{
    float e = sb_expf(-fabsf(x));
    float r = 1.0f / (1.0f + e);
    return x >= 0.0f ? r : e * r;
}

#if SB_HAVE_AVX2
/*
 * exp for x <= 0 or NaN (softmax arguments s - max): no overflow clamp and
 * no flush to zero, so it is cheaper; x < -87.34 gives ~1.2e-38 instead of
 * 0 (an absolute error of 1e-38 on a softmax weight). n = rint(x log2 e) and
 * the exponent bits of 2^n both come from one FMA with the magic constant
 * 1.5 * 2^23 + 127: its low mantissa bits are n + 127. NaN: max(LO, NaN)
 * returns NaN (the second operand), which flows through the polynomial.
 */
static inline __m256 sb_exp8_nonpos(__m256 x)
{
    const __m256 magic = _mm256_set1_ps(12582912.0f + 127.0f);
    __m256 xc = _mm256_max_ps(_mm256_set1_ps(SB_EXP_LO), x);
    __m256 t = _mm256_fmadd_ps(xc, _mm256_set1_ps(SB_LOG2E), magic);
    __m256 n = _mm256_sub_ps(t, magic);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(SB_LN2_HI), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(SB_LN2_LO), r);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(SB_EXP_C7), r, _mm256_set1_ps(SB_EXP_C6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SB_EXP_C5));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SB_EXP_C4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SB_EXP_C3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SB_EXP_C2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_castps_si256(t), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* exp for any x: clamp above, flush results below 2^-126 to 0, keep NaN. */
static inline __m256 sb_exp8(__m256 x)
{
    __m256 y = sb_exp8_nonpos(_mm256_min_ps(x, _mm256_set1_ps(SB_EXP_HI)));
    __m256 under = _mm256_cmp_ps(x, _mm256_set1_ps(SB_EXP_LO), _CMP_LT_OQ);
    y = _mm256_andnot_ps(under, y);
    __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    return _mm256_blendv_ps(y, x, nan);
}

/*
 * GELU's erfc: the formula of sb_erfc_pos, with a lean exp. Its
 * argument P(t) - z^2 is <= ~1e-7 for every z >= 0 (P(1) ~ 0 at z = 0 and
 * erfc(z) <= t), so the overflow clamp and the NaN blend of sb_exp8 are not
 * needed (a NaN flows through sb_exp8_nonpos and the final products); only
 * the flush to 0 below SB_EXP_LO is kept (gelu(-40) must be 0, not -1e-37).
 * ~10 % fewer instructions per GELU, same results.
 */
static inline __m256 sb_erfc_pos8_gelu(__m256 z, __m256 z2)
{
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.5f), z, one));
    __m256 t2 = _mm256_mul_ps(t, t), t4 = _mm256_mul_ps(t2, t2), t8 = _mm256_mul_ps(t4, t4);
#define SB_C8(k) _mm256_set1_ps(SB_ERFC_C##k)
    __m256 a01 = _mm256_fmadd_ps(SB_C8(1), t, SB_C8(0)), a23 = _mm256_fmadd_ps(SB_C8(3), t, SB_C8(2));
    __m256 a45 = _mm256_fmadd_ps(SB_C8(5), t, SB_C8(4)), a67 = _mm256_fmadd_ps(SB_C8(7), t, SB_C8(6));
    __m256 a89 = _mm256_fmadd_ps(SB_C8(9), t, SB_C8(8));
#undef SB_C8
    __m256 p = _mm256_fmadd_ps(a89, t8, _mm256_fmadd_ps(_mm256_fmadd_ps(a67, t2, a45), t4,
                                                         _mm256_fmadd_ps(a23, t2, a01)));
    __m256 a = _mm256_sub_ps(p, z2);
    __m256 e = sb_exp8_nonpos(a);
    e = _mm256_andnot_ps(_mm256_cmp_ps(a, _mm256_set1_ps(SB_EXP_LO), _CMP_LT_OQ), e);
    return _mm256_mul_ps(t, e);
}

/* Exact-erf GELU, 0.5 x erfc(-x/sqrt2): erfc of |x|/sqrt2, reflected
 * (2 - erfc) where x > 0. */
static inline __m256 sb_gelu8(__m256 x)
{
    __m256 hx = _mm256_mul_ps(_mm256_set1_ps(0.5f), x);
    __m256 az = _mm256_mul_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), x),
                              _mm256_set1_ps(0.70710678118654752f));
    __m256 z2 = _mm256_mul_ps(hx, x);
    __m256 e = sb_erfc_pos8_gelu(az, z2);
    __m256 pos = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ);
    e = _mm256_blendv_ps(e, _mm256_sub_ps(_mm256_set1_ps(2.0f), e), pos);
    return _mm256_mul_ps(hx, e);
}

static inline __m256 sb_sigmoid8(__m256 x)
{
    __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    __m256 e = sb_exp8(_mm256_sub_ps(_mm256_setzero_ps(), ax));
    __m256 r = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
    return _mm256_blendv_ps(r, _mm256_mul_ps(e, r), neg);
}

static inline float sb_hmax8(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline float sb_hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

#endif /* SB_VECMATH_H */
