/* `virtsnap migrate` (vs-migrate.h): the run in order -- the domain's lock,
 * then the pre-checks that need only the source (mode against state, no
 * overlay of ours), the destination's connection and its checks
 * (migrate-checks.c), the journal record, the migration, the checkpoints
 * (migrate-after.c). The migration itself is client-managed
 * (virDomainMigrate3 over the run's own connection to the destination): it
 * blocks, so it runs on a thread while this one reads the job's progress and
 * keeps the bound: at --timeout, or on SIGINT/SIGTERM, the job is aborted
 * (virDomainAbortJob), after which libvirt leaves the guest running on the
 * source. The journal is removed whenever libvirt's call has returned, either
 * way: only a run killed under the call leaves it, for recover. */
#include "config.h"
#include "migrate-internal.h"
#include "journal-records.h"
#include "arbitrate.h"
#include "vs-interrupt.h"
#include "vs-temp.h"

#include <libvirt/virterror.h>
#include <string.h>
#include <unistd.h>

void
vs_migrate_options_init(VsMigrateOptions *o)
{
    memset(o, 0, sizeof(*o));
    o->mode = VS_MIGRATE_AUTO;
}

static void
check_free(VsMigrateCheck *c)
{
    g_free(c->name);
    g_free(c->detail);
    g_free(c);
}

void
vs_migrate_result_free(VsMigrateResult *r)
{
    if (!r)
        return;
    g_free(r->name);
    g_free(r->uuid);
    g_free(r->source_uri);
    g_free(r->dest_uri);
    g_ptr_array_unref(r->checks);
    g_ptr_array_unref(r->checkpoints);
    g_free(r->checkpoint_note);
    g_free(r);
}

/* ------------------------------------------------------------------------- */
/* The migration on its thread, the bound and the progress on this one       */

typedef struct {
    virDomainPtr dom;
    virConnectPtr dconn;
    unsigned long flags;
    virDomainPtr ddom;           /* the domain on the destination, when it worked */
    char *errmsg;
    int errcode;                 /* virErrorNumber */
    gint done;
} MigJob;

static gpointer
mig_thread(gpointer p)
{
    MigJob *j = p;

    j->ddom = virDomainMigrate3(j->dom, j->dconn, NULL, 0, j->flags);
    if (!j->ddom) {
        virErrorPtr e = virGetLastError();
        j->errmsg = g_strdup(e && e->message ? e->message : "unknown error");
        j->errcode = e ? e->code : VIR_ERR_INTERNAL_ERROR;
    }
    g_atomic_int_set(&j->done, 1);
    return NULL;
}

static void
report_progress(VsMigrateRun *m, int64_t t0)
{
    virDomainJobInfo ji;
    VsMigrateProgress p;

    if (!m->o->progress || virDomainGetJobInfo(m->dom, &ji) < 0 || ji.type == VIR_DOMAIN_JOB_NONE)
        return;
    p.total = ji.dataTotal;
    p.processed = ji.dataProcessed;
    p.remaining = ji.dataRemaining;
    p.elapsed_ms = ji.timeElapsed ? (int64_t)ji.timeElapsed : vs_now_ms() - t0;
    m->o->progress(&p, m->o->progress_opaque);
}

/* Downtime and bytes of the completed job, from whichever host still says. */
static void
completed_stats(VsMigrateResult *r, virDomainPtr ddom, virDomainPtr dom)
{
    virDomainPtr doms[] = { ddom, dom };

    for (guint i = 0; i < G_N_ELEMENTS(doms); i++) {
        virTypedParameterPtr params = NULL;
        int n = 0, type;
        unsigned long long v;

        if (!doms[i] || virDomainGetJobStats(doms[i], &type, &params, &n, VIR_DOMAIN_JOB_STATS_COMPLETED) < 0)
            continue;
        if (virTypedParamsGetULLong(params, n, VIR_DOMAIN_JOB_DOWNTIME, &v) == 1)
            r->downtime_ms = (int64_t)v;
        if (virTypedParamsGetULLong(params, n, VIR_DOMAIN_JOB_DATA_PROCESSED, &v) == 1)
            r->data_bytes = v;
        virTypedParamsFree(params, n);
        if (r->downtime_ms >= 0)
            return;
    }
}

static bool
migration_failed(VsMigrateRun *m, MigJob *j, bool timed_out, int sig, GError **error)
{
    const char *name = m->disc->name;
    int st = virDomainIsActive(m->dom);
    const char *where = st == 1 ? "the guest runs on at the source" :
                        st == 0 ? "the domain is shut off at the source" : "ask the source whether the guest runs";

    if (timed_out) {
        g_set_error(error, VS_ERROR, VS_ERROR_TIMEOUT,
                    "migrate: domain '%s' was not migrated to %s within --timeout %d s: the job was "
                    "aborted and %s (%s); give a longer --timeout, or migrate when the guest writes less "
                    "memory", name, m->dest_uri, m->o->timeout_s, where, j->errmsg);
    } else if (sig) {
        g_set_error(error, VS_ERROR, VS_ERROR_INTERRUPTED,
                    "migrate: interrupted by %s: the migration of domain '%s' was aborted and %s",
                    vs_signal_name(sig), name, where);
    } else {
        g_set_error(error, VS_ERROR, VS_ERROR_LIBVIRT,
                    "migrate: libvirt did not migrate domain '%s' to %s: %s%s; %s", name, m->dest_uri,
                    j->errmsg,
                    j->errcode == VIR_ERR_MIGRATE_UNSAFE ?
                        " (give --unsafe when the storage is in fact shared, or --copy-storage)" : "",
                    where);
    }
    return false;
}

static bool
run_migration(VsMigrateRun *m, unsigned long flags, virDomainPtr *ddom, GError **error)
{
    MigJob j = { .dom = m->dom, .dconn = m->dconn, .flags = flags };
    int64_t t0 = vs_now_ms(), last = 0;
    bool timed_out = false;
    int sig = 0;
    GThread *t = g_thread_new("migrate", mig_thread, &j);

    while (!g_atomic_int_get(&j.done)) {
        int64_t now;

        g_usleep(100 * 1000);
        now = vs_now_ms();
        if (!timed_out && !sig && m->o->timeout_s > 0 && now - t0 >= (int64_t)m->o->timeout_s * 1000)
            timed_out = true;
        else if (!timed_out && !sig)
            sig = vs_interrupted();
        if ((timed_out || sig) && !g_atomic_int_get(&j.done)) {
            /* Repeated until the call returns: the job may not have begun yet. */
            virDomainAbortJob(m->dom);
        }
        if (now - last >= 500) {
            report_progress(m, t0);
            last = now;
        }
    }
    g_thread_join(t);
    m->r->elapsed_ms = vs_now_ms() - t0;
    if (!j.ddom) {
        bool ok = migration_failed(m, &j, timed_out, sig, error);
        g_free(j.errmsg);
        return ok;
    }
    *ddom = j.ddom;
    return true;
}

/* ------------------------------------------------------------------------- */
/* The run                                                                   */

static bool
find_domain(VsMigrateRun *m, const char *name, GError **error)
{
    const char *names[] = { name, NULL };
    VsDiscoverOptions dopts;
    g_autoptr(GPtrArray) found = NULL;
    g_autoptr(GPtrArray) problems = NULL;

    vs_discover_options_init(&dopts);
    dopts.probe_exports = false;
    dopts.agent_timeout = 1;
    if (!(found = vs_discover(m->conn, names, &dopts, &problems, error))) {
        vs_error_prefix(error, "migrate");
        return false;
    }
    if (found->len == 0) {
        const VsProblem *p = problems && problems->len ? problems->pdata[0] : NULL;
        g_set_error(error, VS_ERROR, p ? p->error->code : VS_ERROR_NOT_FOUND, "migrate: %s",
                    p ? p->error->message : "no such domain");
        return false;
    }
    m->disc = g_ptr_array_steal_index(found, 0);
    return true;
}

static bool
local_checks(VsMigrateRun *m, GError **error)
{
    const char *target = NULL;
    const char *overlay = vs_overlay_in_chain(m->disc, &target);

    if (overlay) {
        vs_migrate_check_add(m->r, "overlay", false, "%s runs on %s", target, overlay);
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "migrate: domain '%s' disk %s runs on %s, an overlay of an interrupted virtsnap "
                    "backup: run `virtsnap recover` first (it commits the overlay back), then migrate",
                    m->disc->name, target, overlay);
        return false;
    }
    vs_migrate_check_add(m->r, "overlay", true, "no virtsnap overlay in the disks' chains");
    return true;
}

static bool
dest_checks(VsMigrateRun *m, GError **error)
{
    GError *err = NULL;

    if (!(m->dconn = vs_conn_open(m->dest_uri, &err))) {
        vs_migrate_check_add(m->r, "destination", false, "%s: no connection", m->dest_uri);
        g_set_error(error, VS_ERROR, VS_ERROR_UNREACHABLE,
                    "migrate: destination %s cannot be reached: %s; check the URI and that its libvirtd "
                    "listens (listen_tcp or listen_tls)", m->dest_uri, err->message);
        g_error_free(err);
        return false;
    }
    {
        g_autofree char *host = virConnectGetHostname(m->dconn);
        vs_migrate_check_add(m->r, "destination", true, "%s answers (host %s)", m->dest_uri,
                             host ? host : "?");
    }
    return vs_migrate_check_cpu(m, error) && vs_migrate_check_memory(m, error) &&
           vs_migrate_check_disks(m, error);
}

/* The migration under its journal: removed once libvirt's call has returned. */
static bool
journaled_migration(VsMigrateRun *m, unsigned long flags, virDomainPtr *ddom, GError **error)
{
    g_autofree char *id = g_strdup_printf("migrate-%" G_GINT64_FORMAT "-%d", g_get_real_time() / 1000,
                                          (int)getpid());
    VsJournal *j = vs_journal_create(m->o->state_dir, id, error);
    bool ok;

    if (!j) {
        vs_error_prefix(error, "migrate");
        return false;
    }
    if (!vs_journal_begin_temps(j, "migrate", (int)getpid(), vs_temp_host(), error) ||
        !vs_journal_migrate(j, m->disc->name, m->disc->uuid, m->r->source_uri, m->dest_uri, error)) {
        vs_error_prefix(error, "migrate");
        vs_journal_finish(j);
        return false;
    }
    ok = run_migration(m, flags, ddom, error);
    vs_journal_finish(j);
    return ok;
}

static bool
migrate_locked(VsMigrateRun *m, const char *name, GError **error)
{
    unsigned long flags;
    virDomainPtr ddom = NULL;

    if (!find_domain(m, name, error) || !local_checks(m, error))
        return false;
    m->r->persistent = m->disc->persistent;
    if (!(flags = vs_migrate_flags(m->o, m->disc->name, m->active, m->disc->persistent, error)))
        return false;
    m->r->flags = flags;
    m->r->live = (flags & VIR_MIGRATE_LIVE) != 0;
    if (!dest_checks(m, error) || !journaled_migration(m, flags, &ddom, error))
        return false;
    completed_stats(m->r, ddom, m->dom);
    vs_migrate_checkpoints(m, ddom);
    virDomainFree(ddom);
    return true;
}

static virDomainPtr
lookup(virConnectPtr conn, const char *name, GError **error)
{
    virDomainPtr dom = virDomainLookupByName(conn, name);

    if (!dom && vs_uuid_valid(name))
        dom = virDomainLookupByUUIDString(conn, name);
    if (!dom)
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND, "migrate: no domain '%s' on the source (%s)",
                    name, virGetLastErrorMessage());
    return dom;
}

bool
vs_migrate(virConnectPtr conn, const char *name, const char *dest_uri, const VsMigrateOptions *opts,
           VsMigrateResult **result, GError **error)
{
    VsMigrateResult *r = g_new0(VsMigrateResult, 1);
    VsMigrateRun m = { .conn = conn, .o = opts, .r = r, .dest_uri = dest_uri };
    char uuid[VIR_UUID_STRING_BUFLEN];
    bool ok = false;
    int lock;

    r->checks = g_ptr_array_new_with_free_func((GDestroyNotify)check_free);
    r->checkpoints = g_ptr_array_new_with_free_func(g_free);
    r->downtime_ms = -1;
    r->name = g_strdup(name);
    r->dest_uri = g_strdup(dest_uri);
    r->source_uri = opts->source_uri ? g_strdup(opts->source_uri) : virConnectGetURI(conn);
    *result = r;
    if (!(m.dom = lookup(conn, name, error)))
        return false;
    virDomainGetUUIDString(m.dom, uuid);
    r->uuid = g_strdup(uuid);
    m.active = virDomainIsActive(m.dom) == 1;
    /* A run of ours on the domain (a backup, a restore, a quiesce) holds it:
     * the migration waits at most lock_wait_s, then is refused naming it; with
     * abort_backup a backup is asked to stop first (arbitrate.c). */
    if ((lock = vs_migrate_lock(opts->state_dir, uuid, name, dest_uri, opts->lock_wait_s,
                                opts->abort_backup, opts->say, opts->say_opaque, error)) < 0) {
        /* The error says "migrate: ..." already, naming the holder. */
        vs_migrate_check_add(r, "lock", false, "domain '%s' is held by another virtsnap run", name);
    } else {
        vs_migrate_check_add(r, "lock", true, "no other virtsnap run on domain '%s'", name);
        ok = migrate_locked(&m, name, error);
        vs_migrate_unlock(lock, uuid);
    }
    if (m.disc) {
        g_free(r->name);
        r->name = g_strdup(m.disc->name);
    }
    vs_discovered_domain_free(m.disc);
    if (m.dconn)
        vs_conn_close(m.dconn);
    virDomainFree(m.dom);
    return ok;
}
