/*
 * sambench preprocess --image IMG --mask MASK --size S [--jitter J --seed N | --no-jitter] --output OUT.h5
 *
 * One slice through the benchmark's pre-processing (PROTOCOL.md 2): writes
 * `image` (3,S,S), `mask` (1,S,S) and `box` (4) as float32.
 */
#include "cli.h"
#include "preprocess.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sambench preprocess --image IMG --mask MASK --size S [--jitter J --seed N | --no-jitter]\n"
            "                           --output OUT.h5 [--dataset NAME --case ID --slice K]\n\n"
            "Pre-processes one PNG slice exactly as the benchmark feeds it to the models: PIL convert('RGB'),\n"
            "torchvision Resize((S,S)) (Pillow bilinear with antialias, 8-bit fixed point), /255; the mask\n"
            "through the same resize then >= 0.5; the box from the resized mask, each side pushed outward\n"
            "by a keyed jitter in [0, J] and clamped to [0, S] (empty mask: [0, 0, S, S]).\n\n"
            "  --image IMG      image PNG (8/16-bit grey, RGB, RGBA, palette)\n"
            "  --mask MASK      mask PNG, same width and height (converted as PIL 'L')\n"
            "  --size S         model input size (1024 for every model of the benchmark)\n"
            "  --jitter J       max outward push of each box side in pixels (default 20, as the protocol)\n"
            "  --seed N         jitter seed (default 0)\n"
            "  --no-jitter      the tight box (as the reference goldens)\n"
            "  --dataset, --case, --slice   the rest of the jitter key (default: \"\", the image's file\n"
            "                   name without .png, 0), so a pipeline slice's box can be reproduced\n"
            "  --output OUT.h5  datasets image (3,S,S), mask (1,S,S), box (4), float32\n");
}

int cmd_preprocess(int argc, char **argv)
{
    const char *image = NULL, *mask = NULL, *output = NULL, *dataset = "", *case_id = NULL;
    int size = 0, jitter = -1, slice = 0, no_jitter = 0; /* jitter -1: not given (default 20) */
    sb_opt_u64_given seed = {0, 0};
    const sb_opt opts[] = {
        {"--image", SB_OPT_STR, &image, 0, 0, NULL, NULL},
        {"--mask", SB_OPT_STR, &mask, 0, 0, NULL, NULL},
        {"--size", SB_OPT_INT, &size, 1, 16384, "an integer in [1, 16384]", NULL},
        {"--jitter", SB_OPT_INT, &jitter, 0, 100000, "an integer in [0, 100000]", NULL},
        {"--seed", SB_OPT_FN, &seed, 0, 0, "a non-negative integer", sb_opt_parse_u64_given},
        {"--no-jitter", SB_OPT_FLAG, &no_jitter, 0, 0, NULL, NULL},
        {"--output", SB_OPT_STR, &output, 0, 0, NULL, NULL},
        {"--dataset", SB_OPT_STR, &dataset, 0, 0, NULL, NULL},
        {"--case", SB_OPT_STR, &case_id, 0, 0, NULL, NULL},
        {"--slice", SB_OPT_INT, &slice, -2147483647.0, 2147483647.0, "an integer", NULL},
        {NULL, 0, NULL, 0, 0, NULL, NULL},
    };
    int prc = sb_opts_parse("preprocess", argc, argv, opts, NULL, usage);
    if (prc)
        return prc == 1 ? SB_EXIT_OK : prc;
    if (!image || !mask || !size || !output) {
        fprintf(stderr, "sambench preprocess: --image, --mask, --size and --output are required\n\n");
        usage(stderr);
        return SB_EXIT_USAGE;
    }
    if (no_jitter && (jitter >= 0 || seed.given)) {
        fprintf(stderr, "sambench preprocess: --no-jitter excludes --jitter and --seed\n");
        return SB_EXIT_USAGE;
    }
    if (no_jitter)
        jitter = 0;
    else if (jitter < 0)
        jitter = 20;
    char stem[512];
    if (!case_id) { /* default case id: the file name without directory and .png */
        const char *b = strrchr(image, '/');
        snprintf(stem, sizeof stem, "%s", b ? b + 1 : image);
        char *dot = strrchr(stem, '.');
        if (dot && strcmp(dot, ".png") == 0)
            *dot = '\0';
        case_id = stem;
    }
    const int S = size;
    const size_t n = (size_t)S * S;
    float *img = malloc(sizeof(float) * 3 * n), *msk = malloc(sizeof(float) * n), box[4];
    if (!img || !msk) {
        free(img);
        free(msk);
        fprintf(stderr, "sambench preprocess: out of memory for size %d\n", S);
        return SB_EXIT_USAGE;
    }
    sb_prep_opts o = {.size = S, .jitter = jitter, .seed = seed.v, .dataset = dataset, .case_id = case_id,
                      .slice = slice};
    sb_error err;
    sb_error_clear(&err);
    int nonempty = 0;
    int rc = sb_preprocess_png(image, mask, &o, img, msk, box, &nonempty, &err);
    sb_h5 *f = NULL;
    if (rc == SB_OK)
        rc = sb_h5_open(&f, output, SB_H5_CREATE, &err);
    if (rc == SB_OK) {
        const int64_t si[3] = {3, S, S}, sm[3] = {1, S, S}, sbx[1] = {4};
        char buf[64];
        rc = sb_h5_write_f32(f, "image", img, 3, si, &err);
        if (rc == SB_OK)
            rc = sb_h5_write_f32(f, "mask", msk, 3, sm, &err);
        if (rc == SB_OK)
            rc = sb_h5_write_f32(f, "box", box, 1, sbx, &err);
        if (rc == SB_OK)
            rc = sb_h5_set_attr_str(f, "/", "image_png", image, &err);
        if (rc == SB_OK)
            rc = sb_h5_set_attr_str(f, "/", "mask_png", mask, &err);
        snprintf(buf, sizeof buf, "%d", S);
        if (rc == SB_OK)
            rc = sb_h5_set_attr_str(f, "/", "size", buf, &err);
        snprintf(buf, sizeof buf, "%d", jitter);
        if (rc == SB_OK)
            rc = sb_h5_set_attr_str(f, "/", "jitter", buf, &err);
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)seed.v);
        if (rc == SB_OK)
            rc = sb_h5_set_attr_str(f, "/", "seed", buf, &err);
        if (rc == SB_OK) {
            char key[1024];
            snprintf(key, sizeof key, "dataset=%s case=%s slice=%d", dataset, case_id, slice);
            rc = sb_h5_set_attr_str(f, "/", "jitter_key", key, &err);
        }
        sb_h5_close(f);
    }
    free(img);
    free(msk);
    if (rc != SB_OK)
        return sb_report_error("preprocess", &err);
    printf("%s: image (3,%d,%d) mask (1,%d,%d) box [%g, %g, %g, %g]%s\n", output, S, S, S, S, box[0], box[1],
           box[2], box[3], nonempty ? "" : " (empty mask)");
    return SB_EXIT_OK;
}
