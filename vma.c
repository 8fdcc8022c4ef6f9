/*
 * vma.c — the `vma` command: global options and dispatch to cli/<command>.c.
 *
 *   vma list|config|verify|extract|create|merge|backup|serve|qemu-args [options] operands...
 *   vma --help | --version | COMMAND --help
 *
 * Each subcommand parses its own options with getopt_long(), which (like the deployed
 * tool's getopt) accepts options before, between and after operands. SIGPIPE is ignored
 * so that a closed stdout becomes an EPIPE error with a message, never a death by signal.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

typedef struct Command {
    const char *name;
    int (*main)(int argc, char **argv);
    const char *summary;
} Command;

static const Command commands[] = {
    {"list", cli_list_main, "show the configs and devices of an archive"},
    {"config", cli_config_main, "print one stored config"},
    {"verify", cli_verify_main, "read and check a whole archive"},
    {"extract", cli_extract_main, "restore an archive into a directory or volumes"},
    {"create", cli_create_main, "write a new archive from raw images and configs"},
    {"merge", cli_merge_main, "write one full archive of the newest state of a chain"},
    {"backup", cli_backup_main, "run a live backup in vmad and follow it"},
    {"serve", cli_serve_main, "serve an archive's disks read-only over NBD"},
    {"qemu-args", cli_qemu_args_main, "QEMU arguments resuming an extracted whole-VM backup"},
};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: vma COMMAND [OPTIONS] ARGUMENTS\n"
            "\n"
            "Work with VMA archives, the backup format of Proxmox VE (plain, or compressed\n"
            "with zstd, gzip, lzop or bzip2; '-' reads an archive from stdin).\n"
            "\n"
            "  vma list [--json] ARCHIVE\n"
            "  vma config [-c NAME] ARCHIVE\n"
            "  vma verify [-v] [--json] [--base ARCHIVE]... ARCHIVE\n"
            "  vma extract [-v] [-d DEV[,DEV...]] [-r FIFO] [--base ARCHIVE]... ARCHIVE DIR\n"
            "  vma create [-v] [-c CONFIG]... ARCHIVE [-d format=raw:NAME=PATH]... | "
            "[NAME=]PATH...\n"
            "  vma merge -o OUT [--base ARCHIVE]... ARCHIVE\n"
            "  vma backup --qmp SOCKET [-d LIST] [-c CONFIG] [--speed BYTES] "
            "[--vm-monitor SOCKET] OUTPUT|-\n"
            "  vma serve [--base ARCHIVE]... [--socket PATH] ARCHIVE\n"
            "  vma qemu-args [--qemu BINARY] [--force] DIR\n"
            "\n"
            "Commands:\n");
    for (size_t i = 0; i < G_N_ELEMENTS(commands); i++) {
        fprintf(out, "  %-8s  %s\n", commands[i].name, commands[i].summary);
    }
    fprintf(out,
            "\n"
            "Run 'vma COMMAND --help' for a command's options; see vma(1).\n"
            "Exit status: 0 success, 1 failure, 2 usage error.\n");
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);

    if (argc < 2) {
        return cli_usage_error(NULL, "missing COMMAND");
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        printf("vma (vmabackup) %s\n", VMABACKUP_VERSION);
        return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(commands); i++) {
        if (strcmp(cmd, commands[i].name) == 0) {
            /* The subcommand sees itself as argv[0]. */
            return commands[i].main(argc - 1, argv + 1);
        }
    }
    return cli_usage_error(NULL, "unknown command '%s'", cmd);
}
