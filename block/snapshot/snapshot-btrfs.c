/* The btrfs provider: where a pool's directory is a btrfs subvolume, a
 * snapshot is a read-only subvolume snapshot of it in the private snapshot
 * directory (BASE/virtsnap-snapshots/LABEL, on the same file system), atomic
 * for every file in the pool. One snapshot per disk (the label names the
 * disk): cheap on btrfs, and each disk's snapshot lives and dies on its own.
 * Rollback, clone and expose work on the disk's file inside the snapshot,
 * exactly as reflink's do (snapshot-reflink.c). */
#include <errno.h>
#include <fcntl.h>
#include <linux/btrfs.h>
#include <linux/magic.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include "snapshot-internal.h"

/* The inode number of every subvolume's root directory. */
#define BTRFS_SUBVOL_ROOT_INO 256

/* The disk's directory opened, if it is the root of a btrfs subvolume. */
static int
open_subvolume(const VsSnapLocation *loc, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(loc->path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct statfs sfs;
    struct stat st;
    const char *why = NULL;

    if (fd < 0 || fstatfs(fd, &sfs) < 0 || fstat(fd, &st) < 0)
        why = g_strerror(errno);
    else if (sfs.f_type != BTRFS_SUPER_MAGIC)
        why = "not on btrfs: use reflink (XFS) or a hook";
    else if (st.st_ino != BTRFS_SUBVOL_ROOT_INO)
        why = "not a btrfs subvolume: make the pool's directory one (`btrfs subvolume create`), or use reflink";
    if (!why)
        return fd;
    g_set_error(error, VS_ERROR, fd < 0 ? VS_ERROR_NOT_FOUND : VS_ERROR_UNSUPPORTED,
                "snapshot: %s: create: the disk's directory %s: %s", loc->disk, dir, why);
    if (fd >= 0)
        close(fd);
    return -1;
}

bool
snap_btrfs_is_subvolume_dir(const char *path)
{
    g_autofree char *dir = g_path_get_dirname(path);
    struct statfs sfs;
    struct stat st;

    return statfs(dir, &sfs) == 0 && sfs.f_type == BTRFS_SUPER_MAGIC && stat(dir, &st) == 0 &&
           st.st_ino == BTRFS_SUBVOL_ROOT_INO;
}

static char *
btrfs_create(VsSnapProvider *p, const VsSnapLocation *loc, const char *label, GError **error)
{
    SnapFsDir *r = p->priv;
    struct btrfs_ioctl_vol_args_v2 args = {.flags = BTRFS_SUBVOL_RDONLY};
    int fd, err = 0;

    if (!snap_fs_check_loc(loc, "create", error) || (fd = open_subvolume(loc, error)) < 0)
        return NULL;
    args.fd = fd;
    g_strlcpy(args.name, label, sizeof args.name);
    if (ioctl(r->dfd, BTRFS_IOC_SNAP_CREATE_V2, &args) < 0)
        err = errno;
    close(fd);
    if (err == EEXIST)
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "snapshot: %s: create: %s in %s: a snapshot of that label exists already; pick another label",
                    loc->disk, label, r->dir);
    else if (err)
        snap_fs_clone_error(error, loc, "create (subvolume snapshot)", r->dir, err);
    return err ? NULL : g_strdup(label);
}

static bool
btrfs_delete(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, GError **error)
{
    SnapFsDir *r = p->priv;
    struct btrfs_ioctl_vol_args args = {0};
    struct stat st;

    /* Only a subvolume of ours: SNAP_DESTROY on anything else fails anyway,
     * but the message should say what is there. */
    if (fstatat(r->dfd, handle, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        (!S_ISDIR(st.st_mode) || st.st_ino != BTRFS_SUBVOL_ROOT_INO)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "snapshot: %s: delete: %s in %s: not a subvolume snapshot",
                    loc->disk, handle, r->dir);
        return false;
    }
    g_strlcpy(args.name, handle, sizeof args.name);
    if (ioctl(r->dfd, BTRFS_IOC_SNAP_DESTROY, &args) == 0)
        return true;
    g_set_error(error, VS_ERROR, snap_errno_code(errno), "snapshot: %s: delete: %s in %s: %s", loc->disk, handle,
                r->dir, g_strerror(errno));
    return false;
}

static bool
btrfs_exists(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, bool *exists, GError **error)
{
    SnapFsDir *r = p->priv;
    struct stat st;

    if (fstatat(r->dfd, handle, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        *exists = S_ISDIR(st.st_mode) && st.st_ino == BTRFS_SUBVOL_ROOT_INO;
        return true;
    }
    if (errno == ENOENT)
        return true;
    g_set_error(error, VS_ERROR, VS_ERROR_IO, "snapshot: %s: exists: %s in %s: %s", loc->disk, handle, r->dir,
                g_strerror(errno));
    return false;
}

static const VsSnapOps btrfs_ops = {
    .name = "btrfs",
    .create = btrfs_create,
    .delete = btrfs_delete,
    .rollback = snap_fs_rollback,
    .clone = snap_fs_clone,
    .expose = snap_fs_expose,
    .exists = btrfs_exists,
    .free = snap_fs_free,
};

VsSnapProvider *
vs_snap_btrfs_new(const char *base_dir, GError **error)
{
    return snap_fs_provider_new(&btrfs_ops, base_dir, true, true, error);
}

VsSnapProvider *
snap_btrfs_existing(const char *base_dir, GError **error)
{
    return snap_fs_provider_new(&btrfs_ops, base_dir, true, false, error);
}
