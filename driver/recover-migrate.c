/* `virtsnap recover` of a migration a killed virtsnap left (recover-migrate.h).
 * libvirt's protocol leaves the guest whole on one host: the source pauses it
 * at the end of Perform, the destination runs it at Finish, the source kills
 * its copy at Confirm. A client killed between Perform and Finish can leave it
 * paused on the source (libvirt keeps it so when it does not know whether the
 * destination started it) and, on the destination, an incoming copy paused too.
 * The rule here: the copy that runs is kept; with none running, the source's
 * copy paused by the migration is resumed (outside post-copy it holds the whole
 * state, and the destination's was never confirmed by Finish), else the
 * destination's when it is the only one. A stale copy paused by the migration
 * is destroyed only after the other is confirmed running; a definition is never
 * undefined, a file never removed, and anything unclear (a host that does not
 * answer, a job still running, post-copy, a copy running on each host) is
 * reported and left for the next recover or the administrator. */
#include "config.h"
#include "driver-internal.h"
#include "control.h"
#include "recover-migrate.h"

#include <string.h>

const char *
vs_mig_side_name(VsMigSide s)
{
    static const char *const names[] = {
        [VS_MIG_UNKNOWN] = "unknown (the host does not answer)", [VS_MIG_ABSENT] = "absent",
        [VS_MIG_SHUTOFF] = "shut off", [VS_MIG_RUNNING] = "running",
        [VS_MIG_PAUSED_MIGRATION] = "paused by the migration", [VS_MIG_PAUSED_OTHER] = "paused",
        [VS_MIG_POSTCOPY] = "paused in post-copy", [VS_MIG_MIGRATING] = "still migrating",
    };

    return (unsigned)s < G_N_ELEMENTS(names) ? names[s] : "?";
}

static bool
gone(VsMigSide s)
{
    return s == VS_MIG_ABSENT || s == VS_MIG_SHUTOFF;
}

VsMigPlan
vs_migration_settle_plan(VsMigSide src, VsMigSide dst)
{
    VsMigPlan p = { .settled = true };

    if (src == VS_MIG_UNKNOWN || dst == VS_MIG_UNKNOWN)
        return (VsMigPlan){ .finding = "one host cannot be asked: nothing is done until both answer" };
    if (src == VS_MIG_MIGRATING || dst == VS_MIG_MIGRATING)
        return (VsMigPlan){ .finding = "libvirt still migrates it: run recover again once that job "
                            "has ended" };
    if (src == VS_MIG_POSTCOPY || dst == VS_MIG_POSTCOPY)
        return (VsMigPlan){ .finding = "post-copy: only the destination's memory is current, and "
                            "which copy to run is the administrator's call" };
    if (src == VS_MIG_RUNNING && dst == VS_MIG_RUNNING)
        return (VsMigPlan){ .finding = "running on both hosts: left for the administrator" };
    if (src == VS_MIG_RUNNING || dst == VS_MIG_RUNNING) {
        VsMigSide other = src == VS_MIG_RUNNING ? dst : src;

        p.keep = src == VS_MIG_RUNNING ? VS_HOST_SOURCE : VS_HOST_DEST;
        if (other == VS_MIG_PAUSED_MIGRATION) {
            p.destroy = p.keep == VS_HOST_SOURCE ? VS_HOST_DEST : VS_HOST_SOURCE;
            p.finding = "running on one host, a copy paused by the migration on the other";
        } else {
            p.finding = "running on one host only";
        }
        return p;
    }
    if (src == VS_MIG_PAUSED_MIGRATION && (gone(dst) || dst == VS_MIG_PAUSED_MIGRATION)) {
        p.resume = p.keep = VS_HOST_SOURCE;
        p.destroy = dst == VS_MIG_PAUSED_MIGRATION ? VS_HOST_DEST : VS_HOST_NONE;
        p.finding = dst == VS_MIG_PAUSED_MIGRATION
            ? "paused by the migration on both hosts: the source's copy is whole and runs on"
            : "paused by the migration on the source, not on the destination";
        return p;
    }
    if (dst == VS_MIG_PAUSED_MIGRATION && gone(src)) {
        p.resume = p.keep = VS_HOST_DEST;
        p.finding = "paused by the migration on the destination, gone from the source";
        return p;
    }
    if (src == VS_MIG_PAUSED_MIGRATION || dst == VS_MIG_PAUSED_MIGRATION)
        return (VsMigPlan){ .finding = "paused by the migration on one host and by someone else on "
                            "the other: left for the administrator" };
    p.finding = "running on neither host: nothing to resume";
    return p;
}

/* One host's connection: CONN when URI is NULL or OWN (CONN's), else a new one
 * (*OPENED says so, for closing). */
static virConnectPtr
host_conn(virConnectPtr conn, const char *own, const char *uri, bool *opened, GError **error)
{
    *opened = false;
    if (!uri || !g_strcmp0(uri, own))
        return conn;
    *opened = true;
    return vs_control()->conn_open(uri, error);
}

/* A "no such domain" is believed only from a host that answers: one more
 * call, the list of its domains, must succeed without UUID in it (a remote
 * connection's liveness flag says too little). */
static bool
absent_from_list(virConnectPtr conn, const char *uuid)
{
    const VsControlOps *c = vs_control();
    virDomainPtr *all = c->domain_list(conn, NULL);
    bool absent = all != NULL;

    for (size_t i = 0; all && all[i]; i++) {
        char buf[VIR_UUID_STRING_BUFLEN];

        c->domain_uuid(all[i], buf);
        absent = absent && strcmp(buf, uuid) != 0;
        c->domain_free(all[i]);
    }
    g_free(all);
    return absent;
}

/* What CONN says of UUID; *DOM the domain when there is one. */
static VsMigSide
side_of(virConnectPtr conn, const char *uuid, virDomainPtr *dom, GError **why)
{
    const VsControlOps *c = vs_control();
    GError *err = NULL;
    int state = VIR_DOMAIN_NOSTATE, reason = 0;
    VsJobStats st;
    bool migrating;

    *dom = NULL;
    if (!conn)
        return VS_MIG_UNKNOWN;
    if (!(*dom = c->domain_lookup_uuid(conn, uuid, &err))) {
        if (g_error_matches(err, VS_ERROR, VS_ERROR_NOT_FOUND) && absent_from_list(conn, uuid)) {
            g_error_free(err);
            return VS_MIG_ABSENT;
        }
        g_propagate_error(why, err);
        return VS_MIG_UNKNOWN;
    }
    if (!c->domain_state(*dom, &state, &reason, why))
        return VS_MIG_UNKNOWN;
    if (state != VIR_DOMAIN_RUNNING && state != VIR_DOMAIN_PAUSED && state != VIR_DOMAIN_BLOCKED)
        return VS_MIG_SHUTOFF;
    if (!c->job_stats(*dom, false, &st, why)) {
        /* The destination of a migration answers no job statistics (libvirt
         * gives them on the source only): a copy paused by the migration there
         * is what it is; whether the migration still runs, the source says. */
        if (state == VIR_DOMAIN_PAUSED && reason == VIR_DOMAIN_PAUSED_MIGRATION) {
            g_clear_error(why);
            return VS_MIG_PAUSED_MIGRATION;
        }
        return VS_MIG_UNKNOWN;
    }
    migrating = st.type != VIR_DOMAIN_JOB_NONE &&
                (st.operation == VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT ||
                 st.operation == VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN);
    vs_job_stats_clear(&st);
    if (migrating)
        return VS_MIG_MIGRATING;
    if (state != VIR_DOMAIN_PAUSED)
        return VS_MIG_RUNNING;
    if (reason == VIR_DOMAIN_PAUSED_MIGRATION)
        return VS_MIG_PAUSED_MIGRATION;
    if (reason == VIR_DOMAIN_PAUSED_POSTCOPY || reason == VIR_DOMAIN_PAUSED_POSTCOPY_FAILED)
        return VS_MIG_POSTCOPY;
    return VS_MIG_PAUSED_OTHER;
}

static bool
state_is(virDomainPtr dom, int want, int want_reason)
{
    int state = VIR_DOMAIN_NOSTATE, reason = 0;

    return dom && vs_control()->domain_state(dom, &state, &reason, NULL) && state == want &&
           (want_reason < 0 || reason == want_reason);
}

/* The plan carried out: resume, confirm, then destroy the stale copy. */
static bool
settle(const VsMigPlan *p, const char *name, virDomainPtr doms[3], const char *uris[3],
       GPtrArray *actions, GError **error)
{
    const VsControlOps *c = vs_control();
    GError *cause = NULL;

    if (p->resume != VS_HOST_NONE) {
        if (!c->domain_resume(doms[p->resume], &cause)) {
            vs_control_error(error, cause, VS_ERROR_LIBVIRT, "recover: migration of domain '%s': "
                             "resuming it on %s", name, uris[p->resume]);
            return false;
        }
        recover_act(actions, "migration of domain '%s': resumed it on %s", name, uris[p->resume]);
    }
    if (p->destroy == VS_HOST_NONE)
        return true;
    if (!state_is(doms[p->keep], VIR_DOMAIN_RUNNING, -1)) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED,
                    "recover: migration of domain '%s': it does not run on %s (yet): its paused "
                    "copy on %s is left; run recover again", name, uris[p->keep], uris[p->destroy]);
        return false;
    }
    if (!state_is(doms[p->destroy], VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_MIGRATION)) {
        recover_act(actions, "migration of domain '%s': its copy on %s is no longer paused by the "
                    "migration: left alone", name, uris[p->destroy]);
        return true;
    }
    if (!c->domain_destroy(doms[p->destroy], &cause)) {
        vs_control_error(error, cause, VS_ERROR_LIBVIRT, "recover: migration of domain '%s': "
                         "destroying its stale paused copy on %s", name, uris[p->destroy]);
        return false;
    }
    recover_act(actions, "migration of domain '%s': destroyed its stale copy paused by the migration "
                "on %s (it runs on %s; its definition, if any, kept)", name, uris[p->destroy],
                uris[p->keep]);
    return true;
}

bool
vs_recover_migration(virConnectPtr conn, const char *name, const char *uuid, const char *source,
                     const char *dest, GPtrArray *actions, GError **error)
{
    const VsControlOps *c = vs_control();
    g_autofree char *own = c->conn_uri(conn);
    const char *uris[3] = { NULL, source ? source : own, dest };
    virConnectPtr conns[3] = { NULL };
    virDomainPtr doms[3] = { NULL };
    bool opened[3] = { false };
    VsMigSide sides[3] = { VS_MIG_UNKNOWN, VS_MIG_UNKNOWN, VS_MIG_UNKNOWN };
    g_autoptr(GError) cerr = NULL;
    VsMigPlan plan;
    bool ok;

    if (!dest || !vs_uuid_valid(uuid)) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "recover: the migration record of domain '%s' "
                    "names no destination or no UUID: settle it by hand", name ? name : "?");
        return false;
    }
    for (int h = VS_HOST_SOURCE; h <= VS_HOST_DEST; h++) {
        GError *e = NULL;

        conns[h] = host_conn(conn, own, h == VS_HOST_SOURCE ? source : dest, &opened[h], &e);
        if (e && !cerr)
            g_propagate_prefixed_error(&cerr, e, "%s: ", uris[h]);
        else if (e)
            g_error_free(e);
    }
    /* Just after the kill, libvirt may still be tearing a copy down (listed
     * but not found, a job ending): both hosts answering, asked again, a
     * second apart, for a few seconds. */
    for (int attempt = 0;; attempt++) {
        for (int h = VS_HOST_SOURCE; h <= VS_HOST_DEST; h++) {
            GError *e = NULL;

            if (doms[h])
                c->domain_free(doms[h]);
            doms[h] = NULL;
            if (conns[h])
                sides[h] = side_of(conns[h], uuid, &doms[h], &e);
            if (e && !cerr)
                g_propagate_prefixed_error(&cerr, e, "%s: ", uris[h]);
            else if (e)
                g_error_free(e);
        }
        plan = vs_migration_settle_plan(sides[VS_HOST_SOURCE], sides[VS_HOST_DEST]);
        if (plan.settled || !conns[VS_HOST_SOURCE] || !conns[VS_HOST_DEST] || attempt >= 9 ||
            sides[VS_HOST_SOURCE] == VS_MIG_POSTCOPY || sides[VS_HOST_DEST] == VS_MIG_POSTCOPY)
            break;
        g_clear_error(&cerr);
        g_usleep(G_USEC_PER_SEC);
    }
    recover_act(actions, "migration of domain '%s' from %s to %s, whose run was killed: %s on the "
                "source, %s on the destination: %s", name, uris[VS_HOST_SOURCE], uris[VS_HOST_DEST],
                vs_mig_side_name(sides[VS_HOST_SOURCE]), vs_mig_side_name(sides[VS_HOST_DEST]),
                plan.finding);
    if (plan.settled)
        ok = settle(&plan, name, doms, uris, actions, error);
    else {
        g_set_error(error, VS_ERROR, VS_ERROR_BUSY, "recover: migration of domain '%s' from %s to "
                    "%s not settled: %s%s%s", name, uris[VS_HOST_SOURCE], uris[VS_HOST_DEST],
                    plan.finding, cerr ? ": " : "", cerr ? cerr->message : "");
        ok = false;
    }
    for (int h = VS_HOST_SOURCE; h <= VS_HOST_DEST; h++) {
        if (doms[h])
            c->domain_free(doms[h]);
        if (opened[h] && conns[h])
            c->conn_close(conns[h]);
    }
    return ok;
}
