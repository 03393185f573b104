/* Garbage collection: deletes the chunks no manifest names any more (after
 * vs_repo_delete) and temp files that crashed writers left behind (a running
 * writer's pending chunks are temp files too, until its next flush; it holds
 * the lock shared, so gc never runs under it). Deleting is
 * the one irreversible thing the repository does, so gc is careful in three
 * ways: it runs only under the exclusive repository lock, which no backup holds
 * while gc runs (writers hold it shared from their first chunk to their commit);
 * it deletes nothing if any manifest cannot be read, since it could not know
 * what that manifest needs; and it touches only files whose names are chunk
 * names in the right fan-out directory, and temp files older than an hour or
 * whose maker, a process of this host, is gone. */
#include "config.h"
#include "repo-internal.h"
#include "vs-temp.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TMP_MAX_AGE_S 3600

static int
cmp_digest(gconstpointer a, gconstpointer b)
{
    return memcmp(a, b, sizeof(VsDigest));
}

/* The sorted, distinct digests every manifest references. */
static GArray *
mark(VsRepo *repo, GError **error)
{
    g_auto(GStrv) ids = repo_list_ids(repo, error);
    g_autoptr(GArray) refs = g_array_new(FALSE, FALSE, sizeof(VsDigest));
    guint out = 0;

    if (!ids)
        return NULL;
    for (guint b = 0; ids[b]; b++) {
        g_autoptr(VsManifest) m = repo_load_manifest_exact(repo, ids[b], error);

        if (!m) {
            vs_error_prefix(error, "repo: %s: gc: backup %s cannot be read, so nothing was deleted", repo->path,
                            ids[b]);
            return NULL;
        }
        for (guint i = 0; i < m->domains->len; i++) {
            VsManifestDomain *d = g_ptr_array_index(m->domains, i);

            for (guint k = 0; k < d->disks->len; k++) {
                VsManifestDisk *disk = g_ptr_array_index(d->disks, k);

                for (guint j = 0; j < disk->chunks->len; j++)
                    g_array_append_val(refs, g_array_index(disk->chunks, VsChunkRef, j).digest);
            }
        }
    }
    g_array_sort(refs, cmp_digest);
    for (guint i = 0; i < refs->len; i++)
        if (out == 0 || cmp_digest(&g_array_index(refs, VsDigest, out - 1), &g_array_index(refs, VsDigest, i)))
            g_array_index(refs, VsDigest, out++) = g_array_index(refs, VsDigest, i);
    g_array_set_size(refs, out);
    return g_steal_pointer(&refs);
}

static bool
sweep_dir(VsRepo *repo, unsigned idx, GArray *refs, uint64_t *removed, uint64_t *freed, GError **error)
{
    g_autofree char *dir = g_strdup_printf("%s/%02x", repo->chunks_dir, idx);
    char prefix[3];
    DIR *d = opendir(dir);
    struct dirent *de;
    int err = 0;

    if (!d) {
        if (errno == ENOENT)
            return true;
        err = errno;
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s: gc: %s: %s", repo->path, dir, g_strerror(err));
        return false;
    }
    g_snprintf(prefix, sizeof(prefix), "%02x", idx);
    while ((errno = 0, de = readdir(d))) {
        VsDigest digest;
        struct stat st;

        /* Anything that is not a chunk name in its own fan-out directory is
         * not ours to judge. */
        if (!vs_digest_from_hex(de->d_name, &digest) || strncmp(de->d_name, prefix, 2) != 0)
            continue;
        if (bsearch(&digest, refs->data, refs->len, sizeof(VsDigest), cmp_digest))
            continue;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) < 0) {
            if (errno == ENOENT)
                continue;
            err = errno;
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s: gc: deleting %s/%s: %s", repo->path, dir,
                        de->d_name, g_strerror(err));
            break;
        }
        (*removed)++;
        *freed += (uint64_t)st.st_size;
    }
    if (!err && errno) {
        err = errno;
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s: gc: reading %s: %s", repo->path, dir, g_strerror(err));
    }
    closedir(d);
    return err == 0;
}

/* A repository temp file (KIND-PID-RANDOM@HOST.tmp, repo.c) whose maker, a
 * process of this host, is gone: nothing will ever finish it. */
static bool
tmp_maker_gone(const char *name)
{
    const char *dash = strchr(name, '-'), *at = strrchr(name, '@');
    g_autofree char *host = NULL;
    char *end;
    long pid;

    if (!dash || !at || at < dash || !g_str_has_suffix(at, ".tmp"))
        return false;
    pid = strtol(dash + 1, &end, 10);
    if (end == dash + 1 || *end != '-' || pid <= 0 || pid > G_MAXINT)
        return false;
    host = g_strndup(at + 1, strlen(at + 1) - strlen(".tmp"));
    return vs_temp_maker_gone((int)pid, host);
}

static bool
sweep_tmp(VsRepo *repo, GError **error)
{
    DIR *d = opendir(repo->tmp_dir);
    time_t cutoff = time(NULL) - TMP_MAX_AGE_S;
    struct dirent *de;
    int err = 0;

    if (!d)
        return errno == ENOENT;
    while ((de = readdir(d))) {
        struct stat st;

        /* An hour old, or its maker gone: gc holds the lock exclusively, but a
         * backup of another host (a shared repository) may not see that lock. */
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
            (st.st_mtime >= cutoff && !tmp_maker_gone(de->d_name)))
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT) {
            err = errno;
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s: gc: deleting %s/%s: %s", repo->path,
                        repo->tmp_dir, de->d_name, g_strerror(err));
            break;
        }
    }
    closedir(d);
    return err == 0;
}

bool
vs_repo_gc(VsRepo *repo, uint64_t *chunks_removed, uint64_t *bytes_freed, GError **error)
{
    g_autoptr(GArray) refs = NULL;
    uint64_t removed = 0, freed = 0;
    bool ok = true;
    int fd;

    if (chunks_removed)
        *chunks_removed = 0;
    if (bytes_freed)
        *bytes_freed = 0;
    if (!repo->writable) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "repo: %s was opened read-only", repo->path);
        return false;
    }
    /* A lock file of its own, not repo->lock_fd: this process's own shared
     * lock (a backup in progress) must keep gc out just like anyone else's. */
    fd = repo_open_lock_file(repo, error);
    if (fd < 0)
        return false;
    while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int err = errno;

        if (err == EINTR)
            continue;
        close(fd);
        if (err == EWOULDBLOCK)
            g_set_error(error, VS_ERROR, VS_ERROR_BUSY,
                        "repo: %s: a backup is running (lock held); run gc later", repo->path);
        else
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s: locking: %s", repo->path, g_strerror(err));
        return false;
    }

    refs = mark(repo, error);
    if (!refs)
        ok = false;
    for (unsigned i = 0; ok && i < 256; i++)
        ok = sweep_dir(repo, i, refs, &removed, &freed, error);
    if (ok)
        ok = sweep_tmp(repo, error);
    close(fd);
    if (chunks_removed)
        *chunks_removed = removed;
    if (bytes_freed)
        *bytes_freed = freed;
    return ok;
}
