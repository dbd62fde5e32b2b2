/*
 * sambench convert IN OUT.h5 [--unwrap KEY] [--strip-prefix P] [--variant V [--allow-missing]]
 *
 * Any checkpoint sambench reads (torch zip, legacy torch.save, sambench-h5)
 * -> sambench-h5: one float32 dataset per tensor named by its key, with the
 * source file name and its SHA-256 as attributes. Loading it back is one
 * read per tensor.
 */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sambench convert IN OUT.h5 [--unwrap KEY] [--strip-prefix PREFIX]\n"
            "                        [--variant V [--allow-missing]]\n\n"
            "Converts a checkpoint (torch .pth/.pt zip, legacy torch.save or sambench-h5; found from the\n"
            "content) to sambench-h5: one float32 dataset per tensor named by its state-dict key, in the\n"
            "file's order, root attributes sambench_format, source and source_sha256, and the original\n"
            "dtype as attribute 'dtype' of each dataset.\n\n"
            "  --unwrap KEY      the state dict is under this top-level key (default: 'model' if present)\n"
            "  --strip-prefix P  remove P from the front of every key (e.g. 'module.')\n"
            "  --variant V       refuse the file unless its keys and shapes are exactly those of V\n"
            "                    (samed2, sam2_hiera_s, sam2_hiera_t, sam_vit_b)\n"
            "  --allow-missing   with --variant: write random values for missing keys (warning)\n\n"
            "Exit status: 0, or 2 with one line 'sambench convert: FILE: problem' for bad input.\n");
}

int cmd_convert(int argc, char **argv)
{
    sb_weights_opts wo = {0};
    const char *pv[2];
    sb_opt_list files = {pv, 0, 2};
    const sb_opt opts[] = {
        {"--unwrap", SB_OPT_STR, &wo.unwrap, 0, 0, NULL, NULL},
        {"--strip-prefix", SB_OPT_STR, &wo.strip_prefix, 0, 0, NULL, NULL},
        {"--variant", SB_OPT_STR, &wo.variant, 0, 0, NULL, NULL},
        {"--allow-missing", SB_OPT_FLAG, &wo.allow_missing, 0, 0, NULL, NULL},
        {NULL, 0, NULL, 0, 0, NULL, NULL},
    };
    int prc = sb_opts_parse("convert", argc, argv, opts, &files, usage);
    if (prc)
        return prc == 1 ? SB_EXIT_OK : prc;
    if (files.n != 2) {
        fprintf(stderr, "sambench convert: expected IN and OUT.h5\n");
        usage(stderr);
        return SB_EXIT_USAGE;
    }
    if (wo.variant && !sb_variant_known(wo.variant)) {
        fprintf(stderr, "sambench convert: unknown variant '%s' (known: %s)\n", wo.variant, sb_variant_names());
        return SB_EXIT_USAGE;
    }
    if (wo.allow_missing && !wo.variant) {
        fprintf(stderr, "sambench convert: --allow-missing needs --variant\n");
        return SB_EXIT_USAGE;
    }
    const char *in = pv[0], *out = pv[1];
    sb_error err;
    sb_weights *w;
    if (sb_weights_load_ex(&w, in, &wo, &err))
        return sb_report_error("convert", &err);
    const char *init = sb_weights_initialised(w);
    if (init[0])
        fprintf(stderr, "sambench convert: warning: %s: missing keys initialised with random values:\n%s", in, init);
    char sha[65];
    if (sb_sha256_file(in, sha, &err)) {
        sb_weights_free(w);
        return sb_report_error("convert", &err);
    }
    const char *base = strrchr(in, '/');
    base = base ? base + 1 : in;
    int rc = sb_weights_save_h5(w, out, base, sha, &err);
    if (rc == SB_OK)
        printf("wrote %s: %zu tensors, %" PRId64 " parameters (from %s, sha256 %s)\n", out, sb_weights_count(w),
               sb_weights_parameters(w), in, sha);
    sb_weights_free(w);
    return rc ? sb_report_error("convert", &err) : SB_EXIT_OK;
}
