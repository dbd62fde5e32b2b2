/*
 * sambench init-random --variant samed2|sam2_hiera_s|sam2_hiera_t|sam_vit_b [--config FILE] --seed N OUT.pth
 *
 * A random-weight checkpoint with exactly the official keys and shapes, in
 * the layout torch.save writes (so torch.load reads it), for full-size
 * benchmarks and the demo without downloaded weights.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
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
    static const struct option opts[] = {{"variant", required_argument, 0, 'v'},
                                         {"config", required_argument, 0, 'c'},
                                         {"seed", required_argument, 0, 's'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *variant = NULL, *config = NULL;
    unsigned long long seed = 0;
    int seed_set = 0;
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        switch (ch) {
        case 'v': variant = optarg; break;
        case 'c': config = optarg; break;
        case 's':
            errno = 0;
            seed = strtoull(optarg, &end, 10);
            if (*end || !*optarg || errno || optarg[0] == '-') {
                fprintf(stderr, "sambench init-random: --seed must be an unsigned integer, got '%s'\n", optarg);
                return SB_EXIT_USAGE;
            }
            seed_set = 1;
            break;
        case 'h': usage(stdout); return SB_EXIT_OK;
        default:
            fprintf(stderr, "sambench init-random: unknown or incomplete option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return SB_EXIT_USAGE;
        }
    }
    if (!variant || !seed_set || optind != argc - 1) {
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
    const char *out = argv[optind];
    if (sb_weights_init_random_config(out, vname, config, seed, &err))
        return sb_report_error("init-random", &err);
    if (config) {
        printf("wrote %s: variant %s with config %s, seed %llu\n", out, vname, config, seed);
        return SB_EXIT_OK;
    }
    printf("wrote %s: variant %s, %" PRId64 " tensors, seed %llu\n", out, vname, sb_variant_tensor_count(vname),
           seed);
    return SB_EXIT_OK;
}
