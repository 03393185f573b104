/* The retry loop's decisions (retry.h): which errors are worth another try,
 * the backoff between tries, and the one note per retried step that the
 * result carries, so that a step that only succeeded on its third try is not
 * silently taken for a healthy one. An interrupt or the run's deadline does
 * not end the retries: the steps retried are those the unwinding needs too (a
 * thaw, the lookup before a commit), and the waits are short. */
#include "config.h"
#include "retry.h"
#include "vs-error.h"

bool
vs_retry_transient(const GError *err)
{
    if (!err || err->domain != VS_ERROR)
        return false;
    switch ((VsErrorCode)err->code) {
    case VS_ERROR_FAILED:
    case VS_ERROR_LIBVIRT:
    case VS_ERROR_AGENT:
    case VS_ERROR_TIMEOUT:
    case VS_ERROR_IO:
    case VS_ERROR_BUSY:
        return true;
    default:
        return false;
    }
}

bool
vs_retry_again(VsRetry *r, GError **error)
{
    if (r->done >= r->max || !error || !vs_retry_transient(*error))
        return false;
    g_usleep((gulong)r->delay_ms * 1000);
    if (!r->first)
        r->first = g_strdup((*error)->message);
    g_clear_error(error);
    r->done++;
    r->delay_ms = MIN(r->delay_ms * 2, VS_RETRY_MAX_MS);
    return true;
}

void
vs_retry_note(VsRetry *r, const char *what, GPtrArray *notes)
{
    if (r->done > 0) {
        char *note = g_strdup_printf("%s: retried %d time(s) (KVM_CMD_RETRY_COUNT=%d) after: %s", what, r->done,
                                     r->max, r->first);
        if (notes)
            g_ptr_array_add(notes, note);
        else {
            g_message("%s", note);
            g_free(note);
        }
    }
    g_clear_pointer(&r->first, g_free);
}
