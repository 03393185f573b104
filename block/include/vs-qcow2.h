/* A minimal qcow2 writer: builds a fresh, standalone qcow2 v3 image (compat
 * 1.1, 64 KiB clusters, 16-bit refcounts, no backing file, no compression, no
 * encryption) into an empty file from writes whose offsets ascend, as export
 * and restore produce them. Data clusters are appended in the order they are
 * first written and L2 tables as their 512 MiB of guest space is left behind;
 * the L1 table, refcount blocks and refcount table go at the end, and the
 * header last. Ranges never written stay unallocated and read as zeros, so an
 * image costs what was written. It exists so that a local restore writes its
 * image with pwrite rather than through a qemu-nbd process and a socket (a
 * third of the restore's CPU went there). Anything else (a backing chain,
 * another format, writing into an existing image) is qemu-nbd's job. Memory:
 * one L2 table and the L1 table (8 bytes per 512 MiB of virtual size). */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#define VS_QCOW2_CLUSTER_BITS 16
#define VS_QCOW2_CLUSTER_SIZE (1u << VS_QCOW2_CLUSTER_BITS)

typedef struct _VsQcow2Writer VsQcow2Writer;

/* Starts an image of VIRTUAL_SIZE bytes (rounded up to a multiple of 512, as
 * qemu-img create does) in FD, which must be an empty regular file open for
 * writing; FD stays the caller's. NAME is used in messages. */
VsQcow2Writer *vs_qcow2_writer_new(int fd, const char *name, uint64_t virtual_size, GError **error);

/* Writes LEN bytes of guest data at guest OFFSET. Offsets must ascend: a write
 * may start inside the cluster the previous one ended in, never before it.
 * Parts of a cluster that are never written read as zeros. */
bool vs_qcow2_writer_pwrite(VsQcow2Writer *w, const void *buf, size_t len, uint64_t offset,
                            GError **error);

/* Writes the metadata and the header: the image is complete (not synced) once
 * this returns true. No write may follow. */
bool vs_qcow2_writer_finish(VsQcow2Writer *w, GError **error);

/* Bytes of the file used so far (data, L2 tables, header cluster). */
uint64_t vs_qcow2_writer_file_size(const VsQcow2Writer *w);

void vs_qcow2_writer_free(VsQcow2Writer *w);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsQcow2Writer, vs_qcow2_writer_free)
