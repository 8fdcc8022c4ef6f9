/*
 * pit-writer — a test-only NBD client that writes stamped data to several exports as
 * fast as it can and logs, for every request, when it was sent and when it was
 * acknowledged. tests/functional/pit-check.py uses the log to decide whether a backup
 * archive holds the disks as they were at one instant (point in time).
 *
 *   pit-writer --log FILE [--seed N] [--run-id N] [--conns N] [--depth N] [--rate OPS]
 *              [--max-blocks N] [--unit BYTES] [--no-zero] [--no-trim] URI...
 *
 * Design note
 * -----------
 * Disks. Disk i is the export of the i-th URI (nbd+unix:///EXPORT?socket=SOCK), seen as
 * blocks of --unit bytes (4 KiB by default; 512, 1 KiB or 2 KiB make requests that are
 * not 4 KiB-aligned); the last block may be partial when the size is not a multiple,
 * but must hold at least one 32-byte stamp record (other sizes are refused).
 *
 * Stamps. Every block written carries the 32-byte record
 *       "PITW" | run id u32 | disk u32 | check u32 | block u64 | generation u64
 * (little-endian; check = a hash of the other fields) repeated to fill the block; a
 * partial last block gets the first bytes of that. Generation 0 is the prefill; every request
 * takes its generation from one global counter (1, 2, ...) immediately before it is
 * sent, so a block's content names the request that wrote it. Write-zeroes and trim
 * requests take a generation too and are logged as such: their blocks read as zeros.
 *
 * Requests. Each disk gets --conns connections (one thread and one libnbd handle each),
 * each keeping up to --depth requests in flight: single-block and few-block writes at
 * random offsets, writes that straddle a 64 KiB cluster boundary, large multi-cluster
 * writes, write-zeroes (sometimes with NO_HOLE), trims, FUA on some writes. Random
 * choices come from --seed (each thread its own stream).
 *
 * No overlap in flight. Two requests in flight at once never touch the same block
 * (a per-disk table of busy blocks; a range that collides is re-drawn). So the
 * requests touching one block are totally ordered: each was sent after the previous
 * one was acknowledged, and their generations ascend in that order. The checker relies
 * on this (and verifies it from the log): a block's content after a request was
 * acknowledged is that request's, until the next request on the block is sent.
 *
 * Log. FILE starts with one line of JSON ({"run_id", "seed", "unit", "disks": [{"uri",
 * "size"}...]}) and then one 40-byte little-endian record per request:
 *       gen u64 | send_ns u64 | ack_ns u64 | offset u64 | length u32 | disk u8 |
 *       type u8 (1 write, 2 write-zeroes, 3 trim) | status i16 (0 or an errno)
 * send_ns is CLOCK_MONOTONIC read after the generation was taken and before the request
 * was handed to libnbd; ack_ns is read in the completion callback. Python's
 * time.monotonic_ns() reads the same clock, so a test can compare its own timestamps
 * (e.g. when it sent the QMP backup command) with the log's.
 *
 * Control: commands on stdin, one per line; answers on stdout, one line each:
 *       (at start, once every connection is up)      ready clock=NS disks=N
 *       prefill   write generation 0 to every block of every disk; flush -> prefilled
 *       start     start the writer threads                             -> started clock=NS
 *       stats     requests acknowledged so far                         -> stats acked=N errors=E
 *       clock     the monotonic clock                                  -> clock NS
 *       stop      stop sending, wait for every reply, write the log     -> stopped ops=N errors=E maxgen=G
 * End of input acts as stop. Exit status 0 when every request succeeded, 1 when any
 * failed (the log says which), 2 on usage errors.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <glib.h>
#include <libnbd.h>

#define CLUSTER 65536u          /* VMA clusters */
#define STAMP_LEN 32u
#define MAX_CONNS 16
#define MAX_DEPTH 64
#define MAX_DISKS 16

enum { OP_WRITE = 1, OP_ZERO = 2, OP_TRIM = 3 };

typedef struct LogRec {
    uint64_t gen;
    uint64_t send_ns;
    uint64_t ack_ns;
    uint64_t offset;
    uint32_t length;
    uint8_t disk;
    uint8_t type;
    int16_t status;
} LogRec;
_Static_assert(sizeof(LogRec) == 40, "log record layout");

typedef struct Disk {
    unsigned id;
    char *uri;
    uint64_t size;
    uint64_t nblocks;            /* including a partial last block */
    bool can_fua, can_zero, can_trim;
    GMutex lock;                 /* protects busy */
    uint8_t *busy;               /* per block: a request in flight touches it */
} Disk;

struct Worker;

typedef struct Slot {
    struct Worker *w;
    bool used;
    LogRec rec;
    uint64_t b0, b1;             /* blocks [b0, b1) held busy */
    uint8_t *buf;
} Slot;

typedef struct Worker {
    unsigned index;
    Disk *disk;
    struct nbd_handle *h;
    uint64_t rng;
    Slot slots[MAX_DEPTH];
    unsigned inflight;
    GArray *log;                 /* LogRec; only this worker's thread touches it */
    GThread *thread;
    uint64_t next_ns;            /* --rate: earliest next send */
} Worker;

static struct {
    uint32_t run_id;
    uint64_t seed;
    unsigned conns, depth;
    unsigned unit;               /* bytes per stamped unit: 512..4096 */
    unsigned cu;                 /* units per 64 KiB cluster */
    unsigned k4;                 /* units per 4 KiB */
    unsigned max_units;          /* largest request */
    double rate;
    bool no_zero, no_trim;
    Disk disks[MAX_DISKS];
    unsigned ndisks;
    Worker *workers;
    unsigned nworkers;
    atomic_uint_fast64_t next_gen;
    atomic_uint_fast64_t acked;
    atomic_uint_fast64_t errors;
    atomic_bool stop;
} G;

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* splitmix64: small, seedable, good enough for choosing offsets */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t *s, uint64_t n)
{
    return n <= 1 ? 0 : rng_next(s) % n;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

/* The check field of a stamp; pit-check.py computes the same. */
static uint32_t stamp_check(uint32_t run_id, uint32_t disk, uint64_t block, uint64_t gen)
{
    uint64_t h = 0xcbf29ce484222325u;
    uint64_t v[4] = { run_id, disk, block, gen };

    for (int i = 0; i < 4; i++) {
        h ^= v[i];
        h *= 0x100000001b3u;
        h ^= h >> 29;
    }
    return (uint32_t)(h ^ (h >> 32));
}

/* Fill one unit at p with the stamp of (disk, unit number, gen). */
static void stamp_block(uint8_t *p, unsigned disk, uint64_t block, uint64_t gen)
{
    uint8_t rec[STAMP_LEN];

    memcpy(rec, "PITW", 4);
    put32(rec + 4, G.run_id);
    put32(rec + 8, disk);
    put32(rec + 12, stamp_check(G.run_id, disk, block, gen));
    put64(rec + 16, block);
    put64(rec + 24, gen);
    for (unsigned i = 0; i < G.unit; i += STAMP_LEN) {
        memcpy(p + i, rec, STAMP_LEN);
    }
}

static uint64_t blocks_end_offset(const Disk *d, uint64_t b1)
{
    uint64_t end = b1 * G.unit;

    return end > d->size ? d->size : end;
}

/* ---- busy table ---------------------------------------------------------------------- */

static bool claim_blocks(Disk *d, uint64_t b0, uint64_t b1)
{
    bool ok = true;

    g_mutex_lock(&d->lock);
    for (uint64_t b = b0; b < b1; b++) {
        if (d->busy[b]) {
            ok = false;
            break;
        }
    }
    if (ok) {
        memset(d->busy + b0, 1, b1 - b0);
    }
    g_mutex_unlock(&d->lock);
    return ok;
}

static void release_blocks(Disk *d, uint64_t b0, uint64_t b1)
{
    g_mutex_lock(&d->lock);
    memset(d->busy + b0, 0, b1 - b0);
    g_mutex_unlock(&d->lock);
}

/* ---- requests ------------------------------------------------------------------------ */

static int on_complete(void *opaque, int *error)
{
    Slot *s = opaque;
    Worker *w = s->w;

    s->rec.ack_ns = now_ns();
    s->rec.status = (int16_t)*error;
    if (*error != 0) {
        atomic_fetch_add(&G.errors, 1);
    }
    atomic_fetch_add(&G.acked, 1);
    g_array_append_val(w->log, s->rec);
    release_blocks(w->disk, s->b0, s->b1);
    s->used = false;
    w->inflight--;
    return 1; /* retire the command */
}

/* Draw a request's type and block range. */
static void draw(Worker *w, int *type, uint64_t *b0, uint64_t *b1)
{
    Disk *d = w->disk;
    uint64_t n = d->nblocks;
    uint64_t r = rng_below(&w->rng, 100), len, start;

    *type = OP_WRITE;
    if (r < 55) {
        len = 1 + rng_below(&w->rng, 4 * G.k4);
        start = rng_below(&w->rng, n);
    } else if (r < 72 && n > G.cu) {
        /* straddle a cluster boundary */
        uint64_t c = 1 + rng_below(&w->rng, (n - 1) / G.cu);
        uint64_t before = 1 + rng_below(&w->rng, 8 * G.k4);

        start = c * G.cu - before;
        len = before + 1 + rng_below(&w->rng, 8 * G.k4);
    } else if (r < 78) {
        len = G.cu + rng_below(&w->rng, G.max_units);
        start = rng_below(&w->rng, n);
    } else if (r < 90 && !G.no_zero && d->can_zero) {
        *type = OP_ZERO;
        len = 1 + rng_below(&w->rng, 2 * G.cu);
        start = rng_below(&w->rng, n);
    } else if (r < 100 && !G.no_trim && d->can_trim) {
        *type = OP_TRIM;
        len = 1 + rng_below(&w->rng, 2 * G.cu);
        start = rng_below(&w->rng, n);
    } else {
        len = 1;
        start = rng_below(&w->rng, n);
    }
    if (len > G.max_units) {
        len = G.max_units;
    }
    if (start >= n) {
        start = n - 1;
    }
    if (start + len > n) {
        len = n - start;
    }
    *b0 = start;
    *b1 = start + len;
}

/* Issue one request; false if no free range was found (try again later). */
static bool issue(Worker *w)
{
    Disk *d = w->disk;
    Slot *s = NULL;
    int type = 0;
    uint64_t b0 = 0, b1 = 0;
    bool got = false;

    for (unsigned i = 0; i < G.depth; i++) {
        if (!w->slots[i].used) {
            s = &w->slots[i];
            break;
        }
    }
    g_assert(s != NULL);
    for (int attempt = 0; attempt < 8 && !got; attempt++) {
        draw(w, &type, &b0, &b1);
        got = claim_blocks(d, b0, b1);
    }
    if (!got) {
        return false;
    }

    uint64_t off = b0 * G.unit, len = blocks_end_offset(d, b1) - off;
    uint32_t flags = 0;
    nbd_completion_callback cb = { .callback = on_complete, .user_data = s };
    int64_t r;

    s->used = true;
    s->b0 = b0;
    s->b1 = b1;
    s->rec = (LogRec){ .offset = off, .length = (uint32_t)len, .disk = (uint8_t)d->id,
                       .type = (uint8_t)type };
    w->inflight++;
    s->rec.gen = atomic_fetch_add(&G.next_gen, 1);
    if (type == OP_WRITE) {
        for (uint64_t b = b0; b < b1; b++) {
            stamp_block(s->buf + (b - b0) * G.unit, d->id, b, s->rec.gen);
        }
        if (d->can_fua && rng_below(&w->rng, 10) == 0) {
            flags |= LIBNBD_CMD_FLAG_FUA;
        }
    } else if (type == OP_ZERO && rng_below(&w->rng, 3) == 0) {
        flags |= LIBNBD_CMD_FLAG_NO_HOLE;
    }
    s->rec.send_ns = now_ns();
    switch (type) {
    case OP_WRITE:
        r = nbd_aio_pwrite(w->h, s->buf, len, off, cb, flags);
        break;
    case OP_ZERO:
        r = nbd_aio_zero(w->h, len, off, cb, flags);
        break;
    default:
        r = nbd_aio_trim(w->h, len, off, cb, flags);
        break;
    }
    if (r < 0) {
        int err = nbd_get_errno();

        fprintf(stderr, "pit-writer: disk %u: request at %" PRIu64 "+%" PRIu64 ": %s\n",
                d->id, off, len, nbd_get_error());
        /* the callback was not called: complete the slot ourselves */
        on_complete(s, &(int){ err != 0 ? err : EIO });
        return false;
    }
    return true;
}

static gpointer worker_main(gpointer opaque)
{
    Worker *w = opaque;
    double interval = G.rate > 0 ? 1e9 / G.rate : 0;

    w->next_ns = now_ns();
    while (!atomic_load(&G.stop)) {
        bool blocked = false;

        while (w->inflight < G.depth && !atomic_load(&G.stop)) {
            if (interval > 0) {
                uint64_t t = now_ns();

                if (t < w->next_ns) {
                    break;
                }
                w->next_ns += (uint64_t)interval;
                if (w->next_ns < t) {
                    w->next_ns = t;
                }
            }
            if (!issue(w)) {
                blocked = true;
                break;
            }
        }
        if (w->inflight > 0) {
            if (nbd_poll(w->h, 20) < 0) {
                fprintf(stderr, "pit-writer: disk %u: %s\n", w->disk->id, nbd_get_error());
                atomic_fetch_add(&G.errors, 1);
                break;
            }
        } else if (blocked || interval > 0) {
            g_usleep(200);
        }
    }
    while (w->inflight > 0) {
        if (nbd_poll(w->h, 1000) < 0) {
            fprintf(stderr, "pit-writer: disk %u: %s\n", w->disk->id, nbd_get_error());
            atomic_fetch_add(&G.errors, 1);
            break;
        }
    }
    return NULL;
}

/* ---- prefill, log -------------------------------------------------------------------- */

static bool prefill(void)
{
    const uint64_t chunk_blocks = (1u << 20) / G.unit;
    g_autofree uint8_t *buf = g_malloc(1u << 20);

    for (unsigned i = 0; i < G.ndisks; i++) {
        Disk *d = &G.disks[i];
        struct nbd_handle *h = NULL;

        for (unsigned k = 0; k < G.nworkers; k++) {
            if (G.workers[k].disk == d) {
                h = G.workers[k].h;
                break;
            }
        }
        for (uint64_t b = 0; b < d->nblocks; b += chunk_blocks) {
            uint64_t e = MIN(b + chunk_blocks, d->nblocks);
            uint64_t off = b * G.unit, len = blocks_end_offset(d, e) - off;

            for (uint64_t k = b; k < e; k++) {
                stamp_block(buf + (k - b) * G.unit, d->id, k, 0);
            }
            if (nbd_pwrite(h, buf, len, off, 0) < 0) {
                fprintf(stderr, "pit-writer: prefill disk %u at %" PRIu64 ": %s\n", d->id,
                        off, nbd_get_error());
                return false;
            }
        }
        if (nbd_can_flush(h) > 0 && nbd_flush(h, 0) < 0) {
            fprintf(stderr, "pit-writer: flush disk %u: %s\n", d->id, nbd_get_error());
            return false;
        }
    }
    return true;
}

static gint cmp_gen(gconstpointer a, gconstpointer b)
{
    const LogRec *x = a, *y = b;

    return x->gen < y->gen ? -1 : x->gen > y->gen;
}

static bool write_log(const char *path, uint64_t *nops)
{
    g_autoptr(GArray) all = g_array_new(FALSE, FALSE, sizeof(LogRec));
    g_autoptr(GString) head = g_string_new(NULL);
    FILE *f;
    bool ok;

    for (unsigned k = 0; k < G.nworkers; k++) {
        g_array_append_vals(all, G.workers[k].log->data, G.workers[k].log->len);
    }
    g_array_sort(all, cmp_gen);
    *nops = all->len;

    g_string_append_printf(head, "{\"run_id\": %" PRIu32 ", \"seed\": %" PRIu64 ", \"unit\": %u, "
                           "\"disks\": [", G.run_id, G.seed, G.unit);
    for (unsigned i = 0; i < G.ndisks; i++) {
        g_autofree char *uri = g_strescape(G.disks[i].uri, NULL);

        g_string_append_printf(head, "%s{\"uri\": \"%s\", \"size\": %" PRIu64 "}",
                               i ? ", " : "", uri, G.disks[i].size);
    }
    g_string_append(head, "]}\n");

    f = fopen(path, "wb");
    if (f == NULL) {
        fprintf(stderr, "pit-writer: create log %s: %s\n", path, g_strerror(errno));
        return false;
    }
    ok = fwrite(head->str, 1, head->len, f) == head->len;
    /* x86 and the other hosts we run on are little-endian; the record is written as is */
    G_STATIC_ASSERT(G_BYTE_ORDER == G_LITTLE_ENDIAN);
    if (ok && all->len > 0) {
        ok = fwrite(all->data, sizeof(LogRec), all->len, f) == all->len;
    }
    if (fclose(f) != 0) {
        ok = false;
    }
    if (!ok) {
        fprintf(stderr, "pit-writer: write log %s: %s\n", path, g_strerror(errno));
    }
    return ok;
}

/* ---- main ---------------------------------------------------------------------------- */

static bool connect_all(char **uris)
{
    G.nworkers = G.ndisks * G.conns;
    G.workers = g_new0(Worker, G.nworkers);
    for (unsigned i = 0; i < G.ndisks; i++) {
        Disk *d = &G.disks[i];

        d->id = i;
        d->uri = uris[i];
        g_mutex_init(&d->lock);
    }
    for (unsigned k = 0; k < G.nworkers; k++) {
        Worker *w = &G.workers[k];
        Disk *d = &G.disks[k % G.ndisks];
        int64_t size;

        w->index = k;
        w->disk = d;
        w->rng = G.seed * 1000003u + k;
        w->log = g_array_new(FALSE, FALSE, sizeof(LogRec));
        w->h = nbd_create();
        if (w->h == NULL || nbd_connect_uri(w->h, d->uri) < 0) {
            fprintf(stderr, "pit-writer: connect %s: %s\n", d->uri, nbd_get_error());
            return false;
        }
        size = nbd_get_size(w->h);
        if (size <= 0) {
            fprintf(stderr, "pit-writer: %s: empty or unknown size\n", d->uri);
            return false;
        }
        if (nbd_is_read_only(w->h) > 0) {
            fprintf(stderr, "pit-writer: %s: export is read-only\n", d->uri);
            return false;
        }
        if ((uint64_t)size % G.unit != 0 && (uint64_t)size % G.unit < STAMP_LEN) {
            /* a shorter last block could not name its generation */
            fprintf(stderr, "pit-writer: %s: size %" PRId64 " leaves a last block of less "
                            "than %u bytes\n", d->uri, size, STAMP_LEN);
            return false;
        }
        if (d->size == 0) {
            d->size = (uint64_t)size;
            d->nblocks = (d->size + G.unit - 1) / G.unit;
            d->busy = g_malloc0(d->nblocks);
            d->can_fua = nbd_can_fua(w->h) > 0;
            d->can_zero = nbd_can_zero(w->h) > 0;
            d->can_trim = nbd_can_trim(w->h) > 0;
        }
        for (unsigned j = 0; j < G.depth; j++) {
            w->slots[j].w = w;
            w->slots[j].buf = g_malloc((size_t)G.max_units * G.unit);
        }
    }
    return true;
}

static void stop_all(void)
{
    atomic_store(&G.stop, true);
    for (unsigned k = 0; k < G.nworkers; k++) {
        if (G.workers[k].thread != NULL) {
            g_thread_join(G.workers[k].thread);
            G.workers[k].thread = NULL;
        }
    }
}

int main(int argc, char **argv)
{
    g_autofree char *log_path = NULL;
    gint64 seed = 1, run_id = -1;
    gint conns = 2, depth = 4, max_blocks = 256, unit = 4096;
    gdouble rate = 0;
    gboolean no_zero = FALSE, no_trim = FALSE;
    GOptionEntry entries[] = {
        { "log", 0, 0, G_OPTION_ARG_FILENAME, &log_path, "write the request log to FILE",
          "FILE" },
        { "seed", 0, 0, G_OPTION_ARG_INT64, &seed, "random seed (default 1)", "N" },
        { "run-id", 0, 0, G_OPTION_ARG_INT64, &run_id,
          "run id in every stamp (default: derived from the seed and the clock)", "N" },
        { "conns", 0, 0, G_OPTION_ARG_INT, &conns, "connections per disk (default 2)", "N" },
        { "depth", 0, 0, G_OPTION_ARG_INT, &depth,
          "requests in flight per connection (default 4)", "N" },
        { "rate", 0, 0, G_OPTION_ARG_DOUBLE, &rate,
          "requests per second per connection (default: no limit)", "OPS" },
        { "max-blocks", 0, 0, G_OPTION_ARG_INT, &max_blocks,
          "largest request in 4 KiB blocks (default 256)", "N" },
        { "unit", 0, 0, G_OPTION_ARG_INT, &unit,
          "stamp granularity in bytes: 512, 1024, 2048 or 4096 (default); with less than "
          "4096 requests need not be 4 KiB-aligned", "BYTES" },
        { "no-zero", 0, 0, G_OPTION_ARG_NONE, &no_zero, "send no write-zeroes", NULL },
        { "no-trim", 0, 0, G_OPTION_ARG_NONE, &no_trim, "send no trims", NULL },
        { NULL },
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("URI... - stamped NBD writer");
    g_autoptr(GError) err = NULL;
    char line[256];
    bool started = false, stopped = false, ok = true;
    uint64_t nops = 0;

    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
        fprintf(stderr, "pit-writer: %s\n", err->message);
        return 2;
    }
    if (log_path == NULL || argc < 2 || argc - 1 > MAX_DISKS || conns < 1 ||
        conns > MAX_CONNS || depth < 1 || depth > MAX_DEPTH || max_blocks < 1 ||
        max_blocks > 4096 || (unit != 512 && unit != 1024 && unit != 2048 && unit != 4096)) {
        fprintf(stderr, "pit-writer: need --log FILE and 1..%d URIs; --conns 1..%d, "
                        "--depth 1..%d, --max-blocks 1..4096, --unit 512|1024|2048|4096\n",
                MAX_DISKS, MAX_CONNS, MAX_DEPTH);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    G.seed = (uint64_t)seed;
    G.run_id = run_id >= 0 ? (uint32_t)run_id
                           : (uint32_t)(rng_next(&(uint64_t){ (uint64_t)seed ^ now_ns() }));
    G.conns = (unsigned)conns;
    G.depth = (unsigned)depth;
    G.unit = (unsigned)unit;
    G.cu = CLUSTER / G.unit;
    G.k4 = 4096 / G.unit;
    G.max_units = (unsigned)max_blocks * G.k4;
    G.rate = rate;
    G.no_zero = no_zero;
    G.no_trim = no_trim;
    G.ndisks = (unsigned)(argc - 1);
    atomic_store(&G.next_gen, 1);
    if (!connect_all(argv + 1)) {
        return 1;
    }
    printf("ready clock=%" PRIu64 " disks=%u\n", now_ns(), G.ndisks);

    while (!stopped && fgets(line, sizeof(line), stdin) != NULL) {
        g_strstrip(line);
        if (strcmp(line, "prefill") == 0 && !started) {
            if (!prefill()) {
                return 1;
            }
            printf("prefilled\n");
        } else if (strcmp(line, "start") == 0 && !started) {
            started = true;
            for (unsigned k = 0; k < G.nworkers; k++) {
                G.workers[k].thread = g_thread_new("pit-writer", worker_main, &G.workers[k]);
            }
            printf("started clock=%" PRIu64 "\n", now_ns());
        } else if (strcmp(line, "stats") == 0) {
            printf("stats acked=%" PRIu64 " errors=%" PRIu64 "\n",
                   (uint64_t)atomic_load(&G.acked), (uint64_t)atomic_load(&G.errors));
        } else if (strcmp(line, "clock") == 0) {
            printf("clock %" PRIu64 "\n", now_ns());
        } else if (strcmp(line, "stop") == 0) {
            stopped = true;
        } else if (line[0] != '\0') {
            printf("error unknown command '%s'\n", line);
        }
    }
    stop_all();
    ok = write_log(log_path, &nops);
    printf("stopped ops=%" PRIu64 " errors=%" PRIu64 " maxgen=%" PRIu64 "\n", nops,
           (uint64_t)atomic_load(&G.errors), (uint64_t)atomic_load(&G.next_gen) - 1);
    for (unsigned k = 0; k < G.nworkers; k++) {
        Worker *w = &G.workers[k];

        nbd_shutdown(w->h, 0);
        nbd_close(w->h);
        for (unsigned j = 0; j < G.depth; j++) {
            g_free(w->slots[j].buf);
        }
        g_array_free(w->log, TRUE);
    }
    for (unsigned i = 0; i < G.ndisks; i++) {
        g_free(G.disks[i].busy);
        g_mutex_clear(&G.disks[i].lock);
    }
    g_free(G.workers);
    return ok && atomic_load(&G.errors) == 0 ? 0 : 1;
}
