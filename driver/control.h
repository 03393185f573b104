/* The control plane: the libvirt operations the backup, commit and recover
 * paths ask of a domain (its XML and state, the guest agent's freeze and thaw,
 * disk-only snapshots, block commit and pivot with their events, backup jobs,
 * checkpoints, the connection's liveness), as one table of functions. The real
 * table over libvirt (control-libvirt.c) is the default; unit tests install
 * the scripted fake of tests/driver/ instead, so that every failure ordering
 * (a thaw refused, a commit that never converges, a connection that dies) is
 * reachable without root, a daemon or a guest. The table is thin on purpose:
 * each entry is one libvirt call (or a lookup and the call), and every
 * decision stays with its caller, where the fake can exercise it. Handles
 * (virConnectPtr, virDomainPtr) are opaque tokens here: only the table looks
 * inside them, so a fake hands out its own. Entries report failure through a
 * GError whose message is the back-end's own words (libvirt's message, no
 * prefix) and whose code says what the caller may act on: VS_ERROR_NOT_FOUND
 * (no such domain or checkpoint), VS_ERROR_BUSY (block_commit: another
 * process still holds the base image's write lock), VS_ERROR_LIBVIRT for the
 * rest; nobody reads libvirt's thread-local last error after a table call. */
#pragma once

#include <glib.h>
#include <libvirt/libvirt.h>
#include <stdbool.h>
#include <stdint.h>
#include "vs-error.h"

G_BEGIN_DECLS

typedef struct {
    int type;                   /* VIR_DOMAIN_BLOCK_JOB_TYPE_* */
    unsigned long long cur, end;
} VsBlockJobInfo;

/* A disk's size as libvirt sees it (virDomainGetBlockInfo), in bytes. */
typedef struct {
    unsigned long long capacity, allocation;
} VsBlockInfo;

typedef struct {
    int type;                   /* VIR_DOMAIN_JOB_* (NONE, UNBOUNDED, COMPLETED, FAILED, ...) */
    int operation;              /* VIR_DOMAIN_JOB_OPERATION_*, -1 when libvirt did not say */
    bool has_progress;          /* processed and total were both given */
    unsigned long long processed, total;
    char *errmsg;               /* the job's own error (completed statistics), or NULL */
} VsJobStats;

void vs_job_stats_clear(VsJobStats *st);

/* A block-job event (VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2): STATUS is a
 * VIR_DOMAIN_BLOCK_JOB_* (COMPLETED, FAILED, CANCELED, READY). Called on the
 * event thread. */
typedef void (*VsBlockJobEventFunc)(virConnectPtr conn, virDomainPtr dom, const char *disk,
                                    int type, int status);
/* A domain's job ended (VIR_DOMAIN_EVENT_ID_JOB_COMPLETED). */
typedef void (*VsJobCompletedFunc)(void *opaque);

typedef struct {
    /* Connections. conn_alive: 1 alive, 0 closed, -1 unknown. */
    virConnectPtr (*conn_open)(const char *uri, GError **error);
    void (*conn_close)(virConnectPtr conn);
    int (*conn_alive)(virConnectPtr conn);

    /* Domains. domain_lookup_uuid fails with VS_ERROR_NOT_FOUND when the
     * connection says there is no such domain; its result goes to
     * domain_free. domain_uuid fills BUF (VIR_UUID_STRING_BUFLEN).
     * domain_is_active: 1, 0, -1 (cannot say). domain_xml: the live or the
     * persistent (INACTIVE) definition, without its secrets. */
    virDomainPtr (*domain_lookup_uuid)(virConnectPtr conn, const char *uuid, GError **error);
    void (*domain_free)(virDomainPtr dom);
    const char *(*domain_name)(virDomainPtr dom);
    void (*domain_uuid)(virDomainPtr dom, char *buf);
    virConnectPtr (*domain_conn)(virDomainPtr dom);
    int (*domain_is_active)(virDomainPtr dom);
    bool (*domain_state)(virDomainPtr dom, int *state, int *reason, GError **error);
    char *(*domain_xml)(virDomainPtr dom, bool inactive, GError **error);

    /* The guest agent. freeze and thaw wait at most TIMEOUT_S (libvirt's own
     * agent calls wait forever otherwise); freeze returns how many file
     * systems it froze, -1 on failure; agent_command sends one JSON command
     * and returns the agent's reply. */
    int (*fs_freeze)(virDomainPtr dom, int timeout_s, GError **error);
    bool (*fs_thaw)(virDomainPtr dom, int timeout_s, GError **error);
    char *(*agent_command)(virDomainPtr dom, const char *command, int timeout_s, GError **error);

    /* A snapshot from domainsnapshot XML (FLAGS: VIR_DOMAIN_SNAPSHOT_CREATE_*). */
    bool (*snapshot_create)(virDomainPtr dom, const char *xml, unsigned flags, GError **error);

    /* Block jobs. block_job_watch makes FUNC hear every block-job event of
     * CONN from now on (once per connection: the caller keeps track).
     * block_commit and block_copy start the job (FLAGS: VIR_DOMAIN_BLOCK_COMMIT_*,
     * VIR_DOMAIN_BLOCK_COPY_*; DEST_XML a <disk>); block_job_info: 1 and *INFO
     * when DISK has a job, 0 when none, -1 with *error; block_job_abort
     * cancels it, or with PIVOT completes a ready mirror onto its new image. */
    bool (*block_job_watch)(virConnectPtr conn, VsBlockJobEventFunc func, GError **error);
    bool (*block_commit)(virDomainPtr dom, const char *disk, unsigned long bandwidth,
                         unsigned flags, GError **error);
    bool (*block_copy)(virDomainPtr dom, const char *disk, const char *dest_xml, unsigned flags,
                       GError **error);
    int (*block_job_info)(virDomainPtr dom, const char *disk, VsBlockJobInfo *info,
                          GError **error);
    bool (*block_job_abort)(virDomainPtr dom, const char *disk, bool pivot, GError **error);

    /* Backup jobs (domain jobs). job_stats fills *ST (the completed job's with
     * COMPLETED); job_watch registers FUNC for the domain's job-completed
     * events and returns an id for job_unwatch, or -1 when events cannot be
     * had (the caller polls): FREE (may be NULL) frees OPAQUE once FUNC can no
     * longer run, also when the registration failed. */
    bool (*backup_begin)(virDomainPtr dom, const char *backup_xml, const char *checkpoint_xml,
                         bool reuse_external, GError **error);
    bool (*job_abort)(virDomainPtr dom, GError **error);
    bool (*job_stats)(virDomainPtr dom, bool completed, VsJobStats *st, GError **error);
    int (*job_watch)(virDomainPtr dom, VsJobCompletedFunc func, void *opaque, GDestroyNotify free);
    void (*job_unwatch)(virDomainPtr dom, int id);

    /* Checkpoints, by name. checkpoint_list: the names (NULL-terminated);
     * checkpoint_xml: its description (FLAGS: VIR_DOMAIN_CHECKPOINT_XML_*),
     * VS_ERROR_NOT_FOUND when there is no such checkpoint (checkpoint_delete
     * too); checkpoint_redefine: from a description libvirt wrote;
     * checkpoint_delete merges its bitmaps into the parent's, or with
     * METADATA_ONLY drops only libvirt's record. */
    char **(*checkpoint_list)(virDomainPtr dom, GError **error);
    char *(*checkpoint_xml)(virDomainPtr dom, const char *name, unsigned flags, GError **error);
    bool (*checkpoint_redefine)(virDomainPtr dom, const char *xml, GError **error);
    bool (*checkpoint_delete)(virDomainPtr dom, const char *name, bool metadata_only,
                              GError **error);

    /* What the backup run asks besides (link.c, backup-plan.c, method-*.c).
     * domain_is_persistent: 1, 0, -1 (cannot say). domain_resume: a paused
     * domain goes on; domain_suspend pauses a running one (quiesce's
     * fallback). block_info: DISK's capacity and allocation. */
    int (*domain_is_persistent)(virDomainPtr dom);
    bool (*domain_resume)(virDomainPtr dom, GError **error);
    bool (*domain_suspend)(virDomainPtr dom, GError **error);
    bool (*block_info)(virDomainPtr dom, const char *disk, VsBlockInfo *info, GError **error);

    /* Recover. conn_uri: the connection's URI (NULL when libvirt cannot
     * say). domain_list: every domain of CONN, NULL-terminated (each to
     * domain_free, the array to g_free). domain_xml_secure: the persistent
     * definition with its secrets, for a domain_define of it (domain_xml
     * leaves them out). domain_define: defines (or redefines) a domain from
     * XML. */
    char *(*conn_uri)(virConnectPtr conn);
    virDomainPtr *(*domain_list)(virConnectPtr conn, GError **error);
    char *(*domain_xml_secure)(virDomainPtr dom, GError **error);
    bool (*domain_define)(virConnectPtr conn, const char *xml, GError **error);

    /* The path of VOLUME in storage pool POOL on DOM's connection: a running
     * domain's XML names a type='volume' disk by pool and volume only. */
    char *(*volume_path)(virDomainPtr dom, const char *pool, const char *volume, GError **error);

    /* Storage pools, by name (backup-pools.c, restore-pools.c). pool_xml: the
     * persistent definition (what a pool-define of it makes again);
     * pool_is_active: 1, 0, -1 with *error; both VS_ERROR_NOT_FOUND when there
     * is no such pool. pool_define: defines one from XML. pool_start starts a
     * defined pool, with BUILD its target made first (a dir pool's directory:
     * the caller says when that is harmless). pool_refresh: its volumes read
     * again (a file made in its directory becomes one). */
    char *(*pool_xml)(virConnectPtr conn, const char *name, GError **error);
    int (*pool_is_active)(virConnectPtr conn, const char *name, GError **error);
    bool (*pool_define)(virConnectPtr conn, const char *xml, GError **error);
    bool (*pool_start)(virConnectPtr conn, const char *name, bool build, GError **error);
    bool (*pool_refresh)(virConnectPtr conn, const char *name, GError **error);
    /* The path (or, in an rbd pool, "pool/image") of VOLUME of POOL;
     * VS_ERROR_NOT_FOUND when either does not exist. */
    char *(*pool_volume_path)(virConnectPtr conn, const char *pool, const char *volume, GError **error);

    /* Recover of a migration (recover-migrate.c): DOM's QEMU killed, the
     * domain's definition (if any) kept. */
    bool (*domain_destroy)(virDomainPtr dom, GError **error);
} VsControlOps;

/* The table over libvirt. */
extern const VsControlOps vs_control_libvirt;

/* The table in use: vs_control_libvirt unless a test installed another. */
const VsControlOps *vs_control(void);
/* Installs OPS for the whole process (NULL: libvirt again); returns the one it
 * replaces. For tests: install before any call, never while calls run. */
const VsControlOps *vs_control_set(const VsControlOps *ops);

/* Sets *ERROR from CAUSE (taken, may be NULL): code CODE, message
 * "PREFIX: <cause's message>", as vs_set_libvirt_error words libvirt's. */
void vs_control_error(GError **error, GError *cause, VsErrorCode code, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);

G_END_DECLS
