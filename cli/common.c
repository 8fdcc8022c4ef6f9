/*
 * common.c — small pieces every `vma` subcommand uses: one-line error reporting, checked
 * stdout, the name rule for files created from archive names, file sizes of regular files
 * and block devices, and the interrupt flag.
 *
 * The name rule exists because an archive is untrusted input: its config and device names
 * become file names under the extraction directory, so a name must be one harmless path
 * component ("../x", "/etc/passwd", ".bashrc" and "a\nb" are all refused).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/fs.h>

#include "cli/cli.h"

G_DEFINE_QUARK(vma-cli-error-quark, cli_error)

int cli_fail(const char *context, const GError *err)
{
    return cli_failf(context, "%s", err ? err->message : "unknown error");
}

int cli_failf(const char *context, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
    if (context) {
        fprintf(stderr, "vma: %s: %s\n", context, msg);
    } else {
        fprintf(stderr, "vma: %s\n", msg);
    }
    return CLI_EXIT_FAILURE;
}

int cli_usage_error(const char *command, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (command) {
        fprintf(stderr, "vma %s: %s (try 'vma %s --help')\n", command, msg, command);
    } else {
        fprintf(stderr, "vma: %s (try 'vma --help')\n", msg);
    }
    return CLI_EXIT_USAGE;
}

int cli_bad_option(const char *command, int c, char **argv)
{
    /* getopt_long() was called with a leading ':' in optstring and opterr = 0. */
    const char *arg = argv[optind - 1];

    if (c == ':') {
        if (optopt) {
            return cli_usage_error(command, "option '-%c' needs an argument", optopt);
        }
        return cli_usage_error(command, "option '%s' needs an argument", arg);
    }
    if (optopt) {
        return cli_usage_error(command, "unknown option '-%c'", optopt);
    }
    return cli_usage_error(command, "unknown option '%s'", arg);
}

bool cli_stdout_flush(GError **errp)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        int err = errno ? errno : EIO;
        g_set_error(errp, CLI_ERROR, CLI_ERROR_IO, "write to stdout: %s", g_strerror(err));
        return false;
    }
    return true;
}

bool cli_check_name(const char *what, const char *name, GError **errp)
{
    return vma_check_name(what, name, errp);
}

bool cli_fd_get_size(int fd, const char *name, uint64_t *size, bool *is_blockdev,
                     GError **errp)
{
    struct stat st;

    if (fstat(fd, &st) < 0) {
        g_set_error(errp, CLI_ERROR, CLI_ERROR_IO, "%s: %s", name, g_strerror(errno));
        return false;
    }
    if (S_ISREG(st.st_mode)) {
        *size = (uint64_t)st.st_size;
        *is_blockdev = false;
        return true;
    }
    if (S_ISBLK(st.st_mode)) {
        uint64_t bytes = 0;
        if (ioctl(fd, BLKGETSIZE64, &bytes) < 0) {
            g_set_error(errp, CLI_ERROR, CLI_ERROR_IO, "%s: cannot get block device size: %s",
                        name, g_strerror(errno));
            return false;
        }
        *size = bytes;
        *is_blockdev = true;
        return true;
    }
    g_set_error(errp, CLI_ERROR, CLI_ERROR_INVALID,
                "%s: not a regular file or block device", name);
    return false;
}

static volatile sig_atomic_t interrupted;

/* The first signal asks the command to stop and clean up; a second one (the user
 * insists, or the command is stuck in a blocking read) terminates at once. */
static void on_interrupt(int sig)
{
    if (interrupted) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    interrupted = 1;
}

void cli_install_interrupt_handlers(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: a blocking read of the archive returns EINTR and the reader's
     * error ends the command; other calls are retried by their callers. */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

bool cli_interrupted(void)
{
    return interrupted != 0;
}
