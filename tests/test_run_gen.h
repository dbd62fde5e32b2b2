/* Small MedBank-layout datasets for the run/report/compare tests (and for
 * `test_run --gen DIR`, used by tests/slurm and the demo when `sambench
 * synth` is not available): ROOT/<Task>_<Modality>_<ID>/{image,mask}/<slice>.png
 * with test.txt. Deterministic ellipse masks (0/255) on noise images. */
#ifndef TEST_RUN_GEN_H
#define TEST_RUN_GEN_H

#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int gen_png(const char *path, const uint8_t *px, int w, int h, int channels)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = (png_uint_32)w;
    im.height = (png_uint_32)h;
    im.format = channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    return png_image_write_to_file(&im, path, 0, px, 0, NULL) ? 0 : -1;
}

static uint64_t gen_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* One dataset: ncases cases of nslices slices each (w x h); slice k of case c
 * has an ellipse whose centre and radii depend on (seed, c, k); when
 * empty_every > 0 every empty_every-th slice has an empty mask. prefix_dot:
 * write split entries as "./image/NAME" (else "image/NAME"). */
__attribute__((unused)) static int gen_dataset(const char *root, const char *folder, int ncases, int nslices, int w, int h, uint64_t seed,
                       int empty_every, int prefix_dot)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", root, folder);
    mkdir(root, 0775);
    mkdir(p, 0775);
    snprintf(p, sizeof p, "%s/%s/image", root, folder);
    mkdir(p, 0775);
    snprintf(p, sizeof p, "%s/%s/mask", root, folder);
    mkdir(p, 0775);
    snprintf(p, sizeof p, "%s/%s/test.txt", root, folder);
    FILE *split = fopen(p, "w");
    if (!split)
        return -1;
    uint8_t *img = malloc((size_t)w * h * 3), *msk = malloc((size_t)w * h);
    int rc = img && msk ? 0 : -1;
    for (int c = 0; c < ncases && rc == 0; c++)
        for (int k = 0; k < nslices && rc == 0; k++) {
            uint64_t r = gen_mix(seed * 1000003u + (uint64_t)c * 131u + (uint64_t)k);
            double cx = w * (0.3 + 0.4 * ((r & 0xff) / 255.0)), cy = h * (0.3 + 0.4 * (((r >> 8) & 0xff) / 255.0));
            double rx = w * (0.08 + 0.15 * (((r >> 16) & 0xff) / 255.0));
            double ry = h * (0.08 + 0.15 * (((r >> 24) & 0xff) / 255.0));
            int empty = empty_every > 0 && (c * nslices + k) % empty_every == empty_every - 1;
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++) {
                    double dx = (x - cx) / rx, dy = (y - cy) / ry;
                    int in = !empty && dx * dx + dy * dy <= 1.0;
                    msk[(size_t)y * w + x] = in ? 255 : 0;
                    uint64_t q = gen_mix(r + (uint64_t)(y * w + x));
                    for (int ch = 0; ch < 3; ch++)
                        img[3 * ((size_t)y * w + x) + ch] = (uint8_t)((in ? 160 : 40) + (q >> (8 * ch) & 63));
                }
            char name[256];
            snprintf(name, sizeof name, "case%02d_slice_%03d.png", c, k + 1);
            snprintf(p, sizeof p, "%s/%s/image/%s", root, folder, name);
            rc |= gen_png(p, img, w, h, 3);
            snprintf(p, sizeof p, "%s/%s/mask/%s", root, folder, name);
            rc |= gen_png(p, msk, w, h, 1);
            fprintf(split, "%simage/%s\n", prefix_dot ? "./" : "", name);
        }
    fclose(split);
    free(img);
    free(msk);
    return rc;
}

/* The standard small collection: 3 tasks, 3 modalities, 13 cases, 39 slices. */
__attribute__((unused)) static int gen_medbank(const char *root)
{
    int rc = 0;
    rc |= gen_dataset(root, "Liver_CT_001", 4, 5, 48, 40, 1, 7, 1);
    rc |= gen_dataset(root, "Aorta_MR_002", 3, 4, 40, 40, 2, 0, 0);
    rc |= gen_dataset(root, "Polyp_Colonoscopy_003", 6, 1, 56, 44, 3, 0, 1);
    return rc;
}

#endif
