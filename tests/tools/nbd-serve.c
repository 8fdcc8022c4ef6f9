/*
 * nbd-serve — test-only NBD server: the block layer and nbd/ without QMP, so that the
 * functional tests and the benchmark can drive our server before vmad exists.
 *
 *   nbd-serve --blockdev NODE,FILE[,ro][,direct] ... (--socket PATH | --tcp HOST:PORT)
 *             --export NODE[,writable][,name=NAME] ... [--max-connections N]
 *
 * Prints "ready" on stdout once it listens and every export exists; runs until SIGTERM
 * or SIGINT, then stops the server (finishing in-flight requests) and exits 0.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "blockdev.h"
#include "nbd-server.h"

static bool parse_blockdev(const char *spec, GError **errp)
{
    g_auto(GStrv) parts = g_strsplit(spec, ",", -1);
    BlockDevOptions o = { 0 };

    if (parts[0] == NULL || parts[1] == NULL) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "--blockdev %s: expected NODE,FILE[,ro][,direct]", spec);
        return false;
    }
    o.node_name = parts[0];
    o.filename = parts[1];
    for (int i = 2; parts[i] != NULL; i++) {
        if (strcmp(parts[i], "ro") == 0) {
            o.read_only = true;
        } else if (strcmp(parts[i], "direct") == 0) {
            o.direct = true;
        } else {
            g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                        "--blockdev %s: unknown flag '%s'", spec, parts[i]);
            return false;
        }
    }
    return blockdev_add(&o, errp);
}

static bool parse_export(const char *spec, GError **errp)
{
    g_auto(GStrv) parts = g_strsplit(spec, ",", -1);
    const char *name = NULL;
    bool writable = false;

    if (parts[0] == NULL || parts[0][0] == '\0') {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "--export %s: expected NODE[,writable][,name=NAME]", spec);
        return false;
    }
    for (int i = 1; parts[i] != NULL; i++) {
        if (strcmp(parts[i], "writable") == 0) {
            writable = true;
        } else if (g_str_has_prefix(parts[i], "name=")) {
            name = parts[i] + 5;
        } else {
            g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                        "--export %s: unknown flag '%s'", spec, parts[i]);
            return false;
        }
    }
    return nbd_server_add_export(parts[0], name, writable, errp);
}

int main(int argc, char **argv)
{
    g_auto(GStrv) blockdevs = NULL;
    g_auto(GStrv) exports = NULL;
    g_autofree char *socket_path = NULL;
    g_autofree char *tcp = NULL;
    gint max_conns = 16;
    GOptionEntry entries[] = {
        { "blockdev", 0, 0, G_OPTION_ARG_STRING_ARRAY, &blockdevs, "add a disk",
          "NODE,FILE[,ro][,direct]" },
        { "export", 0, 0, G_OPTION_ARG_STRING_ARRAY, &exports, "export a disk",
          "NODE[,writable][,name=NAME]" },
        { "socket", 0, 0, G_OPTION_ARG_FILENAME, &socket_path, "listen on a UNIX socket",
          "PATH" },
        { "tcp", 0, 0, G_OPTION_ARG_STRING, &tcp, "listen on TCP", "HOST:PORT" },
        { "max-connections", 0, 0, G_OPTION_ARG_INT, &max_conns,
          "refuse clients beyond this many (0: no limit; default 16)", "N" },
        { NULL },
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("- test NBD server");
    g_autoptr(GError) err = NULL;
    sigset_t sigs;
    int sig = 0;

    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
        fprintf(stderr, "nbd-serve: %s\n", err->message);
        return 2;
    }
    if ((socket_path == NULL) == (tcp == NULL) || max_conns < 0) {
        fprintf(stderr, "nbd-serve: give exactly one of --socket and --tcp\n");
        return 2;
    }

    /* Signals go to sigwait() below; every thread inherits this mask. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    for (char **b = blockdevs; b != NULL && *b != NULL; b++) {
        if (!parse_blockdev(*b, &err)) {
            fprintf(stderr, "nbd-serve: %s\n", err->message);
            return 1;
        }
    }
    NbdServerAddress addr = { 0 };
    g_autofree char *host = NULL;
    if (socket_path != NULL) {
        addr.type = "unix";
        addr.path = socket_path;
    } else {
        const char *colon = strrchr(tcp, ':');
        if (colon == NULL) {
            fprintf(stderr, "nbd-serve: --tcp %s: expected HOST:PORT\n", tcp);
            return 2;
        }
        host = g_strndup(tcp, (gsize)(colon - tcp));
        addr.type = "inet";
        addr.host = host;
        addr.port = colon + 1;
    }
    if (!nbd_server_start(&addr, (guint)max_conns, &err)) {
        fprintf(stderr, "nbd-serve: %s\n", err->message);
        return 1;
    }
    for (char **e = exports; e != NULL && *e != NULL; e++) {
        if (!parse_export(*e, &err)) {
            fprintf(stderr, "nbd-serve: %s\n", err->message);
            nbd_server_stop(NULL);
            return 1;
        }
    }
    printf("ready\n");
    fflush(stdout);

    while (sigwait(&sigs, &sig) != 0) {
    }
    if (!nbd_server_stop(&err)) {
        fprintf(stderr, "nbd-serve: %s\n", err->message);
        return 1;
    }
    blockdev_close_all();
    return 0;
}
