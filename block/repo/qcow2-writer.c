/* The qcow2 writer (vs-qcow2.h): a fresh standalone qcow2 v3 image built
 * with pwrite from ascending writes, for export and restore into local files.
 * Because every cluster of the file is allocated exactly once, front to back,
 * and referenced exactly once (header, data, L2, L1, refcount blocks, refcount
 * table), every refcount is 1 and the refcount blocks can be written at the end
 * without having been tracked. The layout follows docs/interop/qcow2.txt of
 * QEMU; qemu-img check and compare are what the unit test holds it to. */
#include "config.h"
#include "vs-qcow2.h"
#include "repo-internal.h"     /* repo_pwrite_all */
#include "vs-error.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#define QCOW2_MAGIC 0x514649fbu
#define QCOW2_VERSION 3
#define QCOW2_HEADER_LENGTH 104u
#define QCOW2_REFCOUNT_ORDER 4          /* 16-bit refcounts, what qemu-img create makes */
/* Set on an L1 or L2 entry whose cluster has refcount 1 (all of ours): qemu-img
 * check reports its absence as an error. */
#define QCOW2_OFLAG_COPIED (UINT64_C(1) << 63)
/* QEMU refuses larger L1 tables (QCOW_MAX_L1_SIZE): with 64 KiB clusters that
 * is 2 PiB of virtual size. */
#define QCOW2_MAX_L1_BYTES (32u * 1024 * 1024)

#define CS ((uint64_t)VS_QCOW2_CLUSTER_SIZE)
#define L2_ENTRIES (VS_QCOW2_CLUSTER_SIZE / 8u)
#define REFCOUNTS_PER_BLOCK (VS_QCOW2_CLUSTER_SIZE / 2u)

struct _VsQcow2Writer {
    int fd;
    char *name;
    uint64_t size;             /* virtual size, a multiple of 512 */
    uint32_t l1_size;
    uint64_t *l1;              /* host offsets of L2 tables, 0: none */
    uint64_t *l2;              /* the L2 table being filled, host order */
    int64_t cur_l2;            /* which L1 index l2 belongs to, -1: none yet */
    int64_t last_cluster;      /* the guest cluster written last, -1: none */
    uint64_t last_host;        /* and its host offset */
    uint64_t next_free;        /* end of the file's used clusters */
    bool finished;
    bool failed;               /* a write failed: the file is not an image */
};

static uint64_t
div_round_up(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

static bool
write_at(VsQcow2Writer *w, const void *buf, size_t len, uint64_t offset, const char *what, GError **error)
{
    int err = repo_pwrite_all(w->fd, buf, len, (off_t)offset);

    if (err) {
        w->failed = true;
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "qcow2 writer: %s: writing %s at %" G_GUINT64_FORMAT ": %s",
                    w->name, what, offset, g_strerror(err));
        return false;
    }
    return true;
}

VsQcow2Writer *
vs_qcow2_writer_new(int fd, const char *name, uint64_t virtual_size, GError **error)
{
    g_autoptr(VsQcow2Writer) w = NULL;
    uint64_t size = div_round_up(virtual_size, 512) * 512;
    uint64_t l1_size = MAX(div_round_up(div_round_up(size, CS), L2_ENTRIES), 1);
    struct stat st;

    if (virtual_size > UINT64_MAX - 512 || l1_size * 8 > QCOW2_MAX_L1_BYTES) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED, "qcow2 writer: %s: a virtual size of %" G_GUINT64_FORMAT
                    " bytes is more than qcow2 holds with 64 KiB clusters", name, virtual_size);
        return NULL;
    }
    /* Clusters are appended from the file's start: an old file's bytes would
     * show through where nothing is written. */
    if (fstat(fd, &st) < 0) {
        int err = errno;

        g_set_error(error, VS_ERROR, VS_ERROR_IO, "qcow2 writer: %s: %s", name, g_strerror(err));
        return NULL;
    }
    if (!S_ISREG(st.st_mode) || st.st_size != 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "qcow2 writer: %s: not an empty regular file", name);
        return NULL;
    }
    w = g_new0(VsQcow2Writer, 1);
    w->fd = fd;
    w->name = g_strdup(name);
    w->size = size;
    w->l1_size = (uint32_t)l1_size;
    w->l1 = g_new0(uint64_t, l1_size);
    w->l2 = g_new0(uint64_t, L2_ENTRIES);
    w->cur_l2 = -1;
    w->last_cluster = -1;
    w->next_free = CS;         /* cluster 0: the header */
    return g_steal_pointer(&w);
}

/* Appends the L2 table being filled and points its L1 entry at it. */
static bool
flush_l2(VsQcow2Writer *w, GError **error)
{
    uint64_t at = w->next_free;

    for (guint i = 0; i < L2_ENTRIES; i++)
        w->l2[i] = GUINT64_TO_BE(w->l2[i] ? w->l2[i] | QCOW2_OFLAG_COPIED : 0);
    if (!write_at(w, w->l2, CS, at, "an L2 table", error))
        return false;
    memset(w->l2, 0, CS);
    w->l1[w->cur_l2] = at;
    w->next_free += CS;
    return true;
}

/* The host offset of guest cluster C, appending it when it is new. */
static bool
map_cluster(VsQcow2Writer *w, uint64_t c, uint64_t *host, GError **error)
{
    int64_t l2i = (int64_t)(c / L2_ENTRIES);

    if ((int64_t)c == w->last_cluster) {
        *host = w->last_host;
        return true;
    }
    if (l2i != w->cur_l2) {
        if (w->cur_l2 >= 0 && !flush_l2(w, error))
            return false;
        w->cur_l2 = l2i;
    }
    w->l2[c % L2_ENTRIES] = w->next_free;
    w->last_cluster = (int64_t)c;
    w->last_host = *host = w->next_free;
    w->next_free += CS;
    return true;
}

bool
vs_qcow2_writer_pwrite(VsQcow2Writer *w, const void *buf, size_t len, uint64_t offset, GError **error)
{
    const char *p = buf;

    if (w->finished || w->failed) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "qcow2 writer: %s: write after %s", w->name,
                    w->finished ? "the image was finished" : "a failed write");
        return false;
    }
    if (offset > w->size || len > w->size - offset) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "qcow2 writer: %s: %zu bytes at %" G_GUINT64_FORMAT
                    " go beyond the virtual size %" G_GUINT64_FORMAT, w->name, len, offset, w->size);
        return false;
    }
    if (len > 0 && w->last_cluster >= 0 && (int64_t)(offset / CS) < w->last_cluster) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "qcow2 writer: %s: a write at %" G_GUINT64_FORMAT
                    " comes after one at cluster %" G_GINT64_FORMAT ": writes must ascend", w->name, offset,
                    w->last_cluster);
        return false;
    }
    while (len > 0) {
        uint64_t c = offset / CS, host, run;

        if (!map_cluster(w, c, &host, error))
            return false;
        host += offset % CS;
        run = MIN(len, CS - offset % CS);
        /* The following clusters of the same L2 table are appended right
         * behind this one: one pwrite for the lot. */
        while (run < len && (c + 1) % L2_ENTRIES != 0) {
            uint64_t next;

            if (!map_cluster(w, ++c, &next, error))
                return false;
            g_assert(next == host + run);
            run += MIN(len - run, CS);
        }
        if (!write_at(w, p, run, host, "data", error))
            return false;
        p += run;
        len -= run;
        offset += run;
    }
    return true;
}

static void
put_be32(uint8_t *p, uint32_t v)
{
    v = GUINT32_TO_BE(v);
    memcpy(p, &v, 4);
}

static void
put_be64(uint8_t *p, uint64_t v)
{
    v = GUINT64_TO_BE(v);
    memcpy(p, &v, 8);
}

bool
vs_qcow2_writer_finish(VsQcow2Writer *w, GError **error)
{
    uint64_t l1_at, l1_bytes = (uint64_t)w->l1_size * 8, rb_at, rt_at, total, nblocks = 1, nrt = 1;
    g_autofree uint64_t *l1 = NULL, *rt = NULL;
    g_autofree uint16_t *rb = NULL;
    uint8_t header[QCOW2_HEADER_LENGTH] = { 0 };

    if (w->finished || w->failed) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "qcow2 writer: %s: finish after %s", w->name,
                    w->finished ? "the image was finished" : "a failed write");
        return false;
    }
    if (w->cur_l2 >= 0 && !flush_l2(w, error))
        return false;

    l1_at = w->next_free;
    l1 = g_new0(uint64_t, w->l1_size);
    for (guint i = 0; i < w->l1_size; i++)
        l1[i] = GUINT64_TO_BE(w->l1[i] ? w->l1[i] | QCOW2_OFLAG_COPIED : 0);
    if (!write_at(w, l1, l1_bytes, l1_at, "the L1 table", error))
        return false;
    w->next_free += div_round_up(l1_bytes, CS) * CS;

    /* The refcount blocks and table count themselves: grow them until they
     * cover every cluster including their own. */
    for (;;) {
        uint64_t t = w->next_free / CS + nblocks + nrt;
        uint64_t nb = div_round_up(t, REFCOUNTS_PER_BLOCK), nt = div_round_up(nb * 8, CS);

        if (nb == nblocks && nt == nrt)
            break;
        nblocks = nb;
        nrt = nt;
    }
    total = w->next_free / CS + nblocks + nrt;
    rb_at = w->next_free;
    rt_at = rb_at + nblocks * CS;
    rb = g_new(uint16_t, REFCOUNTS_PER_BLOCK);
    rt = g_new0(uint64_t, nrt * L2_ENTRIES);
    for (uint64_t b = 0; b < nblocks; b++) {
        for (guint i = 0; i < REFCOUNTS_PER_BLOCK; i++)
            rb[i] = GUINT16_TO_BE(b * REFCOUNTS_PER_BLOCK + i < total ? 1 : 0);
        if (!write_at(w, rb, CS, rb_at + b * CS, "a refcount block", error))
            return false;
        rt[b] = GUINT64_TO_BE(rb_at + b * CS);
    }
    if (!write_at(w, rt, nrt * CS, rt_at, "the refcount table", error))
        return false;
    w->next_free = total * CS;

    /* Last: until the magic is there the file is no image at all. */
    put_be32(header + 0, QCOW2_MAGIC);
    put_be32(header + 4, QCOW2_VERSION);
    put_be32(header + 20, VS_QCOW2_CLUSTER_BITS);
    put_be64(header + 24, w->size);
    put_be32(header + 36, w->l1_size);
    put_be64(header + 40, l1_at);
    put_be64(header + 48, rt_at);
    put_be32(header + 56, (uint32_t)nrt);
    put_be32(header + 96, QCOW2_REFCOUNT_ORDER);
    put_be32(header + 100, QCOW2_HEADER_LENGTH);
    /* Followed by zeros: the end-of-extensions marker. */
    if (!write_at(w, header, sizeof(header), 0, "the header", error))
        return false;
    w->finished = true;
    return true;
}

uint64_t
vs_qcow2_writer_file_size(const VsQcow2Writer *w)
{
    return w->next_free;
}

void
vs_qcow2_writer_free(VsQcow2Writer *w)
{
    if (!w)
        return;
    g_free(w->name);
    g_free(w->l1);
    g_free(w->l2);
    g_free(w);
}
