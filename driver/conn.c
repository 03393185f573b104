/* Opening libvirt connections the way virsh does (through the control plane,
 * control.h, which also silences libvirt's own error printing: virtsnap reports
 * each error exactly once, with context), and turning libvirt's thread-local
 * last error into GErrors for the callers that still ask libvirt directly. */
#include "config.h"
#include "driver-internal.h"
#include "control.h"

#include <libvirt/virterror.h>

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

const char *
vs_domain_state_string(int state)
{
    switch (state) {
    case VIR_DOMAIN_RUNNING: return "running";
    case VIR_DOMAIN_BLOCKED: return "blocked";
    case VIR_DOMAIN_PAUSED: return "paused";
    case VIR_DOMAIN_SHUTDOWN: return "shutdown";
    case VIR_DOMAIN_SHUTOFF: return "shutoff";
    case VIR_DOMAIN_CRASHED: return "crashed";
    case VIR_DOMAIN_PMSUSPENDED: return "pmsuspended";
    default: return "unknown";
    }
}
