/* A libvirt connection that comes back. libvirtd restarts (a package upgrade
 * does it) while QEMU and its guests run on, and every virDomainPtr of the old
 * connection is dead from then on; a backup that took such a failure for a
 * fact about the domain ("not on our overlay", "no backup job") once deleted an
 * overlay a guest still wrote to. So after any failed call the caller asks the
 * link whether the connection is alive, the link reopens it with a bounded
 * backoff (one reopen serves every thread), and the caller looks its domain up
 * again by UUID and resumes from what the domain's live state says. The other
 * half of that rule lives here too: whether a file may be removed is decided
 * only by a domain lookup on a live connection, never by a failed call. */
#include "config.h"
#include "driver-internal.h"
#include "control.h"

#include <string.h>

/* libvirtd starts in one to three seconds here, more on a host with many
 * domains to reconnect to; a minute leaves room without hiding a dead daemon. */
#define REVIVE_BOUND_S 60

struct _VsLink {
    GMutex lock;
    char *uri;
    virConnectPtr conn;      /* current */
    bool own;                /* conn is ours to close */
    guint gen;               /* bumped at each reopen */
    /* Replaced connections stay open (dead) until the end: their addresses
     * key event registrations (blockjob.c), so none may be reused meanwhile. */
    GPtrArray *old;
};

VsLink *
vs_link_new(virConnectPtr conn, const char *uri)
{
    VsLink *l = g_new0(VsLink, 1);

    g_mutex_init(&l->lock);
    l->uri = g_strdup(vs_default_uri(uri));
    l->conn = conn;
    l->old = g_ptr_array_new();
    return l;
}

void
vs_link_free(VsLink *l)
{
    if (!l)
        return;
    for (guint i = 0; i < l->old->len; i++)
        if (l->old->pdata[i])
            vs_conn_close(l->old->pdata[i]);
    if (l->own)
        vs_conn_close(l->conn);
    g_ptr_array_unref(l->old);
    g_free(l->uri);
    g_mutex_clear(&l->lock);
    g_free(l);
}

virConnectPtr
vs_link_conn(VsLink *l)
{
    virConnectPtr c;

    g_mutex_lock(&l->lock);
    c = l->conn;
    g_mutex_unlock(&l->lock);
    return c;
}

guint
vs_link_generation(VsLink *l)
{
    guint g;

    g_mutex_lock(&l->lock);
    g = l->gen;
    g_mutex_unlock(&l->lock);
    return g;
}

bool
vs_link_alive(VsLink *l)
{
    return vs_control()->conn_alive(vs_link_conn(l)) == 1;
}

bool
vs_link_revive(VsLink *l, const char *what, GError **error)
{
    gint64 until = g_get_monotonic_time() + REVIVE_BOUND_S * G_USEC_PER_SEC;
    gulong pause_ms = 100;
    bool ok = false;

    g_mutex_lock(&l->lock);
    if (vs_control()->conn_alive(l->conn) == 1) {
        g_mutex_unlock(&l->lock);
        return true;
    }
    for (;;) {
        virConnectPtr c = vs_conn_open(l->uri, NULL);

        if (c) {
            /* The old one is kept open: see VsLink.old. */
            g_ptr_array_add(l->old, l->own ? l->conn : NULL);
            l->conn = c;
            l->own = true;
            l->gen++;
            ok = true;
            break;
        }
        if (g_get_monotonic_time() + (gint64)pause_ms * 1000 > until)
            break;
        g_usleep(pause_ms * 1000);
        pause_ms = MIN(pause_ms * 2, 2000);
    }
    g_mutex_unlock(&l->lock);
    if (!ok)
        g_set_error(error, VS_ERROR, VS_ERROR_CONNECTION,
                    "%s: the connection to libvirtd (%s) closed and could not be reopened within "
                    "%d s (is libvirtd running? start it with `libvirtd -d`)", what, l->uri,
                    REVIVE_BOUND_S);
    return ok;
}

bool
vs_link_domain(VsLink *l, const char *uuid, virDomainPtr *dom, guint *gen, GError **error)
{
    const VsControlOps *ctl = vs_control();
    g_autoptr(GError) cause = NULL;
    virConnectPtr c;
    guint g;
    virDomainPtr d;

    g_mutex_lock(&l->lock);
    c = l->conn;
    g = l->gen;
    g_mutex_unlock(&l->lock);
    if (*dom && *gen == g)
        return true;
    if (!vs_fault_fail("domain-lookup", error))
        return false;
    if (!(d = ctl->domain_lookup_uuid(c, uuid, &cause))) {
        if (g_error_matches(cause, VS_ERROR, VS_ERROR_NOT_FOUND))
            g_set_error(error, VS_ERROR, VS_ERROR_STOPPED, "domain %s no longer exists", uuid);
        else
            g_set_error(error, VS_ERROR, ctl->conn_alive(c) == 1 ? VS_ERROR_LIBVIRT
                        : VS_ERROR_CONNECTION, "domain %s: lookup: %s", uuid, cause->message);
        return false;
    }
    if (*dom)
        ctl->domain_free(*dom);
    *dom = d;
    *gen = g;
    return true;
}

static bool
chain_has(const VsStorageSource *src, const char *path)
{
    for (; src; src = src->backing)
        if (src->path && strcmp(src->path, path) == 0)
            return true;
    return false;
}

/* Whether any disk of the live (or INACTIVE, persistent) XML names PATH in its chain. */
static int
xml_names(virDomainPtr dom, bool inactive, const char *path, GError **error)
{
    const char *name = vs_control()->domain_name(dom);
    GError *cause = NULL;
    g_autofree char *xml = vs_control()->domain_xml(dom, inactive, &cause);
    g_autoptr(VsDomainDef) def = NULL;

    if (!xml) {
        vs_control_error(error, cause, VS_ERROR_LIBVIRT, "cannot read the %s XML",
                         inactive ? "persistent" : "live");
        return -1;
    }
    if (!(def = vs_domain_def_parse_string(xml, name, error)))
        return -1;
    for (guint i = 0; i < def->disks->len; i++) {
        const VsDiskDef *d = def->disks->pdata[i];
        if (chain_has(d->src, path))
            return 1;
    }
    return 0;
}

int
vs_domain_uses_file(virConnectPtr conn, const char *uuid, const char *path, GError **error)
{
    const VsControlOps *ctl = vs_control();
    g_autoptr(GError) local = NULL;
    virDomainPtr dom = ctl->domain_lookup_uuid(conn, uuid, &local);
    int active, persistent, r = 0;

    if (!dom) {
        /* Gone for good, as a live daemon says: nothing of it can use PATH. */
        if (g_error_matches(local, VS_ERROR, VS_ERROR_NOT_FOUND) && ctl->conn_alive(conn) == 1)
            return 0;
        g_set_error(error, VS_ERROR, VS_ERROR_CONNECTION, "cannot ask libvirt whether domain %s "
                    "still uses %s: %s", uuid, path, local->message);
        return -1;
    }
    active = ctl->domain_is_active(dom);
    persistent = ctl->domain_is_persistent(dom);
    if (active < 0 || persistent < 0)
        r = -1;
    if (r == 0 && active == 1)
        r = xml_names(dom, false, path, &local);
    if (r == 0 && persistent == 1)
        r = xml_names(dom, true, path, &local);
    /* A reply of a daemon that died meanwhile proves nothing. */
    if (r == 0 && ctl->conn_alive(conn) != 1)
        r = -1;
    if (r < 0)
        g_set_error(error, VS_ERROR, VS_ERROR_CONNECTION, "cannot ask libvirt whether domain '%s' "
                    "still uses %s%s%s", ctl->domain_name(dom), path, local ? ": " : "",
                    local ? local->message : "");
    ctl->domain_free(dom);
    return r;
}

bool
vs_domain_resume_paused(virDomainPtr dom, bool *resumed, GError **error)
{
    const VsControlOps *ctl = vs_control();
    int state = VIR_DOMAIN_NOSTATE, reason = 0;
    const char *name = ctl->domain_name(dom);
    GError *cause = NULL;

    *resumed = false;
    if (!ctl->domain_state(dom, &state, &reason, &cause)) {
        vs_control_error(error, cause, VS_ERROR_LIBVIRT, "resume: domain '%s': state", name);
        return false;
    }
    /* Only a pause QEMU chose for a failed write: a guest its admin paused
     * stays paused. */
    if (state != VIR_DOMAIN_PAUSED || reason != VIR_DOMAIN_PAUSED_IOERROR)
        return true;
    if (!ctl->domain_resume(dom, &cause)) {
        vs_control_error(error, cause, VS_ERROR_LIBVIRT, "resume: domain '%s' paused for an I/O "
                         "error and could not be resumed (virsh resume %s)", name, name);
        return false;
    }
    *resumed = true;
    return true;
}
