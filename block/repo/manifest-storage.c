/* What a manifest records about storage beside the data (issue 15): each
 * disk's storage snapshot (provider, handle, where the disk lived) and whether
 * its data is in the repository at all, each domain's storage pools (their
 * XML, for `restore --define-pools`) and its time on overlays. Kept apart from
 * manifest.c, which owns the data half: here are their constructors, the rules
 * a record read from a repository must pass, and their JSON both ways. Every
 * member is optional in JSON, so that manifests written before still load;
 * an older virtsnap refuses a manifest that has them (unknown members), which
 * is what keeps it from taking a snapshot-only disk's empty chunk list for a
 * disk of zeros. */
#include "config.h"
#include "repo-internal.h"
#include "vs-snapshot.h"

#include <string.h>

VsManifestSnapshot *
vs_manifest_snapshot_new(void)
{
    VsManifestSnapshot *s = g_new0(VsManifestSnapshot, 1);

    s->iscsi_lun = -1;
    return s;
}

void
vs_manifest_snapshot_free(VsManifestSnapshot *s)
{
    if (!s)
        return;
    g_free(s->provider); g_free(s->handle); g_free(s->kind); g_free(s->path);
    g_free(s->snapshot_dir); g_free(s->pool); g_free(s->volume); g_free(s->nfs_server);
    g_free(s->nfs_export); g_free(s->nfs_path); g_free(s->iscsi_portal); g_free(s->iscsi_iqn);
    g_free(s->wwid); g_free(s->rbd_pool); g_free(s->rbd_image); g_free(s->rbd_user);
    g_free(s);
}

/* The string members, by JSON name, in the order they are written. */
#define SNAP_STRINGS(X) \
    X(provider) X(handle) X(kind) X(path) X(snapshot_dir) X(pool) X(volume) X(nfs_server) \
    X(nfs_export) X(nfs_path) X(iscsi_portal) X(iscsi_iqn) X(wwid) X(rbd_pool) X(rbd_image) X(rbd_user)

VsManifestSnapshot *
vs_manifest_snapshot_copy(const VsManifestSnapshot *s)
{
    VsManifestSnapshot *c;

    if (!s)
        return NULL;
    c = vs_manifest_snapshot_new();
#define COPY(f) c->f = g_strdup(s->f);
    SNAP_STRINGS(COPY)
#undef COPY
    c->iscsi_lun = s->iscsi_lun;
    c->size = s->size;
    return c;
}

void
manifest_pool_free(VsManifestPool *p)
{
    if (!p)
        return;
    g_free(p->name);
    g_free(p->xml);
    g_free(p);
}

void
vs_manifest_domain_add_pool(VsManifestDomain *d, const char *name, const char *xml)
{
    VsManifestPool *p;

    if (vs_manifest_domain_find_pool(d, name))
        return;
    p = g_new0(VsManifestPool, 1);
    p->name = g_strdup(name);
    p->xml = g_strdup(xml);
    g_ptr_array_add(d->pools, p);
}

const VsManifestPool *
vs_manifest_domain_find_pool(const VsManifestDomain *d, const char *name)
{
    for (guint i = 0; d->pools && i < d->pools->len; i++) {
        const VsManifestPool *p = d->pools->pdata[i];
        if (g_strcmp0(p->name, name) == 0)
            return p;
    }
    return NULL;
}

bool
vs_manifest_disk_check_in_repo(const char *op, const char *repo_path, const char *backup_id, const char *domain,
                               const VsManifestDisk *disk, GError **error)
{
    const VsManifestSnapshot *s = disk->snapshot;
    g_autofree char *who = NULL;

    if (disk->in_repo)
        return true;
    who = backup_id ? g_strdup_printf("backup %s, domain %s, disk %s", backup_id, domain ? domain : "?",
                                      disk->target)
                    : g_strdup_printf("disk %s", disk->target);
    g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                "%s: %s: its data is not in the repository, only in its storage snapshot (%s %s): restore it "
                "with `virtsnap restore --from-snapshot`, or copy it into the repository with `virtsnap vault "
                "--repo %s %s`", op, who, s && s->provider ? s->provider : "?", s && s->handle ? s->handle : "?",
                repo_path ? repo_path : "R", backup_id ? backup_id : "BACKUP");
    return false;
}

/* ------------------------------------------------------------------------- */
/* Rules                                                                     */

/* Text a provider or a hook's environment will see: printable, one line. */
static const char *
plain_problem(const char *s)
{
    if (!g_utf8_validate(s, -1, NULL))
        return "is not valid UTF-8";
    if (!*s || strlen(s) > 4096)
        return "is empty or longer than 4096 bytes";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return "has a control character";
    return NULL;
}

static const char *
abs_path_problem(const char *s)
{
    const char *why = plain_problem(s);

    if (why)
        return why;
    if (s[0] != '/')
        return "is not an absolute path";
    return repo_name_problem(REPO_NAME_PATH, s);
}

static bool
field_fail(JsonCheck *c, const char *path, const char *name, const char *value, const char *why)
{
    g_autofree char *shown = g_strescape(value ? value : "", NULL);

    jc_fail(c, VS_ERROR_FAILED, path, name, "\"%s\" %s", shown, why);
    return false;
}

static bool
snapshot_validate(JsonCheck *c, const char *path, const VsManifestSnapshot *s)
{
    static const char *const providers[] = { "reflink", "btrfs", "rbd", "hook", NULL };
    static const char *const kinds[] = { "file", "block", "nfs", "iscsi", "rbd", NULL };
    g_autoptr(GError) herr = NULL;
    const char *why;

    if (!s->provider || !g_strv_contains(providers, s->provider))
        return field_fail(c, path, "provider", s->provider, "is not reflink, btrfs, rbd or hook");
    if (!s->kind || !g_strv_contains(kinds, s->kind))
        return field_fail(c, path, "kind", s->kind, "is not file, block, nfs, iscsi or rbd");
    if (!s->handle || !vs_snap_handle_check(s->handle, &herr))
        return field_fail(c, path, "handle", s->handle, herr ? herr->message : "is missing");
    /* Only a hook names its own handles: a snapshot of any other provider
     * that virtsnap did not make is not one a repository may make it delete. */
    if (strcmp(s->provider, "hook") != 0 && !g_str_has_prefix(s->handle, "virtsnap-"))
        return field_fail(c, path, "handle", s->handle, "does not start with \"virtsnap-\"");
    if (s->path && (why = abs_path_problem(s->path)))
        return field_fail(c, path, "path", s->path, why);
    if (s->snapshot_dir && (why = abs_path_problem(s->snapshot_dir)))
        return field_fail(c, path, "snapshot_dir", s->snapshot_dir, why);
    if (s->nfs_path && (why = repo_name_problem(REPO_NAME_PATH, s->nfs_path)))
        return field_fail(c, path, "nfs_path", s->nfs_path, why);
#define PLAIN(f) \
    if (s->f && (why = plain_problem(s->f))) \
        return field_fail(c, path, #f, s->f, why);
    SNAP_STRINGS(PLAIN)
#undef PLAIN
    /* librbd and libvirt take these as names: no separators of their own. */
    if (s->rbd_pool && strpbrk(s->rbd_pool, "/@:"))
        return field_fail(c, path, "rbd_pool", s->rbd_pool, "has '/', '@' or ':'");
    if (s->rbd_image && strpbrk(s->rbd_image, "/@:"))
        return field_fail(c, path, "rbd_image", s->rbd_image, "has '/', '@' or ':'");
    if (s->rbd_user && strpbrk(s->rbd_user, "/@:= "))
        return field_fail(c, path, "rbd_user", s->rbd_user, "has '/', '@', ':', '=' or a space");
    if (s->pool && (why = repo_name_problem(REPO_NAME_DOMAIN, s->pool)))
        return field_fail(c, path, "pool", s->pool, why);
    if (s->iscsi_lun < -1 || s->iscsi_lun > 16383) {
        jc_fail(c, VS_ERROR_FAILED, path, "iscsi_lun", "%" G_GINT64_FORMAT " is not -1 to 16383", s->iscsi_lun);
        return false;
    }
    if (!strcmp(s->kind, "file") && !s->path)
        return field_fail(c, path, "path", NULL, "is missing for a file disk");
    if ((!strcmp(s->provider, "reflink") || !strcmp(s->provider, "btrfs")) &&
        (strcmp(s->kind, "file") || !s->snapshot_dir))
        return field_fail(c, path, "snapshot_dir", s->snapshot_dir,
                          "is missing, or the disk is not a file, for a reflink or btrfs snapshot");
    if (!strcmp(s->provider, "rbd") && (!s->rbd_pool || !s->rbd_image))
        return field_fail(c, path, "rbd_image", s->rbd_image, "or rbd_pool is missing for an rbd snapshot");
    return true;
}

bool
manifest_storage_validate_disk(JsonCheck *c, const char *path, const VsManifestDisk *disk)
{
    g_autofree char *sp = g_strdup_printf("%s.snapshot", path);

    if (disk->snapshot && !snapshot_validate(c, sp, disk->snapshot))
        return false;
    if (!disk->in_repo && !disk->snapshot) {
        jc_fail(c, VS_ERROR_FAILED, path, "in_repo", "false, but the disk has no snapshot: its data is nowhere");
        return false;
    }
    if (!disk->in_repo && disk->chunks->len) {
        jc_fail(c, VS_ERROR_FAILED, path, "in_repo", "false, but the disk has chunks");
        return false;
    }
    return true;
}

bool
manifest_storage_validate_domain(JsonCheck *c, const char *path, const VsManifestDomain *d)
{
    for (guint i = 0; d->pools && i < d->pools->len; i++) {
        const VsManifestPool *p = d->pools->pdata[i];
        g_autofree char *pp = g_strdup_printf("%s.pools[%u]", path, i);
        const char *why = repo_name_problem(REPO_NAME_DOMAIN, p->name ? p->name : "");

        if (!p->name || why)
            return field_fail(c, pp, "name", p->name, why ? why : "is missing");
        if (!p->xml || !g_utf8_validate(p->xml, -1, NULL))
            return field_fail(c, pp, "xml", p->name, "is missing or not valid UTF-8");
        for (guint k = 0; k < i; k++)
            if (!strcmp(((VsManifestPool *)d->pools->pdata[k])->name, p->name))
                return field_fail(c, pp, "name", p->name, "appears twice");
    }
    if (d->overlay_ms < -1) {
        jc_fail(c, VS_ERROR_FAILED, path, "overlay_ms", "negative");
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------------- */
/* JSON                                                                      */

void
manifest_storage_put_disk(GString *s, const VsManifestDisk *disk)
{
    const VsManifestSnapshot *sn = disk->snapshot;

    if (!disk->in_repo)
        g_string_append(s, ",\n          \"in_repo\": false");
    if (!sn)
        return;
    g_string_append(s, ",\n          \"snapshot\": {");
    bool first = true;
#define PUT(f) \
    if (sn->f) { \
        g_string_append_printf(s, "%s\"" #f "\": ", first ? "" : ", "); \
        repo_json_put_str(s, sn->f); \
        first = false; \
    }
    SNAP_STRINGS(PUT)
#undef PUT
    if (sn->iscsi_lun >= 0)
        g_string_append_printf(s, ", \"iscsi_lun\": %" G_GINT64_FORMAT, sn->iscsi_lun);
    if (sn->size)
        g_string_append_printf(s, ", \"size\": %" G_GUINT64_FORMAT, sn->size);
    g_string_append(s, "}");
}

void
manifest_storage_put_domain(GString *s, const VsManifestDomain *d)
{
    if (d->overlay_ms >= 0)
        g_string_append_printf(s, ",\n      \"overlay_ms\": %" G_GINT64_FORMAT, d->overlay_ms);
    if (!d->pools || !d->pools->len)
        return;
    g_string_append(s, ",\n      \"pools\": [");
    for (guint i = 0; i < d->pools->len; i++) {
        const VsManifestPool *p = d->pools->pdata[i];

        g_string_append(s, i ? ",\n        {\"name\": " : "\n        {\"name\": ");
        repo_json_put_str(s, p->name);
        g_string_append(s, ", \"xml\": ");
        repo_json_put_str(s, p->xml);
        g_string_append(s, "}");
    }
    g_string_append(s, "\n      ]");
}

static bool
optional_string(JsonCheck *c, JsonObject *o, const char *path, const char *name, char **out)
{
    return !json_object_has_member(o, name) || jc_string(c, o, path, name, true, out);
}

static bool
parse_snapshot(JsonCheck *c, JsonObject *o, const char *path, VsManifestSnapshot *s)
{
    static const char *const members[] = {
#define NAME(f) #f,
        SNAP_STRINGS(NAME)
#undef NAME
        "iscsi_lun", "size", NULL };

    if (!jc_members(c, o, path, members))
        return false;
#define GET(f) \
    if (!optional_string(c, o, path, #f, &s->f)) \
        return false;
    SNAP_STRINGS(GET)
#undef GET
    if (json_object_has_member(o, "iscsi_lun")) {
        uint64_t lun;
        if (!jc_uint(c, o, path, "iscsi_lun", &lun))
            return false;
        s->iscsi_lun = lun > 16383 ? G_MAXINT64 : (int64_t)lun;
    }
    return !json_object_has_member(o, "size") || jc_uint(c, o, path, "size", &s->size);
}

bool
manifest_storage_parse_disk(JsonCheck *c, JsonObject *o, const char *path, VsManifestDisk *disk)
{
    if (json_object_has_member(o, "in_repo")) {
        JsonNode *n = json_object_get_member(o, "in_repo");
        if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_BOOLEAN) {
            jc_fail(c, VS_ERROR_FAILED, path, "in_repo", "expected true or false");
            return false;
        }
        disk->in_repo = json_node_get_boolean(n);
    }
    if (json_object_has_member(o, "snapshot")) {
        g_autofree char *sp = g_strdup_printf("%s.snapshot", path);
        JsonNode *n = json_object_get_member(o, "snapshot");

        if (!JSON_NODE_HOLDS_OBJECT(n)) {
            jc_fail(c, VS_ERROR_FAILED, path, "snapshot", "expected an object");
            return false;
        }
        disk->snapshot = vs_manifest_snapshot_new();
        if (!parse_snapshot(c, json_node_get_object(n), sp, disk->snapshot))
            return false;
    }
    return true;
}

bool
manifest_storage_parse_domain(JsonCheck *c, JsonObject *o, const char *path, VsManifestDomain *d)
{
    JsonArray *pools;
    g_autofree char *pp = g_strdup_printf("%s.pools", path);

    if (json_object_has_member(o, "overlay_ms") && !jc_ms(c, o, path, "overlay_ms", &d->overlay_ms))
        return false;
    if (!json_object_has_member(o, "pools"))
        return true;
    if (!(pools = jc_array(c, o, path, "pools")))
        return false;
    for (guint i = 0; i < json_array_get_length(pools); i++) {
        static const char *const members[] = { "name", "xml", NULL };
        g_autofree char *ip = g_strdup_printf("%s[%u]", pp, i);
        JsonObject *po = jc_element_object(c, pools, pp, i);
        VsManifestPool *p;

        if (!po || !jc_members(c, po, ip, members))
            return false;
        p = g_new0(VsManifestPool, 1);
        g_ptr_array_add(d->pools, p);
        if (!jc_string(c, po, ip, "name", false, &p->name) || !jc_string(c, po, ip, "xml", false, &p->xml))
            return false;
    }
    return true;
}

char *
vs_manifest_snapshot_to_json(const VsManifestSnapshot *sn)
{
    g_autoptr(GString) s = g_string_new(NULL);
    VsManifestDisk disk = { .in_repo = true, .snapshot = (VsManifestSnapshot *)sn };
    const char *brace;

    manifest_storage_put_disk(s, &disk);
    /* ",\n          \"snapshot\": {...}": the object alone */
    brace = strchr(s->str, '{');
    return g_strdup(brace);
}

VsManifestSnapshot *
vs_manifest_snapshot_from_json(const char *json, const char *what, GError **error)
{
    g_autofree char *where = g_strdup_printf("snapshot record: %s", what);
    JsonCheck c = { where, error };
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GError) jerr = NULL;
    g_autoptr(VsManifestSnapshot) sn = vs_manifest_snapshot_new();
    JsonObject *o;

    if (!json_parser_load_from_data(parser, json, -1, &jerr)) {
        jc_fail(&c, VS_ERROR_FAILED, NULL, NULL, "not valid JSON: %s", jerr->message);
        return NULL;
    }
    if (!(o = jc_root_object(&c, parser)) || !parse_snapshot(&c, o, "snapshot", sn) ||
        !snapshot_validate(&c, "snapshot", sn))
        return NULL;
    return g_steal_pointer(&sn);
}
