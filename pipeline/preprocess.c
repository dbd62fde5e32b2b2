/*
 * Pillow-exact bilinear resize and the slice pre-processing built on it.
 *
 * The resampler follows the semantics of Pillow's libImaging/Resample.c
 * (9.x): for each output index the filter is centred at (i + 0.5) * scale in
 * input coordinates; the triangle filter's support is 1 input pixel, widened
 * to `scale` when shrinking (antialias); the taps are normalised to sum 1 in
 * double, then converted to fixed point with 22 fractional bits (rounded
 * half away from zero); each output sample is (2^21 + sum(px * k)) >> 22
 * clamped to 0..255. Horizontal pass first (only over the input rows the
 * vertical pass will use), then vertical.
 *
 * The coefficient maths must round exactly like Pillow's (built without FMA):
 * this file's coefficient routine is compiled without FMA contraction.
 */
#include "preprocess.h"
#include "png_io.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PREC_BITS 22 /* 32 - 8 - 2, as Pillow */

typedef struct {
    int ksize;
    int *bounds; /* [out][2]: first input index, number of taps */
    int32_t *k;  /* [out][ksize] fixed-point taps */
} coeffs;

static void coeffs_free(coeffs *c)
{
    free(c->bounds);
    free(c->k);
}

/* No FMA: a fused multiply-add would round differently from the reference. */
__attribute__((noinline, target("no-fma"), optimize("fp-contract=off"))) static int
coeffs_make(coeffs *c, int in_size, int out_size)
{
    double scale = (double)((float)in_size - 0.0f) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    c->ksize = ksize;
    c->bounds = malloc(sizeof(int) * 2 * (size_t)out_size);
    c->k = malloc(sizeof(int32_t) * (size_t)ksize * out_size);
    double *w = malloc(sizeof(double) * (size_t)ksize);
    if (!c->bounds || !c->k || !w) {
        free(w);
        coeffs_free(c);
        return SB_ENOMEM;
    }
    for (int xx = 0; xx < out_size; xx++) {
        volatile double center = 0.0 + (xx + 0.5) * scale;
        double ww = 0.0;
        double ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0)
            xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            double t = ((double)(x + xmin) - center + 0.5) * ss;
            if (t < 0.0)
                t = -t;
            double f = t < 1.0 ? 1.0 - t : 0.0;
            w[x] = f;
            ww += f;
        }
        int32_t *k = c->k + (size_t)xx * ksize;
        for (int x = 0; x < ksize; x++) {
            double v = 0.0;
            if (x < xmax)
                v = ww != 0.0 ? w[x] / ww : w[x];
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PREC_BITS)) : (int32_t)(0.5 + v * (1 << PREC_BITS));
        }
        c->bounds[2 * xx] = xmin;
        c->bounds[2 * xx + 1] = xmax;
    }
    free(w);
    return SB_OK;
}

static inline uint8_t clip8(int32_t ss)
{
    int32_t v = ss >> PREC_BITS;
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* rows [y0, y0+nrows) of src (w x ? x c) -> dst (ow x nrows x c) */
static void pass_h(const uint8_t *src, int w, int c, int y0, int nrows, const coeffs *cf, uint8_t *dst, int ow)
{
    const int ks = cf->ksize;
    for (int y = 0; y < nrows; y++) {
        const uint8_t *row = src + (size_t)(y + y0) * w * c;
        uint8_t *out = dst + (size_t)y * ow * c;
        for (int xx = 0; xx < ow; xx++) {
            const int xmin = cf->bounds[2 * xx], n = cf->bounds[2 * xx + 1];
            const int32_t *k = cf->k + (size_t)xx * ks;
            const uint8_t *p = row + (size_t)xmin * c;
            if (c == 3) {
                int32_t s0 = 1 << (PREC_BITS - 1), s1 = s0, s2 = s0;
                for (int x = 0; x < n; x++) {
                    s0 += p[3 * x] * k[x];
                    s1 += p[3 * x + 1] * k[x];
                    s2 += p[3 * x + 2] * k[x];
                }
                out[3 * xx] = clip8(s0);
                out[3 * xx + 1] = clip8(s1);
                out[3 * xx + 2] = clip8(s2);
            } else {
                for (int ch = 0; ch < c; ch++) {
                    int32_t s = 1 << (PREC_BITS - 1);
                    for (int x = 0; x < n; x++)
                        s += p[c * x + ch] * k[x];
                    out[c * xx + ch] = clip8(s);
                }
            }
        }
    }
}

/* src (rowlen samples per row) -> dst (oh rows); bounds relative to src row 0 - shift */
static void pass_v(const uint8_t *src, size_t rowlen, const coeffs *cf, int shift, uint8_t *dst, int oh,
                   int32_t *acc)
{
    const int ks = cf->ksize;
    for (int yy = 0; yy < oh; yy++) {
        const int ymin = cf->bounds[2 * yy] - shift, n = cf->bounds[2 * yy + 1];
        const int32_t *k = cf->k + (size_t)yy * ks;
        for (size_t i = 0; i < rowlen; i++)
            acc[i] = 1 << (PREC_BITS - 1);
        for (int y = 0; y < n; y++) {
            const uint8_t *row = src + (size_t)(ymin + y) * rowlen;
            const int32_t kk = k[y];
            for (size_t i = 0; i < rowlen; i++)
                acc[i] += row[i] * kk;
        }
        uint8_t *out = dst + (size_t)yy * rowlen;
        for (size_t i = 0; i < rowlen; i++)
            out[i] = clip8(acc[i]);
    }
}

int sb_pil_resize_u8(const uint8_t *src, int w, int h, int c, uint8_t *dst, int ow, int oh, sb_error *err)
{
    if (w <= 0 || h <= 0 || ow <= 0 || oh <= 0 || c < 1 || c > 4)
        return sb_fail(err, SB_EINVAL, "resize: bad sizes %dx%dx%d -> %dx%d", w, h, c, ow, oh);
    const int need_h = ow != w, need_v = oh != h;
    if (!need_h && !need_v) {
        memcpy(dst, src, (size_t)w * h * c);
        return SB_OK;
    }
    coeffs cv = {0}, ch = {0};
    uint8_t *tmp = NULL;
    int32_t *acc = NULL;
    int rc = SB_OK;
    int y_first = 0, y_last = h;
    if (need_v) {
        if (coeffs_make(&cv, h, oh) != SB_OK)
            return sb_fail(err, SB_ENOMEM, "resize: out of memory");
        y_first = cv.bounds[0];
        y_last = cv.bounds[2 * oh - 2] + cv.bounds[2 * oh - 1];
    }
    const uint8_t *vin = src;
    int shift = 0;
    if (need_h) {
        if (coeffs_make(&ch, w, ow) != SB_OK) {
            rc = sb_fail(err, SB_ENOMEM, "resize: out of memory");
            goto done;
        }
        if (!need_v) {
            pass_h(src, w, c, 0, h, &ch, dst, ow);
            goto done;
        }
        tmp = malloc((size_t)ow * (y_last - y_first) * c);
        if (!tmp) {
            rc = sb_fail(err, SB_ENOMEM, "resize: out of memory");
            goto done;
        }
        pass_h(src, w, c, y_first, y_last - y_first, &ch, tmp, ow);
        vin = tmp;
        shift = y_first;
    }
    {
        const int vw = need_h ? ow : w;
        acc = malloc(sizeof(int32_t) * (size_t)vw * c);
        if (!acc) {
            rc = sb_fail(err, SB_ENOMEM, "resize: out of memory");
            goto done;
        }
        pass_v(vin, (size_t)vw * c, &cv, shift, dst, oh, acc);
    }
done:
    free(acc);
    free(tmp);
    coeffs_free(&cv);
    coeffs_free(&ch);
    return rc;
}

int sb_mask_box(const uint8_t *mask, int S, int box[4])
{
    int x0 = S, y0 = S, x1 = -1, y1 = -1;
    for (int y = 0; y < S; y++) {
        const uint8_t *r = mask + (size_t)y * S;
        for (int x = 0; x < S; x++)
            if (r[x]) {
                if (x < x0)
                    x0 = x;
                if (x > x1)
                    x1 = x;
                if (y < y0)
                    y0 = y;
                y1 = y;
            }
    }
    if (x1 < 0) {
        box[0] = box[1] = 0;
        box[2] = box[3] = S;
        return 0;
    }
    box[0] = x0;
    box[1] = y0;
    box[2] = x1;
    box[3] = y1;
    return 1;
}

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; s && *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t sb_jitter_key(uint64_t seed, const char *dataset, const char *case_id, int64_t slice)
{
    uint64_t h = mix64(seed);
    h = mix64(h ^ fnv1a(dataset));
    h = mix64(h ^ fnv1a(case_id));
    h = mix64(h ^ (uint64_t)slice);
    return h;
}

int sb_jitter_draw(uint64_t key, int i, int J)
{
    if (J <= 0)
        return 0;
    uint64_t x = mix64(key + 0xd1b54a32d192ed03ULL * (uint64_t)(i + 1));
    return (int)(((unsigned __int128)x * (uint64_t)(J + 1)) >> 64);
}

void sb_box_jitter(int box[4], int S, int J, uint64_t key)
{
    if (J <= 0)
        return;
    int x0 = box[0] - sb_jitter_draw(key, 0, J);
    int x1 = box[2] + sb_jitter_draw(key, 1, J);
    int y0 = box[1] - sb_jitter_draw(key, 2, J);
    int y1 = box[3] + sb_jitter_draw(key, 3, J);
    box[0] = x0 < 0 ? 0 : x0;
    box[2] = x1 > S ? S : x1;
    box[1] = y0 < 0 ? 0 : y0;
    box[3] = y1 > S ? S : y1;
}

int sb_preprocess_slice(const uint8_t *rgb, const uint8_t *mask_l, int w, int h, const sb_prep_opts *o,
                        float *image, float *mask, float box[4], int *nonempty, sb_error *err)
{
    const int S = o->size;
    if (S <= 0 || S > 16384)
        return sb_fail(err, SB_EINVAL, "preprocess: bad size %d", S);
    const size_t n = (size_t)S * S;
    uint8_t *buf = malloc(n * 3 + n);
    if (!buf)
        return sb_fail(err, SB_ENOMEM, "preprocess: out of memory for size %d", S);
    /* Grey content (R = G = B everywhere, e.g. CT/MR slices): the channels are
     * resampled independently with the same taps, so resizing one plane and
     * replicating it gives the same bytes at a third of the cost. */
    const size_t npx = (size_t)w * h;
    int grey = 1;
    for (size_t i = 0; i < npx && grey; i++)
        grey = rgb[3 * i] == rgb[3 * i + 1] && rgb[3 * i] == rgb[3 * i + 2];
    int rc;
    if (grey) {
        uint8_t *plane = malloc(npx);
        if (!plane) {
            free(buf);
            return sb_fail(err, SB_ENOMEM, "preprocess: out of memory");
        }
        for (size_t i = 0; i < npx; i++)
            plane[i] = rgb[3 * i];
        rc = sb_pil_resize_u8(plane, w, h, 1, buf, S, S, err);
        free(plane);
        if (rc != SB_OK) {
            free(buf);
            return rc;
        }
        for (size_t i = 0; i < n; i++)
            image[i] = image[n + i] = image[2 * n + i] = (float)buf[i] / 255.0f;
    } else {
        rc = sb_pil_resize_u8(rgb, w, h, 3, buf, S, S, err);
        if (rc != SB_OK) {
            free(buf);
            return rc;
        }
        for (int c = 0; c < 3; c++)
            for (size_t i = 0; i < n; i++)
                image[c * n + i] = (float)buf[3 * i + c] / 255.0f;
    }
    uint8_t *m = buf + 3 * n;
    int ib[4] = {0, 0, S, S}, ne = 0;
    if (mask_l) {
        rc = sb_pil_resize_u8(mask_l, w, h, 1, m, S, S, err);
        if (rc != SB_OK) {
            free(buf);
            return rc;
        }
        for (size_t i = 0; i < n; i++)
            m[i] = m[i] >= 128; /* ToTensor >= 0.5 <=> u8 >= 127.5 */
        ne = sb_mask_box(m, S, ib);
        if (ne)
            sb_box_jitter(ib, S, o->jitter, sb_jitter_key(o->seed, o->dataset, o->case_id, o->slice));
    } else {
        memset(m, 0, n);
    }
    if (mask)
        for (size_t i = 0; i < n; i++)
            mask[i] = m[i] ? 1.0f : 0.0f;
    for (int i = 0; i < 4; i++)
        box[i] = (float)ib[i];
    if (nonempty)
        *nonempty = ne;
    free(buf);
    return SB_OK;
}

int sb_preprocess_png(const char *image_png, const char *mask_png, const sb_prep_opts *o, float *image,
                      float *mask, float box[4], int *nonempty, sb_error *err)
{
    uint8_t *rgb = NULL, *ml = NULL;
    int w, h, mw = 0, mh = 0;
    int rc = sb_png_load_rgb(image_png, &rgb, &w, &h, err);
    if (rc != SB_OK)
        return rc;
    if (mask_png) {
        rc = sb_png_load_l(mask_png, &ml, &mw, &mh, err);
        if (rc != SB_OK) {
            free(rgb);
            return rc;
        }
        if (mw != w || mh != h) {
            free(rgb);
            free(ml);
            return sb_fail(err, SB_ESHAPE, "%s: mask is %dx%d but the image %s is %dx%d", mask_png, mw, mh,
                           image_png, w, h);
        }
    }
    rc = sb_preprocess_slice(rgb, ml, w, h, o, image, mask, box, nonempty, err);
    free(rgb);
    free(ml);
    return rc;
}
