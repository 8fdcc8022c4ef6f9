/*
 * util/listen.h — listening sockets that a process owns: every listening socket of vmad
 * (the QMP monitor, the NBD server over UNIX or TCP) is made here, so that one rule
 * holds for all of them.
 *
 * UNIX sockets. Before binding a path that exists, the path is probed:
 *   - a socket that accepts a connection (or whose backlog is full) belongs to a running
 *     process: refused, "PATH: in use by another process";
 *   - a socket that refuses (ECONNREFUSED) is stale, left by a process that died: it is
 *     removed and the path bound anew;
 *   - anything else (a regular file, a directory, a FIFO, ...) is refused and left alone,
 *     "PATH: file exists and is not a socket".
 * After bind() the socket file's device and inode are recorded. listen_socket_free()
 * removes the file only if the path still names that same file: a socket file that
 * another process put there meanwhile is never removed. (Between the check and the
 * unlink() there is no lock; a second process racing exactly there is not guarded
 * against, as in every daemon that removes its socket.)
 *
 * TCP sockets: SO_REUSEADDR (so a restart can bind while old connections sit in
 * TIME_WAIT; on Linux it does not let two sockets listen on one port), never
 * SO_REUSEPORT. A port another socket listens on fails bind() with EADDRINUSE, reported as
 * "ADDR: Address already in use".
 *
 * Errors are G_FILE_ERROR with the message naming the path or address; callers prefix
 * their context ("monitor socket ", "nbd-server-start: "). Any thread; not thread-safe
 * per handle.
 */
#ifndef UTIL_LISTEN_H
#define UTIL_LISTEN_H

#include <stdbool.h>
#include <sys/socket.h>

#include <glib.h>

typedef struct ListenSocket ListenSocket;

/* Flags of listen_socket_unix / listen_socket_tcp. */
#define LISTEN_NONBLOCK 1u      /* the listening socket is O_NONBLOCK */

/* Listen on the UNIX socket path. mode: the permission bits the socket file gets
 * (applied through the umask at bind(), so it is never wider for an instant), or -1 for
 * the process's umask. NULL with *errp set on failure. */
ListenSocket *listen_socket_unix(const char *path, int mode, int backlog, unsigned flags,
                                 GError **errp);

/* Listen on one TCP address (sa of salen bytes); name is the address as the user wrote
 * it, for messages. NULL with *errp set on failure (errno-derived code). */
ListenSocket *listen_socket_tcp(const struct sockaddr *sa, socklen_t salen, const char *name,
                                int backlog, unsigned flags, GError **errp);

/* The listening descriptor (owned by the handle). */
int listen_socket_fd(const ListenSocket *ls);

/* True if the handle is a UNIX socket whose path still names the file it created. */
bool listen_socket_owns_path(const ListenSocket *ls);

/* Close the socket and remove its file if this handle still owns it. NULL is fine. */
void listen_socket_free(ListenSocket *ls);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(ListenSocket, listen_socket_free)

#endif /* UTIL_LISTEN_H */
