/* Strict reading of the repository's JSON files (the marker and manifests).
 * A backup is only as good as the manifest that describes it, so a manifest that
 * is not exactly what we write is refused rather than half-understood: each
 * field must be there with its exact type, unknown members are errors (new
 * fields come with a new format version), and every error names the file and the
 * field's path so that a person can find and judge the damage. */
#include "config.h"
#include "repo-internal.h"

#include <stdarg.h>
#include <string.h>

static char *
field_name(const char *path, const char *name)
{
    if (path && *path && name)
        return g_strdup_printf("%s.%s", path, name);
    return g_strdup(name ? name : path ? path : "");
}

void
jc_fail(JsonCheck *c, VsErrorCode code, const char *path, const char *name, const char *fmt, ...)
{
    g_autofree char *field = field_name(path, name);
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (*field)
        g_set_error(c->error, VS_ERROR, code, "%s: %s: %s", c->where, field, msg);
    else
        g_set_error(c->error, VS_ERROR, code, "%s: %s", c->where, msg);
}

JsonObject *
jc_root_object(JsonCheck *c, JsonParser *parser)
{
    JsonNode *root = json_parser_get_root(parser);

    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
        jc_fail(c, VS_ERROR_FAILED, NULL, NULL, "not a JSON object");
        return NULL;
    }
    return json_node_get_object(root);
}

bool
jc_members(JsonCheck *c, JsonObject *o, const char *path, const char *const *allowed)
{
    JsonObjectIter it;
    const char *name;
    JsonNode *node;

    json_object_iter_init(&it, o);
    while (json_object_iter_next(&it, &name, &node)) {
        if (!g_strv_contains(allowed, name)) {
            jc_fail(c, VS_ERROR_FAILED, path, name, "unknown member");
            return false;
        }
    }
    return true;
}

static JsonNode *
member(JsonCheck *c, JsonObject *o, const char *path, const char *name)
{
    JsonNode *n = json_object_get_member(o, name);

    if (!n)
        jc_fail(c, VS_ERROR_FAILED, path, name, "missing");
    return n;
}

bool
jc_string(JsonCheck *c, JsonObject *o, const char *path, const char *name, bool nullable, char **out)
{
    JsonNode *n = member(c, o, path, name);

    if (!n)
        return false;
    if (nullable && JSON_NODE_HOLDS_NULL(n)) {
        *out = NULL;
        return true;
    }
    if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING) {
        jc_fail(c, VS_ERROR_FAILED, path, name, nullable ? "expected a string or null" : "expected a string");
        return false;
    }
    *out = g_strdup(json_node_get_string(n));
    return true;
}

static bool
node_uint(JsonNode *n, uint64_t *out)
{
    gint64 v;

    if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64)
        return false;
    v = json_node_get_int(n);
    if (v < 0)
        return false;
    *out = (uint64_t)v;
    return true;
}

bool
jc_uint(JsonCheck *c, JsonObject *o, const char *path, const char *name, uint64_t *out)
{
    JsonNode *n = member(c, o, path, name);

    if (!n)
        return false;
    if (!node_uint(n, out)) {
        jc_fail(c, VS_ERROR_FAILED, path, name, "expected a non-negative integer");
        return false;
    }
    return true;
}

bool
jc_ms(JsonCheck *c, JsonObject *o, const char *path, const char *name, int64_t *out)
{
    JsonNode *n = member(c, o, path, name);
    uint64_t v;

    if (!n)
        return false;
    if (JSON_NODE_HOLDS_NULL(n)) {
        *out = -1;
        return true;
    }
    if (!node_uint(n, &v) || v > G_MAXINT64) {
        jc_fail(c, VS_ERROR_FAILED, path, name, "expected milliseconds (a non-negative integer) or null");
        return false;
    }
    *out = (int64_t)v;
    return true;
}

bool
jc_time(JsonCheck *c, JsonObject *o, const char *path, const char *name, int64_t *out)
{
    g_autofree char *s = NULL;
    g_autoptr(GDateTime) t = NULL;

    if (!jc_string(c, o, path, name, false, &s))
        return false;
    t = g_date_time_new_from_iso8601(s, NULL);
    if (!t) {
        jc_fail(c, VS_ERROR_FAILED, path, name,
                "\"%s\" is not an ISO 8601 time with a time zone (2026-11-23T14:16:00Z)", s);
        return false;
    }
    *out = g_date_time_to_unix(t) * G_USEC_PER_SEC + g_date_time_get_microsecond(t);
    return true;
}

bool
jc_version(JsonCheck *c, JsonObject *o, const char *path, const char *name, uint64_t *out)
{
    if (!jc_uint(c, o, path, name, out))
        return false;
    if (*out > VS_REPO_FORMAT_VERSION) {
        jc_fail(c, VS_ERROR_UNSUPPORTED, path, name,
                "format version %" G_GUINT64_FORMAT " is newer than this virtsnap supports (%d); "
                "upgrade virtsnap to read it", *out, VS_REPO_FORMAT_VERSION);
        return false;
    }
    if (*out < 1) {
        jc_fail(c, VS_ERROR_FAILED, path, name, "format version 0 does not exist");
        return false;
    }
    return true;
}

JsonArray *
jc_array(JsonCheck *c, JsonObject *o, const char *path, const char *name)
{
    JsonNode *n = member(c, o, path, name);

    if (!n)
        return NULL;
    if (!JSON_NODE_HOLDS_ARRAY(n)) {
        jc_fail(c, VS_ERROR_FAILED, path, name, "expected an array");
        return NULL;
    }
    return json_node_get_array(n);
}

JsonObject *
jc_element_object(JsonCheck *c, JsonArray *a, const char *path, guint i)
{
    JsonNode *n = json_array_get_element(a, i);

    if (!JSON_NODE_HOLDS_OBJECT(n)) {
        g_autofree char *p = g_strdup_printf("%s[%u]", path, i);

        jc_fail(c, VS_ERROR_FAILED, p, NULL, "expected an object");
        return NULL;
    }
    return json_node_get_object(n);
}

char *
repo_time_to_iso(int64_t us)
{
    int64_t secs = us >= 0 ? us / G_USEC_PER_SEC : (us - (G_USEC_PER_SEC - 1)) / G_USEC_PER_SEC;
    g_autoptr(GDateTime) t = g_date_time_new_from_unix_utc(secs);
    g_autofree char *base = NULL;

    if (!t)
        return g_strdup("1970-01-01T00:00:00.000000Z");
    base = g_date_time_format(t, "%Y-%m-%dT%H:%M:%S");
    return g_strdup_printf("%s.%06dZ", base, (int)(us - secs * G_USEC_PER_SEC));
}
