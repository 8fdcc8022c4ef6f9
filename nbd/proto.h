/*
 * nbd/proto.h — the NBD wire format as our server speaks it (fixed newstyle handshake,
 * simple and structured replies, base:allocation), written from the protocol document
 * (NetworkBlockDevice/nbd doc/proto.md), and QEMU's qemu:dirty-bitmap: meta contexts
 * (QEMU's docs/interop/nbd.txt).
 *
 * Every integer on the wire is big-endian. The packed structs below mirror the wire
 * layout byte for byte; their fields hold wire (big-endian) values and are converted
 * only where a message is built or parsed. A _Static_assert pins every size.
 */
#ifndef NBD_PROTO_H
#define NBD_PROTO_H

#include <stdint.h>

/* ---- magics ---- */
#define NBD_MAGIC                  UINT64_C(0x4e42444d41474943) /* "NBDMAGIC" */
#define NBD_OPTS_MAGIC             UINT64_C(0x49484156454f5054) /* "IHAVEOPT" */
#define NBD_REP_MAGIC              UINT64_C(0x0003e889045565a9) /* option replies */
#define NBD_REQUEST_MAGIC          UINT32_C(0x25609513)
#define NBD_SIMPLE_REPLY_MAGIC     UINT32_C(0x67446698)
#define NBD_STRUCTURED_REPLY_MAGIC UINT32_C(0x668e33ef)

/* ---- handshake flags (server, 16 bits) and client flags (32 bits) ---- */
#define NBD_FLAG_FIXED_NEWSTYLE    (1u << 0)
#define NBD_FLAG_NO_ZEROES         (1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE  (1u << 0)
#define NBD_FLAG_C_NO_ZEROES       (1u << 1)

/* ---- options ---- */
#define NBD_OPT_EXPORT_NAME        1
#define NBD_OPT_ABORT              2
#define NBD_OPT_LIST               3
#define NBD_OPT_STARTTLS           5
#define NBD_OPT_INFO               6
#define NBD_OPT_GO                 7
#define NBD_OPT_STRUCTURED_REPLY   8
#define NBD_OPT_LIST_META_CONTEXT  9
#define NBD_OPT_SET_META_CONTEXT   10

/* ---- option reply types; errors have bit 31 set ---- */
#define NBD_REP_ACK                1
#define NBD_REP_SERVER             2
#define NBD_REP_INFO               3
#define NBD_REP_META_CONTEXT       4
#define NBD_REP_FLAG_ERROR         (UINT32_C(1) << 31)
#define NBD_REP_ERR_UNSUP          (NBD_REP_FLAG_ERROR | 1)
#define NBD_REP_ERR_POLICY         (NBD_REP_FLAG_ERROR | 2)
#define NBD_REP_ERR_INVALID        (NBD_REP_FLAG_ERROR | 3)
#define NBD_REP_ERR_PLATFORM       (NBD_REP_FLAG_ERROR | 4)
#define NBD_REP_ERR_TLS_REQD       (NBD_REP_FLAG_ERROR | 5)
#define NBD_REP_ERR_UNKNOWN        (NBD_REP_FLAG_ERROR | 6)
#define NBD_REP_ERR_SHUTDOWN       (NBD_REP_FLAG_ERROR | 7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD (NBD_REP_FLAG_ERROR | 8)
#define NBD_REP_ERR_TOO_BIG        (NBD_REP_FLAG_ERROR | 9)

/* ---- NBD_REP_INFO types ---- */
#define NBD_INFO_EXPORT            0
#define NBD_INFO_NAME              1
#define NBD_INFO_DESCRIPTION       2
#define NBD_INFO_BLOCK_SIZE        3

/* ---- transmission flags (16 bits) ---- */
#define NBD_FLAG_HAS_FLAGS         (1u << 0)
#define NBD_FLAG_READ_ONLY         (1u << 1)
#define NBD_FLAG_SEND_FLUSH        (1u << 2)
#define NBD_FLAG_SEND_FUA          (1u << 3)
#define NBD_FLAG_ROTATIONAL        (1u << 4)
#define NBD_FLAG_SEND_TRIM         (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF           (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN    (1u << 8)
#define NBD_FLAG_SEND_CACHE        (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO    (1u << 11)

/* ---- commands and command flags ---- */
#define NBD_CMD_READ               0
#define NBD_CMD_WRITE              1
#define NBD_CMD_DISC               2
#define NBD_CMD_FLUSH              3
#define NBD_CMD_TRIM               4
#define NBD_CMD_CACHE              5
#define NBD_CMD_WRITE_ZEROES       6
#define NBD_CMD_BLOCK_STATUS       7

#define NBD_CMD_FLAG_FUA           (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE       (1u << 1)
#define NBD_CMD_FLAG_DF            (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE       (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO     (1u << 4)

/* ---- structured reply chunks ---- */
#define NBD_REPLY_FLAG_DONE        (1u << 0)
#define NBD_REPLY_TYPE_NONE        0
#define NBD_REPLY_TYPE_OFFSET_DATA 1
#define NBD_REPLY_TYPE_OFFSET_HOLE 2
#define NBD_REPLY_TYPE_BLOCK_STATUS 5
#define NBD_REPLY_TYPE_ERROR       32769 /* 2^15 + 1 */
#define NBD_REPLY_TYPE_ERROR_OFFSET 32770

/* ---- base:allocation status flags ---- */
#define NBD_STATE_HOLE             (1u << 0)
#define NBD_STATE_ZERO             (1u << 1)
/* ---- qemu:dirty-bitmap:NAME status flag (QEMU's docs/interop/nbd.txt) ---- */
#define NBD_STATE_DIRTY            (1u << 0)

/* ---- error values (the only ones a server may send) ---- */
#define NBD_SUCCESS                0
#define NBD_EPERM                  1
#define NBD_EIO                    5
#define NBD_ENOMEM                 12
#define NBD_EINVAL                 22
#define NBD_ENOSPC                 28
#define NBD_EOVERFLOW              75
#define NBD_ENOTSUP                95
#define NBD_ESHUTDOWN              108

/* ---- limits we apply ---- */
#define NBD_MAX_STRING             4096                 /* names, queries, messages */
#define NBD_MAX_PAYLOAD            (32u * 1024 * 1024)  /* READ/WRITE length */
#define NBD_MAX_OPTION_LENGTH      (64u * 1024)         /* option data; more: drop */
#define NBD_BLOCK_SIZE_MIN         1
#define NBD_BLOCK_SIZE_PREFERRED   4096
#define NBD_META_BASE_ALLOCATION   "base:allocation"
#define NBD_META_DIRTY_BITMAP_PREFIX "qemu:dirty-bitmap:"   /* + the bitmap's name */

/* ---- wire structs (fields big-endian) ---- */

/* Server greeting of the fixed newstyle handshake. */
typedef struct __attribute__((packed)) NbdGreeting {
    uint64_t magic;       /* NBD_MAGIC */
    uint64_t opts_magic;  /* NBD_OPTS_MAGIC */
    uint16_t flags;       /* NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES */
} NbdGreeting;
_Static_assert(sizeof(NbdGreeting) == 18, "NbdGreeting is 18 bytes on the wire");

/* Client option request header; `length` bytes of data follow. */
typedef struct __attribute__((packed)) NbdOptionHeader {
    uint64_t magic;       /* NBD_OPTS_MAGIC */
    uint32_t option;      /* NBD_OPT_* */
    uint32_t length;      /* bytes of option data that follow */
} NbdOptionHeader;
_Static_assert(sizeof(NbdOptionHeader) == 16, "NbdOptionHeader is 16 bytes on the wire");

/* Server option reply header; `length` bytes of data follow. */
typedef struct __attribute__((packed)) NbdOptionReply {
    uint64_t magic;       /* NBD_REP_MAGIC */
    uint32_t option;      /* the option being answered */
    uint32_t type;        /* NBD_REP_* */
    uint32_t length;      /* bytes of reply data that follow */
} NbdOptionReply;
_Static_assert(sizeof(NbdOptionReply) == 20, "NbdOptionReply is 20 bytes on the wire");

/* Reply to NBD_OPT_EXPORT_NAME (followed by 124 zero bytes unless NO_ZEROES). */
typedef struct __attribute__((packed)) NbdExportNameReply {
    uint64_t size;        /* export size in bytes */
    uint16_t flags;       /* transmission flags */
} NbdExportNameReply;
_Static_assert(sizeof(NbdExportNameReply) == 10, "NbdExportNameReply is 10 bytes");

/* NBD_REP_INFO payload for NBD_INFO_EXPORT. */
typedef struct __attribute__((packed)) NbdInfoExport {
    uint16_t type;        /* NBD_INFO_EXPORT */
    uint64_t size;        /* export size in bytes */
    uint16_t flags;       /* transmission flags */
} NbdInfoExport;
_Static_assert(sizeof(NbdInfoExport) == 12, "NbdInfoExport is 12 bytes on the wire");

/* NBD_REP_INFO payload for NBD_INFO_BLOCK_SIZE. */
typedef struct __attribute__((packed)) NbdInfoBlockSize {
    uint16_t type;        /* NBD_INFO_BLOCK_SIZE */
    uint32_t minimum;     /* minimum block size */
    uint32_t preferred;   /* preferred block size */
    uint32_t maximum;     /* maximum READ/WRITE payload */
} NbdInfoBlockSize;
_Static_assert(sizeof(NbdInfoBlockSize) == 14, "NbdInfoBlockSize is 14 bytes on the wire");

/* Transmission request; WRITE is followed by `length` bytes of data. */
typedef struct __attribute__((packed)) NbdRequestWire {
    uint32_t magic;       /* NBD_REQUEST_MAGIC */
    uint16_t flags;       /* NBD_CMD_FLAG_* */
    uint16_t type;        /* NBD_CMD_* */
    uint64_t cookie;      /* echoed in the reply, opaque to the server */
    uint64_t offset;      /* byte offset into the export */
    uint32_t length;      /* byte count */
} NbdRequestWire;
_Static_assert(sizeof(NbdRequestWire) == 28, "NbdRequestWire is 28 bytes on the wire");

/* Simple reply; a successful READ is followed by the data. */
typedef struct __attribute__((packed)) NbdSimpleReply {
    uint32_t magic;       /* NBD_SIMPLE_REPLY_MAGIC */
    uint32_t error;       /* NBD_E* */
    uint64_t cookie;      /* from the request */
} NbdSimpleReply;
_Static_assert(sizeof(NbdSimpleReply) == 16, "NbdSimpleReply is 16 bytes on the wire");

/* Structured reply chunk header; `length` bytes of payload follow. */
typedef struct __attribute__((packed)) NbdChunkHeader {
    uint32_t magic;       /* NBD_STRUCTURED_REPLY_MAGIC */
    uint16_t flags;       /* NBD_REPLY_FLAG_DONE on the last chunk */
    uint16_t type;        /* NBD_REPLY_TYPE_* */
    uint64_t cookie;      /* from the request */
    uint32_t length;      /* payload bytes */
} NbdChunkHeader;
_Static_assert(sizeof(NbdChunkHeader) == 20, "NbdChunkHeader is 20 bytes on the wire");

/* Payload of an OFFSET_HOLE chunk. (OFFSET_DATA is a 64-bit offset plus the data.) */
typedef struct __attribute__((packed)) NbdChunkHole {
    uint64_t offset;      /* export offset of the hole */
    uint32_t length;      /* hole length */
} NbdChunkHole;
_Static_assert(sizeof(NbdChunkHole) == 12, "NbdChunkHole is 12 bytes on the wire");

/* Payload of an ERROR chunk, followed by msg_len bytes of UTF-8 text. */
typedef struct __attribute__((packed)) NbdChunkError {
    uint32_t error;       /* NBD_E* */
    uint16_t msg_len;     /* bytes of message text */
} NbdChunkError;
_Static_assert(sizeof(NbdChunkError) == 6, "NbdChunkError is 6 bytes on the wire");

/* One extent of a BLOCK_STATUS chunk (after its 32-bit context id). */
typedef struct __attribute__((packed)) NbdExtent {
    uint32_t length;      /* extent length in bytes */
    uint32_t flags;       /* NBD_STATE_* */
} NbdExtent;
_Static_assert(sizeof(NbdExtent) == 8, "NbdExtent is 8 bytes on the wire");

/* The one errno -> NBD error mapping of the server (err: a positive errno, or 0).
 * EDQUOT and EFBIG become ENOSPC, EROFS becomes EPERM, anything without an NBD
 * counterpart becomes EIO (the client sees a failed I/O, the cause is logged). */
uint32_t nbd_errno_to_wire(int err);

#endif /* NBD_PROTO_H */
