/* A backup host off the hypervisor (driver/remote.c, checkpoint.c): which
 * URIs are remote (a host that is not a loopback name or address, nor one of
 * this machine's interface addresses); what a remote backup refuses, with
 * exit-2 errors naming what to use instead; the job XML of a remote pull job
 * (its NBD server on TCP on the hypervisor, a scratch path there) against a
 * local one (a unix socket, our scratch file); the libnbd URI of a remote export; discovery that reads no
 * image header of a remote hypervisor's path (libvirt's in-process test
 * driver). No network traffic: the names are addresses, or localhost. */
#include "config.h"
#include "backup-internal.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <string.h>

static void
assert_remote(const char *uri, const char *host)
{
    g_autofree char *got = vs_uri_remote_host(uri);

    g_assert_cmpstr(got, ==, host);
}

static void
test_uri_remote(void)
{
    assert_remote("qemu:///system", NULL);
    assert_remote("qemu+unix:///system", NULL);
    assert_remote("qemu+tcp://localhost/system", NULL);
    assert_remote("qemu+ssh://root@127.0.0.1/system", NULL);
    assert_remote("qemu+tcp://127.0.0.2:16509/system", NULL);
    assert_remote("qemu+tcp://[::1]/system", NULL);
    assert_remote("test:///default", NULL);
    assert_remote(NULL, NULL);
    assert_remote("qemu+tcp://192.0.2.7/system", "192.0.2.7");
    assert_remote("qemu+ssh://backup@192.0.2.7:2222/system?keyfile=/root/k", "192.0.2.7");
    assert_remote("qemu+tcp://[2001:db8::7]/system", "2001:db8::7");
}

/* One of this machine's own non-loopback IPv4 addresses names this host. */
static void
test_uri_own_address(void)
{
    struct ifaddrs *ifs = NULL, *i;
    char addr[INET_ADDRSTRLEN] = "";

    g_assert_cmpint(getifaddrs(&ifs), ==, 0);
    for (i = ifs; i && !*addr; i = i->ifa_next) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)i->ifa_addr;
        if (sin && sin->sin_family == AF_INET && (ntohl(sin->sin_addr.s_addr) >> 24) != 127)
            inet_ntop(AF_INET, &sin->sin_addr, addr, sizeof(addr));
    }
    freeifaddrs(ifs);
    if (!*addr) {
        g_test_skip("no non-loopback IPv4 address here");
        return;
    }
    g_autofree char *uri = g_strdup_printf("qemu+tcp://%s/system", addr);
    assert_remote(uri, NULL);
}

static void
assert_refused(const VsBackupOptions *o, const char *what)
{
    g_autoptr(GError) err = NULL;

    g_assert_false(vs_backup_check_remote(o, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(err->message, "backup: 192.0.2.7 is another host"));
    g_assert_nonnull(strstr(err->message, what));
    g_assert_nonnull(strstr(err->message, "run virtsnap on the hypervisor"));
}

static void
test_check_remote(void)
{
    VsBackupOptions o;
    g_autoptr(GError) err = NULL;

    vs_backup_options_init(&o);
    o.uri = "qemu+tcp://192.0.2.7/system";
    assert_refused(&o, "--mode=overlay (the default)");
    o.mode = VS_BACKUP_METHOD_BEGIN;
    g_assert_true(vs_backup_check_remote(&o, &err));
    o.mode = VS_BACKUP_METHOD_AUTO;
    g_assert_true(vs_backup_check_remote(&o, &err));
    o.push = true;
    assert_refused(&o, "--push/--push-dir");
    o.push = false;
    o.storage_snapshot = "auto";
    assert_refused(&o, "--storage-snapshot");
    o.storage_snapshot = NULL;
    o.overlay_dir = "/srv/ovl";
    assert_refused(&o, "--overlay-dir");
    /* Locally every one of them is fine (other checks are vs_backup_check_options'). */
    o.uri = "qemu:///system";
    o.mode = VS_BACKUP_METHOD_OVERLAY;
    g_assert_true(vs_backup_check_remote(&o, &err));
    g_assert_no_error(err);
}

static void
test_job_xml_tcp(void)
{
    VsJobDisk disks[] = { { .target = "vda", .bitmap = true, .incremental = true,
                            .scratch = "/srv/vm/vda.qcow2.virtsnap-0a1b2c3d-2" } };
    VsJobServer tcp = { .host = "192.0.2.7", .port = 10810 };
    VsJobServer unix_srv = { .socket = "/run/virtsnap/nbd-x/nbd.sock" };
    g_autofree char *bx = NULL, *cx = NULL, *lbx = NULL, *lcx = NULL;

    vs_backup_job_xml(&tcp, "virtsnap-0a1b2c3d-1", false, "virtsnap-0a1b2c3d-2", NULL, disks, 1,
                      NULL, &bx, &cx);
    g_assert_nonnull(strstr(bx, "<domainbackup mode='pull'>"));
    g_assert_nonnull(strstr(bx, "<server transport='tcp' name='192.0.2.7' port='10810'/>"));
    g_assert_nonnull(strstr(bx, "<incremental>virtsnap-0a1b2c3d-1</incremental>"));
    g_assert_nonnull(strstr(bx, "<disk name='vda' backup='yes' type='file' backupmode='incremental'>"));
    g_assert_nonnull(strstr(bx, "<scratch file='/srv/vm/vda.qcow2.virtsnap-0a1b2c3d-2'/>"));
    g_assert_null(strstr(bx, "socket"));
    g_assert_nonnull(strstr(cx, "<name>virtsnap-0a1b2c3d-2</name>"));

    disks[0].scratch = "/var/lib/virtsnap/scratch/x/vda.qcow2";
    vs_backup_job_xml(&unix_srv, NULL, false, "virtsnap-0a1b2c3d-3", NULL, disks, 1, NULL, &lbx, &lcx);
    g_assert_nonnull(strstr(lbx, "<server transport='unix' socket='/run/virtsnap/nbd-x/nbd.sock'/>"));
    g_assert_nonnull(strstr(lbx, "<scratch file='/var/lib/virtsnap/scratch/x/vda.qcow2'/>"));
}

static void
test_nbd_uri(void)
{
    g_autofree char *v4 = remote_nbd_uri("10.213.0.2", 10809, "vda");
    g_autofree char *v6 = remote_nbd_uri("2001:db8::7", 10810, "vdb");

    g_assert_cmpstr(v4, ==, "nbd://10.213.0.2:10809/vda");
    g_assert_cmpstr(v6, ==, "nbd://[2001:db8::7]:10810/vdb");
}

/* A shut-off domain's qcow2 on a path of the hypervisor (none here): read
 * locally, its header is looked for (and not found); remote, it is not. */
static VsDiscoveredDisk *
discover_vda(virConnectPtr conn, bool remote, GPtrArray **doms)
{
    const char *names[] = { "vs-remote-disc", NULL };
    g_autoptr(GError) err = NULL;
    VsDiscoverOptions opts;

    vs_discover_options_init(&opts);
    opts.probe_exports = false;
    opts.remote = remote;
    *doms = vs_discover(conn, names, &opts, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpuint((*doms)->len, ==, 1);
    return ((VsDiscoveredDomain *)(*doms)->pdata[0])->disks->pdata[0];
}

static void
test_discover_remote(void)
{
    static const char xml[] =
        "<domain type='test'><name>vs-remote-disc</name><memory>131072</memory><os><type>hvm</type></os>"
        "<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        "<source file='/nonexistent-vs-remote/vm.qcow2'/><target dev='vda' bus='virtio'/></disk>"
        "</devices></domain>";
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) local = NULL, remote = NULL;
    virConnectPtr conn = vs_conn_open("test:///default", &err);
    virDomainPtr dom;
    VsDiscoveredDisk *d;

    g_assert_no_error(err);
    dom = virDomainDefineXML(conn, xml);
    g_assert_nonnull(dom);
    d = discover_vda(conn, false, &local);
    g_assert_nonnull(d->error);
    g_assert_nonnull(strstr(d->error, "backing chain"));
    d = discover_vda(conn, true, &remote);
    g_assert_null(d->error);
    g_assert_cmpstr(d->path, ==, "/nonexistent-vs-remote/vm.qcow2");
    g_assert_null(d->snapshot_provider);
    g_assert_nonnull(strstr(d->snapshot_reason, "the hypervisor is another host"));
    virDomainUndefine(dom);
    virDomainFree(dom);
    vs_conn_close(conn);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/remote/uri", test_uri_remote);
    g_test_add_func("/remote/uri-own-address", test_uri_own_address);
    g_test_add_func("/remote/check-options", test_check_remote);
    g_test_add_func("/remote/job-xml-tcp", test_job_xml_tcp);
    g_test_add_func("/remote/nbd-uri", test_nbd_uri);
    g_test_add_func("/remote/discover", test_discover_remote);
    return g_test_run();
}
