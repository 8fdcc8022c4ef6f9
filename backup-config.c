/*
 * backup-config.c — reading a config file to store in a backup archive
 * (backup-internal.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup-internal.h"
#include "backup.h"

bool backup_read_config_file(const char *path, size_t max, char **data_out, size_t *len_out,
                             GError **errp)
{
    g_autofree char *data = NULL;
    size_t len = 0;
    struct stat st;

    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        g_set_error(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED, "unable to read file '%s'",
                    path);
        return false;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        /* the deployed message, which management tools may match */
        g_set_error(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED, "unable to read file '%s'",
                    path);
        close(fd);
        return false;
    }
    data = g_malloc(max + 1);
    while (len <= max) {
        ssize_t n = read(fd, data + len, max + 1 - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            g_set_error(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED,
                        "unable to read file '%s': %s", path, g_strerror(errno));
            close(fd);
            return false;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
    }
    close(fd);
    if (len > max) {
        g_set_error(errp, BACKUP_ERROR, BACKUP_ERROR_FAILED,
                    "config file '%s' is too large (more than %zu bytes)", path, max);
        return false;
    }
    *data_out = g_steal_pointer(&data);
    *len_out = len;
    return true;
}
