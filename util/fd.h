/*
 * util/fd.h — closing descriptors.
 *
 * close_fd(&fd) closes fd if it is open (>= 0), sets it to -1 and leaves errno as it
 * was, so it can sit in an error path between the failing call and the g_set_error
 * that reports errno. Close errors are ignored there: on Linux the descriptor is gone
 * even when close() fails, and a retry could close someone else's. A caller that must
 * see a close error (a file it wrote: NFS reports a lost write only there) uses
 * close_fd_checked().
 *
 * g_autofd declares an int that close_fd() closes when it leaves scope; steal_fd()
 * takes it out (glib 2.74 has neither; the names and meaning are those of glib 2.76's
 * g_autofd and g_steal_fd, so a later glib takes over without changes).
 *
 *   g_autofd int fd = open(...);
 *   ...
 *   return steal_fd(&fd);
 *
 * Any thread.
 *
 * Who uses what:
 *   close_fd          backup.c, backup-spill.c, block/file.c, vma-input.c,
 *                     vma-writer.c (their handles' descriptors),
 *                     cli/create.c, util/qmp-client.c, vmad.c
 *   close_fd_checked  cli/extract.c (restored files: a failed close is a failed restore)
 *   g_autofd/steal_fd functions that open a descriptor and hand it back on success
 */
#ifndef VMA_UTIL_FD_H
#define VMA_UTIL_FD_H

void close_fd(int *fd);
/* close() once, *fd = -1 either way; 0 or -errno (errno is set too). */
int close_fd_checked(int *fd);

static inline int steal_fd(int *fd)
{
    int v = *fd;

    *fd = -1;
    return v;
}

#ifndef g_autofd
#define g_autofd __attribute__((cleanup(close_fd)))
#endif

#endif
