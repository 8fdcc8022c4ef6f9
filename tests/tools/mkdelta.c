/*
 * mkdelta.c — test tool: write a delta archive (or an incomplete "full" one) through the
 * library's writer, without vmad.
 *
 *   mkdelta [options] OUT NAME=IMAGE[@CLUSTERS]...
 *     --kind incremental|differential|full   (default incremental; "full" writes no
 *                                              chain entry: with @CLUSTERS a full archive
 *                                              that lacks clusters, for negative tests)
 *     --base ARCHIVE      read the base uuid from ARCHIVE's header
 *     --base-uuid UUID    or give it as text (written as given, to test bad ones)
 *     --bitmap NAME       the chain entry's bitmap name
 *     --chain-text TEXT   write TEXT as the chain entry instead of the formatted one
 *     -c FILE             add a config (stored under its base name), repeatable
 *     --ctime SECONDS     header time
 *     --uuid UUID         the archive's own uuid (default: random)
 *     --shuffle SEED      hand the clusters over in a shuffled order
 * CLUSTERS: comma-separated cluster numbers or ranges A-B (inclusive), or "none"; without
 * @CLUSTERS every cluster of the image is written. Clusters are read from IMAGE (a raw
 * image with the device's size). Prints the archive uuid on stdout.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uuid/uuid.h>

#include "vma.h"
#include "util/io.h"

static void die(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mkdelta: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static GArray *parse_clusters(const char *spec, uint64_t nclusters)
{
    GArray *list = g_array_new(false, false, sizeof(uint32_t));

    if (!spec) {
        for (uint64_t c = 0; c < nclusters; c++) {
            uint32_t v = (uint32_t)c;
            g_array_append_val(list, v);
        }
        return list;
    }
    if (strcmp(spec, "none") == 0) {
        return list;
    }
    g_auto(GStrv) parts = g_strsplit(spec, ",", -1);
    for (char **p = parts; *p; p++) {
        char *end = NULL;
        unsigned long a = strtoul(*p, &end, 10), b = a;
        if (*end == '-') {
            b = strtoul(end + 1, &end, 10);
        }
        if (*end != '\0' || b < a || b >= nclusters) {
            die("bad cluster list item '%s' (device has %" G_GUINT64_FORMAT " clusters)", *p,
                nclusters);
        }
        for (unsigned long c = a; c <= b; c++) {
            uint32_t v = (uint32_t)c;
            g_array_append_val(list, v);
        }
    }
    return list;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"kind", required_argument, NULL, 'k'},     {"base", required_argument, NULL, 'b'},
        {"base-uuid", required_argument, NULL, 'u'}, {"bitmap", required_argument, NULL, 'm'},
        {"chain-text", required_argument, NULL, 't'}, {"ctime", required_argument, NULL, 'T'},
        {"shuffle", required_argument, NULL, 's'},  {"uuid", required_argument, NULL, 'U'},
        {NULL, 0, NULL, 0},
    };
    const char *kind = "incremental", *base = NULL, *base_uuid = NULL, *bitmap = NULL;
    const char *chain_text = NULL, *own_uuid = NULL;
    g_autoptr(GPtrArray) configs = g_ptr_array_new();
    int64_t ctime = 0;
    long shuffle = -1;
    g_autoptr(GError) err = NULL;
    int c;

    while ((c = getopt_long(argc, argv, "c:", longopts, NULL)) != -1) {
        switch (c) {
        case 'k':
            kind = optarg;
            break;
        case 'b':
            base = optarg;
            break;
        case 'u':
            base_uuid = optarg;
            break;
        case 'm':
            bitmap = optarg;
            break;
        case 't':
            chain_text = optarg;
            break;
        case 'T':
            ctime = strtoll(optarg, NULL, 10);
            break;
        case 's':
            shuffle = strtol(optarg, NULL, 10);
            break;
        case 'U':
            own_uuid = optarg;
            break;
        case 'c':
            g_ptr_array_add(configs, optarg);
            break;
        default:
            return 2;
        }
    }
    if (argc - optind < 1) {
        die("usage: mkdelta [options] OUT NAME=IMAGE[@CLUSTERS]...");
    }
    const char *out = argv[optind++];
    bool full = strcmp(kind, "full") == 0;
    VmaChainInfo info = {.bitmap = (char *)bitmap};
    if (strcmp(kind, "incremental") == 0) {
        info.kind = VMA_CHAIN_INCREMENTAL;
    } else if (strcmp(kind, "differential") == 0) {
        info.kind = VMA_CHAIN_DIFFERENTIAL;
    } else if (!full) {
        die("unknown kind '%s'", kind);
    }
    g_autofree char *text = NULL;
    size_t text_len = 0;
    if (chain_text) {
        text = g_strcompress(chain_text);
        text_len = strlen(text);
    } else if (!full) {
        if (base) {
            g_autoptr(VmaReader) r = vma_reader_open(base, &err);
            if (!r) {
                die("%s", err->message);
            }
            vma_reader_get_uuid(r, info.base_uuid);
        } else if (!base_uuid || uuid_parse(base_uuid, info.base_uuid) != 0) {
            die("give --base ARCHIVE or a valid --base-uuid");
        }
        text = vma_chain_info_format(&info, &text_len);
        if (!text) {
            die("cannot format the chain entry");
        }
    }

    VmaWriterOptions opts = {.delta = true, .ctime = ctime};
    uint8_t uuid_bin[16];
    if (own_uuid) {
        if (uuid_parse(own_uuid, uuid_bin) != 0) {
            die("bad --uuid '%s'", own_uuid);
        }
        opts.uuid = uuid_bin;
    }
    g_autoptr(VmaWriter) w = vma_writer_new(out, &opts, &err);
    if (!w) {
        die("%s", err->message);
    }
    for (guint i = 0; i < configs->len; i++) {
        const char *path = g_ptr_array_index(configs, i);
        g_autofree char *data = NULL;
        gsize len = 0;
        g_autofree char *name = g_path_get_basename(path);
        if (!g_file_get_contents(path, &data, &len, &err) ||
            !vma_writer_add_config(w, name, data, len, &err)) {
            die("%s", err->message);
        }
    }
    if (text && !vma_writer_add_config(w, VMA_CHAIN_CONFIG_NAME, text, text_len, &err)) {
        die("%s", err->message);
    }

    /* every device first (the header), then the clusters */
    typedef struct Item {
        int fd;
        uint8_t dev_id;
        uint32_t cluster;
    } Item;
    g_autoptr(GArray) items = g_array_new(false, false, sizeof(Item));
    for (int i = optind; i < argc; i++) {
        g_autofree char *spec = g_strdup(argv[i]);
        char *eq = strchr(spec, '=');
        if (!eq) {
            die("bad device '%s' (want NAME=IMAGE[@CLUSTERS])", argv[i]);
        }
        *eq = '\0';
        char *at = strrchr(eq + 1, '@');
        if (at) {
            *at = '\0';
        }
        int fd = open(eq + 1, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) {
            die("open %s: %s", eq + 1, g_strerror(errno));
        }
        int id = vma_writer_register_device(w, spec, (uint64_t)st.st_size, &err);
        if (id < 0) {
            die("%s", err->message);
        }
        uint64_t n = ((uint64_t)st.st_size + VMA_CLUSTER_SIZE - 1) / VMA_CLUSTER_SIZE;
        g_autoptr(GArray) list = parse_clusters(at ? at + 1 : NULL, n);
        for (guint k = 0; k < list->len; k++) {
            Item it = {fd, (uint8_t)id, g_array_index(list, uint32_t, k)};
            g_array_append_val(items, it);
        }
    }
    if (shuffle >= 0) {
        GRand *rnd = g_rand_new_with_seed((guint32)shuffle);
        for (guint i = items->len; i > 1; i--) {
            guint j = (guint)g_rand_int_range(rnd, 0, (gint32)i);
            Item t = g_array_index(items, Item, i - 1);
            g_array_index(items, Item, i - 1) = g_array_index(items, Item, j);
            g_array_index(items, Item, j) = t;
        }
        g_rand_free(rnd);
    }
    for (guint i = 0; i < items->len; i++) {
        Item *it = &g_array_index(items, Item, i);
        uint8_t *buf = vma_cluster_alloc();
        memset(buf, 0, VMA_CLUSTER_SIZE);
        ssize_t got = pread(it->fd, buf, VMA_CLUSTER_SIZE,
                            (off_t)it->cluster * VMA_CLUSTER_SIZE);
        if (got < 0) {
            die("read: %s", g_strerror(errno));
        }
        if (!vma_writer_write_cluster(w, it->dev_id, it->cluster, buf, 0, &err)) {
            die("%s", err->message);
        }
    }
    if (!vma_writer_close(w, &err)) {
        die("%s", err->message);
    }
    char uuid[37];
    vma_writer_get_uuid_str(w, uuid);
    printf("%s\n", uuid);
    return 0;
}
