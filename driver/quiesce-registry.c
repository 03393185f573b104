/* The quiesce token registry: STATE/quiesce (0700), one TOKEN.json (0600) per
 * quiesce saying which guests it froze or paused, its deadline and where it
 * stands (quiesce-internal.h's states). A token is written whole to a temp
 * file, synced and renamed into place, so that a reader never sees half of
 * one; transitions are made under the registry's lock (STATE/quiesce/.lock)
 * so that an unquiesce and a guardian at its deadline cannot both decide.
 * Everything read back is hostile until checked: a name must be a token's
 * shape before it becomes a path, a file must be a regular one of ours, and
 * every member must be what virtsnap writes. Also the per-guest steps the
 * quiesce commands share: thaw-and-ask, and resume what was paused. */
#include "config.h"
#include "quiesce-internal.h"
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOKEN_MAX 64
#define TOKEN_FILE_MAX (256 * 1024)
#define TOMBSTONE_KEEP_MS (7 * 24 * 3600 * (int64_t)1000)

static const char *const state_names[] = {
    "freezing", "quiesced", "unquiescing", "guardian-thawing", "guardian-thawed", "unquiesced",
};

const char *
vs_quiesce_state_name(VsQuiesceState s)
{
    return state_names[s];
}

bool
vs_quiesce_state_holds(VsQuiesceState s)
{
    return s != VS_QSTATE_GUARDIAN_THAWED && s != VS_QSTATE_UNQUIESCED;
}

bool
vs_quiesce_token_valid(const char *token)
{
    size_t n = token ? strlen(token) : 0;

    if (n == 0 || n > TOKEN_MAX || token[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(g_ascii_islower(token[i]) || g_ascii_isdigit(token[i]) || token[i] == '-'))
            return false;
    return true;
}

char *
vs_quiesce_token_new(void)
{
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_autofree char *ts = g_date_time_format(now, "%Y%m%d-%H%M%S");

    return g_strdup_printf("q-%s-%08x", ts, g_random_int());
}

char *
vs_quiesce_journal_id(const char *token)
{
    return g_strconcat("quiesce-", token, NULL);
}

void
vs_quiesce_domain_free(VsQuiesceDomain *d)
{
    if (!d)
        return;
    g_free(d->name);
    g_free(d->uuid);
    g_free(d->error);
    g_free(d);
}

void
vs_quiesce_token_free(VsQuiesceToken *t)
{
    if (!t)
        return;
    g_free(t->token);
    if (t->domains)
        g_ptr_array_unref(t->domains);
    g_free(t);
}

/* STATE/quiesce, made (0700) first with CREATE; without, a missing one is
 * VS_ERROR_NOT_FOUND. */
static char *
registry_dir(const char *state_dir, bool create, GError **error)
{
    g_autofree char *dir = g_build_filename(vs_state_dir(state_dir), "quiesce", NULL);
    struct stat st;

    if (create && (!vs_make_dir(vs_state_dir(state_dir), 0755, error)))
        return NULL;
    if (create && mkdir(dir, 0700) < 0 && errno != EEXIST) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "quiesce: cannot create %s: %s", dir,
                    g_strerror(errno));
        return NULL;
    }
    if (lstat(dir, &st) < 0 && errno == ENOENT) {
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND, "quiesce: no token registry %s", dir);
        return NULL;
    }
    /* Tokens decide which guests get thawed: only a directory of ours, shut
     * to everyone else, holds them. */
    if (!S_ISDIR(st.st_mode) || (st.st_uid != 0 && st.st_uid != geteuid()) ||
        (st.st_mode & 077) != 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO,
                    "quiesce: %s must be a directory owned by root or uid %u, mode 0700 "
                    "(fix it, or give another --state-dir)", dir, (unsigned)geteuid());
        return NULL;
    }
    return g_steal_pointer(&dir);
}

char *
vs_quiesce_dir(const char *state_dir, GError **error)
{
    return registry_dir(state_dir, true, error);
}

int
vs_quiesce_lock(const char *state_dir, GError **error)
{
    g_autofree char *dir = vs_quiesce_dir(state_dir, error);
    g_autofree char *path = NULL;
    int fd;

    if (!dir)
        return -1;
    path = g_build_filename(dir, ".lock", NULL);
    fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "quiesce: cannot open %s: %s", path,
                    g_strerror(errno));
        return -1;
    }
    /* Held for a read and a write of one file only: waiting is fine. */
    while (flock(fd, LOCK_EX) < 0) {
        if (errno != EINTR) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "quiesce: cannot lock %s: %s", path,
                        g_strerror(errno));
            close(fd);
            return -1;
        }
    }
    return fd;
}

static char *
token_path(const char *dir, const char *token)
{
    g_autofree char *name = g_strconcat(token, ".json", NULL);

    return g_build_filename(dir, name, NULL);
}

static void
add_domain_json(JsonBuilder *b, const VsQuiesceDomain *d)
{
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "name");
    json_builder_add_string_value(b, d->name);
    json_builder_set_member_name(b, "uuid");
    json_builder_add_string_value(b, d->uuid);
    json_builder_set_member_name(b, "frozen");
    json_builder_add_boolean_value(b, d->frozen);
    json_builder_set_member_name(b, "suspended");
    json_builder_add_boolean_value(b, d->suspended);
    json_builder_set_member_name(b, "filesystems");
    json_builder_add_int_value(b, d->filesystems);
    json_builder_set_member_name(b, "freeze_started_at");
    json_builder_add_int_value(b, d->freeze_started_at);
    json_builder_set_member_name(b, "frozen_at");
    json_builder_add_int_value(b, d->frozen_at);
    json_builder_set_member_name(b, "freeze_ms");
    json_builder_add_int_value(b, d->freeze_ms);
    json_builder_set_member_name(b, "error");
    if (d->error)
        json_builder_add_string_value(b, d->error);
    else
        json_builder_add_null_value(b);
    json_builder_end_object(b);
}

static char *
token_to_json(const VsQuiesceToken *t)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    struct { const char *key; int64_t value; } ints[] = {
        { "max_freeze_ms", t->max_freeze_ms }, { "agent_timeout", t->agent_timeout },
        { "created_at", t->created_at }, { "deadline_at", t->deadline_at },
        { "unquiesced_at", t->unquiesced_at }, { "guardian_thawed_at", t->guardian_thawed_at },
    };

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "token");
    json_builder_add_string_value(b, t->token);
    json_builder_set_member_name(b, "state");
    json_builder_add_string_value(b, vs_quiesce_state_name(t->state));
    for (size_t i = 0; i < G_N_ELEMENTS(ints); i++) {
        json_builder_set_member_name(b, ints[i].key);
        json_builder_add_int_value(b, ints[i].value);
    }
    json_builder_set_member_name(b, "deadline_kept");
    json_builder_add_boolean_value(b, t->deadline_kept);
    json_builder_set_member_name(b, "guardian_thawed");
    json_builder_add_boolean_value(b, t->guardian_thawed);
    json_builder_set_member_name(b, "domains");
    json_builder_begin_array(b);
    for (guint i = 0; i < t->domains->len; i++)
        add_domain_json(b, t->domains->pdata[i]);
    json_builder_end_array(b);
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    json_generator_set_pretty(gen, TRUE);
    return json_generator_to_data(gen, NULL);
}

bool
vs_quiesce_token_write(const char *state_dir, const VsQuiesceToken *t, GError **error)
{
    g_autofree char *dir = vs_quiesce_dir(state_dir, error);
    g_autofree char *path = NULL, *tmp = NULL, *text = NULL;
    size_t len, off = 0;
    int fd, e = 0;

    if (!dir)
        return false;
    path = token_path(dir, t->token);
    tmp = g_strconcat(path, ".tmp", NULL);
    text = token_to_json(t);
    len = strlen(text);
    unlink(tmp);
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0) {
        e = errno;
    } else {
        while (off < len && !e) {
            ssize_t w = write(fd, text + off, len - off);
            if (w < 0 && errno != EINTR)
                e = errno;
            else if (w > 0)
                off += w;
        }
        if (!e && fsync(fd) < 0)
            e = errno;
        close(fd);
        if (!e && rename(tmp, path) < 0)
            e = errno;
    }
    if (e) {
        unlink(tmp);
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "quiesce: writing %s: %s", path, g_strerror(e));
        return false;
    }
    return true;
}

/* Member KEY of O as a whole number, or FALLBACK when it is missing. */
static int64_t
int_member(JsonObject *o, const char *key, int64_t fallback, bool *ok)
{
    JsonNode *n = json_object_get_member(o, key);

    if (!n)
        return fallback;
    if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64) {
        *ok = false;
        return fallback;
    }
    return json_node_get_int(n);
}

static char *
str_member(JsonObject *o, const char *key, size_t max, bool *ok)
{
    JsonNode *n = json_object_get_member(o, key);

    if (!n || JSON_NODE_HOLDS_NULL(n))
        return NULL;
    if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING) {
        *ok = false;
        return NULL;
    }
    return vs_printable(json_node_get_string(n), max);
}

static bool
bool_member(JsonObject *o, const char *key, bool *ok)
{
    JsonNode *n = json_object_get_member(o, key);

    if (!n)
        return false;
    if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_BOOLEAN) {
        *ok = false;
        return false;
    }
    return json_node_get_boolean(n);
}

static VsQuiesceDomain *
domain_from_json(JsonNode *n, bool *ok)
{
    JsonObject *o = JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
    VsQuiesceDomain *d;

    if (!o) {
        *ok = false;
        return NULL;
    }
    d = g_new0(VsQuiesceDomain, 1);
    d->name = str_member(o, "name", 256, ok);
    d->uuid = str_member(o, "uuid", 64, ok);
    d->frozen = bool_member(o, "frozen", ok);
    d->suspended = bool_member(o, "suspended", ok);
    d->filesystems = (int)int_member(o, "filesystems", -1, ok);
    d->freeze_started_at = int_member(o, "freeze_started_at", -1, ok);
    d->frozen_at = int_member(o, "frozen_at", -1, ok);
    d->freeze_ms = int_member(o, "freeze_ms", -1, ok);
    d->error = str_member(o, "error", 4096, ok);
    if (!d->name || !vs_uuid_valid(d->uuid))
        *ok = false;
    return d;
}

static VsQuiesceToken *
token_from_json(JsonObject *o, const char *token, bool *ok)
{
    VsQuiesceToken *t = g_new0(VsQuiesceToken, 1);
    g_autofree char *name = str_member(o, "token", TOKEN_MAX + 1, ok);
    g_autofree char *state = str_member(o, "state", 32, ok);
    JsonNode *doms = json_object_get_member(o, "domains");
    gboolean known = FALSE;

    t->token = g_strdup(token);
    t->domains = g_ptr_array_new_with_free_func((GDestroyNotify)vs_quiesce_domain_free);
    for (size_t i = 0; state && i < G_N_ELEMENTS(state_names); i++)
        if (strcmp(state, state_names[i]) == 0) {
            t->state = i;
            known = TRUE;
        }
    t->max_freeze_ms = (int)int_member(o, "max_freeze_ms", 0, ok);
    t->agent_timeout = (int)int_member(o, "agent_timeout", 5, ok);
    t->created_at = int_member(o, "created_at", -1, ok);
    t->deadline_at = int_member(o, "deadline_at", -1, ok);
    t->unquiesced_at = int_member(o, "unquiesced_at", -1, ok);
    t->guardian_thawed_at = int_member(o, "guardian_thawed_at", -1, ok);
    t->deadline_kept = bool_member(o, "deadline_kept", ok);
    t->guardian_thawed = bool_member(o, "guardian_thawed", ok);
    if (!known || g_strcmp0(name, token) != 0 || !doms || !JSON_NODE_HOLDS_ARRAY(doms) ||
        t->agent_timeout < 1 || t->agent_timeout > 300 || t->max_freeze_ms < 1 ||
        t->max_freeze_ms > 3600 * 1000)
        *ok = false;
    for (guint i = 0; *ok && i < json_array_get_length(json_node_get_array(doms)); i++) {
        VsQuiesceDomain *d = domain_from_json(json_array_get_element(json_node_get_array(doms), i), ok);
        if (d)
            g_ptr_array_add(t->domains, d);
    }
    return t;
}

VsQuiesceToken *
vs_quiesce_token_read(const char *state_dir, const char *token, GError **error)
{
    g_autofree char *dir = NULL, *path = NULL, *text = NULL;
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(VsQuiesceToken) t = NULL;
    g_autoptr(GError) derr = NULL;
    JsonNode *root;
    struct stat st;
    ssize_t n;
    bool ok = true;
    int fd;

    if (!vs_quiesce_token_valid(token)) {
        g_autofree char *shown = vs_printable(token ? token : "", 80);
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "quiesce: '%s' is not a token (lower-case letters, digits and '-', as "
                    "`virtsnap quiesce` prints it)", shown);
        return NULL;
    }
    if (!(dir = registry_dir(state_dir, false, &derr))) {
        if (g_error_matches(derr, VS_ERROR, VS_ERROR_NOT_FOUND))
            g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND, "quiesce: no token %s in %s/quiesce",
                        token, vs_state_dir(state_dir));
        else
            g_propagate_error(error, g_steal_pointer(&derr));
        return NULL;
    }
    path = token_path(dir, token);
    if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
        int e = errno;
        g_set_error(error, VS_ERROR, e == ENOENT ? VS_ERROR_NOT_FOUND : VS_ERROR_IO,
                    "quiesce: no token %s in %s%s%s", token, dir, e == ENOENT ? "" : ": ",
                    e == ENOENT ? "" : g_strerror(e));
        return NULL;
    }
    text = g_malloc(TOKEN_FILE_MAX + 1);
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > TOKEN_FILE_MAX ||
        (st.st_uid != 0 && st.st_uid != geteuid()) || (n = read(fd, text, TOKEN_FILE_MAX)) < 0) {
        close(fd);
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "quiesce: %s is not a token file of virtsnap's "
                    "(a regular file of ours, at most %d bytes): remove it", path, TOKEN_FILE_MAX);
        return NULL;
    }
    close(fd);
    text[n] = '\0';
    if (!json_parser_load_from_data(parser, text, n, NULL) || !(root = json_parser_get_root(parser)) ||
        !JSON_NODE_HOLDS_OBJECT(root) ||
        !(t = token_from_json(json_node_get_object(root), token, &ok)) || !ok) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "quiesce: %s is not a token virtsnap wrote "
                    "(damaged?): run `virtsnap recover`, then remove it", path);
        return NULL;
    }
    return g_steal_pointer(&t);
}

void
vs_quiesce_token_remove(const char *state_dir, const char *token)
{
    g_autofree char *dir = registry_dir(state_dir, false, NULL);
    g_autofree char *path = NULL;

    if (!dir || !vs_quiesce_token_valid(token))
        return;
    path = token_path(dir, token);
    unlink(path);
}

static int
compare_names(gconstpointer a, gconstpointer b)
{
    return g_strcmp0(*(char *const *)a, *(char *const *)b);
}

GStrv
vs_quiesce_token_list(const char *state_dir)
{
    g_autofree char *dir = registry_dir(state_dir, false, NULL);
    g_autoptr(GDir) d = dir ? g_dir_open(dir, 0, NULL) : NULL;
    GPtrArray *out = g_ptr_array_new();
    int64_t now = g_get_real_time() / 1000;
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        g_autofree char *token = NULL;
        g_autoptr(VsQuiesceToken) t = NULL;

        if (!g_str_has_suffix(name, ".json"))
            continue;
        token = g_strndup(name, strlen(name) - strlen(".json"));
        if (!vs_quiesce_token_valid(token))
            continue;
        t = vs_quiesce_token_read(state_dir, token, NULL);
        /* A week after it was settled, nobody asks about it any more. */
        if (t && t->state == VS_QSTATE_UNQUIESCED && t->created_at >= 0 &&
            now - t->created_at > TOMBSTONE_KEEP_MS) {
            vs_quiesce_token_remove(state_dir, token);
            continue;
        }
        g_ptr_array_add(out, g_steal_pointer(&token));
    }
    g_ptr_array_sort(out, compare_names);
    g_ptr_array_add(out, NULL);
    return (GStrv)g_ptr_array_free(out, FALSE);
}

int
vs_quiesce_live(const char *state_dir, const char *token)
{
    g_autofree char *id = vs_quiesce_journal_id(token);
    g_autofree char *name = g_strconcat(id, ".jsonl", NULL);
    g_autofree char *path = g_build_filename(vs_state_dir(state_dir), "journal", name, NULL);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    int live;

    if (fd < 0)
        return 0;
    live = flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
    close(fd);
    return live;
}

/* A pause between tries of a step: 200 ms, doubling. */
static void
backoff(int attempt)
{
    g_usleep((gulong)(200 * 1000) << MIN(attempt, 5));
}

bool
vs_quiesce_resume(virDomainPtr dom, int retries, bool *resumed, GError **error)
{
    const VsControlOps *c = vs_control();

    *resumed = false;
    for (int attempt = 0;; attempt++) {
        GError *cause = NULL;
        int state = 0, reason = 0;

        if (c->domain_state(dom, &state, &reason, &cause)) {
            if (state != VIR_DOMAIN_PAUSED)
                return true;
            if (c->domain_resume(dom, &cause)) {
                *resumed = true;
                return true;
            }
        }
        if (attempt >= retries) {
            vs_control_error(error, cause, VS_ERROR_LIBVIRT, "resume: domain '%s'",
                             c->domain_name(dom));
            return false;
        }
        g_error_free(cause);
        backoff(attempt);
    }
}

bool
vs_quiesce_thaw(virDomainPtr dom, int agent_timeout, int retries, GError **error)
{
    for (int attempt = 0;; attempt++) {
        g_autoptr(GError) err = NULL;

        if (vs_agent_thaw_confirmed(dom, agent_timeout, &err))
            return true;
        if (attempt >= retries) {
            g_propagate_error(error, g_steal_pointer(&err));
            return false;
        }
        backoff(attempt);
    }
}
