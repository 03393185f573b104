/* Manifests: the in-memory model of one backup, its JSON form, and the backups/
 * directory they live in (commit, list, resolve an id, load, delete; summaries
 * beside them are repo-summary.c's). The JSON
 * is written by hand rather than through JsonBuilder: the chunk list of a large
 * disk has hundreds of thousands of entries, and one entry per line keeps the
 * file both cheap to write and readable with grep and jq. It is parsed strictly
 * (repo-json.c) and validated the same way before commit and after load, so
 * that export and verify can trust every offset and length they are given. */
#include "config.h"
#include "repo-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------------- */
/* The model                                                                 */

static void
image_free(VsManifestImage *img)
{
    if (!img)
        return;
    g_free(img->path);
    g_free(img->format);
    g_free(img);
}

void
vs_manifest_disk_free(VsManifestDisk *disk)
{
    if (!disk)
        return;
    g_free(disk->target);
    g_free(disk->format);
    g_free(disk->source);
    g_clear_pointer(&disk->chain, g_ptr_array_unref);
    g_clear_pointer(&disk->chunks, g_array_unref);
    vs_manifest_snapshot_free(disk->snapshot);
    g_free(disk);
}

static void
domain_free(VsManifestDomain *dom)
{
    if (!dom)
        return;
    g_free(dom->name);
    g_free(dom->uuid);
    g_free(dom->consistency);
    g_free(dom->xml);
    g_clear_pointer(&dom->disks, g_ptr_array_unref);
    g_clear_pointer(&dom->pools, g_ptr_array_unref);
    g_free(dom);
}

static char *
new_id(int64_t us)
{
    g_autoptr(GDateTime) t = g_date_time_new_from_unix_utc(us / G_USEC_PER_SEC);
    g_autofree char *stamp = g_date_time_format(t, "%Y%m%dT%H%M%SZ");
    char rnd[7];

    repo_random_hex(rnd, 6);
    return g_strdup_printf("%s-%s", stamp, rnd);
}

VsManifest *
vs_manifest_new(void)
{
    VsManifest *m = g_new0(VsManifest, 1);

    m->format_version = VS_REPO_FORMAT_VERSION;
    m->started = g_get_real_time();
    m->id = new_id(m->started);
    m->group_freeze_ms = -1;
    m->hostname = g_strdup(g_get_host_name());
    m->domains = g_ptr_array_new_with_free_func((GDestroyNotify)domain_free);
    return m;
}

VsManifestDomain *
vs_manifest_add_domain(VsManifest *m, const char *name)
{
    VsManifestDomain *d = g_new0(VsManifestDomain, 1);

    /* Pointer fields stay NULL: callers assign them directly, and a default
     * here would leak under their assignment. */
    d->name = g_strdup(name);
    d->freeze_ms = -1;
    d->overlay_ms = -1;
    d->disks = g_ptr_array_new_with_free_func((GDestroyNotify)vs_manifest_disk_free);
    d->pools = g_ptr_array_new_with_free_func((GDestroyNotify)manifest_pool_free);
    g_ptr_array_add(m->domains, d);
    return d;
}

VsManifestDisk *
vs_manifest_disk_new(const char *target)
{
    VsManifestDisk *disk = g_new0(VsManifestDisk, 1);

    disk->target = g_strdup(target);
    disk->chain = g_ptr_array_new_with_free_func((GDestroyNotify)image_free);
    disk->chunks = g_array_new(FALSE, FALSE, sizeof(VsChunkRef));
    disk->in_repo = true;
    return disk;
}

VsManifestDisk *
vs_manifest_domain_add_disk(VsManifestDomain *d, const char *target)
{
    VsManifestDisk *disk = vs_manifest_disk_new(target);

    g_ptr_array_add(d->disks, disk);
    return disk;
}

void
vs_manifest_free(VsManifest *m)
{
    if (!m)
        return;
    g_free(m->id);
    g_free(m->hostname);
    g_clear_pointer(&m->domains, g_ptr_array_unref);
    g_free(m);
}

VsManifestDomain *
vs_manifest_find_domain(const VsManifest *m, const char *name)
{
    for (guint i = 0; m && name && i < m->domains->len; i++) {
        VsManifestDomain *d = g_ptr_array_index(m->domains, i);

        if (g_strcmp0(d->name, name) == 0)
            return d;
    }
    return NULL;
}

VsManifestDisk *
vs_manifest_find_disk(const VsManifestDomain *d, const char *target)
{
    for (guint i = 0; d && target && i < d->disks->len; i++) {
        VsManifestDisk *disk = g_ptr_array_index(d->disks, i);

        if (g_strcmp0(disk->target, target) == 0)
            return disk;
    }
    return NULL;
}

bool
vs_manifest_foreach_chunk(const VsManifest *m, VsManifestChunkFunc fn, void *opaque)
{
    for (guint i = 0; i < m->domains->len; i++) {
        const VsManifestDomain *d = g_ptr_array_index(m->domains, i);

        for (guint k = 0; k < d->disks->len; k++) {
            const VsManifestDisk *disk = g_ptr_array_index(d->disks, k);

            for (guint j = 0; j < disk->chunks->len; j++) {
                if (!fn(d, disk, &g_array_index(disk->chunks, VsChunkRef, j), opaque))
                    return false;
            }
        }
    }
    return true;
}

/* ------------------------------------------------------------------------- */
/* Validation                                                                */

const char *
vs_manifest_domain_name_problem(const char *name)
{
    return repo_name_problem(REPO_NAME_DOMAIN, name);
}

bool
repo_id_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;

    /* Ids become file names: nothing that could climb out of backups/ or hide
     * as a dot file, and a length any file system takes. */
    if (n == 0 || n > 128 || !g_ascii_isalnum(id[0]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!g_ascii_isalnum(id[i]) && id[i] != '-' && id[i] != '_')
            return false;
    return true;
}

static bool
text_ok(JsonCheck *c, const char *path, const char *name, const char *s, bool nullable)
{
    if (!s && nullable)
        return true;
    if (!s || !*s) {
        jc_fail(c, VS_ERROR_FAILED, path, name, "missing or empty");
        return false;
    }
    if (!g_utf8_validate(s, -1, NULL)) {
        jc_fail(c, VS_ERROR_FAILED, path, name, "not valid UTF-8");
        return false;
    }
    return true;
}

/* A name or path that may become (part of) a file name; see repo-names.c. */
static bool
name_ok(JsonCheck *c, const char *path, const char *name, RepoNameKind kind, const char *s, bool nullable)
{
    const char *why;
    g_autofree char *shown = NULL;

    if (!s && nullable)
        return true;
    if (!s || !*s)
        return text_ok(c, path, name, s, false);
    if (!(why = repo_name_problem(kind, s)))
        return true;
    /* The name as it is, but no raw control bytes into a terminal. */
    shown = g_strescape(s ? s : "", NULL);
    jc_fail(c, VS_ERROR_FAILED, path, name, "\"%s\" %s", shown, why);
    return false;
}

static bool
validate_chunks(JsonCheck *c, const char *path, const VsManifestDisk *disk, uint32_t cs)
{
    uint64_t next = 0;

    for (guint i = 0; i < disk->chunks->len; i++) {
        const VsChunkRef *r = &g_array_index(disk->chunks, VsChunkRef, i);
        g_autofree char *p = NULL;
        const char *why = NULL;

        if (r->offset % cs)
            why = "offset is not a multiple of chunk_size";
        else if (r->offset < next)
            why = "offsets are not ascending";
        else if (r->length == 0 || r->length > cs)
            why = "length is not 1 to chunk_size";
        else if (r->offset + r->length > disk->virtual_size)
            why = "chunk ends beyond virtual_size";
        else if (r->length != cs && r->offset + r->length != disk->virtual_size)
            why = "a short chunk that is not the last of the disk";
        if (why) {
            p = g_strdup_printf("%s.chunks[%u]", path, i);
            jc_fail(c, VS_ERROR_FAILED, p, NULL, "%s (offset %" G_GUINT64_FORMAT ", length %u, chunk_size %u)",
                    why, r->offset, r->length, cs);
            return false;
        }
        next = r->offset + r->length;
    }
    return true;
}

bool
manifest_validate(const VsManifest *m, const char *where, GError **error)
{
    JsonCheck c = { where, error };

    if (m->format_version != VS_REPO_FORMAT_VERSION) {
        jc_fail(&c, VS_ERROR_UNSUPPORTED, NULL, "version", "%d is not %d", m->format_version,
                VS_REPO_FORMAT_VERSION);
        return false;
    }
    if (!repo_id_valid(m->id)) {
        jc_fail(&c, VS_ERROR_FAILED, NULL, "id", "\"%s\" is not 1 to 128 letters, digits, - and _",
                m->id ? m->id : "");
        return false;
    }
    if (!repo_chunk_size_valid(m->chunk_size)) {
        jc_fail(&c, VS_ERROR_FAILED, NULL, "chunk_size", "%u is not a power of two from %u to %u",
                m->chunk_size, REPO_MIN_CHUNK_SIZE, REPO_MAX_CHUNK_SIZE);
        return false;
    }
    if (m->started < 0 || m->completed < 0 || m->group_freeze_ms < -1) {
        jc_fail(&c, VS_ERROR_FAILED, NULL, NULL, "negative time");
        return false;
    }
    if (!text_ok(&c, NULL, "hostname", m->hostname, true))
        return false;
    for (guint i = 0; i < m->domains->len; i++) {
        const VsManifestDomain *d = g_ptr_array_index(m->domains, i);
        g_autofree char *dp = g_strdup_printf("domains[%u]", i);

        if (!name_ok(&c, dp, "name", REPO_NAME_DOMAIN, d->name, false) ||
            !name_ok(&c, dp, "uuid", REPO_NAME_UUID, d->uuid, true) ||
            !text_ok(&c, dp, "xml", d->xml, true) || !text_ok(&c, dp, "consistency", d->consistency, false))
            return false;
        for (guint j = 0; j < i; j++)
            if (strcmp(((VsManifestDomain *)g_ptr_array_index(m->domains, j))->name, d->name) == 0) {
                jc_fail(&c, VS_ERROR_FAILED, dp, "name", "domain \"%s\" appears twice", d->name);
                return false;
            }
        if (strcmp(d->consistency, "quiesced") != 0 && strcmp(d->consistency, "crash") != 0) {
            jc_fail(&c, VS_ERROR_FAILED, dp, "consistency", "\"%s\" is not \"quiesced\" or \"crash\"",
                    d->consistency);
            return false;
        }
        if (d->freeze_ms < -1) {
            jc_fail(&c, VS_ERROR_FAILED, dp, "freeze_ms", "negative");
            return false;
        }
        if (!manifest_storage_validate_domain(&c, dp, d))
            return false;
        for (guint k = 0; k < d->disks->len; k++) {
            const VsManifestDisk *disk = g_ptr_array_index(d->disks, k);
            g_autofree char *kp = g_strdup_printf("%s.disks[%u]", dp, k);

            if (!name_ok(&c, kp, "target", REPO_NAME_TARGET, disk->target, false) ||
                !name_ok(&c, kp, "format", REPO_NAME_FORMAT, disk->format, false) ||
                !name_ok(&c, kp, "source", REPO_NAME_PATH, disk->source, true))
                return false;
            for (guint j = 0; j < k; j++)
                if (strcmp(((VsManifestDisk *)g_ptr_array_index(d->disks, j))->target, disk->target) == 0) {
                    jc_fail(&c, VS_ERROR_FAILED, kp, "target", "disk \"%s\" appears twice", disk->target);
                    return false;
                }
            for (guint j = 0; j < disk->chain->len; j++) {
                const VsManifestImage *img = g_ptr_array_index(disk->chain, j);
                g_autofree char *ip = g_strdup_printf("%s.chain[%u]", kp, j);

                if (!name_ok(&c, ip, "path", REPO_NAME_PATH, img->path, false) ||
                    !name_ok(&c, ip, "format", REPO_NAME_FORMAT, img->format, false))
                    return false;
            }
            if (!validate_chunks(&c, kp, disk, m->chunk_size) ||
                !manifest_storage_validate_disk(&c, kp, disk))
                return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------------------- */
/* JSON out                                                                  */

void
repo_json_put_str(GString *s, const char *v)
{
    if (!v) {
        g_string_append(s, "null");
        return;
    }
    g_string_append_c(s, '"');
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        switch (*p) {
        case '"': g_string_append(s, "\\\""); break;
        case '\\': g_string_append(s, "\\\\"); break;
        case '\n': g_string_append(s, "\\n"); break;
        case '\r': g_string_append(s, "\\r"); break;
        case '\t': g_string_append(s, "\\t"); break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                g_string_append_printf(s, "\\u%04x", *p);
            else
                g_string_append_c(s, (char)*p);
        }
    }
    g_string_append_c(s, '"');
}

static void
put_ms(GString *s, int64_t ms)
{
    if (ms < 0)
        g_string_append(s, "null");
    else
        g_string_append_printf(s, "%" G_GINT64_FORMAT, ms);
}

static void
put_time(GString *s, int64_t us)
{
    g_autofree char *iso = repo_time_to_iso(us);

    repo_json_put_str(s, iso);
}

char *
vs_manifest_to_json(const VsManifest *m)
{
    GString *s = g_string_sized_new(4096);

    g_string_append_printf(s, "{\n  \"format\": \"%s\",\n  \"version\": %d,\n  \"id\": ",
                           MANIFEST_FORMAT, m->format_version);
    repo_json_put_str(s, m->id);
    g_string_append_printf(s, ",\n  \"chunk_size\": %u,\n  \"started\": ", m->chunk_size);
    put_time(s, m->started);
    g_string_append(s, ",\n  \"completed\": ");
    put_time(s, m->completed);
    g_string_append(s, ",\n  \"hostname\": ");
    repo_json_put_str(s, m->hostname);
    g_string_append(s, ",\n  \"group_freeze_ms\": ");
    put_ms(s, m->group_freeze_ms);
    g_string_append(s, ",\n  \"domains\": [");
    for (guint i = 0; i < m->domains->len; i++) {
        const VsManifestDomain *d = g_ptr_array_index(m->domains, i);

        g_string_append(s, i ? ",\n    {\n      \"name\": " : "\n    {\n      \"name\": ");
        repo_json_put_str(s, d->name);
        g_string_append(s, ",\n      \"uuid\": ");
        repo_json_put_str(s, d->uuid);
        g_string_append(s, ",\n      \"consistency\": ");
        repo_json_put_str(s, d->consistency);
        g_string_append(s, ",\n      \"freeze_ms\": ");
        put_ms(s, d->freeze_ms);
        g_string_append(s, ",\n      \"xml\": ");
        repo_json_put_str(s, d->xml);
        manifest_storage_put_domain(s, d);
        g_string_append(s, ",\n      \"disks\": [");
        for (guint k = 0; k < d->disks->len; k++) {
            const VsManifestDisk *disk = g_ptr_array_index(d->disks, k);

            g_string_append(s, k ? ",\n        {\n          \"target\": " : "\n        {\n          \"target\": ");
            repo_json_put_str(s, disk->target);
            g_string_append(s, ",\n          \"format\": ");
            repo_json_put_str(s, disk->format);
            g_string_append_printf(s, ",\n          \"virtual_size\": %" G_GUINT64_FORMAT, disk->virtual_size);
            g_string_append(s, ",\n          \"source\": ");
            repo_json_put_str(s, disk->source);
            g_string_append(s, ",\n          \"chain\": [");
            for (guint j = 0; j < disk->chain->len; j++) {
                const VsManifestImage *img = g_ptr_array_index(disk->chain, j);

                g_string_append(s, j ? ",\n            {\"path\": " : "\n            {\"path\": ");
                repo_json_put_str(s, img->path);
                g_string_append(s, ", \"format\": ");
                repo_json_put_str(s, img->format);
                g_string_append(s, "}");
            }
            g_string_append(s, disk->chain->len ? "\n          ],\n" : "],\n");
            g_string_append_printf(s, "          \"bytes_read\": %" G_GUINT64_FORMAT ",\n"
                                   "          \"bytes_stored\": %" G_GUINT64_FORMAT ",\n"
                                   "          \"chunks\": [",
                                   disk->bytes_read, disk->bytes_stored);
            for (guint j = 0; j < disk->chunks->len; j++) {
                const VsChunkRef *r = &g_array_index(disk->chunks, VsChunkRef, j);
                char hex[VS_DIGEST_HEX_LEN];

                vs_digest_to_hex(&r->digest, hex);
                g_string_append_printf(s, "%s\n            [%" G_GUINT64_FORMAT ", %u, \"%s\"]",
                                       j ? "," : "", r->offset, r->length, hex);
            }
            g_string_append(s, disk->chunks->len ? "\n          ]" : "]");
            manifest_storage_put_disk(s, disk);
            g_string_append(s, "\n        }");
        }
        g_string_append(s, d->disks->len ? "\n      ]\n    }" : "]\n    }");
    }
    g_string_append(s, m->domains->len ? "\n  ]\n}\n" : "]\n}\n");
    return g_string_free(s, FALSE);
}

/* ------------------------------------------------------------------------- */
/* JSON in                                                                   */

static bool
parse_chunks(JsonCheck *c, JsonObject *o, const char *path, VsManifestDisk *disk)
{
    JsonArray *a = jc_array(c, o, path, "chunks");
    guint n;

    if (!a)
        return false;
    n = json_array_get_length(a);
    g_array_set_size(disk->chunks, n);
    for (guint i = 0; i < n; i++) {
        JsonNode *e = json_array_get_element(a, i);
        VsChunkRef *r = &g_array_index(disk->chunks, VsChunkRef, i);
        JsonArray *t = JSON_NODE_HOLDS_ARRAY(e) ? json_node_get_array(e) : NULL;
        JsonNode *off, *len, *hex;

        if (!t || json_array_get_length(t) != 3)
            goto bad;
        off = json_array_get_element(t, 0);
        len = json_array_get_element(t, 1);
        hex = json_array_get_element(t, 2);
        if (!JSON_NODE_HOLDS_VALUE(off) || json_node_get_value_type(off) != G_TYPE_INT64 ||
            json_node_get_int(off) < 0 ||
            !JSON_NODE_HOLDS_VALUE(len) || json_node_get_value_type(len) != G_TYPE_INT64 ||
            json_node_get_int(len) < 0 || json_node_get_int(len) > G_MAXUINT32 ||
            !JSON_NODE_HOLDS_VALUE(hex) || json_node_get_value_type(hex) != G_TYPE_STRING ||
            !vs_digest_from_hex(json_node_get_string(hex), &r->digest))
            goto bad;
        r->offset = (uint64_t)json_node_get_int(off);
        r->length = (uint32_t)json_node_get_int(len);
        continue;
    bad:
        {
            g_autofree char *p = g_strdup_printf("%s.chunks[%u]", path, i);

            jc_fail(c, VS_ERROR_FAILED, p, NULL,
                    "expected [offset, length, \"64 lowercase hex digits of SHA-256\"]");
            return false;
        }
    }
    return true;
}

static bool
parse_disk(JsonCheck *c, JsonObject *o, const char *path, VsManifestDisk *disk)
{
    static const char *const members[] = { "target", "format", "virtual_size", "source", "chain",
                                           "bytes_read", "bytes_stored", "chunks", "in_repo",
                                           "snapshot", NULL };
    JsonArray *chain;

    if (!jc_members(c, o, path, members) ||
        !jc_string(c, o, path, "format", false, &disk->format) ||
        !jc_uint(c, o, path, "virtual_size", &disk->virtual_size) ||
        !jc_string(c, o, path, "source", true, &disk->source) ||
        !jc_uint(c, o, path, "bytes_read", &disk->bytes_read) ||
        !jc_uint(c, o, path, "bytes_stored", &disk->bytes_stored) ||
        !(chain = jc_array(c, o, path, "chain")))
        return false;
    for (guint i = 0; i < json_array_get_length(chain); i++) {
        static const char *const img_members[] = { "path", "format", NULL };
        g_autofree char *cp = g_strdup_printf("%s.chain", path);
        g_autofree char *ip = g_strdup_printf("%s.chain[%u]", path, i);
        JsonObject *io = jc_element_object(c, chain, cp, i);
        VsManifestImage *img;

        if (!io || !jc_members(c, io, ip, img_members))
            return false;
        img = g_new0(VsManifestImage, 1);
        g_ptr_array_add(disk->chain, img);
        if (!jc_string(c, io, ip, "path", false, &img->path) ||
            !jc_string(c, io, ip, "format", false, &img->format))
            return false;
    }
    return parse_chunks(c, o, path, disk) && manifest_storage_parse_disk(c, o, path, disk);
}

static bool
parse_domain(JsonCheck *c, JsonObject *o, const char *path, VsManifestDomain *d)
{
    static const char *const members[] = { "name", "uuid", "consistency", "freeze_ms", "xml", "disks", "pools",
                                           "overlay_ms", NULL };
    g_autofree char *kpath = g_strdup_printf("%s.disks", path);
    JsonArray *disks;

    if (!jc_members(c, o, path, members) ||
        !jc_string(c, o, path, "uuid", true, &d->uuid) ||
        !jc_string(c, o, path, "consistency", false, &d->consistency) ||
        !jc_ms(c, o, path, "freeze_ms", &d->freeze_ms) ||
        !jc_string(c, o, path, "xml", true, &d->xml) ||
        !(disks = jc_array(c, o, path, "disks")) || !manifest_storage_parse_domain(c, o, path, d))
        return false;
    for (guint i = 0; i < json_array_get_length(disks); i++) {
        g_autofree char *kp = g_strdup_printf("%s[%u]", kpath, i);
        g_autofree char *target = NULL;
        JsonObject *ko = jc_element_object(c, disks, kpath, i);

        if (!ko || !jc_string(c, ko, kp, "target", false, &target) ||
            !parse_disk(c, ko, kp, vs_manifest_domain_add_disk(d, target)))
            return false;
    }
    return true;
}

VsManifest *
vs_manifest_from_json(const char *json, const char *what, GError **error)
{
    static const char *const members[] = { "format", "version", "id", "chunk_size", "started",
                                           "completed", "hostname", "group_freeze_ms", "domains", NULL };
    g_autofree char *where = g_strdup_printf("manifest: %s", what ? what : "(text)");
    JsonCheck c = { where, error };
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GError) jerr = NULL;
    g_autoptr(VsManifest) m = NULL;
    g_autofree char *format = NULL;
    JsonObject *o;
    JsonArray *domains;
    uint64_t version, cs;

    if (!json_parser_load_from_data(parser, json, -1, &jerr)) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "%s: not valid JSON: %s", where, jerr->message);
        return NULL;
    }
    if (!(o = jc_root_object(&c, parser)) || !jc_string(&c, o, NULL, "format", false, &format))
        return NULL;
    if (strcmp(format, MANIFEST_FORMAT) != 0) {
        jc_fail(&c, VS_ERROR_FAILED, NULL, "format", "\"%s\" is not \"%s\"", format, MANIFEST_FORMAT);
        return NULL;
    }
    /* The version before anything else: a newer manifest is refused as newer,
     * not for the first field we do not know. */
    if (!jc_version(&c, o, NULL, "version", &version) || !jc_members(&c, o, NULL, members))
        return NULL;

    m = g_new0(VsManifest, 1);
    m->domains = g_ptr_array_new_with_free_func((GDestroyNotify)domain_free);
    m->format_version = (int)version;
    if (!jc_string(&c, o, NULL, "id", false, &m->id) ||
        !jc_uint(&c, o, NULL, "chunk_size", &cs) ||
        !jc_time(&c, o, NULL, "started", &m->started) ||
        !jc_time(&c, o, NULL, "completed", &m->completed) ||
        !jc_string(&c, o, NULL, "hostname", true, &m->hostname) ||
        !jc_ms(&c, o, NULL, "group_freeze_ms", &m->group_freeze_ms) ||
        !(domains = jc_array(&c, o, NULL, "domains")))
        return NULL;
    if (cs > G_MAXUINT32) {
        jc_fail(&c, VS_ERROR_FAILED, NULL, "chunk_size", "too large");
        return NULL;
    }
    m->chunk_size = (uint32_t)cs;
    for (guint i = 0; i < json_array_get_length(domains); i++) {
        g_autofree char *dp = g_strdup_printf("domains[%u]", i);
        g_autofree char *name = NULL;
        JsonObject *dobj = jc_element_object(&c, domains, "domains", i);

        if (!dobj || !jc_string(&c, dobj, dp, "name", false, &name) ||
            !parse_domain(&c, dobj, dp, vs_manifest_add_domain(m, name)))
            return NULL;
    }
    if (!manifest_validate(m, where, error))
        return NULL;
    return g_steal_pointer(&m);
}

/* ------------------------------------------------------------------------- */
/* backups/                                                                  */

static int
cmp_str(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct {
    char *id;
    int64_t started;
} IdTime;

static int
cmp_id_time(gconstpointer a, gconstpointer b)
{
    const IdTime *x = a, *y = b;

    if (x->started != y->started)
        return x->started < y->started ? -1 : 1;
    return strcmp(x->id, y->id);
}

static size_t
time_part(const char *id)
{
    const char *dash = strchr(id, '-');

    return dash ? (size_t)(dash - id) : strlen(id);
}

/* Ids order backups to the second; two backups started within one second are
 * ordered by their recorded start time, so that "latest" means the latest.
 * This costs a summary read (a manifest load where there is none) for each
 * backup of such a tie, once per listing. */
static void
order_same_second(VsRepo *repo, GPtrArray *ids)
{
    for (guint i = 0, j; i < ids->len; i = j) {
        const char *first = g_ptr_array_index(ids, i);
        size_t n = time_part(first);
        g_autoptr(GArray) tie = NULL;

        for (j = i + 1; j < ids->len; j++) {
            const char *other = g_ptr_array_index(ids, j);

            if (time_part(other) != n || strncmp(first, other, n) != 0)
                break;
        }
        if (j - i < 2)
            continue;
        tie = g_array_new(FALSE, FALSE, sizeof(IdTime));
        for (guint k = i; k < j; k++) {
            g_autoptr(VsBackupSummary) m = repo_load_summary(repo, g_ptr_array_index(ids, k), NULL);
            IdTime it = { g_ptr_array_index(ids, k), m ? m->started : G_MAXINT64 };

            g_array_append_val(tie, it);
        }
        g_array_sort(tie, cmp_id_time);
        for (guint k = i; k < j; k++)
            ids->pdata[k] = g_array_index(tie, IdTime, k - i).id;
    }
}

char **
repo_list_ids(VsRepo *repo, GError **error)
{
    g_autoptr(GPtrArray) ids = g_ptr_array_new_with_free_func(g_free);
    DIR *d = NULL;
    struct dirent *de;
    int fd, err;

    /* backups/ itself, never a symlink in its place. */
    if (!repo_open_dir(repo, "backups", NULL, &fd, error))
        return NULL;
    if (fd >= 0 && !(d = fdopendir(fd))) {
        err = errno;
        close(fd);
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s: %s", repo->backups_dir, g_strerror(err));
        return NULL;
    }
    while (d && (de = readdir(d))) {
        g_autofree char *id = NULL;

        if (!g_str_has_suffix(de->d_name, ".json"))
            continue;
        id = g_strndup(de->d_name, strlen(de->d_name) - 5);
        if (repo_id_valid(id))
            g_ptr_array_add(ids, g_steal_pointer(&id));
    }
    if (d)
        closedir(d);
    g_ptr_array_sort(ids, cmp_str);
    order_same_second(repo, ids);
    g_ptr_array_add(ids, NULL);
    return (char **)g_ptr_array_free(g_steal_pointer(&ids), FALSE);
}

char **
vs_repo_list(VsRepo *repo, GError **error)
{
    return repo_list_ids(repo, error);
}

char *
repo_resolve_id(VsRepo *repo, const char *id, GError **error)
{
    g_auto(GStrv) ids = repo_list_ids(repo, error);
    g_autoptr(GPtrArray) matches = g_ptr_array_new();
    guint n;

    if (!ids)
        return NULL;
    n = g_strv_length(ids);
    if (!id || !*id) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "repo: %s: no backup id given", repo->path);
        return NULL;
    }
    if (strcmp(id, "latest") == 0) {
        if (n == 0) {
            g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND, "repo: %s: no backups yet", repo->path);
            return NULL;
        }
        return g_strdup(ids[n - 1]);
    }
    for (guint i = 0; i < n; i++) {
        if (strcmp(ids[i], id) == 0)
            return g_strdup(ids[i]);
        if (g_str_has_prefix(ids[i], id))
            g_ptr_array_add(matches, ids[i]);
    }
    if (matches->len == 1)
        return g_strdup(g_ptr_array_index(matches, 0));
    if (matches->len == 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND, "repo: %s: no backup \"%s\"", repo->path, id);
        return NULL;
    }
    {
        g_autoptr(GString) list = g_string_new(NULL);

        for (guint i = 0; i < matches->len && i < 10; i++)
            g_string_append_printf(list, "%s%s", i ? ", " : "", (char *)g_ptr_array_index(matches, i));
        if (matches->len > 10)
            g_string_append_printf(list, " and %u more", matches->len - 10);
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "repo: %s: backup id \"%s\" is ambiguous: it matches %s", repo->path, id, list->str);
    }
    return NULL;
}

VsManifest *
repo_load_manifest_exact(VsRepo *repo, const char *id, GError **error)
{
    g_autofree char *file = NULL, *text = NULL, *where = NULL;
    g_autoptr(VsManifest) m = NULL;
    int err;

    if (!repo_id_valid(id)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "repo: %s: \"%s\" is not a backup id",
                    repo->path, id ? id : "");
        return NULL;
    }
    file = g_strdup_printf("%s/%s.json", repo->backups_dir, id);
    /* A FIFO would block the reader, a symlink lead out of the repository. */
    if ((err = repo_read_regular(AT_FDCWD, file, &text, NULL))) {
        g_set_error(error, VS_ERROR, err == ENOENT ? VS_ERROR_NOT_FOUND : VS_ERROR_IO,
                    "repo: backup %s: %s: %s", id, file, repo_strerror(err));
        return NULL;
    }
    m = vs_manifest_from_json(text, file, error);
    if (!m)
        return NULL;
    where = g_strdup_printf("manifest: %s", file);
    if (strcmp(m->id, id) != 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "%s: id: \"%s\" does not match the file name",
                    where, m->id);
        return NULL;
    }
    if (m->chunk_size != repo->chunk_size) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED,
                    "%s: chunk_size: %u, but the repository's is %u (a manifest from another repository?)",
                    where, m->chunk_size, repo->chunk_size);
        return NULL;
    }
    return g_steal_pointer(&m);
}

VsManifest *
vs_repo_load_manifest(VsRepo *repo, const char *id, GError **error)
{
    g_autofree char *full = NULL;

    /* A full id is loaded without listing backups/ (an exact id wins over a
     * prefix anyway): a caller loading each id vs_repo_list gave costs one
     * directory scan in all, not one per backup. */
    if (repo_id_valid(id) && strcmp(id, "latest") != 0) {
        g_autofree char *file = g_strdup_printf("%s/%s.json", repo->backups_dir, id);

        if (g_file_test(file, G_FILE_TEST_EXISTS))
            return repo_load_manifest_exact(repo, id, error);
    }
    full = repo_resolve_id(repo, id, error);

    return full ? repo_load_manifest_exact(repo, full, error) : NULL;
}

bool
vs_repo_delete(VsRepo *repo, const char *id, GError **error)
{
    const char *ids[] = { id, NULL };

    return vs_repo_delete_many(repo, ids, NULL, error);
}

/* One sync of backups/ for all of them: the removals need only be durable
 * before gc deletes chunks they referenced, and a sync per backup made a
 * prune of thousands cost a disk flush each. A crash before the sync brings
 * some back whole, their chunks still there. */
bool
vs_repo_delete_many(VsRepo *repo, const char *const *ids, guint *removed, GError **error)
{
    guint done = 0;
    bool ok = true;
    int fd = -1, err;

    if (removed)
        *removed = 0;
    if (!ids[0])
        return true;
    if (!repo->writable) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "repo: %s was opened read-only", repo->path);
        return false;
    }
    for (guint i = 0; ids[i]; i++)
        if (!repo_id_valid(ids[i])) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "repo: %s: \"%s\" is not a full backup id",
                        repo->path, ids[i]);
            return false;
        }
    /* Through backups/ itself, never a symlink in its place. */
    if (!repo_open_dir(repo, "backups", NULL, &fd, error))
        return false;
    for (guint i = 0; ids[i] && ok; i++) {
        g_autofree char *file = g_strdup_printf("%s.json", ids[i]);

        if (fd < 0 || unlinkat(fd, file, 0) < 0) {
            err = fd < 0 ? ENOENT : errno;
            g_set_error(error, VS_ERROR, err == ENOENT ? VS_ERROR_NOT_FOUND : VS_ERROR_IO,
                        "repo: %s: deleting backup %s: %s", repo->path, ids[i],
                        err == ENOENT ? "no such backup (give the full id)" : g_strerror(err));
            ok = false;
            break;
        }
        /* After the manifest: a summary left by a crash in between names no
         * backup and is ignored. */
        repo_delete_summary(repo, fd, ids[i]);
        done++;
    }
    if (done && fsync(fd) < 0 && errno != EINVAL) {
        err = errno;
        /* The first error stays the one reported. */
        if (ok)
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s: syncing %s: %s", repo->path,
                        repo->backups_dir, g_strerror(err));
        ok = false;
    }
    if (fd >= 0)
        close(fd);
    if (removed)
        *removed = done;
    return ok;
}

/* ------------------------------------------------------------------------- */
/* Commit                                                                    */

/* Zeros are implied by gaps; a reference to an all-zero chunk (which put_chunk
 * never stored) would otherwise read as a missing chunk. */
static void
drop_zero_refs(VsRepo *repo, VsManifest *m)
{
    for (guint i = 0; i < m->domains->len; i++) {
        VsManifestDomain *d = g_ptr_array_index(m->domains, i);

        for (guint k = 0; k < d->disks->len; k++) {
            VsManifestDisk *disk = g_ptr_array_index(d->disks, k);
            guint out = 0;

            for (guint j = 0; j < disk->chunks->len; j++) {
                VsChunkRef r = g_array_index(disk->chunks, VsChunkRef, j);
                bool zero;

                if (r.length == repo->chunk_size) {
                    zero = memcmp(r.digest.bytes, repo->zero_digest.bytes, sizeof(r.digest.bytes)) == 0;
                } else {
                    g_autofree void *zeros = g_malloc0(r.length);
                    VsDigest zd;

                    vs_digest_compute(zeros, r.length, &zd);
                    zero = memcmp(r.digest.bytes, zd.bytes, sizeof(zd.bytes)) == 0;
                }
                if (!zero)
                    g_array_index(disk->chunks, VsChunkRef, out++) = r;
            }
            g_array_set_size(disk->chunks, out);
        }
    }
}

typedef struct {
    VsRepo *repo;
    const char *where;
    GError **error;
} PresentCheck;

static bool
check_chunk_present(const VsManifestDomain *d, const VsManifestDisk *disk, const VsChunkRef *r,
                    void *opaque)
{
    PresentCheck *c = opaque;
    char hex[VS_DIGEST_HEX_LEN];
    g_autofree char *file = NULL, *odd = NULL;
    struct stat st;

    /* Under its final name: flushed, so durable. */
    if (repo_chunk_placed(c->repo, &r->digest))
        return true;
    vs_digest_to_hex(&r->digest, hex);
    /* Its name taken by a symlink, FIFO or directory: the chunk
     * could not be placed, and only a person may remove that. */
    file = repo_chunk_path(c->repo, &r->digest);
    if (lstat(file, &st) == 0)
        odd = g_strdup_printf(" (%s is not a regular file: check the repository, remove it "
                              "and back up again)", file);
    g_set_error(c->error, VS_ERROR, VS_ERROR_FAILED,
                "%s: domain %s disk %s: chunk %s at offset %" G_GUINT64_FORMAT
                " is not in the repository%s; nothing committed",
                c->where, d->name, disk->target, hex, r->offset, odd ? odd : "");
    return false;
}

static bool
check_chunks_present(VsRepo *repo, const VsManifest *m, const char *where, GError **error)
{
    PresentCheck c = { repo, where, error };

    return vs_manifest_foreach_chunk(m, check_chunk_present, &c);
}

bool
manifest_prepare(VsRepo *repo, VsManifest *m, const char *where, GError **error)
{
    if (!repo->writable) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "repo: %s was opened read-only", repo->path);
        return false;
    }
    /* Every chunk this writer put, durable and under its final name, before
     * anything checks for them or names them. */
    if (!vs_repo_flush(repo, error))
        return false;
    m->chunk_size = repo->chunk_size;
    /* Nobody claimed a frozen guest: the honest record is crash-consistent. */
    for (guint i = 0; i < m->domains->len; i++) {
        VsManifestDomain *d = g_ptr_array_index(m->domains, i);

        if (!d->consistency)
            d->consistency = g_strdup("crash");
    }
    if (!manifest_validate(m, where, error))
        return false;
    drop_zero_refs(repo, m);
    return check_chunks_present(repo, m, where, error) && repo_sync_dirty_dirs(repo, error);
}

bool
vs_repo_commit_manifest(VsRepo *repo, VsManifest *m, GError **error)
{
    g_autofree char *where = NULL, *json = NULL;
    int err = 0;

    /* Completed once its chunks are durable (prepare's own flush then finds
     * nothing pending). */
    if (repo->writable && !vs_repo_flush(repo, error))
        return false;
    m->completed = g_get_real_time();
    where = g_strdup_printf("repo: %s: manifest %s", repo->path, m->id ? m->id : "(no id)");
    if (!manifest_prepare(repo, m, where, error))
        return false;

    for (int attempt = 0; attempt < 8; attempt++) {
        g_autofree char *tmp = NULL, *final = NULL;
        size_t n = strlen(m->id);

        g_free(json);
        json = vs_manifest_to_json(m);

        final = g_strdup_printf("%s/%s.json", repo->backups_dir, m->id);
        err = repo_write_temp(&repo->perms, repo->tmp_dir, "manifest", json, strlen(json), &tmp);
        if (err)
            break;
        err = repo_rename_noreplace(tmp, final);
        if (err)
            unlink(tmp);
        if (err != EEXIST)
            break;
        /* Same second, same six random digits: draw again, keep the time. */
        if (n < 7 || m->id[n - 7] != '-')
            break;
        repo_random_hex(m->id + n - 6, 6);
    }
    /* The backup exists now; its summary follows, made durable by the same
     * directory sync. */
    if (!err)
        repo_write_summary(repo, m, strlen(json));
    if (!err)
        err = repo_fsync_dir(repo->backups_dir);
    if (err) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s: writing manifest %s: %s",
                    repo->path, m->id, err == EEXIST ? "a backup with this id exists" : g_strerror(err));
        return false;
    }
    return true;
}
