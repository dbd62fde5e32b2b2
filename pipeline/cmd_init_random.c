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
            "  --config FILE  a reduced-size config (JSON, as tests/fixtures/*_config.json): its\n"
            "                 'variant' must match V; reduced shapes are not derived (see README)\n"
            "  --seed N       seed (unsigned integer)\n\n"
            "Exit status: 0, or 2 with one line 'sambench init-random: ...: problem' for bad input.\n");
}

/* The "variant" member of a config JSON (a flat scan: enough for our configs). */
static int config_variant(const char *path, char *out, size_t cap, sb_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return sb_fail(err, SB_EIO, "%s: %s", path, strerror(errno));
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strstr(buf, "\"variant\"");
    if (!p)
        return sb_fail(err, SB_EFORMAT, "%s: no \"variant\" in the config", path);
    p = strchr(p + 9, ':');
    const char *q = p ? strchr(p, '"') : NULL;
    const char *e = q ? strchr(q + 1, '"') : NULL;
    if (!e || (size_t)(e - q - 1) >= cap)
        return sb_fail(err, SB_EFORMAT, "%s: malformed \"variant\" in the config", path);
    memcpy(out, q + 1, (size_t)(e - q - 1));
    out[e - q - 1] = '\0';
    return SB_OK;
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
    if (config) {
        char cv[64];
        if (config_variant(config, cv, sizeof cv, &err))
            return sb_report_error("init-random", &err);
        sb_fail(&err, SB_EUNSUPPORTED,
                "%s: reduced-size configs are not supported yet (the shapes of a %s config are not derived); "
                "init-random writes the official full-size shapes without --config",
                config, cv);
        return sb_report_error("init-random", &err);
    }
    const char *out = argv[optind];
    if (sb_weights_init_random(out, vname, seed, &err))
        return sb_report_error("init-random", &err);
    printf("wrote %s: variant %s, %" PRId64 " tensors, seed %llu\n", out, vname, sb_variant_tensor_count(vname),
           seed);
    return SB_EXIT_OK;
}
