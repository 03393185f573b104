/* The cluster agent's verbs over libvirt: online, offline, clean and monitor
 * of one domain, each against the deadline the cluster gave it. libvirt's
 * calls have no timeout of their own, so every wait here is a poll that ends
 * at the deadline, a graceful shutdown is cut to a destroy before it, and the
 * delays VCS asks for (DelayAfterGuestOnline/Offline) are cut short rather
 * than overrun it; `virtsnap agent` adds a watchdog that ends the process at
 * the deadline should a single libvirt call hang. What each verb did is
 * remembered in the state directory (cluster.c says why). */
#include "config.h"
#include "cluster-internal.h"
#include "vs-migrate.h"

#include <errno.h>
#include <fcntl.h>
#include <libvirt/virterror.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The time a destroy and the last steps need after a graceful shutdown gave up. */
#define DESTROY_MARGIN_S 5
#define POLL_US (200 * 1000)

void
vs_cluster_note(GPtrArray *notes, const char *fmt, ...)
{
    va_list ap;

    if (!notes)
        return;
    va_start(ap, fmt);
    g_ptr_array_add(notes, g_strdup_vprintf(fmt, ap));
    va_end(ap);
}

static gint64
deadline_of(const VsClusterAttrs *a)
{
    return g_get_monotonic_time() + (gint64)a->timeout_s * G_USEC_PER_SEC;
}

/* NULL for a name that cannot be a file name (libvirt refuses '/' in one). */
static char *
memory_path(const VsClusterAttrs *a, const char *name)
{
    if (strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
        return NULL;
    return g_build_filename(vs_state_dir(a->state_dir), "cluster", name, NULL);
}

static char *
memory_read(const VsClusterAttrs *a, const char *name)
{
    g_autofree char *path = memory_path(a, name);
    char *text = NULL;

    if (!path || !g_file_get_contents(path, &text, NULL, NULL))
        return NULL;
    return g_strstrip(text);
}

/* Remembering is best effort: a state directory that cannot be written costs
 * monitor the FAULTED/OFFLINE distinction for a transient domain, not the verb. */
static void
memory_write(const VsClusterAttrs *a, const char *name, const char *word, GPtrArray *notes)
{
    g_autofree char *path = memory_path(a, name);
    g_autofree char *dir = path ? g_path_get_dirname(path) : NULL;
    g_autoptr(GError) err = NULL;

    if (!path)
        return;
    if (!vs_make_dir(dir, 0700, &err) || !g_file_set_contents(path, word, -1, &err))
        vs_cluster_note(notes, "could not remember '%s' as %s: %s", name, word, err->message);
}

static char *
resolve_name(const char *domain, const VsClusterAttrs *a, GError **error)
{
    if (domain && *domain)
        return g_strdup(domain);
    if (a->guest_name)
        return g_strdup(a->guest_name);
    if (a->config_path)
        return vs_cluster_name_from_file(a->config_path, error);
    g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                "agent: no domain: give DOMAIN, GuestName or GuestConfigFilePath");
    return NULL;
}

/* *DOM for NAME, NULL when CONN has no such domain. */
static bool
lookup(virConnectPtr conn, const char *name, virDomainPtr *dom, GError **error)
{
    virErrorPtr e;

    if ((*dom = virDomainLookupByName(conn, name)))
        return true;
    e = virGetLastError();
    if (e && e->code != VIR_ERR_NO_DOMAIN) {
        vs_set_libvirt_error(error, VS_ERROR_LIBVIRT, "agent: domain '%s'", name);
        return false;
    }
    return true;
}

/* 1 running (or paused, shutting down, or crashed and kept for a dump: QEMU is
 * still there to destroy), 0 shut off or gone, -1 unknown. */
static int
is_up(virDomainPtr dom)
{
    int state, reason;

    if (virDomainGetState(dom, &state, &reason, 0) < 0) {
        virErrorPtr e = virGetLastError();
        return e && e->code == VIR_ERR_NO_DOMAIN ? 0 : -1;
    }
    return state != VIR_DOMAIN_SHUTOFF;
}

/* Polls until DOM is (UP) or is not running, by UNTIL. */
static bool
wait_up(virDomainPtr dom, bool up, gint64 until)
{
    for (;;) {
        int u = is_up(dom);

        if (u == (int)up)
            return true;
        if (g_get_monotonic_time() >= until)
            return false;
        g_usleep(POLL_US);
    }
}

/* Sleeps SECS, or until MARGIN_S before DEADLINE, whichever is first. */
static void
bounded_delay(int secs, gint64 deadline, int margin_s, const char *what, GPtrArray *notes)
{
    gint64 want = (gint64)secs * G_USEC_PER_SEC;
    gint64 left = deadline - g_get_monotonic_time() - (gint64)margin_s * G_USEC_PER_SEC;

    if (secs <= 0)
        return;
    if (want > left) {
        vs_cluster_note(notes, "%s cut to %" G_GINT64_FORMAT " s of %d s: the operation's timeout is near",
                        what, MAX(left, 0) / G_USEC_PER_SEC, secs);
        want = MAX(left, 0);
    }
    g_usleep(want);
}

bool
vs_cluster_online(const char *uri, const char *domain, const VsClusterAttrs *a, GPtrArray *notes,
                  GError **error)
{
    gint64 deadline = deadline_of(a);
    g_autofree char *name = resolve_name(domain, a, error);
    virConnectPtr conn = NULL;
    virDomainPtr dom = NULL;
    bool ok = false;

    if (!name || !(conn = vs_conn_open(uri, error)) || !lookup(conn, name, &dom, error))
        goto out;
    if (!dom) {
        g_autofree char *xml = NULL;
        g_autoptr(GError) cause = NULL;

        if (!a->config_path) {
            g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND,
                        "agent: online: no domain '%s' on %s, and no GuestConfigFilePath to define it from",
                        name, vs_default_uri(uri));
            goto out;
        }
        if (!g_file_get_contents(a->config_path, &xml, NULL, &cause)) {
            g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND, "agent: online: GuestConfigFilePath: %s",
                        cause->message);
            goto out;
        }
        if (!(dom = virDomainDefineXML(conn, xml))) {
            vs_set_libvirt_error(error, VS_ERROR_XML, "agent: online: defining '%s' from %s", name,
                                 a->config_path);
            goto out;
        }
        vs_cluster_note(notes, "defined '%s' from %s", name, a->config_path);
    }
    if (is_up(dom) == 1) {
        vs_cluster_note(notes, "'%s' was already running", name);
    } else if (virDomainCreate(dom) < 0) {
        vs_set_libvirt_error(error, VS_ERROR_LIBVIRT, "agent: online: starting '%s'", name);
        goto out;
    }
    if (!wait_up(dom, true, deadline)) {
        g_set_error(error, VS_ERROR, VS_ERROR_TIMEOUT, "agent: online: '%s' did not run within %d s",
                    name, a->timeout_s);
        goto out;
    }
    memory_write(a, name, "online", notes);
    bounded_delay(a->delay_online_s, deadline, 1, "DelayAfterGuestOnline", notes);
    ok = true;
out:
    if (dom)
        virDomainFree(dom);
    vs_conn_close(conn);
    return ok;
}

/* The definition a stopped domain comes back from: the persistent one, or a
 * transient domain's own (migratable: no runtime-only parts). Taken while the
 * domain still exists; NULL (noted) when libvirt would not give it. */
static char *
definition_of(virDomainPtr dom, const char *name, GPtrArray *notes)
{
    int persistent = virDomainIsPersistent(dom);
    char *xml = virDomainGetXMLDesc(dom, persistent == 1 ? VIR_DOMAIN_XML_INACTIVE
                                                         : VIR_DOMAIN_XML_MIGRATABLE);

    if (!xml)
        vs_cluster_note(notes, "could not read the definition of '%s' for SyncDir: %s", name,
                        virGetLastErrorMessage());
    return xml;
}

/* SyncDir/NAME.xml, written whole (temp file and rename), 0600: the
 * definition names disk paths and more. */
static bool
sync_definition(const char *dir, const char *name, const char *xml, GError **error)
{
    g_autoptr(GError) cause = NULL;

    if (!vs_make_dir(dir, 0700, error))
        return false;
    if (!vs_definition_write(dir, name, xml, &cause)) {
        g_set_error(error, VS_ERROR, cause->code == VS_ERROR_INVALID_ARG ? VS_ERROR_INVALID_ARG : VS_ERROR_IO,
                    "agent: SyncDir: %s", cause->message);
        return false;
    }
    return true;
}

/* The graceful shutdown request, on a thread of its own: libvirt's call may
 * wait for the guest agent or for a job another client holds (a backup
 * thawing or committing) for longer than the stop may take, and the destroy
 * must come at its time whatever that call does. Shared by the caller and
 * the thread (refcounted: either may finish last). */
typedef struct {
    virDomainPtr dom;
    gint done;          /* atomic: 1 once the call returned */
    int rc;
    char *err;
} ShutdownCall;

static void
shutdown_call_clear(gpointer p)
{
    ShutdownCall *c = p;

    virDomainFree(c->dom);
    g_free(c->err);
}

static gpointer
shutdown_thread(gpointer p)
{
    ShutdownCall *c = p;

    c->rc = virDomainShutdown(c->dom);
    if (c->rc < 0)
        c->err = g_strdup(virGetLastErrorMessage());
    g_atomic_int_set(&c->done, 1);
    g_atomic_rc_box_release_full(c, shutdown_call_clear);
    return NULL;
}

/* Asks DOM to shut down and waits until it has, by UNTIL: true when it did. */
static bool
graceful_stop(virDomainPtr dom, const char *name, gint64 until, GPtrArray *notes)
{
    ShutdownCall *c = g_atomic_rc_box_new0(ShutdownCall);
    bool down = false, refused = false;

    virDomainRef(dom);
    c->dom = dom;
    g_thread_unref(g_thread_new("agent-shutdown", shutdown_thread, g_atomic_rc_box_acquire(c)));
    for (;;) {
        if (is_up(dom) == 0) {
            down = true;
            break;
        }
        if (g_atomic_int_get(&c->done) && c->rc < 0) {
            vs_cluster_note(notes, "graceful shutdown of '%s' refused (%s): destroying it", name, c->err);
            refused = true;
            break;
        }
        if (g_get_monotonic_time() >= until)
            break;
        g_usleep(POLL_US);
    }
    if (!down && !refused)
        vs_cluster_note(notes, "'%s' did not shut down in time%s: destroying it", name,
                        g_atomic_int_get(&c->done) ? "" : " (libvirt's shutdown call has not returned)");
    g_atomic_rc_box_release_full(c, shutdown_call_clear);
    return down;
}

/* Stops DOM: a graceful shutdown first unless FORCE, a destroy once that has
 * not worked by DESTROY_MARGIN_S before DEADLINE (or at once with FORCE). */
static bool
stop_domain(virDomainPtr dom, const char *name, bool force, gint64 deadline, GPtrArray *notes,
            GError **error)
{
    gint64 graceful_until = deadline - DESTROY_MARGIN_S * G_USEC_PER_SEC;

    if (is_up(dom) == 0)
        return true;
    if (!force && graceful_until > g_get_monotonic_time() && graceful_stop(dom, name, graceful_until, notes))
        return true;
    if (virDomainDestroy(dom) < 0 && is_up(dom) != 0) {
        vs_set_libvirt_error(error, VS_ERROR_LIBVIRT, "agent: destroying '%s'", name);
        return false;
    }
    if (!wait_up(dom, false, deadline)) {
        g_set_error(error, VS_ERROR, VS_ERROR_TIMEOUT, "agent: '%s' still runs after its destroy", name);
        return false;
    }
    return true;
}

/* offline (FORCE false) and clean (FORCE true). */
static bool
take_down(const char *uri, const char *domain, const VsClusterAttrs *a, bool force, GPtrArray *notes,
          GError **error)
{
    gint64 deadline = deadline_of(a);
    g_autofree char *name = resolve_name(domain, a, error);
    g_autofree char *xml = NULL;
    char uuid[VIR_UUID_STRING_BUFLEN] = "";
    virConnectPtr conn = NULL;
    virDomainPtr dom = NULL;
    int lock = -1;
    bool ok = false;

    if (!name || !(conn = vs_conn_open(uri, error)) || !lookup(conn, name, &dom, error))
        goto out;
    if (!dom) {
        vs_cluster_note(notes, "no domain '%s' on this host: nothing to stop", name);
        memory_write(a, name, "offline", notes);
        ok = true;
        goto out;
    }
    if (!force && a->sync_dir)
        xml = definition_of(dom, name, notes);
    if (virDomainGetUUIDString(dom, uuid) == 0)
        lock = vs_cluster_lock_or_interrupt(a->state_dir, uuid, name, deadline, force ? 5 : 60, notes);
    if (!stop_domain(dom, name, force, deadline, notes, error))
        goto out;
    memory_write(a, name, "offline", notes);
    if (xml && !sync_definition(a->sync_dir, name, xml, error))
        goto out;
    if (!force)
        bounded_delay(a->delay_offline_s, deadline, 1, "DelayAfterGuestOffline", notes);
    ok = true;
out:
    vs_domain_unlock(lock);
    if (dom)
        virDomainFree(dom);
    vs_conn_close(conn);
    return ok;
}

bool
vs_cluster_offline(const char *uri, const char *domain, const VsClusterAttrs *a, GPtrArray *notes,
                   GError **error)
{
    return take_down(uri, domain, a, false, notes, error);
}

bool
vs_cluster_clean(const char *uri, const char *domain, const VsClusterAttrs *a, GPtrArray *notes,
                 GError **error)
{
    return take_down(uri, domain, a, true, notes, error);
}

bool
vs_cluster_monitor(const char *uri, const char *domain, const VsClusterAttrs *a, VsClusterStatus *out,
                   GError **error)
{
    g_autofree char *name = resolve_name(domain, a, error);
    g_autofree char *memory = NULL;
    virConnectPtr conn = NULL;
    virDomainPtr dom = NULL;
    int state = VIR_DOMAIN_NOSTATE, reason = 0;
    const char *why = NULL;
    g_autoptr(GError) cause = NULL;
    bool ok = false;

    *out = (VsClusterStatus){ .state = VS_CLUSTER_UNKNOWN };
    if (!name || !(conn = vs_conn_open(uri, error)))
        goto out;
    ok = true;
    if (!lookup(conn, name, &dom, &cause) || (dom && virDomainGetState(dom, &state, &reason, 0) < 0)) {
        out->why = g_strdup_printf("libvirt cannot say: %s",
                                   cause ? cause->message : virGetLastErrorMessage());
        goto out;
    }
    memory = memory_read(a, name);
    out->state = vs_cluster_classify(dom != NULL, state, reason, memory, &out->confidence, &why);
    out->why = g_strdup(why);
out:
    if (dom)
        virDomainFree(dom);
    vs_conn_close(conn);
    return ok;
}

bool
vs_cluster_migrate(const char *uri, const char *domain, const VsClusterAttrs *a, const char *target,
                   GPtrArray *notes, GError **error)
{
    g_autofree char *name = resolve_name(domain, a, error);
    g_autoptr(VsMigrateResult) res = NULL;
    VsMigrateOptions o;
    virConnectPtr conn;
    bool ok;

    if (!name)
        return false;
    if (!target || !*target) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "agent: migrate: give the destination's libvirt URI (--target URI)");
        return false;
    }
    if (!(conn = vs_conn_open(uri, error)))
        return false;
    vs_migrate_options_init(&o);
    o.state_dir = a->state_dir;
    o.source_uri = uri;
    /* A cluster's migrate, like its stop, never fails because of a backup:
     * one that holds the domain is stopped (it records itself aborted). The
     * migration itself ends (aborted, the guest still here) before the
     * verb's watchdog would, so that the cluster hears libvirt's answer. */
    o.abort_backup = true;
    o.lock_wait_s = MAX(a->timeout_s / 4, 1);
    o.timeout_s = MAX(a->timeout_s - o.lock_wait_s - 5, 1);
    ok = vs_migrate(conn, name, target, &o, &res, error);
    vs_conn_close(conn);
    if (ok) {
        memory_write(a, name, "migrated", notes);
        vs_cluster_note(notes, "migrated '%s' to %s", name, target);
    }
    if (res && res->checkpoint_note)
        vs_cluster_note(notes, "%s", res->checkpoint_note);
    return ok;
}
