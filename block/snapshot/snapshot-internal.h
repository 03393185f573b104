/* What the storage snapshot providers (snapshot-*.c) share and nothing else
 * needs: a safe rendering of bytes that came from outside (a hook's output, a
 * handle from a repository) for messages, errno as error codes, the hook
 * runner, and the file-system code reflink and btrfs have in common. */
#pragma once

#include "vs-snapshot.h"

/* S cut at MAX bytes (with "..." if cut) and escaped (control characters,
 * quotes, backslashes, bytes >= 0x80 as C escapes): safe in one message line. */
char *snap_escape(const char *s, size_t max);

/* The errno of a failed call as a GError code: ENOENT NOT_FOUND,
 * EOPNOTSUPP/EXDEV/ENOTTY/EINVAL UNSUPPORTED, anything else IO. */
int snap_errno_code(int err);

/* One run of a hook executable (snapshot-hook-run.c): ARGV with exactly ENVP,
 * stdin /dev/null, in a process group of its own that is killed whole when
 * TIMEOUT_MS passes. Spawning failures are errors; how the hook ended is in
 * the result. */
typedef struct {
    bool timed_out;     /* killed at the timeout (status then meaningless) */
    int status;         /* waitpid status */
    GString *out;       /* stdout, at most SNAP_HOOK_OUT_MAX bytes */
    bool out_overflow;  /* it printed more than that */
    GString *err;       /* the start of stderr, at most SNAP_HOOK_ERR_MAX bytes */
} SnapHookRun;
#define SNAP_HOOK_OUT_MAX (64 * 1024)
#define SNAP_HOOK_ERR_MAX 4096
bool snap_hook_run(char **argv, char **envp, unsigned timeout_ms, SnapHookRun *run, GError **error);
void snap_hook_run_clear(SnapHookRun *run);

/* The file-system providers (reflink, btrfs) share snapshot-reflink.c: a
 * private snapshot directory BASE/virtsnap-snapshots, and rollback, clone and
 * expose by FICLONE of the disk's file as it is in the snapshot (the file
 * HANDLE, or in a subvolume snapshot HANDLE/BASENAME when SUBVOL). */
typedef struct {
    char *dir;      /* BASE/virtsnap-snapshots */
    int dfd;
    bool subvol;
} SnapFsDir;
VsSnapProvider *snap_fs_provider_new(const VsSnapOps *ops, const char *base_dir, bool subvol, bool create,
                                     GError **error);
/* The same providers over a snapshot directory that must exist already
 * (VS_ERROR_NOT_FOUND otherwise): for snapshots a repository recorded, whose
 * BASE_DIR is the repository's word, so nothing is created there. */
VsSnapProvider *snap_reflink_existing(const char *base_dir, GError **error);
VsSnapProvider *snap_btrfs_existing(const char *base_dir, GError **error);
bool snap_fs_check_loc(const VsSnapLocation *loc, const char *op, GError **error);
int snap_fs_ficlone(int dst, int src);
void snap_fs_clone_error(GError **error, const VsSnapLocation *loc, const char *op, const char *dir, int err);
bool snap_fs_rollback(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, GError **error);
char *snap_fs_clone(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, const char *name,
                    GError **error);
char *snap_fs_expose(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, bool *image_only,
                     GError **error);
void snap_fs_free(VsSnapProvider *p);

/* Whether PATH's directory is the root of a btrfs subvolume (snapshot-btrfs.c). */
bool snap_btrfs_is_subvolume_dir(const char *path);

/* Whether this build has the rbd provider (librbd): snapshot-rbd.c or snapshot-rbd-none.c. */
bool snap_rbd_built(void);
