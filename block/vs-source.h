/* Where backup data is read from, behind one small vtable (in the manner of an
 * nbdkit plugin): a local file or block device, an NBD export (qemu-nbd over a
 * disk chain, or a libvirt pull-mode backup), later NFS via libnfs and iSCSI via
 * libiscsi. Each source reports its guest-visible size, which ranges hold data
 * (so that holes and zeros are never read or stored), and reads at offsets.
 *
 * The copy engine reads a source into a repository: chunk-aligned reads, several
 * in flight, hashing and compression on worker threads, memory bounded by
 * max_inflight * chunk_size whatever the disk size. */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include "vs-error.h"
#include "vs-repo.h"

G_BEGIN_DECLS

typedef struct _VsSource VsSource;

typedef struct {
    uint64_t offset;
    uint64_t length;
    bool zero;             /* reads as zeros (hole or known-zero): not read, not stored */
    /* Not written since the previous backup (a clean range of a dirty bitmap):
     * the copy engine may take such a chunk from the previous manifest. */
    bool unchanged;
} VsExtent;

/* The vtable every backend fills in. All functions may be called from one thread
 * at a time per source (the engine serialises calls, or opens one source per
 * worker via clone when the backend provides it). */
typedef struct {
    const char *name;                                   /* "file", "nbd", "image", "nfs", "iscsi" */
    uint64_t (*size)(VsSource *src);
    /* Extents covering [offset, offset+length) in order; may cover less (the
     * engine asks again from where they end). NULL: everything is data. */
    bool (*extents)(VsSource *src, uint64_t offset, uint64_t length, GArray *out /* VsExtent */,
                    GError **error);
    bool (*pread)(VsSource *src, void *buf, size_t len, uint64_t offset, GError **error);
    /* An independent handle on the same data for another worker thread, or NULL
     * when the backend cannot (the engine then reads from one thread). */
    VsSource *(*clone)(VsSource *src, GError **error);
    /* Releases src->priv; vs_source_close frees the rest. */
    void (*close)(VsSource *src);
    /* Reader threads (on clones) the engine uses by default; 0 or 1: it reads
     * from the calling thread. Measured per backend: a local file is fastest read
     * by one thread, a qcow2 chain behind qemu-nbd by two servers. */
    unsigned preferred_readers;
} VsSourceOps;

struct _VsSource {
    const VsSourceOps *ops;
    char *description;     /* for messages: the path or URL */
    void *priv;
};

/* A local raw file or block device (O_DIRECT not used; reads are sequential). */
VsSource *vs_source_open_file(const char *path, GError **error);
/* An NBD URI (nbd+unix:///export?socket=...). Clones open more connections to
 * the same URI, which the server must allow (qemu-nbd --shared=N). */
VsSource *vs_source_open_nbd_uri(const char *uri, GError **error);
/* The same with a dirty bitmap: BITMAP_CONTEXT (e.g. "qemu:dirty-bitmap:backup-vda"
 * of a libvirt pull-mode incremental backup) is requested besides base:allocation,
 * and extents it reports clean come back with `unchanged` set. A server that
 * does not offer the context is an error (VS_ERROR_NOT_FOUND): reading such an
 * export as unchanged would lose data, reading it whole is the caller's call. */
VsSource *vs_source_open_nbd_bitmap(const char *uri, const char *bitmap_context, GError **error);
/* A disk image of any format QEMU reads (qcow2 chain included), served read-only
 * by a qemu-nbd that libnbd starts and stops (socket activation on a private
 * socket, killed and reaped on close). FORMAT is required: QEMU never guesses.
 * Clones start another qemu-nbd on the same image. */
VsSource *vs_source_open_image(const char *path, const char *format, GError **error);
/* A local image chain of qcow2 and raw layers read straight from its files: where
 * each range lives comes from `qemu-img map`, the data from pread on the layer
 * files, without an NBD server in between; ranges with no place in a file
 * (compressed clusters) go through an image source opened on first need. Only
 * right while nothing writes the chain (a backup's base under its overlay).
 * VS_ERROR_UNSUPPORTED: the chain cannot be read this way (encryption, an
 * external data file, another format, a layer that is not a local file); use
 * vs_source_open_image. Clones share the map and the descriptors. */
VsSource *vs_source_open_mapped(const char *path, const char *format, GError **error);
void vs_source_close(VsSource *src);

/* The vtable through these wrappers, which supply the defaults of the optional
 * entries: no extents means one data extent; no clone is VS_ERROR_UNSUPPORTED. */
uint64_t vs_source_size(VsSource *src);
bool vs_source_extents(VsSource *src, uint64_t offset, uint64_t length, GArray *out /* VsExtent */,
                       GError **error);
bool vs_source_pread(VsSource *src, void *buf, size_t len, uint64_t offset, GError **error);
VsSource *vs_source_clone(VsSource *src, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsSource, vs_source_close)

/* Progress, called from the engine's calling thread (never from workers). */
typedef void (*VsCopyProgress)(uint64_t done, uint64_t total, void *opaque);

typedef struct {
    unsigned max_inflight;   /* chunks in memory at once (default 16) */
    unsigned threads;        /* hashing/compression workers (default: number of CPUs) */
    /* Reader threads, each on its own clone of the source: 0 (the default) for
     * the source's preferred_readers, 1 for the calling thread alone. Ignored
     * for sources that cannot be cloned. */
    unsigned readers;
    VsCopyProgress progress;
    void *progress_opaque;
    /* For tests: fail with VS_ERROR_IO after this many bytes have been read (0: off). */
    uint64_t fault_after_bytes;
    /* The same disk in the backup the source's `unchanged` extents are relative
     * to (same virtual size): a chunk with no changed byte takes its entry from
     * here (none: zeros) instead of being read. NULL: `unchanged` is ignored. */
    const VsManifestDisk *previous;
} VsCopyOptions;

void vs_copy_options_init(VsCopyOptions *opts);

/* Reads the whole of SRC into REPO and fills DISK->chunks, ->virtual_size,
 * ->bytes_read and ->bytes_stored (chunks taken from opts->previous are neither
 * read nor stored: they count in neither). On failure nothing is committed (the caller
 * writes no manifest), and the chunks already stored are left for GC. */
bool vs_copy_source_to_repo(VsSource *src, VsRepo *repo, VsManifestDisk *disk,
                            const VsCopyOptions *opts, GError **error);

G_END_DECLS
