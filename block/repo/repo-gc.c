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

/* Every digest any manifest references, marked into a set as each manifest is
 * read: memory grows with the distinct chunks, not with the references (a
 * year of daily backups of one disk references most chunks 365 times). */
static RepoDigestSet *
mark(VsRepo *repo, GError **error)
{
    g_auto(GStrv) ids = repo_list_ids(repo, error);
    g_autoptr(RepoDigestSet) refs = repo_digest_set_new();

    if (!ids)
        return NULL;
    for (guint b = 0; ids[b]; b++) {
        g_autoptr(VsManifest) m = repo_load_manifest_exact(repo, ids[b], error);

        if (!m) {
            vs_error_prefix(error, "repo: %s: gc: backup %s cannot be read, so nothing was deleted", repo->path,
                            ids[b]);
            return NULL;
        }
        repo_digest_set_add_manifest(refs, m);
        /* Read whole anyway: the summary list reads instead, for a backup
         * committed before summaries (or whose summary was lost). */
        repo_summary_repair(repo, m);
    }
    return g_steal_pointer(&refs);
}

/* FD's directory as a stream that gc walks and deletes from by descriptor. */
static DIR *
walk_open(VsRepo *repo, int fd, const char *shown, GError **error)
{
    DIR *d = fdopendir(fd);
    int err;

    if (!d) {
        err = errno;
        close(fd);
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s: gc: %s: %s", repo->path, shown, g_strerror(err));
    }
    return d;
}

static bool
sweep_dir(VsRepo *repo, unsigned idx, const RepoDigestSet *refs, uint64_t *removed, uint64_t *freed, GError **error)
{
    g_autofree char *dir = g_strdup_printf("%s/%02x", repo->chunks_dir, idx);
    char prefix[3];
    DIR *d;
    struct dirent *de;
    int fd, err = 0;

    g_snprintf(prefix, sizeof(prefix), "%02x", idx);
    if (!repo_open_dir(repo, "chunks", prefix, &fd, error))
        return false;
    if (fd < 0)
        return true;
    if (!(d = walk_open(repo, fd, dir, error)))
        return false;
    while ((errno = 0, de = readdir(d))) {
        VsDigest digest;
        struct stat st;

        /* Anything that is not a chunk name in its own fan-out directory is
         * not ours to judge. */
        if (!vs_digest_from_hex(de->d_name, &digest) || strncmp(de->d_name, prefix, 2) != 0)
            continue;
        if (repo_digest_set_find(refs, &digest, NULL))
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
    time_t cutoff = time(NULL) - TMP_MAX_AGE_S;
    struct dirent *de;
    DIR *d;
    int fd, err = 0;

    if (!repo_open_dir(repo, "tmp", NULL, &fd, error))
        return false;
    if (fd < 0)
        return true;
    if (!(d = walk_open(repo, fd, repo->tmp_dir, error)))
        return false;
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
    g_autoptr(RepoDigestSet) refs = NULL;
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
