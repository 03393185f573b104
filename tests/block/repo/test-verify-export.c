/* verify and export against real images: backups of raw files made the way the
 * copy engine makes them, then damaged the way disks damage them (a flipped
 * byte, a lost chunk, a truncated manifest) and checked to be reported per
 * backup, domain, disk and offset; exports compared byte for byte (raw), with
 * `qemu-img compare` (qcow2), and for sparseness by allocated blocks. Last, the
 * docs' "reading a disk without virtsnap" script is run for real. */
#include "repo-test-util.h"

#include <zstd.h>

#define CS (64 * 1024)
#define NCHUNKS 40
#define SIZE ((uint64_t)NCHUNKS * CS + 5000)
/* chunks 0-3, 8, 17, 39 (and chunk 40, the short last one, via bit 40) */
#define MASK ((1ull << 0) | (1ull << 1) | (1ull << 2) | (1ull << 3) | (1ull << 8) | (1ull << 17) | \
              (1ull << 39) | (1ull << 40))

typedef struct {
    char *top;
    char *repo_dir;
    char *img_a;       /* web1 vda */
    char *img_b;       /* web1 vdb */
    char *id1, *id2;
    VsRepo *repo;
} Fixture;

static char *
backup(Fixture *f, bool with_vdb)
{
    g_autoptr(VsManifest) m = vs_manifest_new();
    VsManifestDomain *d = vs_manifest_add_domain(m, "web1");
    g_autoptr(GError) err = NULL;

    d->uuid = g_strdup("2f8a9d3e-4b1c-4e6f-9a7b-1c2d3e4f5a6b");
    d->consistency = g_strdup("quiesced");
    d->freeze_ms = 15;
    d->xml = g_strdup("<domain type='kvm'><name>web1</name></domain>");
    tu_backup_file(f->repo, vs_manifest_domain_add_disk(d, "vda"), f->img_a);
    if (with_vdb)
        tu_backup_file(f->repo, vs_manifest_domain_add_disk(d, "vdb"), f->img_b);
    g_assert_true(vs_repo_commit_manifest(f->repo, m, &err));
    g_assert_no_error(err);
    return g_strdup(m->id);
}

static void
fixture_setup(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;

    f->top = tu_tmpdir();
    f->repo_dir = g_build_filename(f->top, "repo", NULL);
    f->img_a = g_build_filename(f->top, "a.raw", NULL);
    f->img_b = g_build_filename(f->top, "b.raw", NULL);
    f->repo = vs_repo_open(f->repo_dir, true, true, CS, &err);
    g_assert_no_error(err);
    tu_make_image(f->img_a, SIZE, CS, MASK, 100);
    /* vdb: different data, except chunk 8 = vda's chunk 8 (shared) */
    tu_make_image(f->img_b, 16 * CS, CS, (1ull << 5) | (1ull << 8), 500);
    {
        g_autofree uint8_t *buf = g_malloc(CS);
        int fa = open(f->img_a, O_RDONLY), fb = open(f->img_b, O_WRONLY);

        g_assert_cmpint(pread(fa, buf, CS, 8 * CS), ==, CS);
        g_assert_cmpint(pwrite(fb, buf, CS, 8 * CS), ==, CS);
        close(fa);
        close(fb);
    }
    f->id1 = backup(f, true);
    /* the second backup: vda with one chunk changed */
    {
        g_autofree uint8_t *buf = g_malloc(CS);
        int fa = open(f->img_a, O_WRONLY);

        tu_fill_data(buf, CS, 999);
        g_assert_cmpint(pwrite(fa, buf, CS, 2 * CS), ==, CS);
        close(fa);
    }
    f->id2 = backup(f, false);
}

static void
fixture_teardown(Fixture *f, gconstpointer data)
{
    vs_repo_close(f->repo);
    tu_rm_rf(f->top);
    g_free(f->top);
    g_free(f->repo_dir);
    g_free(f->img_a);
    g_free(f->img_b);
    g_free(f->id1);
    g_free(f->id2);
}

static char *
chunk_file(Fixture *f, const char *id, const char *disk, uint64_t offset)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VsManifest) m = vs_repo_load_manifest(f->repo, id, &err);
    VsManifestDisk *k = vs_manifest_find_disk(vs_manifest_find_domain(m, "web1"), disk);
    char hex[VS_DIGEST_HEX_LEN];

    g_assert_no_error(err);
    for (guint i = 0; i < k->chunks->len; i++) {
        VsChunkRef *r = &g_array_index(k->chunks, VsChunkRef, i);

        if (r->offset == offset) {
            vs_digest_to_hex(&r->digest, hex);
            return g_strdup_printf("%s/chunks/%.2s/%s", f->repo_dir, hex, hex);
        }
    }
    g_assert_not_reached();
}

/* ------------------------------------------------------------------------- */

static void
test_verify_clean(Fixture *f, gconstpointer data)
{
    g_autoptr(GPtrArray) problems = NULL;
    g_autoptr(GError) err = NULL;
    uint64_t checked = 0;

    /* vda: 8 data chunks; vdb: 2, one shared with vda; backup 2: one new */
    g_assert_true(vs_repo_verify(f->repo, NULL, &problems, &checked, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(problems->len, ==, 0);
    g_assert_cmpuint(checked, ==, 8 + 1 + 1);
    g_assert_true(vs_repo_verify(f->repo, f->id2, &problems, &checked, &err));
    g_assert_cmpuint(checked, ==, 8);
    g_assert_true(vs_repo_verify(f->repo, "latest", &problems, &checked, &err));
    g_assert_cmpuint(checked, ==, 8);
    g_assert_cmpuint(problems->len, ==, 0);
    g_assert_false(vs_repo_verify(f->repo, "1999", &problems, &checked, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
}

static void
test_verify_damage(Fixture *f, gconstpointer data)
{
    g_autofree char *shared = chunk_file(f, f->id1, "vdb", 8 * CS);   /* = vda's chunk 8 */
    g_autofree char *lost = chunk_file(f, f->id1, "vdb", 5 * CS);
    g_autofree char *text = NULL;
    g_autoptr(GPtrArray) problems = NULL;
    g_autoptr(GError) err = NULL;
    VsVerifyProblem *p;
    uint64_t checked = 0;
    gsize len = 0;

    g_assert_true(g_file_get_contents(shared, &text, &len, NULL));
    text[len / 2] ^= 1;
    tu_write_file(shared, text, len);
    g_assert_cmpint(unlink(lost), ==, 0);

    g_assert_true(vs_repo_verify(f->repo, NULL, &problems, &checked, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(checked, ==, 10);
    /* backup 1: vda@8 corrupt, vdb@5 missing, vdb@8 corrupt; backup 2: vda@8 corrupt */
    g_assert_cmpuint(problems->len, ==, 4);
    p = g_ptr_array_index(problems, 0);
    g_assert_cmpstr(p->backup_id, ==, f->id1);
    g_assert_cmpstr(p->domain, ==, "web1");
    g_assert_cmpstr(p->disk, ==, "vda");
    g_assert_cmpuint(p->offset, ==, 8 * CS);
    g_assert_true(g_str_has_prefix(p->problem, "corrupt: "));
    g_assert_nonnull(strstr(shared, p->digest_hex));
    p = g_ptr_array_index(problems, 1);
    g_assert_cmpstr(p->disk, ==, "vdb");
    g_assert_cmpuint(p->offset, ==, 5 * CS);
    g_assert_cmpstr(p->problem, ==, "missing");
    g_assert_nonnull(strstr(lost, p->digest_hex));
    p = g_ptr_array_index(problems, 2);
    g_assert_cmpstr(p->disk, ==, "vdb");
    g_assert_cmpuint(p->offset, ==, 8 * CS);
    g_assert_true(g_str_has_prefix(p->problem, "corrupt: "));
    p = g_ptr_array_index(problems, 3);
    g_assert_cmpstr(p->backup_id, ==, f->id2);
    g_assert_cmpstr(p->disk, ==, "vda");
    g_assert_cmpuint(p->offset, ==, 8 * CS);

    /* a truncated chunk, and a damaged manifest */
    g_clear_pointer(&problems, g_ptr_array_unref);
    {
        g_autofree char *other = chunk_file(f, f->id2, "vda", 0);
        g_autofree char *mfile = g_strdup_printf("%s/backups/%s.json", f->repo_dir, f->id1);
        g_autofree char *mtext = NULL, *otext = NULL;

        g_assert_true(g_file_get_contents(other, &otext, &len, NULL));
        tu_write_file(other, otext, len / 2);
        g_assert_true(g_file_get_contents(mfile, &mtext, &len, NULL));
        tu_write_file(mfile, mtext, len - 10);
    }
    g_assert_true(vs_repo_verify(f->repo, NULL, &problems, &checked, &err));
    g_assert_cmpuint(problems->len, ==, 3);
    /* Problems come in backup order; an unreadable manifest's backup sorts
     * last among the backups of its second (its start time is unknown), so
     * where backup 1's problem stands depends on whether the two backups
     * were made within one second. */
    p = g_ptr_array_index(problems, 0);
    if (g_strcmp0(p->backup_id, f->id1) != 0)
        g_ptr_array_insert(problems, 0, g_ptr_array_steal_index(problems, 2));
    p = g_ptr_array_index(problems, 0);
    g_assert_cmpstr(p->backup_id, ==, f->id1);
    g_assert_null(p->domain);
    g_assert_true(g_str_has_prefix(p->problem, "corrupt manifest: manifest: "));
    p = g_ptr_array_index(problems, 1);
    g_assert_cmpstr(p->backup_id, ==, f->id2);
    g_assert_cmpuint(p->offset, ==, 0);
    g_assert_true(g_str_has_prefix(p->problem, "corrupt: "));
    p = g_ptr_array_index(problems, 2);
    g_assert_cmpstr(p->backup_id, ==, f->id2);
    g_assert_cmpuint(p->offset, ==, 8 * CS);
}

static uint64_t
allocated(const char *path)
{
    struct stat st;

    g_assert_cmpint(stat(path, &st), ==, 0);
    return (uint64_t)st.st_blocks * 512;
}

static bool
have(const char *program)
{
    g_autofree char *p = g_find_program_in_path(program);

    return p != NULL;
}

static VsManifest *
load(Fixture *f, const char *id)
{
    g_autoptr(GError) err = NULL;
    VsManifest *m = vs_repo_load_manifest(f->repo, id, &err);

    g_assert_no_error(err);
    return m;
}

static void
test_export_raw(Fixture *f, gconstpointer data)
{
    g_autofree char *outdir = g_build_filename(f->top, "out", NULL);
    g_autofree char *out = g_build_filename(outdir, "vda.raw", NULL);
    g_autofree char *expect = NULL;
    g_autoptr(VsManifest) m = load(f, f->id2);
    g_autoptr(GError) err = NULL;
    uint64_t data_bytes = 8 * CS;
    struct stat st;

    g_assert_cmpint(mkdir(outdir, 0755), ==, 0);
    /* NULL: the disk's own format, raw */
    g_assert_true(vs_repo_export_disk(f->repo, m, "web1", "vda", out, NULL, &err));
    g_assert_no_error(err);
    g_assert_cmpint(stat(out, &st), ==, 0);
    g_assert_cmpuint((uint64_t)st.st_size, ==, SIZE);
    g_assert_cmpint(st.st_mode & 0777, ==, 0600);
    g_assert_true(tu_files_equal(out, f->img_a));
    /* sparse: no more than the data chunks, less their zero 4 KiB blocks */
    g_test_message("allocated %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT, allocated(out), SIZE);
    g_assert_cmpuint(allocated(out), <=, data_bytes - 7 * 4096 + 64 * 1024);
    g_assert_cmpuint(tu_count_files(outdir), ==, 1);

    /* OUT exists */
    g_assert_false(vs_repo_export_disk(f->repo, m, "web1", "vda", out, "raw", &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    expect = g_strdup_printf("export: %s exists: remove it or choose another name", out);
    g_assert_cmpstr(err->message, ==, expect);
    g_clear_error(&err);
    /* formats, domains, disks that are not there */
    g_assert_false(vs_repo_export_disk(f->repo, m, "web1", "vda", "/nonexistent/x.vmdk", "vmdk", &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_UNSUPPORTED);
    g_assert_nonnull(strstr(err->message, "(supported: raw, qcow2)"));
    g_clear_error(&err);
    g_assert_false(vs_repo_export_disk(f->repo, m, "db1", "vda", "/nonexistent/x", NULL, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
    g_clear_error(&err);
    g_assert_false(vs_repo_export_disk(f->repo, m, "web1", "vdb", "/nonexistent/x", NULL, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(err->message, "no disk \"vdb\""));
    g_clear_error(&err);
    /* the first backup's vdb, from its own manifest */
    g_clear_pointer(&m, vs_manifest_free);
    m = load(f, f->id1);
    g_clear_pointer(&out, g_free);
    out = g_build_filename(outdir, "vdb.raw", NULL);
    g_assert_true(vs_repo_export_disk(f->repo, m, "web1", "vdb", out, "raw", &err));
    g_assert_no_error(err);
    g_assert_true(tu_files_equal(out, f->img_b));
}

static void
test_export_qcow2(Fixture *f, gconstpointer data)
{
    g_autofree char *outdir = g_build_filename(f->top, "out", NULL);
    g_autofree char *out = g_build_filename(outdir, "vda.qcow2", NULL);
    g_autofree char *out2 = g_build_filename(outdir, "vda-default.qcow2", NULL);
    g_autofree char *qerr = NULL, *info = NULL;
    g_autoptr(VsManifest) m = load(f, f->id2);
    g_autoptr(GError) err = NULL;
    VsManifestDisk *k;

    if (!have("qemu-img") || !have("qemu-nbd")) {
        g_test_skip("qemu-img or qemu-nbd not installed");
        return;
    }
    g_assert_cmpint(mkdir(outdir, 0755), ==, 0);
    g_assert_true(vs_repo_export_disk(f->repo, m, "web1", "vda", out, "qcow2", &err));
    g_assert_no_error(err);
    {
        const char *cmp[] = { "qemu-img", "compare", "-f", "raw", "-F", "qcow2", f->img_a, out, NULL };
        const char *chk[] = { "qemu-img", "check", "-f", "qcow2", out, NULL };
        const char *inf[] = { "qemu-img", "info", "--output=json", out, NULL };
        g_autofree char *cerr = NULL;

        g_assert_cmpint(tu_run(cmp, &qerr), ==, 0);
        g_assert_cmpint(tu_run(chk, &cerr), ==, 0);
        g_assert_true(g_spawn_sync(NULL, (char **)inf, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &info, NULL,
                                   NULL, NULL));
        g_assert_nonnull(strstr(info, "\"format\": \"qcow2\""));
        /* qcow2 sizes are whole sectors: QEMU rounds 2626440 up to 2626560 */
        g_autofree char *vsize = g_strdup_printf("\"virtual-size\": %" G_GUINT64_FORMAT ",",
                                                 (SIZE + 511) / 512 * 512);

        g_assert_nonnull(strstr(info, vsize));
    }
    g_test_message("qcow2 allocated %" G_GUINT64_FORMAT, allocated(out));
    g_assert_cmpuint(allocated(out), <, 8 * CS + 1024 * 1024);
    g_assert_cmpuint(tu_count_files(outdir), ==, 1);

    /* a disk whose own format is qcow2 exports as qcow2 by default */
    k = vs_manifest_find_disk(vs_manifest_find_domain(m, "web1"), "vda");
    g_free(k->format);
    k->format = g_strdup("qcow2");
    g_assert_true(vs_repo_export_disk(f->repo, m, "web1", "vda", out2, NULL, &err));
    g_assert_no_error(err);
    {
        const char *inf[] = { "qemu-img", "info", "--output=json", out2, NULL };
        g_autofree char *info2 = NULL;

        g_assert_true(g_spawn_sync(NULL, (char **)inf, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &info2, NULL,
                                   NULL, NULL));
        g_assert_nonnull(strstr(info2, "\"format\": \"qcow2\""));
    }
}

static void
test_export_damaged(Fixture *f, gconstpointer data)
{
    g_autofree char *outdir = g_build_filename(f->top, "out", NULL);
    g_autofree char *lost = chunk_file(f, f->id2, "vda", 17 * CS);
    g_autoptr(VsManifest) m = load(f, f->id2);
    g_autoptr(GError) err = NULL;

    g_assert_cmpint(mkdir(outdir, 0755), ==, 0);
    tu_write_file(lost, "nope", 4);
    for (int q = 0; q < 2; q++) {
        g_autofree char *out = g_build_filename(outdir, q ? "vda.qcow2" : "vda.raw", NULL);

        if (q && !have("qemu-nbd"))
            break;
        g_assert_false(vs_repo_export_disk(f->repo, m, "web1", "vda", out, q ? "qcow2" : "raw", &err));
        g_assert_error(err, VS_ERROR, VS_ERROR_IO);
        g_assert_true(g_str_has_prefix(err->message, "export: "));
        g_assert_nonnull(strstr(err->message, "is corrupt"));
        g_assert_nonnull(strstr(err->message, "offset 1114112"));
        g_clear_error(&err);
        g_assert_false(g_file_test(out, G_FILE_TEST_EXISTS));
        g_assert_cmpuint(tu_count_files(outdir), ==, 0);
    }
}

/* Export checks each chunk by its zstd frame's XXH64 and size, or with
 * verify_hash by SHA-256 too: a flipped byte fails both ways; a chunk file
 * replaced by another valid chunk only the hash finds; a frame without a
 * checksum (not one virtsnap writes) is hashed anyway. */
static void
test_export_check_modes(Fixture *f, gconstpointer data)
{
    g_autofree char *out = g_build_filename(f->top, "vda.raw", NULL);
    g_autofree char *c8 = chunk_file(f, f->id2, "vda", 8 * CS);
    g_autofree char *c17 = chunk_file(f, f->id2, "vda", 17 * CS);
    g_autofree char *orig = NULL, *other = NULL;
    g_autoptr(VsManifest) m = load(f, f->id2);
    g_autoptr(GError) err = NULL;
    gsize olen = 0, xlen = 0;

    g_assert_true(g_file_get_contents(c17, &orig, &olen, NULL));
    g_assert_true(g_file_get_contents(c8, &other, &xlen, NULL));
    for (int hash = 0; hash < 2; hash++) {
        VsExportControl ctl = { .verify_hash = hash };
        g_autofree char *flipped = g_memdup2(orig, olen);

        /* a byte flipped in the compressed data */
        flipped[olen / 2] ^= 0x5a;
        tu_write_file(c17, flipped, olen);
        g_assert_false(vs_repo_export_disk_ctl(f->repo, m, "web1", "vda", out, "raw", &ctl, &err));
        g_assert_nonnull(strstr(err->message, "is corrupt"));
        g_assert_nonnull(ctl.bad_chunk);
        g_clear_pointer(&ctl.bad_chunk, vs_verify_problem_free);
        g_clear_error(&err);
        g_assert_false(g_file_test(out, G_FILE_TEST_EXISTS));
    }
    /* another chunk's file in its place: a valid frame, the wrong data */
    tu_write_file(c17, other, xlen);
    {
        VsExportControl ctl = { .verify_hash = true };
        g_assert_false(vs_repo_export_disk_ctl(f->repo, m, "web1", "vda", out, "raw", &ctl, &err));
        g_assert_nonnull(strstr(err->message, "content has SHA-256"));
        g_clear_pointer(&ctl.bad_chunk, vs_verify_problem_free);
        g_clear_error(&err);
    }
    /* a frame without a content checksum holding other data: hashed, found */
    {
        size_t zcap = ZSTD_compressBound(CS);
        g_autofree char *plain = g_malloc0(CS), *z = g_malloc(zcap);
        size_t zlen;

        memset(plain, 0x33, CS);
        zlen = ZSTD_compress(z, zcap, plain, CS, 1);   /* no checksum flag */
        g_assert_false(ZSTD_isError(zlen));
        g_assert_cmpint(z[4] & 0x04, ==, 0);
        tu_write_file(c17, z, zlen);
        g_assert_false(vs_repo_export_disk(f->repo, m, "web1", "vda", out, "raw", &err));
        g_assert_nonnull(strstr(err->message, "content has SHA-256"));
        g_clear_error(&err);
    }
    /* and the original back: both modes export it */
    tu_write_file(c17, orig, olen);
    for (int hash = 0; hash < 2; hash++) {
        VsExportControl ctl = { .verify_hash = hash };
        g_assert_true(vs_repo_export_disk_ctl(f->repo, m, "web1", "vda", out, "raw", &ctl, &err));
        g_assert_no_error(err);
        g_assert_true(tu_files_equal(out, f->img_a));
        unlink(out);
    }
}

/* docs/repository-format.md shows how to read a disk back with zstd,
 * sha256sum, jq and dd only; read-by-hand.sh is that example. */
static void
test_read_by_hand(Fixture *f, gconstpointer data)
{
    const char *src = g_getenv("VS_REPO_TEST_SRCDIR");
    g_autofree char *script = g_build_filename(src ? src : ".", "read-by-hand.sh", NULL);
    g_autofree char *out = g_build_filename(f->top, "by-hand.raw", NULL);
    g_autofree char *serr = NULL;
    const char *argv[] = { "bash", script, f->repo_dir, f->id1, "web1", "vda", out, NULL };
    const char *tools[] = { "zstd", "jq", "sha256sum", "dd", "bash" };

    for (size_t i = 0; i < G_N_ELEMENTS(tools); i++) {
        if (!have(tools[i])) {
            g_test_skip("zstd, jq, sha256sum, dd or bash missing");
            return;
        }
    }
    /* the first backup's vda: as it was before the second backup changed it */
    tu_make_image(f->img_a, SIZE, CS, MASK, 100);
    if (tu_run(argv, &serr) != 0)
        g_error("read-by-hand.sh failed: %s", serr);
    g_assert_true(tu_files_equal(out, f->img_a));
    g_assert_cmpuint(allocated(out), <, SIZE / 2);

    /* and it notices a damaged chunk */
    {
        g_autofree char *bad = chunk_file(f, f->id1, "vda", 0);
        g_autofree char *text = NULL, *serr2 = NULL;
        gsize len = 0;

        g_assert_true(g_file_get_contents(bad, &text, &len, NULL));
        text[len - 20] ^= 0x10;
        tu_write_file(bad, text, len);
        g_assert_cmpint(unlink(out), ==, 0);
        g_assert_cmpint(tu_run(argv, &serr2), !=, 0);
    }
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) g_test_add(path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
    ADD("/verify/clean", test_verify_clean);
    ADD("/verify/damage", test_verify_damage);
    ADD("/export/raw", test_export_raw);
    ADD("/export/qcow2", test_export_qcow2);
    ADD("/export/damaged", test_export_damaged);
    ADD("/export/check-modes", test_export_check_modes);
    ADD("/export/read-by-hand", test_read_by_hand);
    return g_test_run();
}
