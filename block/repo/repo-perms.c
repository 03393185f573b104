/* Who may read a repository. Backups hold whole guest disks, so everything
 * virtsnap creates in a repository is its owner's alone (directories 0700,
 * files 0600), or, in a repository made with `init --group NAME`, its owner's
 * and that group's (0750/0640, chowned to the group), and never anything for
 * "other". Each mode is set explicitly on the new entry (fchmod after the
 * create), so neither the umask nor the mode of a directory that already
 * existed (a mount point) decides it. Opening a repository looks at the
 * entries that decide whether anyone else can reach the data (the directory,
 * what is directly in it and the chunk fan-out directories: a few hundred
 * stats, not a walk of every chunk) and notices one open to others;
 * vs_repo_fix_permissions walks everything, without ever following a symlink
 * or changing what one points to. The group of a shared repository is kept in
 * its marker (docs/repository-format.md), so every later writer uses it. */
#include "config.h"
#include "repo-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* vs_repo_fix_permissions goes no deeper: the layout is three levels deep. */
#define FIX_MAX_DEPTH 16

static VsRepoNoticeFunc notice_func;

void
vs_repo_set_notice_func(VsRepoNoticeFunc func)
{
    notice_func = func;
}

void
repo_notice(VsRepoNotice kind, const char *repo, const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    if (!notice_func)
        return;
    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    notice_func(kind, repo, msg);
}

RepoPerms
repo_perms(gid_t gid)
{
    RepoPerms p = { 0700, 0600, gid };

    if (gid != (gid_t)-1) {
        p.dir_mode = 0750;
        p.file_mode = 0640;
    }
    return p;
}

/* Bits that must not be set: anything for "other", and for the group too
 * unless the repository is shared with one (then only its write bit). */
static mode_t
excess_bits(const RepoPerms *perms)
{
    return perms->gid == (gid_t)-1 ? 077 : 027;
}

int
repo_perms_apply_fd(int fd, bool dir, const RepoPerms *perms)
{
    /* The group first: chown may clear mode bits, and chmod is what counts. */
    if (perms->gid != (gid_t)-1 && fchown(fd, (uid_t)-1, perms->gid) < 0)
        return errno;
    if (fchmod(fd, dir ? perms->dir_mode : perms->file_mode) < 0)
        return errno;
    return 0;
}

int
repo_perms_apply_dir(const char *dir, bool follow, const RepoPerms *perms, mode_t *was)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW));
    struct stat st;
    int err = 0;

    if (fd < 0)
        return errno;
    if (fstat(fd, &st) < 0)
        err = errno;
    else if ((st.st_mode & 07777) != perms->dir_mode ||
             (perms->gid != (gid_t)-1 && st.st_gid != perms->gid))
        err = repo_perms_apply_fd(fd, true, perms);
    if (!err && was)
        *was = st.st_mode & 07777;
    close(fd);
    return err;
}

int
repo_mkdir(const char *dir, const RepoPerms *perms)
{
    if (mkdir(dir, 0700) < 0)
        return errno == EEXIST ? 0 : errno;
    return repo_perms_apply_dir(dir, false, perms, NULL);
}

bool
repo_group_gid(const char *group, gid_t *gid, GError **error)
{
    struct group gr, *found = NULL;
    long max = sysconf(_SC_GETGR_R_SIZE_MAX);
    g_autofree char *buf = NULL;
    size_t len = max > 0 ? (size_t)max : 16384;
    int err;

    for (;;) {
        buf = g_realloc(buf, len);
        err = getgrnam_r(group, &gr, buf, len, &found);
        if (err != ERANGE || len >= 1024 * 1024)
            break;
        len *= 2;
    }
    if (!found) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "repo: no group \"%s\" on this host%s%s: give one that exists (getent group)", group,
                    err ? ": " : "", err ? g_strerror(err) : "");
        return false;
    }
    *gid = gr.gr_gid;
    return true;
}

/* Writes DATA as FINAL in DIR, whole and durably, replacing what was there
 * (a reader sees the old file or the new one): temp file in REPO/tmp with
 * PERMS, rename, fsync of DIR. 0 or an errno. */
static int
replace_file(VsRepo *repo, const RepoPerms *perms, const char *dir, const char *final, const void *data,
             size_t len)
{
    g_autofree char *tmp = NULL;
    int err = repo_write_temp(perms, repo->tmp_dir, "file", data, len, &tmp);

    if (!err && rename(tmp, final) < 0) {
        err = errno;
        unlink(tmp);
    }
    return err ? err : repo_fsync_dir(dir);
}

bool
repo_set_group(VsRepo *repo, const char *group, gid_t gid, GError **error)
{
    RepoPerms perms = repo_perms(gid);
    g_autofree char *marker = g_build_filename(repo->path, REPO_MARKER, NULL);
    g_autofree char *json = repo_marker_json(repo->chunk_size, repo->created, group, gid);
    /* From the new marker on, every writer gives new entries to the group. */
    int err = replace_file(repo, &perms, repo->path, marker, json, strlen(json));

    if (err) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s: recording group %s: %s", marker, group,
                    g_strerror(err));
        return false;
    }
    g_free(repo->group);
    repo->group = g_strdup(group);
    repo->perms = perms;
    return true;
}

const char *
vs_repo_group(const VsRepo *repo)
{
    return repo->group;
}

/* ------------------------------------------------------------------------- */
/* The check on open                                                         */

typedef struct {
    mode_t excess;
    unsigned open;             /* entries with excess bits */
    char *first;               /* the first of them */
    mode_t first_mode;
} PermScan;

static void
scan_one(PermScan *s, const char *path, const struct stat *st)
{
    if (S_ISLNK(st->st_mode) || !(st->st_mode & s->excess))
        return;
    if (!s->open++) {
        s->first = g_strdup(path);
        s->first_mode = st->st_mode & 07777;
    }
}

/* Scans what is directly in DIR (DFD); descends (once) into the entries
 * named in DESCEND. */
static void
scan_dir(PermScan *s, int dfd, const char *dir, const char *const *descend)
{
    DIR *d;
    struct dirent *e;
    int fd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);

    if (fd < 0 || !(d = fdopendir(fd))) {
        if (fd >= 0)
            close(fd);
        return;
    }
    while ((e = readdir(d))) {
        g_autofree char *path = NULL;
        struct stat st;

        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        /* A file that went meanwhile (a temp file renamed) is not a problem. */
        if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        path = g_build_filename(dir, e->d_name, NULL);
        scan_one(s, path, &st);
        if (S_ISDIR(st.st_mode) && descend && g_strv_contains(descend, e->d_name)) {
            int sub = openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

            if (sub >= 0) {
                scan_dir(s, sub, path, NULL);
                close(sub);
            }
        }
    }
    closedir(d);
}

void
vs_repo_check_permissions(VsRepo *repo)
{
    /* Whether anyone else can reach a chunk or a manifest is decided on the
     * way down to it: these directories, and the files beside them. */
    static const char *const descend[] = { "chunks", "checkpoints", NULL };
    PermScan s = { excess_bits(&repo->perms), 0, NULL, 0 };
    int fd = open(repo->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat st;

    if (fd < 0)
        return;
    if (fstat(fd, &st) == 0)
        scan_one(&s, repo->path, &st);
    scan_dir(&s, fd, repo->path, descend);
    close(fd);
    if (s.open) {
        g_autofree char *more = s.open > 1 ? g_strdup_printf(", and %u more entr%s", s.open - 1,
                                                             s.open > 2 ? "ies" : "y") : NULL;

        repo_notice(VS_REPO_NOTICE_OPEN, repo->path,
                    "repo: %s is open to other users (%s has mode %04o%s): backups hold whole guest disks",
                    repo->path, s.first, (unsigned)s.first_mode, more ? more : "");
    }
    g_free(s.first);
}

/* ------------------------------------------------------------------------- */
/* Fixing                                                                    */

typedef struct {
    const RepoPerms *perms;
    uint64_t fixed;
    GError **error;
} FixWalk;

static bool
needs_fix(const FixWalk *w, const struct stat *st, bool dir)
{
    return (st->st_mode & 07777) != (dir ? w->perms->dir_mode : w->perms->file_mode) ||
           (w->perms->gid != (gid_t)-1 && st->st_gid != w->perms->gid);
}

/* The regular file NAME in DFD, by name but never through a symlink:
 * fchownat and fchmodat with AT_SYMLINK_NOFOLLOW change the entry itself, and
 * refuse (EOPNOTSUPP) when it was swapped for a symlink since it was looked at. */
static bool
fix_file(FixWalk *w, int dfd, const char *name, const char *path)
{
    int err = 0;

    if (w->perms->gid != (gid_t)-1 && fchownat(dfd, name, (uid_t)-1, w->perms->gid, AT_SYMLINK_NOFOLLOW) < 0)
        err = errno;
    if (!err && fchmodat(dfd, name, w->perms->file_mode, AT_SYMLINK_NOFOLLOW) < 0)
        err = errno;
    if (err == ENOENT || err == EOPNOTSUPP)
        return true;
    if (err) {
        g_set_error(w->error, VS_ERROR, VS_ERROR_IO, "repo: %s: setting its mode: %s", path, g_strerror(err));
        return false;
    }
    w->fixed++;
    return true;
}

static bool
fix_dir(FixWalk *w, int dfd, const char *path, unsigned depth)
{
    struct stat st;
    DIR *d;
    struct dirent *e;
    int fd, err = 0;
    bool ok = true;

    if (fstat(dfd, &st) < 0)
        err = errno;
    else if (needs_fix(w, &st, true) && !(err = repo_perms_apply_fd(dfd, true, w->perms)))
        w->fixed++;
    if (err) {
        g_set_error(w->error, VS_ERROR, VS_ERROR_IO, "repo: %s: setting its mode: %s", path, g_strerror(err));
        return false;
    }
    if (depth >= FIX_MAX_DEPTH) {
        g_set_error(w->error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "repo: %s: directories nested more than %d deep are no repository's; remove them",
                    path, FIX_MAX_DEPTH);
        return false;
    }
    fd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0 || !(d = fdopendir(fd))) {
        err = errno;
        if (fd >= 0)
            close(fd);
        g_set_error(w->error, VS_ERROR, VS_ERROR_IO, "repo: %s: %s", path, g_strerror(err));
        return false;
    }
    while (ok && (errno = 0, e = readdir(d))) {
        g_autofree char *sub = NULL;

        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        sub = g_build_filename(path, e->d_name, NULL);
        if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            err = errno;
            if (err == ENOENT)
                continue;
            g_set_error(w->error, VS_ERROR, VS_ERROR_IO, "repo: %s: %s", sub, g_strerror(err));
            ok = false;
        } else if (S_ISDIR(st.st_mode)) {
            int sfd = openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

            /* Gone, or swapped for something else (ELOOP, ENOTDIR), since. */
            if (sfd < 0 && (errno == ENOENT || errno == ELOOP || errno == ENOTDIR))
                continue;
            if (sfd < 0) {
                err = errno;
                g_set_error(w->error, VS_ERROR, VS_ERROR_IO, "repo: %s: %s", sub, g_strerror(err));
                ok = false;
            } else {
                ok = fix_dir(w, sfd, sub, depth + 1);
                close(sfd);
            }
        } else if (S_ISREG(st.st_mode) && needs_fix(w, &st, false)) {
            ok = fix_file(w, dfd, e->d_name, sub);
        }
        /* Symlinks are neither followed nor changed; FIFOs, sockets and
         * devices are no file of virtsnap's and are left as they are. */
    }
    if (ok && errno) {
        err = errno;
        g_set_error(w->error, VS_ERROR, VS_ERROR_IO, "repo: %s: reading the directory: %s", path,
                    g_strerror(err));
        ok = false;
    }
    closedir(d);
    return ok;
}

bool
vs_repo_fix_permissions(VsRepo *repo, uint64_t *fixed, GError **error)
{
    FixWalk w = { &repo->perms, 0, error };
    int fd = open(repo->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    bool ok;

    *fixed = 0;
    if (fd < 0) {
        int err = errno;

        g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s: %s", repo->path, g_strerror(err));
        return false;
    }
    ok = fix_dir(&w, fd, repo->path, 0);
    close(fd);
    *fixed = w.fixed;
    return ok;
}

/* ------------------------------------------------------------------------- */
/* Other files in the repository                                             */

/* Each directory on the way is opened from the one before without following a
 * symlink, and made (with the repository's mode) when absent: what is written
 * lands inside the repository even if someone swapped a directory of it for a
 * symlink after the layout check. The rename replaces a symlink at the final
 * name itself, never its target. */
bool
vs_repo_write_file(VsRepo *repo, const char *relpath, const void *data, size_t len, GError **error)
{
    g_auto(GStrv) parts = g_strsplit(relpath, "/", -1);
    guint n = g_strv_length(parts);
    g_autofree char *tmp = NULL;
    const char *failed = relpath;
    int dfd, err = 0;

    if (!repo->writable) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "repo: %s was opened read-only", repo->path);
        return false;
    }
    for (guint i = 0; i < MAX(n, 1); i++)
        if (!parts[i] || !*parts[i] || !strcmp(parts[i], ".") || !strcmp(parts[i], "..")) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "repo: %s: \"%s\" is not a path in it",
                        repo->path, relpath);
            return false;
        }
    if ((dfd = open(repo->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        err = errno;
    for (guint i = 0; i + 1 < n && !err; i++) {
        bool made = mkdirat(dfd, parts[i], 0700) == 0;
        int sub;

        if (!made && errno != EEXIST) {
            err = errno;
            failed = parts[i];
            break;
        }
        sub = openat(dfd, parts[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0 || (made && (err = repo_perms_apply_fd(sub, true, &repo->perms)))) {
            if (sub < 0)
                err = errno == ELOOP || errno == ENOTDIR ? REPO_ERR_NOT_REGULAR : errno;
            else
                close(sub);
            failed = parts[i];
            break;
        }
        close(dfd);
        dfd = sub;
    }
    if (!err && !(err = repo_write_temp(&repo->perms, repo->tmp_dir, "file", data, len, &tmp))) {
        if (renameat(AT_FDCWD, tmp, dfd, parts[n - 1]) < 0) {
            err = errno;
            unlink(tmp);
        } else if (fsync(dfd) < 0) {
            err = errno;
        }
    }
    if (dfd >= 0)
        close(dfd);
    if (err) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: writing %s in %s: %s%s%s", relpath, repo->path,
                    failed != relpath ? failed : "", failed != relpath ? ": " : "",
                    err == REPO_ERR_NOT_REGULAR ? "not a real directory" : repo_strerror(err));
        return false;
    }
    return true;
}
