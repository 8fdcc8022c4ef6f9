/*
 * nbd/handshake.c — the fixed newstyle handshake, run by a connection's thread alone.
 *
 *   greeting ──► client flags ──► option loop ──► GO / EXPORT_NAME ──► transmission
 *                    │ unknown flag       │ ABORT, bad magic, oversized option,
 *                    ▼                    ▼ EOF, timeout
 *                  close                close
 *
 * Every option is read completely (header and data) before it is answered, so an
 * option we do not know costs an NBD_REP_ERR_UNSUP and parsing goes on with the next
 * one. Option data is capped at NBD_MAX_OPTION_LENGTH: a longer one is not worth
 * reading and the connection is dropped. Export names and meta context queries are
 * checked for length and embedded NULs before use.
 *
 * Negotiated state lives in the NbdConn: structured replies, NO_ZEROES, and the meta
 * contexts (base:allocation, an exported bitmap's qemu:dirty-bitmap:NAME; the export's
 * table in nbd/internal.h) selected for the export that GO finally picks: the last
 * SET_META_CONTEXT counts only if it named that very export (not another one, nor an
 * earlier export of the same name that was removed since), as the protocol says.
 * LIST_META_CONTEXT answers with id 0; SET with each context's id.
 */
#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "nbd/internal.h"

typedef enum { OPT_CONTINUE, OPT_TRANSMISSION, OPT_CLOSE } OptResult;

typedef struct Handshake {
    NbdConn *c;
    NbdExport *meta_export;    /* a reference to the export of the last successful
                                * SET_META_CONTEXT, or NULL */
    uint32_t meta_selected;    /* the contexts it selected (mask of context indexes) */
} Handshake;

/* ---- parsers (pure) ---- */

int nbd_parse_info_request(const uint8_t *data, uint32_t len, NbdInfoRequest *out)
{
    uint32_t name_len;
    uint16_t n;

    if (len < 6) {
        return -EINVAL;
    }
    memcpy(&name_len, data, 4);
    name_len = be32toh(name_len);
    if (name_len > NBD_MAX_STRING || name_len > len - 6) {
        return -EINVAL;
    }
    memcpy(&n, data + 4 + name_len, 2);
    n = be16toh(n);
    if ((uint64_t)4 + name_len + 2 + 2 * (uint64_t)n != len) {
        return -EINVAL;
    }
    if (memchr(data + 4, '\0', name_len) != NULL) {
        return -EINVAL;
    }
    out->name = (const char *)data + 4;
    out->name_len = name_len;
    out->n_infos = n;
    out->infos = data + 4 + name_len + 2;
    return 0;
}

int nbd_parse_meta_request(const uint8_t *data, uint32_t len, NbdMetaRequest *out)
{
    uint32_t pos = 0, v;

    memset(out, 0, sizeof(*out));
    if (len < 8) {
        return -EINVAL;
    }
    memcpy(&v, data, 4);
    out->name_len = be32toh(v);
    if (out->name_len > NBD_MAX_STRING || out->name_len > len - 8) {
        return -EINVAL;
    }
    out->name = (const char *)data + 4;
    if (memchr(out->name, '\0', out->name_len) != NULL) {
        return -EINVAL;
    }
    pos = 4 + out->name_len;
    memcpy(&v, data + pos, 4);
    out->n_queries = be32toh(v);
    pos += 4;
    out->queries = data + pos;
    out->queries_len = len - pos;
    for (uint32_t i = 0; i < out->n_queries; i++) {
        uint32_t qlen;
        if (len - pos < 4) {
            return -EINVAL;
        }
        memcpy(&v, data + pos, 4);
        qlen = be32toh(v);
        pos += 4;
        if (qlen > NBD_MAX_STRING || qlen > len - pos) {
            return -EINVAL;
        }
        const char *q = (const char *)data + pos;
        if (memchr(q, '\0', qlen) != NULL) {
            return -EINVAL;
        }
        if (qlen == strlen(NBD_META_BASE_ALLOCATION) &&
            memcmp(q, NBD_META_BASE_ALLOCATION, qlen) == 0) {
            out->base_allocation = true;
        } else if (qlen == 5 && memcmp(q, "base:", 5) == 0) {
            out->base_namespace = true;
        }
        pos += qlen;
    }
    return pos == len ? 0 : -EINVAL;
}

static bool has_prefix(const char *name, const char *q, uint32_t qlen)
{
    return strlen(name) >= qlen && memcmp(name, q, qlen) == 0;
}

uint32_t nbd_meta_select(const NbdMetaRequest *mr, bool list, const char *const *names,
                         guint n)
{
    uint32_t mask = 0;
    uint32_t pos = 0;

    assert(n <= 32);
    if (list && mr->n_queries == 0) {
        return n == 32 ? UINT32_MAX : (UINT32_C(1) << n) - 1;
    }
    /* the parser checked every length */
    for (uint32_t i = 0; i < mr->n_queries; i++) {
        uint32_t qlen;
        memcpy(&qlen, mr->queries + pos, 4);
        qlen = be32toh(qlen);
        const char *q = (const char *)mr->queries + pos + 4;
        pos += 4 + qlen;
        bool wildcard = list && ((qlen == 5 && memcmp(q, "base:", 5) == 0) ||
                                 (qlen == 5 && memcmp(q, "qemu:", 5) == 0) ||
                                 (qlen == strlen(NBD_META_DIRTY_BITMAP_PREFIX) &&
                                  memcmp(q, NBD_META_DIRTY_BITMAP_PREFIX, qlen) == 0));
        for (guint j = 0; j < n; j++) {
            if (wildcard ? has_prefix(names[j], q, qlen)
                         : strlen(names[j]) == qlen && memcmp(names[j], q, qlen) == 0) {
                mask |= UINT32_C(1) << j;
            }
        }
    }
    return mask;
}

/* ---- replies ---- */

static int send_reply(NbdConn *c, uint32_t opt, uint32_t type, const void *data, uint32_t len)
{
    NbdOptionReply h = {
        .magic = htobe64(NBD_REP_MAGIC),
        .option = htobe32(opt),
        .type = htobe32(type),
        .length = htobe32(len),
    };
    struct iovec iov[2] = {
        { .iov_base = &h, .iov_len = sizeof(h) },
        { .iov_base = (void *)data, .iov_len = len },
    };
    return nbd_conn_send(c, iov, len > 0 ? 2 : 1);
}

static int send_ack(NbdConn *c, uint32_t opt)
{
    return send_reply(c, opt, NBD_REP_ACK, NULL, 0);
}

static int G_GNUC_PRINTF(4, 5) send_error(NbdConn *c, uint32_t opt, uint32_t type,
                                          const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    size_t len = MIN(strlen(msg), (size_t)NBD_MAX_STRING);
    return send_reply(c, opt, type, msg, (uint32_t)len);
}

/* A name-carrying reply: 32-bit length + name (+ nothing else). */
static int send_named(NbdConn *c, uint32_t opt, uint32_t type, uint32_t prefix,
                      const char *name)
{
    size_t nlen = strlen(name);
    g_autofree uint8_t *buf = g_malloc(4 + nlen);
    uint32_t be = htobe32(prefix);

    memcpy(buf, &be, 4);
    memcpy(buf + 4, name, nlen);
    return send_reply(c, opt, type, buf, (uint32_t)(4 + nlen));
}

static int send_info_export(NbdConn *c, uint32_t opt, const NbdExport *exp)
{
    NbdInfoExport ie = {
        .type = htobe16(NBD_INFO_EXPORT),
        .size = htobe64(exp->size),
        .flags = htobe16(nbd_export_tx_flags(exp, c->structured)),
    };
    return send_reply(c, opt, NBD_REP_INFO, &ie, sizeof(ie));
}

static int send_info_block_size(NbdConn *c, uint32_t opt)
{
    NbdInfoBlockSize bs = {
        .type = htobe16(NBD_INFO_BLOCK_SIZE),
        .minimum = htobe32(NBD_BLOCK_SIZE_MIN),
        .preferred = htobe32(NBD_BLOCK_SIZE_PREFERRED),
        .maximum = htobe32(NBD_MAX_PAYLOAD),
    };
    return send_reply(c, opt, NBD_REP_INFO, &bs, sizeof(bs));
}

static int send_info_name(NbdConn *c, uint32_t opt, const char *name)
{
    size_t nlen = strlen(name);
    g_autofree uint8_t *buf = g_malloc(2 + nlen);
    uint16_t be = htobe16(NBD_INFO_NAME);

    memcpy(buf, &be, 2);
    memcpy(buf + 2, name, nlen);
    return send_reply(c, opt, NBD_REP_INFO, buf, (uint32_t)(2 + nlen));
}

/* ---- options ---- */

static OptResult opt_export_name(Handshake *hs, const uint8_t *data, uint32_t len)
{
    NbdConn *c = hs->c;

    if (len > NBD_MAX_STRING || memchr(data, '\0', len) != NULL) {
        g_message("nbd: %s: invalid export name in NBD_OPT_EXPORT_NAME", c->peer);
        return OPT_CLOSE;
    }
    g_autofree char *name = g_strndup((const char *)data, len);
    NbdExport *exp = nbd_server_lookup_export(name);
    if (exp == NULL || !nbd_server_attach_export(c, exp)) {
        /* EXPORT_NAME cannot report errors: closing is the answer. */
        g_message("nbd: %s: export '%s' not found", c->peer, name);
        return OPT_CLOSE;
    }
    c->meta_ctx = hs->meta_export == c->exp ? hs->meta_selected : 0;
    c->tx_flags = nbd_export_tx_flags(c->exp, c->structured);

    static const uint8_t zeros[124];
    NbdExportNameReply r = { .size = htobe64(c->exp->size), .flags = htobe16(c->tx_flags) };
    struct iovec iov[2] = {
        { .iov_base = &r, .iov_len = sizeof(r) },
        { .iov_base = (void *)zeros, .iov_len = sizeof(zeros) },
    };
    if (nbd_conn_send(c, iov, c->no_zeroes ? 1 : 2) < 0) {
        return OPT_CLOSE;
    }
    return OPT_TRANSMISSION;
}

static OptResult opt_info_go(Handshake *hs, uint32_t opt, const uint8_t *data, uint32_t len)
{
    NbdConn *c = hs->c;
    NbdInfoRequest ir;
    bool want_name = false;

    if (nbd_parse_info_request(data, len, &ir) < 0) {
        return send_error(c, opt, NBD_REP_ERR_INVALID, "malformed %s request",
                          opt == NBD_OPT_GO ? "NBD_OPT_GO" : "NBD_OPT_INFO") < 0
                   ? OPT_CLOSE : OPT_CONTINUE;
    }
    for (uint16_t i = 0; i < ir.n_infos; i++) {
        uint16_t code;
        memcpy(&code, ir.infos + 2 * i, 2);
        if (be16toh(code) == NBD_INFO_NAME) {
            want_name = true;
        }
        /* NBD_INFO_DESCRIPTION: we have none, and may leave it out. NBD_INFO_BLOCK_SIZE
         * and NBD_INFO_EXPORT are sent always. Unknown codes are ignored. */
    }
    g_autofree char *name = g_strndup(ir.name, ir.name_len);
    NbdExport *exp = nbd_server_lookup_export(name);
    if (exp == NULL) {
        return send_error(c, opt, NBD_REP_ERR_UNKNOWN, "export '%s' not available", name) < 0
                   ? OPT_CLOSE : OPT_CONTINUE;
    }
    if (opt == NBD_OPT_GO) {
        if (!nbd_server_attach_export(c, exp)) {
            return send_error(c, opt, NBD_REP_ERR_UNKNOWN, "export '%s' not available",
                              name) < 0 ? OPT_CLOSE : OPT_CONTINUE;
        }
        exp = c->exp; /* the connection owns the reference now */
    }

    int r = 0;
    if (want_name) {
        r = send_info_name(c, opt, exp->name);
    }
    if (r == 0) {
        r = send_info_block_size(c, opt);
    }
    if (r == 0) {
        r = send_info_export(c, opt, exp);
    }
    if (r == 0) {
        r = send_ack(c, opt);
    }
    if (opt != NBD_OPT_GO) {
        nbd_export_unref(exp);
        return r < 0 ? OPT_CLOSE : OPT_CONTINUE;
    }
    if (r < 0) {
        return OPT_CLOSE;
    }
    c->meta_ctx = hs->meta_export == c->exp ? hs->meta_selected : 0;
    c->tx_flags = nbd_export_tx_flags(c->exp, c->structured);
    return OPT_TRANSMISSION;
}

static OptResult opt_list(Handshake *hs, uint32_t len)
{
    NbdConn *c = hs->c;

    if (len != 0) {
        return send_error(c, NBD_OPT_LIST, NBD_REP_ERR_INVALID,
                          "NBD_OPT_LIST takes no data") < 0 ? OPT_CLOSE : OPT_CONTINUE;
    }
    g_auto(GStrv) names = nbd_server_export_names();
    for (char **n = names; *n != NULL; n++) {
        if (send_named(c, NBD_OPT_LIST, NBD_REP_SERVER, (uint32_t)strlen(*n), *n) < 0) {
            return OPT_CLOSE;
        }
    }
    return send_ack(c, NBD_OPT_LIST) < 0 ? OPT_CLOSE : OPT_CONTINUE;
}

static OptResult opt_structured_reply(Handshake *hs, uint32_t len)
{
    NbdConn *c = hs->c;
    int r;

    if (len != 0) {
        r = send_error(c, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_INVALID,
                       "NBD_OPT_STRUCTURED_REPLY takes no data");
    } else if (c->structured) {
        r = send_error(c, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_INVALID,
                       "structured replies already negotiated");
    } else {
        c->structured = true;
        r = send_ack(c, NBD_OPT_STRUCTURED_REPLY);
    }
    return r < 0 ? OPT_CLOSE : OPT_CONTINUE;
}

static OptResult opt_meta_context(Handshake *hs, uint32_t opt, const uint8_t *data,
                                  uint32_t len)
{
    NbdConn *c = hs->c;
    NbdMetaRequest mr;
    int r;

    if (opt == NBD_OPT_SET_META_CONTEXT) {
        /* SET replaces the earlier selection even when it fails */
        hs->meta_selected = 0;
        g_clear_pointer(&hs->meta_export, nbd_export_unref);
    }
    if (!c->structured) {
        r = send_error(c, opt, NBD_REP_ERR_INVALID,
                       "meta contexts need structured replies first");
        return r < 0 ? OPT_CLOSE : OPT_CONTINUE;
    }
    if (nbd_parse_meta_request(data, len, &mr) < 0) {
        r = send_error(c, opt, NBD_REP_ERR_INVALID, "malformed meta context request");
        return r < 0 ? OPT_CLOSE : OPT_CONTINUE;
    }
    g_autofree char *name = g_strndup(mr.name, mr.name_len);
    NbdExport *exp = nbd_server_lookup_export(name);
    if (exp == NULL) {
        r = send_error(c, opt, NBD_REP_ERR_UNKNOWN, "export '%s' not available", name);
        return r < 0 ? OPT_CLOSE : OPT_CONTINUE;
    }

    const char *names[NBD_MAX_CONTEXTS];
    guint n = nbd_export_n_contexts(exp);
    for (guint i = 0; i < n; i++) {
        names[i] = nbd_export_context_name(exp, i);
    }
    bool list = opt == NBD_OPT_LIST_META_CONTEXT;
    uint32_t mask = nbd_meta_select(&mr, list, names, n);
    r = 0;
    for (guint i = 0; i < n && r == 0; i++) {
        if (mask & (UINT32_C(1) << i)) {
            r = send_named(c, opt, NBD_REP_META_CONTEXT, list ? 0 : nbd_export_context_id(i),
                           names[i]);
        }
    }
    if (r == 0) {
        r = send_ack(c, opt);
    }
    if (!list && r == 0 && mask != 0) {
        hs->meta_selected = mask;
        hs->meta_export = g_steal_pointer(&exp);
    }
    nbd_export_unref(exp);
    return r < 0 ? OPT_CLOSE : OPT_CONTINUE;
}

static OptResult handle_option(Handshake *hs, uint32_t opt, const uint8_t *data, uint32_t len)
{
    NbdConn *c = hs->c;

    switch (opt) {
    case NBD_OPT_EXPORT_NAME:
        return opt_export_name(hs, data, len);
    case NBD_OPT_ABORT:
        (void)send_ack(c, opt);
        return OPT_CLOSE;
    case NBD_OPT_LIST:
        return opt_list(hs, len);
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        return opt_info_go(hs, opt, data, len);
    case NBD_OPT_STRUCTURED_REPLY:
        return opt_structured_reply(hs, len);
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
        return opt_meta_context(hs, opt, data, len);
    default:
        /* STARTTLS included: we have no TLS. */
        return send_error(c, opt, NBD_REP_ERR_UNSUP, "option %u not supported", opt) < 0
                   ? OPT_CLOSE : OPT_CONTINUE;
    }
}

bool nbd_handshake(NbdConn *c)
{
    Handshake hs = { .c = c };
    NbdGreeting greet = {
        .magic = htobe64(NBD_MAGIC),
        .opts_magic = htobe64(NBD_OPTS_MAGIC),
        .flags = htobe16(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES),
    };
    struct iovec iov = { .iov_base = &greet, .iov_len = sizeof(greet) };
    uint32_t cflags;
    OptResult res = OPT_CLOSE;
    int r;

    if (nbd_conn_send(c, &iov, 1) < 0) {
        return false;
    }
    r = nbd_conn_recv(c, &cflags, sizeof(cflags));
    if (r < 0) {
        if (r != -EPIPE) {
            g_message("nbd: %s: handshake: %s", c->peer, g_strerror(-r));
        }
        return false;
    }
    cflags = be32toh(cflags);
    if (cflags & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
        g_message("nbd: %s: handshake: unknown client flags 0x%x", c->peer, cflags);
        return false;
    }
    c->no_zeroes = (cflags & NBD_FLAG_C_NO_ZEROES) != 0;

    for (;;) {
        NbdOptionHeader h;
        r = nbd_conn_recv(c, &h, sizeof(h));
        if (r < 0) {
            if (r != -EPIPE) {
                g_message("nbd: %s: handshake: %s", c->peer, g_strerror(-r));
            }
            break;
        }
        if (be64toh(h.magic) != NBD_OPTS_MAGIC) {
            g_message("nbd: %s: handshake: bad option magic", c->peer);
            break;
        }
        uint32_t opt = be32toh(h.option);
        uint32_t len = be32toh(h.length);
        if (len > NBD_MAX_OPTION_LENGTH) {
            g_message("nbd: %s: handshake: option %u with %u bytes of data (limit %u)",
                      c->peer, opt, len, NBD_MAX_OPTION_LENGTH);
            break;
        }
        g_autofree uint8_t *data = g_malloc(len + 1);
        r = nbd_conn_recv(c, data, len);
        if (r < 0) {
            if (r != -EPIPE) {
                g_message("nbd: %s: handshake: %s", c->peer, g_strerror(-r));
            }
            break;
        }
        res = handle_option(&hs, opt, data, len);
        if (res != OPT_CONTINUE) {
            break;
        }
    }
    nbd_export_unref(hs.meta_export);
    return res == OPT_TRANSMISSION;
}
