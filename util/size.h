/*
 * util/size.h — the one parser of sizes given on a command line (docs/sizes.md).
 *
 * Accepted: a decimal byte count (512), or one followed by K, M, G or T (powers of
 * 1024) and optionally B or iB: 64K, 256M, 1G, 10MB, 1GiB; the suffix in any case
 * (64k, 1gib). Refused: an empty string, a sign or a leading blank, a fraction, anything
 * after the suffix, and values that overflow or lie outside [min, max].
 *
 * Errors are G_OPTION_ERROR_BAD_VALUE; the message names the option (when option is
 * not NULL) and quotes the value: "--speed: '10X' is not a size (...)". Any thread.
 *
 * Who uses what:
 *   size_parse   cli/backup.c (--speed), monitor/qmp-cmds-backup.c
 *                (vmad --backup-buffer-size)
 *   size_format  the messages of size_parse (and anyone printing a limit as typed)
 */
#ifndef VMA_UTIL_SIZE_H
#define VMA_UTIL_SIZE_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

bool size_parse(const char *option, const char *text, uint64_t min, uint64_t max,
                uint64_t *out, GError **errp);

/* v in the accepted form with the largest suffix that divides it exactly (65536 ->
 * "64K", 1000 -> "1000"). Free with g_free. */
char *size_format(uint64_t v);

#endif
