/* Helpers the repository tests share: scratch directories that clean up after
 * themselves, reproducible pseudo-random data, backing a real file up the way
 * the copy engine does (chunk-sized reads, zeros skipped), mounts for the
 * read-only and disk-full cases (root only; the tests skip otherwise), and
 * running the real qemu-img. */
#pragma once

#include "config.h"
#include "vs-repo.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static inline char *
tu_tmpdir(void)
{
    g_autoptr(GError) err = NULL;
    char *d = g_dir_make_tmp("vsrepo-test-XXXXXX", &err);

    g_assert_no_error(err);
    return d;
}

static inline int
tu_run(const char *const *argv, char **out_err)
{
    g_autofree char *out = NULL, *err = NULL;
    g_autoptr(GError) e = NULL;
    int status = 0;

    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &err, &status, &e))
        g_error("spawning %s: %s", argv[0], e->message);
    if (out_err)
        *out_err = g_steal_pointer(&err);
    return g_spawn_check_wait_status(status, NULL) ? 0 : 1;
}

static inline void
tu_rm_rf(const char *path)
{
    const char *argv[] = { "rm", "-rf", "--one-file-system", path, NULL };

    if (path)
        tu_run(argv, NULL);
}

static inline void
tu_fill_random(void *buf, size_t len, guint32 seed)
{
    g_autoptr(GRand) r = g_rand_new_with_seed(seed);
    guint32 *p = buf;
    size_t i;

    for (i = 0; i + 4 <= len; i += 4)
        p[i / 4] = g_rand_int(r);
    for (; i < len; i++)
        ((uint8_t *)buf)[i] = (uint8_t)g_rand_int(r);
}

/* Half random, half a repeated pattern: compressible like real disks. */
static inline void
tu_fill_data(void *buf, size_t len, guint32 seed)
{
    tu_fill_random(buf, len / 2, seed);
    for (size_t i = len / 2; i < len; i++)
        ((uint8_t *)buf)[i] = (uint8_t)("virtsnap"[i % 8] + seed);
}

static inline void
tu_write_file(const char *path, const void *data, size_t len)
{
    g_autoptr(GError) err = NULL;

    g_assert_true(g_file_set_contents(path, data, (gssize)len, &err));
    g_assert_no_error(err);
}

/* A crash-consistent domain NAME (added to M) with one disk TARGET. */
static inline VsManifestDisk *
tu_add_disk(VsManifest *m, const char *name, const char *target)
{
    VsManifestDomain *d = vs_manifest_add_domain(m, name);

    d->consistency = g_strdup("crash");
    return vs_manifest_domain_add_disk(d, target);
}

/* Backs the file at PATH up into DISK the way the copy engine does. */
static inline void
tu_backup_file(VsRepo *repo, VsManifestDisk *disk, const char *path)
{
    uint32_t cs = vs_repo_chunk_size(repo);
    g_autofree uint8_t *buf = g_malloc(cs);
    struct stat st;
    int fd = open(path, O_RDONLY);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(fstat(fd, &st), ==, 0);
    disk->virtual_size = (uint64_t)st.st_size;
    if (!disk->format)
        disk->format = g_strdup("raw");
    if (!disk->source)
        disk->source = g_strdup(path);
    for (uint64_t off = 0; off < disk->virtual_size; off += cs) {
        size_t n = (size_t)MIN((uint64_t)cs, disk->virtual_size - off);
        g_autoptr(GError) err = NULL;
        VsChunkRef ref = { .offset = off, .length = (uint32_t)n };
        uint64_t stored = 0;

        g_assert_cmpint(pread(fd, buf, n, (off_t)off), ==, (ssize_t)n);
        disk->bytes_read += n;
        if (vs_buffer_is_zero(buf, n))
            continue;
        g_assert_true(vs_repo_put_chunk(repo, buf, n, &ref.digest, &stored, &err));
        g_assert_no_error(err);
        disk->bytes_stored += stored;
        g_array_append_val(disk->chunks, ref);
    }
    close(fd);
}

/* A raw image of SIZE bytes: data in the chunks whose bit is set in MASK
 * (chunk i: bit i % 64), zeros elsewhere; SEED varies the data. */
static inline void
tu_make_image(const char *path, uint64_t size, uint32_t cs, uint64_t mask, guint32 seed)
{
    g_autofree uint8_t *buf = g_malloc(cs);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, (off_t)size), ==, 0);
    for (uint64_t i = 0; i * cs < size; i++) {
        size_t n = (size_t)MIN((uint64_t)cs, size - i * cs);

        if (!(mask >> (i % 64) & 1))
            continue;
        tu_fill_data(buf, n, seed + (guint32)i);
        /* a zero 4 KiB block inside a data chunk: export must keep it a hole */
        if (n > 8192)
            memset(buf + 4096, 0, 4096);
        g_assert_cmpint(pwrite(fd, buf, n, (off_t)(i * cs)), ==, (ssize_t)n);
    }
    close(fd);
}

static inline bool
tu_is_root(void)
{
    return geteuid() == 0;
}

/* Root only: gives this process (and the mount commands it runs) its own mount
 * namespace, so that a test that dies before its umount leaves no mount behind
 * and no other process ever sees our mounts. Call while single-threaded. */
static inline void
tu_private_mounts(void)
{
    if (tu_is_root() && unshare(CLONE_NEWNS) == 0)
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
}

/* Mounts a tmpfs of SIZE ("2M") on DIR; false (and a skip) when we cannot. */
static inline bool
tu_mount_tmpfs(const char *dir, const char *size)
{
    g_autofree char *opt = g_strdup_printf("size=%s", size);
    const char *argv[] = { "mount", "-t", "tmpfs", "-o", opt, "tmpfs", dir, NULL };

    if (!tu_is_root()) {
        g_test_skip("needs root to mount a tmpfs");
        return false;
    }
    if (tu_run(argv, NULL) != 0) {
        g_test_skip("mount -t tmpfs failed (no CAP_SYS_ADMIN?)");
        return false;
    }
    return true;
}

/* Bind-mounts SRC read-only on DST. */
static inline bool
tu_mount_ro(const char *src, const char *dst)
{
    const char *bind[] = { "mount", "--bind", src, dst, NULL };
    const char *ro[] = { "mount", "-o", "remount,bind,ro", dst, NULL };
    const char *um[] = { "umount", dst, NULL };

    if (!tu_is_root()) {
        g_test_skip("needs root to bind-mount read-only");
        return false;
    }
    if (tu_run(bind, NULL) != 0) {
        g_test_skip("mount --bind failed (no CAP_SYS_ADMIN?)");
        return false;
    }
    if (tu_run(ro, NULL) != 0) {
        tu_run(um, NULL);
        g_test_skip("remounting read-only failed");
        return false;
    }
    return true;
}

static inline void
tu_umount(const char *dir)
{
    const char *argv[] = { "umount", dir, NULL };

    g_assert_cmpint(tu_run(argv, NULL), ==, 0);
}

static inline bool
tu_files_equal(const char *a, const char *b)
{
    g_autofree char *da = NULL, *db = NULL;
    gsize la = 0, lb = 0;

    g_assert_true(g_file_get_contents(a, &da, &la, NULL));
    g_assert_true(g_file_get_contents(b, &db, &lb, NULL));
    return la == lb && memcmp(da, db, la) == 0;
}

/* Number of regular files below DIR (recursively). */
static inline guint
tu_count_files(const char *dir)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    const char *name;
    guint n = 0;

    if (!d)
        return 0;
    while ((name = g_dir_read_name(d))) {
        g_autofree char *p = g_build_filename(dir, name, NULL);

        if (g_file_test(p, G_FILE_TEST_IS_DIR))
            n += tu_count_files(p);
        else
            n++;
    }
    return n;
}

/* A repository created in DIR with chunk size CS; asserts success. */
static inline VsRepo *
tu_open_new(const char *dir, uint32_t cs)
{
    g_autoptr(GError) err = NULL;
    VsRepo *r = vs_repo_open(dir, true, true, cs, &err);

    g_assert_no_error(err);
    g_assert_nonnull(r);
    return r;
}

/* The fixture most repository tests start from, for g_test_add: a fresh temp
 * directory DIR holding a new repository REPO (64 KiB chunks), closed and
 * removed after the test. TU_REPO_TEST("/path", fn) registers fn(TuRepo *f,
 * gconstpointer data). */
typedef struct {
    char *dir;
    VsRepo *repo;
} TuRepo;

static inline void
tu_repo_setup(TuRepo *f, gconstpointer data)
{
    f->dir = tu_tmpdir();
    f->repo = tu_open_new(f->dir, 64 * 1024);
}

static inline void
tu_repo_teardown(TuRepo *f, gconstpointer data)
{
    g_clear_pointer(&f->repo, vs_repo_close);
    tu_rm_rf(f->dir);
    g_clear_pointer(&f->dir, g_free);
}

#define TU_REPO_TEST(path, fn) g_test_add(path, TuRepo, NULL, tu_repo_setup, fn, tu_repo_teardown)

/* vs_repo_put_chunk, asserting success. */
static inline void
tu_put(VsRepo *r, const void *data, size_t len, VsDigest *d, uint64_t *stored)
{
    g_autoptr(GError) err = NULL;

    g_assert_true(vs_repo_put_chunk(r, data, len, d, stored, &err));
    g_assert_no_error(err);
}

/* A backup of one domain with one disk made of NCHUNKS chunks of data SEED.. */
static inline char *
tu_commit_backup(VsRepo *r, const char *domain, const char *target, guint nchunks, guint32 seed)
{
    g_autoptr(VsManifest) m = vs_manifest_new();
    VsManifestDomain *d = vs_manifest_add_domain(m, domain);
    VsManifestDisk *k = vs_manifest_domain_add_disk(d, target);
    g_autofree uint8_t *buf = g_malloc(vs_repo_chunk_size(r));
    g_autoptr(GError) err = NULL;

    d->consistency = g_strdup("crash");
    k->format = g_strdup("raw");
    k->virtual_size = (uint64_t)nchunks * vs_repo_chunk_size(r);
    for (guint i = 0; i < nchunks; i++) {
        VsChunkRef ref = { .offset = (uint64_t)i * vs_repo_chunk_size(r), .length = vs_repo_chunk_size(r) };

        tu_fill_data(buf, vs_repo_chunk_size(r), seed + i);
        tu_put(r, buf, vs_repo_chunk_size(r), &ref.digest, NULL);
        g_array_append_val(k->chunks, ref);
    }
    g_assert_true(vs_repo_commit_manifest(r, m, &err));
    g_assert_no_error(err);
    return g_strdup(m->id);
}

/* Runs PROG ARGV as a child: fork and exec, so that the child does not inherit
 * the test harness (under valgrind it would report that memory as leaked). */
static inline pid_t
tu_spawn(const char *prog, char *const argv[])
{
    pid_t pid = fork();

    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        execv(prog, argv);
        _exit(127);
    }
    return pid;
}

/* Waits for PID and asserts it exited with status 0. */
static inline void
tu_wait_ok(pid_t pid)
{
    int status = 0;

    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
}

