/* The snapshot configuration file (vs-snapshot.h) as an administrator writes
 * it: a pool's group overriding [defaults], the hook a pool's disks get and
 * the one a recorded snapshot is reached through again, and the refusals that
 * keep a typo or a file others can write from deciding what runs as root:
 * an unknown key or group, a relative hook path, a bad number, a world-
 * writable file, a named file that is missing. Real files, real hooks (sh). */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "vs-snapshot.h"

static char *tmpdir;

static char *
write_conf(const char *name, const char *text, int mode)
{
    char *path = g_build_filename(tmpdir, name, NULL);

    g_assert_true(g_file_set_contents(path, text, -1, NULL));
    g_assert_cmpint(chmod(path, mode), ==, 0);
    return path;
}

static char *hook_path;

static void
test_pools(void)
{
    g_autofree char *text = g_strdup_printf(
        "[defaults]\nprovider=auto\nsnapshot-dir=/srv/vm\n\n"
        "[pool:array]\nhook=%s\nhook-config=/etc/virtsnap/array.conf\ntimeout=7\nretries=2\nretry-delay=1\n\n"
        "[pool:scratch]\nprovider=none\n", hook_path);
    g_autofree char *file = write_conf("pools.conf", text, 0600);
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSnapConfig) c = vs_snap_config_load(file, &err);
    VsSnapLocation on_array = { .kind = VS_SNAP_LOC_ISCSI, .disk = "vm1/vda", .pool = "array",
                                .iscsi_iqn = "iqn.x:t", .iscsi_lun = 1 };
    VsSnapLocation plain = { .kind = VS_SNAP_LOC_FILE, .disk = "vm1/vdb", .path = "/var/lib/x/a.raw" };
    VsSnapLocation scratch = { .kind = VS_SNAP_LOC_FILE, .disk = "vm1/vdc", .pool = "scratch", .path = "/s/a" };
    VsSnapSettings s;
    g_autofree char *dir = NULL;
    g_autoptr(VsSnapProvider) p = NULL;

    g_assert_no_error(err);
    vs_snap_config_for(c, &on_array, &s);
    g_assert_nonnull(s.hook);
    g_assert_cmpstr(s.hook->path, ==, hook_path);
    g_assert_cmpstr(s.hook->config_file, ==, "/etc/virtsnap/array.conf");
    g_assert_cmpuint(s.hook->timeout_ms, ==, 7000);
    g_assert_cmpuint(s.hook->retries, ==, 2);
    g_assert_cmpuint(s.hook->retry_delay_ms, ==, 1000);
    g_assert_cmpstr(s.snapshot_dir, ==, "/srv/vm");       /* inherited from [defaults] */
    vs_snap_config_for(c, &plain, &s);
    g_assert_null(s.hook);
    g_assert_cmpstr(s.provider, ==, "auto");
    /* auto with a hook configured: the hook */
    p = vs_snap_config_choose(c, &on_array, "auto", &dir, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(vs_snap_provider_name(p), ==, "hook");
    g_assert_null(dir);
    g_clear_pointer(&p, vs_snap_provider_free);
    /* none: refused, naming the file */
    p = vs_snap_config_choose(c, &scratch, NULL, &dir, &err);
    g_assert_null(p);
    g_assert_error(err, VS_ERROR, VS_ERROR_UNSUPPORTED);
    g_assert_nonnull(strstr(err->message, "vm1/vdc"));
    g_assert_nonnull(strstr(err->message, "provider=none"));
    g_clear_error(&err);
    /* rbd for a file disk, hook where none is configured: errors naming the disk */
    p = vs_snap_config_choose(c, &plain, "rbd", &dir, &err);
    g_assert_null(p);
    g_assert_error(err, VS_ERROR, VS_ERROR_UNSUPPORTED);
    g_assert_true(g_str_has_prefix(err->message, "snapshot: vm1/vdb: rbd asked for a file disk"));
    g_clear_error(&err);
    p = vs_snap_config_choose(c, &plain, "hook", &dir, &err);
    g_assert_null(p);
    g_assert_nonnull(strstr(err->message, "no hook is configured for its disks"));
    g_assert_nonnull(strstr(err->message, file));
    g_clear_error(&err);

    /* a recorded snapshot: its hook comes from its pool's group */
    {
        g_autoptr(VsManifestSnapshot) rec = vs_manifest_snapshot_new();
        VsSnapLocation loc;

        rec->provider = g_strdup("hook");
        rec->handle = g_strdup("array-snap-1");
        rec->kind = g_strdup("iscsi");
        rec->pool = g_strdup("array");
        rec->iscsi_lun = 3;
        p = vs_snap_provider_for_record(c, rec, "vm1/vda", &loc, &err);
        g_assert_no_error(err);
        g_assert_cmpstr(vs_snap_provider_name(p), ==, "hook");
        g_assert_cmpint(loc.kind, ==, VS_SNAP_LOC_ISCSI);
        g_assert_cmpint(loc.iscsi_lun, ==, 3);
        g_clear_pointer(&p, vs_snap_provider_free);
        g_free(rec->pool);
        rec->pool = g_strdup("elsewhere");
        p = vs_snap_provider_for_record(c, rec, "vm1/vda", &loc, &err);
        g_assert_null(p);
        g_assert_nonnull(strstr(err->message, "configures no hook for pool elsewhere"));
    }
}

static void
test_refusals(void)
{
    static const struct { const char *text; const char *expect; } cases[] = {
        { "[defaults]\nhook=relative/hook\n", "[defaults] hook: not an absolute path" },
        { "[defaults]\nhooks=/bin/true\n", "[defaults] hooks: unknown key" },
        { "[pool:a]\ntimeout=ten\n", "[pool:a] timeout: \"ten\" is not a whole number" },
        { "[pool:a]\nprovider=zfs\n", "[pool:a] provider: not auto, reflink" },
        { "[pool:a]\nprovider=hook\n", "[pool:a] provider: hook, but no hook= names" },
        { "[pools:a]\n", "[pools:a]: unknown group" },
        { "[defaults\n", "snapshot config: " },
    };

    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *name = g_strdup_printf("bad%u.conf", i);
        g_autofree char *file = write_conf(name, cases[i].text, 0600);
        g_autoptr(GError) err = NULL;
        g_autoptr(VsSnapConfig) c = vs_snap_config_load(file, &err);

        g_assert_null(c);
        g_test_message("%s", err->message);
        g_assert_true(g_str_has_prefix(err->message, "snapshot config: "));
        g_assert_nonnull(strstr(err->message, file));
        g_assert_nonnull(strstr(err->message, cases[i].expect));
    }
    {
        g_autofree char *file = write_conf("open.conf", "[defaults]\n", 0666);
        g_autoptr(GError) err = NULL;
        g_autoptr(VsSnapConfig) c = NULL;

        chmod(file, 0666);
        c = vs_snap_config_load(file, &err);
        g_assert_null(c);
        g_assert_error(err, VS_ERROR, VS_ERROR_DENIED);
        g_assert_nonnull(strstr(err->message, "chmod go-w"));
    }
    {
        g_autofree char *file = g_build_filename(tmpdir, "missing.conf", NULL);
        g_autoptr(GError) err = NULL;
        g_autoptr(VsSnapConfig) c = vs_snap_config_load(file, &err);

        g_assert_null(c);
        g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
    }
}

/* A recorded reflink snapshot's directory is the repository's word: a
 * provider for it opens what exists and creates nothing. */
static void
test_record_creates_nothing(void)
{
    g_autoptr(VsManifestSnapshot) rec = vs_manifest_snapshot_new();
    g_autofree char *base = g_build_filename(tmpdir, "victim", NULL);
    g_autofree char *made = g_build_filename(base, "virtsnap-snapshots", NULL);
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSnapProvider) p = NULL;
    VsSnapLocation loc;

    g_assert_cmpint(g_mkdir_with_parents(base, 0755), ==, 0);
    rec->provider = g_strdup("reflink");
    rec->handle = g_strdup("virtsnap-x-vda");
    rec->kind = g_strdup("file");
    rec->path = g_build_filename(base, "disk.img", NULL);
    rec->snapshot_dir = g_strdup(base);
    p = vs_snap_provider_for_record(NULL, rec, "vm1/vda", &loc, &err);
    g_assert_null(p);
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
    g_assert_false(g_file_test(made, G_FILE_TEST_EXISTS));
}

int
main(int argc, char **argv)
{
    int rc;

    g_test_init(&argc, &argv, NULL);
    umask(022);
    tmpdir = g_dir_make_tmp("vs-snapconf-XXXXXX", NULL);
    hook_path = g_build_filename(tmpdir, "hook", NULL);
    g_assert_true(g_file_set_contents(hook_path, "#!/bin/sh\nexit 3\n", -1, NULL));
    chmod(hook_path, 0755);
    g_test_add_func("/snapshot-config/pools", test_pools);
    g_test_add_func("/snapshot-config/refusals", test_refusals);
    g_test_add_func("/snapshot-config/record-creates-nothing", test_record_creates_nothing);
    rc = g_test_run();
    {
        g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmpdir);
        (void)!system(cmd);
    }
    return rc;
}
