/* The discover output formats, checked on hand-built discovery results: the
 * mapping line array-snapshot plug-ins parse (escaping included), and the JSON
 * keys scripts rely on (always present, null where they do not apply). The
 * discovery itself is tested against real libvirt in tests/integration. */
#include "config.h"
#include "virtsnap.h"
#include "discover-fixture.h"

#include <json-glib/json-glib.h>

static GPtrArray *
sample(void)
{
    GPtrArray *doms = g_ptr_array_new_with_free_func((GDestroyNotify)vs_discovered_domain_free);
    VsDiscoveredDomain *a = fixture_domain("web1"), *b = fixture_domain("db:2;x%");
    VsDiscoveredDisk *d;

    d = fixture_disk("vda", "/var/lib/libvirt/images/web1.qcow2", "dir");
    d->pool = g_strdup("default");
    g_ptr_array_add(a->disks, d);

    d = fixture_disk("vdb", "/mnt/nfs/sub/data.raw", "netfs");
    d->pool = g_strdup("nfspool");
    d->nfs_server = g_strdup("10.1.1.5");
    d->nfs_export = g_strdup("/export/vms");
    d->nfs_path = g_strdup("/sub/data.raw");
    g_ptr_array_add(a->disks, d);

    d = fixture_disk("hdc", "/iso/debian.iso", "none");
    g_free(d->device);
    d->device = g_strdup("cdrom");
    d->skipped = g_strdup("removable media (cdrom)");
    g_ptr_array_add(a->disks, d);

    d = fixture_disk("sda", "ip-127.0.0.1:3262-iscsi-iqn.2024-01.test:t1-lun-1", "iscsi-direct");
    d->iscsi_portal = g_strdup("127.0.0.1:3262");
    d->iscsi_iqn = g_strdup("iqn.2024-01.test:t1");
    d->iscsi_lun = 1;
    g_ptr_array_add(b->disks, d);

    g_ptr_array_add(doms, a);
    g_ptr_array_add(doms, b);
    return doms;
}

static void
test_mapping(void)
{
    g_autoptr(GPtrArray) doms = sample();
    g_autofree char *m = vs_discover_to_mapping(doms);

    g_assert_cmpstr(m, ==,
        "web1:localhost:/var/lib/libvirt/images/web1.qcow2;"
        "web1:10.1.1.5:/export/vms/sub/data.raw;"
        "db%3A2%3Bx%25:127.0.0.1%3A3262:iqn.2024-01.test%3At1/1;\n");
}

static void
test_mapping_empty(void)
{
    g_autoptr(GPtrArray) doms = g_ptr_array_new_with_free_func((GDestroyNotify)vs_discovered_domain_free);
    g_autofree char *m = vs_discover_to_mapping(doms);

    g_assert_cmpstr(m, ==, "\n");
}

static void
test_json(void)
{
    g_autoptr(GPtrArray) doms = sample();
    g_autofree char *text = vs_discover_to_json(doms, false);
    g_autoptr(JsonParser) p = json_parser_new();
    g_autoptr(GError) err = NULL;
    JsonArray *arr, *disks;
    JsonObject *web, *vda, *vdb, *hdc, *sda, *nfs, *iscsi;

    g_assert_true(json_parser_load_from_data(p, text, -1, &err));
    g_assert_no_error(err);
    arr = json_node_get_array(json_parser_get_root(p));
    g_assert_cmpuint(json_array_get_length(arr), ==, 2);
    web = json_array_get_object_element(arr, 0);
    g_assert_cmpstr(json_object_get_string_member(web, "name"), ==, "web1");
    g_assert_cmpstr(json_object_get_string_member(web, "state"), ==, "running");
    g_assert_cmpstr(json_object_get_string_member(web, "agent"), ==, "responding");
    g_assert_cmpint(json_object_get_int_member(web, "id"), ==, 3);
    disks = json_object_get_array_member(web, "disks");
    g_assert_cmpuint(json_array_get_length(disks), ==, 3);

    vda = json_array_get_object_element(disks, 0);
    g_assert_cmpstr(json_object_get_string_member(vda, "pool"), ==, "default");
    g_assert_cmpstr(json_object_get_string_member(vda, "pool_type"), ==, "dir");
    g_assert_true(json_object_get_null_member(vda, "nfs"));
    g_assert_true(json_object_get_null_member(vda, "iscsi"));
    g_assert_true(json_object_get_null_member(vda, "skipped"));

    vdb = json_array_get_object_element(disks, 1);
    nfs = json_object_get_object_member(vdb, "nfs");
    g_assert_cmpstr(json_object_get_string_member(nfs, "server"), ==, "10.1.1.5");
    g_assert_cmpstr(json_object_get_string_member(nfs, "export"), ==, "/export/vms");
    g_assert_cmpstr(json_object_get_string_member(nfs, "path"), ==, "/sub/data.raw");

    hdc = json_array_get_object_element(disks, 2);
    g_assert_cmpstr(json_object_get_string_member(hdc, "device"), ==, "cdrom");
    g_assert_cmpstr(json_object_get_string_member(hdc, "skipped"), ==, "removable media (cdrom)");

    sda = json_array_get_object_element(json_object_get_array_member(json_array_get_object_element(arr, 1), "disks"), 0);
    iscsi = json_object_get_object_member(sda, "iscsi");
    g_assert_cmpstr(json_object_get_string_member(iscsi, "portal"), ==, "127.0.0.1:3262");
    g_assert_cmpstr(json_object_get_string_member(iscsi, "iqn"), ==, "iqn.2024-01.test:t1");
    g_assert_cmpint(json_object_get_int_member(iscsi, "lun"), ==, 1);
}

static void
add_problem(VsDiscoveredDomain *dom, const char *disk, VsErrorCode code, const char *msg)
{
    VsProblem *p = g_new0(VsProblem, 1);

    p->domain = g_strdup(dom->name);
    p->disk = g_strdup(disk);
    p->error = g_error_new_literal(VS_ERROR, code, msg);
    g_ptr_array_add(dom->problems, p);
}

/* A domain's problems: all of them in the JSON; in the text, those of the
 * domain itself at its end, a disk's only beside the disk. */
static void
test_problems(void)
{
    g_autoptr(GPtrArray) doms = sample();
    VsDiscoveredDomain *web = doms->pdata[0];
    VsDiscoveredDisk *vda = web->disks->pdata[0];
    g_autofree char *text = NULL, *json = NULL;
    g_autoptr(JsonParser) parser = json_parser_new();
    JsonArray *errors;

    vda->error = g_strdup("storage pool 'default' does not exist");
    vda->error_code = VS_ERROR_NOT_FOUND;
    add_problem(web, "vda", VS_ERROR_NOT_FOUND,
                "discover: domain 'web1': disk vda: storage pool 'default' does not exist");
    add_problem(web, NULL, VS_ERROR_LIBVIRT, "discover: domain 'web1': cannot read its state");
    text = vs_discover_to_text(doms);
    g_assert_nonnull(strstr(text, "        error: storage pool 'default' does not exist\n"));
    g_assert_nonnull(strstr(text, "\n  error: discover: domain 'web1': cannot read its state\n"));
    g_assert_null(strstr(text, "  error: discover: domain 'web1': disk vda"));
    json = vs_discover_to_json(doms, false);
    g_assert_true(json_parser_load_from_data(parser, json, -1, NULL));
    errors = json_object_get_array_member(
        json_array_get_object_element(json_node_get_array(json_parser_get_root(parser)), 0), "errors");
    g_assert_cmpuint(json_array_get_length(errors), ==, 2);
    g_assert_cmpstr(json_array_get_string_element(errors, 0), ==,
                    "discover: domain 'web1': disk vda: storage pool 'default' does not exist");
    g_assert_cmpstr(json_array_get_string_element(errors, 1), ==,
                    "discover: domain 'web1': cannot read its state");
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/discover/mapping", test_mapping);
    g_test_add_func("/discover/mapping-empty", test_mapping_empty);
    g_test_add_func("/discover/json", test_json);
    g_test_add_func("/discover/problems", test_problems);
    return g_test_run();
}
