/*
 * sambench init-random --variant samed2|sam2_hiera_s|sam2_hiera_t|sam_vit_b [--config FILE] --seed N OUT.pth
 *
 * A random-weight checkpoint with exactly the official keys and shapes, in
 * the layout torch.save writes (so torch.load reads it), for full-size
 * benchmarks and the demo without downloaded weights.
 */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sambench init-random --variant V [--config FILE] --seed N OUT.pth\n\n"
            "Writes a checkpoint of random weights with exactly the keys and shapes of the official\n"
            "file of variant V (samed2, sam2_hiera_s, sam2_hiera_t, sam_vit_b), in torch.save's zip\n"
            "format: {'model': state_dict} for the SAM2 family, a bare state dict for sam_vit_b.\n"
            "Values are deterministic in (seed, key): weights U(-1/sqrt(fan_in), +1/sqrt(fan_in)),\n"
            "1-D '*weight' tensors U(0.9, 1.1), other vectors U(-0.05, 0.05).\n\n"
            "  --variant V    the model variant\n"
            "  --config FILE  the model config whose keys and shapes to write (reduced-size models):\n"
            "                 a fixture *_config.json or a configs/models YAML; SAM2-family configs\n"
            "                 for samed2/sam2_hiera_s/sam2_hiera_t (the trunk must match), a\n"
            "                 hyper_parameters config for sam_vit_b\n"
            "  --seed N       seed (unsigned integer)\n\n"
            "Exit status: 0, or 2 with one line 'sambench init-random: ...: problem' for bad input.\n");
}

int cmd_init_random(int argc, char **argv)
{
    const char *variant = NULL, *config = NULL, *outv[1];
    sb_opt_u64_given seed = {0, 0};
    sb_opt_list outs = {outv, 0, 1};
    const sb_opt opts[] = {
        {"--variant", SB_OPT_STR, &variant, 0, 0, NULL, NULL},
        {"--config", SB_OPT_STR, &config, 0, 0, NULL, NULL},
        {"--seed", SB_OPT_FN, &seed, 0, 0, "a non-negative integer", sb_opt_parse_u64_given},
        {NULL, 0, NULL, 0, 0, NULL, NULL},
    };
    int prc = sb_opts_parse("init-random", argc, argv, opts, &outs, usage);
    if (prc)
        return prc == 1 ? SB_EXIT_OK : prc;
    if (!variant || !seed.given || outs.n != 1) {
        fprintf(stderr, "sambench init-random: --variant, --seed and one OUT.pth are required\n");
        usage(stderr);
        return SB_EXIT_USAGE;
    }
    const char *vname = strcmp(variant, "samed2_hiera_s") == 0 ? "samed2" : variant;
    if (!sb_variant_known(vname)) {
        fprintf(stderr, "sambench init-random: unknown variant '%s' (known: %s)\n", variant, sb_variant_names());
        return SB_EXIT_USAGE;
    }
    sb_error err;
    const char *out = outv[0];
    if (sb_weights_init_random_config(out, vname, config, seed.v, &err))
        return sb_report_error("init-random", &err);
    if (config) {
        printf("wrote %s: variant %s with config %s, seed %llu\n", out, vname, config, (unsigned long long)seed.v);
        return SB_EXIT_OK;
    }
    printf("wrote %s: variant %s, %" PRId64 " tensors, seed %llu\n", out, vname, sb_variant_tensor_count(vname),
           (unsigned long long)seed.v);
    return SB_EXIT_OK;
}
