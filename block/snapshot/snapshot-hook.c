/* The hook provider: any storage an administrator can snapshot from a script
 * (an array's REST API or CLI, a target's admin tool), through an executable
 * run once per operation under the contract in vs-snapshot.h: the disk's
 * location in VIRTSNAP_* environment variables (and nothing else of ours: a
 * secret in virtsnap's environment must not reach it), `key=value` lines back,
 * bounded by a timeout and retried as configured. Everything it prints is
 * checked before use: a handle goes into repositories, a path or URL is
 * opened as root. */
#include <string.h>
#include <sys/wait.h>
#include "snapshot-internal.h"
#include "vs-interrupt.h"

/* The hook's exit code for "this operation is not supported". */
#define HOOK_EXIT_UNSUPPORTED 3

typedef struct {
    char *path;
    char *config_file;
    unsigned timeout_ms, retries, retry_delay_ms;
} Hook;

/* One operation's request: what goes into the environment besides the disk. */
typedef struct {
    const char *op;
    const char *label, *handle, *clone_name;
} HookCall;

static void
env_add(GPtrArray *env, const char *key, const char *value)
{
    if (value)
        g_ptr_array_add(env, g_strdup_printf("%s=%s", key, value));
}

static char **
hook_env(const Hook *h, const VsSnapLocation *loc, const HookCall *c, unsigned attempt)
{
    GPtrArray *env = g_ptr_array_new();
    g_autofree char *att = g_strdup_printf("%u", attempt);
    g_autofree char *lun = loc->iscsi_lun >= 0 ? g_strdup_printf("%d", loc->iscsi_lun) : NULL;

    env_add(env, "PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    env_add(env, "VIRTSNAP_SNAP_OP", c->op);
    env_add(env, "VIRTSNAP_SNAP_LABEL", c->label);
    env_add(env, "VIRTSNAP_SNAP_HANDLE", c->handle);
    env_add(env, "VIRTSNAP_CLONE_NAME", c->clone_name);
    env_add(env, "VIRTSNAP_SNAP_ATTEMPT", att);
    env_add(env, "VIRTSNAP_DISK", loc->disk);
    env_add(env, "VIRTSNAP_DISK_KIND", vs_snap_loc_kind_name(loc->kind));
    env_add(env, "VIRTSNAP_DISK_PATH", loc->path);
    env_add(env, "VIRTSNAP_POOL", loc->pool);
    env_add(env, "VIRTSNAP_VOLUME", loc->volume);
    env_add(env, "VIRTSNAP_NFS_SERVER", loc->nfs_server);
    env_add(env, "VIRTSNAP_NFS_EXPORT", loc->nfs_export);
    env_add(env, "VIRTSNAP_NFS_PATH", loc->nfs_path);
    env_add(env, "VIRTSNAP_ISCSI_PORTAL", loc->iscsi_portal);
    env_add(env, "VIRTSNAP_ISCSI_IQN", loc->iscsi_iqn);
    env_add(env, "VIRTSNAP_ISCSI_LUN", lun);
    env_add(env, "VIRTSNAP_WWID", loc->wwid);
    env_add(env, "VIRTSNAP_RBD_POOL", loc->rbd_pool);
    env_add(env, "VIRTSNAP_RBD_IMAGE", loc->rbd_image);
    env_add(env, "VIRTSNAP_RBD_CONF", loc->rbd_conf);
    env_add(env, "VIRTSNAP_RBD_USER", loc->rbd_user);
    env_add(env, "VIRTSNAP_HOOK_CONFIG", h->config_file);
    g_ptr_array_add(env, NULL);
    return (char **)g_ptr_array_free(env, FALSE);
}

/* stdout as key=value lines into a table; false (with the bad line, escaped,
 * in *WHY) for anything else. */
static GHashTable *
parse_output(const GString *out, char **why)
{
    g_autoptr(GHashTable) kv = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    g_auto(GStrv) lines = NULL;

    if (memchr(out->str, 0, out->len)) {
        *why = g_strdup("a NUL byte in its output");
        return NULL;
    }
    lines = g_strsplit(out->str, "\n", -1);
    for (char **l = lines; *l; l++) {
        const char *eq = strchr(*l, '=');
        g_autofree char *key = eq ? g_strndup(*l, eq - *l) : NULL;
        bool ok = key && *key && !g_hash_table_contains(kv, key);

        for (const char *k = key; ok && *k; k++)
            ok = g_ascii_islower(*k) || *k == '_';
        if (**l == '\0')
            continue;
        if (!ok) {
            g_autofree char *shown = snap_escape(*l, 80);
            *why = g_strdup_printf("a line that is not a new key=value: \"%s\"", shown);
            return NULL;
        }
        g_hash_table_insert(kv, g_steal_pointer(&key), g_strdup(eq + 1));
    }
    return g_steal_pointer(&kv);
}

/* Why one attempt failed, NULL if it did not. *CODE: the error code. */
static char *
attempt_failure(const SnapHookRun *run, const Hook *h, int *code)
{
    *code = VS_ERROR_FAILED;
    if (run->timed_out) {
        *code = VS_ERROR_TIMEOUT;
        return g_strdup_printf("killed with its process group after %u ms (timeout)", h->timeout_ms);
    }
    if (WIFSIGNALED(run->status))
        return g_strdup_printf("killed by signal %d", WTERMSIG(run->status));
    if (WEXITSTATUS(run->status) == HOOK_EXIT_UNSUPPORTED) {
        *code = VS_ERROR_UNSUPPORTED;
        return g_strdup("exit code 3: the hook does not support this operation");
    }
    if (WEXITSTATUS(run->status) != 0)
        return g_strdup_printf("exit code %d", WEXITSTATUS(run->status));
    if (run->out_overflow)
        return g_strdup_printf("more than %d bytes on stdout", SNAP_HOOK_OUT_MAX);
    return NULL;
}

/* Runs the hook for C, retrying as configured; the key=value table of the
 * attempt that succeeded. CHECK (may be NULL) vets that table; its failure
 * counts as the attempt's. */
typedef bool (*HookCheck)(GHashTable *kv, char **why);

static GHashTable *
hook_call(const Hook *h, const VsSnapLocation *loc, const HookCall *c, HookCheck check, GError **error)
{
    g_autofree char *why = NULL;
    g_autofree char *stderr_shown = NULL;
    int code = VS_ERROR_FAILED;
    unsigned attempt;

    for (attempt = 1; attempt <= h->retries + 1; attempt++) {
        char *argv[] = {h->path, (char *)c->op, NULL};
        g_auto(GStrv) env = hook_env(h, loc, c, attempt);
        g_autoptr(GHashTable) kv = NULL;
        SnapHookRun run;

        g_clear_pointer(&why, g_free);
        if (attempt > 1)
            g_usleep((gulong)h->retry_delay_ms * 1000);
        if (!snap_hook_run(argv, env, h->timeout_ms, &run, error)) {
            vs_error_prefix(error, "snapshot: %s: hook %s %s", loc->disk, h->path, c->op);
            return NULL;
        }
        g_clear_pointer(&stderr_shown, g_free);
        stderr_shown = snap_escape(run.err->str, 512);
        why = attempt_failure(&run, h, &code);
        if (!why && !(kv = parse_output(run.out, &why)))
            code = VS_ERROR_FAILED;
        else if (!why && check && !check(kv, &why))
            code = VS_ERROR_FAILED;
        snap_hook_run_clear(&run);
        if (!why)
            return g_steal_pointer(&kv);
        /* An interrupted run lets a running hook finish (a killed create could
         * leave a snapshot nobody knows) but starts no new attempt. */
        if (code == VS_ERROR_UNSUPPORTED || vs_interrupted())
            break;
    }
    g_set_error(error, VS_ERROR, code, "snapshot: %s: hook %s %s: %s (attempt %u of %u)%s%s%s", loc->disk, h->path,
                c->op, why, MIN(attempt, h->retries + 1), h->retries + 1, *stderr_shown ? "; stderr: \"" : "",
                stderr_shown, *stderr_shown ? "\"" : "");
    return NULL;
}

static bool
check_handle(GHashTable *kv, char **why)
{
    const char *handle = g_hash_table_lookup(kv, "handle");
    g_autoptr(GError) err = NULL;

    if (!handle) {
        *why = g_strdup("no handle=... line");
        return false;
    }
    if (!vs_snap_handle_check(handle, &err)) {
        *why = g_strdup_printf("printed a bad handle (%s)", err->message);
        return false;
    }
    return true;
}

/* path=P (absolute, no ".." component) or url=U (a scheme the sources read);
 * never a control character. */
static bool
check_where(GHashTable *kv, char **why)
{
    static const char *const schemes[] = {"nfs://", "iscsi://", "nbd://", "nbd+unix://", "file://", "rbd:"};
    const char *path = g_hash_table_lookup(kv, "path"), *url = g_hash_table_lookup(kv, "url");
    const char *v = path ? path : url;
    bool ok = v && strlen(v) < 4096 && (!path || !url);

    for (const char *s = v; ok && *s; s++)
        ok = !g_ascii_iscntrl(*s);
    if (ok && path)
        ok = g_path_is_absolute(path) && !strstr(path, "/../") && !g_str_has_suffix(path, "/..");
    if (ok && url) {
        ok = false;
        for (size_t i = 0; i < G_N_ELEMENTS(schemes); i++)
            ok = ok || g_str_has_prefix(url, schemes[i]);
    }
    if (!ok) {
        g_autofree char *shown = snap_escape(v ? v : "", 80);
        *why = g_strdup_printf("wanted one absolute path=... or url=nfs://, iscsi://, nbd://, file://, rbd:..., "
                               "got \"%s\"", shown);
    }
    return ok;
}

static bool
check_exists(GHashTable *kv, char **why)
{
    const char *v = g_hash_table_lookup(kv, "exists");

    if (v && (!strcmp(v, "yes") || !strcmp(v, "no")))
        return true;
    *why = g_strdup("no exists=yes or exists=no line");
    return false;
}

static char *
hook_create(VsSnapProvider *p, const VsSnapLocation *loc, const char *label, GError **error)
{
    HookCall c = {.op = "create", .label = label};
    g_autoptr(GHashTable) kv = hook_call(p->priv, loc, &c, check_handle, error);

    return kv ? g_strdup(g_hash_table_lookup(kv, "handle")) : NULL;
}

static bool
hook_simple(VsSnapProvider *p, const VsSnapLocation *loc, const char *op, const char *handle, GError **error)
{
    HookCall c = {.op = op, .handle = handle};
    g_autoptr(GHashTable) kv = hook_call(p->priv, loc, &c, NULL, error);

    return kv != NULL;
}

static bool
hook_delete(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, GError **error)
{
    return hook_simple(p, loc, "delete", handle, error);
}

static bool
hook_rollback(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, GError **error)
{
    return hook_simple(p, loc, "rollback", handle, error);
}

static char *
where_of(GHashTable *kv)
{
    const char *path = g_hash_table_lookup(kv, "path");

    return g_strdup(path ? path : g_hash_table_lookup(kv, "url"));
}

static char *
hook_clone(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, const char *name, GError **error)
{
    HookCall c = {.op = "clone", .handle = handle, .clone_name = name};
    g_autoptr(GHashTable) kv = hook_call(p->priv, loc, &c, check_where, error);

    return kv ? where_of(kv) : NULL;
}

static char *
hook_expose(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, bool *image_only, GError **error)
{
    HookCall c = {.op = "expose", .handle = handle};
    g_autoptr(GHashTable) kv = hook_call(p->priv, loc, &c, check_where, error);

    if (!kv)
        return NULL;
    *image_only = g_strcmp0(g_hash_table_lookup(kv, "image_only"), "1") == 0;
    return where_of(kv);
}

static bool
hook_exists(VsSnapProvider *p, const VsSnapLocation *loc, const char *handle, bool *exists, GError **error)
{
    HookCall c = {.op = "exists", .handle = handle};
    g_autoptr(GHashTable) kv = hook_call(p->priv, loc, &c, check_exists, error);

    if (kv)
        *exists = !strcmp(g_hash_table_lookup(kv, "exists"), "yes");
    return kv != NULL;
}

/* controller=C and volume=V: 1..255 bytes each, no ';' (it ends a mapping's
 * entry) and no control character (they go into one output line). */
static bool
check_located(GHashTable *kv, char **why)
{
    static const char *const keys[] = {"controller", "volume"};

    for (size_t i = 0; i < G_N_ELEMENTS(keys); i++) {
        const char *v = g_hash_table_lookup(kv, keys[i]);
        bool ok = v && *v && strlen(v) <= 255 && !strchr(v, ';');

        for (const char *s = v; ok && *s; s++)
            ok = !g_ascii_iscntrl(*s);
        if (!ok) {
            g_autofree char *shown = snap_escape(v ? v : "", 80);
            *why = v ? g_strdup_printf("printed a bad %s (1 to 255 bytes, no ';', no control characters): \"%s\"",
                                       keys[i], shown)
                     : g_strdup_printf("no %s=... line", keys[i]);
            return false;
        }
    }
    return true;
}

static bool
hook_locate(VsSnapProvider *p, const VsSnapLocation *loc, char **controller, char **volume, GError **error)
{
    HookCall c = {.op = "locate"};
    g_autoptr(GHashTable) kv = hook_call(p->priv, loc, &c, check_located, error);

    if (!kv)
        return false;
    *controller = g_strdup(g_hash_table_lookup(kv, "controller"));
    *volume = g_strdup(g_hash_table_lookup(kv, "volume"));
    return true;
}

static void
hook_free(VsSnapProvider *p)
{
    Hook *h = p->priv;

    g_free(h->path);
    g_free(h->config_file);
    g_free(h);
}

static const VsSnapOps hook_ops = {
    .name = "hook",
    .create = hook_create,
    .delete = hook_delete,
    .rollback = hook_rollback,
    .clone = hook_clone,
    .expose = hook_expose,
    .exists = hook_exists,
    .locate = hook_locate,
    .free = hook_free,
};

VsSnapProvider *
vs_snap_hook_new(const VsSnapHookConfig *config, GError **error)
{
    VsSnapProvider *p;
    Hook *h;

    if (!config->path || !g_path_is_absolute(config->path) ||
        !g_file_test(config->path, G_FILE_TEST_IS_EXECUTABLE) || g_file_test(config->path, G_FILE_TEST_IS_DIR)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "snapshot: hook %s: not an executable file named by an absolute path",
                    config->path ? config->path : "(none)");
        return NULL;
    }
    h = g_new0(Hook, 1);
    h->path = g_strdup(config->path);
    h->config_file = g_strdup(config->config_file);
    h->timeout_ms = config->timeout_ms ? config->timeout_ms : 60000;
    h->retries = config->retries;
    h->retry_delay_ms = config->retry_delay_ms;
    p = g_new0(VsSnapProvider, 1);
    p->ops = &hook_ops;
    p->priv = h;
    return p;
}
