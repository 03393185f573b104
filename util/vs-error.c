/* The virtsnap error domain and small helpers around GError; see vs-error.h for
 * the conventions every layer follows. */
#include "vs-error.h"

G_DEFINE_QUARK(virtsnap-error-quark, vs_error)

void
vs_error_prefix(GError **error, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *prefix = NULL;

    if (!error || !*error)
        return;
    va_start(ap, fmt);
    prefix = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_prefix_error(error, "%s: ", prefix);
}
