/* What the pull and push methods share (method-job.c): a libvirt backup job
 * (virDomainBackupBegin inside the frozen window) over the domain's disks,
 * creating this backup's checkpoint, with files of ours for it; pull reads
 * its NBD exports while it runs (method-pull.c), push waits until QEMU has
 * written the disks into our files and reads those (method-push.c). */
#pragma once

#include "backup-internal.h"

typedef struct {
    bool push;               /* a push-mode job (QEMU writes the disks into our files) */
    uint64_t push_need_full; /* bytes a full push job of every disk would write */
    bool reuse_scratch;      /* scratch images made before the freeze: the job reuses them */
    bool job_started;
    bool job_aborted;        /* the abort was accepted; the teardown may still run */
    char *checkpoint;        /* the one this backup creates */
    char **other_targets;    /* disks left out of the job and the checkpoint */
    char *sock_dir;          /* pull: holds the NBD socket (QEMU's DAC owner) */
    char *scratch_dir;       /* the job's files: pull, scratch images; push, its targets */
    char *backup_xml, *checkpoint_xml;   /* what the job was begun with */
    /* A remote hypervisor's pull job (run->remote): its NBD server listens on
     * TCP there, and its scratch files are libvirt's own, there too. */
    char *nbd_host;
    guint nbd_port;
} JobPriv;

#define JOB(j) ((JobPriv *)(j)->priv)

/* The hooks pull and push share (see BackupMethod). job_plan makes the
 * priv, the checkpoint's name, the files' names, and chooses the base; the
 * caller then checks the room. */
void job_plan(Run *run, DomJob *j, const VsDomainDef *def, bool push);
void job_prepare(Run *run, DomJob *j);
void job_point_in_time(Run *run, DomJob *j);
void job_recheck(Run *run, DomJob *j);
bool job_settle(Run *run, DomJob *j);
bool job_finish(Run *run, DomJob *j);
void job_after_manifest(Run *run, DomJob *j, VsBackupResult *result, VsBackupDomainResult *dr);
void job_describe(const DomJob *j, VsBackupDomainResult *dr);
void job_priv_free(void *priv);

/* The hooks of a BackupMethod that are the job's, whatever its mode. */
#define JOB_METHOD_HOOKS \
    .prepare = job_prepare, \
    .point_in_time = job_point_in_time, \
    .recheck = job_recheck, \
    .settle = job_settle, \
    .finish = job_finish, \
    .after_manifest = job_after_manifest, \
    .describe = job_describe, \
    .free_priv = job_priv_free

/* Why disk D is read whole when it has no base to count from. */
const char *read_whole(const DiskJob *d);

/* method-push.c: whether the push job writes only D's changes. */
bool push_incremental(DomJob *j, DiskJob *d);
