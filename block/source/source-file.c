/* The file source: a raw image file or a block device read with pread. Which
 * ranges hold data comes from lseek(SEEK_DATA/SEEK_HOLE), so the holes of a
 * sparse file are reported as zero extents and never read. A file that shrinks
 * while it is read is an error, never silently zeros: SEEK_DATA past the end of
 * a file looks exactly like a trailing hole, so the size is checked again each
 * time extents are asked for, and a short read is reported as such. Opened
 * writable it is a sink: zeros become punched holes (never written blocks), so a
 * restored sparse disk stays sparse, and a regular file can be given its size. */
#include "config.h"
#include "source-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bounds one extents call so that a file fragmented into millions of pieces
 * costs bounded memory; the engine asks again from where the list ends. */
#define MAX_EXTENTS_PER_CALL 1024

typedef struct {
    int fd;
    bool regular;
    uint64_t size;
} FileSource;

static const VsSourceOps file_ops;

static uint64_t
file_size(VsSource *src)
{
    return ((FileSource *)src->priv)->size;
}

static bool
file_check_size(VsSource *src, GError **error)
{
    FileSource *fs = src->priv;
    struct stat st;

    if (!fs->regular)
        return true;
    if (fstat(fs->fd, &st) < 0) {
        int e = errno;
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "file: %s: stat: %s", src->description,
                    g_strerror(e));
        return false;
    }
    if ((uint64_t)st.st_size < fs->size) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO,
                    "file: %s: the file shrank from %" G_GUINT64_FORMAT " to %" G_GUINT64_FORMAT
                    " bytes while it was being read", src->description, fs->size,
                    (uint64_t)st.st_size);
        return false;
    }
    return true;
}

static bool
file_extents(VsSource *src, uint64_t offset, uint64_t length, GArray *out, GError **error)
{
    FileSource *fs = src->priv;
    uint64_t end = offset + length, pos = offset;

    if (!file_check_size(src, error))
        return false;
    for (unsigned n = 0; pos < end && n < MAX_EXTENTS_PER_CALL; n++) {
        off_t data = lseek(fs->fd, (off_t)pos, SEEK_DATA), hole;

        if (data < 0) {
            int e = errno;
            if (e == ENXIO) {           /* no data from POS to the end: a trailing hole */
                vs_extent_add(out, pos, end - pos, true);
                return true;
            }
            if (e == EINVAL || e == EOPNOTSUPP) {   /* no hole support: all data */
                vs_extent_add(out, pos, end - pos, false);
                return true;
            }
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "file: %s: seek to data at %" G_GUINT64_FORMAT
                        ": %s", src->description, pos, g_strerror(e));
            return false;
        }
        if ((uint64_t)data >= end) {
            vs_extent_add(out, pos, end - pos, true);
            return true;
        }
        vs_extent_add(out, pos, (uint64_t)data - pos, true);
        hole = lseek(fs->fd, data, SEEK_HOLE);
        if (hole < 0) {
            int e = errno;
            /* ENXIO here: the file was cut between the two seeks. */
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "file: %s: seek to hole at %" G_GINT64_FORMAT
                        ": %s", src->description, (gint64)data, g_strerror(e));
            return false;
        }
        vs_extent_add(out, (uint64_t)data, MIN((uint64_t)hole, end) - (uint64_t)data, false);
        pos = (uint64_t)hole;
    }
    return true;
}

/* The whole of LEN bytes, or an error: a short read means the file shrank,
 * a write that makes no progress that the disk is full. */
static bool
file_io(VsSource *src, bool write, char *p, size_t len, uint64_t offset, GError **error)
{
    FileSource *fs = src->priv;

    while (len > 0) {
        ssize_t n = write ? pwrite(fs->fd, p, len, (off_t)offset)
                          : pread(fs->fd, p, len, (off_t)offset);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || (n == 0 && write)) {
            int e = n < 0 ? errno : ENOSPC;
            g_set_error(error, VS_ERROR, VS_ERROR_IO, write ? "file: pwrite: %s: at offset %"
                        G_GUINT64_FORMAT ": %s" : "file: %s: read at offset %" G_GUINT64_FORMAT
                        ": %s", src->description, offset, g_strerror(e));
            return false;
        }
        if (n == 0) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO,
                        "file: %s: unexpected end of file at offset %" G_GUINT64_FORMAT
                        " (the file shrank while it was being read?)", src->description, offset);
            return false;
        }
        p += n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    return true;
}

static bool
file_pread(VsSource *src, void *buf, size_t len, uint64_t offset, GError **error)
{
    return file_io(src, false, buf, len, offset, error);
}

static bool
file_pwrite(VsSource *src, const void *buf, size_t len, uint64_t offset, GError **error)
{
    /* file_io only reads from the buffer of a write. */
    return file_io(src, true, (char *)buf, len, offset, error);
}

static bool
file_zero(VsSource *src, size_t len, uint64_t offset, GError **error)
{
    FileSource *fs = src->priv;
    int e;

    /* A hole in a file, deallocated blocks on a device (a loop device passes it
     * on to its file); both read back as zeros. */
    if (fallocate(fs->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset,
                  (off_t)len) == 0)
        return true;
    e = errno;
    if (e != EOPNOTSUPP && e != ENOSYS && e != EINVAL) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "file: zero: %s: at offset %" G_GUINT64_FORMAT
                    ": %s", src->description, offset, g_strerror(e));
        return false;
    }
    /* No hole punching here: write the zeros after all. */
    return vs_source_write_zeros(src, len, offset, error);
}

static bool
file_flush(VsSource *src, GError **error)
{
    FileSource *fs = src->priv;

    if (fsync(fs->fd) < 0) {
        int e = errno;
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "file: flush: %s: %s", src->description,
                    g_strerror(e));
        return false;
    }
    return true;
}

static bool
file_truncate(VsSource *src, uint64_t size, GError **error)
{
    FileSource *fs = src->priv;

    if (!fs->regular) {
        if (size == fs->size)
            return true;
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "file: truncate: %s: a block device of %" G_GUINT64_FORMAT
                    " bytes cannot be resized to %" G_GUINT64_FORMAT, src->description, fs->size,
                    size);
        return false;
    }
    if (ftruncate(fs->fd, (off_t)size) < 0) {
        int e = errno;
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "file: truncate: %s: to %" G_GUINT64_FORMAT
                    " bytes: %s", src->description, size, g_strerror(e));
        return false;
    }
    fs->size = size;
    return true;
}

static VsSource *
file_open_fd(const char *path, const char *description, bool writable, GError **error)
{
    int fd = open(path, (writable ? O_RDWR | O_CREAT : O_RDONLY) | O_CLOEXEC | O_NOCTTY, 0600);
    struct stat st;
    FileSource *fs;

    if (fd < 0) {
        int e = errno;
        g_set_error(error, VS_ERROR, e == ENOENT ? VS_ERROR_NOT_FOUND : VS_ERROR_IO,
                    "file: %s: open: %s", description, g_strerror(e));
        return NULL;
    }
    if (fstat(fd, &st) < 0) {
        int e = errno;
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "file: %s: stat: %s", description, g_strerror(e));
        close(fd);
        return NULL;
    }
    fs = g_new0(FileSource, 1);
    fs->fd = fd;
    if (S_ISREG(st.st_mode)) {
        fs->regular = true;
        fs->size = (uint64_t)st.st_size;
    } else if (S_ISBLK(st.st_mode)) {
        uint64_t size = 0;
        if (ioctl(fd, BLKGETSIZE64, &size) < 0) {
            int e = errno;
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "file: %s: size of block device: %s",
                        description, g_strerror(e));
            close(fd);
            g_free(fs);
            return NULL;
        }
        fs->size = size;
    } else {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "file: %s: not a regular file or a block device", description);
        close(fd);
        g_free(fs);
        return NULL;
    }
    /* Doubles the kernel's readahead window: the engine reads front to back. */
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    VsSource *src = vs_source_new(&file_ops, description, fs);
    src->writable = writable;
    return src;
}

static VsSource *
file_clone(VsSource *src, GError **error)
{
    FileSource *fs = src->priv;
    /* Through /proc rather than the path: the same inode even if the path has
     * been renamed or replaced since, with its own file offset and readahead. */
    g_autofree char *self = g_strdup_printf("/proc/self/fd/%d", fs->fd);
    VsSource *clone = file_open_fd(g_file_test(self, G_FILE_TEST_EXISTS) ? self : src->description,
                                   src->description, src->writable, error);

    if (clone)
        ((FileSource *)clone->priv)->size = fs->size;
    return clone;
}

static void
file_close(VsSource *src)
{
    FileSource *fs = src->priv;

    if (!fs)
        return;
    close(fs->fd);
    g_free(fs);
    src->priv = NULL;
}

static const VsSourceOps file_ops = {
    .name = "file",
    .size = file_size,
    .extents = file_extents,
    .pread = file_pread,
    .clone = file_clone,
    .close = file_close,
    .pwrite = file_pwrite,
    .zero = file_zero,
    .flush = file_flush,
    .truncate = file_truncate,
};

VsSource *
vs_source_open_file(const char *path, GError **error)
{
    return file_open_fd(path, path, false, error);
}

VsSource *
vs_source_open_file_rw(const char *path, uint64_t size, GError **error)
{
    g_autoptr(VsSource) src = file_open_fd(path, path, true, error);

    if (!src)
        return NULL;
    if (size && !file_truncate(src, size, error))
        return NULL;
    return g_steal_pointer(&src);
}
