/* The push-target source: a qcow2 file that libvirt's push-mode backup job
 * (virDomainBackupBegin, mode='push') has written, read straight from its L1
 * and L2 tables with pread. The job writes a full backup's every cluster (data,
 * or the zero flag), but an incremental one's target holds only the clusters
 * the dirty bitmap named: the others are unallocated, and libvirt gives the
 * file the live disk as its backing file, so any reader that follows the
 * backing (QEMU, qemu-img) would fill them with what the guest wrote since, not
 * with the backup's instant. This reader never opens a backing file: opened as
 * a delta, an unallocated cluster is reported `unchanged` and its bytes are the
 * previous backup's (the copy engine takes them from there); opened as a full
 * target it reads as zeros, as qcow2 says with no backing. Refused, since their
 * clusters are not plain data at a file offset: encryption, an external data
 * file, extended L2 entries (subclusters), compressed clusters, an image marked
 * corrupt. Memory: the L1 table (8 bytes per 512 MiB of disk) and one L2 table. */
#include "config.h"
#include "source-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define QCOW2_MAGIC 0x514649fbu                   /* "QFI\xfb" */
#define L1E_OFFSET_MASK 0x00fffffffffffe00ull
#define L2E_OFFSET_MASK 0x00fffffffffffe00ull
#define L2E_COMPRESSED (1ull << 62)
#define L2E_ZERO 1ull
#define INCOMPAT_CORRUPT (1ull << 1)
#define INCOMPAT_DATA_FILE (1ull << 2)
#define INCOMPAT_EXTL2 (1ull << 4)
#define MAX_EXTENTS_PER_CALL 1024

typedef enum { CL_UNALLOCATED, CL_ZERO, CL_DATA } ClusterKind;

typedef struct {
    int fd;
    bool delta;
    unsigned cluster_bits;
    uint64_t size;          /* guest */
    uint64_t file_size;
    uint64_t *l1;           /* host order */
    uint32_t l1_size;
    uint64_t *l2;           /* the cached table, host order */
    uint64_t l2_offset;     /* its file offset; 0: none cached */
} Qcow2Source;

static uint64_t
be64(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static uint32_t
be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static bool
read_exact(VsSource *src, void *buf, size_t len, uint64_t offset, const char *what, GError **error)
{
    Qcow2Source *q = src->priv;
    size_t done = 0;

    while (done < len) {
        ssize_t n = pread(q->fd, (char *)buf + done, len - done, (off_t)(offset + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "push-target: %s: reading %s at %" G_GUINT64_FORMAT
                        ": %s", src->description, what, offset + done,
                        n < 0 ? g_strerror(errno) : "unexpected end of file");
            return false;
        }
        done += (size_t)n;
    }
    return true;
}

/* The end of the guest range that the L1 entry covering OFFSET maps (an L2
 * table's worth), or the disk's end. */
static uint64_t
l2_range_end(const Qcow2Source *q, uint64_t offset)
{
    uint64_t span = 1ull << (2 * q->cluster_bits - 3);

    return MIN((offset / span + 1) * span, q->size);
}

/* The file offset of the L2 table that maps guest OFFSET; 0: none (the
 * whole range it would map is unallocated). */
static uint64_t
l2_table_of(const Qcow2Source *q, uint64_t offset)
{
    uint64_t l1i = (offset >> q->cluster_bits) >> (q->cluster_bits - 3);

    return l1i < q->l1_size ? q->l1[l1i] & L1E_OFFSET_MASK : 0;
}

/* What the cluster at guest OFFSET is, and for data its file offset. */
static bool
lookup(VsSource *src, uint64_t offset, ClusterKind *kind, uint64_t *host, GError **error)
{
    Qcow2Source *q = src->priv;
    uint64_t cluster = offset >> q->cluster_bits;
    uint64_t l2i = cluster & ((1ull << (q->cluster_bits - 3)) - 1);
    uint64_t l2_off = l2_table_of(q, offset), e;

    *host = 0;
    if (!l2_off) {
        *kind = CL_UNALLOCATED;
        return true;
    }
    if (l2_off != q->l2_offset) {
        size_t cs = (size_t)1 << q->cluster_bits;
        g_autofree unsigned char *raw = g_malloc(cs);

        if (l2_off + cs > q->file_size) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "push-target: %s: an L2 table lies beyond the "
                        "end of the file (%" G_GUINT64_FORMAT "): the image is damaged",
                        src->description, l2_off);
            return false;
        }
        if (!read_exact(src, raw, cs, l2_off, "an L2 table", error))
            return false;
        for (size_t i = 0; i < cs / 8; i++)
            q->l2[i] = be64(raw + 8 * i);
        q->l2_offset = l2_off;
    }
    e = q->l2[l2i];
    if (e & L2E_COMPRESSED) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED, "push-target: %s: the cluster at guest "
                    "offset %" G_GUINT64_FORMAT " is compressed, which a backup job never writes",
                    src->description, cluster << q->cluster_bits);
        return false;
    }
    if (e & L2E_ZERO) {
        *kind = CL_ZERO;
    } else if ((*host = e & L2E_OFFSET_MASK)) {
        if (*host + (1ull << q->cluster_bits) > q->file_size) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "push-target: %s: the cluster at guest offset %"
                        G_GUINT64_FORMAT " lies beyond the end of the file: the image is damaged "
                        "(was the job's target written to the end?)", src->description,
                        cluster << q->cluster_bits);
            return false;
        }
        *kind = CL_DATA;
    } else {
        *kind = CL_UNALLOCATED;
    }
    return true;
}

static uint64_t
q_size(VsSource *src)
{
    return ((Qcow2Source *)src->priv)->size;
}

static bool
q_extents(VsSource *src, uint64_t offset, uint64_t length, GArray *out, GError **error)
{
    Qcow2Source *q = src->priv;
    uint64_t cs = 1ull << q->cluster_bits;
    uint64_t end = MIN(offset + length, q->size), at = offset;
    guint added = 0;

    while (at < end && added < MAX_EXTENTS_PER_CALL) {
        ClusterKind kind, next;
        uint64_t host, run_end;

        if (!lookup(src, at, &kind, &host, error))
            return false;
        run_end = MIN((at / cs + 1) * cs, end);
        while (run_end < end) {
            /* No L2 table: its whole range is unallocated, at one step, so
             * that an empty terabyte costs a few thousand steps, not millions. */
            if (kind == CL_UNALLOCATED && !l2_table_of(q, run_end)) {
                run_end = MIN(l2_range_end(q, run_end), end);
                continue;
            }
            if (!lookup(src, run_end, &next, &host, error))
                return false;
            if (next != kind)
                break;
            run_end = MIN(run_end + cs, end);
        }
        {
            VsExtent e = { .offset = at, .length = run_end - at };
            /* A delta's unallocated cluster is not zeros: it is the previous
             * backup's data, so it is neither zero nor to be read here. */
            e.unchanged = kind == CL_UNALLOCATED && q->delta;
            e.zero = kind == CL_ZERO || (kind == CL_UNALLOCATED && !q->delta);
            g_array_append_val(out, e);
        }
        added++;
        at = run_end;
    }
    return true;
}

static bool
q_pread(VsSource *src, void *buf, size_t len, uint64_t offset, GError **error)
{
    Qcow2Source *q = src->priv;
    uint64_t cs = 1ull << q->cluster_bits;
    char *p = buf;

    if (offset > q->size || len > q->size - offset) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "push-target: %s: read of %zu bytes at %"
                    G_GUINT64_FORMAT " beyond the end (%" G_GUINT64_FORMAT ")", src->description,
                    len, offset, q->size);
        return false;
    }
    while (len) {
        ClusterKind kind;
        uint64_t host, in = offset % cs;
        size_t n = (size_t)MIN(len, cs - in);

        if (!lookup(src, offset, &kind, &host, error))
            return false;
        if (kind == CL_UNALLOCATED && q->delta) {
            /* Reading it would hand out zeros as if the guest had written them. */
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "push-target: %s: guest offset %"
                        G_GUINT64_FORMAT " did not change since the previous backup: its data is "
                        "in that backup, not in this file", src->description, offset);
            return false;
        }
        if (kind == CL_DATA) {
            /* Contiguous clusters in the file are one pread. */
            while (n < len) {
                ClusterKind k2;
                uint64_t h2;
                if (!lookup(src, offset + n, &k2, &h2, error))
                    return false;
                if (k2 != CL_DATA || h2 != host + in + n)
                    break;
                n += (size_t)MIN(len - n, cs);
            }
            if (!read_exact(src, p, n, host + in, "data", error))
                return false;
        } else {
            memset(p, 0, n);
        }
        p += n;
        offset += n;
        len -= n;
    }
    return true;
}

static void
q_close(VsSource *src)
{
    Qcow2Source *q = src->priv;

    if (!q)
        return;
    if (q->fd >= 0)
        close(q->fd);
    g_free(q->l1);
    g_free(q->l2);
    g_free(q);
}

static const VsSourceOps qcow2_ops = {
    .name = "push-target",
    .size = q_size,
    .extents = q_extents,
    .pread = q_pread,
    .close = q_close,
};

VsSource *
vs_source_open_push_target(const char *path, bool delta, GError **error)
{
    g_autoptr(VsSource) src = NULL;
    Qcow2Source *q = g_new0(Qcow2Source, 1);
    unsigned char h[104];
    struct stat st;
    uint32_t version;
    uint64_t l1_off, incompat = 0;

    q->fd = -1;
    q->delta = delta;
    src = vs_source_new(&qcow2_ops, path, q);
    if ((q->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(q->fd, &st) < 0) {
        g_set_error(error, VS_ERROR, errno == ENOENT ? VS_ERROR_NOT_FOUND : VS_ERROR_IO,
                    "push-target: %s: %s", path, g_strerror(errno));
        return NULL;
    }
    q->file_size = (uint64_t)st.st_size;
    memset(h, 0, sizeof h);
    if (!read_exact(src, h, 72, 0, "the header", error))
        return NULL;
    version = be32(h + 4);
    if (be32(h) != QCOW2_MAGIC || (version != 2 && version != 3)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "push-target: %s: not a qcow2 image "
                    "(version 2 or 3)", path);
        return NULL;
    }
    if (version == 3 && !read_exact(src, h + 72, 32, 72, "the header", error))
        return NULL;
    if (version == 3)
        incompat = be64(h + 72);
    q->cluster_bits = be32(h + 20);
    q->size = be64(h + 24);
    q->l1_size = be32(h + 36);
    l1_off = be64(h + 40);
    if (q->cluster_bits < 9 || q->cluster_bits > 21) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "push-target: %s: cluster_bits %u is "
                    "not one qcow2 allows", path, q->cluster_bits);
        return NULL;
    }
    if (be32(h + 32) != 0 || (incompat & (INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_EXTL2))) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED, "push-target: %s: %s", path,
                    be32(h + 32) ? "encrypted" :
                    (incompat & INCOMPAT_CORRUPT) ? "marked corrupt (qemu-img check -r all)" :
                    (incompat & INCOMPAT_DATA_FILE) ? "its data lives in an external data file" :
                    "extended L2 entries (subclusters)");
        return NULL;
    }
    if ((uint64_t)q->l1_size * 8 > q->file_size || l1_off > q->file_size - (uint64_t)q->l1_size * 8) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "push-target: %s: its L1 table lies beyond the end "
                    "of the file: the image is damaged", path);
        return NULL;
    }
    if (q->l1_size) {
        g_autofree unsigned char *raw = g_malloc((size_t)q->l1_size * 8);
        if (!read_exact(src, raw, (size_t)q->l1_size * 8, l1_off, "the L1 table", error))
            return NULL;
        q->l1 = g_new(uint64_t, q->l1_size);
        for (uint32_t i = 0; i < q->l1_size; i++)
            q->l1[i] = be64(raw + 8 * i);
    }
    q->l2 = g_new(uint64_t, ((size_t)1 << q->cluster_bits) / 8);
    src->delta = delta;
    return g_steal_pointer(&src);
}
