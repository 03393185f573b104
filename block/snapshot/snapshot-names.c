/* The rules for snapshot handles and names (vs_snap_handle_check,
 * vs_snap_name_check) and the safe rendering of outside bytes they report
 * with, kept apart from the providers so that the manifest's parser (and its
 * fuzz target) applies the very same rule without linking any storage code. */
#include <string.h>
#include "snapshot-internal.h"

char *
snap_escape(const char *s, size_t max)
{
    size_t len = strlen(s);
    g_autofree char *cut = g_strndup(s, MIN(len, max));
    g_autofree char *esc = g_strescape(cut, NULL);

    return len > max ? g_strconcat(esc, "...", NULL) : g_steal_pointer(&esc);
}

/* One rule for handles and names: ALLOWED bytes, 1..MAX, not starting with
 * '.' or '-'. */
static bool
check_chars(const char *what, const char *s, const char *allowed, size_t max, GError **error)
{
    size_t len = s ? strlen(s) : 0, bad = len;

    for (size_t i = 0; i < len; i++)
        if (!g_ascii_isalnum(s[i]) && !strchr(allowed, s[i])) {
            bad = i;
            break;
        }
    if (len == 0 || len > max || s[0] == '.' || s[0] == '-' || bad < len) {
        g_autofree char *shown = snap_escape(s ? s : "", 64);
        g_autofree char *at = bad < len ? snap_escape((char[]){s[bad], 0}, 4) : NULL;

        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "snapshot: %s \"%s\" is not valid%s%s%s: 1..%zu of A-Z a-z 0-9 %s, "
                    "not starting with '.' or '-'", what, shown, at ? " (byte \"" : "", at ? at : "",
                    at ? "\")" : "", max, allowed);
        return false;
    }
    return true;
}

bool
vs_snap_handle_check(const char *handle, GError **error)
{
    return check_chars("handle", handle, "._:+@=-", 200, error);
}

bool
vs_snap_name_check(const char *what, const char *name, GError **error)
{
    return check_chars(what, name, "._-", 128, error);
}
