/* A backed-up disk written back over a sink in place: an iSCSI LUN, a raw file on
 * an NFS export, a block device, the very storage it was read from. Unlike an
 * export to a new file, nothing can be renamed into place at the end, and the
 * target holds older data: so every chunk the disk needs is read and re-hashed
 * before the first byte is written (a missing or corrupt chunk leaves the target
 * untouched), here or, for restore, in its write phase just before; the
 * target's size is checked first, and the ranges the backup
 * holds as zeros (chunks never stored, the tail) are zeroed rather than skipped.
 * Memory is one chunk at a time; the network sinks keep several requests of each
 * write in flight themselves. */
#include "config.h"
#include "source-internal.h"
#include "vs-copy.h"

/* Zeroes [from, to) in pieces a size_t always holds. */
static bool
zero_range(VsSource *sink, uint64_t from, uint64_t to, GError **error)
{
    while (from < to) {
        size_t n = (size_t)MIN(to - from, (uint64_t)1 << 30);
        if (!vs_source_zero(sink, n, from, error))
            return false;
        from += n;
    }
    return true;
}

bool
vs_copy_repo_to_sink(VsRepo *repo, const VsManifestDisk *disk, VsSource *sink, bool checked,
                     GError **error)
{
    uint64_t pos = 0;

    /* Before anything is written: a snapshot-only disk's empty chunk list is
     * not a disk of zeros. */
    if (!vs_manifest_disk_check_in_repo("write back", vs_repo_path(repo), NULL, NULL, disk, error))
        return false;
    if (g_strcmp0(disk->format, "raw") != 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "write back: disk %s is %s: only a raw disk can be written over a device or "
                    "network target in place (export it to a file instead)", disk->target,
                    disk->format ? disk->format : "of unknown format");
        return false;
    }
    if (!vs_sink_check_size(sink, disk->virtual_size, error))
        return false;
    /* 1. Every chunk readable and intact, before anything is overwritten
     * (restore checked them all in its write phase: reading and hashing the
     * disk a second time would only find what a third pass, the write, finds
     * too, at the cost of a whole pass). */
    for (guint i = 0; !checked && i < disk->chunks->len; i++) {
        const VsChunkRef *c = &g_array_index(disk->chunks, VsChunkRef, i);
        size_t len = 0;
        g_autofree char *data = vs_repo_get_chunk(repo, &c->digest, &len, error);

        if (!data) {
            vs_error_prefix(error, "write back: %s: chunk at offset %" G_GUINT64_FORMAT
                            " (nothing was written)", sink->description, c->offset);
            return false;
        }
    }
    /* 2. The disk, front to back, zeros included. */
    for (guint i = 0; i < disk->chunks->len; i++) {
        const VsChunkRef *c = &g_array_index(disk->chunks, VsChunkRef, i);
        size_t len = 0;
        g_autofree char *data = NULL;

        if (!zero_range(sink, pos, c->offset, error))
            goto fail;
        if (!(data = vs_repo_get_chunk(repo, &c->digest, &len, error)) ||
            !vs_source_pwrite(sink, data, len, c->offset, error))
            goto fail;
        pos = c->offset + len;
    }
    if (zero_range(sink, pos, disk->virtual_size, error) && vs_source_flush(sink, error))
        return true;
fail:
    vs_error_prefix(error, "write back: %s (the target is partly rewritten: run the write "
                    "again)", sink->description);
    return false;
}

bool
vs_copy_file_to_sink(VsSource *src, VsSource *sink, GError **error)
{
    enum { PIECE = 4 << 20 };
    uint64_t size = vs_source_size(src), pos = 0;
    g_autofree char *buf = g_malloc(PIECE);
    g_autoptr(GArray) ext = g_array_new(FALSE, FALSE, sizeof(VsExtent));

    if (sink->ops->truncate ? !vs_source_truncate(sink, size, error)
                            : !vs_sink_check_size(sink, size, error))
        return false;
    while (pos < size) {
        g_array_set_size(ext, 0);
        if (!vs_source_extents(src, pos, size - pos, ext, error))
            goto fail;
        if (ext->len == 0) {
            VsExtent all = { .offset = pos, .length = size - pos };
            g_array_append_val(ext, all);
        }
        for (guint i = 0; i < ext->len; i++) {
            const VsExtent *e = &g_array_index(ext, VsExtent, i);
            uint64_t end = MIN(e->offset + e->length, size);

            if (e->zero) {
                if (!zero_range(sink, e->offset, end, error))
                    goto fail;
            } else {
                for (uint64_t o = e->offset; o < end;) {
                    size_t n = (size_t)MIN(end - o, (uint64_t)PIECE);
                    if (!vs_source_pread(src, buf, n, o, error) || !vs_source_pwrite(sink, buf, n, o, error))
                        goto fail;
                    o += n;
                }
            }
            pos = end;
        }
    }
    if (vs_source_flush(sink, error))
        return true;
fail:
    vs_error_prefix(error, "write back: %s (the target is partly rewritten: run the write "
                    "again)", sink->description);
    return false;
}
