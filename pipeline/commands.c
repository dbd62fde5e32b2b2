/* The subcommand table, generated from commands.def. */
#include "cli.h"

#include <string.h>

const sb_command sb_commands[] = {
#define SB_COMMAND(id, name, summary) {name, summary, cmd_##id},
#include "commands.def"
#undef SB_COMMAND
    {NULL, NULL, NULL}};

const sb_command *sb_find_command(const char *name)
{
    for (const sb_command *c = sb_commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}
