/* The copy engine: reads a source into a repository (chunk-aligned reads,
 * several in flight, hashing and compression on worker threads, memory bounded
 * by max_inflight * chunk_size whatever the disk size), and writes a backup's
 * disk, or an image file, over a sink. */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include "vs-error.h"
#include "vs-repo.h"
#include "vs-source.h"

G_BEGIN_DECLS

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

/* Writes DISK of a backup over SINK in place (a LUN, a raw file on an NFS
 * export, a block device): raw disks only; SINK must be at least the disk's
 * size; every chunk is read and re-hashed before anything is written, so a
 * missing or corrupt chunk leaves SINK untouched (unless CHECKED: the caller
 * has just checked every chunk itself, as restore's write phase does, and the
 * pass is not repeated); ranges the backup holds as zeros are zeroed, not
 * skipped. Flushes at the end. Chunks are re-hashed as they are written
 * either way. */
bool vs_copy_repo_to_sink(VsRepo *repo, const VsManifestDisk *disk, VsSource *sink, bool checked,
                          GError **error);
/* The whole of SRC (an image file) written over SINK from its start: a file sink
 * (NFS) is first cut or grown to SRC's size, a device must be at least that big;
 * SRC's holes are written as zeros. */
bool vs_copy_file_to_sink(VsSource *src, VsSource *sink, GError **error);

G_END_DECLS
