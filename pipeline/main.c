/*
 * sambench: one binary, many subcommands (table in commands.def).
 * Every subcommand's main has the same skeleton: parse, run, report, and
 * return an exit status from cli.h.
 */
#include "cli.h"

#include <cblas.h>
#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <zip.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sambench <command> [options]\n"
            "       sambench --version\n\n"
            "CPU benchmark of medical segment-anything models (SAMed-2, SAM2, MedSAM2, SAM, MedSAM).\n\n"
            "commands:\n");
    for (const sb_command *c = sb_commands; c->name; c++)
        fprintf(out, "  %-14s %s\n", c->name, c->summary);
    fprintf(out, "\n'sambench <command> --help' shows the options of one command.\n");
}

int cmd_help(int argc, char **argv)
{
    if (argc > 1 && argv[1][0] != '-') {
        const sb_command *c = sb_find_command(argv[1]);
        if (!c) {
            fprintf(stderr, "sambench help: unknown command '%s'\n", argv[1]);
            return SB_EXIT_USAGE;
        }
        char *sub[] = {argv[1], "--help", NULL};
        return c->fn(2, sub);
    }
    usage(stdout);
    return SB_EXIT_OK;
}

int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    char mpi_lib[MPI_MAX_LIBRARY_VERSION_STRING] = "";
    int len = 0;
    MPI_Get_library_version(mpi_lib, &len); /* allowed before MPI_Init (MPI-3) */
    char *nl = strchr(mpi_lib, '\n');
    if (nl)
        *nl = '\0';
    unsigned h5maj = 0, h5min = 0, h5rel = 0;
    H5get_libversion(&h5maj, &h5min, &h5rel);
    const char *blas_built = OPENBLAS_VERSION;
    while (*blas_built == ' ')
        blas_built++;
    printf("sambench %s\n", SB_VERSION_STRING);
    printf("built against:\n");
    printf("  Open MPI %d.%d.%d (runtime: %s)\n", OMPI_MAJOR_VERSION, OMPI_MINOR_VERSION,
           OMPI_RELEASE_VERSION, mpi_lib);
    printf("  %s(runtime: %s; kernel %s)\n", blas_built, sb_blas_config(), sb_blas_corename());
    printf("  HDF5 %d.%d.%d (runtime: %u.%u.%u)\n", H5_VERS_MAJOR, H5_VERS_MINOR, H5_VERS_RELEASE,
           h5maj, h5min, h5rel);
    printf("  libzip %s (runtime: %s)\n", LIBZIP_VERSION, zip_libzip_version());
    return SB_EXIT_OK;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return SB_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0)
        name = "version";
    else if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
        name = "help";
    const sb_command *c = sb_find_command(name);
    if (!c) {
        fprintf(stderr, "sambench: unknown command '%s'\n\n", argv[1]);
        usage(stderr);
        return SB_EXIT_USAGE;
    }
    return c->fn(argc - 1, argv + 1);
}
