/* Active block commit with a safe pivot. QEMU may only pivot once the mirror is
 * in sync, which libvirt announces with the READY block-job event; polling the
 * job's progress instead races ("block copy still active: not ready for pivot
 * yet"). So every connection that commits gets one event callback feeding a
 * table of job states, and commits wait on it with a bound. A commit that does
 * not converge in time is cancelled: the guest keeps running on its overlay,
 * which is consistent, and the journal still names the overlay for recover;
 * the guest is never left half-pivoted. */
#include "config.h"
#include "driver-internal.h"
#include "blockjob-events.h"
#include "control.h"
#include "vs-xml.h"

#include <string.h>

/* How long a commit waits for another reader's lock on the base to go away. */
#define LOCK_WAIT_S 15

/* Whether the block job on DISK can no longer end as we wait for it (*error
 * says how): the connection closed, the domain stopped, or the job vanished. */
static bool
job_lost(virDomainPtr dom, const char *disk, const char *name, const char *op, GError **error)
{
    const VsControlOps *c = vs_control();
    VsBlockJobInfo info;
    int r = c->block_job_info(dom, disk, &info, NULL);

    if (c->conn_alive(c->domain_conn(dom)) != 1) {
        g_set_error(error, VS_ERROR, VS_ERROR_CONNECTION, "%s: domain '%s' disk %s: the connection "
                    "to libvirtd closed while the %s ran (libvirtd restarted or stopped)", op, name,
                    disk, op);
        return true;
    }
    if (c->domain_is_active(dom) == 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_STOPPED, "%s: domain '%s' stopped while the %s of "
                    "disk %s ran", op, name, op, disk);
        return true;
    }
    if (r == 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_LIBVIRT, "%s: domain '%s' disk %s: the %s job "
                    "disappeared", op, name, disk, op);
        return true;
    }
    return false;
}

/* Waits until the job reaches READY (true) or ends / times out (false). */
static bool
wait_ready(virDomainPtr dom, const char *disk, const char *key, int timeout_ms, const char *op,
           GError **error)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    const char *name = vs_control()->domain_name(dom);

    for (;;) {
        int st = vs_block_event_status(key, VS_BLOCK_JOB_ANY_TYPE);

        if (st == VIR_DOMAIN_BLOCK_JOB_READY)
            return true;
        if (st == VIR_DOMAIN_BLOCK_JOB_FAILED || st == VIR_DOMAIN_BLOCK_JOB_CANCELED ||
            st == VIR_DOMAIN_BLOCK_JOB_COMPLETED) {
            g_set_error(error, VS_ERROR, VS_ERROR_LIBVIRT,
                        "%s: domain '%s' disk %s: the %s job %s before it was ready to pivot",
                        op, name, disk, op, st == VIR_DOMAIN_BLOCK_JOB_FAILED ? "failed" :
                        st == VIR_DOMAIN_BLOCK_JOB_CANCELED ? "was cancelled" : "ended");
            return false;
        }
        if (g_get_monotonic_time() >= deadline) {
            g_set_error(error, VS_ERROR, VS_ERROR_TIMEOUT,
                        "%s: domain '%s' disk %s did not converge within %.1f s (the guest "
                        "writes faster than the %s copies)", op, name, disk, timeout_ms / 1000.0, op);
            return false;
        }
        st = vs_block_event_wait(key, VS_BLOCK_JOB_ANY_TYPE, st,
                                 MIN(deadline, g_get_monotonic_time() + G_USEC_PER_SEC));
        /* No event comes from a daemon that restarted or a QEMU that died: a
         * look each second keeps such a wait from lasting until the deadline. */
        if (st < 0) {
            if (job_lost(dom, disk, name, op, error) &&
                vs_block_event_status(key, VS_BLOCK_JOB_ANY_TYPE) < 0)
                return false;
            g_clear_error(error);
        }
    }
}

/* A commit left running by a virtsnap killed before its pivot: its READY event
 * is gone with that process, so cancel it (the guest stays on the overlay, which
 * holds everything) and let the caller start one whose events it sees. Any other
 * kind of job on the disk belongs to someone else: say so. */
static bool
cancel_leftover_commit(virDomainPtr dom, const char *disk, const char *name, const char *key,
                       GError **error)
{
    const VsControlOps *c = vs_control();
    VsBlockJobInfo info;
    GError *cause = NULL;
    int r = c->block_job_info(dom, disk, &info, &cause);
    gint64 until;

    if (r < 0) {
        vs_control_error(error, cause, c->conn_alive(c->domain_conn(dom)) == 1 ?
                         VS_ERROR_LIBVIRT : VS_ERROR_CONNECTION,
                         "commit: domain '%s' disk %s: its block jobs", name, disk);
        return false;
    }
    if (r == 0)
        return true;
    if (info.type != VIR_DOMAIN_BLOCK_JOB_TYPE_ACTIVE_COMMIT &&
        info.type != VIR_DOMAIN_BLOCK_JOB_TYPE_COMMIT) {
        g_set_error(error, VS_ERROR, VS_ERROR_LIBVIRT,
                    "commit: domain '%s' disk %s has another block job running (type %d): wait for "
                    "it or end it (virsh blockjob %s %s --abort), then run this again", name, disk,
                    info.type, name, disk);
        return false;
    }
    if (!c->block_job_abort(dom, disk, false, &cause) &&
        c->block_job_info(dom, disk, &info, NULL) > 0) {
        vs_control_error(error, cause, VS_ERROR_LIBVIRT, "commit: domain '%s' disk %s: cancelling "
                         "the commit an interrupted run left", name, disk);
        return false;
    }
    g_clear_error(&cause);
    for (int i = 0; i < 300 && c->block_job_info(dom, disk, &info, NULL) > 0; i++)
        g_usleep(100 * 1000);
    if (c->block_job_info(dom, disk, &info, NULL) > 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_TIMEOUT,
                    "commit: domain '%s' disk %s: the commit an interrupted run left did not end "
                    "within 30 s of its cancel", name, disk);
        return false;
    }
    /* Its CANCELED event comes through libvirt's event thread, possibly after
     * the job is gone from the job info: wait for it (briefly), so that it is
     * not taken for the end of the commit started next. */
    until = g_get_monotonic_time() + 3 * G_USEC_PER_SEC;
    for (;;) {
        int st = vs_block_event_status(key, VS_BLOCK_JOB_ANY_TYPE);
        if (st == VIR_DOMAIN_BLOCK_JOB_CANCELED || st == VIR_DOMAIN_BLOCK_JOB_COMPLETED ||
            st == VIR_DOMAIN_BLOCK_JOB_FAILED || g_get_monotonic_time() >= until)
            break;
        (void)vs_block_event_wait(key, VS_BLOCK_JOB_ANY_TYPE, st, until);
    }
    return true;
}

/* The mirror job OP ("commit", "copy") of DISK runs: waits for READY (TIMEOUT_MS)
 * and pivots. If either fails, the job is cancelled, so the guest stays on the
 * image it ran on, and the error names PIVOT ("pivot", "pivot to DEST"). What the
 * table holds for KEY is dropped either way. */
static bool
pivot_when_ready(virDomainPtr dom, const char *name, const char *disk, const char *key,
                 int timeout_ms, const char *op, const char *pivot, GError **error)
{
    const VsControlOps *c = vs_control();
    GError *cause = NULL;
    bool ok = false;

    if (!wait_ready(dom, disk, key, timeout_ms, op, error)) {
        (void)c->block_job_abort(dom, disk, false, NULL);
    } else if (!c->block_job_abort(dom, disk, true, &cause)) {
        vs_control_error(error, cause, VS_ERROR_LIBVIRT, "%s: domain '%s' disk %s: %s", op, name,
                         disk, pivot);
        (void)c->block_job_abort(dom, disk, false, NULL);
    } else {
        ok = true;
    }
    vs_block_event_forget(key);
    return ok;
}

bool
vs_blockcommit_pivot(virConnectPtr conn, virDomainPtr dom, const char *disk, int timeout_s,
                     GError **error)
{
    return vs_blockcommit_pivot_limited(conn, dom, disk, timeout_s * 1000, 0, error);
}

bool
vs_blockcommit_pivot_limited(virConnectPtr conn, virDomainPtr dom, const char *disk, int timeout_ms,
                             unsigned long bandwidth, GError **error)
{
    const VsControlOps *c = vs_control();
    g_autofree char *key = vs_block_event_key(dom, disk);
    const char *name = c->domain_name(dom);
    GError *cause = NULL;

    if (!vs_block_events_watch(conn, "commit", error))
        return false;
    vs_block_event_forget(key);
    if (!cancel_leftover_commit(dom, disk, name, key, error))
        return false;
    vs_block_event_forget(key);
    /* SHALLOW: into the image right below the overlay, never deeper down a chain
     * the domain had before the backup. */
    for (gint64 until = g_get_monotonic_time() + LOCK_WAIT_S * G_USEC_PER_SEC;;) {
        if (c->block_commit(dom, disk, bandwidth,
                            VIR_DOMAIN_BLOCK_COMMIT_ACTIVE | VIR_DOMAIN_BLOCK_COMMIT_SHALLOW |
                            (bandwidth ? VIR_DOMAIN_BLOCK_COMMIT_BANDWIDTH_BYTES : 0), &cause))
            break;
        /* The qemu-nbd reader of a backup killed a moment ago holds the base's
         * lock until it notices its client is gone: wait for it, briefly. */
        if (!g_error_matches(cause, VS_ERROR, VS_ERROR_BUSY) || g_get_monotonic_time() > until) {
            vs_control_error(error, cause, VS_ERROR_LIBVIRT, "commit: domain '%s' disk %s", name,
                             disk);
            return false;
        }
        g_clear_error(&cause);
        g_usleep(200 * 1000);
    }
    vs_fault_point("commit-started");
    /* On failure the guest stays on the overlay, consistent; recover retries. */
    return pivot_when_ready(dom, name, disk, key, timeout_ms, "commit", "pivot", error);
}

bool
vs_blockcopy_pivot(virConnectPtr conn, virDomainPtr dom, const char *disk, const char *dest,
                   const char *format, GError **error)
{
    g_autofree char *key = vs_block_event_key(dom, disk);
    g_autofree char *qdest = g_markup_escape_text(dest, -1);
    g_autofree char *qfmt = g_markup_escape_text(format, -1);
    g_autofree char *xml = g_strdup_printf("<disk type='file'><source file='%s'/><driver type='%s'/></disk>",
                                           qdest, qfmt);
    const VsControlOps *c = vs_control();
    const char *name = c->domain_name(dom);
    g_autofree char *pivot = g_strdup_printf("pivot to %s", dest);
    GError *cause = NULL;

    if (!vs_block_events_watch(conn, "commit", error))
        return false;
    vs_block_event_forget(key);
    /* REUSE_EXT: DEST is made by the caller (sparse, its owner and mode);
     * TRANSIENT_JOB: what lets libvirt copy a persistent domain's disk; its
     * pivot rewrites the persistent definition too. */
    if (!c->block_copy(dom, disk, xml,
                       VIR_DOMAIN_BLOCK_COPY_REUSE_EXT | VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB, &cause)) {
        vs_control_error(error, cause, VS_ERROR_LIBVIRT, "copy: domain '%s' disk %s to %s", name,
                         disk, dest);
        return false;
    }
    /* No bound but the job's own end: a big disk copies for as long as it takes. */
    return pivot_when_ready(dom, name, disk, key, G_MAXINT, "copy", pivot, error);
}

char *
vs_domain_disk_source(virDomainPtr dom, const char *disk, bool inactive, GError **error)
{
    const VsControlOps *c = vs_control();
    const char *name = c->domain_name(dom);
    GError *cause = NULL;
    g_autofree char *xml = c->domain_xml(dom, inactive, &cause);
    g_autoptr(VsDomainDef) def = NULL;
    VsDiskDef *d;

    if (!xml) {
        vs_control_error(error, cause, VS_ERROR_LIBVIRT, "domain '%s': cannot read its XML", name);
        return NULL;
    }
    if (!(def = vs_domain_def_parse_string(xml, name, error)))
        return NULL;
    if (!(d = vs_domain_def_find_disk(def, disk)) || !d->src) {
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND, "domain '%s' has no disk %s", name, disk);
        return NULL;
    }
    /* A volume disk's live XML names its pool and volume, not its path. */
    if (!d->src->path && d->src->pool && d->src->volume) {
        char *path = c->volume_path(dom, d->src->pool, d->src->volume, &cause);
        if (!path)
            vs_control_error(error, cause, VS_ERROR_LIBVIRT, "domain '%s' disk %s: volume %s of pool %s",
                             name, disk, d->src->volume, d->src->pool);
        return path;
    }
    return g_strdup(d->src->path);
}
