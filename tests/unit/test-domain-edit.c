/* The domain edits restore makes (xml/domain-edit.c): a new name, no UUID, no
 * MAC addresses, per-domain files renamed, the live disk element for an attach;
 * and that everything else in the user's document survives untouched. */
#include "config.h"
#include "vs-xml.h"

#include <string.h>

static const char *const domain_xml =
    "<domain type='kvm'>\n"
    "  <name>web1</name>\n"
    "  <uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>\n"
    "  <memory unit='KiB'>262144</memory>\n"
    "  <os>\n"
    "    <type arch='x86_64' machine='q35'>hvm</type>\n"
    "    <nvram>/var/lib/libvirt/qemu/nvram/web1_VARS.fd</nvram>\n"
    "  </os>\n"
    "  <devices>\n"
    "    <disk type='file' device='disk'>\n"
    "      <driver name='qemu' type='qcow2'/>\n"
    "      <source file='/images/web1.qcow2' index='2'/>\n"
    "      <backingStore type='file' index='3'>\n"
    "        <format type='qcow2'/>\n"
    "        <source file='/images/base.qcow2'/>\n"
    "        <backingStore/>\n"
    "      </backingStore>\n"
    "      <target dev='vda' bus='virtio'/>\n"
    "      <alias name='virtio-disk0'/>\n"
    "      <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>\n"
    "    </disk>\n"
    "    <interface type='network'>\n"
    "      <mac address='52:54:00:12:34:56'/>\n"
    "      <source network='default'/>\n"
    "      <model type='virtio'/>\n"
    "    </interface>\n"
    "    <serial type='file'>\n"
    "      <source path='/var/log/vms/web1.console.log' append='off'/>\n"
    "      <target port='0'/>\n"
    "    </serial>\n"
    "    <console type='file'>\n"
    "      <source path='/var/log/vms/web1.console.log' append='off'/>\n"
    "      <target type='serial' port='0'/>\n"
    "    </console>\n"
    "    <channel type='unix'>\n"
    "      <source mode='bind' path='/run/vms/agent.sock'/>\n"
    "      <log file='/var/log/vms/chan.log'/>\n"
    "      <target type='virtio' name='org.qemu.guest_agent.0'/>\n"
    "    </channel>\n"
    "    <channel type='spicevmc'>\n"
    "      <target type='virtio' name='com.redhat.spice.0'/>\n"
    "    </channel>\n"
    "    <graphics type='vnc' port='5901' autoport='no' listen='127.0.0.1'/>\n"
    "  </devices>\n"
    "</domain>\n";

static void
test_name_check(void)
{
    const char *good[] = { "web1", "web1-copy", "a.b_c+d", "X", "_x" };
    const char *bad[] = { "", "a/b", "..", "a..b", ".hidden", "-opt", "a b", "a\nb", "a:b", "ä" };

    for (size_t i = 0; i < G_N_ELEMENTS(good); i++)
        g_assert_true(vs_domain_name_check(good[i], NULL));
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autoptr(GError) err = NULL;
        g_assert_false(vs_domain_name_check(bad[i], &err));
        g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    }
    {
        g_autoptr(GError) err = NULL;
        g_autofree char *long_name = g_strnfill(201, 'a');
        g_assert_false(vs_domain_name_check(long_name, &err));
    }
}

static void
test_rename_path(void)
{
    struct { const char *path, *want; } cases[] = {
        { "/var/log/web1.log", "/var/log/web2.log" },
        { "/var/log/web1-console.log", "/var/log/web2-console.log" },
        { "/var/log/console.log", "/var/log/web2-console.log" },
        { "/var/log/web10.log", "/var/log/web2-web10.log" },      /* not a whole word */
        { "/web1/web1.log", "/web1/web2.log" },                   /* directory kept */
        { "web1.log", "web2.log" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *got = vs_domain_rename_path(cases[i].path, "web1", "web2");
        g_assert_cmpstr(got, ==, cases[i].want);
    }
    g_assert_null(vs_domain_rename_path("", "a", "b"));
}

static void
test_edit(void)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VsDomainDef) def = vs_domain_def_parse_string(domain_xml, "t", &err);
    g_autoptr(VsDomainDef) again = NULL;
    g_autoptr(GPtrArray) changes = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *xml = NULL;
    VsDiskDef *disk;

    g_assert_no_error(err);
    g_assert_true(vs_domain_def_set_name(def, "web1-copy", &err));
    g_assert_no_error(err);
    g_assert_true(vs_domain_def_set_uuid(def, NULL, &err));
    g_assert_cmpuint(vs_domain_def_clear_macs(def), ==, 1);
    g_assert_cmpuint(vs_domain_def_rename_files(def, "web1", "web1-copy", changes), ==, 6);
    g_assert_cmpuint(changes->len, ==, 6);
    disk = vs_domain_def_find_disk(def, "vda");
    g_free(disk->src->path);
    disk->src->path = g_strdup("/images/web1-copy-vda.qcow2");
    g_clear_pointer(&disk->src->backing, vs_storage_source_free);
    disk->src->backing_terminated = false;
    xml = vs_domain_def_format(def, &err);
    g_assert_no_error(err);

    g_assert_nonnull(strstr(xml, "<name>web1-copy</name>"));
    g_assert_null(strstr(xml, "<uuid>"));
    g_assert_null(strstr(xml, "<mac "));
    g_assert_null(strstr(xml, "backingStore"));
    g_assert_nonnull(strstr(xml, "<source file='/images/web1-copy-vda.qcow2' index='2'/>"));
    g_assert_nonnull(strstr(xml, "<source path='/var/log/vms/web1-copy.console.log' append='off'/>"));
    g_assert_null(strstr(xml, "/var/log/vms/web1.console.log"));
    g_assert_nonnull(strstr(xml, "path='/run/vms/web1-copy-agent.sock'"));
    g_assert_nonnull(strstr(xml, "<log file='/var/log/vms/web1-copy-chan.log'/>"));
    g_assert_nonnull(strstr(xml, "<nvram>/var/lib/libvirt/qemu/nvram/web1-copy_VARS.fd</nvram>"));
    g_assert_nonnull(strstr(xml, "<graphics type='vnc' autoport='yes' listen='127.0.0.1'/>"));
    /* Untouched: */
    g_assert_nonnull(strstr(xml, "<source network='default'/>"));
    g_assert_nonnull(strstr(xml, "<memory unit='KiB'>262144</memory>"));
    g_assert_nonnull(strstr(xml, "<address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>"));
    g_assert_nonnull(strstr(xml, "<channel type='spicevmc'>"));

    /* What we wrote parses again, with the new name and no UUID. */
    again = vs_domain_def_parse_string(xml, "again", &err);
    g_assert_no_error(err);
    g_assert_cmpstr(again->name, ==, "web1-copy");
    g_assert_null(again->uuid);

    /* A UUID given back (--force over an existing domain). */
    g_assert_true(vs_domain_def_set_uuid(def, "6a2f0f1a-8c47-4f3e-9e0b-3a5b4c6d7e8f", &err));
    g_free(xml);
    xml = vs_domain_def_format(def, &err);
    g_assert_nonnull(strstr(xml, "  <name>web1-copy</name>\n  <uuid>6a2f0f1a-8c47-4f3e-9e0b-3a5b4c6d7e8f</uuid>\n"));
    g_assert_false(vs_domain_def_set_uuid(def, "not-a-uuid", &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_clear_error(&err);
    g_assert_false(vs_domain_def_set_name(def, "a/b", &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
}

static void
test_disk_xml(void)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VsDomainDef) def = vs_domain_def_parse_string(domain_xml, "t", &err);
    g_autofree char *xml = NULL;

    g_assert_no_error(err);
    xml = vs_domain_def_disk_xml(def, "vda", &err);
    g_assert_no_error(err);
    g_assert_cmpstr(xml, ==,
                    "<disk type='file' device='disk'>\n"
                    "      <driver name='qemu' type='qcow2'/>\n"
                    "      <source file='/images/web1.qcow2'/>\n"
                    "      <target dev='vda' bus='virtio'/>\n"
                    "      <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>\n"
                    "    </disk>\n");
    g_assert_null(vs_domain_def_disk_xml(def, "vdz", &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/domain-edit/name-check", test_name_check);
    g_test_add_func("/domain-edit/rename-path", test_rename_path);
    g_test_add_func("/domain-edit/edit", test_edit);
    g_test_add_func("/domain-edit/disk-xml", test_disk_xml);
    return g_test_run();
}
