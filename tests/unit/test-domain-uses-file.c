/* The one decision that keeps a guest's writes: may virtsnap remove a file?
 * (driver/link.c, vs_domain_uses_file). Asked of libvirt's own in-process test
 * driver (test:///default: real libvirt, no daemon), with a running domain whose
 * disk has a backing chain and a persistent definition that differs from the
 * live one: the top, a backing image and an image only the persistent
 * definition names are all "in use"; a file nothing names, or anything of a
 * domain that no longer exists, is not; a stopped domain keeps what its
 * definition names. Also the link: a live connection
 * is not reopened, and a domain is looked up again only for a new connection.
 * And the directory where nothing may be written behind libvirt's back, its
 * own /etc/libvirt/qemu, however it is named (KVM_VM_CONFIG_DIR). */
#include "config.h"
#include "driver-internal.h"

#include <string.h>
#include <unistd.h>

#define UUID "0e3f7a6c-5b2d-4c1e-9a8f-7d6e5c4b3a21"

static const char *domain_xml =
    "<domain type='test'><name>vst-uses</name><uuid>" UUID "</uuid>"
    "<memory>65536</memory><os><type>hvm</type></os><devices>"
    "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
    "<source file='/srv/vm/disk.qcow2.virtsnap-ID.qcow2'/>"
    "<backingStore type='file'><format type='qcow2'/><source file='/srv/vm/disk.qcow2'/>"
    "<backingStore/></backingStore>"
    "<target dev='vda' bus='virtio'/></disk>"
    "</devices></domain>";

static virConnectPtr
test_conn(void)
{
    g_autoptr(GError) err = NULL;
    virConnectPtr conn = vs_conn_open("test:///default", &err);

    g_assert_no_error(err);
    return conn;
}

static int
uses(virConnectPtr conn, const char *path)
{
    g_autoptr(GError) err = NULL;
    int r = vs_domain_uses_file(conn, UUID, path, &err);

    if (r < 0)
        g_test_message("%s", err->message);
    return r;
}

static void
test_uses(void)
{
    virConnectPtr conn = test_conn();
    virDomainPtr dom = virDomainDefineXML(conn, domain_xml);
    g_autofree char *persistent = NULL;

    g_assert_nonnull(dom);
    g_assert_cmpint(virDomainCreate(dom), ==, 0);

    /* Running: its live chain, top and below. */
    g_assert_cmpint(uses(conn, "/srv/vm/disk.qcow2.virtsnap-ID.qcow2"), ==, 1);
    g_assert_cmpint(uses(conn, "/srv/vm/disk.qcow2"), ==, 1);
    g_assert_cmpint(uses(conn, "/srv/vm/other.qcow2"), ==, 0);

    /* A definition changed while it runs: what only the persistent one names. */
    {
        virDomainPtr re = virDomainDefineXML(conn,
            "<domain type='test'><name>vst-uses</name><uuid>" UUID "</uuid>"
            "<memory>65536</memory><os><type>hvm</type></os><devices>"
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            "<source file='/srv/vm/disk.qcow2'/><target dev='vda' bus='virtio'/></disk>"
            "<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
            "<source file='/srv/vm/next.img'/><target dev='vdb' bus='virtio'/></disk>"
            "</devices></domain>");
        g_assert_nonnull(re);
        virDomainFree(re);
    }
    g_assert_cmpint(uses(conn, "/srv/vm/next.img"), ==, 1);
    g_assert_cmpint(uses(conn, "/srv/vm/disk.qcow2.virtsnap-ID.qcow2"), ==, 1);

    /* Stopped: only what its definition names stays in use. */
    g_assert_cmpint(virDomainDestroy(dom), ==, 0);
    g_assert_cmpint(uses(conn, "/srv/vm/next.img"), ==, 1);
    g_assert_cmpint(uses(conn, "/srv/vm/disk.qcow2.virtsnap-ID.qcow2"), ==, 0);

    /* Gone, as a live connection says: nothing of it can use anything. */
    persistent = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE);
    g_assert_nonnull(persistent);
    g_assert_cmpint(virDomainUndefine(dom), ==, 0);
    g_assert_cmpint(uses(conn, "/srv/vm/disk.qcow2.virtsnap-ID.qcow2"), ==, 0);

    virDomainFree(dom);
    virConnectClose(conn);
}

static void
test_link(void)
{
    virConnectPtr conn = test_conn();
    virDomainPtr dom = virDomainDefineXML(conn, domain_xml), got = NULL;
    g_autoptr(VsLink) link = vs_link_new(conn, "test:///default");
    g_autoptr(GError) err = NULL;
    guint gen = 0;

    g_assert_nonnull(dom);
    g_assert_true(vs_link_alive(link));
    g_assert_true(vs_link_revive(link, "test", &err));
    g_assert_no_error(err);
    g_assert_true(vs_link_conn(link) == conn);          /* alive: not reopened */
    g_assert_cmpuint(vs_link_generation(link), ==, 0);

    g_assert_true(vs_link_domain(link, UUID, &got, &gen, &err));
    g_assert_no_error(err);
    g_assert_cmpstr(virDomainGetName(got), ==, "vst-uses");

    /* A domain that no longer exists says so, with its own code. */
    g_assert_cmpint(virDomainUndefine(dom), ==, 0);
    virDomainFree(got);
    got = NULL;
    g_assert_false(vs_link_domain(link, UUID, &got, &gen, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_STOPPED);
    g_assert_null(got);

    virDomainFree(dom);
    virConnectClose(conn);
}

static void
test_libvirts_own(void)
{
    g_autofree char *tmp = g_dir_make_tmp("vs-dirs-XXXXXX", NULL);
    g_autofree char *link = g_build_filename(tmp, "qemu-link", NULL);

    g_assert_true(vs_dir_is_libvirts_own("/etc/libvirt/qemu"));
    g_assert_true(vs_dir_is_libvirts_own("/etc/libvirt/qemu/"));
    g_assert_true(vs_dir_is_libvirts_own("/etc/libvirt/../libvirt/qemu"));
    g_assert_false(vs_dir_is_libvirts_own(tmp));
    g_assert_false(vs_dir_is_libvirts_own("/etc/libvirt/qemu-copies"));
    g_assert_false(vs_dir_is_libvirts_own(""));
    g_assert_false(vs_dir_is_libvirts_own(NULL));
    /* another name for it, where it exists */
    if (g_file_test("/etc/libvirt/qemu", G_FILE_TEST_IS_DIR)) {
        g_assert_cmpint(symlink("/etc/libvirt/qemu", link), ==, 0);
        g_assert_true(vs_dir_is_libvirts_own(link));
        g_assert_cmpint(unlink(link), ==, 0);
    }
    g_assert_cmpint(rmdir(tmp), ==, 0);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/link/uses-file", test_uses);
    g_test_add_func("/link/domain", test_link);
    g_test_add_func("/dirs/libvirts-own", test_libvirts_own);
    return g_test_run();
}
