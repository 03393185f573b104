/* Discovery's storage snapshot answer (driver/discover-snapshot.c over the block
 * layer's vs_snap_which): from disks as discovery describes them to the provider
 * `auto` would use, or none and why. File disks on real file systems, each
 * loop-mounted here as tests/block/snapshot/ does (root, mkfs.xfs/ext4/btrfs;
 * skipped otherwise): XFS with reflink, XFS without, ext4, btrfs with the pool
 * directory a subvolume or not; and the snapshot directory must not be created,
 * since discovery only asks. Network and block disks (NFS, iSCSI, RBD, multipath)
 * need no storage: their answer comes from where they live; through vs_discover
 * itself on libvirt's in-process test driver (test:///default, no daemon), so
 * that what discovery reads from the domain XML (RBD pool, image, user) is
 * what reaches the answer. */
#include "config.h"
#include "driver-internal.h"

#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef VS_TEST_HAVE_RBD
#error "VS_TEST_HAVE_RBD: whether the block layer was built with librbd (meson sets it)"
#endif

static VsDiscoveredDisk *
disk_new(const char *target, const char *type, const char *path)
{
    VsDiscoveredDisk *d = g_new0(VsDiscoveredDisk, 1);

    d->target = g_strdup(target);
    d->device = g_strdup("disk");
    d->type = g_strdup(type);
    d->format = g_strdup("raw");
    d->path = g_strdup(path);
    d->pool_type = g_strdup("none");
    d->iscsi_lun = -1;
    d->chain = g_ptr_array_new();
    return d;
}

/* The snapshot configuration expect() decides with (NULL: none). */
static VsSnapConfig *config;

/* A configuration file holding TEXT (0600, ours), loaded into CONFIG; its path (to free). */
static char *
use_config(const char *text)
{
    g_autoptr(GError) err = NULL;
    char *path = NULL;
    int fd = g_file_open_tmp("vs-discsnap-conf-XXXXXX", &path, &err);

    g_assert_no_error(err);
    close(fd);
    g_assert_true(g_file_set_contents_full(path, text, -1, G_FILE_SET_CONTENTS_NONE, 0600, &err));
    g_clear_pointer(&config, vs_snap_config_free);
    config = vs_snap_config_load(path, &err);
    g_assert_no_error(err);
    return path;
}

static void
drop_config(char *path)
{
    g_clear_pointer(&config, vs_snap_config_free);
    g_unlink(path);
    g_free(path);
}

/* D's answer: PROVIDER (NULL: none), and every one of the NULL-ended NEEDLES in the reason. */
static void
expect(VsDiscoveredDisk *d, const char *provider, ...)
{
    va_list ap;
    const char *needle;

    vs_discover_snapshot_provider(d, "vm1", config);
    g_test_message("%s: %s / %s", d->target, d->snapshot_provider ? d->snapshot_provider : "null",
                   d->snapshot_reason ? d->snapshot_reason : "-");
    g_assert_cmpstr(d->snapshot_provider, ==, provider);
    if (provider) {
        g_assert_null(d->snapshot_reason);
        return;
    }
    g_assert_nonnull(d->snapshot_reason);
    if (!d->snapshot_reason)
        return;
    g_assert_true(g_str_has_prefix(d->snapshot_reason, "no provider: "));
    va_start(ap, provider);
    while ((needle = va_arg(ap, const char *)))
        if (!strstr(d->snapshot_reason, needle)) {
            g_test_message("reason \"%s\" lacks \"%s\"", d->snapshot_reason, needle);
            g_test_fail();
        }
    va_end(ap);
}

static bool
run(const char *cmd)
{
    g_autofree char *err = NULL;
    int status = 0;

    if (!g_spawn_command_line_sync(cmd, NULL, &err, &status, NULL) || !g_spawn_check_wait_status(status, NULL)) {
        g_test_message("%s: %s", cmd, err ? err : "failed");
        return false;
    }
    return true;
}

/* A file system made by MKFS (a command taking the image last) loop-mounted
 * on a new directory, or NULL with the test skipped. */
static char *
mount_fs(const char *mkfs, const char *size)
{
    g_autofree char *tmp = NULL;
    g_autofree char *cmd = NULL;
    g_autofree char *prog = g_strndup(mkfs, strcspn(mkfs, " "));
    g_autofree char *found = g_find_program_in_path(prog);
    g_autofree char *sbin = g_build_filename("/usr/sbin", prog, NULL);
    char *mnt;

    if (geteuid() != 0 || !g_file_test("/dev/loop-control", G_FILE_TEST_EXISTS)) {
        g_test_skip("needs root and loop devices");
        return NULL;
    }
    if (!found && !g_file_test(sbin, G_FILE_TEST_IS_EXECUTABLE)) {
        g_test_skip(prog);
        return NULL;
    }
    tmp = g_dir_make_tmp("vs-discsnap-XXXXXX", NULL);
    g_assert_nonnull(tmp);
    mnt = g_build_filename(tmp, "mnt", NULL);
    cmd = g_strdup_printf("sh -c 'truncate -s %s %s/fs.img && PATH=$PATH:/usr/sbin %s %s/fs.img >/dev/null && "
                          "mkdir %s && mount -o loop %s/fs.img %s'", size, tmp, mkfs, tmp, mnt, tmp, mnt);
    if (!run(cmd)) {
        g_test_fail();
        g_free(mnt);
        return NULL;
    }
    return mnt;
}

static void
umount_fs(char *mnt)
{
    g_autofree char *tmp = g_path_get_dirname(mnt);
    g_autofree char *cmd = g_strdup_printf("sh -c 'umount %s && rm -rf %s'", mnt, tmp);

    g_assert_true(run(cmd));
    g_free(mnt);
}

/* A 1 MiB disk file NAME in DIR (made), as discovery describes a dir-pool volume. */
static VsDiscoveredDisk *
file_disk(const char *dir, const char *name)
{
    g_autofree char *path = g_build_filename(dir, name, NULL);
    g_autofree char *cmd = g_strdup_printf("sh -c 'mkdir -p %s && truncate -s 1M %s'", dir, path);
    VsDiscoveredDisk *d = disk_new("vda", "file", path);

    g_assert_true(run(cmd));
    d->pool = g_strdup("default");
    g_free(d->pool_type);
    d->pool_type = g_strdup("dir");
    d->volume = g_strdup(name);
    return d;
}

static void
assert_no_snapshot_dir(const char *dir)
{
    g_autofree char *sub = g_build_filename(dir, "virtsnap-snapshots", NULL);

    if (g_file_test(sub, G_FILE_TEST_EXISTS)) {
        g_test_message("%s was created: discovery must only ask", sub);
        g_test_fail();
    }
}

static void
test_xfs_reflink(void)
{
    char *mnt = mount_fs("mkfs.xfs -q -m reflink=1", "300M");
    g_autofree char *pool = NULL;
    VsDiscoveredDisk *d;

    if (!mnt)
        return;
    pool = g_build_filename(mnt, "pool", NULL);
    d = file_disk(pool, "vm1-vda.img");
    expect(d, "reflink", NULL);
    assert_no_snapshot_dir(pool);
    vs_discovered_disk_free(d);
    umount_fs(mnt);
}

static void
test_xfs_no_reflink(void)
{
    char *mnt = mount_fs("mkfs.xfs -q -m reflink=0", "300M");
    g_autofree char *pool = NULL;
    VsDiscoveredDisk *d;

    if (!mnt)
        return;
    pool = g_build_filename(mnt, "pool", NULL);
    d = file_disk(pool, "vm1-vda.img");
    expect(d, NULL, "XFS", "made without reflink", "mkfs.xfs -m reflink=1",
           "needs a hook (name one in /etc/virtsnap/snapshots.conf", NULL);
    vs_discovered_disk_free(d);
    umount_fs(mnt);
}

static void
test_ext4(void)
{
    char *mnt = mount_fs("mkfs.ext4 -q -F", "32M");
    g_autofree char *pool = NULL;
    VsDiscoveredDisk *d;

    if (!mnt)
        return;
    pool = g_build_filename(mnt, "pool", NULL);
    d = file_disk(pool, "vm1-vda.img");
    expect(d, NULL, "ext2/3/4", "cannot reflink", "(name one in /etc/virtsnap/snapshots.conf", NULL);
    assert_no_snapshot_dir(pool);
    vs_discovered_disk_free(d);
    umount_fs(mnt);
}

static void
test_btrfs(void)
{
    char *mnt = mount_fs("mkfs.btrfs -q -f", "300M");
    g_autofree char *sub = NULL;
    g_autofree char *plain = NULL;
    g_autofree char *cmd = NULL;
    VsDiscoveredDisk *d;

    if (!mnt)
        return;
    sub = g_build_filename(mnt, "pool", NULL);
    plain = g_build_filename(mnt, "plain", NULL);
    cmd = g_strdup_printf("sh -c 'PATH=$PATH:/usr/sbin btrfs -q subvolume create %s'", sub);
    g_assert_true(run(cmd));
    d = file_disk(sub, "vm1-vda.img");
    expect(d, "btrfs", NULL);
    assert_no_snapshot_dir(sub);
    vs_discovered_disk_free(d);
    d = file_disk(plain, "vm1-vdb.img");
    expect(d, "reflink", NULL);
    vs_discovered_disk_free(d);
    umount_fs(mnt);
}

/* A file whose directory is gone, or given relative: no provider, and nothing about hooks. */
static void
test_file_unreadable(void)
{
    VsDiscoveredDisk *d = disk_new("vda", "file", "/nonexistent-vs-dir/vm1.img");

    expect(d, NULL, "/nonexistent-vs-dir", "cannot be read", NULL);
    g_assert_null(strstr(d->snapshot_reason ? d->snapshot_reason : "", "hook"));
    vs_discovered_disk_free(d);
    d = disk_new("vdb", "file", "relative.img");
    expect(d, NULL, "no absolute path", NULL);
    vs_discovered_disk_free(d);
}

static void
test_nfs(void)
{
    VsDiscoveredDisk *d = disk_new("vda", "network", "nfs://127.0.0.1/srv/nfs/vm1.qcow2");

    d->pool_type = (g_free(d->pool_type), g_strdup("network"));
    d->nfs_server = g_strdup("127.0.0.1");
    d->nfs_export = g_strdup("/srv/nfs");
    d->nfs_path = g_strdup("/vm1.qcow2");
    expect(d, NULL, "NFS export", "snapshotted by its server",
           "needs a hook (name one in /etc/virtsnap/snapshots.conf", NULL);
    vs_discovered_disk_free(d);

    /* a netfs pool's volume: a local path on the mount, NFS all the same */
    d = disk_new("vdb", "volume", "/var/lib/libvirt/nfspool/vm1.img");
    d->pool = g_strdup("nfspool");
    d->pool_type = (g_free(d->pool_type), g_strdup("netfs"));
    d->nfs_server = g_strdup("nas.example");
    d->nfs_export = g_strdup("/export");
    d->nfs_path = g_strdup("/vm1.img");
    expect(d, NULL, "NFS export", "(name one in /etc/virtsnap/snapshots.conf", NULL);
    vs_discovered_disk_free(d);
}

static void
test_iscsi(void)
{
    VsDiscoveredDisk *d = disk_new("vda", "network", "iscsi://127.0.0.1:3260/iqn.2026-01.test:t1/1");

    d->pool_type = (g_free(d->pool_type), g_strdup("network"));
    d->iscsi_portal = g_strdup("127.0.0.1:3260");
    d->iscsi_iqn = g_strdup("iqn.2026-01.test:t1");
    d->iscsi_lun = 1;
    expect(d, NULL, "iSCSI LUN", "its array", "needs a hook (name one in /etc/virtsnap/snapshots.conf",
           NULL);
    vs_discovered_disk_free(d);

    /* a kernel iscsi pool's LUN is a block device on this host */
    d = disk_new("vdb", "block", "/dev/disk/by-path/ip-127.0.0.1:3260-iscsi-iqn.2026-01.test:t1-lun-1");
    d->pool = g_strdup("iscsipool");
    d->pool_type = (g_free(d->pool_type), g_strdup("iscsi"));
    d->iscsi_iqn = g_strdup("iqn.2026-01.test:t1");
    d->iscsi_lun = 1;
    expect(d, NULL, "block device", "(name one in /etc/virtsnap/snapshots.conf", NULL);
    vs_discovered_disk_free(d);
}

static void
test_block(void)
{
    VsDiscoveredDisk *d = disk_new("vda", "block", "/dev/mapper/mpatha");

    d->block_device = g_strdup("/dev/mapper/mpatha");
    d->wwid = g_strdup("3600a098038303053453f463045727a4d");
    expect(d, NULL, "block device", "(name one in /etc/virtsnap/snapshots.conf", NULL);
    vs_discovered_disk_free(d);

    /* a zfs pool's volume is a device under /dev though discovery records no block_device */
    d = disk_new("vdb", "volume", "/dev/zvol/tank/vm1-vdb");
    d->pool = g_strdup("tank");
    d->pool_type = (g_free(d->pool_type), g_strdup("zfs"));
    expect(d, NULL, "block device", "(name one in /etc/virtsnap/snapshots.conf", NULL);
    vs_discovered_disk_free(d);
}

static void
test_rbd(void)
{
    VsDiscoveredDisk *d = disk_new("vda", "network", "rbd://127.0.0.1/vspool/vm1-vda");

    d->pool_type = (g_free(d->pool_type), g_strdup("network"));
    d->rbd_pool = g_strdup("vspool");
    d->rbd_image = g_strdup("vm1-vda");
    if (VS_TEST_HAVE_RBD)
        expect(d, "rbd", NULL);
    else
        expect(d, NULL, "without librbd", "(name one in /etc/virtsnap/snapshots.conf", NULL);
    vs_discovered_disk_free(d);

    /* an rbd pool's volume whose image name is unknown (a namespace): said, no hook advice */
    d = disk_new("vdb", "volume", "vspool/ns/vm1-vdb");
    d->pool = g_strdup("ceph");
    d->pool_type = (g_free(d->pool_type), g_strdup("rbd"));
    d->rbd_pool = g_strdup("vspool");
    if (VS_TEST_HAVE_RBD) {
        expect(d, NULL, "pool and name are not known", NULL);
        g_assert_null(strstr(d->snapshot_reason ? d->snapshot_reason : "", "hook"));
    }
    vs_discovered_disk_free(d);
}

static void
test_not_mapped(void)
{
    VsDiscoveredDisk *d = disk_new("hda", "file", "/srv/iso/install.iso");

    d->skipped = g_strdup("removable media (cdrom)");
    expect(d, NULL, "not backed up", "removable media (cdrom)", NULL);
    vs_discovered_disk_free(d);

    d = disk_new("vdb", "network", "nbd://127.0.0.1:10809/export");
    d->pool_type = (g_free(d->pool_type), g_strdup("network"));
    expect(d, NULL, "a network disk that is not NFS, iSCSI or RBD (nbd://127.0.0.1:10809/export)", NULL);
    vs_discovered_disk_free(d);

    /* a gluster pool's volume: its path is a URL, not a file here */
    d = disk_new("vdd", "volume", "gluster://127.0.0.1/vol/vm1.img");
    d->pool = g_strdup("gv");
    d->pool_type = (g_free(d->pool_type), g_strdup("gluster"));
    expect(d, NULL, "a network disk that is not NFS, iSCSI or RBD (gluster://", NULL);
    vs_discovered_disk_free(d);

    d = disk_new("vdc", "volume", NULL);
    d->error = g_strdup("storage pool 'gone' does not exist");
    expect(d, NULL, "could not resolve", NULL);
    vs_discovered_disk_free(d);
}

static const VsDiscoveredDisk *
find_disk(const VsDiscoveredDomain *dom, const char *target)
{
    for (guint i = 0; i < dom->disks->len; i++)
        if (g_strcmp0(((VsDiscoveredDisk *)dom->disks->pdata[i])->target, target) == 0)
            return dom->disks->pdata[i];
    g_test_message("no disk %s discovered", target);
    g_test_fail();
    return NULL;
}

/* The network disks of a domain on libvirt's test driver, discovered whole. */
static void
test_discover_network(void)
{
    static const char xml[] =
        "<domain type='test'><name>vs-discsnap</name><memory>131072</memory><os><type>hvm</type></os><devices>"
        "<disk type='network' device='disk'><driver name='qemu' type='raw'/>"
        "  <source protocol='rbd' name='vspool/vm1-vda'><host name='127.0.0.1' port='6789'/>"
        "    <auth username='virtsnap'><secret type='ceph' usage='client.virtsnap secret'/></auth></source>"
        "  <target dev='vda' bus='virtio'/></disk>"
        "<disk type='network' device='disk'><driver name='qemu' type='raw'/>"
        "  <source protocol='rbd' name='vspool/ns1/vm1-vdb'><host name='127.0.0.1'/></source>"
        "  <target dev='vdb' bus='virtio'/></disk>"
        "<disk type='network' device='disk'><driver name='qemu' type='raw'/>"
        "  <source protocol='nfs' name='/export/vm1.raw'><host name='127.0.0.1'/></source>"
        "  <target dev='vdc' bus='virtio'/></disk>"
        "<disk type='network' device='disk'><driver name='qemu' type='raw'/>"
        "  <source protocol='iscsi' name='iqn.2026-01.test:t1/2'><host name='127.0.0.1' port='3260'/></source>"
        "  <target dev='vdd' bus='virtio'/></disk>"
        "</devices></domain>";
    const char *names[] = {"vs-discsnap", NULL};
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) doms = NULL;
    GPtrArray *problems = NULL;
    VsDiscoverOptions opts;
    virConnectPtr conn = vs_conn_open("test:///default", &err);
    virDomainPtr dom;
    const VsDiscoveredDisk *d;

    g_assert_no_error(err);
    if (!conn)
        return;
    dom = virDomainDefineXML(conn, xml);
    g_assert_nonnull(dom);
    vs_discover_options_init(&opts);
    opts.probe_exports = false;     /* no NFS server is asked */
    doms = vs_discover(conn, names, &opts, &problems, &err);
    g_assert_no_error(err);
    g_assert_null(problems);
    g_assert_nonnull(doms);
    if (doms && doms->len == 1) {
        const VsDiscoveredDomain *found = doms->pdata[0];

        if ((d = find_disk(found, "vda"))) {
            g_assert_cmpstr(d->rbd_pool, ==, "vspool");
            g_assert_cmpstr(d->rbd_image, ==, "vm1-vda");
            g_assert_cmpstr(d->rbd_user, ==, "virtsnap");
            g_assert_cmpstr(d->snapshot_provider, ==, VS_TEST_HAVE_RBD ? "rbd" : NULL);
        }
        if ((d = find_disk(found, "vdb"))) {
            g_assert_cmpstr(d->rbd_pool, ==, "vspool");
            g_assert_null(d->rbd_image);
            g_assert_null(d->snapshot_provider);
            if (VS_TEST_HAVE_RBD)
                g_assert_cmpstr(d->snapshot_reason, ==, "no provider: the RBD image's pool and name are not known");
        }
        if ((d = find_disk(found, "vdc"))) {
            g_assert_null(d->snapshot_provider);
            g_assert_cmpstr(d->snapshot_reason, ==, "no provider: a file on an NFS export is snapshotted by its "
                            "server: that needs a hook (name one in /etc/virtsnap/snapshots.conf: [defaults] "
                            "hook=/path/to/hook)");
        }
        if ((d = find_disk(found, "vdd"))) {
            g_assert_cmpint(d->iscsi_lun, ==, 2);
            g_assert_null(d->snapshot_provider);
            g_assert_cmpstr(d->snapshot_reason, ==, "no provider: an iSCSI LUN is snapshotted by its array: "
                            "that needs a hook (name one in /etc/virtsnap/snapshots.conf: [defaults] "
                            "hook=/path/to/hook)");
        }
    } else {
        g_test_fail();
    }
    if (problems)
        g_ptr_array_unref(problems);
    if (dom) {
        virDomainUndefine(dom);
        virDomainFree(dom);
    }
    vs_conn_close(conn);
}

/* The configuration decides: a snapshot-dir on the disk's file system (looked
 * at, not made), one on another, and a provider named that cannot work here. */
static void
test_config_xfs(void)
{
    char *mnt = mount_fs("mkfs.xfs -q -m reflink=1", "300M");
    g_autofree char *pool = NULL, *base = NULL, *text = NULL, *cmd = NULL;
    char *conf;
    VsDiscoveredDisk *d;

    if (!mnt)
        return;
    pool = g_build_filename(mnt, "pool", NULL);
    base = g_build_filename(mnt, "base", NULL);
    cmd = g_strdup_printf("mkdir -p %s", base);
    g_assert_true(run(cmd));
    d = file_disk(pool, "vm1-vda.img");
    text = g_strdup_printf("[pool:default]\nsnapshot-dir=%s\n", base);
    conf = use_config(text);
    expect(d, "reflink", NULL);
    assert_no_snapshot_dir(base);
    assert_no_snapshot_dir(pool);
    drop_config(conf);
    conf = use_config("[pool:default]\nsnapshot-dir=/tmp\n");
    expect(d, NULL, "the snapshot directory /tmp is on another file system than the disk", NULL);
    drop_config(conf);
    conf = use_config("[defaults]\nprovider=btrfs\n");
    expect(d, NULL, "the snapshot configuration (", "asks for btrfs for its pool", "(reflink could)", NULL);
    drop_config(conf);
    vs_discovered_disk_free(d);
    umount_fs(mnt);
}

/* A hook configured for a pool makes its disks "hook"; another pool's disks
 * are told where to name one; provider=none says so. */
static void
test_config_hook(void)
{
    VsDiscoveredDisk *d = disk_new("vda", "volume", "/var/lib/libvirt/nfspool/vm1.img");
    VsDiscoveredDisk *e = disk_new("vdb", "network", "iscsi://127.0.0.1:3260/iqn.2026-01.test:t1/1");
    char *conf = use_config("[pool:nfspool]\nhook=/bin/true\n\n[pool:other]\nprovider=none\n");
    g_autofree char *want = g_strdup_printf("needs a hook (name one in %s: [defaults] hook=/path/to/hook)",
                                            vs_snap_config_file(config));

    d->pool = g_strdup("nfspool");
    d->pool_type = (g_free(d->pool_type), g_strdup("netfs"));
    d->nfs_server = g_strdup("nas.example");
    d->nfs_export = g_strdup("/export");
    d->nfs_path = g_strdup("/vm1.img");
    expect(d, "hook", NULL);
    e->iscsi_portal = g_strdup("127.0.0.1:3260");
    e->iscsi_iqn = g_strdup("iqn.2026-01.test:t1");
    e->iscsi_lun = 1;
    expect(e, NULL, "iSCSI LUN", want, NULL);
    g_free(d->pool);
    d->pool = g_strdup("other");
    expect(d, NULL, "says provider=none for its pool other", NULL);
    drop_config(conf);
    vs_discovered_disk_free(d);
    vs_discovered_disk_free(e);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    /* a failed check must not skip the umount that follows it */
    g_test_set_nonfatal_assertions();
    g_test_add_func("/discover-snapshot/xfs-reflink", test_xfs_reflink);
    g_test_add_func("/discover-snapshot/xfs-no-reflink", test_xfs_no_reflink);
    g_test_add_func("/discover-snapshot/ext4", test_ext4);
    g_test_add_func("/discover-snapshot/btrfs", test_btrfs);
    g_test_add_func("/discover-snapshot/file-unreadable", test_file_unreadable);
    g_test_add_func("/discover-snapshot/nfs", test_nfs);
    g_test_add_func("/discover-snapshot/iscsi", test_iscsi);
    g_test_add_func("/discover-snapshot/block", test_block);
    g_test_add_func("/discover-snapshot/rbd", test_rbd);
    g_test_add_func("/discover-snapshot/not-mapped", test_not_mapped);
    g_test_add_func("/discover-snapshot/discover-network", test_discover_network);
    g_test_add_func("/discover-snapshot/config-xfs", test_config_xfs);
    g_test_add_func("/discover-snapshot/config-hook", test_config_hook);
    return g_test_run();
}
