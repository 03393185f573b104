/* The Snap Creator plug-in's output, line for line, against golden files in
 * tests/unit/sc-golden/ (SC_GOLDEN): every kind of SC_* line (SC_MSG at each
 * level and over several lines, SC_DESCRIBE's whole answer, SC_DISCOVER's
 * DISCOVERED/FAILED/RESULT/ENV lines, SC_DUMP), the separator escaped where a
 * field holds one, and the KVM_VM_MAPPING in the guide's shape; also
 * KVM_VM_MAPPING rewritten in a configuration file
 * with every other byte kept. VS_UPDATE_GOLDEN=1 rewrites the golden files
 * (then read the diff). */
#include "config.h"
#include "config-rewrite.h"
#include "sc-format.h"
#include "virtsnap.h"
#include "discover-fixture.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

/* 2026-12-07T20:41:03Z */
#define WHEN ((gint64)1796676063)

static void
golden(const char *name, const char *actual)
{
    g_autofree char *path = g_build_filename(g_getenv("SC_GOLDEN"), name, NULL);
    g_autofree char *want = NULL;
    g_autoptr(GError) err = NULL;

    if (g_strcmp0(g_getenv("VS_UPDATE_GOLDEN"), "1") == 0) {
        g_assert_true(g_file_set_contents(path, actual, -1, &err));
        return;
    }
    g_assert_true(g_file_get_contents(path, &want, NULL, &err));
    g_assert_no_error(err);
    g_assert_cmpstr(actual, ==, want);
}

static VsDiscoveredDisk *
disk(const char *target, const char *path)
{
    return fixture_disk(target, path, "dir");
}

static VsDiscoveredDomain *
domain(const char *name, const char *state, VsAgentStatus agent)
{
    VsDiscoveredDomain *dom = fixture_domain(name);

    g_free(dom->state);
    dom->state = g_strdup(state);
    dom->agent = agent;
    return dom;
}

/* web1: a local file, a file on NFS, a cdrom (skipped); db1: an iSCSI LUN and
 * a LUN the array's hook located; gone: a disk discovery could not resolve. */
static GPtrArray *
sample(bool with_failure)
{
    GPtrArray *doms = g_ptr_array_new_with_free_func((GDestroyNotify)vs_discovered_domain_free);
    VsDiscoveredDomain *web = domain("web1", "running", VS_AGENT_RESPONDING);
    VsDiscoveredDomain *db = domain("db1", "shut off", VS_AGENT_CONFIGURED);
    VsDiscoveredDisk *d;

    g_ptr_array_add(web->disks, disk("vda", "/var/lib/libvirt/images/web1.qcow2"));
    d = disk("vdb", "/mnt/nfs/sub/data.raw");
    d->nfs_server = g_strdup("10.1.1.5");
    d->nfs_export = g_strdup("/export/vms");
    d->nfs_path = g_strdup("/sub/data.raw");
    g_ptr_array_add(web->disks, d);
    d = disk("hdc", "/iso/debian.iso");
    d->skipped = g_strdup("removable media (cdrom)");
    g_ptr_array_add(web->disks, d);

    d = disk("sda", "unit:0:0:1");
    d->iscsi_portal = g_strdup("127.0.0.1:3262");
    d->iscsi_iqn = g_strdup("iqn.2024-01.test:t1");
    d->iscsi_lun = 1;
    g_ptr_array_add(db->disks, d);
    d = disk("sdb", "/dev/mapper/mpatha");
    d->controller = g_strdup("array1#east");
    d->controller_volume = g_strdup("/vol/vol1/lun1");
    g_ptr_array_add(db->disks, d);

    g_ptr_array_add(doms, web);
    g_ptr_array_add(doms, db);
    if (with_failure) {
        VsDiscoveredDomain *gone = domain("gone", "running", VS_AGENT_NONE);

        d = disk("vda", "/var/lib/libvirt/images/gone.qcow2");
        d->error = g_strdup("storage pool 'default' does not exist");
        g_ptr_array_add(gone->disks, d);
        g_ptr_array_add(doms, gone);
    }
    return doms;
}

static void
test_line(void)
{
    g_autoptr(GString) out = g_string_new(NULL);

    vs_sc_line(out, "DUMP", (const char *const[]){"a#b", "100%", "last # field % kept", NULL});
    vs_sc_line(out, "DUMP", (const char *const[]){"tab\there", "new\nline", NULL});
    vs_sc_line(out, "DISCOVER", (const char *const[]){"DATA", "RESULT", "0", NULL});
    vs_sc_line(out, "DUMP", (const char *const[]){"only", NULL});
    golden("line.txt", out->str);
}

static void
test_msg(void)
{
    g_autoptr(GString) out = g_string_new(NULL);
    g_autofree char *t = vs_sc_time(WHEN);

    g_assert_cmpstr(t, ==, "2026-12-07T20:41:03Z");
    vs_sc_msg(out, VS_SC_DEBUG, WHEN, "connecting to qemu:///system");
    vs_sc_msg(out, VS_SC_INFO, WHEN, "web1, db1: frozen together in 212 ms (token 3f2a)");
    vs_sc_msg(out, VS_SC_WARN, WHEN, "db1: no guest agent answered: suspended instead\n");
    vs_sc_msg(out, VS_SC_ERROR, WHEN, "unquiesce: the guardian thawed at the deadline:\nthe snapshot taken "
              "meanwhile is crash-consistent only");
    vs_sc_msg(out, VS_SC_INFO, WHEN, "a # in a message stays");
    golden("msg.txt", out->str);
}

static void
test_describe(void)
{
    g_autofree char *d = vs_sc_describe();

    golden("describe.txt", d);
}

static VsProblem *
problem(const char *domain, const char *disk, const char *msg)
{
    VsProblem *p = g_new0(VsProblem, 1);

    p->domain = g_strdup(domain);
    p->disk = g_strdup(disk);
    p->error = g_error_new_literal(VS_ERROR, VS_ERROR_NOT_FOUND, msg);
    return p;
}

/* Everything mapped: the mapping offered. A disk unresolved, a hook's locate
 * failing for another, a domain that does not exist: each FAILED, RESULT 1,
 * no mapping offered. */
static void
test_discover(void)
{
    g_autoptr(GPtrArray) ok = sample(false), bad = sample(true);
    g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func((GDestroyNotify)vs_problem_free);
    g_autoptr(GString) out = g_string_new(NULL), out_bad = g_string_new(NULL);

    g_assert_true(vs_sc_discover(out, ok, NULL, WHEN));
    golden("discover.txt", out->str);
    g_ptr_array_add(problems, problem("gone", "vda", "discover: domain 'gone': disk vda: storage pool "
                                      "'default' does not exist"));
    g_ptr_array_add(problems, problem("db1", "sdb", "discover: domain 'db1': disk sdb: snapshot: db1/sdb: hook "
                                      "/etc/virtsnap/array-hook locate: exit code 1 (attempt 1 of 1)"));
    g_ptr_array_add(problems, problem("vm9", NULL, "discover: domain 'vm9' not found"));
    g_assert_false(vs_sc_discover(out_bad, bad, problems, WHEN));
    golden("discover-failed.txt", out_bad->str);
}

static void
test_dump(void)
{
    g_autoptr(GPtrArray) doms = sample(false);
    g_autoptr(GString) out = g_string_new(NULL);
    VsScDumpInfo info = {.virtsnap_version = "0.9.0", .libvirt_version = "9.0.0",
                         .hypervisor_version = "QEMU 7.2.0", .os = "Linux 6.1.0-13-amd64 x86_64"};
    VsScDumpInfo none = {0};

    vs_sc_dump(out, &info, doms);
    vs_sc_dump(out, &none, NULL);
    golden("dump.txt", out->str);
}

static void
test_sc_mapping(void)
{
    g_autoptr(GPtrArray) doms = sample(false);
    g_autoptr(GError) err = NULL;
    g_autofree char *m = vs_discover_to_sc_mapping(doms, &err);
    VsDiscoveredDomain *web = doms->pdata[0];

    g_assert_no_error(err);
    g_assert_cmpstr(m, ==, "web1:localhost:/var/lib/libvirt/images/web1.qcow2;"
                           "web1:10.1.1.5:/export/vms/sub/data.raw;"
                           "db1:127.0.0.1:3262:iqn.2024-01.test:t1/1;"
                           "db1:array1#east:/vol/vol1/lun1;\n");
    /* a name the unescaped shape cannot hold is refused, not written ambiguously */
    for (const char *const *n = (const char *const[]){"a:b", "a;b", "a%3Ab", NULL}; *n; n++) {
        g_autofree char *m2 = NULL;

        g_free(web->name);
        web->name = g_strdup(*n);
        m2 = vs_discover_to_sc_mapping(doms, &err);
        g_assert_null(m2);
        g_assert_error(err, VS_ERROR, VS_ERROR_UNSUPPORTED);
        g_assert_nonnull(strstr(err->message, "use --mapping (escaped)"));
        g_clear_error(&err);
    }
}

static void
expect_set(const char *text, const char *want)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *got = vs_config_text_set(text, "KVM_VM_MAPPING", "vm1:a:/v;", &err);

    g_assert_no_error(err);
    g_assert_cmpstr(got, ==, want);
}

static void
test_text_set(void)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *dup = NULL, *nl = NULL;

    expect_set("", "KVM_VM_MAPPING=vm1:a:/v;\n");
    expect_set("# c\nREPO=/r", "# c\nREPO=/r\nKVM_VM_MAPPING=vm1:a:/v;\n");
    expect_set("A=1\r\n  KVM_VM_MAPPING = old:x:y;\r\n# KVM_VM_MAPPING=comment\r\nB=2",
               "A=1\r\n  KVM_VM_MAPPING = vm1:a:/v;\r\n# KVM_VM_MAPPING=comment\r\nB=2");
    expect_set("KVM_VM_MAPPING=\n\n", "KVM_VM_MAPPING=vm1:a:/v;\n\n");
    expect_set("KVM_VM_MAPPINGS=x\nXKVM_VM_MAPPING=y\n", "KVM_VM_MAPPINGS=x\nXKVM_VM_MAPPING=y\nKVM_VM_MAPPING=vm1:a:/v;\n");
    dup = vs_config_text_set("KVM_VM_MAPPING=a\nX=1\nKVM_VM_MAPPING=b\n", "KVM_VM_MAPPING", "c", &err);
    g_assert_null(dup);
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_assert_cmpstr(err->message, ==, "config: KVM_VM_MAPPING is set on lines 1 and 3: remove one, then try again");
    g_clear_error(&err);
    nl = vs_config_text_set("", "KVM_VM_MAPPING", "a\nREPO=/evil", &err);
    g_assert_null(nl);
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
}

static void
test_file_set(void)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = g_dir_make_tmp("sc-config-XXXXXX", &err);
    g_autofree char *file = g_build_filename(dir, "kvm.conf", NULL);
    g_autofree char *link = g_build_filename(dir, "link.conf", NULL);
    g_autofree char *text = NULL;
    const char *before = "# Snap Creator\nCONFIG_TYPE=STANDARD\nKVM_VM_MAPPING=old:c:/v;\n\nAPP_NAME=kvm";
    GDir *d;
    struct stat st;
    const char *name;
    int n = 0;

    g_assert_no_error(err);
    g_assert_true(g_file_set_contents(file, before, -1, &err));
    g_assert_cmpint(chmod(file, 0640), ==, 0);
    g_assert_true(vs_config_file_set(file, "KVM_VM_MAPPING", "vm1:127.0.0.1:3262:iqn.x:t/1;", &err));
    g_assert_no_error(err);
    g_assert_true(g_file_get_contents(file, &text, NULL, &err));
    g_assert_cmpstr(text, ==, "# Snap Creator\nCONFIG_TYPE=STANDARD\nKVM_VM_MAPPING=vm1:127.0.0.1:3262:iqn.x:t/1;"
                              "\n\nAPP_NAME=kvm");
    g_assert_cmpint(stat(file, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 07777, ==, 0640);

    /* a symlink is not followed: refused, its target untouched */
    g_assert_cmpint(symlink(file, link), ==, 0);
    g_assert_false(vs_config_file_set(link, "KVM_VM_MAPPING", "x:y:z;", &err));
    g_assert_nonnull(strstr(err->message, "a symlink is not followed"));
    g_clear_error(&err);
    g_clear_pointer(&text, g_free);
    g_assert_true(g_file_get_contents(file, &text, NULL, NULL));
    g_assert_nonnull(strstr(text, "KVM_VM_MAPPING=vm1:127.0.0.1:3262:iqn.x:t/1;\n"));
    g_assert_false(vs_config_file_set(dir, "KVM_VM_MAPPING", "x:y:z;", &err));
    g_assert_nonnull(strstr(err->message, "not a regular file"));
    g_clear_error(&err);

    /* nothing but the two names left in the directory: no temp file */
    d = g_dir_open(dir, 0, NULL);
    while ((name = g_dir_read_name(d)))
        n++;
    g_dir_close(d);
    g_assert_cmpint(n, ==, 2);
    unlink(link);
    unlink(file);
    rmdir(dir);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/sc/line", test_line);
    g_test_add_func("/sc/msg", test_msg);
    g_test_add_func("/sc/describe", test_describe);
    g_test_add_func("/sc/discover", test_discover);
    g_test_add_func("/sc/dump", test_dump);
    g_test_add_func("/sc/mapping-sc", test_sc_mapping);
    g_test_add_func("/config/text-set", test_text_set);
    g_test_add_func("/config/file-set", test_file_set);
    return g_test_run();
}
