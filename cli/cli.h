/*
 * cli.h — what the `vma` subcommands share: the entry points vma.c dispatches to, error
 * reporting, output helpers, name checks, progress and the restore map.
 *
 * Conventions of the command line:
 *   exit 0   success;
 *   exit 1   any failure, after exactly one line "vma: <context>: <reason>" on stderr;
 *   exit 2   a usage error (bad option, missing or extra operand), one line on stderr.
 * Results go to stdout, in the order and format of Proxmox's tool; diagnostics and the
 * terminal progress display go to stderr. The CLI uses only include/vma.h of the archive
 * library.
 *
 * Threads: everything here runs in the main thread except where a function says otherwise
 * (create's image readers call cli_interrupted()).
 */
#ifndef VMA_CLI_H
#define VMA_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <glib.h>

#include "vma.h"
#include "util/bitmap.h"

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAILURE 1
#define CLI_EXIT_USAGE 2

/* The CLI's own failures (a bad restore map, a target that cannot be written, ...);
 * failures of the archive library keep VMA_ERROR, those of a QMP server
 * QMP_CLIENT_ERROR. */
#define CLI_ERROR (cli_error_quark())
GQuark cli_error_quark(void);

typedef enum CliError {
    CLI_ERROR_INVALID,     /* a bad argument, restore map line or target */
    CLI_ERROR_IO,          /* a system call failed (message carries strerror) */
    CLI_ERROR_EXISTS,      /* an output file or directory already exists */
    CLI_ERROR_FORMAT,      /* the archive holds what the command cannot use */
    CLI_ERROR_MISSING,     /* clusters of a restored device never appeared */
    CLI_ERROR_CANCELLED,   /* interrupted by a signal */
} CliError;

/* ---- subcommands (argv[0] is the subcommand name) ---------------------------------- */

int cli_list_main(int argc, char **argv);
int cli_config_main(int argc, char **argv);
int cli_verify_main(int argc, char **argv);
int cli_extract_main(int argc, char **argv);
int cli_create_main(int argc, char **argv);
int cli_backup_main(int argc, char **argv);
int cli_merge_main(int argc, char **argv);
int cli_serve_main(int argc, char **argv);     /* linked with vmad's code */
int cli_qemu_args_main(int argc, char **argv);

/* ---- errors and usage -------------------------------------------------------------- */

/* Print "vma: <context>: <message>" (or "vma: <message>" when context is NULL) on stderr
 * and return CLI_EXIT_FAILURE. */
int cli_fail(const char *context, const GError *err);
int cli_failf(const char *context, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* Print "vma <command>: <message> (try 'vma <command> --help')" and return
 * CLI_EXIT_USAGE. */
int cli_usage_error(const char *command, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* Report a getopt_long() error (c is '?' or ':'; optstring starts with ':'). */
int cli_bad_option(const char *command, int c, char **argv);

/* ---- stdout ------------------------------------------------------------------------ */

/* Flush stdout; false with an error ("write to stdout: Broken pipe") if any write to it
 * failed. SIGPIPE is ignored by main(), so a closed pipe shows up here as EPIPE. */
bool cli_stdout_flush(GError **errp);

/* ---- archive names ----------------------------------------------------------------- */

/* A config or device name from an archive (or for one) may become a file name below the
 * target directory: refuse "", names with '/', "..", a leading '.', or control
 * characters. what is "config" or "device", used in the message. */
bool cli_check_name(const char *what, const char *name, GError **errp);

/* ---- files ------------------------------------------------------------------------- */

/* Size of an open regular file or block device (BLKGETSIZE64); *is_blockdev tells which.
 * Anything else is refused. name is used in messages. */
bool cli_fd_get_size(int fd, const char *name, uint64_t *size, bool *is_blockdev,
                     GError **errp);

/* ---- interruption ------------------------------------------------------------------ */

/* SIGINT/SIGTERM/SIGHUP set a flag instead of killing the process, so that long
 * commands can remove their partial output. Any thread may poll the flag. */
void cli_install_interrupt_handlers(void);
bool cli_interrupted(void);

/* ---- listing (list.c) ---------------------------------------------------------------- */

/* The deployed tool's listing: CFG, VMSTATE/DEV and CTIME lines. */
void cli_print_listing(VmaReader *r, FILE *out);
/* The same facts as one JSON object's members, without the braces. */
void cli_json_listing_members(VmaReader *r, GString *out);

/* ---- read statistics and progress (progress.c) --------------------------------------- */

/* Counters of a pass over the clusters of an archive, with the deployed tool's verbose
 * output: "progress N% (read B bytes, duration S sec)" on each percent step, and the
 * "total bytes read" / "space reduction" summary. */
typedef struct CliReadStats {
    uint64_t clusters_total;     /* expected cluster records (progress denominator) */
    uint64_t clusters_read;      /* cluster records seen */
    uint64_t zero_bytes;         /* bytes of zero blocks (within device sizes) */
    uint64_t partial_zero_bytes; /* zero-block bytes in clusters that also hold data */
    int last_percent;
    time_t start;
    int out_errno;               /* set when writing a progress line failed */
} CliReadStats;

void cli_read_stats_init(CliReadStats *s, VmaReader *r);
/* Count one cluster; with out != NULL print a progress line when the percentage moves
 * (a failed write sets out_errno: callers stop early instead of reading on). */
void cli_read_stats_add(CliReadStats *s, VmaReader *r, const VmaCluster *c, FILE *out);
void cli_read_stats_print_summary(const CliReadStats *s, FILE *out);
uint64_t cli_read_stats_bytes_read(const CliReadStats *s);

/* One updating line on stderr while a long command runs, only if stderr is a terminal
 * (and the caller did not ask for the deployed-style -v lines). Shown after the first
 * second; redrawn at most 4 times a second; cleared by cli_tty_progress_end(). */
typedef struct CliTtyProgress CliTtyProgress;
CliTtyProgress *cli_tty_progress_new(const char *what, bool wanted);
/* done/total in bytes; total 0 = unknown. */
void cli_tty_progress_update(CliTtyProgress *p, uint64_t done, uint64_t total);
void cli_tty_progress_end(CliTtyProgress *p);
/* Update from a reader's input position (a file, compressed or not) or, for a pipe,
 * from the cluster records counted in s. */
void cli_tty_progress_update_reader(CliTtyProgress *p, VmaReader *r, const CliReadStats *s);

/* ---- chains of delta archives (chain.c) ---------------------------------------------- */

/* One archive of a chain, its header read. */
typedef struct CliChainLink {
    char *path;                        /* as given */
    VmaReader *r;                      /* positioned at the first extent */
    uint8_t uuid[16];
    char uuid_str[37];
    VmaChainInfo info;                 /* kind VMA_CHAIN_FULL: a full archive */
    guint top_id[VMA_MAX_DEVICES + 1]; /* its dev_id -> the newest archive's; 0 = ignored */
} CliChainLink;

typedef struct CliChain {
    guint n;
    CliChainLink *links;      /* [0] the newest archive (the operand) .. [n-1] the oldest */
    bool complete;            /* links[n-1] is a full archive */
    SparseBitmapBudget budget;
    SparseBitmap *claimed[VMA_MAX_DEVICES + 1]; /* per device of links[0] (n > 1) */
} CliChain;

/* Open archive and each of bases (NULL-terminated, may be NULL: files, in any order,
 * compressed or not) and resolve the chain from archive down to a full archive; see
 * chain.c for the errors. With allow_open and no bases, a delta archive alone is
 * accepted as a chain of one that is not complete (verify checks it alone). */
CliChain *cli_chain_open(const char *archive, char **bases, bool allow_open, GError **errp);
void cli_chain_free(CliChain *ch);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(CliChain, cli_chain_free)
/* A cluster record read from links[link]: 1 when it is the newest copy of its cluster
 * (*top_id = the device in links[0]), 0 when a newer link had it or it belongs to an
 * older link's vmstate stream (skip it), -1 with an error. Only for chains of n > 1 every
 * cluster is tracked; with n == 1 every record is the newest. */
int cli_chain_claim(CliChain *ch, guint link, const VmaCluster *c, guint *top_id,
                    GError **errp);
/* Every cluster of device top_id (0 = every disk) of links[0] was claimed (n > 1). */
bool cli_chain_check_complete(CliChain *ch, guint top_id, GError **errp);

/* ---- restore map (restore-map.c) ----------------------------------------------------- */

typedef struct CliMapEntry {
    char *devname;
    char *path;            /* NULL for skip= */
    char *format;          /* NULL = not given */
    uint64_t throttling_bps;
    char *throttling_group;
    char *cache;
    bool write_zeros;
    bool skip;
} CliMapEntry;

void cli_map_entry_free(CliMapEntry *e);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(CliMapEntry, cli_map_entry_free)

/* A format name as qemu-img spells them (lower-case letters, digits, '_', '-'; 1..32). */
bool cli_map_format_ok(const char *format);
/* Parse one map line (without its newline). */
CliMapEntry *cli_map_parse_line(const char *line, GError **errp);
/* Read map lines from path (a FIFO) until EOF, an empty line or "done". Returns a table
 * devname -> CliMapEntry (owned). A second line for the same device is an error. */
GHashTable *cli_map_read(const char *path, GError **errp);

#endif /* VMA_CLI_H */
