/* The pre-checks of `virtsnap migrate` that ask the destination: its CPU can
 * run the guest's, it has the memory, it sees every disk. Each check asks
 * the destination's libvirtd itself, never assumes: a disk is "seen" when the
 * destination finds the very path (a storage volume it knows, or the file in
 * its directory listed through a transient storage pool that is destroyed
 * again), because two hosts that name a path alike may not share it. Each
 * failure names the check, the thing and what to do; each check says in the
 * result what it compared, also when it passes (a TCG guest without <cpu> is
 * checked against the destination's domain capabilities, not a CPU model). */
#include "config.h"
#include "migrate-internal.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libvirt/virterror.h>
#include <string.h>
#include <unistd.h>

void
vs_migrate_check_add(VsMigrateResult *r, const char *name, bool ok, const char *fmt, ...)
{
    VsMigrateCheck *c = g_new0(VsMigrateCheck, 1);
    va_list ap;

    c->name = g_strdup(name);
    c->ok = ok;
    va_start(ap, fmt);
    c->detail = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_ptr_array_add(r->checks, c);
}

unsigned long
vs_migrate_flags(const VsMigrateOptions *o, const char *name, bool active, bool persistent,
                 GError **error)
{
    unsigned long flags = 0;

    if (o->mode == VS_MIGRATE_LIVE && !active) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "migrate: domain '%s' is shut off: --live moves a running domain; give "
                    "--offline to move its definition, or start it first", name);
        return 0;
    }
    if (o->mode == VS_MIGRATE_OFFLINE && active) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "migrate: domain '%s' is running: --offline moves only a shut-off domain's "
                    "definition; shut it down first, or leave out --offline for a live migration", name);
        return 0;
    }
    if (!active && !persistent) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "migrate: domain '%s' is neither running nor defined: nothing to move", name);
        return 0;
    }
    if (active)
        flags |= VIR_MIGRATE_LIVE;
    else
        flags |= VIR_MIGRATE_OFFLINE;
    if (persistent)
        flags |= VIR_MIGRATE_PERSIST_DEST | VIR_MIGRATE_UNDEFINE_SOURCE;
    if (o->unsafe)
        flags |= VIR_MIGRATE_UNSAFE;
    if (o->copy_storage && active)
        flags |= VIR_MIGRATE_NON_SHARED_DISK;
    return flags;
}

bool
vs_migrate_memory_fits(const char *name, const char *dest, uint64_t need_kib,
                       unsigned long long free_bytes, char **detail, GError **error)
{
    uint64_t need_mib = (need_kib + 1023) / 1024;
    unsigned long long free_mib = free_bytes / (1024 * 1024);

    *detail = g_strdup_printf("the guest needs %" G_GUINT64_FORMAT " MiB, %s has %llu MiB free",
                              need_mib, dest, free_mib);
    if (need_kib <= free_bytes / 1024)
        return true;
    g_set_error(error, VS_ERROR, VS_ERROR_FAILED,
                "migrate: memory: domain '%s' needs %" G_GUINT64_FORMAT " MiB, the destination %s "
                "has %llu MiB free: free memory there, or migrate to another host", name, need_mib,
                dest, free_mib);
    return false;
}

/* ------------------------------------------------------------------------- */
/* CPU                                                                       */

/* The text of the first node XPATH finds in DOC (an element: its XML), or NULL. */
static char *
xpath_text(xmlDocPtr doc, const char *xpath, bool as_xml)
{
    xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    xmlXPathObjectPtr res = ctx ? xmlXPathEvalExpression(BAD_CAST xpath, ctx) : NULL;
    char *out = NULL;

    if (res && res->nodesetval && res->nodesetval->nodeNr > 0) {
        xmlNodePtr n = res->nodesetval->nodeTab[0];

        if (as_xml) {
            xmlBufferPtr buf = xmlBufferCreate();
            if (xmlNodeDump(buf, doc, n, 0, 0) >= 0)
                out = g_strdup((const char *)xmlBufferContent(buf));
            xmlBufferFree(buf);
        } else {
            xmlChar *c = xmlNodeGetContent(n);
            out = g_strdup((const char *)c);
            xmlFree(c);
        }
    }
    xmlXPathFreeObject(res);
    xmlXPathFreeContext(ctx);
    return out;
}

typedef struct {
    char *type, *arch, *machine, *emulator, *cpu, *cpu_mode;
} GuestPlatform;

static void
platform_clear(GuestPlatform *p)
{
    g_free(p->type);
    g_free(p->arch);
    g_free(p->machine);
    g_free(p->emulator);
    g_free(p->cpu);
    g_free(p->cpu_mode);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(GuestPlatform, platform_clear)

static bool
read_platform(const char *xml, GuestPlatform *p, GError **error)
{
    xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL, XML_PARSE_NONET);

    if (!doc) {
        g_set_error(error, VS_ERROR, VS_ERROR_XML, "migrate: cpu: cannot parse the domain's XML");
        return false;
    }
    p->type = xpath_text(doc, "/domain/@type", false);
    p->arch = xpath_text(doc, "/domain/os/type/@arch", false);
    p->machine = xpath_text(doc, "/domain/os/type/@machine", false);
    p->emulator = xpath_text(doc, "/domain/devices/emulator", false);
    p->cpu = xpath_text(doc, "/domain/cpu", true);
    p->cpu_mode = xpath_text(doc, "/domain/cpu/@mode", false);
    xmlFreeDoc(doc);
    return true;
}

/* The source host's own CPU (capabilities), what a host-passthrough or
 * host-model guest runs with. */
static char *
host_cpu_xml(virConnectPtr conn)
{
    g_autofree char *caps = virConnectGetCapabilities(conn);
    xmlDocPtr doc = caps ? xmlReadMemory(caps, (int)strlen(caps), "caps.xml", NULL, XML_PARSE_NONET) : NULL;
    char *cpu = doc ? xpath_text(doc, "/capabilities/host/cpu", true) : NULL;

    if (doc)
        xmlFreeDoc(doc);
    return cpu;
}

static bool
cpu_result(VsMigrateRun *m, int cmp, const char *what, GError **error)
{
    const char *name = m->disc->name;

    if (cmp == VIR_CPU_COMPARE_IDENTICAL || cmp == VIR_CPU_COMPARE_SUPERSET) {
        vs_migrate_check_add(m->r, "cpu", true, "%s: %s on %s", what,
                             cmp == VIR_CPU_COMPARE_IDENTICAL ? "identical" : "the destination's is a superset",
                             m->dest_uri);
        return true;
    }
    if (cmp == VIR_CPU_COMPARE_INCOMPATIBLE) {
        vs_migrate_check_add(m->r, "cpu", false, "%s: incompatible", what);
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "migrate: cpu: %s of domain '%s' is not offered by %s (%s): give the guest a CPU "
                    "model both hosts have (<cpu mode='custom'>), or migrate to a host with that CPU",
                    what, name, m->dest_uri, virGetLastErrorMessage());
        return false;
    }
    vs_migrate_check_add(m->r, "cpu", false, "%s: libvirt could not compare", what);
    g_set_error(error, VS_ERROR, VS_ERROR_LIBVIRT, "migrate: cpu: cannot compare %s of domain '%s' "
                "with %s: %s", what, name, m->dest_uri, virGetLastErrorMessage());
    return false;
}

bool
vs_migrate_check_cpu(VsMigrateRun *m, GError **error)
{
    g_auto(GuestPlatform) p = { 0 };
    g_autofree char *caps = NULL;
    const char *name = m->disc->name;

    if (!m->disc->xml) {
        g_set_error(error, VS_ERROR, VS_ERROR_LIBVIRT, "migrate: cpu: the XML of domain '%s' could not "
                    "be read", name);
        return false;
    }
    if (!read_platform(m->disc->xml, &p, error))
        return false;
    if (!p.cpu) {
        /* No <cpu> (an inactive definition: a running domain's live XML names the model
         * QEMU runs, qemu64 for TCG): QEMU's default model of the domain type.
         * What the destination must offer is that emulator, type, arch and machine. */
        caps = virConnectGetDomainCapabilities(m->dconn, p.emulator, p.arch, p.machine, p.type, 0);
        if (!caps) {
            vs_migrate_check_add(m->r, "cpu", false, "domain type %s, %s, machine %s: not offered",
                                 p.type, p.arch, p.machine);
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "migrate: cpu: %s does not offer domain type '%s' (arch %s, machine %s, emulator %s) "
                        "that domain '%s' runs on: %s; install that hypervisor there, or migrate to another host",
                        m->dest_uri, p.type, p.arch, p.machine, p.emulator, name, virGetLastErrorMessage());
            return false;
        }
        vs_migrate_check_add(m->r, "cpu", true,
                             "the guest has no <cpu> (QEMU's default model for domain type %s): the "
                             "destination offers type %s, arch %s, machine %s (domain capabilities)",
                             p.type, p.type, p.arch, p.machine);
        return true;
    }
    if (g_strcmp0(p.cpu_mode, "host-passthrough") == 0 || g_strcmp0(p.cpu_mode, "host-model") == 0) {
        g_autofree char *host = host_cpu_xml(m->conn);
        g_autofree char *what = g_strdup_printf("the source host's CPU (the guest's <cpu mode='%s'>)", p.cpu_mode);

        if (!host) {
            vs_migrate_check_add(m->r, "cpu", false, "the source host's CPU: unknown");
            g_set_error(error, VS_ERROR, VS_ERROR_LIBVIRT, "migrate: cpu: the source host's capabilities "
                        "name no CPU: %s", virGetLastErrorMessage());
            return false;
        }
        return cpu_result(m, virConnectCompareCPU(m->dconn, host, 0), what, error);
    }
    return cpu_result(m, virConnectCompareHypervisorCPU(m->dconn, p.emulator, p.arch, p.machine, p.type,
                                                        p.cpu, 0),
                      "the guest's <cpu>", error);
}

/* ------------------------------------------------------------------------- */
/* Memory                                                                    */

bool
vs_migrate_check_memory(VsMigrateRun *m, GError **error)
{
    virDomainInfo info;
    unsigned long long free_bytes;
    g_autofree char *detail = NULL;

    if (!m->active) {
        vs_migrate_check_add(m->r, "memory", true, "offline: the definition moves, no memory is taken");
        return true;
    }
    if (virDomainGetInfo(m->dom, &info) < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_LIBVIRT, "migrate: memory: cannot read domain '%s''s "
                    "memory size: %s", m->disc->name, virGetLastErrorMessage());
        return false;
    }
    /* 0 is also libvirt's answer on failure: a host with no free page at all is no target either. */
    free_bytes = virNodeGetFreeMemory(m->dconn);
    if (!vs_migrate_memory_fits(m->disc->name, m->dest_uri, info.maxMem, free_bytes, &detail, error)) {
        vs_migrate_check_add(m->r, "memory", false, "%s", detail);
        return false;
    }
    vs_migrate_check_add(m->r, "memory", true, "%s", detail);
    return true;
}

/* ------------------------------------------------------------------------- */
/* Disks                                                                     */

/* Whether DCONN's host has the file PATH: 1 yes, 0 no (*WHY says what it
 * found), -1 it cannot tell (*WHY says why). Asked through its storage
 * driver, the only file access a libvirt connection offers: a volume it knows
 * by that path, else the listing of PATH's directory by a transient dir pool
 * (destroyed again; refreshing it only reads image headers). */
static int
dest_has_file(virConnectPtr dconn, const char *path, char **why)
{
    g_autofree char *dir = g_path_get_dirname(path);
    g_autofree char *base = g_path_get_basename(path);
    g_autofree char *edir = g_markup_escape_text(dir, -1);
    g_autofree char *pname = g_strdup_printf("virtsnap-probe-%d-%" G_GINT64_FORMAT, (int)getpid(),
                                             g_get_monotonic_time());
    g_autofree char *xml = g_strdup_printf("<pool type='dir'><name>%s</name><target><path>%s</path>"
                                           "</target></pool>", pname, edir);
    virStorageVolPtr vol = virStorageVolLookupByPath(dconn, path);
    virStoragePoolPtr pool;
    bool ours = true;
    int found;

    if (vol) {
        virStorageVolFree(vol);
        return 1;
    }
    if (!(pool = virStoragePoolCreateXML(dconn, xml, 0))) {
        g_autofree char *msg = g_strdup(virGetLastErrorMessage());

        /* A pool of its own there already covers the directory (libvirt allows one per path). */
        ours = false;
        if (!(pool = virStoragePoolLookupByTargetPath(dconn, dir))) {
            *why = g_strdup_printf("the destination cannot list %s: %s", dir, msg);
            return 0;
        }
        if (virStoragePoolIsActive(pool) != 1 || virStoragePoolRefresh(pool, 0) < 0) {
            *why = g_strdup_printf("its pool '%s' there covers %s but is not active: start it",
                                   virStoragePoolGetName(pool), dir);
            virStoragePoolFree(pool);
            return -1;
        }
    }
    vol = virStorageVolLookupByName(pool, base);
    found = vol != NULL;
    if (vol)
        virStorageVolFree(vol);
    else
        *why = g_strdup_printf("%s there holds no %s", dir, base);
    if (ours)
        virStoragePoolDestroy(pool);
    virStoragePoolFree(pool);
    return found;
}

/* Whether the destination sees disk D: true with *HOW, false with *WHY. */
static bool
disk_reachable(virConnectPtr dconn, const VsDiscoveredDisk *d, char **how, char **why)
{
    if (g_strcmp0(d->type, "network") == 0) {
        *how = g_strdup_printf("%s: network disk, opened by the destination's QEMU itself", d->target);
        return true;
    }
    if (g_strcmp0(d->type, "volume") == 0 && d->pool && d->volume) {
        virStoragePoolPtr pool = virStoragePoolLookupByName(dconn, d->pool);
        virStorageVolPtr vol = pool ? virStorageVolLookupByName(pool, d->volume) : NULL;
        bool ok = vol != NULL;

        if (ok)
            *how = g_strdup_printf("%s: volume %s of pool %s, there too", d->target, d->volume, d->pool);
        else
            *why = g_strdup_printf("it has %s volume '%s' of pool '%s'", pool ? "no" : "no pool, hence no",
                                   d->volume, d->pool);
        if (vol)
            virStorageVolFree(vol);
        if (pool)
            virStoragePoolFree(pool);
        return ok;
    }
    if (g_strcmp0(d->type, "block") == 0) {
        virStorageVolPtr vol = virStorageVolLookupByPath(dconn, d->path);

        if (vol) {
            virStorageVolFree(vol);
            *how = g_strdup_printf("%s: %s, a volume known there", d->target, d->path);
            return true;
        }
        *why = g_strdup_printf("no storage pool there knows the device %s, so it cannot be checked", d->path);
        return false;
    }
    if (dest_has_file(dconn, d->path, why) == 1) {
        *how = g_strdup_printf("%s: %s, found there", d->target, d->path);
        return true;
    }
    return false;
}

bool
vs_migrate_check_disks(VsMigrateRun *m, GError **error)
{
    g_autoptr(GString) seen = g_string_new(NULL);

    if (m->o->copy_storage && m->active) {
        vs_migrate_check_add(m->r, "disks", true, "--copy-storage: the disks are copied to the destination");
        return true;
    }
    for (guint i = 0; i < m->disc->disks->len; i++) {
        const VsDiscoveredDisk *d = m->disc->disks->pdata[i];
        g_autofree char *how = NULL, *why = NULL;

        if (!d->path) {
            g_string_append_printf(seen, "%s%s: empty", seen->len ? "; " : "", d->target);
            continue;
        }
        if (!disk_reachable(m->dconn, d, &how, &why)) {
            vs_migrate_check_add(m->r, "disks", false, "%s: %s: %s", d->target, d->path, why);
            g_set_error(error, VS_ERROR, VS_ERROR_UNREACHABLE,
                        "migrate: disks: disk %s of domain '%s' is %s, which the destination %s does not "
                        "see (%s): put it on storage both hosts share, or give --copy-storage to copy it",
                        d->target, m->disc->name, d->path, m->dest_uri, why);
            return false;
        }
        g_string_append_printf(seen, "%s%s", seen->len ? "; " : "", how);
    }
    vs_migrate_check_add(m->r, "disks", true, "%s", seen->len ? seen->str : "no disks");
    return true;
}
