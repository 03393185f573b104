/* export: writes one disk of a backup back out as an image, raw or qcow2. The
 * result must be as sparse as the backup (a 100 GiB disk with 2 GiB of data
 * exports as 2 GiB), so nothing is written where the backup has no chunk, nor
 * for the zero 4 KiB blocks inside a chunk; raw relies on ftruncate's hole,
 * qcow2 on QEMU's unallocated clusters. qcow2 is written through qemu-nbd
 * (started by libnbd with socket activation: no socket file, no port) rather
 * than by hand, so that the image is whatever QEMU itself considers valid. Either
 * way the image is built under a temp name next to OUT and renamed only once
 * complete and synced: OUT never exists half-written. */
#include "config.h"
#include "repo-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <libnbd.h>

#define ZERO_BLOCK 4096
#define MAX_WRITE (4u * 1024 * 1024)

typedef struct {
    int fd;                    /* raw */
    struct nbd_handle *nbd;    /* qcow2 */
} Sink;

static bool
sink_write(Sink *s, const char *out, const void *buf, size_t len, uint64_t offset, GError **error)
{
    if (s->nbd) {
        if (nbd_pwrite(s->nbd, buf, len, offset, 0) < 0) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "export: %s: writing at offset %" G_GUINT64_FORMAT
                        ": %s", out, offset, nbd_get_error());
            return false;
        }
    } else {
        int err = repo_pwrite_all(s->fd, buf, len, (off_t)offset);

        if (err) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "export: %s: writing at offset %" G_GUINT64_FORMAT
                        ": %s", out, offset, g_strerror(err));
            return false;
        }
    }
    return true;
}

static bool
write_chunks(VsRepo *repo, const VsManifestDisk *disk, Sink *s, const char *out, GError **error)
{
    for (guint i = 0; i < disk->chunks->len; i++) {
        const VsChunkRef *r = &g_array_index(disk->chunks, VsChunkRef, i);
        g_autofree char *data = NULL;
        size_t len = 0, pos = 0;

        data = vs_repo_get_chunk(repo, &r->digest, &len, error);
        if (!data) {
            vs_error_prefix(error, "export: %s: disk %s at offset %" G_GUINT64_FORMAT, out,
                            disk->target, r->offset);
            return false;
        }
        if (len != r->length) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO,
                        "export: %s: disk %s at offset %" G_GUINT64_FORMAT ": the manifest says %u bytes, "
                        "the chunk holds %zu", out, disk->target, r->offset, r->length, len);
            return false;
        }
        /* Runs of non-zero blocks, each written once. */
        while (pos < len) {
            size_t start, end;

            while (pos < len && vs_buffer_is_zero(data + pos, MIN(ZERO_BLOCK, len - pos)))
                pos += MIN(ZERO_BLOCK, len - pos);
            start = pos;
            while (pos < len && pos - start < MAX_WRITE &&
                   !vs_buffer_is_zero(data + pos, MIN(ZERO_BLOCK, len - pos)))
                pos += MIN(ZERO_BLOCK, len - pos);
            end = pos;
            if (end > start && !sink_write(s, out, data + start, end - start, r->offset + start, error))
                return false;
        }
    }
    return true;
}

static bool
export_raw(VsRepo *repo, const VsManifestDisk *disk, const char *tmp, const char *out, GError **error)
{
    Sink s = { -1, NULL };
    int err = 0;
    bool ok;

    s.fd = open(tmp, O_WRONLY | O_CLOEXEC);
    if (s.fd < 0) {
        err = errno;
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "export: %s: %s", tmp, g_strerror(err));
        return false;
    }
    if (ftruncate(s.fd, (off_t)disk->virtual_size) < 0) {
        err = errno;
        close(s.fd);
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "export: %s: setting the size to %" G_GUINT64_FORMAT ": %s",
                    out, disk->virtual_size, g_strerror(err));
        return false;
    }
    ok = write_chunks(repo, disk, &s, out, error);
    if (ok && fsync(s.fd) < 0)
        err = errno;
    if (close(s.fd) < 0 && ok && !err)
        err = errno;
    if (ok && err) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "export: %s: %s", out, g_strerror(err));
        ok = false;
    }
    return ok;
}

static bool
run_qemu_img_create(const char *qemu_img, const char *tmp, uint64_t size, GError **error)
{
    g_autofree char *size_str = g_strdup_printf("%" G_GUINT64_FORMAT, size);
    const char *argv[] = { qemu_img, "create", "-q", "-f", "qcow2", tmp, size_str, NULL };
    g_autofree char *out = NULL, *err = NULL;
    g_autoptr(GError) serr = NULL;
    int status = 0;

    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err, &status, &serr)) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "export: running %s: %s", qemu_img, serr->message);
        return false;
    }
    if (!g_spawn_check_wait_status(status, NULL)) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "export: qemu-img create %s failed: %s", tmp,
                    g_strstrip(err));
        return false;
    }
    return true;
}

static bool
export_qcow2(VsRepo *repo, const VsManifestDisk *disk, const char *tmp, const char *out, GError **error)
{
    g_autofree char *qemu_img = g_find_program_in_path("qemu-img");
    g_autofree char *qemu_nbd = g_find_program_in_path("qemu-nbd");
    Sink s = { -1, NULL };
    bool ok = false;
    int fd, err;

    if (!qemu_img || !qemu_nbd) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "export: %s: qcow2 needs qemu-img and qemu-nbd, and %s is not in PATH "
                    "(install qemu-utils, or export --format raw)", out, qemu_img ? "qemu-nbd" : "qemu-img");
        return false;
    }
    if (!run_qemu_img_create(qemu_img, tmp, disk->virtual_size, error))
        return false;

    s.nbd = nbd_create();
    if (!s.nbd) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "export: %s: %s", out, nbd_get_error());
        return false;
    }
    {
        /* cache=unsafe: qemu-nbd skips fsync on every flush; we fsync the file
         * once, after qemu-nbd has exited. */
        const char *argv[] = { qemu_nbd, "-f", "qcow2", "--cache=unsafe", "--discard=unmap", tmp, NULL };

        if (nbd_connect_systemd_socket_activation(s.nbd, (char **)argv) < 0) {
            g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "export: %s: starting qemu-nbd: %s", out,
                        nbd_get_error());
            goto out;
        }
    }
    if (!write_chunks(repo, disk, &s, out, error))
        goto out;
    /* The flush makes qemu-nbd write its qcow2 metadata caches to the file. */
    if (nbd_flush(s.nbd, 0) < 0 || nbd_shutdown(s.nbd, 0) < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "export: %s: %s", out, nbd_get_error());
        goto out;
    }
    ok = true;
out:
    /* Waits for qemu-nbd to exit: only then is the file complete. */
    nbd_close(s.nbd);
    if (!ok)
        return false;
    fd = open(tmp, O_RDONLY | O_CLOEXEC);
    err = fd < 0 ? errno : fsync(fd) < 0 ? errno : 0;
    if (fd >= 0)
        close(fd);
    if (err) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "export: %s: syncing: %s", out, g_strerror(err));
        return false;
    }
    return true;
}

bool
vs_repo_export_disk(VsRepo *repo, const VsManifest *m, const char *domain, const char *disk,
                    const char *out, const char *format, GError **error)
{
    const VsManifestDomain *d = vs_manifest_find_domain(m, domain);
    const VsManifestDisk *k = d ? vs_manifest_find_disk(d, disk) : NULL;
    g_autofree char *abs = NULL, *dir = NULL, *base = NULL, *tmp = NULL;
    const char *fmt;
    char rnd[13];
    struct stat st;
    int fd, err;
    bool ok;

    if (!d) {
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND, "export: backup %s has no domain \"%s\"", m->id,
                    domain ? domain : "");
        return false;
    }
    if (!k) {
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND, "export: domain %s in backup %s has no disk \"%s\"",
                    d->name, m->id, disk ? disk : "");
        return false;
    }
    fmt = format ? format : k->format;
    if (g_strcmp0(fmt, "raw") != 0 && g_strcmp0(fmt, "qcow2") != 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "export: format \"%s\"%s is not supported (supported: raw, qcow2)%s", fmt ? fmt : "",
                    format ? "" : " (the disk's own)", format ? "" : "; choose one with --format");
        return false;
    }
    if (!out || !*out) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "export: no output file given");
        return false;
    }
    if (lstat(out, &st) == 0 || errno != ENOENT) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "export: %s exists: remove it or choose another name",
                    out);
        return false;
    }

    /* An absolute temp name: QEMU takes "a:b" for protocol a, but never when
     * the name starts with a slash. */
    abs = g_canonicalize_filename(out, NULL);
    dir = g_path_get_dirname(abs);
    base = g_path_get_basename(abs);
    repo_random_hex(rnd, 12);
    tmp = g_strdup_printf("%s/.%s.virtsnap-%s.tmp", dir, base, rnd);
    /* Claim the temp name (0600: it is a whole guest disk); qemu-img create
     * then reuses the file and keeps its mode. */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        err = errno;
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "export: creating %s: %s", tmp, g_strerror(err));
        return false;
    }
    close(fd);

    if (strcmp(fmt, "raw") == 0)
        ok = export_raw(repo, k, tmp, out, error);
    else
        ok = export_qcow2(repo, k, tmp, out, error);
    if (ok) {
        err = repo_rename_noreplace(tmp, abs);
        if (err == EEXIST) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                        "export: %s exists: remove it or choose another name", out);
            ok = false;
        } else if (err || (err = repo_fsync_dir(dir))) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "export: %s: %s", out, g_strerror(err));
            ok = false;
        }
    }
    if (!ok)
        unlink(tmp);
    return ok;
}
