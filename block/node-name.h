/*
 * node-name.h — QEMU's rule for node names, the one check every entry point that names
 * a node calls (blockdev_add, and through it QMP blockdev-add and vmad --blockdev).
 *
 * A node name starts with an ASCII letter, continues with ASCII letters, digits, '-',
 * '.' and '_', and has at most NODE_NAME_MAX bytes (QEMU's node_name[32]). Such a name is
 * also a plain file name (no '/', no leading '.', no control character), so a backup's
 * device names (the node names) are names `vma extract` restores. One name is well-formed
 * here but reserved in an archive: "vmstate" (the VM state stream); the backup job refuses
 * it.
 *
 * Thread: any; no state.
 */
#ifndef BLOCK_NODE_NAME_H
#define BLOCK_NODE_NAME_H

#include <glib.h>
#include <stdbool.h>

#define NODE_NAME_MAX 31

/* QEMU's id_wellformed(): the character rule alone, without the length limit. */
bool node_name_wellformed(const char *name);

/* The whole rule, with QEMU's messages: "Invalid node-name: '<name>'" (checked first, as
 * QEMU does) or "Node name too long". G_IO_ERROR_INVALID_ARGUMENT. */
bool node_name_check(const char *name, GError **errp);

#endif /* BLOCK_NODE_NAME_H */
