/* Which provider `auto` would use for a disk, and if none, why not, asked
 * without touching anything: no snapshot directory is made, no hook run, no
 * cluster contacted, nothing opened for writing. This is what `discover`
 * reports per disk, so it looks further than vs_snap_choose does (which leaves
 * a file system that cannot reflink to fail at the first create): an XFS is
 * asked whether it was made with reflink, any other local file system but
 * btrfs is named as the reason. */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include "snapshot-internal.h"

/* XFS_IOC_FSGEOMETRY_V1 and its reply as xfs_fs.h (xfslibs-dev) declares them:
 * a read-only question every XFS answers; the feature flags are filled in
 * whatever the version asked. */
struct snap_xfs_geom_v1 {
    uint32_t blocksize, rtextsize, agblocks, agcount, logblocks, sectsize, inodesize, imaxpct;
    uint64_t datablocks, rtblocks, rtextents, logstart;
    unsigned char uuid[16];
    uint32_t sunit, swidth;
    int32_t version;
    uint32_t flags, logsectsize, rtsectsize, dirblocksize;
};
G_STATIC_ASSERT(sizeof(struct snap_xfs_geom_v1) == 112);
#define SNAP_XFS_IOC_FSGEOMETRY_V1 _IOR('X', 100, struct snap_xfs_geom_v1)
#define SNAP_XFS_GEOM_FLAGS_REFLINK (1u << 20)

static const char *
fs_name(long magic)
{
    switch (magic) {
    case EXT4_SUPER_MAGIC: return "ext2/3/4";
    case TMPFS_MAGIC: return "tmpfs";
    case NFS_SUPER_MAGIC: return "NFS";
    case OVERLAYFS_SUPER_MAGIC: return "overlayfs";
    default: return NULL;
    }
}

/* Whether the XFS DFD is on was made with reflink; *ASKED false when it could not be asked. */
static bool
xfs_has_reflink(int dfd, bool *asked)
{
    struct snap_xfs_geom_v1 geom = {0};

    *asked = ioctl(dfd, SNAP_XFS_IOC_FSGEOMETRY_V1, &geom) == 0;
    return *asked && (geom.flags & SNAP_XFS_GEOM_FLAGS_REFLINK);
}

/* The snapshot directory BASE as reflink/btrfs would take it, looked at only:
 * NULL if it would do, else why not. DIR_ST: the disk's directory. */
static char *
base_problem(const char *base, const struct stat *dir_st, bool btrfs)
{
    g_autofree char *sub = NULL;
    struct stat st;

    if (!g_path_is_absolute(base))
        return g_strdup_printf("the snapshot directory %s is not an absolute path", base);
    if (lstat(base, &st) < 0)
        return g_strdup_printf("the snapshot directory %s: %s", base, g_strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return g_strdup_printf("the snapshot directory %s is a symlink or not a directory", base);
    /* Every btrfs subvolume has a device number of its own: only btrfs itself can tell. */
    if (!btrfs && st.st_dev != dir_st->st_dev)
        return g_strdup_printf("the snapshot directory %s is on another file system than the disk", base);
    sub = g_build_filename(base, "virtsnap-snapshots", NULL);
    if (lstat(sub, &st) == 0 && (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077)))
        return g_strdup_printf("%s is not a private directory of this user (mode 0700): fix or remove it", sub);
    return NULL;
}

static const char *
which_file(const VsSnapLocation *loc, const char *reflink_base, char **why, bool *needs_hook)
{
    g_autofree char *dir = NULL;
    struct statfs sfs;
    struct stat st;
    bool btrfs, asked = false;
    int dfd;

    if (!loc->path || !g_path_is_absolute(loc->path)) {
        *why = g_strdup("the disk's file has no absolute path");
        return NULL;
    }
    dir = g_path_get_dirname(loc->path);
    if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || fstatfs(dfd, &sfs) < 0 ||
        fstat(dfd, &st) < 0) {
        *why = g_strdup_printf("the disk's directory %s cannot be read (%s)", dir, g_strerror(errno));
        if (dfd >= 0)
            close(dfd);
        return NULL;
    }
    btrfs = sfs.f_type == BTRFS_SUPER_MAGIC;
    if (!btrfs && (sfs.f_type != XFS_SUPER_MAGIC || !xfs_has_reflink(dfd, &asked))) {
        const char *name = fs_name(sfs.f_type);

        *needs_hook = true;
        if (sfs.f_type == XFS_SUPER_MAGIC)
            *why = g_strdup_printf("the disk's XFS (%s) %s (a new one with `mkfs.xfs -m reflink=1` can)", dir,
                                   asked ? "was made without reflink" : "did not say whether it can reflink");
        else
            *why = name ? g_strdup_printf("the disk's file system (%s, %s) cannot reflink (XFS with reflink=1 "
                                          "or btrfs can)", name, dir)
                        : g_strdup_printf("the disk's file system (%s, magic 0x%lx) cannot reflink (XFS with "
                                          "reflink=1 or btrfs can)", dir, (unsigned long)sfs.f_type);
        close(dfd);
        return NULL;
    }
    close(dfd);
    if (!reflink_base) {
        *why = g_strdup("no snapshot directory is named for reflink");
        return NULL;
    }
    if ((*why = base_problem(reflink_base, &st, btrfs)))
        return NULL;
    return btrfs && snap_btrfs_is_subvolume_dir(loc->path) ? "btrfs" : "reflink";
}

const char *
vs_snap_which(const VsSnapLocation *loc, const VsSnapHookConfig *hook, const char *reflink_base, char **why,
              bool *needs_hook)
{
    *why = NULL;
    *needs_hook = false;
    if (hook && hook->path) {
        if (g_path_is_absolute(hook->path) && g_file_test(hook->path, G_FILE_TEST_IS_EXECUTABLE) &&
            !g_file_test(hook->path, G_FILE_TEST_IS_DIR))
            return "hook";
        *why = g_strdup_printf("the hook %s is not an executable file named by an absolute path", hook->path);
        return NULL;
    }
    switch (loc->kind) {
    case VS_SNAP_LOC_FILE:
        return which_file(loc, reflink_base, why, needs_hook);
    case VS_SNAP_LOC_RBD:
        if (!snap_rbd_built()) {
            *needs_hook = true;
            *why = g_strdup("virtsnap was built without librbd (install librbd-dev and rebuild)");
        } else if (!loc->rbd_pool || !loc->rbd_image) {
            *why = g_strdup("the RBD image's pool and name are not known");
        }
        return *why ? NULL : "rbd";
    case VS_SNAP_LOC_NFS:
        *why = g_strdup("a file on an NFS export is snapshotted by its server");
        break;
    case VS_SNAP_LOC_ISCSI:
        *why = g_strdup("an iSCSI LUN is snapshotted by its array");
        break;
    case VS_SNAP_LOC_BLOCK:
    default:
        *why = g_strdup("a block device is snapshotted by the storage behind it");
        break;
    }
    *needs_hook = true;
    return NULL;
}
