/* Which control-plane table is in use (control.h): libvirt's, unless a unit
 * test installed its scripted fake. Also the helpers every caller of the table
 * shares: wording a table error in the caller's terms, and freeing job
 * statistics. */
#include "config.h"
#include "control.h"

static const VsControlOps *current;

const VsControlOps *
vs_control(void)
{
    const VsControlOps *ops = g_atomic_pointer_get(&current);

    return ops ? ops : &vs_control_libvirt;
}

const VsControlOps *
vs_control_set(const VsControlOps *ops)
{
    const VsControlOps *old = g_atomic_pointer_exchange(&current, ops);

    return old ? old : &vs_control_libvirt;
}

void
vs_control_error(GError **error, GError *cause, VsErrorCode code, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *prefix = NULL;

    va_start(ap, fmt);
    prefix = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(error, VS_ERROR, code, "%s: %s", prefix,
                cause && cause->message ? cause->message : "unknown libvirt error");
    if (cause)
        g_error_free(cause);
}

void
vs_job_stats_clear(VsJobStats *st)
{
    g_clear_pointer(&st->errmsg, g_free);
}
