/*
 * vma.h — the public API of the VMA archive library (libvma).
 *
 * The `vma` command and `vmad` use only this header; the on-disk structs live in
 * vma-format.h, private to the library. Handles are opaque. Control functions take a
 * `GError **errp` last and return false / NULL / negative on failure. Error messages
 * carry their context (device, cluster, byte offset) and are meant to be printed as
 * they are, once, by whoever finally handles them.
 *
 * Threads: a VmaWriter accepts clusters from any number of threads at once; one
 * dedicated writer thread owned by the handle writes the stream. A VmaReader is used
 * by one thread at a time.
 */
#ifndef VMA_H
#define VMA_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VMABACKUP_VERSION "0.1.0"

#define VMA_BLOCK_SIZE 4096u
#define VMA_CLUSTER_SIZE 65536u
#define VMA_BLOCKS_PER_CLUSTER 16u
#define VMA_MAX_CONFIGS 256u
#define VMA_MAX_DEVICES 254u               /* dev_ids 1..254 */
#define VMA_MAX_BLOB_SIZE 65535u           /* a config's data or a name incl. its NUL */
#define VMA_MAX_DEVICE_SIZE (UINT64_C(1) << 48) /* 2^32 clusters of 64 KiB = 256 TiB */
#define VMA_VMSTATE_NAME "vmstate"         /* a device of this name is a VM state stream */

/* ---- errors ---------------------------------------------------------------------- */

#define VMA_ERROR (vma_error_quark())
GQuark vma_error_quark(void);

typedef enum VmaErrorCode {
    VMA_ERROR_FAILED,      /* anything not listed below */
    VMA_ERROR_IO,          /* a system call failed (message carries strerror) */
    VMA_ERROR_INVALID,     /* a caller passed an invalid argument */
    VMA_ERROR_FORMAT,      /* the archive violates the format */
    VMA_ERROR_CHECKSUM,    /* a header or extent-header MD5 does not match */
    VMA_ERROR_TRUNCATED,   /* the archive ends inside a header or extent */
    VMA_ERROR_MISSING,     /* clusters of a device never appeared */
    VMA_ERROR_DUPLICATE,   /* a cluster appeared twice */
    VMA_ERROR_CANCELLED,   /* vma_writer_cancel() was called */
    VMA_ERROR_EXISTS,      /* an output file already exists */
} VmaErrorCode;

/* ---- cluster buffers and zero detection --------------------------------------------- */

/* A 64 KiB buffer aligned to 4096 bytes (usable with O_DIRECT). Never returns NULL. */
void *vma_cluster_alloc(void);
/* Frees a buffer from vma_cluster_alloc(); accepts NULL. */
void vma_cluster_free(void *buf);
/* True when len bytes at buf are all zero. Word-wise; buf needs no alignment. */
bool vma_buffer_is_zero(const void *buf, size_t len);
/* Bit j set <=> 4 KiB block j of the 64 KiB cluster at buf holds a non-zero byte. */
uint16_t vma_cluster_zero_mask(const void *cluster);

/* ---- writer ---------------------------------------------------------------------- */

typedef struct VmaWriter VmaWriter;

typedef struct VmaWriterOptions {
    const uint8_t *uuid;    /* 16 bytes to use as the archive uuid; NULL = random */
    int64_t ctime;          /* header time, seconds since the epoch; 0 = now */
    bool direct;            /* open a new output file with O_DIRECT */
    size_t queue_clusters;  /* bound of the normal lane in clusters; 0 = default (64) */
    bool delta;             /* a delta archive (incremental / differential): close does
                             * not fail on clusters never written; the caller adds the
                             * VMA_CHAIN_CONFIG_NAME config before the header is final */
} VmaWriterOptions;

/* Flags for vma_writer_write_cluster(). */
#define VMA_WRITE_PRIORITY 0x1u /* priority lane: written before normal records and
                                 * never blocks on the queue bound (the caller bounds
                                 * what it holds; used by copy-before-write) */

/* Open an output stream. target is one of:
 *   "exec:<shell command>"  — the stream goes to the command's stdin (/bin/sh -c);
 *   the path of an existing FIFO — opened for writing;
 *   any other path          — a new regular file (mode 0600); VMA_ERROR_EXISTS if the
 *                             name exists. It is written as ".NAME.tmp-XXXXXX" in the
 *                             same directory and appears under its name only when
 *                             vma_writer_close() succeeds (never replacing a file
 *                             created there meanwhile).
 * Pipes get a 1 MiB pipe buffer where the kernel allows it. Nothing is written until
 * the header is final (first cluster, vma_writer_start() or vma_writer_close()). */
VmaWriter *vma_writer_new(const char *target, const VmaWriterOptions *opts, GError **errp);
/* Same, over a descriptor the caller opened; the writer takes ownership of fd and
 * never unlinks anything for it. name is used in messages. */
VmaWriter *vma_writer_new_fd(int fd, const char *name, const VmaWriterOptions *opts,
                             GError **errp);

/* The archive uuid (raw 16 bytes) and its lower-case text form (37 bytes with NUL). */
void vma_writer_get_uuid(VmaWriter *w, uint8_t uuid[16]);
void vma_writer_get_uuid_str(VmaWriter *w, char out[37]);

/* Before the header is final: add a config (name stored as given; at most 256 configs,
 * name and data each at most 65535 bytes incl. the name's NUL; data may be empty). */
bool vma_writer_add_config(VmaWriter *w, const char *name, const void *data, size_t len,
                           GError **errp);
/* Before the header is final: register a device; returns its dev_id (1..254) or -1.
 * size is 1 byte .. 256 TiB. A device named "vmstate" is a VM state stream: its clusters
 * must come in order 0,1,2,... and may go past size; it is not checked for completeness. */
int vma_writer_register_device(VmaWriter *w, const char *devname, uint64_t size,
                               GError **errp);

/* Make the header final and start the writer thread. Called implicitly by the first
 * vma_writer_write_cluster() and by vma_writer_close(). */
bool vma_writer_start(VmaWriter *w, GError **errp);

/* Hand over cluster cluster_num of dev_id. buf is a vma_cluster_alloc() buffer of 64 KiB
 * whose ownership passes to the writer in every case (success or not), or NULL for an
 * all-zero cluster. The zero mask is computed in the calling thread. In the last,
 * partial cluster of a device, bytes past the device size are cleared and blocks that
 * start at or past it are never stored. Clusters may come in any order from any thread;
 * each exactly once. Blocks while the normal lane is full (unless VMA_WRITE_PRIORITY).
 * Returns false with the latched error once the writer has failed or was cancelled. */
bool vma_writer_write_cluster(VmaWriter *w, uint8_t dev_id, uint32_t cluster_num, void *buf,
                              unsigned flags, GError **errp);

/* Latch a VMA_ERROR_CANCELLED error with the given message (e.g. "backup canceled")
 * unless an error is latched already, and wake every waiter. Safe from any thread. */
void vma_writer_cancel(VmaWriter *w, const char *message);
/* False, with a copy of the latched error, once the writer has failed. */
bool vma_writer_check(VmaWriter *w, GError **errp);

/* Per-device progress: bytes covered by clusters accepted so far (the last cluster
 * counts up to the device size) and the bytes of those that were zero blocks. */
typedef struct VmaDeviceStatus {
    uint64_t size;
    uint64_t transferred;
    uint64_t zero_bytes;
} VmaDeviceStatus;
bool vma_writer_get_device_status(VmaWriter *w, uint8_t dev_id, VmaDeviceStatus *st);
/* Bytes of archive written to the output so far. */
uint64_t vma_writer_get_output_bytes(VmaWriter *w);
/* Bytes of cluster data currently queued (both lanes). */
uint64_t vma_writer_get_queued_bytes(VmaWriter *w);

/* Finish the stream: drain the queue, stop the writer thread, flush and close the output,
 * wait for an exec: command and check its exit status, and rename a new file into place
 * (then flush its directory). Fails (and removes an output file the writer created) on a
 * latched error, a failed command or flush, a final name taken meanwhile, or unless every
 * cluster of every non-vmstate device was written exactly once (not checked with
 * opts->delta). Call at most once. */
bool vma_writer_close(VmaWriter *w, GError **errp);
/* Free the handle; accepts NULL. If not closed, cancels, closes and removes the partial
 * output file first. */
void vma_writer_free(VmaWriter *w);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmaWriter, vma_writer_free)

/* ---- reader ---------------------------------------------------------------------- */

typedef struct VmaReader VmaReader;

typedef enum VmaCompression {
    VMA_COMPRESSION_NONE,
    VMA_COMPRESSION_ZSTD,
    VMA_COMPRESSION_GZIP,
    VMA_COMPRESSION_LZOP,
    VMA_COMPRESSION_BZIP2,
} VmaCompression;

/* "none", "zstd", "gzip", "lzop" or "bzip2". */
const char *vma_compression_name(VmaCompression c);

/* Open an archive ("-" = stdin), detect compression by magic bytes, read and check the
 * header. Reading is strictly sequential. */
VmaReader *vma_reader_open(const char *path, GError **errp);
/* Same over an open descriptor (ownership passes); name is used in messages. */
VmaReader *vma_reader_open_fd(int fd, const char *name, GError **errp);
void vma_reader_free(VmaReader *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmaReader, vma_reader_free)

VmaCompression vma_reader_get_compression(VmaReader *r);
void vma_reader_get_uuid(VmaReader *r, uint8_t uuid[16]);
int64_t vma_reader_get_ctime(VmaReader *r);

/* Configs in header order: index 0 .. count-1. */
guint vma_reader_get_config_count(VmaReader *r);
bool vma_reader_get_config(VmaReader *r, guint index, const char **name,
                           const uint8_t **data, size_t *len);

typedef struct VmaDeviceInfo {
    const char *name;       /* NUL-terminated, owned by the reader */
    uint64_t size;
    bool is_vmstate;
} VmaDeviceInfo;
/* Device dev_id (1..254), or NULL when that slot is unused. */
const VmaDeviceInfo *vma_reader_get_device(VmaReader *r, guint dev_id);

/* One cluster record of the stream, valid until the next call. The stored blocks (one
 * per set bit of mask, lowest bit first; a full cluster when mask == 0xffff) are
 * contiguous at data: popcount(mask) * 4096 bytes. Blocks whose bit is clear are zero. */
typedef struct VmaCluster {
    uint8_t dev_id;
    uint32_t cluster_num;
    uint16_t mask;
    const uint8_t *data;
    uint64_t extent_offset; /* byte offset of its extent header in the (uncompressed) archive */
} VmaCluster;

/* Next cluster: 1 with *c filled, 0 at a clean end of stream, -1 with an error
 * (checksum, uuid, magic, truncation, unknown dev_id, duplicate cluster, vmstate order,
 * I/O). Errors name the extent's byte offset and the device and cluster concerned. */
int vma_reader_next_cluster(VmaReader *r, VmaCluster *c, GError **errp);

/* After the end of stream: fail with VMA_ERROR_MISSING naming the first missing cluster
 * of each incomplete device ("detected missing cluster N for stream NAME"). dev_id 0
 * checks every non-vmstate device. */
bool vma_reader_check_complete(VmaReader *r, guint dev_id, GError **errp);

typedef struct VmaReaderStats {
    uint64_t archive_bytes;   /* uncompressed archive bytes consumed so far */
    uint64_t input_bytes;     /* bytes consumed from the input (compressed, if it is) */
    uint64_t input_size;      /* size of a regular input file, 0 if unknown */
    uint64_t clusters_seen;   /* cluster records returned so far */
    uint64_t clusters_total;  /* clusters of all non-vmstate devices */
    uint64_t data_bytes;      /* stored block bytes returned so far */
    uint64_t zero_bytes;      /* bytes of zero blocks within device sizes returned so far */
} VmaReaderStats;
void vma_reader_get_stats(VmaReader *r, VmaReaderStats *st);

/* ---- delta archives (incremental / differential chains) ----------------------------
 *
 * A delta archive is an ordinary VMA stream whose devices may lack clusters (unchanged
 * since its base) and that carries one config entry VMA_CHAIN_CONFIG_NAME naming its
 * base archive's uuid (docs/vma-format.md, "Delta archives"). A full archive has no such
 * entry. Devices of a delta archive have the names and sizes of its base's. */

#define VMA_CHAIN_CONFIG_NAME "vmabackup-chain.conf"

typedef enum {
    VMA_CHAIN_FULL = 0,       /* no chain entry: every cluster present */
    VMA_CHAIN_INCREMENTAL,    /* relative to the previous backup that reset the bitmap */
    VMA_CHAIN_DIFFERENTIAL,   /* relative to the backup the bitmap counts from */
} VmaChainKind;

typedef struct VmaChainInfo {
    VmaChainKind kind;
    uint8_t base_uuid[16];
    char *bitmap;            /* owned, may be NULL */
} VmaChainInfo;

/* The text of the chain entry ("format: 1", "kind: ...", "base: ...", "bitmap: ..." when
 * info->bitmap is set; LF line ends), g_free it; *len (if len != NULL) gets its length.
 * NULL when info->kind is VMA_CHAIN_FULL or info->bitmap is empty or holds a control
 * character (a line break would forge keys). */
char *vma_chain_info_format(const VmaChainInfo *info, size_t *len);
/* Parse the chain entry's bytes into *out (cleared first; on failure left cleared).
 * VMA_ERROR_FORMAT on: control characters, a line not "key: value", an empty value, a
 * duplicate key, a missing format/kind/base, an unknown kind, a base that is not a
 * lower-case 8-4-4-4-12 uuid, or unknown keys when format is not 1 (with format 1
 * unknown keys are ignored). */
bool vma_chain_info_parse(const void *data, size_t len, VmaChainInfo *out, GError **errp);
/* Free what *info owns and zero it; accepts NULL. */
void vma_chain_info_clear(VmaChainInfo *info);
/* The chain entry of an open archive: *out gets kind VMA_CHAIN_FULL when it has none;
 * false (VMA_ERROR_FORMAT) when the entry does not parse or appears twice. */
bool vma_chain_info_from_reader(VmaReader *r, VmaChainInfo *out, GError **errp);
/* "full", "incremental" or "differential". */
const char *vma_chain_kind_name(VmaChainKind kind);

/* ---- small helpers ----------------------------------------------------------------- */

/* "lower-case uuid" text form of 16 raw bytes. */
void vma_uuid_unparse(const uint8_t uuid[16], char out[37]);

/* Whether name may be an archive's config or device name: `vma extract` makes it a file
 * name in the target directory, so "", names containing '/' or "..", a leading '.' and
 * control characters are refused (VMA_ERROR_INVALID, "refusing <what> name ..."). The
 * device "vmstate" (the VM state stream) is restored as vmstate.bin and needs no check.
 * The writer refuses what extract refuses, with this one function. */
bool vma_check_name(const char *what, const char *name, GError **errp);
/* A disk's device name: vma_check_name("device") and not "vmstate", which would store
 * the disk as a VM state stream (a backup must refuse such a disk before it starts). */
bool vma_check_disk_name(const char *name, GError **errp);

#endif /* VMA_H */
