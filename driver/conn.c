/* Opening libvirt connections the way virsh does (through the control plane,
 * control.h, which also silences libvirt's own error printing: virtsnap reports
 * each error exactly once, with context), and turning libvirt's thread-local
 * last error into GErrors for the callers that still ask libvirt directly. */
#include "config.h"
#include "driver-internal.h"
#include "vs-enum.h"
#include "control.h"

#include <libvirt/virterror.h>
#include <string.h>

const char *
vs_default_uri(const char *uri)
{
    const char *env;

    if (uri && *uri)
        return uri;
    env = g_getenv("LIBVIRT_DEFAULT_URI");
    return env && *env ? env : "qemu:///system";
}

void
vs_set_libvirt_error(GError **error, VsErrorCode code, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *prefix = NULL;
    const char *msg = virGetLastErrorMessage();

    va_start(ap, fmt);
    prefix = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(error, VS_ERROR, code, "%s: %s", prefix, msg ? msg : "unknown libvirt error");
}

virConnectPtr
vs_conn_open(const char *uri, GError **error)
{
    const char *u = vs_default_uri(uri);
    GError *cause = NULL;
    virConnectPtr conn = vs_control()->conn_open(u, &cause);

    if (!conn) {
        /* The usual cause on hosts without systemd: the daemon is not running. */
        bool hint = g_str_has_prefix(u, "qemu:///system");

        vs_control_error(error, cause, VS_ERROR_LIBVIRT, "connect: cannot open %s", u);
        if (hint && error && *error) {
            char *m = g_strdup_printf("%s (is libvirtd running? start it with `libvirtd -d`, "
                                      "or pick another URI with -c)", (*error)->message);
            g_free((*error)->message);
            (*error)->message = m;
        }
        return NULL;
    }
    return conn;
}

void
vs_conn_close(virConnectPtr conn)
{
    if (conn)
        vs_control()->conn_close(conn);
}

/* libvirt's virDomainState; VIR_DOMAIN_NOSTATE has no word ("unknown"). */
VS_ENUM_IMPL_STATIC(domain_state, int, VIR_DOMAIN_PMSUSPENDED + 1,
                    [VIR_DOMAIN_RUNNING] = "running", [VIR_DOMAIN_BLOCKED] = "blocked",
                    [VIR_DOMAIN_PAUSED] = "paused", [VIR_DOMAIN_SHUTDOWN] = "shutdown",
                    [VIR_DOMAIN_SHUTOFF] = "shutoff", [VIR_DOMAIN_CRASHED] = "crashed",
                    [VIR_DOMAIN_PMSUSPENDED] = "pmsuspended")

const char *
vs_domain_state_string(int state)
{
    const char *s = domain_state_to_string(state);

    return s ? s : "unknown";
}

int
vs_domain_exists(virConnectPtr conn, const char *name, GError **error)
{
    virDomainPtr dom = virDomainLookupByName(conn, name);
    virErrorPtr e;

    if (!dom && strlen(name) == VIR_UUID_STRING_BUFLEN - 1)
        dom = virDomainLookupByUUIDString(conn, name);
    if (dom) {
        virDomainFree(dom);
        return 1;
    }
    e = virGetLastError();
    if (!e || e->code == VIR_ERR_NO_DOMAIN || e->code == VIR_ERR_INVALID_ARG)
        return 0;
    vs_set_libvirt_error(error, VS_ERROR_LIBVIRT, "domain '%s'", name);
    return -1;
}
