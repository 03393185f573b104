/* Discovery: for every domain and every disk, where the data really lives. The
 * domain XML says how QEMU opens a disk; the storage pools say what that path
 * is (a directory, an NFS export, an iSCSI LUN, a multipath device); image
 * headers say what lies below it. Backups, restores and array-snapshot mappings
 * all start from this answer, so each piece of it is resolved from the source of
 * truth (libvirt's storage API, the NFS server's own export list, the qcow2
 * header, sysfs) rather than guessed from names. A domain or disk that cannot be
 * resolved is reported and never stops the others from being discovered. */
#include "config.h"
#include "driver-internal.h"
#include "vs-enum.h"
#include "vs-xml.h"
#include "vs-block.h"

#include <libvirt/libvirt-qemu.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CHAIN_DEPTH 64
#define ISCSI_DEFAULT_PORT "3260"

typedef struct {
    VsPoolDef *def;       /* NULL when the pool could not be read */
    bool active;
    char *error;
} PoolInfo;

typedef struct {
    virConnectPtr conn;
    const VsDiscoverOptions *opts;
    GHashTable *pools;          /* name -> PoolInfo* (every pool, read once) */
    GHashTable *nfs_exports;    /* server -> char** (NULL value: server did not answer) */
    GPtrArray *problems;        /* of VsProblem* */
} Ctx;

void
vs_discover_options_init(VsDiscoverOptions *opts)
{
    opts->agent_timeout = 2;
    opts->nfs_timeout_ms = 3000;
    opts->probe_exports = true;
    opts->snapshot_config = NULL;
    opts->locate = false;
    opts->remote = false;
}

VS_ENUM_IMPL(vs_agent_status, VsAgentStatus, VS_AGENT_LAST, "none", "configured", "responding")

static void
chain_elem_free(VsChainElem *e)
{
    g_free(e->path);
    g_free(e->format);
    g_free(e);
}

bool
vs_disk_holds_bitmaps(const char *format, const char *path, const char **why)
{
    const char *w = NULL;

    if (g_strcmp0(format, "qcow2") != 0)
        w = "only a qcow2 image holds dirty bitmaps: read whole at every backup";
    else if (!path || strstr(path, "://"))
        w = "a qcow2 on a network disk: its bitmaps are not used; read whole at every backup";
    if (why)
        *why = w;
    return w == NULL;
}

void
vs_discovered_disk_free(VsDiscoveredDisk *d)
{
    if (!d)
        return;
    g_free(d->target); g_free(d->device); g_free(d->type); g_free(d->format);
    g_free(d->path); g_free(d->pool); g_free(d->pool_type); g_free(d->volume);
    g_free(d->nfs_server); g_free(d->nfs_export); g_free(d->nfs_path);
    g_free(d->iscsi_portal); g_free(d->iscsi_iqn);
    g_free(d->block_device); g_free(d->wwid);
    g_free(d->rbd_pool); g_free(d->rbd_image); g_free(d->rbd_user);
    g_free(d->snapshot_reason);
    g_free(d->controller); g_free(d->controller_volume);
    g_ptr_array_unref(d->chain);
    g_free(d->skipped); g_free(d->error);
    g_free(d);
}

void
vs_discovered_domain_free(VsDiscoveredDomain *dom)
{
    if (!dom)
        return;
    g_free(dom->name); g_free(dom->uuid); g_free(dom->state); g_free(dom->xml);
    g_clear_pointer(&dom->def, vs_domain_def_free);
    g_ptr_array_unref(dom->disks);
    g_ptr_array_unref(dom->problems);
    g_free(dom);
}

void
vs_problem_free(VsProblem *p)
{
    if (!p)
        return;
    g_free(p->domain);
    g_free(p->disk);
    g_clear_error(&p->error);
    g_free(p);
}

static VsProblem *
problem_copy(const VsProblem *p)
{
    VsProblem *c = g_new0(VsProblem, 1);

    c->domain = g_strdup(p->domain);
    c->disk = g_strdup(p->disk);
    c->error = g_error_copy(p->error);
    return c;
}

static void
pool_info_free(PoolInfo *p)
{
    vs_pool_def_free(p->def);
    g_free(p->error);
    g_free(p);
}

/* A problem of domain NAME (DOM when it was found; NULL: of the host), of its
 * DISK (or NULL): ERR, taken. */
static void
problem(Ctx *ctx, VsDiscoveredDomain *dom, const char *name, const char *disk, GError *err)
{
    VsProblem *p = g_new0(VsProblem, 1);

    p->domain = g_strdup(name);
    p->disk = g_strdup(disk);
    p->error = err;
    if (dom)
        g_ptr_array_add(dom->problems, problem_copy(p));
    g_ptr_array_add(ctx->problems, p);
}

static void
disk_error(VsDiscoveredDisk *d, VsErrorCode code, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static void
disk_error(VsDiscoveredDisk *d, VsErrorCode code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_free(d->error);
    d->error = g_strdup_vprintf(fmt, ap);
    d->error_code = code;
    va_end(ap);
}

/* ------------------------------------------------------------------------- */
/* Pools                                                                     */

static void
load_pools(Ctx *ctx)
{
    virStoragePoolPtr *pools = NULL;
    int n = virConnectListAllStoragePools(ctx->conn, &pools, 0);

    if (n < 0) {
        /* A connection without a storage driver still lets disks be reported
         * by path; say so once rather than per disk. */
        g_autoptr(GError) err = NULL;
        vs_set_libvirt_error(&err, VS_ERROR_LIBVIRT, "discover: cannot list storage pools");
        problem(ctx, NULL, NULL, NULL, g_steal_pointer(&err));
        return;
    }
    for (int i = 0; i < n; i++) {
        PoolInfo *info = g_new0(PoolInfo, 1);
        const char *name = virStoragePoolGetName(pools[i]);
        g_autofree char *xml = virStoragePoolGetXMLDesc(pools[i], 0);
        g_autoptr(GError) err = NULL;

        info->active = virStoragePoolIsActive(pools[i]) == 1;
        if (!xml) {
            vs_set_libvirt_error(&err, VS_ERROR_LIBVIRT, "cannot read the XML of pool '%s'", name);
        } else if (!(info->def = vs_pool_def_parse_string(xml, name, &err))) {
            g_prefix_error(&err, "pool '%s': ", name);
        }
        if (err)
            info->error = g_strdup(err->message);
        g_hash_table_insert(ctx->pools, g_strdup(name), info);
        virStoragePoolFree(pools[i]);
    }
    free(pools);
}

static char *
canonical(const char *path)
{
    char *real = realpath(path, NULL);
    char *out;

    if (!real)
        return g_canonicalize_filename(path, "/");
    out = g_strdup(real);
    free(real);
    return out;
}

/* The pool whose target directory holds PATH (deepest match), for disks given
 * by path that libvirt's volume lookup does not know (pool not refreshed). */
static const char *
pool_by_target_dir(Ctx *ctx, const char *path)
{
    g_autofree char *cpath = canonical(path);
    GHashTableIter it;
    gpointer key, value;
    const char *best = NULL;
    size_t best_len = 0;

    g_hash_table_iter_init(&it, ctx->pools);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        PoolInfo *p = value;
        g_autofree char *target = NULL;
        size_t n;

        if (!p->def || !p->def->target_path)
            continue;
        switch (p->def->type) {
        case VS_POOL_DIR: case VS_POOL_FS: case VS_POOL_NETFS:
            break;
        default:
            continue;   /* /dev-style targets hold devices, not files by directory */
        }
        target = canonical(p->def->target_path);
        n = strlen(target);
        while (n > 1 && target[n - 1] == '/')
            n--;
        if (strncmp(cpath, target, n) == 0 && cpath[n] == '/' && n > best_len) {
            best = key;
            best_len = n;
        }
    }
    return best;
}

static int
lun_from_volume(const char *vol, const char *path)
{
    const char *p;

    /* libvirt names SCSI volumes unit:BUS:TARGET:LUN */
    if (vol && g_str_has_prefix(vol, "unit:") && (p = strrchr(vol, ':')))
        return atoi(p + 1);
    /* /dev/disk/by-path/ip-HOST:PORT-iscsi-IQN-lun-N */
    if (path && (p = g_strrstr(path, "-lun-")))
        return atoi(p + 5);
    return -1;
}

static char *
portal_string(const VsHostDef *h)
{
    const char *port = h->port ? h->port : ISCSI_DEFAULT_PORT;
    if (h->name && strchr(h->name, ':'))
        return g_strdup_printf("[%s]:%s", h->name, port);
    return g_strdup_printf("%s:%s", h->name ? h->name : "", port);
}

/* Fill in what the pool tells about a disk that lives in it. */
static void
describe_pool_disk(Ctx *ctx, VsDiscoveredDisk *d, const char *pool_name)
{
    PoolInfo *p = g_hash_table_lookup(ctx->pools, pool_name);
    const VsPoolDef *def;

    g_free(d->pool);
    d->pool = g_strdup(pool_name);
    if (!p) {
        disk_error(d, VS_ERROR_NOT_FOUND, "storage pool '%s' does not exist (virsh pool-list --all "
                   "shows the pools; define it or fix the disk source)", pool_name);
        return;
    }
    if (!p->def) {
        disk_error(d, VS_ERROR_LIBVIRT, "storage pool '%s' cannot be read: %s", pool_name, p->error);
        return;
    }
    def = p->def;
    g_free(d->pool_type);
    d->pool_type = g_strdup(vs_pool_type_to_string(def->type));

    switch (def->type) {
    case VS_POOL_NETFS:
        if (def->hosts->len > 0)
            d->nfs_server = g_strdup(((VsHostDef *)def->hosts->pdata[0])->name);
        d->nfs_export = g_strdup(def->source_dir);
        if (d->path && def->target_path) {
            g_autofree char *cpath = canonical(d->path);
            g_autofree char *target = canonical(def->target_path);
            size_t n = strlen(target);
            if (strncmp(cpath, target, n) == 0 && cpath[n] == '/')
                d->nfs_path = g_strdup(cpath + n);
        }
        break;
    case VS_POOL_ISCSI:
    case VS_POOL_ISCSI_DIRECT:
        if (def->hosts->len > 0)
            d->iscsi_portal = portal_string(def->hosts->pdata[0]);
        if (def->devices->len > 0)
            d->iscsi_iqn = g_strdup(def->devices->pdata[0]);
        d->iscsi_lun = lun_from_volume(d->volume, d->path);
        break;
    case VS_POOL_RBD:
        d->rbd_pool = g_strdup(def->source_name);
        d->rbd_image = g_strdup(d->volume);
        d->rbd_user = g_strdup(def->auth_username);
        break;
    case VS_POOL_MPATH:
    case VS_POOL_DISK:
    case VS_POOL_LOGICAL:
    case VS_POOL_SCSI:
        if (d->path && g_str_has_prefix(d->path, "/dev/")) {
            d->block_device = g_strdup(d->path);
            d->wwid = vs_blockdev_wwid(d->path);
        }
        break;
    default:
        break;
    }
}

/* type='volume': ask the pool for the volume's path and format. */
static void
resolve_volume(Ctx *ctx, VsDiscoveredDisk *d, const VsStorageSource *src)
{
    PoolInfo *p = g_hash_table_lookup(ctx->pools, src->pool);
    virStoragePoolPtr pool = NULL;
    virStorageVolPtr vol = NULL;
    g_autoptr(GError) err = NULL;

    d->volume = g_strdup(src->volume);
    if (p && p->def && !p->active) {
        d->pool = g_strdup(src->pool);
        d->pool_type = g_strdup(vs_pool_type_to_string(p->def->type));
        disk_error(d, VS_ERROR_UNSUPPORTED, "storage pool '%s' is not active: start it with "
                   "`virsh pool-start %s`", src->pool, src->pool);
        return;
    }
    if (p && p->def) {
        if (!(pool = virStoragePoolLookupByName(ctx->conn, src->pool)) ||
            !(vol = virStorageVolLookupByName(pool, src->volume))) {
            vs_set_libvirt_error(&err, VS_ERROR_NOT_FOUND, "volume '%s' in pool '%s'",
                                 src->volume, src->pool);
            d->error = g_strdup(err->message);
        } else {
            g_autofree char *vxml = virStorageVolGetXMLDesc(vol, 0);
            g_autoptr(VsVolDef) vdef = NULL;
            char *vpath = virStorageVolGetPath(vol);

            d->path = g_strdup(vpath);
            free(vpath);
            if (vxml && (vdef = vs_vol_def_parse_string(vxml, src->volume, NULL)) &&
                !d->format && vdef->target_format && strcmp(vdef->target_format, "unknown") != 0)
                d->format = g_strdup(vdef->target_format);
        }
        if (vol)
            virStorageVolFree(vol);
        if (pool)
            virStoragePoolFree(pool);
    }
    describe_pool_disk(ctx, d, src->pool);
}

/* type='file'/'block': which pool, if any, holds this path. */
static void
resolve_local(Ctx *ctx, VsDiscoveredDisk *d, bool is_block)
{
    virStorageVolPtr vol = virStorageVolLookupByPath(ctx->conn, d->path);
    const char *pool_name = NULL;
    g_autofree char *from_vol = NULL;

    if (vol) {
        virStoragePoolPtr pool = virStoragePoolLookupByVolume(vol);
        if (pool) {
            from_vol = g_strdup(virStoragePoolGetName(pool));
            virStoragePoolFree(pool);
        }
        d->volume = g_strdup(virStorageVolGetName(vol));
        virStorageVolFree(vol);
        pool_name = from_vol;
    }
    if (!pool_name)
        pool_name = pool_by_target_dir(ctx, d->path);
    if (pool_name) {
        if (!d->volume) {
            g_autofree char *base = g_path_get_basename(d->path);
            d->volume = g_strdup(base);
        }
        describe_pool_disk(ctx, d, pool_name);
    }
    if (is_block && !d->block_device) {
        d->block_device = g_strdup(d->path);
        d->wwid = vs_blockdev_wwid(d->path);
    }
}

/* ------------------------------------------------------------------------- */
/* Network disks                                                             */

static const char *const *
nfs_exports(Ctx *ctx, const char *server)
{
    char **exports = NULL;

    if (g_hash_table_lookup_extended(ctx->nfs_exports, server, NULL, (gpointer *)&exports))
        return (const char *const *)exports;
    if (ctx->opts->probe_exports)
        exports = vs_nfs_list_exports(server, ctx->opts->nfs_timeout_ms, NULL);
    g_hash_table_insert(ctx->nfs_exports, g_strdup(server), exports);
    return (const char *const *)exports;
}

static void
resolve_network(Ctx *ctx, VsDiscoveredDisk *d, const VsStorageSource *src)
{
    const VsHostDef *h = src->hosts->len > 0 ? src->hosts->pdata[0] : NULL;
    const char *name = src->name ? src->name : "";
    g_autofree char *host = NULL;

    d->pool_type = g_strdup("network");
    if (h && h->name)
        host = h->port ? g_strdup_printf("%s:%s", h->name, h->port) : g_strdup(h->name);
    d->path = g_strdup_printf("%s://%s%s%s", src->protocol ? src->protocol : "unknown",
                              host ? host : "", name[0] == '/' ? "" : "/", name);

    if (g_strcmp0(src->protocol, "nfs") == 0) {
        const char *const *exports;
        g_autofree char *server_path = name[0] == '/' ? g_strdup(name) : g_strconcat("/", name, NULL);

        d->nfs_server = g_strdup(h ? h->name : NULL);
        exports = d->nfs_server ? nfs_exports(ctx, d->nfs_server) : NULL;
        if (!exports || !vs_nfs_split_path(exports, server_path, &d->nfs_export, &d->nfs_path)) {
            /* The server did not say: the file's directory is the best guess. */
            g_autofree char *base = g_path_get_basename(server_path);
            d->nfs_export = g_path_get_dirname(server_path);
            d->nfs_path = g_strconcat("/", base, NULL);
        }
    } else if (g_strcmp0(src->protocol, "iscsi") == 0) {
        const char *slash = strrchr(name, '/');

        if (h)
            d->iscsi_portal = portal_string(h);
        if (slash) {
            d->iscsi_iqn = g_strndup(name, slash - name);
            d->iscsi_lun = atoi(slash + 1);
        } else {
            d->iscsi_iqn = g_strdup(name);
            d->iscsi_lun = 0;
        }
    } else if (g_strcmp0(src->protocol, "rbd") == 0) {
        /* POOL/IMAGE; POOL/NAMESPACE/IMAGE leaves the image unknown (no namespaces yet) */
        g_auto(GStrv) parts = g_strsplit(name, "/", -1);

        if (g_strv_length(parts) == 2 && parts[0][0] && parts[1][0]) {
            d->rbd_pool = g_strdup(parts[0]);
            d->rbd_image = g_strdup(parts[1]);
        } else if (parts[0] && parts[0][0]) {
            d->rbd_pool = g_strdup(parts[0]);
        }
        d->rbd_user = g_strdup(src->auth_username);
    }
}

/* ------------------------------------------------------------------------- */
/* Backing chains                                                            */

static char *
source_location(const VsStorageSource *s)
{
    if (s->type == VS_DISK_TYPE_NETWORK) {
        const VsHostDef *h = s->hosts->len > 0 ? s->hosts->pdata[0] : NULL;
        const char *name = s->name ? s->name : "";
        return g_strdup_printf("%s://%s%s%s", s->protocol ? s->protocol : "unknown",
                               h && h->name ? h->name : "", name[0] == '/' ? "" : "/", name);
    }
    if (s->type == VS_DISK_TYPE_VOLUME)
        return g_strdup_printf("%s/%s", s->pool ? s->pool : "", s->volume ? s->volume : "");
    return g_strdup(s->path);
}

static void
chain_add(VsDiscoveredDisk *d, char *path, const char *format)
{
    VsChainElem *e = g_new0(VsChainElem, 1);
    e->path = path;
    e->format = g_strdup(format);
    g_ptr_array_add(d->chain, e);
}

static void
resolve_chain(Ctx *ctx, VsDiscoveredDisk *d, const VsStorageSource *src)
{
    g_autofree char *cur = NULL;
    g_autofree char *cur_format = NULL;

    /* What libvirt already knows (live XML, or a chain the user wrote down). */
    if (src->backing || src->backing_terminated) {
        const VsStorageSource *s;
        for (s = src->backing; s; s = s->backing) {
            chain_add(d, source_location(s), s->format);
            if (!s->backing && !s->backing_terminated)
                break;
        }
        for (s = src; s->backing; s = s->backing)
            ;
        d->chain_complete = s->backing_terminated;
        if (d->chain_complete || !s->path || s == src)
            return;
        /* The XML stops early: carry on from the last image it named. */
        cur = g_strdup(s->path);
        cur_format = g_strdup(s->format);
    } else {
        if (src->type != VS_DISK_TYPE_FILE && src->type != VS_DISK_TYPE_BLOCK &&
            src->type != VS_DISK_TYPE_VOLUME) {
            d->chain_complete = false;   /* network images are not probed here */
            return;
        }
        if (!d->path)
            return;
        cur = g_strdup(d->path);
        cur_format = g_strdup(d->format);
    }

    /* Inactive XML carries no chain: read it from the image headers, which
     * a remote hypervisor's are not. */
    if (ctx->opts->remote) {
        d->chain_complete = false;
        return;
    }
    for (int depth = 0; depth < MAX_CHAIN_DEPTH; depth++) {
        g_autoptr(GError) err = NULL;
        g_autoptr(VsImageInfo) info = NULL;
        char *next;

        if (cur_format && strcmp(cur_format, "qcow2") != 0) {
            d->chain_complete = true;    /* raw and friends have no backing file */
            return;
        }
        if (strstr(cur, "://")) {
            d->chain_complete = false;
            return;
        }
        if (!(info = vs_image_probe(cur, &err))) {
            disk_error(d, err->domain == VS_ERROR ? (VsErrorCode)err->code : VS_ERROR_IO,
                       "backing chain: %s", err->message);
            d->chain_complete = false;
            return;
        }
        if (!cur_format && strcmp(info->format, "qcow2") != 0) {
            d->chain_complete = true;
            return;
        }
        if (!info->backing_file) {
            d->chain_complete = true;
            return;
        }
        next = vs_image_resolve_backing(cur, info->backing_file);
        chain_add(d, g_strdup(next), info->backing_format);
        g_free(cur);
        cur = next;
        g_free(cur_format);
        cur_format = g_strdup(info->backing_format);
    }
    disk_error(d, VS_ERROR_UNSUPPORTED, "backing chain: deeper than %d images below %s (a loop?)",
               MAX_CHAIN_DEPTH, d->path);
    d->chain_complete = false;
}

/* ------------------------------------------------------------------------- */
/* Domains                                                                   */

static VsDiscoveredDisk *
discover_disk(Ctx *ctx, const VsDiskDef *disk)
{
    VsDiscoveredDisk *d = g_new0(VsDiscoveredDisk, 1);
    const VsStorageSource *src = disk->src;

    d->iscsi_lun = -1;
    d->chain = g_ptr_array_new_with_free_func((GDestroyNotify)chain_elem_free);
    d->target = g_strdup(disk->target_dev);
    d->device = g_strdup(vs_disk_device_to_string(disk->device));
    d->type = g_strdup(src ? vs_disk_type_to_string(src->type) : "file");
    if (src && src->format)
        d->format = g_strdup(src->format);

    if (disk->device == VS_DISK_DEVICE_CDROM || disk->device == VS_DISK_DEVICE_FLOPPY) {
        d->skipped = g_strdup_printf("removable media (%s)", d->device);
        if (src && src->path)
            d->path = g_strdup(src->path);
        d->pool_type = g_strdup("none");
        return d;
    }
    if (!src || (!src->path && src->type != VS_DISK_TYPE_NETWORK && src->type != VS_DISK_TYPE_VOLUME)) {
        d->skipped = g_strdup("no source");
        d->pool_type = g_strdup("none");
        return d;
    }

    switch (src->type) {
    case VS_DISK_TYPE_FILE:
    case VS_DISK_TYPE_BLOCK:
        d->path = g_strdup(src->path);
        resolve_local(ctx, d, src->type == VS_DISK_TYPE_BLOCK);
        break;
    case VS_DISK_TYPE_VOLUME:
        resolve_volume(ctx, d, src);
        break;
    case VS_DISK_TYPE_NETWORK:
        resolve_network(ctx, d, src);
        break;
    default:
        d->path = src->path ? g_strdup(src->path) : NULL;
        d->skipped = g_strdup_printf("disk type '%s' cannot be backed up", d->type);
        break;
    }
    if (!d->pool_type)
        d->pool_type = g_strdup("none");
    /* libvirt opens a disk without a driver type as raw; so do we. */
    if (!d->format)
        d->format = g_strdup("raw");
    if (!d->skipped && !d->error)
        resolve_chain(ctx, d, src);
    return d;
}

static VsAgentStatus
agent_status(Ctx *ctx, virDomainPtr dom, const VsDomainDef *def, bool running)
{
    char *reply;

    if (!def->has_agent_channel)
        return VS_AGENT_NONE;
    if (!running || def->agent_state == VS_CHANNEL_STATE_DISCONNECTED)
        return VS_AGENT_CONFIGURED;
    reply = virDomainQemuAgentCommand(dom, "{\"execute\":\"guest-ping\"}",
                                      ctx->opts->agent_timeout, 0);
    if (!reply)
        return VS_AGENT_CONFIGURED;
    free(reply);
    return VS_AGENT_RESPONDING;
}

static VsDiscoveredDomain *
discover_domain(Ctx *ctx, virDomainPtr dom)
{
    VsDiscoveredDomain *out = g_new0(VsDiscoveredDomain, 1);
    g_autoptr(VsDomainDef) def = NULL;
    g_autoptr(GError) err = NULL;
    char uuid[VIR_UUID_STRING_BUFLEN];
    int state = VIR_DOMAIN_NOSTATE, reason;
    bool running;

    out->disks = g_ptr_array_new_with_free_func((GDestroyNotify)vs_discovered_disk_free);
    out->problems = g_ptr_array_new_with_free_func((GDestroyNotify)vs_problem_free);
    out->name = g_strdup(virDomainGetName(dom));
    if (virDomainGetUUIDString(dom, uuid) == 0)
        out->uuid = g_strdup(uuid);
    if (virDomainGetState(dom, &state, &reason, 0) < 0) {
        vs_set_libvirt_error(&err, VS_ERROR_LIBVIRT, "discover: domain '%s': cannot read its state",
                             out->name);
        problem(ctx, out, out->name, NULL, g_steal_pointer(&err));
    }
    out->state = g_strdup(vs_domain_state_string(state));
    running = state != VIR_DOMAIN_SHUTOFF && state != VIR_DOMAIN_NOSTATE &&
              state != VIR_DOMAIN_CRASHED;
    out->id = running ? (int)virDomainGetID(dom) : -1;
    out->persistent = virDomainIsPersistent(dom) == 1;

    if (!(out->xml = virDomainGetXMLDesc(dom, 0))) {
        vs_set_libvirt_error(&err, VS_ERROR_LIBVIRT, "discover: domain '%s': cannot read its XML",
                             out->name);
        problem(ctx, out, out->name, NULL, g_steal_pointer(&err));
        return out;
    }
    if (!(def = vs_domain_def_parse_string(out->xml, out->name, &err))) {
        vs_error_prefix(&err, "discover: domain '%s'", out->name);
        problem(ctx, out, out->name, NULL, g_steal_pointer(&err));
        return out;
    }
    out->agent = agent_status(ctx, dom, def, running);
    for (guint i = 0; i < def->disks->len; i++) {
        VsDiscoveredDisk *d = discover_disk(ctx, def->disks->pdata[i]);
        if (ctx->opts->remote)
            d->snapshot_reason = g_strdup("no provider: the hypervisor is another host, whose "
                                          "storage is not looked at from here");
        else
            vs_discover_snapshot_provider(d, out->name, ctx->opts->snapshot_config);
        if (ctx->opts->locate && !vs_discover_locate(d, out->name, ctx->opts->snapshot_config, &err))
            problem(ctx, out, out->name, d->target, g_steal_pointer(&err));
        if (d->error)
            problem(ctx, out, out->name, d->target,
                    g_error_new(VS_ERROR, d->error_code, "discover: domain '%s': disk %s: %s",
                                out->name, d->target, d->error));
        g_ptr_array_add(out->disks, d);
    }
    out->def = g_steal_pointer(&def);
    return out;
}

static virDomainPtr
lookup_domain(virConnectPtr conn, const char *name)
{
    virDomainPtr dom = virDomainLookupByName(conn, name);
    char *end = NULL;
    long id;

    /* virsh accepts a name, a UUID or an ID: so do we. */
    if (!dom && strlen(name) == VIR_UUID_STRING_BUFLEN - 1)
        dom = virDomainLookupByUUIDString(conn, name);
    if (!dom && *name) {
        id = strtol(name, &end, 10);
        if (*end == '\0' && id >= 0 && id <= G_MAXINT)
            dom = virDomainLookupByID(conn, (int)id);
    }
    return dom;
}

static int
compare_domains(gconstpointer a, gconstpointer b)
{
    const VsDiscoveredDomain *x = *(VsDiscoveredDomain *const *)a;
    const VsDiscoveredDomain *y = *(VsDiscoveredDomain *const *)b;
    return g_strcmp0(x->name, y->name);
}

GPtrArray *
vs_discover(virConnectPtr conn, const char *const *names, const VsDiscoverOptions *opts,
            GPtrArray **problems, GError **error)
{
    VsDiscoverOptions defaults;
    g_autoptr(GPtrArray) out =
        g_ptr_array_new_with_free_func((GDestroyNotify)vs_discovered_domain_free);
    Ctx ctx = {
        .conn = conn,
        .opts = opts,
        .pools = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)pool_info_free),
        .nfs_exports = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_strfreev),
        .problems = g_ptr_array_new_with_free_func((GDestroyNotify)vs_problem_free),
    };

    if (!opts) {
        vs_discover_options_init(&defaults);
        ctx.opts = &defaults;
    }

    if (!names || !names[0]) {
        virDomainPtr *doms = NULL;
        int n = virConnectListAllDomains(conn, &doms, 0);

        if (n < 0) {
            vs_set_libvirt_error(error, VS_ERROR_LIBVIRT, "discover: cannot list domains");
            g_clear_pointer(&out, g_ptr_array_unref);
            goto cleanup;
        }
        load_pools(&ctx);
        for (int i = 0; i < n; i++) {
            g_ptr_array_add(out, discover_domain(&ctx, doms[i]));
            virDomainFree(doms[i]);
        }
        free(doms);
        g_ptr_array_sort(out, compare_domains);
    } else {
        load_pools(&ctx);
        for (size_t i = 0; names[i]; i++) {
            virDomainPtr dom = lookup_domain(conn, names[i]);
            if (!dom) {
                char *uri = virConnectGetURI(conn);
                problem(&ctx, NULL, names[i], NULL,
                        g_error_new(VS_ERROR, VS_ERROR_NOT_FOUND, "discover: domain '%s' not found: "
                                    "`virsh -c %s list --all` lists the domains this connection "
                                    "knows", names[i], uri ? uri : "URI"));
                free(uri);
                continue;
            }
            g_ptr_array_add(out, discover_domain(&ctx, dom));
            virDomainFree(dom);
        }
    }

cleanup:
    if (problems && ctx.problems->len > 0)
        *problems = g_steal_pointer(&ctx.problems);
    if (ctx.problems)
        g_ptr_array_unref(ctx.problems);
    g_hash_table_unref(ctx.pools);
    g_hash_table_unref(ctx.nfs_exports);
    return out ? g_steal_pointer(&out) : NULL;
}
