/* The control plane over libvirt (control.h): each entry one libvirt call, its
 * failure turned into a GError at once, before any other libvirt call (every
 * public one, virDomainGetName included, clears the thread's last error). What
 * only libvirt knows stays here: that its error printing must be silenced and
 * its event loop run before the first connection, that its agent calls need a
 * response timeout set around them, and the one message (a base image's write
 * lock) that has no error code of its own. */
#include "config.h"
#include "control.h"

#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>
#include <stdlib.h>
#include <string.h>

/* The last libvirt error as a GError: NOT_FOUND for the codes that mean "no
 * such object", else LIBVIRT. */
static void
lv_error(GError **error)
{
    const char *msg = virGetLastErrorMessage();
    int code = virGetLastErrorCode();

    g_set_error_literal(error, VS_ERROR,
                        code == VIR_ERR_NO_DOMAIN || code == VIR_ERR_NO_DOMAIN_CHECKPOINT ||
                        code == VIR_ERR_NO_STORAGE_POOL || code == VIR_ERR_NO_STORAGE_VOL
                        ? VS_ERROR_NOT_FOUND : VS_ERROR_LIBVIRT,
                        msg ? msg : "unknown libvirt error");
}

static bool
lv_ok(int r, GError **error)
{
    if (r < 0)
        lv_error(error);
    return r >= 0;
}

static void
silent_error_handler(void *opaque, virErrorPtr err)
{
    (void)opaque;
    (void)err;
}

/* Block-job events (READY before a pivot) need libvirt's event loop running
 * for the whole life of the process; it must be registered before the first
 * connection is opened. */
static gpointer
event_loop(gpointer data)
{
    (void)data;
    for (;;)
        virEventRunDefaultImpl();
    return NULL;
}

static virConnectPtr
lv_conn_open(const char *uri, GError **error)
{
    static gsize initialized;
    virConnectPtr conn;

    if (g_once_init_enter(&initialized)) {
        virSetErrorFunc(NULL, silent_error_handler);
        virEventRegisterDefaultImpl();
        g_thread_unref(g_thread_new("libvirt-events", event_loop, NULL));
        g_once_init_leave(&initialized, 1);
    }
    if (!(conn = virConnectOpen(uri)))
        lv_error(error);
    return conn;
}

static void
lv_conn_close(virConnectPtr conn)
{
    if (conn)
        virConnectClose(conn);
}

static int
lv_conn_alive(virConnectPtr conn)
{
    return virConnectIsAlive(conn);
}

static virDomainPtr
lv_domain_lookup_uuid(virConnectPtr conn, const char *uuid, GError **error)
{
    virDomainPtr dom = virDomainLookupByUUIDString(conn, uuid);

    if (!dom)
        lv_error(error);
    return dom;
}

static void
lv_domain_free(virDomainPtr dom)
{
    if (dom)
        virDomainFree(dom);
}

static const char *
lv_domain_name(virDomainPtr dom)
{
    return virDomainGetName(dom);
}

static void
lv_domain_uuid(virDomainPtr dom, char *buf)
{
    buf[0] = '\0';
    virDomainGetUUIDString(dom, buf);
}

static virConnectPtr
lv_domain_conn(virDomainPtr dom)
{
    return virDomainGetConnect(dom);
}

static int
lv_domain_is_active(virDomainPtr dom)
{
    return virDomainIsActive(dom);
}

static bool
lv_domain_state(virDomainPtr dom, int *state, int *reason, GError **error)
{
    return lv_ok(virDomainGetState(dom, state, reason, 0), error);
}

static char *
lv_domain_xml(virDomainPtr dom, bool inactive, GError **error)
{
    char *xml = virDomainGetXMLDesc(dom, inactive ? VIR_DOMAIN_XML_INACTIVE : 0);

    if (!xml)
        lv_error(error);
    return xml;
}

/* Older daemons lack the call; the bound then rests on the guardian. The
 * default goes back afterwards, as every later agent call would wait that
 * short too. Call both only after the error of the bounded call was read. */
static void
set_timeout(virDomainPtr dom, int timeout_s)
{
    (void)virDomainAgentSetResponseTimeout(dom, timeout_s, 0);
}

static void
reset_timeout(virDomainPtr dom)
{
    (void)virDomainAgentSetResponseTimeout(dom, VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_DEFAULT, 0);
}

static int
lv_fs_freeze(virDomainPtr dom, int timeout_s, GError **error)
{
    int n;

    set_timeout(dom, timeout_s);
    n = virDomainFSFreeze(dom, NULL, 0, 0);
    if (!lv_ok(n, error))
        n = -1;
    reset_timeout(dom);
    return n;
}

static bool
lv_fs_thaw(virDomainPtr dom, int timeout_s, GError **error)
{
    bool ok;

    set_timeout(dom, timeout_s);
    ok = lv_ok(virDomainFSThaw(dom, NULL, 0, 0), error);
    reset_timeout(dom);
    return ok;
}

static char *
lv_agent_command(virDomainPtr dom, const char *command, int timeout_s, GError **error)
{
    char *reply = virDomainQemuAgentCommand(dom, command, timeout_s, 0);
    char *out;

    if (!reply) {
        lv_error(error);
        return NULL;
    }
    /* Allocated by libvirt (malloc): handed on as g_malloc'd. */
    out = g_strdup(reply);
    free(reply);
    return out;
}

static bool
lv_snapshot_create(virDomainPtr dom, const char *xml, unsigned flags, GError **error)
{
    virDomainSnapshotPtr s = virDomainSnapshotCreateXML(dom, xml, flags);

    if (!s) {
        lv_error(error);
        return false;
    }
    virDomainSnapshotFree(s);
    return true;
}

static void
block_job_event(virConnectPtr conn, virDomainPtr dom, const char *disk, int type, int status,
                void *opaque)
{
    VsBlockJobEventFunc *func = opaque;

    (*func)(conn, dom, disk, type, status);
}

static bool
lv_block_job_watch(virConnectPtr conn, VsBlockJobEventFunc func, GError **error)
{
    VsBlockJobEventFunc *f = g_new(VsBlockJobEventFunc, 1);

    *f = func;
    if (virConnectDomainEventRegisterAny(conn, NULL, VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2,
                                         VIR_DOMAIN_EVENT_CALLBACK(block_job_event), f,
                                         g_free) < 0) {
        lv_error(error);
        g_free(f);
        return false;
    }
    return true;
}

static bool
lv_block_commit(virDomainPtr dom, const char *disk, unsigned long bandwidth, unsigned flags,
                GError **error)
{
    const char *msg;

    if (virDomainBlockCommit(dom, disk, NULL, NULL, bandwidth, flags) == 0)
        return true;
    /* QEMU's lock conflict has no error code of its own (VIR_ERR_INTERNAL_ERROR):
     * its words are all there is to tell it from a real failure. */
    msg = virGetLastErrorMessage();
    if (msg && strstr(msg, "Failed to get \"write\" lock"))
        g_set_error_literal(error, VS_ERROR, VS_ERROR_BUSY, msg);
    else
        lv_error(error);
    return false;
}

static bool
lv_block_copy(virDomainPtr dom, const char *disk, const char *dest_xml, unsigned flags,
              GError **error)
{
    return lv_ok(virDomainBlockCopy(dom, disk, dest_xml, NULL, 0, flags), error);
}

static int
lv_block_job_info(virDomainPtr dom, const char *disk, VsBlockJobInfo *info, GError **error)
{
    virDomainBlockJobInfo bi = { 0 };
    int r = virDomainGetBlockJobInfo(dom, disk, &bi, 0);

    if (r < 0) {
        lv_error(error);
        return -1;
    }
    info->type = bi.type;
    info->cur = bi.cur;
    info->end = bi.end;
    return r > 0;
}

static bool
lv_block_job_abort(virDomainPtr dom, const char *disk, bool pivot, GError **error)
{
    return lv_ok(virDomainBlockJobAbort(dom, disk, pivot ? VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT : 0),
                 error);
}

static bool
lv_backup_begin(virDomainPtr dom, const char *backup_xml, const char *checkpoint_xml,
                bool reuse_external, GError **error)
{
    return lv_ok(virDomainBackupBegin(dom, backup_xml, checkpoint_xml,
                                      reuse_external ? VIR_DOMAIN_BACKUP_BEGIN_REUSE_EXTERNAL : 0),
                 error);
}

static bool
lv_job_abort(virDomainPtr dom, GError **error)
{
    return lv_ok(virDomainAbortJob(dom), error);
}

static bool
lv_job_stats(virDomainPtr dom, bool completed, VsJobStats *st, GError **error)
{
    virTypedParameterPtr params = NULL;
    int nparams = 0, type = VIR_DOMAIN_JOB_NONE, op = 0;
    const char *errmsg = NULL;

    memset(st, 0, sizeof *st);
    st->operation = -1;
    if (virDomainGetJobStats(dom, &type, &params, &nparams,
                             completed ? VIR_DOMAIN_JOB_STATS_COMPLETED : 0) < 0) {
        lv_error(error);
        virTypedParamsFree(params, nparams);
        return false;
    }
    st->type = type;
    if (virTypedParamsGetInt(params, nparams, VIR_DOMAIN_JOB_OPERATION, &op) == 1)
        st->operation = op;
    st->has_progress =
        virTypedParamsGetULLong(params, nparams, VIR_DOMAIN_JOB_DATA_PROCESSED, &st->processed) == 1 &&
        virTypedParamsGetULLong(params, nparams, VIR_DOMAIN_JOB_DATA_TOTAL, &st->total) == 1;
    if (virTypedParamsGetString(params, nparams, VIR_DOMAIN_JOB_ERRMSG, &errmsg) == 1)
        st->errmsg = g_strdup(errmsg);
    virTypedParamsFree(params, nparams);
    return true;
}

typedef struct {
    VsJobCompletedFunc func;
    void *opaque;
    GDestroyNotify free;
} JobWatch;

static void
job_watch_free(void *data)
{
    JobWatch *w = data;

    if (w->free)
        w->free(w->opaque);
    g_free(w);
}

static void
job_completed_event(virConnectPtr conn, virDomainPtr dom, virTypedParameterPtr params, int nparams,
                    void *opaque)
{
    JobWatch *w = opaque;

    (void)conn; (void)dom; (void)params; (void)nparams;
    w->func(w->opaque);
}

static int
lv_job_watch(virDomainPtr dom, VsJobCompletedFunc func, void *opaque, GDestroyNotify free_func)
{
    JobWatch *w = g_new(JobWatch, 1);
    int id;

    *w = (JobWatch){ func, opaque, free_func };
    /* libvirt frees W once the callback is deregistered, never while it may
     * still run. */
    id = virConnectDomainEventRegisterAny(virDomainGetConnect(dom), dom,
                                          VIR_DOMAIN_EVENT_ID_JOB_COMPLETED,
                                          VIR_DOMAIN_EVENT_CALLBACK(job_completed_event), w,
                                          job_watch_free);
    if (id < 0)
        job_watch_free(w);
    return id;
}

static void
lv_job_unwatch(virDomainPtr dom, int id)
{
    virConnectDomainEventDeregisterAny(virDomainGetConnect(dom), id);
}

static char **
lv_checkpoint_list(virDomainPtr dom, GError **error)
{
    virDomainCheckpointPtr *list = NULL;
    int n = virDomainListAllCheckpoints(dom, &list, 0);
    GPtrArray *names;

    if (n < 0) {
        lv_error(error);
        return NULL;
    }
    names = g_ptr_array_new();
    for (int i = 0; i < n; i++) {
        const char *name = virDomainCheckpointGetName(list[i]);

        if (name)
            g_ptr_array_add(names, g_strdup(name));
        virDomainCheckpointFree(list[i]);
    }
    free(list);
    g_ptr_array_add(names, NULL);
    return (char **)g_ptr_array_free(names, false);
}

static char *
lv_checkpoint_xml(virDomainPtr dom, const char *name, unsigned flags, GError **error)
{
    virDomainCheckpointPtr cp = virDomainCheckpointLookupByName(dom, name, 0);
    char *xml = cp ? virDomainCheckpointGetXMLDesc(cp, flags) : NULL;
    char *out = NULL;

    if (!xml)
        lv_error(error);
    else
        out = g_strdup(xml);
    free(xml);
    if (cp)
        virDomainCheckpointFree(cp);
    return out;
}

static bool
lv_checkpoint_redefine(virDomainPtr dom, const char *xml, GError **error)
{
    virDomainCheckpointPtr cp = virDomainCheckpointCreateXML(dom, xml,
                                                             VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE);

    if (!cp) {
        lv_error(error);
        return false;
    }
    virDomainCheckpointFree(cp);
    return true;
}

static bool
lv_checkpoint_delete(virDomainPtr dom, const char *name, bool metadata_only, GError **error)
{
    virDomainCheckpointPtr cp = virDomainCheckpointLookupByName(dom, name, 0);
    bool ok;

    if (!cp) {
        lv_error(error);
        return false;
    }
    ok = lv_ok(virDomainCheckpointDelete(cp, metadata_only
                                             ? VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY : 0),
               error);
    virDomainCheckpointFree(cp);
    return ok;
}

static int
lv_domain_is_persistent(virDomainPtr dom)
{
    return virDomainIsPersistent(dom);
}

static bool
lv_domain_resume(virDomainPtr dom, GError **error)
{
    return lv_ok(virDomainResume(dom), error);
}

static bool
lv_domain_suspend(virDomainPtr dom, GError **error)
{
    return lv_ok(virDomainSuspend(dom), error);
}

static bool
lv_domain_destroy(virDomainPtr dom, GError **error)
{
    return lv_ok(virDomainDestroy(dom), error);
}

static bool
lv_block_info(virDomainPtr dom, const char *disk, VsBlockInfo *info, GError **error)
{
    virDomainBlockInfo bi;

    if (virDomainGetBlockInfo(dom, disk, &bi, 0) < 0) {
        lv_error(error);
        return false;
    }
    info->capacity = bi.capacity;
    info->allocation = bi.allocation;
    return true;
}

static char *
lv_conn_uri(virConnectPtr conn)
{
    char *uri = virConnectGetURI(conn);
    char *out = g_strdup(uri);

    free(uri);
    return out;
}

static virDomainPtr *
lv_domain_list(virConnectPtr conn, GError **error)
{
    virDomainPtr *doms = NULL;
    int n = virConnectListAllDomains(conn, &doms, 0);
    virDomainPtr *out;

    if (n < 0) {
        lv_error(error);
        return NULL;
    }
    /* libvirt's array is malloc'd: handed on as a g_malloc'd one. */
    out = g_new0(virDomainPtr, n + 1);
    memcpy(out, doms, n * sizeof *doms);
    free(doms);
    return out;
}

static char *
lv_domain_xml_secure(virDomainPtr dom, GError **error)
{
    char *xml = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
    char *out;

    if (!xml) {
        lv_error(error);
        return NULL;
    }
    out = g_strdup(xml);
    free(xml);
    return out;
}

static char *lv_pool_volume_path(virConnectPtr conn, const char *pool_name, const char *volume,
                                 GError **error);

static char *
lv_volume_path(virDomainPtr dom, const char *pool, const char *volume, GError **error)
{
    return lv_pool_volume_path(virDomainGetConnect(dom), pool, volume, error);
}

static bool
lv_domain_define(virConnectPtr conn, const char *xml, GError **error)
{
    virDomainPtr dom = virDomainDefineXML(conn, xml);

    if (!dom) {
        lv_error(error);
        return false;
    }
    virDomainFree(dom);
    return true;
}

static virStoragePoolPtr
lv_pool(virConnectPtr conn, const char *name, GError **error)
{
    virStoragePoolPtr pool = virStoragePoolLookupByName(conn, name);

    if (!pool)
        lv_error(error);
    return pool;
}

static char *
lv_pool_xml(virConnectPtr conn, const char *name, GError **error)
{
    virStoragePoolPtr pool = lv_pool(conn, name, error);
    char *xml = pool ? virStoragePoolGetXMLDesc(pool, VIR_STORAGE_XML_INACTIVE) : NULL;
    char *out;

    if (pool && !xml)
        lv_error(error);
    if (pool)
        virStoragePoolFree(pool);
    out = g_strdup(xml);
    free(xml);
    return out;
}

static int
lv_pool_is_active(virConnectPtr conn, const char *name, GError **error)
{
    virStoragePoolPtr pool = lv_pool(conn, name, error);
    int active;

    if (!pool)
        return -1;
    if ((active = virStoragePoolIsActive(pool)) < 0)
        lv_error(error);
    virStoragePoolFree(pool);
    return active;
}

static bool
lv_pool_define(virConnectPtr conn, const char *xml, GError **error)
{
    virStoragePoolPtr pool = virStoragePoolDefineXML(conn, xml, 0);

    if (!pool) {
        lv_error(error);
        return false;
    }
    virStoragePoolFree(pool);
    return true;
}

static bool
lv_pool_start(virConnectPtr conn, const char *name, bool build, GError **error)
{
    virStoragePoolPtr pool = lv_pool(conn, name, error);
    bool ok;

    if (!pool)
        return false;
    /* Build (flags 0: a dir, fs or netfs pool's directory, nothing formatted)
     * then start, as CREATE_WITH_BUILD does, which not every driver takes. */
    ok = (!build || lv_ok(virStoragePoolBuild(pool, 0), error)) && lv_ok(virStoragePoolCreate(pool, 0), error);
    virStoragePoolFree(pool);
    return ok;
}

static bool
lv_pool_refresh(virConnectPtr conn, const char *name, GError **error)
{
    virStoragePoolPtr pool = lv_pool(conn, name, error);
    bool ok;

    if (!pool)
        return false;
    ok = lv_ok(virStoragePoolRefresh(pool, 0), error);
    virStoragePoolFree(pool);
    return ok;
}

static char *
lv_pool_volume_path(virConnectPtr conn, const char *pool_name, const char *volume, GError **error)
{
    virStoragePoolPtr pool = lv_pool(conn, pool_name, error);
    virStorageVolPtr vol = pool ? virStorageVolLookupByName(pool, volume) : NULL;
    char *path = vol ? virStorageVolGetPath(vol) : NULL;
    char *out;

    if (pool && !path)
        lv_error(error);
    if (vol)
        virStorageVolFree(vol);
    if (pool)
        virStoragePoolFree(pool);
    out = g_strdup(path);
    free(path);
    return out;
}

const VsControlOps vs_control_libvirt = {
    .conn_open = lv_conn_open,
    .conn_close = lv_conn_close,
    .conn_alive = lv_conn_alive,
    .domain_lookup_uuid = lv_domain_lookup_uuid,
    .domain_free = lv_domain_free,
    .domain_name = lv_domain_name,
    .domain_uuid = lv_domain_uuid,
    .domain_conn = lv_domain_conn,
    .domain_is_active = lv_domain_is_active,
    .domain_state = lv_domain_state,
    .domain_xml = lv_domain_xml,
    .fs_freeze = lv_fs_freeze,
    .fs_thaw = lv_fs_thaw,
    .agent_command = lv_agent_command,
    .snapshot_create = lv_snapshot_create,
    .block_job_watch = lv_block_job_watch,
    .block_commit = lv_block_commit,
    .block_copy = lv_block_copy,
    .block_job_info = lv_block_job_info,
    .block_job_abort = lv_block_job_abort,
    .backup_begin = lv_backup_begin,
    .job_abort = lv_job_abort,
    .job_stats = lv_job_stats,
    .job_watch = lv_job_watch,
    .job_unwatch = lv_job_unwatch,
    .checkpoint_list = lv_checkpoint_list,
    .checkpoint_xml = lv_checkpoint_xml,
    .checkpoint_redefine = lv_checkpoint_redefine,
    .checkpoint_delete = lv_checkpoint_delete,
    /* The backup run's */
    .domain_is_persistent = lv_domain_is_persistent,
    .domain_resume = lv_domain_resume,
    .domain_suspend = lv_domain_suspend,
    .block_info = lv_block_info,
    /* Recover's */
    .conn_uri = lv_conn_uri,
    .domain_list = lv_domain_list,
    .domain_xml_secure = lv_domain_xml_secure,
    .volume_path = lv_volume_path,
    .domain_define = lv_domain_define,
    /* Storage pools: backup-pools.c, restore-pools.c */
    .pool_xml = lv_pool_xml,
    .pool_is_active = lv_pool_is_active,
    .pool_define = lv_pool_define,
    .pool_start = lv_pool_start,
    .pool_refresh = lv_pool_refresh,
    .pool_volume_path = lv_pool_volume_path,
    .domain_destroy = lv_domain_destroy,
};
