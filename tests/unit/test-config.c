/* virtsnap.conf (util/vs-config.c, util/vs-trusted.c): KEY=VALUE lines with
 * comments and blank lines, every key's values checked, the VM names of both
 * mapping formats, precedence (environment over file; the option over both),
 * and each refusal naming FILE:LINE and the key: an unknown key, a bad value,
 * a key given twice, a line that is not KEY=VALUE, a file others can write, an
 * explicitly named file that does not exist. */
#include "config.h"
#include "vs-config.h"
#include "vs-error.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

static const char sample[] =
    "# Snap Creator's keys and virtsnap's\n"
    "\n"
    "VIRTSNAP_REPO=/srv/backups\n"
    "  VIRTSNAP_AGENT_TIMEOUT = 7  \n"
    "VIRTSNAP_QUIESCE=\"require\"\n"
    "KVM_VM_MAPPING=vm1:ctl1:/vol/vol1/lun1,ctl2:/vol/vol2/lun2;vm2:ctl1:/vol/vol1/lun3;vm1:ctl3:/x\n"
    "KVM_RESTORE_VM_LIST=vm3, vm4\n"
    "KVM_CMD_RETRY_COUNT=5\n"
    "SC_AGENT_TIMEOUT=90\n"
    "VIRTSNAP_MAX_FREEZE=2.5\n"
    "APP_DEFINED_RESTORE=N\n"
    "KVM_VM_CONFIG_DIR=/etc/libvirt/qemu\n";

static void
test_parse(void)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VsConfig) c = vs_config_parse("/etc/virtsnap/virtsnap.conf", sample, -1, NULL, &err);
    const char *const *vms;

    g_assert_no_error(err);
    g_assert_cmpstr(vs_config_get(c, "VIRTSNAP_REPO"), ==, "/srv/backups");
    g_assert_cmpint(vs_config_int(c, "VIRTSNAP_AGENT_TIMEOUT", 5), ==, 7);
    g_assert_cmpstr(vs_config_get(c, "VIRTSNAP_QUIESCE"), ==, "require");
    g_assert_cmpint(vs_config_int(c, "KVM_CMD_RETRY_COUNT", 3), ==, 5);
    g_assert_cmpint(vs_config_int(c, "SC_AGENT_TIMEOUT", 0), ==, 90);
    g_assert_cmpfloat(vs_config_double(c, "VIRTSNAP_MAX_FREEZE", 10), ==, 2.5);
    g_assert_false(vs_config_bool(c, "APP_DEFINED_RESTORE", true));
    g_assert_cmpstr(vs_config_origin(c, "KVM_CMD_RETRY_COUNT"), ==, "/etc/virtsnap/virtsnap.conf:8");
    /* the guide's format: each VM once, in order */
    vms = vs_config_names(c, "KVM_VM_MAPPING");
    g_assert_nonnull(vms);
    g_assert_cmpstr(vms[0], ==, "vm1");
    g_assert_cmpstr(vms[1], ==, "vm2");
    g_assert_null(vms[2]);
    vms = vs_config_names(c, "KVM_RESTORE_VM_LIST");
    g_assert_cmpstr(vms[0], ==, "vm3");
    g_assert_cmpstr(vms[1], ==, "vm4");
    g_assert_null(vms[2]);
    /* unset keys: the caller's default */
    g_assert_null(vs_config_get(c, "VIRTSNAP_STATE_DIR"));
    g_assert_cmpint(vs_config_int(c, "VIRTSNAP_PARALLEL_DISKS", 2), ==, 2);
    g_assert_null(vs_config_origin(c, "VIRTSNAP_STATE_DIR"));
    /* no configuration at all: everything unset */
    g_assert_null(vs_config_get(NULL, "VIRTSNAP_REPO"));
    g_assert_cmpint(vs_config_int(NULL, "KVM_CMD_RETRY_COUNT", 3), ==, 3);
}

/* The mapping `discover --mapping` prints: one entry per disk, ':' ';' '%'
 * percent-encoded in a field, a trailing ';'. */
static void
test_escaped_mapping(void)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VsConfig) c = vs_config_parse("f", "KVM_VM_MAPPING=web%3A1:localhost:/var/lib/a.qcow2;"
                                            "web%3A1:nfs1:/export/b.img;db:10.0.0.1%3A3260:iqn.x/0;\n",
                                            -1, NULL, &err);
    const char *const *vms;

    g_assert_no_error(err);
    vms = vs_config_names(c, "KVM_VM_MAPPING");
    g_assert_cmpstr(vms[0], ==, "web:1");
    g_assert_cmpstr(vms[1], ==, "db");
    g_assert_null(vms[2]);
}

static void
test_precedence(void)
{
    g_autoptr(GError) err = NULL;
    const char *env[] = { "KVM_CMD_RETRY_COUNT=1", "VIRTSNAP_REPO=/env/repo", "VIRTSNAP_STATE_DIR=",
                          "UNRELATED=x", NULL };
    g_autoptr(VsConfig) c = vs_config_parse("f", "KVM_CMD_RETRY_COUNT=4\nVIRTSNAP_REPO=/file/repo\n"
                                            "VIRTSNAP_STATE_DIR=/file/state\nSC_AGENT_TIMEOUT=30\n", -1, env, &err);

    g_assert_no_error(err);
    /* environment over file */
    g_assert_cmpint(vs_config_int(c, "KVM_CMD_RETRY_COUNT", 3), ==, 1);
    g_assert_cmpstr(vs_config_origin(c, "KVM_CMD_RETRY_COUNT"), ==, "environment");
    g_assert_cmpstr(vs_config_get(c, "VIRTSNAP_REPO"), ==, "/env/repo");
    /* an empty variable is no value: the file's stands */
    g_assert_cmpstr(vs_config_get(c, "VIRTSNAP_STATE_DIR"), ==, "/file/state");
    g_assert_cmpstr(vs_config_origin(c, "SC_AGENT_TIMEOUT"), ==, "f:4");
    /* the option over both */
    g_assert_cmpstr(vs_config_value(c, "VIRTSNAP_REPO", "/opt/repo"), ==, "/opt/repo");
    g_assert_cmpstr(vs_config_value(c, "VIRTSNAP_REPO", NULL), ==, "/env/repo");
}

/* TEXT refused with a message holding each of WANT (NULL-terminated). */
static void
refused(const char *text, const char *const *envp, const char *const *want)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VsConfig) c = vs_config_parse("/etc/v.conf", text, -1, envp, &err);

    g_assert_null(c);
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_assert_true(g_str_has_prefix(err->message, "config: "));
    for (guint i = 0; want[i]; i++)
        if (!strstr(err->message, want[i]))
            g_error("'%s' lacks '%s'", err->message, want[i]);
}

static void
test_errors(void)
{
    const char *bad_retry[] = { "KVM_CMD_RETRY_COUNT=abc", NULL };

    refused("# ok\nFOO=1\n", NULL, (const char *[]){ "/etc/v.conf:2: unknown key 'FOO'", "KVM_VM_MAPPING",
                                                    "CONFIGURATION FILE", NULL });
    refused("VIRTSNAP_REPO /x\n", NULL, (const char *[]){ "/etc/v.conf:1:", "not KEY=VALUE", NULL });
    refused("\nKVM_CMD_RETRY_COUNT=x\n", NULL, (const char *[]){ "/etc/v.conf:2: KVM_CMD_RETRY_COUNT: 'x'",
                                                                  "0 to 10", NULL });
    refused("KVM_CMD_RETRY_COUNT=11\n", NULL, (const char *[]){ "KVM_CMD_RETRY_COUNT: '11'", NULL });
    refused("SC_AGENT_TIMEOUT=-1\n", NULL, (const char *[]){ "SC_AGENT_TIMEOUT: '-1'", "0 to 604800", NULL });
    refused("VIRTSNAP_AGENT_TIMEOUT=0\n", NULL, (const char *[]){ "VIRTSNAP_AGENT_TIMEOUT: '0'", "1 to 300", NULL });
    refused("VIRTSNAP_MAX_FREEZE=0\n", NULL, (const char *[]){ "VIRTSNAP_MAX_FREEZE: '0'", "seconds", NULL });
    refused("VIRTSNAP_QUIESCE=maybe\n", NULL, (const char *[]){ "VIRTSNAP_QUIESCE: 'maybe'", "try, require or off",
                                                                 NULL });
    refused("APP_DEFINED_RESTORE=maybe\n", NULL, (const char *[]){ "APP_DEFINED_RESTORE: 'maybe'", "Y or N", NULL });
    refused("KVM_VM_CONFIG_DIR=etc\n", NULL, (const char *[]){ "KVM_VM_CONFIG_DIR: 'etc'", "absolute", NULL });
    refused("VIRTSNAP_REPO=\n", NULL, (const char *[]){ "/etc/v.conf:1: VIRTSNAP_REPO: empty value", NULL });
    refused("VIRTSNAP_REPO=/a\n\nVIRTSNAP_REPO=/b\n", NULL,
            (const char *[]){ "/etc/v.conf:3: VIRTSNAP_REPO: given again (first at /etc/v.conf:1)", NULL });
    refused("KVM_VM_MAPPING=:ctl:/vol/x\n", NULL, (const char *[]){ "/etc/v.conf:1: KVM_VM_MAPPING: entry 1",
                                                                   "names no VM", NULL });
    refused("KVM_VM_MAPPING=vm%4:ctl:/vol/x\n", NULL, (const char *[]){ "KVM_VM_MAPPING", "two hex digits", NULL });
    refused("KVM_VM_MAPPING=../x:ctl:/vol/x\n", NULL, (const char *[]){ "KVM_VM_MAPPING", "'/'", NULL });
    refused("KVM_VM_MAPPING=;;\n", NULL, (const char *[]){ "KVM_VM_MAPPING: names no VM", NULL });
    refused("KVM_RESTORE_VM_LIST=,\n", NULL, (const char *[]){ "KVM_RESTORE_VM_LIST: names no VM", NULL });
    /* a bad value from the environment names the environment */
    refused("KVM_CMD_RETRY_COUNT=2\n", bad_retry,
            (const char *[]){ "config: environment: KVM_CMD_RETRY_COUNT: 'abc'", NULL });
    {
        static const char nul[] = "VIRTSNAP_REPO=/a\0b\n";
        g_autoptr(GError) err = NULL;

        g_assert_null(vs_config_parse("/etc/v.conf", nul, sizeof nul - 1, NULL, &err));
        g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
        g_assert_nonnull(strstr(err->message, "not a text file"));
    }
}

/* The file on disk: read when it is the caller's and nobody else can write
 * it; refused otherwise; the default may be absent, a named file may not. */
static void
test_load(void)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = g_dir_make_tmp("vs-config-XXXXXX", NULL);
    g_autofree char *path = g_build_filename(dir, "virtsnap.conf", NULL);
    g_autofree char *missing = g_build_filename(dir, "none.conf", NULL);
    g_autoptr(VsConfig) c = NULL;

    g_assert_true(g_file_set_contents(path, "VIRTSNAP_REPO=/r\n", -1, NULL));
    g_assert_cmpint(g_chmod(path, 0644), ==, 0);
    c = vs_config_load(path, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(vs_config_file(c), ==, path);
    g_assert_cmpstr(vs_config_get(c, "VIRTSNAP_REPO"), ==, "/r");
    g_clear_pointer(&c, vs_config_free);

    g_assert_cmpint(g_chmod(path, 0664), ==, 0);
    g_assert_null(vs_config_load(path, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_DENIED);
    g_assert_nonnull(strstr(err->message, "chmod go-w"));
    g_clear_error(&err);

    g_assert_null(vs_config_load(missing, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(err->message, missing));
    g_clear_error(&err);

    g_assert_cmpint(g_unlink(path), ==, 0);
    g_assert_cmpint(g_rmdir(dir), ==, 0);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/config/parse", test_parse);
    g_test_add_func("/config/escaped-mapping", test_escaped_mapping);
    g_test_add_func("/config/precedence", test_precedence);
    g_test_add_func("/config/errors", test_errors);
    g_test_add_func("/config/load", test_load);
    return g_test_run();
}
