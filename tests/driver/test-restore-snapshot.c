/* restore --from-snapshot and --define-pools (driver/restore-snapshot.c,
 * restore-pools.c) through vs_restore_run itself: real disk files on a
 * loop-mounted XFS made with reflink (as tests/block/snapshot/ makes it; root
 * and loop devices, skipped otherwise), real reflink snapshots and a real
 * repository whose manifest records them (as `backup --storage-snapshot
 * --no-copy` writes it), and libvirt's in-process test driver
 * (test:///default: domains and pools defined, started and looked up, no
 * daemon, no guest). Each test checks what a user would: the disk's bytes
 * after a rollback (the backup point's, in the same inode), a clone's bytes
 * and the new domain's definition on it, the original untouched, the error
 * naming what is wrong with nothing changed, no temp file left, the pool
 * defined and active again. */
#include "config.h"
#include "vs-restore.h"
#include "vs-snapshot.h"
#include "vs-driver.h"
#include "vs-temp.h"

#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DISK_SIZE (4 * 1024 * 1024)

typedef struct {
    char *tmp;          /* holds everything below */
    char *mnt;          /* the XFS (reflink=1) */
    char *pooldir;      /* MNT/pool: the disks */
    char *repo, *state;
    virConnectPtr conn;
} Fx;

static bool
run(const char *cmd)
{
    g_autofree char *out = NULL, *err = NULL;
    int status = -1;

    if (!g_spawn_command_line_sync(cmd, &out, &err, &status, NULL) || !g_spawn_check_wait_status(status, NULL)) {
        g_test_message("%s: %s", cmd, err ? err : "failed");
        return false;
    }
    return true;
}

static void
setup(Fx *fx, gconstpointer data)
{
    g_autofree char *cmd = NULL;
    g_autoptr(GError) err = NULL;

    (void)data;
    memset(fx, 0, sizeof *fx);
    if (geteuid() != 0 || !g_file_test("/dev/loop-control", G_FILE_TEST_EXISTS) ||
        !g_file_test("/usr/sbin/mkfs.xfs", G_FILE_TEST_IS_EXECUTABLE)) {
        g_test_skip("needs root, loop devices and mkfs.xfs");
        return;
    }
    fx->tmp = g_dir_make_tmp("vs-restore-snap-XXXXXX", NULL);
    fx->mnt = g_build_filename(fx->tmp, "mnt", NULL);
    cmd = g_strdup_printf("sh -c 'truncate -s 300M %s/fs.img && /usr/sbin/mkfs.xfs -q -m reflink=1 %s/fs.img && "
                          "mkdir %s && mount -o loop %s/fs.img %s && mkdir %s/pool'", fx->tmp, fx->tmp, fx->mnt,
                          fx->tmp, fx->mnt, fx->mnt);
    g_assert_true(run(cmd));
    fx->pooldir = g_build_filename(fx->mnt, "pool", NULL);
    fx->repo = g_build_filename(fx->tmp, "repo", NULL);
    fx->state = g_build_filename(fx->tmp, "state", NULL);
    fx->conn = vs_conn_open("test:///default", &err);
    g_assert_no_error(err);
}

static void
teardown(Fx *fx, gconstpointer data)
{
    g_autofree char *cmd = NULL;

    (void)data;
    if (!fx->tmp)
        return;
    if (fx->conn)
        vs_conn_close(fx->conn);
    cmd = g_strdup_printf("sh -c 'umount %s && rm -rf %s'", fx->mnt, fx->tmp);
    g_assert_true(run(cmd));
    g_free(fx->tmp); g_free(fx->mnt); g_free(fx->pooldir); g_free(fx->repo); g_free(fx->state);
}

/* PATH becomes DISK_SIZE bytes of a pattern made from SEED. */
static void
write_disk(const char *path, guint seed)
{
    g_autofree guint8 *buf = g_malloc(DISK_SIZE);
    g_autoptr(GError) err = NULL;
    GRand *r = g_rand_new_with_seed(seed);

    for (gsize i = 0; i < DISK_SIZE; i += 4)
        *(guint32 *)(buf + i) = g_rand_int(r);
    g_rand_free(r);
    g_assert_true(g_file_set_contents(path, (char *)buf, DISK_SIZE, &err));
}

static char *
digest_of(const char *path)
{
    g_autofree char *data = NULL;
    gsize len = 0;

    if (!g_file_get_contents(path, &data, &len, NULL))
        return g_strdup("(unreadable)");
    return g_compute_checksum_for_data(G_CHECKSUM_SHA256, (guint8 *)data, len);
}

static char *
expected(guint seed)
{
    g_autofree guint8 *buf = g_malloc(DISK_SIZE);
    GRand *r = g_rand_new_with_seed(seed);

    for (gsize i = 0; i < DISK_SIZE; i += 4)
        *(guint32 *)(buf + i) = g_rand_int(r);
    g_rand_free(r);
    return g_compute_checksum_for_data(G_CHECKSUM_SHA256, buf, DISK_SIZE);
}

static char *
domain_xml(const char *name, const char *uuid, const char *vda, const char *vdb)
{
    g_autofree char *second = vdb ? g_strdup_printf(
        "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='%s'/>"
        "<target dev='vdb' bus='virtio'/></disk>", vdb) : g_strdup("");

    return g_strdup_printf("<domain type='test'><name>%s</name><uuid>%s</uuid><memory>65536</memory>"
                           "<os><type>hvm</type></os><devices>"
                           "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='%s'/>"
                           "<target dev='vda' bus='virtio'/></disk>%s</devices></domain>",
                           name, uuid, vda, second);
}

static char *
pool_xml(Fx *fx)
{
    return g_strdup_printf("<pool type='dir'><name>snappool</name><target><path>%s</path></target></pool>",
                           fx->pooldir);
}

/* Backup of domain NAME (its definition XML) whose disk vda (PATH) is a
 * reflink snapshot taken now, recorded in pool POOL if given (with its XML
 * saved); WITH_VDB adds a disk vdb kept in the repository, without a
 * snapshot. Returns the backup's id. */
static char *
backup(Fx *fx, const char *name, const char *xml, const char *path, const char *pool, bool with_vdb)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VsRepo) repo = vs_repo_open(fx->repo, true, true, 0, &err);
    g_autoptr(VsManifest) m = vs_manifest_new();
    g_autoptr(VsSnapProvider) p = vs_snap_reflink_new(fx->mnt, &err);
    g_autofree char *disk_name = g_strdup_printf("%s/vda", name);
    g_autofree char *vol = g_path_get_basename(path);
    g_autofree char *label = g_strdup_printf("virtsnap-%s-vda", m->id);
    VsSnapLocation loc = { .kind = VS_SNAP_LOC_FILE, .disk = disk_name, .path = path, .pool = pool,
                           .volume = pool ? vol : NULL, .iscsi_lun = -1 };
    VsManifestDomain *d;
    VsManifestDisk *disk;
    VsManifestSnapshot *s;
    char *handle;

    g_assert_no_error(err);
    handle = vs_snap_create(p, &loc, label, &err);
    g_assert_no_error(err);
    d = vs_manifest_add_domain(m, name);
    d->consistency = g_strdup("crash");
    d->xml = g_strdup(xml);
    disk = vs_manifest_domain_add_disk(d, "vda");
    disk->format = g_strdup("raw");
    disk->virtual_size = DISK_SIZE;
    disk->source = g_strdup(path);
    disk->in_repo = false;
    disk->snapshot = s = vs_manifest_snapshot_new();
    s->provider = g_strdup("reflink");
    s->handle = handle;
    s->kind = g_strdup("file");
    s->path = g_strdup(path);
    s->snapshot_dir = g_strdup(fx->mnt);
    s->pool = g_strdup(pool);
    s->volume = pool ? g_strdup(vol) : NULL;
    s->size = DISK_SIZE;
    if (pool) {
        g_autofree char *px = pool_xml(fx);
        vs_manifest_domain_add_pool(d, pool, px);
    }
    if (with_vdb) {
        disk = vs_manifest_domain_add_disk(d, "vdb");
        disk->format = g_strdup("raw");
        disk->virtual_size = DISK_SIZE;
        disk->source = g_build_filename(fx->pooldir, "other-vdb.raw", NULL);
    }
    g_assert_true(vs_repo_commit_manifest(repo, m, &err));
    g_assert_no_error(err);
    return g_strdup(m->id);
}

/* A backup from the repository of domain NAME whose disk vda (PATH, as it is
 * now) is stored as chunks, the pool snappool's XML saved (PATH is in its
 * directory). Returns the backup's id. */
static char *
backup_data(Fx *fx, const char *name, const char *xml, const char *path)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VsRepo) repo = vs_repo_open(fx->repo, true, true, 0, &err);
    g_autoptr(VsManifest) m = vs_manifest_new();
    g_autofree char *data = NULL, *px = pool_xml(fx);
    uint32_t cs = vs_repo_chunk_size(repo);
    gsize len = 0;
    VsManifestDomain *d;
    VsManifestDisk *disk;

    g_assert_true(g_file_get_contents(path, &data, &len, NULL));
    d = vs_manifest_add_domain(m, name);
    d->consistency = g_strdup("crash");
    d->xml = g_strdup(xml);
    vs_manifest_domain_add_pool(d, "snappool", px);
    disk = vs_manifest_domain_add_disk(d, "vda");
    disk->format = g_strdup("raw");
    disk->virtual_size = len;
    disk->source = g_strdup(path);
    for (gsize off = 0; off < len; off += cs) {
        VsChunkRef ref = { .offset = off, .length = (uint32_t)MIN((gsize)cs, len - off) };

        g_assert_true(vs_repo_put_chunk(repo, data + off, ref.length, &ref.digest, NULL, &err));
        g_array_append_val(disk->chunks, ref);
    }
    g_assert_true(vs_repo_commit_manifest(repo, m, &err));
    g_assert_no_error(err);
    return g_strdup(m->id);
}

static void
options(Fx *fx, VsRestoreOptions *o)
{
    vs_restore_options_init(o);
    o->repo_path = fx->repo;
    o->state_dir = fx->state;
    o->from_snapshot = true;
    o->snapshot_config = NULL;
}

static void
define(Fx *fx, const char *xml)
{
    virDomainPtr dom = virDomainDefineXML(fx->conn, xml);

    g_assert_nonnull(dom);
    virDomainFree(dom);
}

static void
undefine(Fx *fx, const char *name)
{
    virDomainPtr dom = virDomainLookupByName(fx->conn, name);

    if (dom) {
        if (virDomainIsActive(dom) == 1)
            virDomainDestroy(dom);
        virDomainUndefine(dom);
        virDomainFree(dom);
    }
}

/* No temp file of ours in DIR. */
static void
assert_no_temps(const char *dir)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    const char *name;

    while (d && (name = g_dir_read_name(d)))
        g_assert_false(g_str_has_prefix(name, VS_TEMP_PREFIX));
}

/* ------------------------------------------------------------------------- */

/* In place: the disk's content is the backup point's again, in the same
 * inode; the result says rolled-back and which snapshot. */
static void
test_rollback(Fx *fx, gconstpointer data)
{
    g_autofree char *disk = NULL, *xml = NULL, *id = NULL, *want = NULL, *got = NULL;
    const char *names[] = { "snapvm1", NULL };
    g_autoptr(VsRestoreResult) res = NULL;
    g_autoptr(GError) err = NULL;
    VsRestoreDomainResult *dr;
    VsRestoreOptions o;
    struct stat before, after;

    (void)data;
    if (!fx->tmp)
        return;
    disk = g_build_filename(fx->pooldir, "snapvm1-vda.raw", NULL);
    xml = domain_xml("snapvm1", "5eed0001-0000-4000-8000-000000000001", disk, NULL);
    write_disk(disk, 1);
    define(fx, xml);
    id = backup(fx, "snapvm1", xml, disk, NULL, false);
    write_disk(disk, 2);                 /* the guest wrote since */
    g_assert_cmpint(stat(disk, &before), ==, 0);
    options(fx, &o);
    o.define = true;
    res = vs_restore_run(fx->conn, names, &o, &err);
    g_assert_no_error(err);
    g_assert_nonnull(res);
    dr = res->domains->pdata[0];
    g_assert_cmpstr(dr->error, ==, NULL);
    g_assert_true(dr->ok && dr->in_place && dr->defined);
    g_assert_cmpuint(dr->disks->len, ==, 1);
    g_assert_cmpstr(((VsRestoreDiskResult *)dr->disks->pdata[0])->action, ==, "rolled-back");
    g_assert_true(g_str_has_prefix(((VsRestoreDiskResult *)dr->disks->pdata[0])->snapshot, "reflink:virtsnap-"));
    want = expected(1);
    got = digest_of(disk);
    g_assert_cmpstr(got, ==, want);
    g_assert_cmpint(stat(disk, &after), ==, 0);
    g_assert_cmpuint(before.st_ino, ==, after.st_ino);
    assert_no_temps(fx->pooldir);
    undefine(fx, "snapvm1");
}

/* The repository names a disk the domain does not use now (and no pool
 * volume names it): nothing is rolled back. */
static void
test_rollback_unconfirmed(Fx *fx, gconstpointer data)
{
    g_autofree char *disk = NULL, *other = NULL, *xml = NULL, *now = NULL, *id = NULL, *want = NULL, *got = NULL;
    const char *names[] = { "snapvm2", NULL };
    g_autoptr(VsRestoreResult) res = NULL;
    g_autoptr(GError) err = NULL;
    VsRestoreOptions o;

    (void)data;
    if (!fx->tmp)
        return;
    disk = g_build_filename(fx->pooldir, "snapvm2-vda.raw", NULL);
    other = g_build_filename(fx->pooldir, "snapvm2-new.raw", NULL);
    xml = domain_xml("snapvm2", "5eed0002-0000-4000-8000-000000000002", disk, NULL);
    now = domain_xml("snapvm2", "5eed0002-0000-4000-8000-000000000002", other, NULL);
    write_disk(disk, 3);
    write_disk(other, 5);
    id = backup(fx, "snapvm2", xml, disk, NULL, false);
    write_disk(disk, 4);
    define(fx, now);                     /* its disk is another file now */
    options(fx, &o);
    o.define = true;
    res = vs_restore_run(fx->conn, names, &o, &err);
    g_assert_null(res);
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(err->message, "not rolled back"));
    g_assert_nonnull(strstr(err->message, disk));
    want = expected(4);
    got = digest_of(disk);
    g_assert_cmpstr(got, ==, want);
    undefine(fx, "snapvm2");
}

/* The record names a pool and volume whose path is the recorded disk. While
 * the domain exists, only its definition confirms (a pool's volume may be
 * any domain's disk): refused. Once the domain is undefined, the pool's
 * volume confirms it and the disk is rolled back. */
static void
test_rollback_pool_volume(Fx *fx, gconstpointer data)
{
    g_autofree char *disk = NULL, *other = NULL, *xml = NULL, *now = NULL, *id = NULL, *want = NULL, *got = NULL;
    g_autofree char *px = NULL;
    const char *names[] = { "snapvm9", NULL };
    g_autoptr(VsRestoreResult) res = NULL;
    g_autoptr(GError) err = NULL;
    virStoragePoolPtr pool;
    virStorageVolPtr vol;
    VsRestoreOptions o;

    (void)data;
    if (!fx->tmp)
        return;
    px = pool_xml(fx);
    pool = virStoragePoolDefineXML(fx->conn, px, 0);
    g_assert_nonnull(pool);
    g_assert_cmpint(virStoragePoolCreate(pool, 0), ==, 0);
    /* the test driver's volume: its path is the pool's directory and its name */
    vol = virStorageVolCreateXML(pool, "<volume><name>snapvm9-vda.raw</name><capacity>4194304</capacity>"
                                 "</volume>", 0);
    g_assert_nonnull(vol);
    virStorageVolFree(vol);
    disk = g_build_filename(fx->pooldir, "snapvm9-vda.raw", NULL);
    other = g_build_filename(fx->pooldir, "snapvm9-new.raw", NULL);
    xml = domain_xml("snapvm9", "5eed0009-0000-4000-8000-000000000009", disk, NULL);
    now = domain_xml("snapvm9", "5eed0009-0000-4000-8000-000000000009", other, NULL);
    write_disk(disk, 17);
    id = backup(fx, "snapvm9", xml, disk, "snappool", false);
    write_disk(disk, 18);
    define(fx, now);
    options(fx, &o);
    res = vs_restore_run(fx->conn, names, &o, &err);
    g_assert_null(res);
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(err->message, "not rolled back"));
    want = expected(18);
    got = digest_of(disk);
    g_assert_cmpstr(got, ==, want);
    g_clear_error(&err);

    undefine(fx, "snapvm9");
    res = vs_restore_run(fx->conn, names, &o, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(((VsRestoreDomainResult *)res->domains->pdata[0])->error, ==, NULL);
    g_free(want);
    g_free(got);
    want = expected(17);
    got = digest_of(disk);
    g_assert_cmpstr(got, ==, want);
    virStoragePoolDestroy(pool);
    virStoragePoolUndefine(pool);
    virStoragePoolFree(pool);
}

/* --as: a thin clone beside the original, the new domain defined on it and
 * started; the original and its domain untouched. */
static void
test_clone_as(Fx *fx, gconstpointer data)
{
    g_autofree char *disk = NULL, *xml = NULL, *id = NULL, *clone = NULL, *want = NULL, *got = NULL;
    g_autofree char *orig_want = NULL, *orig_got = NULL, *new_xml = NULL;
    const char *names[] = { "snapvm3", NULL };
    g_autoptr(VsRestoreResult) res = NULL;
    g_autoptr(GError) err = NULL;
    VsRestoreDomainResult *dr;
    VsRestoreOptions o;
    virDomainPtr dom;

    (void)data;
    if (!fx->tmp)
        return;
    disk = g_build_filename(fx->pooldir, "snapvm3-vda.raw", NULL);
    xml = domain_xml("snapvm3", "5eed0003-0000-4000-8000-000000000003", disk, NULL);
    write_disk(disk, 6);
    define(fx, xml);
    id = backup(fx, "snapvm3", xml, disk, NULL, false);
    write_disk(disk, 7);
    options(fx, &o);
    o.new_name = "snapvm3-copy";
    res = vs_restore_run(fx->conn, names, &o, &err);
    g_assert_no_error(err);
    dr = res->domains->pdata[0];
    g_assert_cmpstr(dr->error, ==, NULL);
    g_assert_true(dr->ok && dr->defined && dr->started && !dr->in_place);
    clone = g_build_filename(fx->pooldir, "snapvm3-copy-vda.raw", NULL);
    g_assert_cmpstr(((VsRestoreDiskResult *)dr->disks->pdata[0])->path, ==, clone);
    g_assert_cmpstr(((VsRestoreDiskResult *)dr->disks->pdata[0])->action, ==, "cloned");
    want = expected(6);
    got = digest_of(clone);
    g_assert_cmpstr(got, ==, want);
    orig_want = expected(7);
    orig_got = digest_of(disk);
    g_assert_cmpstr(orig_got, ==, orig_want);
    dom = virDomainLookupByName(fx->conn, "snapvm3-copy");
    g_assert_nonnull(dom);
    g_assert_cmpint(virDomainIsActive(dom), ==, 1);
    new_xml = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE);
    g_assert_nonnull(strstr(new_xml, clone));
    g_assert_null(strstr(new_xml, "5eed0003"));     /* a UUID of its own */
    virDomainFree(dom);
    assert_no_temps(fx->pooldir);
    undefine(fx, "snapvm3-copy");
    undefine(fx, "snapvm3");
}

/* A disk without a recorded snapshot is named, before anything is made. */
static void
test_disk_without_snapshot(Fx *fx, gconstpointer data)
{
    g_autofree char *disk = NULL, *xml = NULL, *id = NULL, *clone = NULL;
    const char *names[] = { "snapvm4", NULL };
    g_autoptr(VsRestoreResult) res = NULL;
    g_autoptr(GError) err = NULL;
    VsRestoreOptions o;

    (void)data;
    if (!fx->tmp)
        return;
    disk = g_build_filename(fx->pooldir, "snapvm4-vda.raw", NULL);
    xml = domain_xml("snapvm4", "5eed0004-0000-4000-8000-000000000004", disk,
                     "/nonexistent/other-vdb.raw");
    write_disk(disk, 8);
    id = backup(fx, "snapvm4", xml, disk, NULL, true);
    options(fx, &o);
    o.new_name = "snapvm4-copy";
    res = vs_restore_run(fx->conn, names, &o, &err);
    g_assert_null(res);
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(err->message, "disk vdb"));
    g_assert_nonnull(strstr(err->message, "no storage snapshot"));
    clone = g_build_filename(fx->pooldir, "snapvm4-copy-vda.raw", NULL);
    g_assert_false(g_file_test(clone, G_FILE_TEST_EXISTS));
    assert_no_temps(fx->pooldir);
}

/* A snapshot deleted by hand under the backup: said so, nothing changed. */
static void
test_snapshot_gone(Fx *fx, gconstpointer data)
{
    g_autofree char *disk = NULL, *xml = NULL, *id = NULL, *snap = NULL, *want = NULL, *got = NULL;
    const char *names[] = { "snapvm5", NULL };
    g_autoptr(VsRestoreResult) res = NULL;
    g_autoptr(GError) err = NULL;
    VsRestoreOptions o;

    (void)data;
    if (!fx->tmp)
        return;
    disk = g_build_filename(fx->pooldir, "snapvm5-vda.raw", NULL);
    xml = domain_xml("snapvm5", "5eed0005-0000-4000-8000-000000000005", disk, NULL);
    write_disk(disk, 9);
    define(fx, xml);
    id = backup(fx, "snapvm5", xml, disk, NULL, false);
    write_disk(disk, 10);
    snap = g_strdup_printf("%s/virtsnap-snapshots/virtsnap-%s-vda", fx->mnt, id);
    g_assert_cmpint(g_unlink(snap), ==, 0);
    options(fx, &o);
    o.force = true;
    res = vs_restore_run(fx->conn, names, &o, &err);
    g_assert_null(res);
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(err->message, "does not exist any more"));
    g_assert_nonnull(strstr(err->message, "no other copy"));
    want = expected(10);
    got = digest_of(disk);
    g_assert_cmpstr(got, ==, want);
    undefine(fx, "snapvm5");
}

/* The disk of a --no-copy backup is only in its snapshot: a restore from the
 * repository is refused (it would write zeros), the disk untouched. */
static void
test_no_copy_needs_snapshot(Fx *fx, gconstpointer data)
{
    g_autofree char *disk = NULL, *xml = NULL, *id = NULL, *want = NULL, *got = NULL;
    const char *names[] = { "snapvm7", NULL };
    g_autoptr(VsRestoreResult) res = NULL;
    g_autoptr(GError) err = NULL;
    VsRestoreOptions o;

    (void)data;
    if (!fx->tmp)
        return;
    disk = g_build_filename(fx->pooldir, "snapvm7-vda.raw", NULL);
    xml = domain_xml("snapvm7", "5eed0007-0000-4000-8000-000000000007", disk, NULL);
    write_disk(disk, 13);
    define(fx, xml);
    id = backup(fx, "snapvm7", xml, disk, NULL, false);
    write_disk(disk, 14);
    options(fx, &o);
    o.from_snapshot = false;
    o.force = true;
    res = vs_restore_run(fx->conn, names, &o, &err);
    g_assert_null(res);
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(err->message, "--from-snapshot"));
    want = expected(14);
    got = digest_of(disk);
    g_assert_cmpstr(got, ==, want);
    assert_no_temps(fx->pooldir);
    undefine(fx, "snapvm7");
}

static bool
pool_active(Fx *fx, const char *name)
{
    virStoragePoolPtr p = virStoragePoolLookupByName(fx->conn, name);
    bool active = p && virStoragePoolIsActive(p) == 1;

    if (p)
        virStoragePoolFree(p);
    return active;
}

/* The pool the disk lives in was removed since the backup: the error names it
 * and --define-pools; with it, it is defined from the saved XML and started,
 * and the rollback done. */
static void
test_pool_undefined(Fx *fx, gconstpointer data)
{
    g_autofree char *disk = NULL, *xml = NULL, *id = NULL, *px = NULL, *want = NULL, *got = NULL;
    const char *names[] = { "snapvm6", NULL };
    g_autoptr(VsRestoreResult) res = NULL, res2 = NULL;
    g_autoptr(GError) err = NULL;
    virStoragePoolPtr pool;
    VsRestoreOptions o;

    (void)data;
    if (!fx->tmp)
        return;
    px = pool_xml(fx);
    pool = virStoragePoolDefineXML(fx->conn, px, 0);
    g_assert_nonnull(pool);
    g_assert_cmpint(virStoragePoolCreate(pool, 0), ==, 0);
    disk = g_build_filename(fx->pooldir, "snapvm6-vda.raw", NULL);
    xml = domain_xml("snapvm6", "5eed0006-0000-4000-8000-000000000006", disk, NULL);
    write_disk(disk, 11);
    define(fx, xml);
    id = backup(fx, "snapvm6", xml, disk, "snappool", false);
    write_disk(disk, 12);
    g_assert_cmpint(virStoragePoolDestroy(pool), ==, 0);
    g_assert_cmpint(virStoragePoolUndefine(pool), ==, 0);
    virStoragePoolFree(pool);

    options(fx, &o);
    res = vs_restore_run(fx->conn, names, &o, &err);
    g_assert_null(res);
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(err->message, "storage pool 'snappool'"));
    g_assert_nonnull(strstr(err->message, "--define-pools"));
    want = expected(12);
    got = digest_of(disk);
    g_assert_cmpstr(got, ==, want);
    g_assert_false(pool_active(fx, "snappool"));
    g_clear_error(&err);

    o.define_pools = true;
    res2 = vs_restore_run(fx->conn, names, &o, &err);
    g_assert_no_error(err);
    g_assert_true(((VsRestoreDomainResult *)res2->domains->pdata[0])->ok);
    g_assert_cmpuint(res2->pools->len, ==, 1);
    g_assert_nonnull(strstr(res2->pools->pdata[0], "'snappool' defined from backup"));
    g_assert_true(pool_active(fx, "snappool"));
    g_free(want);
    g_free(got);
    want = expected(11);
    got = digest_of(disk);
    g_assert_cmpstr(got, ==, want);
    pool = virStoragePoolLookupByName(fx->conn, "snappool");
    virStoragePoolDestroy(pool);
    virStoragePoolUndefine(pool);
    virStoragePoolFree(pool);
    undefine(fx, "snapvm6");
}

/* A restore from the repository in place: the disk's file is in the
 * directory of a pool the backup saved and that is gone now; the error names
 * it, and --define-pools brings it back before the disk is written. (The test
 * driver's pool build makes no directory: the directory stays here.) */
static void
test_pool_repository_restore(Fx *fx, gconstpointer data)
{
    g_autofree char *disk = NULL, *xml = NULL, *id = NULL, *want = NULL, *got = NULL;
    const char *names[] = { "snapvm8", NULL };
    g_autoptr(VsRestoreResult) res = NULL;
    g_autoptr(GError) err = NULL;
    virStoragePoolPtr pool;
    VsRestoreOptions o;

    (void)data;
    if (!fx->tmp)
        return;
    disk = g_build_filename(fx->pooldir, "snapvm8-vda.raw", NULL);
    xml = domain_xml("snapvm8", "5eed0008-0000-4000-8000-000000000008", disk, NULL);
    write_disk(disk, 15);
    define(fx, xml);
    id = backup_data(fx, "snapvm8", xml, disk);
    write_disk(disk, 16);
    g_assert_null(virStoragePoolLookupByName(fx->conn, "snappool"));

    options(fx, &o);
    o.from_snapshot = false;
    o.force = true;
    res = vs_restore_run(fx->conn, names, &o, &err);
    g_assert_null(res);
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(err->message, "storage pool 'snappool'"));
    g_assert_nonnull(strstr(err->message, "--define-pools"));
    g_assert_false(pool_active(fx, "snappool"));
    g_free(got);
    got = digest_of(disk);
    want = expected(16);
    g_assert_cmpstr(got, ==, want);
    g_clear_error(&err);

    o.define_pools = true;
    res = vs_restore_run(fx->conn, names, &o, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(((VsRestoreDomainResult *)res->domains->pdata[0])->error, ==, NULL);
    g_assert_true(pool_active(fx, "snappool"));
    g_free(want);
    g_free(got);
    want = expected(15);
    got = digest_of(disk);
    g_assert_cmpstr(got, ==, want);
    pool = virStoragePoolLookupByName(fx->conn, "snappool");
    virStoragePoolDestroy(pool);
    virStoragePoolUndefine(pool);
    virStoragePoolFree(pool);
    undefine(fx, "snapvm8");
}

/* Options that do not go with it are bad usage. */
static void
test_options(void)
{
    const char *names[] = { "vm", NULL };
    VsRestoreOptions o;
    g_autoptr(GError) err = NULL;

    vs_restore_options_init(&o);
    o.repo_path = "/nonexistent";
    o.from_snapshot = true;
    o.instant = true;
    g_assert_false(vs_restore_check_options(names, &o, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(err->message, "--instant"));
    g_clear_error(&err);
    o.instant = false;
    o.target_dir = "/tmp";
    g_assert_false(vs_restore_check_options(names, &o, &err));
    g_assert_nonnull(strstr(err->message, "--target-dir"));
    g_clear_error(&err);
    o.target_dir = NULL;
    o.format = "qcow2";
    g_assert_false(vs_restore_check_options(names, &o, &err));
    g_assert_nonnull(strstr(err->message, "--format"));
    g_clear_error(&err);
    o.format = NULL;
    o.from_snapshot = false;
    o.snapshot_config = "/etc/x.conf";
    g_assert_false(vs_restore_check_options(names, &o, &err));
    g_assert_nonnull(strstr(err->message, "--snapshot-config"));
}

int
main(int argc, char **argv)
{
    g_autofree char *dir = g_dir_make_tmp("vs-restore-snap-locks-XXXXXX", NULL);
    g_autofree char *locks = g_build_filename(dir, "locks", NULL);
    g_autofree char *rundir = g_build_filename(dir, "run", NULL);
    g_autofree char *rm = g_strdup_printf("rm -rf %s", dir);
    int rc;

    /* Before any thread: the domain locks and run files of the restores. */
    g_setenv("VIRTSNAP_LOCK_DIR", locks, TRUE);
    g_setenv("VIRTSNAP_RUN_DIR", rundir, TRUE);
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/restore-snapshot/options", test_options);
#define ADD(path, func) g_test_add(path, Fx, NULL, setup, func, teardown)
    ADD("/restore-snapshot/rollback", test_rollback);
    ADD("/restore-snapshot/rollback-unconfirmed", test_rollback_unconfirmed);
    ADD("/restore-snapshot/rollback-pool-volume", test_rollback_pool_volume);
    ADD("/restore-snapshot/clone-as", test_clone_as);
    ADD("/restore-snapshot/disk-without-snapshot", test_disk_without_snapshot);
    ADD("/restore-snapshot/snapshot-gone", test_snapshot_gone);
    ADD("/restore-snapshot/pool-undefined", test_pool_undefined);
    ADD("/restore-snapshot/no-copy-needs-snapshot", test_no_copy_needs_snapshot);
    ADD("/restore-snapshot/pool-repository-restore", test_pool_repository_restore);
    rc = g_test_run();
    (void)run(rm);
    return rc;
}
