/* The configuration file's parser and the effective value of each key
 * (vs-config.h). Each known key has a kind that says which values it takes;
 * every value is checked where it is read, file line or environment variable,
 * so that a typo stops the command at once with the line to fix rather than
 * surfacing halfway through a backup. The environment's value replaces the
 * file's when the configuration is loaded; the command's own option wins over
 * both in vs_config_value. */
#include "config.h"
#include "vs-config.h"
#include "vs-error.h"
#include "vs-trusted.h"

#include <string.h>

typedef enum {
    KIND_PATH,        /* any non-empty string */
    KIND_ABS_PATH,    /* an absolute path */
    KIND_STRING,      /* any non-empty string (a URI) */
    KIND_INT,         /* an integer in [min, max] */
    KIND_SECONDS,     /* a number of seconds, fraction allowed, in (min, max] */
    KIND_QUIESCE,     /* try, require or off */
    KIND_BOOL,        /* Y or N */
    KIND_MAPPING,     /* VM:controller:path;... */
    KIND_LIST,        /* VM,VM,... */
} Kind;

typedef struct {
    const char *key;
    Kind kind;
    int min, max;
} KeyDef;

static const KeyDef keys[] = {
    { "VIRTSNAP_REPO", KIND_PATH, 0, 0 },
    { "VIRTSNAP_STATE_DIR", KIND_PATH, 0, 0 },
    { "LIBVIRT_DEFAULT_URI", KIND_STRING, 0, 0 },
    { "VIRTSNAP_AGENT_TIMEOUT", KIND_INT, 1, 300 },
    { "VIRTSNAP_MAX_FREEZE", KIND_SECONDS, 0, 600 },
    { "VIRTSNAP_QUIESCE", KIND_QUIESCE, 0, 0 },
    { "VIRTSNAP_PARALLEL_DISKS", KIND_INT, 1, 64 },
    { "VIRTSNAP_SNAPSHOT_CONFIG", KIND_PATH, 0, 0 },
    { "KVM_VM_MAPPING", KIND_MAPPING, 0, 0 },
    { "KVM_RESTORE_VM_LIST", KIND_LIST, 0, 0 },
    { "KVM_VM_CONFIG_DIR", KIND_ABS_PATH, 0, 0 },
    { "KVM_CMD_RETRY_COUNT", KIND_INT, 0, 10 },
    { "SC_AGENT_TIMEOUT", KIND_INT, 0, 604800 },
    { "APP_DEFINED_RESTORE", KIND_BOOL, 0, 0 },
};

typedef struct {
    char *value;
    char *origin;     /* "FILE:LINE" or "environment" */
    GStrv names;      /* KIND_MAPPING, KIND_LIST */
} Entry;

struct _VsConfig {
    char *file;
    GHashTable *entries;   /* key (static) -> Entry* */
};

static void
entry_free(Entry *e)
{
    g_free(e->value);
    g_free(e->origin);
    g_strfreev(e->names);
    g_free(e);
}

void
vs_config_free(VsConfig *c)
{
    if (!c)
        return;
    g_free(c->file);
    g_hash_table_unref(c->entries);
    g_free(c);
}

const char *const *
vs_config_keys(void)
{
    static const char *names[G_N_ELEMENTS(keys) + 1];

    for (size_t i = 0; i < G_N_ELEMENTS(keys); i++)
        names[i] = keys[i].key;
    return names;
}

static const KeyDef *
key_def(const char *key)
{
    for (size_t i = 0; i < G_N_ELEMENTS(keys); i++)
        if (strcmp(keys[i].key, key) == 0)
            return &keys[i];
    return NULL;
}

static void
bad(GError **error, const char *origin, const char *key, const char *fmt, ...) G_GNUC_PRINTF(4, 5);

static void
bad(GError **error, const char *origin, const char *key, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "config: %s: %s: %s", origin, key, msg);
}

/* FIELD with %XX decoded (discover --mapping's escapes), NULL when a '%' is
 * not followed by two hex digits. */
static char *
unescape(const char *field)
{
    g_autoptr(GString) s = g_string_new(NULL);

    for (const char *p = field; *p; p++) {
        if (*p != '%') {
            g_string_append_c(s, *p);
            continue;
        }
        if (!g_ascii_isxdigit(p[1]) || !g_ascii_isxdigit(p[2]))
            return NULL;
        g_string_append_c(s, (char)(g_ascii_xdigit_value(p[1]) * 16 + g_ascii_xdigit_value(p[2])));
        p += 2;
    }
    return g_string_free(g_steal_pointer(&s), FALSE);
}

/* The VM names of a KVM_VM_MAPPING (SEPS ";": the part of each entry before
 * its first ':') or KVM_RESTORE_VM_LIST (SEPS ",;": whole entries), each once. */
static GStrv
parse_names(const char *value, const char *seps, bool mapping, const char *origin, const char *key,
            GError **error)
{
    g_auto(GStrv) entries = g_strsplit_set(value, seps, -1);
    g_autoptr(GStrvBuilder) b = g_strv_builder_new();
    g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    guint n = 0;

    for (guint i = 0; entries[i]; i++) {
        char *entry = g_strstrip(entries[i]);
        const char *colon = mapping ? strchr(entry, ':') : NULL;
        g_autofree char *raw = colon ? g_strndup(entry, colon - entry) : g_strdup(entry);
        g_autofree char *name = NULL;

        if (!*entry)
            continue;
        g_strstrip(raw);
        if (!*raw || !(name = unescape(raw)) || strchr(name, '/')) {
            bad(error, origin, key, "entry %u '%s' %s: give %s", i + 1, entry,
                !*raw ? "names no VM" : !name ? "has a '%' not followed by two hex digits" : "has a '/' in its VM name",
                mapping ? "VM:controller:/vol/volume[,controller:/vol/...];VM2:... (the VM name before the first ':')"
                        : "VM names separated by ','");
            return NULL;
        }
        if (!g_hash_table_add(seen, g_strdup(name)))
            continue;
        g_strv_builder_add(b, name);
        n++;
    }
    if (n == 0) {
        bad(error, origin, key, "names no VM: give at least one, or leave the key out");
        return NULL;
    }
    return g_strv_builder_end(b);
}

/* Checks VALUE of KEY (from ORIGIN) as its kind says; fills E's parsed parts. */
static bool
check_value(const KeyDef *k, const char *value, const char *origin, Entry *e, GError **error)
{
    char *end = NULL;

    if (!*value) {
        bad(error, origin, k->key, "empty value: give one, or leave the key out");
        return false;
    }
    switch (k->kind) {
    case KIND_PATH:
    case KIND_STRING:
        return true;
    case KIND_ABS_PATH:
        if (value[0] == '/')
            return true;
        bad(error, origin, k->key, "'%s' is not an absolute path: give one starting with '/'", value);
        return false;
    case KIND_INT: {
        gint64 v = g_ascii_strtoll(value, &end, 10);
        if (*end || end == value || v < k->min || v > k->max) {
            bad(error, origin, k->key, "'%s': give a whole number from %d to %d", value, k->min, k->max);
            return false;
        }
        return true;
    }
    case KIND_SECONDS: {
        double v = g_ascii_strtod(value, &end);
        if (*end || end == value || !(v > k->min && v <= k->max)) {
            bad(error, origin, k->key, "'%s': give seconds, more than %d and at most %d", value, k->min, k->max);
            return false;
        }
        return true;
    }
    case KIND_QUIESCE:
        if (!strcmp(value, "try") || !strcmp(value, "require") || !strcmp(value, "off"))
            return true;
        bad(error, origin, k->key, "'%s': use try, require or off", value);
        return false;
    case KIND_BOOL:
        if (strchr("YyNn", value[0]) && !value[1])
            return true;
        bad(error, origin, k->key, "'%s': use Y or N", value);
        return false;
    case KIND_MAPPING:
        return (e->names = parse_names(value, ";", true, origin, k->key, error)) != NULL;
    case KIND_LIST:
        return (e->names = parse_names(value, ",;", false, origin, k->key, error)) != NULL;
    }
    g_assert_not_reached();
}

/* VALUE without the quotes around it, if any ("..." or '...'). */
static char *
unquote(const char *value)
{
    size_t n = strlen(value);

    if (n >= 2 && (value[0] == '"' || value[0] == '\'') && value[n - 1] == value[0])
        return g_strndup(value + 1, n - 2);
    return g_strdup(value);
}

/* One line LINENO of FILE into C; blank lines and comments are nothing. */
static bool
parse_line(VsConfig *c, const char *file, guint lineno, char *line, GError **error)
{
    g_autofree char *origin = g_strdup_printf("%s:%u", file, lineno);
    char *eq, *key;
    const KeyDef *k;
    Entry *e;

    g_strstrip(line);
    if (!*line || *line == '#')
        return true;
    if (!(eq = strchr(line, '='))) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "config: %s: '%s' is not KEY=VALUE: write it as "
                    "KEY=VALUE, or start a comment with '#'", origin, line);
        return false;
    }
    *eq = '\0';
    key = g_strstrip(line);
    if (!(k = key_def(key))) {
        g_autofree char *known = g_strjoinv(", ", (char **)vs_config_keys());
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "config: %s: unknown key '%s': remove it or use one "
                    "of %s (see virtsnap(1), CONFIGURATION FILE)", origin, key, known);
        return false;
    }
    if ((e = g_hash_table_lookup(c->entries, k->key))) {
        bad(error, origin, k->key, "given again (first at %s): keep one", e->origin);
        return false;
    }
    e = g_new0(Entry, 1);
    e->value = unquote(g_strstrip(eq + 1));
    e->origin = g_steal_pointer(&origin);
    g_hash_table_insert(c->entries, (char *)k->key, e);
    return check_value(k, e->value, e->origin, e, error);
}

VsConfig *
vs_config_parse(const char *file, const char *text, gssize len, const char *const *envp, GError **error)
{
    g_autoptr(VsConfig) c = g_new0(VsConfig, 1);
    g_auto(GStrv) lines = NULL;
    g_autofree char *copy = NULL;

    c->file = g_strdup(file);
    c->entries = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)entry_free);
    if (text) {
        copy = len < 0 ? g_strdup(text) : g_strndup(text, len);
        if ((len >= 0 && memchr(text, '\0', len)) || !g_utf8_validate(copy, -1, NULL)) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "config: %s: not a text file (a NUL byte or "
                        "invalid UTF-8)", file ? file : "(text)");
            return NULL;
        }
        lines = g_strsplit(copy, "\n", -1);
        for (guint i = 0; lines[i]; i++)
            if (!parse_line(c, file ? file : "(text)", i + 1, lines[i], error))
                return NULL;
    }
    for (size_t i = 0; envp && i < G_N_ELEMENTS(keys); i++) {
        const char *v = g_environ_getenv((char **)envp, keys[i].key);
        Entry *e;

        if (!v || !*v)
            continue;
        e = g_new0(Entry, 1);
        e->value = g_strdup(v);
        e->origin = g_strdup("environment");
        g_hash_table_replace(c->entries, (char *)keys[i].key, e);
        if (!check_value(&keys[i], e->value, e->origin, e, error))
            return NULL;
    }
    return g_steal_pointer(&c);
}

VsConfig *
vs_config_load(const char *path, GError **error)
{
    const char *file = path ? path : VS_CONFIG_DEFAULT;
    g_autofree char *text = NULL;
    g_auto(GStrv) env = g_get_environ();
    gsize len = 0;

    if (!vs_read_trusted_file(file, "config", "it names paths virtsnap uses as root", !path, &text, &len,
                              error))
        return NULL;
    return vs_config_parse(text ? file : NULL, text, text ? (gssize)len : 0, (const char *const *)env, error);
}

const char *
vs_config_file(const VsConfig *c)
{
    return c ? c->file : NULL;
}

static const Entry *
entry_of(const VsConfig *c, const char *key)
{
    g_return_val_if_fail(key_def(key) != NULL, NULL);
    return c ? g_hash_table_lookup(c->entries, key) : NULL;
}

const char *
vs_config_get(const VsConfig *c, const char *key)
{
    const Entry *e = entry_of(c, key);

    return e ? e->value : NULL;
}

const char *
vs_config_value(const VsConfig *c, const char *key, const char *option)
{
    return option ? option : vs_config_get(c, key);
}

int
vs_config_int(const VsConfig *c, const char *key, int dflt)
{
    const char *v = vs_config_get(c, key);

    return v ? (int)g_ascii_strtoll(v, NULL, 10) : dflt;
}

double
vs_config_double(const VsConfig *c, const char *key, double dflt)
{
    const char *v = vs_config_get(c, key);

    return v ? g_ascii_strtod(v, NULL) : dflt;
}

bool
vs_config_bool(const VsConfig *c, const char *key, bool dflt)
{
    const char *v = vs_config_get(c, key);

    return v ? (v[0] == 'Y' || v[0] == 'y') : dflt;
}

const char *const *
vs_config_names(const VsConfig *c, const char *key)
{
    const Entry *e = entry_of(c, key);

    return e ? (const char *const *)e->names : NULL;
}

const char *
vs_config_origin(const VsConfig *c, const char *key)
{
    const Entry *e = entry_of(c, key);

    return e ? e->origin : NULL;
}

void
vs_config_error(const VsConfig *c, const char *key, GError **error, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;
    const char *origin = vs_config_origin(c, key);

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "config: %s: %s: %s", origin ? origin : "(unset)", key, msg);
}
