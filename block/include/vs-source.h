/* Where backup data is read from, behind one small vtable (in the manner of an
 * nbdkit plugin): a local file or block device, an NBD export (qemu-nbd over a
 * disk chain, or a libvirt pull-mode backup), a file on an NFS export (libnfs) and
 * an iSCSI LUN (libiscsi). Each source reports its guest-visible size, which
 * ranges hold data (so that holes and zeros are never read or stored), and reads
 * at offsets. A sink, where restore writes, is a source opened writable: the
 * same handle with the write entries below filled in (file, NFS, iSCSI). The
 * copy engine that moves data between sources and the repository is in
 * vs-copy.h. */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include "vs-error.h"

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

    /* Writing: only called on a source opened writable (vs_source_pwrite and
     * friends refuse otherwise, and refuse any range beyond the size before
     * calling these, so a backend never writes past the end of a LUN). */
    bool (*pwrite)(VsSource *src, const void *buf, size_t len, uint64_t offset, GError **error);
    /* Makes [offset, offset+len) read as zeros, cheaply where the backend can
     * (a punched hole). NULL: the wrapper writes zeros through pwrite. */
    bool (*zero)(VsSource *src, size_t len, uint64_t offset, GError **error);
    /* Makes every completed write durable. NULL: nothing to do. */
    bool (*flush)(VsSource *src, GError **error);
    /* Sets the size of a file (a sink that is a new image). NULL: the size is
     * fixed (a LUN, a block device). */
    bool (*truncate)(VsSource *src, uint64_t size, GError **error);
} VsSourceOps;

struct _VsSource {
    const VsSourceOps *ops;
    char *description;     /* for messages: the path or URL, never credentials */
    void *priv;
    bool writable;         /* opened for writing: a sink */
    /* Holds only what changed since a previous backup (a push-mode incremental
     * target): its `unchanged` ranges have no bytes here, so the copy engine
     * needs that backup (VsCopyOptions.previous) and builds a chunk that is
     * partly unchanged from the previous chunk's bytes and the changed ones. */
    bool delta;
};

/* A local raw file or block device (O_DIRECT not used; reads are sequential). */
VsSource *vs_source_open_file(const char *path, GError **error);
/* The same, writable: a sink. A regular file is created if missing; SIZE > 0
 * sets its size first (ftruncate), 0 keeps it. A block device keeps its size.
 * Zero buffers are punched as holes, never written. */
VsSource *vs_source_open_file_rw(const char *path, uint64_t size, GError **error);
/* A file on an NFS export: nfs://server/export/path/file[?version=4&...] (the
 * options libnfs takes: version, nfsport, mountport, uid, gid). Reads and
 * writes are split into requests of the server's maximum size, several in
 * flight on one connection; a clone has its own connection. A dropped
 * connection is re-established (bounded, with backoff) and the unfinished
 * requests re-issued. No hole information (NFSv3 has none; libnfs 4.0 no
 * SEEK_DATA): everything is data, and the engine keeps zeros out. WRITABLE
 * with version=4 is VS_ERROR_UNSUPPORTED (libnfs 4.0 cannot encode an NFSv4
 * WRITE): restore over NFSv3. Timeouts and the reconnect bound: see
 * VIRTSNAP_NET_TIMEOUT_SECS and VIRTSNAP_NET_RECONNECT_SECS in docs/design.md. */
VsSource *vs_source_open_nfs(const char *url, bool writable, GError **error);

/* CHAP credentials for an iSCSI login. Never part of a URL that is logged or
 * stored: pass them here (from a libvirt secret or a root-only file). */
typedef struct {
    const char *user;
    const char *password;
} VsIscsiAuth;
/* Reads "user=NAME" and "password=SECRET" lines from PATH, which must be a
 * regular file of root's or the caller's, readable by its owner only (mode 0600
 * or 0400); errors name the file and the fix, never the secret. Free with
 * vs_iscsi_auth_free (it wipes the password). */
VsIscsiAuth *vs_iscsi_auth_load(const char *path, GError **error);
void vs_iscsi_auth_free(VsIscsiAuth *auth);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsIscsiAuth, vs_iscsi_auth_free)
/* An iSCSI LUN: iscsi://host[:port]/target-iqn/lun. AUTH NULL: no CHAP (a
 * user%password@ in the URL is used but never shown). READ16/WRITE16 tasks,
 * several in flight; GET LBA STATUS for extents where the target has it (thin
 * provisioning), else all data. A dropped session is re-established (bounded,
 * with backoff) and the unfinished tasks re-issued. Reads and writes must be in
 * whole blocks of the LUN (512 or 4096 bytes; repository chunks are). */
VsSource *vs_source_open_iscsi(const char *url, const VsIscsiAuth *auth, bool writable,
                               GError **error);
/* By URL: nfs://, iscsi:// (AUTH used), nbd:// and nbd+unix:// (read-only),
 * file:// or a plain path. WRITABLE with an NBD URL is VS_ERROR_UNSUPPORTED. */
VsSource *vs_source_open_url(const char *url, const VsIscsiAuth *auth, bool writable,
                             GError **error);
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
 * PATH: a file or device, nfs://, iscsi://, or rbd:POOL/IMAGE[@SNAP][:conf=FILE]
 * [:id=USER] (QEMU's rbd syntax, '\' escaping ':'; how an rbd snapshot is exposed).
 * Clones start another qemu-nbd on the same image. */
VsSource *vs_source_open_image(const char *path, const char *format, GError **error);
/* The same; an iscsi:// PATH logs in with AUTH (CHAP) when it is given. The
 * password reaches qemu-nbd as a secret object read from a sealed memfd: never
 * on a command line or a disk. */
VsSource *vs_source_open_image_auth(const char *path, const char *format, const VsIscsiAuth *auth,
                                    GError **error);
/* An image chain of qcow2 and raw layers (local files, or nfs:// and iscsi://
 * images read with the network sources) read straight from its files: where
 * each range lives comes from `qemu-img map`, the data from pread on the layer
 * files, without an NBD server in between; ranges with no place in a file
 * (compressed clusters) go through an image source opened on first need. Only
 * right while nothing writes the chain (a backup's base under its overlay).
 * VS_ERROR_UNSUPPORTED: the chain cannot be read this way (encryption, an
 * external data file, another format, a layer of another protocol); use
 * vs_source_open_image. Clones share the map and the local descriptors and
 * open their own network connections. */
VsSource *vs_source_open_mapped(const char *path, const char *format, GError **error);
/* The qcow2 file a libvirt push-mode backup job wrote (mode='push', <target>):
 * read from its own L1/L2 tables, never through its backing file (libvirt
 * gives an incremental target the live disk as backing). DELTA (the job was
 * incremental for this disk): unallocated clusters are `unchanged` and the
 * source is a delta (see VsSource.delta); otherwise they read as zeros.
 * VS_ERROR_UNSUPPORTED for encryption, external data files, subclusters and
 * compressed clusters. */
VsSource *vs_source_open_push_target(const char *path, bool delta, GError **error);
/* INNER (taken: closed with the result) read only inside CHANGED (VsExtent:
 * the ranges a storage snapshot's diff reports against an earlier one; `zero`
 * where they now read as zeros; any order, copied): a delta source (see
 * VsSource.delta) whose other ranges are `unchanged`, so that the copy engine
 * takes them from the earlier snapshot's backup (VsCopyOptions.previous) and
 * reads nothing but the changed bytes. Inside CHANGED, INNER's extents. */
VsSource *vs_source_open_changed(VsSource *inner, const GArray *changed, GError **error);
void vs_source_close(VsSource *src);

/* The vtable through these wrappers, which supply the defaults of the optional
 * entries: no extents means one data extent; no clone is VS_ERROR_UNSUPPORTED. */
uint64_t vs_source_size(VsSource *src);
bool vs_source_extents(VsSource *src, uint64_t offset, uint64_t length, GArray *out /* VsExtent */,
                       GError **error);
bool vs_source_pread(VsSource *src, void *buf, size_t len, uint64_t offset, GError **error);
VsSource *vs_source_clone(VsSource *src, GError **error);
/* Writing to a sink. Refused (VS_ERROR_INVALID_ARG), before anything is
 * written, when the source is read-only or the range ends beyond the size: a
 * LUN smaller than the disk being restored is caught by the first write at the
 * latest; restore should compare vs_source_size with the disk's size first.
 * A buffer of zeros goes to the zero entry (a hole where possible). */
/* Refuses, with a message naming both sizes, a sink smaller than NEEDED. */
bool vs_sink_check_size(VsSource *sink, uint64_t needed, GError **error);
bool vs_source_pwrite(VsSource *src, const void *buf, size_t len, uint64_t offset, GError **error);
bool vs_source_zero(VsSource *src, size_t len, uint64_t offset, GError **error);
bool vs_source_flush(VsSource *src, GError **error);
/* Sets the size of a sink that is a file; VS_ERROR_UNSUPPORTED for a LUN or a
 * block device unless SIZE is already its size. */
bool vs_source_truncate(VsSource *src, uint64_t size, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsSource, vs_source_close)

G_END_DECLS
