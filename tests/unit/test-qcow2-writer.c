/* The qcow2 writer against QEMU itself: every image is written twice, once by
 * the writer and once as a plain raw file with the same pwrites, and the real
 * qemu-img must find the qcow2 clean (check), equal to the raw file (compare)
 * and allocated exactly where something was written (map). The patterns cover
 * data, explicit zeros, holes, several writes into one cluster, runs across
 * clusters and across an L2 table's 512 MiB, a size that is no multiple of the
 * cluster size (nor of 512), and a virtual size above 4 GiB. */
#include "config.h"
#include "vs-qcow2.h"
#include "vs-error.h"

#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <sys/stat.h>
#include <unistd.h>

#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)
#define CLUSTER ((uint64_t)VS_QCOW2_CLUSTER_SIZE)

static char *tmpdir;

static char *
run_qemu_img(const char *args, bool must_succeed)
{
    const char *qi = g_getenv("QEMU_IMG");
    g_autofree char *cmd = g_strdup_printf("%s %s", qi ? qi : "qemu-img", args);
    g_autofree char *out = NULL, *err = NULL;
    g_autoptr(GError) error = NULL;
    int status = 0;

    g_assert_true(g_spawn_command_line_sync(cmd, &out, &err, &status, &error));
    g_assert_no_error(error);
    if (must_succeed && !g_spawn_check_wait_status(status, NULL))
        g_error("%s failed: %s%s", cmd, out, err);
    return g_steal_pointer(&out);
}

/* One image written both ways. */
typedef struct {
    char *raw_path, *qcow2_path;
    int raw_fd, qcow2_fd;
    VsQcow2Writer *w;
    uint64_t size;
    GHashTable *clusters;      /* guest clusters written (uint64 index + 1) */
} Pair;

static Pair *
pair_new(const char *name, uint64_t size)
{
    Pair *p = g_new0(Pair, 1);
    g_autoptr(GError) err = NULL;

    p->raw_path = g_strdup_printf("%s/%s.raw", tmpdir, name);
    p->qcow2_path = g_strdup_printf("%s/%s.qcow2", tmpdir, name);
    p->raw_fd = open(p->raw_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    p->qcow2_fd = open(p->qcow2_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    g_assert_cmpint(p->raw_fd, >=, 0);
    g_assert_cmpint(p->qcow2_fd, >=, 0);
    g_assert_cmpint(ftruncate(p->raw_fd, (off_t)size), ==, 0);
    p->size = size;
    p->w = vs_qcow2_writer_new(p->qcow2_fd, p->qcow2_path, size, &err);
    g_assert_no_error(err);
    g_assert_nonnull(p->w);
    p->clusters = g_hash_table_new(g_int64_hash, g_int64_equal);
    return p;
}

/* LEN bytes at OFFSET: random data from SEED, or zeros when SEED is 0. */
static void
pair_write(Pair *p, uint64_t offset, size_t len, guint32 seed)
{
    g_autofree uint8_t *buf = g_malloc0(len);
    g_autoptr(GError) err = NULL;

    if (seed) {
        GRand *r = g_rand_new_with_seed(seed);

        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)g_rand_int(r);
        g_rand_free(r);
    }
    g_assert_cmpint(pwrite(p->raw_fd, buf, len, (off_t)offset), ==, (ssize_t)len);
    g_assert_true(vs_qcow2_writer_pwrite(p->w, buf, len, offset, &err));
    g_assert_no_error(err);
    for (uint64_t c = offset / CLUSTER; len && c <= (offset + len - 1) / CLUSTER; c++) {
        gint64 *k = g_new(gint64, 1);

        *k = (gint64)c;
        g_hash_table_add(p->clusters, k);
    }
}

/* Bytes qemu-img map says are allocated (data, or zero clusters that take
 * space: ours never are). */
static uint64_t
mapped_bytes(const char *path)
{
    g_autofree char *cmd = g_strdup_printf("map --output=json -f qcow2 %s", path);
    g_autofree char *out = run_qemu_img(cmd, true);
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) err = NULL;
    JsonArray *a;
    uint64_t n = 0;

    g_assert_true(json_parser_load_from_data(parser, out, -1, &err));
    g_assert_no_error(err);
    a = json_node_get_array(json_parser_get_root(parser));
    for (guint i = 0; i < json_array_get_length(a); i++) {
        JsonObject *o = json_array_get_object_element(a, i);

        if (json_object_get_boolean_member(o, "data"))
            n += (uint64_t)json_object_get_int_member(o, "length");
    }
    return n;
}

/* Finishes the image and holds it to qemu-img: clean, the raw file's content,
 * allocated in exactly the clusters written. */
static void
pair_check_and_free(Pair *p)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *check = g_strdup_printf("check -f qcow2 %s", p->qcow2_path);
    g_autofree char *compare = g_strdup_printf("compare -q -f raw -F qcow2 %s %s", p->raw_path, p->qcow2_path);
    g_autofree char *info = g_strdup_printf("info --output=json -f qcow2 %s", p->qcow2_path);
    g_autofree char *out = NULL, *info_out = NULL;
    uint64_t expect = 0;
    struct stat st;

    g_assert_true(vs_qcow2_writer_finish(p->w, &err));
    g_assert_no_error(err);
    g_assert_cmpint(fstat(p->qcow2_fd, &st), ==, 0);
    g_assert_cmpuint((uint64_t)st.st_size, ==, vs_qcow2_writer_file_size(p->w));
    g_clear_pointer(&p->w, vs_qcow2_writer_free);
    close(p->raw_fd);
    close(p->qcow2_fd);

    out = run_qemu_img(check, true);
    g_assert_nonnull(strstr(out, "No errors were found on the image."));
    g_free(run_qemu_img(compare, true));
    info_out = run_qemu_img(info, true);
    g_assert_nonnull(strstr(info_out, "\"compat\": \"1.1\""));
    {
        g_autofree char *vs = g_strdup_printf("\"virtual-size\": %" G_GUINT64_FORMAT ",",
                                              (p->size + 511) / 512 * 512);
        g_assert_nonnull(strstr(info_out, vs));
    }
    /* Allocated: every cluster written (the last one only up to the end). */
    {
        GHashTableIter it;
        gpointer k;

        g_hash_table_iter_init(&it, p->clusters);
        while (g_hash_table_iter_next(&it, &k, NULL)) {
            uint64_t c = (uint64_t) * (gint64 *)k, end = MIN((c + 1) * CLUSTER, (p->size + 511) / 512 * 512);

            expect += end - c * CLUSTER;
        }
    }
    g_assert_cmpuint(mapped_bytes(p->qcow2_path), ==, expect);

    unlink(p->raw_path);
    unlink(p->qcow2_path);
    g_hash_table_destroy(p->clusters);
    g_free(p->raw_path);
    g_free(p->qcow2_path);
    g_free(p);
}

/* Data, zeros written as zeros, holes, two writes into one cluster with a gap
 * between, a run across clusters and one across the first L2 table's end. */
static void
test_patterns(void)
{
    Pair *p = pair_new("patterns", 1 * GiB);

    pair_write(p, 0, 4096, 1);
    pair_write(p, 8192, 4096, 2);                       /* same cluster, gap of zeros before */
    pair_write(p, CLUSTER, CLUSTER, 0);                 /* explicit zeros: allocated, reads zero */
    pair_write(p, 3 * CLUSTER + 512, 5 * CLUSTER, 3);   /* unaligned, across six clusters */
    pair_write(p, 9 * CLUSTER - 4096, 4096, 4);         /* into the run's last cluster */
    pair_write(p, 100 * MiB, 3 * MiB + 12345, 5);       /* a hole of ~100 MiB before */
    pair_write(p, 512 * MiB - 8192, 16384, 6);          /* across the first L2 table's end */
    pair_write(p, 1 * GiB - 4096, 4096, 7);             /* the last bytes */
    pair_check_and_free(p);
}

/* Sizes that are no multiple of the cluster size: one of 512 and one not even
 * that (qemu-img rounds up to 512, so does the writer). */
static void
test_odd_sizes(void)
{
    Pair *p = pair_new("odd512", 3 * MiB + 5 * 512);

    pair_write(p, 0, 100, 8);
    pair_write(p, 3 * MiB - 100, 100 + 5 * 512, 9);     /* to the very end */
    pair_check_and_free(p);

    p = pair_new("odd", 2 * MiB + 1234);
    pair_write(p, 2 * MiB, 1234, 10);
    pair_check_and_free(p);

    p = pair_new("tiny", 1000);
    pair_write(p, 0, 1000, 11);
    pair_check_and_free(p);
}

/* Above 4 GiB: 32-bit offsets would wrap; several L2 tables, most of the L1
 * empty; the file stays small. */
static void
test_large(void)
{
    uint64_t size = 6 * GiB + CLUSTER + 512;
    Pair *p = pair_new("large", size);

    pair_write(p, 4096, 4096, 12);
    pair_write(p, 4 * GiB - 4096, 8192, 13);            /* across 4 GiB */
    pair_write(p, 5 * GiB + 3 * CLUSTER, 2 * CLUSTER, 14);
    pair_write(p, size - 1024, 1024, 15);
    pair_check_and_free(p);
}

/* An image with nothing written at all: every byte reads as zero. */
static void
test_empty(void)
{
    pair_check_and_free(pair_new("empty", 5 * GiB));
}

static void
test_refusals(void)
{
    g_autofree char *path = g_build_filename(tmpdir, "refuse.qcow2", NULL);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    g_autoptr(VsQcow2Writer) w = NULL;
    g_autoptr(GError) err = NULL;
    char buf[4096] = { 1 };

    g_assert_cmpint(fd, >=, 0);
    /* Not empty: old bytes would show through. */
    g_assert_cmpint(write(fd, buf, 1), ==, 1);
    g_assert_null(vs_qcow2_writer_new(fd, path, MiB, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_assert_true(g_str_has_prefix(err->message, "qcow2 writer: "));
    g_clear_error(&err);
    g_assert_cmpint(ftruncate(fd, 0), ==, 0);

    w = vs_qcow2_writer_new(fd, path, MiB, &err);
    g_assert_no_error(err);
    g_assert_true(vs_qcow2_writer_pwrite(w, buf, sizeof(buf), 2 * CLUSTER, &err));
    /* Backwards, into an earlier cluster. */
    g_assert_false(vs_qcow2_writer_pwrite(w, buf, sizeof(buf), CLUSTER, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_clear_error(&err);
    /* Beyond the end. */
    g_assert_false(vs_qcow2_writer_pwrite(w, buf, sizeof(buf), MiB - 512, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_clear_error(&err);
    /* Later in the same cluster is fine. */
    g_assert_true(vs_qcow2_writer_pwrite(w, buf, 512, 2 * CLUSTER + 8192, &err));
    g_assert_true(vs_qcow2_writer_finish(w, &err));
    g_assert_false(vs_qcow2_writer_pwrite(w, buf, 512, 4 * CLUSTER, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_FAILED);
    close(fd);
    unlink(path);
}

int
main(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    int rc;

    g_test_init(&argc, &argv, NULL);
    tmpdir = g_dir_make_tmp("vs-qcow2-XXXXXX", &err);
    g_assert_no_error(err);
    g_test_add_func("/qcow2-writer/patterns", test_patterns);
    g_test_add_func("/qcow2-writer/odd-sizes", test_odd_sizes);
    g_test_add_func("/qcow2-writer/large", test_large);
    g_test_add_func("/qcow2-writer/empty", test_empty);
    g_test_add_func("/qcow2-writer/refusals", test_refusals);
    rc = g_test_run();
    rmdir(tmpdir);
    g_free(tmpdir);
    return rc;
}
