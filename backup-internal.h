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

#include "vma.h"

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

/* ---- the VM's RAM and device state (backup-vmstate.c) ---- */

typedef struct BackupVmstate BackupVmstate;

/* Controller thread, with the VM stopped: take the disks' instant. */
typedef bool (*BackupVmstateInstantFn)(void *opaque, GError **errp);

#define BACKUP_VMSTATE_CONFIG_NAME "vmabackup-vmstate.conf"

/* Check that monitor names a socket (no connection yet). Main loop. */
BackupVmstate *backup_vmstate_new(const char *monitor, GError **errp);
/* Controller thread: connect, refuse a VM that is not running, learn QEMU's version,
 * machine type, memory and CPUs: *config (g_free) is the text of the archive's
 * BACKUP_VMSTATE_CONFIG_NAME entry, *size the size to declare for the vmstate device. */
bool backup_vmstate_prepare(BackupVmstate *vs, char **config, size_t *config_len,
                            uint64_t *size, GError **errp);
/* Controller thread: migrate the VM into device dev_id of w (header final, writer
 * started); call instant() once the VM is stopped at the end of the migration, then
 * resume it. Returns when the stream has ended. On failure the VM runs as before. */
bool backup_vmstate_run(BackupVmstate *vs, VmaWriter *w, uint8_t dev_id,
                        BackupVmstateInstantFn instant, void *opaque, GError **errp);
/* The job failed: stop streaming, cancel the migration. Any thread. */
void backup_vmstate_cancel(BackupVmstate *vs);
/* Stream bytes so far and the guest's downtime in ms (-1 until known). Any thread. */
void backup_vmstate_progress(BackupVmstate *vs, uint64_t *bytes, int64_t *downtime_ms);
/* "precopy" */
const char *backup_vmstate_method(BackupVmstate *vs);
void backup_vmstate_free(BackupVmstate *vs);

#endif /* BACKUP_INTERNAL_H */
