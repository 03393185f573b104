/* The block layer's probes: the small, read-only looks that tell where a disk's
 * data really lives and what it is built of, used by discovery before anything
 * is copied: a qcow2 header's backing file and format, an NFS server's export
 * list (libnfs, asynchronous, bounded in time), and a block device's WWID as the
 * kernel exposes it. */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include "vs-error.h"

G_BEGIN_DECLS

/* What an image file's header says about it. */
typedef struct {
    char *format;          /* "qcow2" or "raw" (anything without a known header) */
    uint64_t virtual_size; /* qcow2: header size; raw: file size */
    char *backing_file;    /* as written in the header (may be relative), or NULL */
    char *backing_format;  /* from the backing-format header extension, or NULL */
} VsImageInfo;

void vs_image_info_free(VsImageInfo *info);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsImageInfo, vs_image_info_free)

/* Reads only the header of PATH (never the data). */
VsImageInfo *vs_image_probe(const char *path, GError **error);

/* BACKING as a qcow2 header names it, resolved the way QEMU does: relative to the
 * directory of the image OVERLAY that names it; protocol URLs are returned as is. */
char *vs_image_resolve_backing(const char *overlay, const char *backing);

/* The export paths of an NFS server (MOUNT protocol EXPORT call), or NULL with an
 * error after TIMEOUT_MS. A NULL-terminated string vector. */
char **vs_nfs_list_exports(const char *server, int timeout_ms, GError **error);

/* Splits an absolute path on an NFS server into the export that contains it (the
 * longest matching one in EXPORTS) and the path inside it ("/d.qcow2"). Returns
 * false when no export contains it. */
bool vs_nfs_split_path(const char *const *exports, const char *server_path,
                       char **export_out, char **path_out);

/* The WWID the kernel exposes for block device DEVICE (sysfs wwid, device/wwid,
 * or a multipath map's dm uuid), or NULL where the system exposes none. */
char *vs_blockdev_wwid(const char *device);

G_END_DECLS
