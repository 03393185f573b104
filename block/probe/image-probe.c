/* Reads the header of a disk image to learn its format, virtual size and the
 * backing file it names, without QEMU and without reading data: discovery needs
 * the backing chain of shut-off domains, whose XML libvirt does not fill in.
 * Only qcow2 carries a header we must understand; every other file is raw. The
 * parser trusts nothing in the header: every offset and length is bounds-checked
 * against what was actually read. */
#include "config.h"
#include "vs-probe.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define QCOW2_MAGIC 0x514649fbu
#define QCOW2_V2_HEADER_LEN 72
#define QCOW2_EXT_END 0
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
/* Header extensions live in the first cluster; QEMU's default cluster is 64 KiB
 * and nothing we need sits beyond that in practice. */
#define PROBE_LEN 65536
#define BACKING_NAME_MAX 1023   /* QEMU refuses longer names */

static uint32_t be32(const unsigned char *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }
static uint64_t be64(const unsigned char *p) { return (uint64_t)be32(p) << 32 | be32(p + 4); }

void
vs_image_info_free(VsImageInfo *info)
{
    if (!info)
        return;
    g_free(info->format);
    g_free(info->backing_file);
    g_free(info->backing_format);
    g_free(info);
}

static bool
parse_qcow2(const unsigned char *buf, size_t len, VsImageInfo *info, const char *path, GError **error)
{
    uint32_t version = be32(buf + 4);
    uint64_t bf_off = be64(buf + 8);
    uint32_t bf_len = be32(buf + 16);
    size_t ext = QCOW2_V2_HEADER_LEN;

    info->virtual_size = be64(buf + 24);
    if (version != 2 && version != 3) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "probe: %s: qcow2 version %u is not supported (2 or 3 expected)", path, version);
        return false;
    }
    if (version == 3) {
        if (len < 104) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "probe: %s: truncated qcow2 v3 header", path);
            return false;
        }
        ext = be32(buf + 100);
    }
    if (bf_off) {
        if (bf_len == 0 || bf_len > BACKING_NAME_MAX || bf_off > len || bf_len > len - bf_off) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO,
                        "probe: %s: qcow2 header names a backing file outside its first %d bytes "
                        "(offset %" G_GUINT64_FORMAT ", length %u): the image is damaged",
                        path, PROBE_LEN, bf_off, bf_len);
            return false;
        }
        info->backing_file = g_strndup((const char *)buf + bf_off, bf_len);
    }
    /* Extensions: type, length, data padded to 8 bytes, until type 0. */
    while (ext + 8 <= len) {
        uint32_t type = be32(buf + ext), elen = be32(buf + ext + 4);
        if (type == QCOW2_EXT_END || elen > len - ext - 8)
            break;
        if (type == QCOW2_EXT_BACKING_FORMAT && elen > 0 && elen < 64)
            info->backing_format = g_strndup((const char *)buf + ext + 8, elen);
        ext += 8 + ((elen + 7) & ~7u);
    }
    return true;
}

VsImageInfo *
vs_image_probe(const char *path, GError **error)
{
    g_autoptr(VsImageInfo) info = g_new0(VsImageInfo, 1);
    g_autofree unsigned char *buf = g_malloc(PROBE_LEN);
    struct stat st;
    ssize_t got = 0;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        g_set_error(error, VS_ERROR, e == ENOENT ? VS_ERROR_NOT_FOUND : VS_ERROR_IO,
                    "probe: cannot open %s: %s", path, g_strerror(e));
        return NULL;
    }
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "probe: cannot stat %s: %s", path, g_strerror(e));
        return NULL;
    }
    while (got < PROBE_LEN) {
        ssize_t r = pread(fd, buf + got, PROBE_LEN - got, got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "probe: cannot read %s: %s", path, g_strerror(e));
            return NULL;
        }
        if (r == 0)
            break;
        got += r;
    }
    if (S_ISBLK(st.st_mode)) {
        off_t end = lseek(fd, 0, SEEK_END);
        info->virtual_size = end > 0 ? (uint64_t)end : 0;
    } else {
        info->virtual_size = st.st_size;
    }
    close(fd);

    if (got >= QCOW2_V2_HEADER_LEN && be32(buf) == QCOW2_MAGIC) {
        info->format = g_strdup("qcow2");
        if (!parse_qcow2(buf, got, info, path, error))
            return NULL;
    } else {
        info->format = g_strdup("raw");
    }
    return g_steal_pointer(&info);
}

char *
vs_image_resolve_backing(const char *overlay, const char *backing)
{
    g_autofree char *dir = NULL;

    if (g_path_is_absolute(backing) || strstr(backing, "://"))
        return g_strdup(backing);
    dir = g_path_get_dirname(overlay);
    return g_build_filename(dir, backing, NULL);
}
