/*
 * sambench preprocess --image IMG --mask MASK --size S [--jitter J --seed N | --no-jitter] --output OUT.h5
 *
 * One slice through the benchmark's pre-processing (PROTOCOL.md 2): writes
 * `image` (3,S,S), `mask` (1,S,S) and `box` (4) as float32.
 */
#include "cli.h"
#include "preprocess.h"

#include <getopt.h>
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
    static const struct option opts[] = {
        {"image", required_argument, 0, 'i'}, {"mask", required_argument, 0, 'm'},
        {"size", required_argument, 0, 's'},  {"jitter", required_argument, 0, 'j'},
        {"seed", required_argument, 0, 'e'},  {"no-jitter", no_argument, 0, 'n'},
        {"output", required_argument, 0, 'o'}, {"dataset", required_argument, 0, 'd'},
        {"case", required_argument, 0, 'c'},  {"slice", required_argument, 0, 'k'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    const char *image = NULL, *mask = NULL, *output = NULL, *dataset = "", *case_id = NULL;
    long size = 0, jitter = 20, slice = 0;
    unsigned long long seed = 0;
    int no_jitter = 0, jitter_set = 0, seed_set = 0;
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        switch (ch) {
        case 'i': image = optarg; break;
        case 'm': mask = optarg; break;
        case 'o': output = optarg; break;
        case 'd': dataset = optarg; break;
        case 'c': case_id = optarg; break;
        case 'n': no_jitter = 1; break;
        case 's':
            size = strtol(optarg, &end, 10);
            if (*end || size < 1 || size > 16384) {
                fprintf(stderr, "sambench preprocess: --size must be an integer in 1..16384, got '%s'\n", optarg);
                return SB_EXIT_USAGE;
            }
            break;
        case 'j':
            jitter = strtol(optarg, &end, 10);
            jitter_set = 1;
            if (*end || jitter < 0 || jitter > 100000) {
                fprintf(stderr, "sambench preprocess: --jitter must be a non-negative integer, got '%s'\n", optarg);
                return SB_EXIT_USAGE;
            }
            break;
        case 'e':
            seed = strtoull(optarg, &end, 10);
            seed_set = 1;
            if (*end || !*optarg) {
                fprintf(stderr, "sambench preprocess: --seed must be an integer, got '%s'\n", optarg);
                return SB_EXIT_USAGE;
            }
            break;
        case 'k':
            slice = strtol(optarg, &end, 10);
            if (*end) {
                fprintf(stderr, "sambench preprocess: --slice must be an integer, got '%s'\n", optarg);
                return SB_EXIT_USAGE;
            }
            break;
        case 'h': usage(stdout); return SB_EXIT_OK;
        default:
            fprintf(stderr, "sambench preprocess: unknown or incomplete option '%s'\n\n", argv[optind - 1]);
            usage(stderr);
            return SB_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sambench preprocess: unexpected argument '%s'\n", argv[optind]);
        return SB_EXIT_USAGE;
    }
    if (!image || !mask || !size || !output) {
        fprintf(stderr, "sambench preprocess: --image, --mask, --size and --output are required\n\n");
        usage(stderr);
        return SB_EXIT_USAGE;
    }
    if (no_jitter && (jitter_set || seed_set)) {
        fprintf(stderr, "sambench preprocess: --no-jitter excludes --jitter and --seed\n");
        return SB_EXIT_USAGE;
    }
    if (no_jitter)
        jitter = 0;
    char stem[512];
    if (!case_id) { /* default case id: the file name without directory and .png */
        const char *b = strrchr(image, '/');
        snprintf(stem, sizeof stem, "%s", b ? b + 1 : image);
        char *dot = strrchr(stem, '.');
        if (dot && strcmp(dot, ".png") == 0)
            *dot = '\0';
        case_id = stem;
    }
    const int S = (int)size;
    const size_t n = (size_t)S * S;
    float *img = malloc(sizeof(float) * 3 * n), *msk = malloc(sizeof(float) * n), box[4];
    if (!img || !msk) {
        free(img);
        free(msk);
        fprintf(stderr, "sambench preprocess: out of memory for size %d\n", S);
        return SB_EXIT_USAGE;
    }
    sb_prep_opts o = {.size = S, .jitter = (int)jitter, .seed = seed, .dataset = dataset, .case_id = case_id,
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
        snprintf(buf, sizeof buf, "%ld", jitter);
        if (rc == SB_OK)
            rc = sb_h5_set_attr_str(f, "/", "jitter", buf, &err);
        snprintf(buf, sizeof buf, "%llu", seed);
        if (rc == SB_OK)
            rc = sb_h5_set_attr_str(f, "/", "seed", buf, &err);
        if (rc == SB_OK) {
            char key[1024];
            snprintf(key, sizeof key, "dataset=%s case=%s slice=%ld", dataset, case_id, slice);
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
