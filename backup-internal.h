/*
 * backup-internal.h — pieces of the backup job that live in files of their own
 * (daemon-private): the fleecing spill (backup-spill.c) and reading the config files
 * stored in the archive (backup-config.c).
 */
#ifndef BACKUP_INTERNAL_H
#define BACKUP_INTERNAL_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

/* ---- the fleecing spill (backup-spill.c) ---- */

typedef struct BackupSpill BackupSpill;

typedef struct BackupSpillOps {
    /* Drain thread: cluster `cluster` of disk `disk` was read back into buf (owned by
     * the callee); hand it on. May block. false: the job failed, stop draining. */
    bool (*drained)(void *opaque, unsigned disk, uint64_t cluster, void *buf);
    /* Drain thread: reading the file back failed (err owned by the callee). */
    void (*failed)(void *opaque, GError *err);
} BackupSpillOps;

/* A spill file in dir (O_TMPFILE, or created and unlinked at once: nothing survives a
 * crash) holding at most limit bytes (0: until the file system is full). Main loop. */
BackupSpill *backup_spill_new(const char *dir, uint64_t limit, const BackupSpillOps *ops,
                              void *opaque, GError **errp);
/* Start the drain thread. Main loop or the job's controller. */
bool backup_spill_start(BackupSpill *sp, GError **errp);
/* Write one cluster (buf, not taken) to a free slot and queue it for the drain thread.
 * 0; -ENOBUFS when the limit is reached; else the write's -errno. Any thread. */
int backup_spill_save(BackupSpill *sp, unsigned disk, uint64_t cluster, const void *buf);
const char *backup_spill_dir(BackupSpill *sp);
/* Drain thread: hand on what is queued, then end (joined here). */
void backup_spill_stop(BackupSpill *sp);
/* The job failed: the drain thread stops at once. Any thread. */
void backup_spill_cancel(BackupSpill *sp);
/* Stops the drain thread if it runs, closes the file. Accepts NULL. */
void backup_spill_free(BackupSpill *sp);

/* ---- config files for the archive (backup-config.c) ---- */

/*
 * Read a regular file of at most max bytes into *data (g_free), *len. Never more, and
 * never blocking: this runs on the main loop, and a path such as /dev/zero or a FIFO
 * must not make it read forever. Errors in BACKUP_ERROR with the messages management
 * tools match ("unable to read file 'X'").
 */
bool backup_read_config_file(const char *path, size_t max, char **data, size_t *len,
                             GError **errp);

#endif /* BACKUP_INTERNAL_H */
