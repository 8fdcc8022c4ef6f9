/*
 * backup-spill.c — the fleecing spill of a backup: copy-before-write data that does not
 * fit in memory goes to an unlinked file, and a drain thread reads it back and hands it
 * to the archive writer (backup-internal.h).
 *
 * The file is an array of 64 KiB slots. backup_spill_save() takes a free slot (reusing
 * freed ones first), writes the cluster there and queues {disk, cluster, slot}; the
 * drain thread pops the oldest entry, reads the slot, frees it and hands the data on
 * through ops->drained (which blocks while the writer's normal lane is full). So the
 * file grows only to the most clusters spilled and not yet drained at once.
 *
 * Lock: sp->lock protects the queue, the slots and the flags below; it is taken alone
 * and never held across I/O or a callback.
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "backup-internal.h"
#include "backup.h"
#include "util/fd.h"
#include "util/io.h"
#include "vma.h"

#define CLUSTER VMA_CLUSTER_SIZE

typedef struct SpillEntry {
    unsigned disk;
    uint64_t cluster;
    uint64_t slot;            /* its place in the file, in clusters */
} SpillEntry;

struct BackupSpill {
    /* Immutable. */
    int fd;
    char *dir;
    uint64_t limit;           /* bytes; 0: unlimited */
    const BackupSpillOps *ops;
    void *opaque;
    GThread *drain;           /* the starter and the stopper only */

    GMutex lock;
    GCond cond;               /* the queue got an entry, stop, cancel */
    GQueue queue;             /* SpillEntry*, oldest first */
    GArray *free_slots;       /* uint64_t slots free for reuse */
    uint64_t nslots;          /* slots ever used (file size / 64 KiB) */
    uint64_t used;            /* bytes in the file now */
    bool stop;                /* drain what is queued, then end */
    bool cancelled;           /* end now */
};

/* A file in dir that disappears when closed; -1 with errp set. */
static int open_spill_file(const char *dir, GError **errp)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

    if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        /* no O_TMPFILE here: create and unlink at once */
        g_autofree char *tmpl = g_build_filename(dir, ".vmad-fleecing-XXXXXX", NULL);
        fd = g_mkstemp_full(tmpl, O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0) {
            unlink(tmpl);
        }
    }
    if (fd < 0) {
        g_set_error(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED, "create fleecing file in %s: %s",
                    dir, g_strerror(errno));
    }
    return fd;
}

BackupSpill *backup_spill_new(const char *dir, uint64_t limit, const BackupSpillOps *ops,
                              void *opaque, GError **errp)
{
    int fd = open_spill_file(dir, errp);

    if (fd < 0) {
        return NULL;
    }
    BackupSpill *sp = g_new0(BackupSpill, 1);
    sp->fd = fd;
    sp->dir = g_strdup(dir);
    sp->limit = limit;
    sp->ops = ops;
    sp->opaque = opaque;
    g_mutex_init(&sp->lock);
    g_cond_init(&sp->cond);
    g_queue_init(&sp->queue);
    sp->free_slots = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    return sp;
}

const char *backup_spill_dir(BackupSpill *sp)
{
    return sp->dir;
}

static void slot_free(BackupSpill *sp, uint64_t slot)
{
    g_mutex_lock(&sp->lock);
    g_array_append_val(sp->free_slots, slot);
    sp->used -= CLUSTER;
    g_mutex_unlock(&sp->lock);
}

int backup_spill_save(BackupSpill *sp, unsigned disk, uint64_t cluster, const void *buf)
{
    uint64_t slot;

    g_mutex_lock(&sp->lock);
    if (sp->limit != 0 && sp->used + CLUSTER > sp->limit) {
        g_mutex_unlock(&sp->lock);
        return -ENOBUFS;
    }
    if (sp->free_slots->len > 0) {
        slot = g_array_index(sp->free_slots, uint64_t, sp->free_slots->len - 1);
        g_array_set_size(sp->free_slots, sp->free_slots->len - 1);
    } else {
        slot = sp->nslots++;
    }
    sp->used += CLUSTER;
    g_mutex_unlock(&sp->lock);

    int r = full_pwrite(sp->fd, buf, CLUSTER, slot * CLUSTER);
    if (r < 0) {
        slot_free(sp, slot);
        return r;
    }
    SpillEntry *e = g_new(SpillEntry, 1);
    *e = (SpillEntry){ .disk = disk, .cluster = cluster, .slot = slot };
    g_mutex_lock(&sp->lock);
    g_queue_push_tail(&sp->queue, e);
    /* only the drain thread waits for this */
    g_cond_signal(&sp->cond);
    g_mutex_unlock(&sp->lock);
    return 0;
}

static gpointer drain_main(gpointer opaque)
{
    BackupSpill *sp = opaque;

    for (;;) {
        g_mutex_lock(&sp->lock);
        while (!sp->cancelled && !sp->stop && g_queue_is_empty(&sp->queue)) {
            g_cond_wait(&sp->cond, &sp->lock);
        }
        SpillEntry *e = sp->cancelled ? NULL : g_queue_pop_head(&sp->queue);
        g_mutex_unlock(&sp->lock);
        if (e == NULL) {
            break;
        }

        void *buf = vma_cluster_alloc();
        int r = full_pread(sp->fd, buf, CLUSTER, e->slot * CLUSTER);
        slot_free(sp, e->slot);
        if (r < 0) {
            vma_cluster_free(buf);
            sp->ops->failed(sp->opaque,
                            g_error_new(BACKUP_ERROR, BACKUP_ERROR_FAILED,
                                        "read fleecing file in %s: %s", sp->dir,
                                        g_strerror(-r)));
            g_free(e);
            break;
        }
        bool ok = sp->ops->drained(sp->opaque, e->disk, e->cluster, buf);
        g_free(e);
        if (!ok) {
            break;
        }
    }
    return NULL;
}

bool backup_spill_start(BackupSpill *sp, GError **errp)
{
    GError *err = NULL;

    sp->drain = g_thread_try_new("backup-drain", drain_main, sp, &err);
    if (sp->drain == NULL) {
        g_propagate_prefixed_error(errp, err, "start backup drain thread: ");
        return false;
    }
    return true;
}

void backup_spill_cancel(BackupSpill *sp)
{
    g_mutex_lock(&sp->lock);
    sp->cancelled = true;
    g_cond_broadcast(&sp->cond);
    g_mutex_unlock(&sp->lock);
}

void backup_spill_stop(BackupSpill *sp)
{
    g_mutex_lock(&sp->lock);
    sp->stop = true;
    g_cond_broadcast(&sp->cond);
    g_mutex_unlock(&sp->lock);
    if (sp->drain != NULL) {
        g_thread_join(sp->drain);
        sp->drain = NULL;
    }
}

void backup_spill_free(BackupSpill *sp)
{
    if (sp == NULL) {
        return;
    }
    backup_spill_cancel(sp);
    backup_spill_stop(sp);
    close_fd(&sp->fd);
    g_queue_clear_full(&sp->queue, g_free);
    g_array_unref(sp->free_slots);
    g_mutex_clear(&sp->lock);
    g_cond_clear(&sp->cond);
    g_free(sp->dir);
    g_free(sp);
}
