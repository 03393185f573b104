/* The reflink provider: a file disk on XFS (reflink=1) or btrfs snapshotted by
 * FICLONE into a private snapshot directory on the same file system, in
 * milliseconds and sharing every block until either side is written. Rollback
 * clones the snapshot back into the disk's own inode (owner, labels and pool
 * volume stay); a clone is a new file beside the disk. The snapshot directory
 * is reached without following a symlink and snapshots are only ever created
 * or removed inside it, by a checked handle that cannot leave it. The btrfs
 * provider (snapshot-btrfs.c) shares the directory, rollback, clone and expose
 * (snap_fs_*): only where the disk's file is inside a snapshot differs. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "snapshot-internal.h"

#define SNAP_SUBDIR "virtsnap-snapshots"

typedef SnapFsDir Reflink;

/* PATH (relative to DFD, or absolute with AT_FDCWD) opened with FLAGS, no
 * symlink followed on the way; relative: never above DFD. */
static int
open_nosymlinks(int dfd, const char *path, int flags)
{
    struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC),
                           .resolve = RESOLVE_NO_SYMLINKS | (dfd == AT_FDCWD ? 0 : RESOLVE_BENEATH)};

    return (int)syscall(SYS_openat2, dfd, path, &how, sizeof how);
}

/* The one message for a FICLONE that failed: what the user does depends on why. */
void
snap_fs_clone_error(GError **error, const VsSnapLocation *loc, const char *op, const char *dir, int err)
{
    const char *fix = err == EXDEV ? "the snapshot directory is on another file system than the disk: "
                                     "name a directory on the disk's own file system"
                    : err == EOPNOTSUPP || err == ENOTTY || err == EINVAL
                        ? "the file system cannot reflink: the disk must be on XFS made with "
                          "`mkfs.xfs -m reflink=1` or on btrfs, else use a hook for its storage"
                        : "check the file system (space, quota) and try again";

    g_set_error(error, VS_ERROR, snap_errno_code(err), "snapshot: %s: %s: reflink between %s and %s: %s: %s",
                loc->disk, op, loc->path, dir, g_strerror(err), fix);
}

bool
snap_fs_check_loc(const VsSnapLocation *loc, const char *op, GError **error)
{
    if (loc->kind == VS_SNAP_LOC_FILE && loc->path && g_path_is_absolute(loc->path))
        return true;
    g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                "snapshot: %s: %s: reflink and btrfs snapshots need a file disk with an absolute path "
                "(this one is a %s disk): use a hook", loc->disk, op, vs_snap_loc_kind_name(loc->kind));
    return false;
}

/* FICLONE the whole of SRC into DST, then fsync DST: the snapshot is durable
 * before anything relies on it. Returns 0 or an errno. */
int
snap_fs_ficlone(int dst, int src)
{
    if (ioctl(dst, FICLONE, src) < 0 || fsync(dst) < 0)
        return errno;
    return 0;
}

static char *
reflink_create(VsSnapProvider *p, const VsSnapLocation *loc, const char *label, GError **error)
{
    Reflink *r = p->priv;
    int src = -1, dst = -1, err = 0;

    if (!snap_fs_check_loc(loc, "create", error))
        return NULL;
    if ((src = open(loc->path, O_RDONLY | O_CLOEXEC)) < 0)
        err = errno;
    else if ((dst = openat(r->dfd, label, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0)
        err = errno;
    else if ((err = snap_fs_ficlone(dst, src)) != 0 || fsync(r->dfd) < 0) {
        err = err ? err : errno;
        unlinkat(r->dfd, label, 0);
    }
    if (src >= 0)
        close(src);
    if (dst >= 0)
        close(dst);
    if (err && dst >= 0)
        snap_fs_clone_error(error, loc, "create", r->dir, err);
    else if (err)
        g_set_error(error, VS_ERROR, err == EEXIST ? VS_ERROR_INVALID_ARG : snap_errno_code(err),
                    "snapshot: %s: create: %s: %s%s", loc->disk, src < 0 ? loc->path : label, g_strerror(err),
                    err == EEXIST ? ": a snapshot of that label exists already; pick another label" : "");
    return err ? NULL : g_strdup(label);
}

/* Where LOC's bytes are inside the snapshot HANDLE: the file HANDLE, or the
 * disk's file name inside the subvolume snapshot HANDLE. */
static char *
snap_rel(const Reflink *r, const VsSnapLocation *loc, const char *handle)
{
    g_autofree char *base = r->subvol ? g_path_get_basename(loc->path) : NULL;

    return r->subvol ? g_build_filename(handle, base, NULL) : g_strdup(handle);
}

/* LOC's file in the snapshot HANDLE opened read-only; -1 with the error set. */
static int
open_snap(Reflink *r, const VsSnapLocation *loc, const char *op, const char *handle, GError **error)
{
    g_autofree char *rel = snap_rel(r, loc, handle);
    int fd = open_nosymlinks(r->dfd, rel, O_RDONLY | O_NOFOLLOW);
    struct stat st;

    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        return fd;
    g_set_error(error, VS_ERROR, fd < 0 ? snap_errno_code(errno) : VS_ERROR_INVALID_ARG,
                "snapshot: %s: %s: snapshot %s in %s: %s", loc->disk, op, rel, r->dir,
                fd < 0 ? g_strerror(errno) : "not a regular file");
    if (fd >= 0)
        close(fd);
    return -1;
}

bool
snap_fs_rollback(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, GError **error)
{
    Reflink *r = p->priv;
    struct stat sst, dst_st;
    int snap, disk, err = 0;

    if (!snap_fs_check_loc(loc, "rollback", error) || (snap = open_snap(r, loc, "rollback", handle, error)) < 0)
        return false;
    if ((disk = open(loc->path, O_WRONLY | O_CLOEXEC)) < 0 || fstat(snap, &sst) < 0 || fstat(disk, &dst_st) < 0)
        err = errno;
    /* Same size first: FICLONE of a file whose end is not block-aligned wants
     * the destination to end where it does. */
    else if (dst_st.st_size != sst.st_size && ftruncate(disk, sst.st_size) < 0)
        err = errno;
    else
        err = snap_fs_ficlone(disk, snap);
    close(snap);
    if (disk >= 0)
        close(disk);
    if (err && disk < 0)
        g_set_error(error, VS_ERROR, snap_errno_code(err), "snapshot: %s: rollback: %s: %s", loc->disk, loc->path,
                    g_strerror(err));
    else if (err)
        snap_fs_clone_error(error, loc, "rollback (the disk may be half rolled back: run it again)", r->dir, err);
    return err == 0;
}

char *
snap_fs_clone(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, const char *name, GError **error)
{
    Reflink *r = p->priv;
    g_autofree char *dir = NULL;
    int snap, dfd, dst = -1, err = 0;

    if (!snap_fs_check_loc(loc, "clone", error) || (snap = open_snap(r, loc, "clone", handle, error)) < 0)
        return NULL;
    dir = g_path_get_dirname(loc->path);
    if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
        (dst = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0)
        err = errno;
    else if ((err = snap_fs_ficlone(dst, snap)) != 0 || fsync(dfd) < 0) {
        err = err ? err : errno;
        unlinkat(dfd, name, 0);
    }
    close(snap);
    if (dst >= 0)
        close(dst);
    if (dfd >= 0)
        close(dfd);
    if (err && dst >= 0)
        snap_fs_clone_error(error, loc, "clone", r->dir, err);
    else if (err)
        g_set_error(error, VS_ERROR, snap_errno_code(err), "snapshot: %s: clone: %s/%s: %s", loc->disk, dir, name,
                    g_strerror(err));
    return err ? NULL : g_build_filename(dir, name, NULL);
}

char *
snap_fs_expose(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, bool *image_only, GError **error)
{
    Reflink *r = p->priv;
    int fd = open_snap(r, loc, "expose", handle, error);

    if (fd < 0)
        return NULL;
    close(fd);
    *image_only = false;
    g_autofree char *rel = snap_rel(r, loc, handle);
    return g_build_filename(r->dir, rel, NULL);
}

static bool
reflink_delete(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, GError **error)
{
    Reflink *r = p->priv;

    if (unlinkat(r->dfd, handle, 0) == 0)
        return true;
    g_set_error(error, VS_ERROR, snap_errno_code(errno), "snapshot: %s: delete: %s in %s: %s", loc->disk, handle,
                r->dir, g_strerror(errno));
    return false;
}

static bool
reflink_exists(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, bool *exists, GError **error)
{
    Reflink *r = p->priv;
    struct stat st;

    if (fstatat(r->dfd, handle, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        *exists = S_ISREG(st.st_mode);
        return true;
    }
    if (errno == ENOENT)
        return true;
    g_set_error(error, VS_ERROR, VS_ERROR_IO, "snapshot: %s: exists: %s in %s: %s", loc->disk, handle, r->dir,
                g_strerror(errno));
    return false;
}

void
snap_fs_free(VsSnapProvider *p)
{
    Reflink *r = p->priv;

    if (r->dfd >= 0)
        close(r->dfd);
    g_free(r->dir);
    g_free(r);
}

static const VsSnapOps reflink_ops = {
    .name = "reflink",
    .create = reflink_create,
    .delete = reflink_delete,
    .rollback = snap_fs_rollback,
    .clone = snap_fs_clone,
    .expose = snap_fs_expose,
    .exists = reflink_exists,
    .free = snap_fs_free,
};

/* BASE/virtsnap-snapshots, made 0700 if missing (CREATE); refused unless it
 * is a real directory of ours that nobody else may enter. */
static int
open_snapdir(const char *base, bool create, GError **error)
{
    int bfd = g_path_is_absolute(base) ? open_nosymlinks(AT_FDCWD, base, O_RDONLY | O_DIRECTORY) : -1;
    int dfd = -1, err = 0;
    struct stat st;

    if (bfd < 0)
        err = g_path_is_absolute(base) ? errno : EINVAL;
    else if (create && mkdirat(bfd, SNAP_SUBDIR, 0700) < 0 && errno != EEXIST)
        err = errno;
    else if ((dfd = openat(bfd, SNAP_SUBDIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
             fstat(dfd, &st) < 0)
        err = errno;
    else if (st.st_uid != geteuid() || (st.st_mode & 077))
        err = EPERM;
    if (bfd >= 0)
        close(bfd);
    if (!err)
        return dfd;
    if (dfd >= 0)
        close(dfd);
    g_set_error(error, VS_ERROR, err == ENOENT ? VS_ERROR_NOT_FOUND : VS_ERROR_INVALID_ARG,
                "snapshot: reflink directory %s/" SNAP_SUBDIR ": %s", base,
                err == EINVAL  ? "the base directory must be an absolute path"
                : err == ELOOP || err == ENOTDIR ? "a symlink or a non-directory on the way: name a real directory"
                : err == EPERM ? "not a private directory of this user (mode 0700): fix or remove it"
                               : g_strerror(err));
    return -1;
}

VsSnapProvider *
snap_fs_provider_new(const VsSnapOps *ops, const char *base_dir, bool subvol, bool create, GError **error)
{
    int dfd = open_snapdir(base_dir, create, error);
    VsSnapProvider *p;
    Reflink *r;

    if (dfd < 0)
        return NULL;
    r = g_new0(Reflink, 1);
    r->dfd = dfd;
    r->dir = g_build_filename(base_dir, SNAP_SUBDIR, NULL);
    r->subvol = subvol;
    p = g_new0(VsSnapProvider, 1);
    p->ops = ops;
    p->priv = r;
    return p;
}

VsSnapProvider *
vs_snap_reflink_new(const char *base_dir, GError **error)
{
    return snap_fs_provider_new(&reflink_ops, base_dir, false, true, error);
}

VsSnapProvider *
snap_reflink_existing(const char *base_dir, GError **error)
{
    return snap_fs_provider_new(&reflink_ops, base_dir, false, false, error);
}
