/* Which provider, hook and snapshot directory each disk's storage snapshots
 * get, as the administrator's configuration file says per libvirt pool
 * (vs-snapshot.h documents the file), and the provider that made a snapshot a
 * repository recorded. The file names executables virtsnap runs as root: it
 * is refused unless root (or the caller) owns it and nobody else can write
 * it, and every key is checked when it is read, so that a typo is an error
 * naming the file, the group and the key rather than a hook silently not run
 * in the middle of a backup. */
#include <errno.h>
#include <string.h>
#include "snapshot-internal.h"
#include "vs-trusted.h"

typedef struct {
    VsSnapHookConfig hook;   /* hook.path NULL: none */
    char *hook_path, *hook_config;
    char *provider;          /* auto, reflink, btrfs, rbd, hook, none */
    char *snapshot_dir;
} Group;

struct _VsSnapConfig {
    char *file;
    Group defaults;
    GHashTable *pools;       /* pool name -> Group* */
};

static void
group_clear(Group *g)
{
    g_free(g->hook_path);
    g_free(g->hook_config);
    g_free(g->provider);
    g_free(g->snapshot_dir);
}

static void
group_free(Group *g)
{
    group_clear(g);
    g_free(g);
}

void
vs_snap_config_free(VsSnapConfig *c)
{
    if (!c)
        return;
    g_free(c->file);
    group_clear(&c->defaults);
    g_clear_pointer(&c->pools, g_hash_table_unref);
    g_free(c);
}

static bool
bad_key(GError **error, const char *file, const char *group, const char *key, const char *why)
{
    g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "snapshot config: %s: [%s] %s: %s", file, group,
                key, why);
    return false;
}

/* One group's keys into G; INHERIT (the defaults, or NULL) fills what G omits. */
static bool
read_group(GKeyFile *kf, const char *file, const char *group, const Group *inherit, Group *g, GError **error)
{
    static const char *const keys[] = { "provider", "hook", "hook-config", "timeout", "retries", "retry-delay",
                                        "snapshot-dir", NULL };
    static const char *const providers[] = { "auto", "reflink", "btrfs", "rbd", "hook", "none", NULL };
    g_auto(GStrv) present = g_key_file_get_keys(kf, group, NULL, NULL);
    struct { const char *key; char **out; } paths[] = {
        { "hook", &g->hook_path }, { "hook-config", &g->hook_config }, { "snapshot-dir", &g->snapshot_dir },
    };
    struct { const char *key; unsigned max, scale; unsigned *out; } nums[] = {
        { "timeout", 86400, 1000, &g->hook.timeout_ms },
        { "retries", 100, 1, &g->hook.retries },
        { "retry-delay", 3600, 1000, &g->hook.retry_delay_ms },
    };

    for (guint i = 0; present && present[i]; i++)
        if (!g_strv_contains(keys, present[i]))
            return bad_key(error, file, group, present[i], "unknown key (known: provider, hook, hook-config, "
                           "timeout, retries, retry-delay, snapshot-dir)");
    if (inherit) {
        g->hook = inherit->hook;
        g->hook_path = g_strdup(inherit->hook_path);
        g->hook_config = g_strdup(inherit->hook_config);
        g->provider = g_strdup(inherit->provider);
        g->snapshot_dir = g_strdup(inherit->snapshot_dir);
    }
    for (guint i = 0; i < G_N_ELEMENTS(paths); i++) {
        g_autofree char *v = g_key_file_get_string(kf, group, paths[i].key, NULL);
        if (!v)
            continue;
        g_strstrip(v);
        if (!g_path_is_absolute(v) || strstr(v, "/../") || g_str_has_suffix(v, "/.."))
            return bad_key(error, file, group, paths[i].key, "not an absolute path without \"..\"");
        g_free(*paths[i].out);
        *paths[i].out = g_steal_pointer(&v);
    }
    for (guint i = 0; i < G_N_ELEMENTS(nums); i++) {
        g_autofree char *v = g_key_file_get_string(kf, group, nums[i].key, NULL);
        char *end = NULL;
        guint64 n;

        if (!v)
            continue;
        g_strstrip(v);
        errno = 0;
        n = g_ascii_strtoull(v, &end, 10);
        if (!*v || *end || errno || n > nums[i].max) {
            g_autofree char *why = g_strdup_printf("\"%s\" is not a whole number from 0 to %u", v, nums[i].max);
            return bad_key(error, file, group, nums[i].key, why);
        }
        *nums[i].out = (unsigned)n * nums[i].scale;
    }
    {
        g_autofree char *v = g_key_file_get_string(kf, group, "provider", NULL);
        if (v) {
            g_strstrip(v);
            if (!g_strv_contains(providers, v))
                return bad_key(error, file, group, "provider", "not auto, reflink, btrfs, rbd, hook or none");
            g_free(g->provider);
            g->provider = g_steal_pointer(&v);
        }
    }
    if (!g->provider)
        g->provider = g_strdup("auto");
    if (!g_strcmp0(g->provider, "hook") && !g->hook_path)
        return bad_key(error, file, group, "provider", "hook, but no hook= names the executable");
    g->hook.path = g->hook_path;
    g->hook.config_file = g->hook_config;
    return true;
}

VsSnapConfig *
vs_snap_config_load(const char *path, GError **error)
{
    g_autoptr(VsSnapConfig) c = g_new0(VsSnapConfig, 1);
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_autoptr(GError) err = NULL;
    g_auto(GStrv) groups = NULL;
    g_autofree char *text = NULL;
    const char *file = path ? path : VS_SNAP_CONFIG_DEFAULT;
    gsize len = 0;

    c->file = g_strdup(file);
    c->pools = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)group_free);
    c->defaults.provider = g_strdup("auto");
    if (!vs_read_trusted_file(file, "snapshot config", "it names programs virtsnap runs as root", !path, &text,
                              &len, error))
        return NULL;
    if (!text)
        return g_steal_pointer(&c);
    if (!g_key_file_load_from_data(kf, text, len, G_KEY_FILE_NONE, &err)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "snapshot config: %s: %s", file, err->message);
        return NULL;
    }
    g_free(c->defaults.provider);
    c->defaults.provider = NULL;
    if (g_key_file_has_group(kf, "defaults")) {
        if (!read_group(kf, file, "defaults", NULL, &c->defaults, error))
            return NULL;
    } else {
        c->defaults.provider = g_strdup("auto");
    }
    groups = g_key_file_get_groups(kf, NULL);
    for (guint i = 0; groups[i]; i++) {
        const char *name = groups[i];
        Group *g;

        if (!strcmp(name, "defaults"))
            continue;
        if (!g_str_has_prefix(name, "pool:") || !name[5]) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "snapshot config: %s: [%s]: unknown group "
                        "(known: [defaults], [pool:NAME])", file, name);
            return NULL;
        }
        g = g_new0(Group, 1);
        g_hash_table_insert(c->pools, g_strdup(name + 5), g);
        if (!read_group(kf, file, name, &c->defaults, g, error))
            return NULL;
    }
    return g_steal_pointer(&c);
}

const char *
vs_snap_config_file(const VsSnapConfig *c)
{
    return c && c->file ? c->file : VS_SNAP_CONFIG_DEFAULT;
}

static const Group *
group_for(const VsSnapConfig *c, const char *pool)
{
    const Group *g = pool ? g_hash_table_lookup(c->pools, pool) : NULL;

    return g ? g : &c->defaults;
}

void
vs_snap_config_for(const VsSnapConfig *c, const VsSnapLocation *loc, VsSnapSettings *out)
{
    const Group *g;

    *out = (VsSnapSettings){ .provider = "auto" };
    if (!c)
        return;
    g = group_for(c, loc->pool);
    out->hook = g->hook.path ? &g->hook : NULL;
    out->provider = g->provider ? g->provider : "auto";
    out->snapshot_dir = g->snapshot_dir;
}

/* The reflink/btrfs directory for a file disk: the configured one, else the
 * disk's own directory. */
static char *
fs_dir(const VsSnapSettings *s, const VsSnapLocation *loc)
{
    if (s->snapshot_dir)
        return g_strdup(s->snapshot_dir);
    return loc->kind == VS_SNAP_LOC_FILE && loc->path ? g_path_get_dirname(loc->path) : NULL;
}

VsSnapProvider *
vs_snap_config_choose(const VsSnapConfig *c, const VsSnapLocation *loc, const char *want, char **snapshot_dir,
                      GError **error)
{
    VsSnapSettings s;
    g_autofree char *dir = NULL;
    const char *name;

    *snapshot_dir = NULL;
    vs_snap_config_for(c, loc, &s);
    name = want && strcmp(want, "auto") != 0 ? want : s.provider;
    if (!strcmp(name, "none")) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED, "snapshot: %s: the snapshot configuration "
                    "(%s) says provider=none for its pool", loc->disk, c ? c->file : "?");
        return NULL;
    }
    dir = fs_dir(&s, loc);
    if (!strcmp(name, "auto")) {
        VsSnapProvider *p = vs_snap_choose(loc, s.hook, dir, error);
        const char *pn = p ? vs_snap_provider_name(p) : NULL;

        if (pn && (!strcmp(pn, "reflink") || !strcmp(pn, "btrfs")))
            *snapshot_dir = g_steal_pointer(&dir);
        return p;
    }
    if (!strcmp(name, "hook")) {
        if (!s.hook) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "snapshot: %s: --storage-snapshot=hook, but no "
                        "hook is configured for %s%s in %s: add hook=/path/to/hook there", loc->disk,
                        loc->pool ? "pool " : "its disks", loc->pool ? loc->pool : "", c ? c->file : VS_SNAP_CONFIG_DEFAULT);
            return NULL;
        }
        return vs_snap_hook_new(s.hook, error);
    }
    if (!strcmp(name, "rbd")) {
        if (loc->kind != VS_SNAP_LOC_RBD) {
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED, "snapshot: %s: rbd asked for a %s disk: only "
                        "Ceph RBD images have RBD snapshots", loc->disk, vs_snap_loc_kind_name(loc->kind));
            return NULL;
        }
        return vs_snap_rbd_new(error);
    }
    if (!strcmp(name, "reflink") || !strcmp(name, "btrfs")) {
        VsSnapProvider *p;

        if (loc->kind != VS_SNAP_LOC_FILE || !dir) {
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED, "snapshot: %s: %s asked for a %s disk: only a "
                        "file on a local XFS or btrfs file system can be reflinked", loc->disk, name,
                        vs_snap_loc_kind_name(loc->kind));
            return NULL;
        }
        p = !strcmp(name, "reflink") ? vs_snap_reflink_new(dir, error) : vs_snap_btrfs_new(dir, error);
        if (p)
            *snapshot_dir = g_steal_pointer(&dir);
        return p;
    }
    g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "snapshot: %s: unknown provider \"%s\" (auto, reflink, "
                "btrfs, rbd, hook)", loc->disk, name);
    return NULL;
}

VsManifestSnapshot *
vs_snap_record_from_location(const VsSnapLocation *loc, const char *provider, const char *snapshot_dir)
{
    VsManifestSnapshot *rec = vs_manifest_snapshot_new();

    rec->provider = g_strdup(provider);
    rec->kind = g_strdup(vs_snap_loc_kind_name(loc->kind));
    rec->path = g_strdup(loc->path);
    rec->snapshot_dir = g_strdup(snapshot_dir);
    rec->pool = g_strdup(loc->pool);
    rec->volume = g_strdup(loc->volume);
    rec->nfs_server = g_strdup(loc->nfs_server);
    rec->nfs_export = g_strdup(loc->nfs_export);
    rec->nfs_path = g_strdup(loc->nfs_path);
    rec->iscsi_portal = g_strdup(loc->iscsi_portal);
    rec->iscsi_iqn = g_strdup(loc->iscsi_iqn);
    rec->iscsi_lun = loc->iscsi_lun;
    rec->wwid = g_strdup(loc->wwid);
    rec->rbd_pool = g_strdup(loc->rbd_pool);
    rec->rbd_image = g_strdup(loc->rbd_image);
    rec->rbd_user = g_strdup(loc->rbd_user);
    return rec;
}

bool
vs_snap_location_from_record(const VsManifestSnapshot *rec, const char *disk, VsSnapLocation *loc)
{
    static const char *const kinds[] = { "file", "block", "nfs", "iscsi", "rbd" };
    bool found = false;

    *loc = (VsSnapLocation){ .disk = disk, .iscsi_lun = -1 };
    for (guint i = 0; i < G_N_ELEMENTS(kinds); i++)
        if (!g_strcmp0(rec->kind, kinds[i])) {
            loc->kind = (VsSnapLocKind)i;
            found = true;
        }
    loc->path = rec->path;
    loc->pool = rec->pool;
    loc->volume = rec->volume;
    loc->nfs_server = rec->nfs_server;
    loc->nfs_export = rec->nfs_export;
    loc->nfs_path = rec->nfs_path;
    loc->iscsi_portal = rec->iscsi_portal;
    loc->iscsi_iqn = rec->iscsi_iqn;
    loc->iscsi_lun = rec->iscsi_lun >= 0 && rec->iscsi_lun <= G_MAXINT ? (int)rec->iscsi_lun : -1;
    loc->wwid = rec->wwid;
    loc->rbd_pool = rec->rbd_pool;
    loc->rbd_image = rec->rbd_image;
    loc->rbd_user = rec->rbd_user;
    return found;
}

VsSnapProvider *
vs_snap_provider_for_record(const VsSnapConfig *c, const VsManifestSnapshot *rec, const char *disk,
                            VsSnapLocation *loc, GError **error)
{
    if (!vs_snap_location_from_record(rec, disk, loc)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "snapshot: %s: the recorded disk kind is unknown",
                    disk);
        return NULL;
    }
    if (!g_strcmp0(rec->provider, "reflink") || !g_strcmp0(rec->provider, "btrfs")) {
        if (!rec->snapshot_dir) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "snapshot: %s: the record names no snapshot "
                        "directory", disk);
            return NULL;
        }
        /* The directory is the repository's word: opened, never created. */
        return !strcmp(rec->provider, "reflink") ? snap_reflink_existing(rec->snapshot_dir, error)
                                                 : snap_btrfs_existing(rec->snapshot_dir, error);
    }
    if (!g_strcmp0(rec->provider, "rbd"))
        return vs_snap_rbd_new(error);
    if (!g_strcmp0(rec->provider, "hook")) {
        VsSnapSettings s;

        vs_snap_config_for(c, loc, &s);
        if (!s.hook) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "snapshot: %s: made by a hook, but %s configures "
                        "no hook for %s%s: name it there (hook=) to reach this snapshot", disk,
                        c ? c->file : VS_SNAP_CONFIG_DEFAULT, rec->pool ? "pool " : "its disks",
                        rec->pool ? rec->pool : "");
            return NULL;
        }
        return vs_snap_hook_new(s.hook, error);
    }
    g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "snapshot: %s: unknown provider \"%s\"", disk,
                rec->provider ? rec->provider : "");
    return NULL;
}
