/* Opening libvirt connections the way virsh does, and turning libvirt's
 * thread-local last error into GErrors. libvirt prints every error to stderr by
 * default; virtsnap reports each error exactly once, with context, so that
 * default handler is replaced by a silent one before the first call. */
#include "config.h"
#include "vs-driver.h"

#include <libvirt/virterror.h>

static void
silent_error_handler(void *opaque, virErrorPtr err)
{
    (void)opaque;
    (void)err;
}

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

virConnectPtr
vs_conn_open(const char *uri, GError **error)
{
    static gsize initialized;
    const char *u = vs_default_uri(uri);
    virConnectPtr conn;

    if (g_once_init_enter(&initialized)) {
        virSetErrorFunc(NULL, silent_error_handler);
        virEventRegisterDefaultImpl();
        g_thread_unref(g_thread_new("libvirt-events", event_loop, NULL));
        g_once_init_leave(&initialized, 1);
    }
    conn = virConnectOpen(u);
    if (!conn) {
        vs_set_libvirt_error(error, VS_ERROR_LIBVIRT, "connect: cannot open %s", u);
        /* The usual cause on hosts without systemd: the daemon is not running. */
        if (error && *error && g_str_has_prefix(u, "qemu:///system")) {
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
        virConnectClose(conn);
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
