/* Image header probing and NFS path splitting: chains built by the real
 * qemu-img (relative and absolute backing names, with and without a backing
 * format), a raw file, damaged headers written over a real qcow2, and the
 * longest-export rule discovery relies on. */
#include "config.h"
#include "vs-probe.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

static char *tmpdir;

static void
run_qemu_img(const char *args)
{
    const char *qi = g_getenv("QEMU_IMG");
    g_autofree char *cmd = g_strdup_printf("%s %s", qi ? qi : "qemu-img", args);
    g_autofree char *out = NULL, *err = NULL;
    int status = 0;
    g_autoptr(GError) error = NULL;

    g_assert_true(g_spawn_command_line_sync(cmd, &out, &err, &status, &error));
    g_assert_no_error(error);
    if (!g_spawn_check_wait_status(status, NULL))
        g_error("%s failed: %s", cmd, err);
}

static char *
tmp(const char *name)
{
    return g_build_filename(tmpdir, name, NULL);
}

static void
test_raw(void)
{
    g_autofree char *p = tmp("raw.img");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsImageInfo) info = NULL;
    g_autofree char *cmd = g_strdup_printf("create -q -f raw %s 3M", p);

    run_qemu_img(cmd);
    info = vs_image_probe(p, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(info->format, ==, "raw");
    g_assert_cmpuint(info->virtual_size, ==, 3 * 1024 * 1024);
    g_assert_null(info->backing_file);
}

static void
test_chain(void)
{
    g_autofree char *base = tmp("base.qcow2"), *mid = tmp("mid.qcow2"), *top = tmp("top.qcow2");
    g_autofree char *c1 = g_strdup_printf("create -q -f qcow2 %s 16M", base);
    /* relative backing name, with a backing format */
    g_autofree char *c2 = g_strdup_printf("create -q -f qcow2 -b base.qcow2 -F qcow2 %s", mid);
    /* absolute backing name, qcow2 v2 (compat=0.10): extensions right after 72 bytes */
    g_autofree char *c3 = g_strdup_printf("create -q -f qcow2 -o compat=0.10 -b %s -F qcow2 %s", mid, top);
    g_autoptr(GError) err = NULL;
    g_autoptr(VsImageInfo) t = NULL, m = NULL, b = NULL;
    g_autofree char *resolved = NULL;

    run_qemu_img(c1);
    run_qemu_img(c2);
    run_qemu_img(c3);

    t = vs_image_probe(top, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(t->format, ==, "qcow2");
    g_assert_cmpuint(t->virtual_size, ==, 16 * 1024 * 1024);
    g_assert_cmpstr(t->backing_file, ==, mid);
    g_assert_cmpstr(t->backing_format, ==, "qcow2");

    m = vs_image_probe(mid, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(m->backing_file, ==, "base.qcow2");
    resolved = vs_image_resolve_backing(mid, m->backing_file);
    g_assert_cmpstr(resolved, ==, base);

    b = vs_image_probe(base, &err);
    g_assert_no_error(err);
    g_assert_null(b->backing_file);
    g_assert_null(b->backing_format);
}

static void
test_missing(void)
{
    g_autofree char *p = tmp("does-not-exist.qcow2");
    g_autoptr(GError) err = NULL;
    VsImageInfo *info = vs_image_probe(p, &err);

    g_assert_null(info);
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(err->message, p));
}

/* A header whose backing-file offset points past what was read must be
 * refused with a message, not followed. */
static void
test_damaged(void)
{
    g_autofree char *p = tmp("damaged.qcow2");
    g_autofree char *c = g_strdup_printf("create -q -f qcow2 -b /nonexistent -F raw -u %s 1M", p);
    g_autoptr(GError) err = NULL;
    VsImageInfo *info;
    unsigned char off[8] = { 0, 0, 0, 0, 0x7f, 0, 0, 0 };   /* 2 GiB */
    int fd;

    run_qemu_img(c);
    fd = open(p, O_WRONLY);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pwrite(fd, off, sizeof off, 8), ==, 8);
    close(fd);
    info = vs_image_probe(p, &err);
    g_assert_null(info);
    g_assert_error(err, VS_ERROR, VS_ERROR_IO);
    g_assert_nonnull(strstr(err->message, "damaged"));
}

static void
test_nfs_split(void)
{
    const char *exports[] = { "/", "/export", "/export/vm", "/exportx", NULL };
    g_autofree char *e1 = NULL, *p1 = NULL, *e2 = NULL, *p2 = NULL, *e3 = NULL, *p3 = NULL;

    g_assert_true(vs_nfs_split_path(exports, "/export/vm/a/d.qcow2", &e1, &p1));
    g_assert_cmpstr(e1, ==, "/export/vm");
    g_assert_cmpstr(p1, ==, "/a/d.qcow2");
    /* "/exportx" must not match "/export" as a prefix, nor the other way round */
    g_assert_true(vs_nfs_split_path(exports, "/exportxy/d.raw", &e2, &p2));
    g_assert_cmpstr(e2, ==, "/");
    g_assert_cmpstr(p2, ==, "/exportxy/d.raw");
    g_assert_true(vs_nfs_split_path(exports + 1, "/export/d.raw", &e3, &p3));
    g_assert_cmpstr(e3, ==, "/export");
    g_assert_cmpstr(p3, ==, "/d.raw");
    {
        const char *only[] = { "/srv", NULL };
        char *e = NULL, *pp = NULL;
        g_assert_false(vs_nfs_split_path(only, "/export/d.raw", &e, &pp));
        g_assert_null(e);
    }
}

int
main(int argc, char **argv)
{
    int rc;
    g_autoptr(GError) err = NULL;

    g_test_init(&argc, &argv, NULL);
    tmpdir = g_dir_make_tmp("vs-probe-XXXXXX", &err);
    g_assert_no_error(err);
    g_test_add_func("/probe/raw", test_raw);
    g_test_add_func("/probe/chain", test_chain);
    g_test_add_func("/probe/missing", test_missing);
    g_test_add_func("/probe/damaged", test_damaged);
    g_test_add_func("/nfs/split", test_nfs_split);
    rc = g_test_run();
    {
        g_autofree char *cmd = g_strdup_printf("rm -rf %s", tmpdir);
        (void)!system(cmd);
    }
    g_free(tmpdir);
    return rc;
}
