/*
 * sambench synth --out DIR [--scale tiny|small]
 *
 * Writes a deterministic miniature of MedBank-100k and the external datasets
 * in their real formats plus DIR/medbank100k.yaml and DIR/external10.yaml
 * (paths relative to DIR, so `--data-root DIR` finds everything).
 */
#include "cli.h"
#include "data.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: sambench synth --out DIR [--scale tiny|small]\n\n"
                 "Writes a deterministic miniature of both collections in the real formats:\n"
                 "  DIR/MedBank/<Object>_<Modality>_<ID>/{image,mask}/*.png + train/val/test.txt (21 tasks;\n"
                 "      CT/MR as case_NNNN_slice_NNN.png volumes, the 2-D tasks as one-slice cases, RGB for\n"
                 "      fundus, dermoscopy and colonoscopy)\n"
                 "  DIR/external/: Thyroid, Drishti-GS and ISIC 2016 as PNG folders; MSD Task01, 03, 04, 05, 09, 10\n"
                 "      as NIfTI (dataset.json, imagesTr, labelsTr; anisotropic spacing, multi-channel,\n"
                 "      NIfTI-1 and -2, .nii and .nii.gz)\n"
                 "  DIR/medbank100k.yaml, DIR/external10.yaml: manifests with paths relative to DIR\n\n"
                 "  --scale tiny   2 cases per dataset, 3-4 slices of 64-128 px (tests, make demo); default\n"
                 "  --scale small  4 cases, 8-9 slices of 192-256 px\n"
                 "The same arguments always write byte-identical files.\n");
}

int cmd_synth(int argc, char **argv)
{
    const char *out = NULL, *scale = "tiny";
    const sb_opt opts[] = {
        {"--out", SB_OPT_STR, &out, 0, 0, NULL, NULL},
        {"--scale", SB_OPT_STR, &scale, 0, 0, NULL, NULL},
        {NULL, 0, NULL, 0, 0, NULL, NULL},
    };
    int prc = sb_opts_parse("synth", argc, argv, opts, NULL, usage);
    if (prc)
        return prc == 1 ? SB_EXIT_OK : prc;
    if (!out) {
        fprintf(stderr, "sambench synth: --out DIR is required\n\n");
        usage(stderr);
        return SB_EXIT_USAGE;
    }
    if (strcmp(scale, "tiny") != 0 && strcmp(scale, "small") != 0) {
        fprintf(stderr, "sambench synth: --scale must be tiny or small, got '%s'\n", scale);
        return SB_EXIT_USAGE;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    sb_error err;
    sb_error_clear(&err);
    if (sb_synth_write(out, scale, &err) != SB_OK)
        return sb_report_error("synth", &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("synth: wrote %s (scale %s) in %.2f s: MedBank/ (21 tasks), external/ (10 datasets), "
           "medbank100k.yaml, external10.yaml\n",
           out, scale, (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    return SB_EXIT_OK;
}
