/* Who may read a repository (repo-perms.c), on real files: a directory that
 * existed with mode 0755 under umask 022 becomes a repository whose every
 * directory is 0700 and every file (chunks, manifests, the marker, the lock,
 * checkpoint files, temp files while they exist) 0600, and so does one made
 * under a umask that takes the owner's own bits away; a group-shared one is
 * 0750/0640 and of its group under umask 077, kept in the marker for later
 * writers; a repository opened up with chmod is noticed once per open, and
 * vs_repo_fix_permissions fixes it without following or changing a symlink,
 * nor touching a FIFO. */
#include "repo-test-util.h"
#include "repo-internal.h"

#include <grp.h>
#include <ftw.h>

#define CS (64 * 1024)

static GPtrArray *notices;   /* "KIND REPO MESSAGE" */

static void
flush(VsRepo *r)
{
    g_autoptr(GError) err = NULL;

    g_assert_true(vs_repo_flush(r, &err));
    g_assert_no_error(err);
}

static void
collect_notice(VsRepoNotice kind, const char *repo, const char *message)
{
    g_ptr_array_add(notices, g_strdup_printf("%d %s %s", (int)kind, repo, message));
}

static void
notices_reset(void)
{
    g_ptr_array_set_size(notices, 0);
}

/* Entries under the walk's root not of the expected mode (and group). */
static mode_t want_dir, want_file;
static gid_t want_gid;
static GString *wrong;

static int
check_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    mode_t mode = st->st_mode & 07777;

    (void)ftw;
    if ((type == FTW_D && mode != want_dir) || (type == FTW_F && S_ISREG(st->st_mode) && mode != want_file) ||
        ((type == FTW_D || type == FTW_F) && want_gid != (gid_t)-1 && st->st_gid != want_gid))
        g_string_append_printf(wrong, "%04o %u %s\n", (unsigned)mode, (unsigned)st->st_gid, path);
    return 0;
}

static void
assert_modes(const char *dir, mode_t dmode, mode_t fmode, gid_t gid)
{
    want_dir = dmode;
    want_file = fmode;
    want_gid = gid;
    wrong = g_string_new(NULL);
    g_assert_cmpint(nftw(dir, check_entry, 16, FTW_PHYS), ==, 0);
    g_assert_cmpstr(wrong->str, ==, "");
    g_string_free(wrong, TRUE);
}

/* A backup of one chunk of data SEED, a pending chunk left in tmp/, and a
 * checkpoint file: one of every kind of entry virtsnap makes. */
static void
fill(VsRepo *r, guint32 seed, bool leave_pending)
{
    g_autoptr(VsManifest) m = vs_manifest_new();
    VsManifestDisk *k = tu_add_disk(m, "dom", "vda");
    g_autofree uint8_t *buf = g_malloc(CS);
    VsChunkRef ref = { .offset = 0, .length = CS };
    g_autoptr(GError) err = NULL;
    VsDigest d;

    k->format = g_strdup("raw");
    k->virtual_size = CS;
    tu_fill_data(buf, CS, seed);
    tu_put(r, buf, CS, &ref.digest, NULL);
    g_array_append_val(k->chunks, ref);
    g_assert_true(vs_repo_commit_manifest(r, m, &err));
    g_assert_no_error(err);
    g_assert_true(vs_repo_write_file(r, "checkpoints/0123abcd/uuid.xml", "<x/>\n", 5, &err));
    g_assert_no_error(err);
    if (leave_pending) {
        tu_fill_data(buf, CS, seed + 1000);
        tu_put(r, buf, CS, &d, NULL);
    }
}

static void
test_private(void)
{
    g_autofree char *top = tu_tmpdir();
    g_autofree char *dir = g_build_filename(top, "repo", NULL);
    g_autofree char *dir2 = g_build_filename(top, "repo2", NULL);
    g_autofree char *expect = NULL;
    g_autofree char *tmp = NULL;
    g_autoptr(VsRepo) r = NULL, r2 = NULL;
    mode_t old = umask(022);

    /* an existing directory open to others (a mount point) */
    g_assert_cmpint(mkdir(dir, 0755), ==, 0);
    notices_reset();
    r = tu_open_new(dir, CS);
    g_assert_cmpuint(notices->len, ==, 1);
    expect = g_strdup_printf("%d %s repo: %s had mode 0755: made it 0700, so that only its owner may read "
                             "the backups", VS_REPO_NOTICE_MADE_PRIVATE, dir, dir);
    g_assert_cmpstr(notices->pdata[0], ==, expect);
    fill(r, 1, true);
    /* the pending chunk's temp file is there, and private too */
    tmp = g_build_filename(dir, "tmp", NULL);
    g_assert_cmpuint(tu_count_files(tmp), ==, 1);
    assert_modes(dir, 0700, 0600, (gid_t)-1);
    g_assert_null(vs_repo_group(r));

    /* a umask that takes even the owner's bits: the modes are set, not asked for */
    umask(0277);
    notices_reset();
    r2 = tu_open_new(dir2, CS);
    fill(r2, 2, false);
    umask(022);
    assert_modes(dir2, 0700, 0600, (gid_t)-1);
    g_assert_cmpuint(notices->len, ==, 0);   /* made here: nothing to say */
    umask(old);
    tu_rm_rf(top);
}

/* A group this process may give files to that is not its own: any group for
 * root, else a supplementary one; NULL when there is none. */
static char *
other_group(gid_t *gid)
{
    struct group *g;
    char *name = NULL;

    if (geteuid() == 0) {
        setgrent();
        while (!name && (g = getgrent()))
            if (g->gr_gid != getegid() && g->gr_gid != 0) {
                name = g_strdup(g->gr_name);
                *gid = g->gr_gid;
            }
        endgrent();
    } else {
        gid_t groups[64];
        int n = getgroups(G_N_ELEMENTS(groups), groups);

        for (int i = 0; i < n && !name; i++)
            if (groups[i] != getegid() && (g = getgrgid(groups[i]))) {
                name = g_strdup(g->gr_name);
                *gid = g->gr_gid;
            }
    }
    return name;
}

static void
test_group(void)
{
    g_autofree char *top = tu_tmpdir();
    g_autofree char *dir = g_build_filename(top, "repo", NULL);
    g_autofree char *marker = g_build_filename(dir, REPO_MARKER, NULL);
    g_autofree char *text = NULL, *gid_member = NULL, *group = NULL;
    g_autoptr(GError) err = NULL;
    g_autoptr(VsRepo) r = NULL;
    gid_t gid = 0;
    bool regrouped = true;
    mode_t old;

    if (!(group = other_group(&gid))) {
        g_test_skip("no group to share a repository with");
        return;
    }
    old = umask(077);
    r = vs_repo_init(dir, CS, group, &regrouped, &err);
    g_assert_no_error(err);
    g_assert_false(regrouped);
    g_assert_cmpstr(vs_repo_group(r), ==, group);
    fill(r, 3, true);
    assert_modes(dir, 0750, 0640, gid);
    g_clear_pointer(&r, vs_repo_close);

    /* recorded: a later writer (vs_repo_open, no group given) keeps to it */
    g_assert_true(g_file_get_contents(marker, &text, NULL, NULL));
    gid_member = g_strdup_printf("\"gid\": %u", (unsigned)gid);
    g_assert_nonnull(strstr(text, gid_member));
    notices_reset();
    r = vs_repo_open(dir, false, true, 0, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(vs_repo_group(r), ==, group);
    fill(r, 4, false);
    assert_modes(dir, 0750, 0640, gid);
    g_assert_cmpuint(notices->len, ==, 0);   /* group bits are what it should have */
    g_clear_pointer(&r, vs_repo_close);
    umask(old);

    /* a private repository given a group: recorded, then fixed */
    tu_rm_rf(dir);
    r = tu_open_new(dir, CS);
    fill(r, 5, false);
    g_clear_pointer(&r, vs_repo_close);
    r = vs_repo_init(dir, 0, group, &regrouped, &err);
    g_assert_no_error(err);
    g_assert_true(regrouped);
    {
        uint64_t fixed = 0;

        g_assert_true(vs_repo_fix_permissions(r, &fixed, &err));
        g_assert_no_error(err);
        g_assert_cmpuint(fixed, >, 5);
    }
    assert_modes(dir, 0750, 0640, gid);

    /* a group that does not exist */
    g_clear_pointer(&r, vs_repo_close);
    r = vs_repo_init(dir, 0, "no-such-group-vs", &regrouped, &err);
    g_assert_null(r);
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(err->message, "no group \"no-such-group-vs\""));
    tu_rm_rf(top);
}

static void
test_check_and_fix(void)
{
    g_autofree char *top = tu_tmpdir();
    g_autofree char *dir = g_build_filename(top, "repo", NULL);
    g_autofree char *outside = g_build_filename(top, "outside.txt", NULL);
    g_autofree char *outdir = g_build_filename(top, "outside.d", NULL);
    g_autofree char *outfile = g_build_filename(outdir, "f", NULL);
    g_autofree char *link1 = g_build_filename(dir, "link-to-file", NULL);
    g_autofree char *link2 = g_build_filename(dir, "chunks", "link-to-dir", NULL);
    g_autofree char *fifo = g_build_filename(dir, "tmp", "fifo", NULL);
    g_autofree char *chunks = g_build_filename(dir, "chunks", NULL);
    g_autofree char *chunk = NULL, *fan = NULL, *expect = NULL;
    g_autoptr(GError) err = NULL;
    g_autoptr(VsRepo) r = NULL;
    g_autofree uint8_t *buf = g_malloc(CS);
    char hex[VS_DIGEST_HEX_LEN];
    uint64_t fixed = 99;
    struct stat st;
    VsDigest d;

    r = tu_open_new(dir, CS);
    tu_fill_data(buf, CS, 7);
    tu_put(r, buf, CS, &d, NULL);
    flush(r);
    g_clear_pointer(&r, vs_repo_close);
    vs_digest_to_hex(&d, hex);
    fan = g_strdup_printf("%s/%.2s", chunks, hex);
    chunk = g_strdup_printf("%s/%s", fan, hex);

    /* opened up with chmod, and things that must be left alone */
    g_assert_cmpint(chmod(dir, 0755), ==, 0);
    g_assert_cmpint(chmod(fan, 0777), ==, 0);
    g_assert_cmpint(chmod(chunk, 0644), ==, 0);
    tu_write_file(outside, "x", 1);
    g_assert_cmpint(chmod(outside, 0644), ==, 0);
    g_assert_cmpint(mkdir(outdir, 0755), ==, 0);
    tu_write_file(outfile, "y", 1);
    g_assert_cmpint(chmod(outfile, 0666), ==, 0);
    g_assert_cmpint(symlink(outside, link1), ==, 0);
    g_assert_cmpint(symlink(outdir, link2), ==, 0);
    g_assert_cmpint(mkfifo(fifo, 0666), ==, 0);
    g_assert_cmpint(chmod(fifo, 0666), ==, 0);

    /* every open notices it, once */
    notices_reset();
    r = vs_repo_open(dir, false, false, 0, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(notices->len, ==, 1);
    expect = g_strdup_printf("%d %s repo: %s is open to other users (%s has mode 0755, and 1 more entry): "
                             "backups hold whole guest disks", VS_REPO_NOTICE_OPEN, dir, dir, dir);
    g_assert_cmpstr(notices->pdata[0], ==, expect);

    /* fixed: the root, the fan-out directory and the chunk */
    g_assert_true(vs_repo_fix_permissions(r, &fixed, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(fixed, ==, 3);
    g_assert_cmpint(lstat(link1, &st), ==, 0);
    g_assert_true(S_ISLNK(st.st_mode));
    g_assert_cmpint(lstat(link2, &st), ==, 0);
    g_assert_true(S_ISLNK(st.st_mode));
    g_assert_cmpint(stat(outside, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 07777, ==, 0644);
    g_assert_cmpint(stat(outdir, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 07777, ==, 0755);
    g_assert_cmpint(stat(outfile, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 07777, ==, 0666);
    g_assert_cmpint(lstat(fifo, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 07777, ==, 0666);
    g_assert_cmpint(unlink(fifo), ==, 0);
    assert_modes(dir, 0700, 0600, (gid_t)-1);
    g_assert_true(vs_repo_fix_permissions(r, &fixed, &err));
    g_assert_cmpuint(fixed, ==, 0);
    g_clear_pointer(&r, vs_repo_close);

    notices_reset();
    r = vs_repo_open(dir, false, false, 0, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(notices->len, ==, 0);
    tu_rm_rf(top);
}

static void
test_marker_and_paths(void)
{
    g_autofree char *top = tu_tmpdir();
    g_autofree char *dir = g_build_filename(top, "repo", NULL);
    g_autofree char *marker = g_build_filename(dir, REPO_MARKER, NULL);
    g_autoptr(GError) err = NULL;
    g_autoptr(VsRepo) r = tu_open_new(dir, CS);
    static const char *const bad_paths[] = { "../x", "checkpoints/../../x", "/x", "a//b", "a/./b", "" };
    static const struct {
        const char *members;
        const char *error;
    } bad_markers[] = {
        { ", \"group\": \"backup\"", "gid: missing" },
        { ", \"gid\": 34", "group: missing" },
        { ", \"group\": \"\", \"gid\": 34", "group: not a group" },
        { ", \"group\": \"backup\", \"gid\": -1", "gid: expected a non-negative integer" },
        { ", \"group\": 34, \"gid\": 34", "group: expected a string" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(bad_paths); i++) {
        g_assert_false(vs_repo_write_file(r, bad_paths[i], "x", 1, &err));
        g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
        g_clear_error(&err);
    }
    /* a directory of the repository swapped for a symlink after it was
     * opened: nothing is written through it */
    {
        g_autofree char *outside = g_build_filename(top, "outside", NULL);
        g_autofree char *link = g_build_filename(dir, "checkpoints", "0123abcd", NULL);
        g_autofree char *escaped = g_build_filename(outside, "uuid.xml", NULL);

        g_assert_cmpint(g_mkdir_with_parents(outside, 0700), ==, 0);
        g_assert_true(vs_repo_write_file(r, "checkpoints/tag", "0123abcd\n", 9, &err));
        g_assert_no_error(err);
        g_assert_cmpint(symlink(outside, link), ==, 0);
        g_assert_false(vs_repo_write_file(r, "checkpoints/0123abcd/uuid.xml", "<x/>\n", 5, &err));
        g_assert_nonnull(strstr(err->message, "0123abcd: not a real directory"));
        g_clear_error(&err);
        g_assert_false(g_file_test(escaped, G_FILE_TEST_EXISTS));
        g_assert_cmpint(unlink(link), ==, 0);
    }
    g_clear_pointer(&r, vs_repo_close);
    for (size_t i = 0; i < G_N_ELEMENTS(bad_markers); i++) {
        g_autofree char *text = g_strdup_printf("{\"format\": \"virtsnap-repository\", \"version\": 1, "
                                                "\"chunk_size\": 65536, \"created\": \"2026-11-23T14:33:35Z\"%s}",
                                                bad_markers[i].members);

        tu_write_file(marker, text, strlen(text));
        r = vs_repo_open(dir, false, false, 0, &err);
        g_assert_null(r);
        g_assert_nonnull(err);
        if (!strstr(err->message, bad_markers[i].error))
            g_error("%s: got \"%s\"", bad_markers[i].members, err->message);
        g_clear_error(&err);
    }
    tu_rm_rf(top);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    notices = g_ptr_array_new_with_free_func(g_free);
    vs_repo_set_notice_func(collect_notice);
    g_test_add_func("/repo/perms/private", test_private);
    g_test_add_func("/repo/perms/group", test_group);
    g_test_add_func("/repo/perms/check-and-fix", test_check_and_fix);
    g_test_add_func("/repo/perms/marker-and-paths", test_marker_and_paths);
    return g_test_run();
}
