/* Sources and the copy engine against real things: sparse files written here,
 * qcow2 chains made by qemu-img and filled by qemu-io (checked against
 * qemu-img convert's flattening of the same chain), a qemu-nbd we start on a
 * unix socket, and the real repository. Covers extents, reads, clones, the
 * engine's chunk list, round trip, dedup, fault injection, sources that vanish
 * mid-copy (no hang, a clear error), qemu-nbd reaped on every path, and peak
 * memory (run alone as its own test, since VmHWM is per process). */
#include "config.h"
#include "vs-source.h"
#include "vs-copy.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB (UINT64_C(1) << 20)

static char *tmpdir;

static char *
tmp(const char *name)
{
    return g_build_filename(tmpdir, name, NULL);
}

static void
run(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

static void
run(const char *fmt, ...)
{
    va_list ap;
    g_autofree char *cmd = NULL, *out = NULL, *err = NULL;
    g_autoptr(GError) error = NULL;
    int status = 0;

    va_start(ap, fmt);
    cmd = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_assert_true(g_spawn_command_line_sync(cmd, &out, &err, &status, &error));
    g_assert_no_error(error);
    if (!g_spawn_check_wait_status(status, NULL))
        g_error("%s failed: %s%s", cmd, out, err);
}

static void
die_with_parent(gpointer unused)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

/* Deterministic, fast, incompressible. */
static void
fill_random(void *buf, size_t len, uint64_t seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    uint64_t *p = buf;

    for (size_t i = 0; i < len / 8; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = x;
    }
    memset((char *)buf + len / 8 * 8, 0x5a, len % 8);
}

static void
pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    g_assert_cmpint(pwrite(fd, buf, len, (off_t)off), ==, (ssize_t)len);
}

typedef struct {
    uint64_t offset, length;
} Range;

/* A sparse file of SIZE bytes with random data at RANGES. */
static char *
make_sparse(const char *name, uint64_t size, const Range *ranges, size_t n)
{
    char *path = tmp(name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, (off_t)size), ==, 0);
    for (size_t i = 0; i < n; i++) {
        g_autofree char *buf = g_malloc(ranges[i].length + 8);
        fill_random(buf, ranges[i].length + 8, ranges[i].offset + 1);
        pwrite_all(fd, buf, ranges[i].length, ranges[i].offset);
    }
    g_assert_cmpint(close(fd), ==, 0);
    return path;
}

/* Every byte of SRC equals the file at REF. */
static void
assert_source_equals_file(VsSource *src, const char *ref)
{
    int fd = open(ref, O_RDONLY);
    struct stat st;
    g_autofree char *a = g_malloc(MiB), *b = g_malloc(MiB);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(fstat(fd, &st), ==, 0);
    g_assert_cmpuint(vs_source_size(src), ==, (uint64_t)st.st_size);
    for (uint64_t off = 0; off < (uint64_t)st.st_size; off += MiB) {
        size_t n = MIN(MiB, (uint64_t)st.st_size - off);
        g_autoptr(GError) err = NULL;
        g_assert_true(vs_source_pread(src, a, n, off, &err));
        g_assert_no_error(err);
        g_assert_cmpint(pread(fd, b, n, (off_t)off), ==, (ssize_t)n);
        g_assert_true(memcmp(a, b, n) == 0);
    }
    close(fd);
}

static bool
range_is_zero(int fd, uint64_t off, uint64_t len)
{
    g_autofree char *buf = g_malloc(MiB);

    while (len > 0) {
        size_t n = MIN(len, MiB);
        g_assert_cmpint(pread(fd, buf, n, (off_t)off), ==, (ssize_t)n);
        for (size_t i = 0; i < n; i++)
            if (buf[i])
                return false;
        off += n;
        len -= n;
    }
    return true;
}

/* All extents of SRC: contiguous from 0 to the size; every zero extent reads as
 * zeros in REF (the flattened truth). */
static GArray *
all_extents(VsSource *src, const char *ref)
{
    GArray *ext = g_array_new(FALSE, FALSE, sizeof(VsExtent));
    uint64_t pos = 0, size = vs_source_size(src);
    int fd = ref ? open(ref, O_RDONLY) : -1;

    while (pos < size) {
        g_autoptr(GError) err = NULL;
        guint before = ext->len;
        g_assert_true(vs_source_extents(src, pos, size - pos, ext, &err));
        g_assert_no_error(err);
        g_assert_cmpuint(ext->len, >, before);
        for (guint i = before; i < ext->len; i++) {
            VsExtent *e = &g_array_index(ext, VsExtent, i);
            g_assert_cmpuint(e->offset, ==, pos);
            g_assert_cmpuint(e->length, >, 0);
            if (e->zero && fd >= 0)
                g_assert_true(range_is_zero(fd, e->offset, e->length));
            pos += e->length;
        }
    }
    g_assert_cmpuint(pos, ==, size);
    if (fd >= 0)
        close(fd);
    return ext;
}

/* Whether [off, off+len) lies inside a data extent. */
static bool
covered_by_data(GArray *ext, uint64_t off, uint64_t len)
{
    for (guint i = 0; i < ext->len; i++) {
        VsExtent *e = &g_array_index(ext, VsExtent, i);
        if (!e->zero && e->offset <= off && off + len <= e->offset + e->length)
            return true;
    }
    return false;
}

static uint64_t
data_bytes(GArray *ext)
{
    uint64_t n = 0;
    for (guint i = 0; i < ext->len; i++)
        if (!g_array_index(ext, VsExtent, i).zero)
            n += g_array_index(ext, VsExtent, i).length;
    return n;
}

static VsRepo *
new_repo(const char *name)
{
    g_autofree char *p = tmp(name);
    g_autoptr(GError) err = NULL;
    VsRepo *repo = vs_repo_open(p, true, true, 0, &err);

    g_assert_no_error(err);
    g_assert_nonnull(repo);
    return repo;
}

static void
disk_clear(VsManifestDisk *d)
{
    if (d->chunks)
        g_array_unref(d->chunks);
    memset(d, 0, sizeof *d);
}

static void
copy_ok(VsSource *src, VsRepo *repo, VsManifestDisk *disk, const VsCopyOptions *opts)
{
    g_autoptr(GError) err = NULL;

    g_assert_true(vs_copy_source_to_repo(src, repo, disk, opts, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(disk->virtual_size, ==, vs_source_size(src));
    g_assert_nonnull(disk->chunks);
}

/* The chunks read back from the repository, with the gaps as zeros, are REF. */
static void
assert_roundtrip(VsRepo *repo, const VsManifestDisk *disk, const char *ref)
{
    int fd = open(ref, O_RDONLY);
    uint32_t cs = vs_repo_chunk_size(repo);
    uint64_t pos = 0;
    g_autofree char *buf = g_malloc(cs);

    g_assert_cmpint(fd, >=, 0);
    for (guint i = 0; i < disk->chunks->len; i++) {
        VsChunkRef *c = &g_array_index(disk->chunks, VsChunkRef, i);
        g_autoptr(GError) err = NULL;
        g_autofree char *data = NULL;
        size_t len = 0;

        g_assert_cmpuint(c->offset % cs, ==, 0);
        g_assert_cmpuint(c->offset, >=, pos);
        g_assert_true(range_is_zero(fd, pos, c->offset - pos));
        data = vs_repo_get_chunk(repo, &c->digest, &len, &err);
        g_assert_no_error(err);
        g_assert_cmpuint(len, ==, c->length);
        g_assert_cmpuint(c->length, ==, MIN((uint64_t)cs, disk->virtual_size - c->offset));
        g_assert_cmpint(pread(fd, buf, len, (off_t)c->offset), ==, (ssize_t)len);
        g_assert_true(memcmp(buf, data, len) == 0);
        pos = c->offset + c->length;
    }
    g_assert_true(range_is_zero(fd, pos, disk->virtual_size - pos));
    close(fd);
}

/* ------------------------------------------------------------------------- */
/* qemu-nbd processes                                                        */

/* Our children called qemu-nbd (libnbd forks them from whichever thread). */
static GArray *
qemu_nbd_children(void)
{
    GArray *pids = g_array_new(FALSE, FALSE, sizeof(pid_t));
    g_autoptr(GDir) tasks = g_dir_open("/proc/self/task", 0, NULL);
    const char *tid;

    g_assert_nonnull(tasks);
    while ((tid = g_dir_read_name(tasks))) {
        g_autofree char *p = g_strdup_printf("/proc/self/task/%s/children", tid);
        g_autofree char *list = NULL;
        g_auto(GStrv) parts = NULL;

        if (!g_file_get_contents(p, &list, NULL, NULL))
            continue;
        parts = g_strsplit(g_strstrip(list), " ", -1);
        for (char **s = parts; *s; s++) {
            g_autofree char *commp = NULL, *comm = NULL;
            pid_t pid = (pid_t)atoi(*s);
            if (pid <= 0)
                continue;
            commp = g_strdup_printf("/proc/%d/comm", pid);
            if (g_file_get_contents(commp, &comm, NULL, NULL) &&
                g_str_has_prefix(comm, "qemu-nbd"))
                g_array_append_val(pids, pid);
        }
    }
    return pids;
}

static void
assert_no_qemu_nbd(void)
{
    g_autoptr(GArray) pids = qemu_nbd_children();
    g_assert_cmpuint(pids->len, ==, 0);
}

typedef struct {
    GPid pid;
    char *sock;
    char *uri;
} NbdServer;

static bool
can_connect(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok;

    g_assert_cmpint(fd, >=, 0);
    g_strlcpy(sa.sun_path, path, sizeof sa.sun_path);
    ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

/* qemu-nbd serving FILE; with BITMAP, that persistent dirty bitmap of a qcow2
 * as the context "qemu:dirty-bitmap:BITMAP" (what a libvirt pull job offers). */
static void
nbd_server_start_bitmap(NbdServer *s, const char *file, const char *format, const char *bitmap)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *fmt = g_strdup_printf("--format=%s", format);
    g_autofree char *bm = bitmap ? g_strdup_printf("--bitmap=%s", bitmap) : NULL;
    static int n;
    char *argv[9];
    int i = 0;

    s->sock = g_strdup_printf("%s/nbd%d.sock", tmpdir, n++);
    argv[i++] = (char *)"qemu-nbd";
    argv[i++] = (char *)"--read-only";
    argv[i++] = fmt;
    argv[i++] = (char *)"--shared=8";
    argv[i++] = (char *)"--persistent";
    argv[i++] = g_strdup_printf("--socket=%s", s->sock);
    if (bm)
        argv[i++] = bm;
    argv[i++] = (char *)file;
    argv[i] = NULL;
    /* Not on our stdout (the TAP reader would wait for it to close), and gone
     * with us if an assertion aborts the test. */
    g_assert_true(g_spawn_async(NULL, argv, NULL,
                                G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD |
                                G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL,
                                die_with_parent, NULL, &s->pid, &err));
    g_assert_no_error(err);
    g_free(argv[5]);
    /* The socket file appears at bind(), a moment before listen(). */
    for (int tries = 0; tries < 1000 && !can_connect(s->sock); tries++)
        g_usleep(10000);
    g_assert_true(can_connect(s->sock));
    s->uri = g_strdup_printf("nbd+unix:///?socket=%s", s->sock);
}

static void
nbd_server_start(NbdServer *s, const char *file, const char *format)
{
    nbd_server_start_bitmap(s, file, format, NULL);
}

static void
nbd_server_stop(NbdServer *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
    unlink(s->sock);
    g_clear_pointer(&s->sock, g_free);
    g_clear_pointer(&s->uri, g_free);
}

/* ------------------------------------------------------------------------- */
/* Sources                                                                   */

static const Range sparse_ranges[] = {
    { 1 * MiB, 4096 },                 /* one small extent in chunk 1 */
    { 10 * MiB + 8192, 64 * 1024 },    /* inside chunk 10, not at its start */
    { 33 * MiB - 4096, 8192 },         /* straddles chunks 32 and 33 */
    { 63 * MiB + 512 * 1024, 512 * 1024 }, /* the last half chunk */
};
static const uint64_t sparse_chunks[] = { 1, 10, 32, 33, 63 };

static void
test_file_extents(void)
{
    g_autofree char *path = make_sparse("sparse.raw", 64 * MiB, sparse_ranges, G_N_ELEMENTS(sparse_ranges));
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = vs_source_open_file(path, &err);
    g_autoptr(VsSource) clone = NULL;
    g_autoptr(GArray) ext = NULL;

    g_assert_no_error(err);
    g_assert_cmpstr(src->ops->name, ==, "file");
    g_assert_cmpuint(vs_source_size(src), ==, 64 * MiB);
    ext = all_extents(src, path);
    for (size_t i = 0; i < G_N_ELEMENTS(sparse_ranges); i++)
        g_assert_true(covered_by_data(ext, sparse_ranges[i].offset, sparse_ranges[i].length));
    /* Holes were found: far less than the file is data. */
    g_assert_cmpuint(data_bytes(ext), <=, 4 * MiB);
    g_assert_false(covered_by_data(ext, 20 * MiB, 4096));
    assert_source_equals_file(src, path);

    clone = vs_source_clone(src, &err);
    g_assert_no_error(err);
    assert_source_equals_file(clone, path);
}

static void
test_file_errors(void)
{
    g_autofree char *missing = tmp("no-such-file");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = vs_source_open_file(missing, &err);

    g_assert_null(src);
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(err->message, missing));
    g_assert_true(g_str_has_prefix(err->message, "file: "));
    g_clear_error(&err);

    src = vs_source_open_file(tmpdir, &err);   /* a directory */
    g_assert_null(src);
    g_assert_error(err, VS_ERROR, VS_ERROR_UNSUPPORTED);
}

/* A clone of *SRC reads REF too; closing both leaves no qemu-nbd behind. */
static void
assert_clone_reads_then_close(VsSource **src, const char *ref)
{
    g_autoptr(GError) err = NULL;
    VsSource *clone = vs_source_clone(*src, &err);

    g_assert_no_error(err);
    assert_source_equals_file(clone, ref);
    vs_source_close(clone);
    g_clear_pointer(src, vs_source_close);
    assert_no_qemu_nbd();
}

/* base: 0xaa over [0, 3M) and random at 40M; top: 0xbb over [1M, 2M), zeros
 * written over [2M, 2.5M) (hiding base data), 0xcc at the last MiB. */
static char *
make_chain(void)
{
    g_autofree char *base = tmp("base.qcow2");
    char *top = tmp("top,1.qcow2");   /* a comma: QEMU's option syntax must escape it */

    run("qemu-img create -q -f qcow2 %s 64M", base);
    run("qemu-io -f qcow2 -c 'write -q -P 0xaa 0 3M' -c 'write -q -P 0x11 40M 512k' %s", base);
    run("qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 %s", top);
    run("qemu-io -f qcow2 -c 'write -q -P 0xbb 1M 1M' -c 'write -q -z 2M 512k' "
        "-c 'write -q -P 0xcc 63M 1M' %s", top);
    return top;
}

static void
test_image_chain(void)
{
    g_autofree char *top = make_chain();
    g_autofree char *flat = tmp("flat.raw");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = NULL;
    g_autoptr(GArray) ext = NULL;

    run("qemu-img convert -f qcow2 -O raw %s %s", top, flat);
    src = vs_source_open_image(top, "qcow2", &err);
    g_assert_no_error(err);
    g_assert_cmpstr(src->ops->name, ==, "image");
    g_assert_cmpstr(src->description, ==, top);
    ext = all_extents(src, flat);
    g_assert_true(covered_by_data(ext, 0, 2 * MiB));
    g_assert_true(covered_by_data(ext, 40 * MiB, 512 * 1024));
    g_assert_true(covered_by_data(ext, 63 * MiB, MiB));
    g_assert_false(covered_by_data(ext, 2 * MiB, 4096));   /* zeroed in the overlay */
    g_assert_false(covered_by_data(ext, 20 * MiB, 4096));
    assert_source_equals_file(src, flat);

    /* Its qemu-nbd goes with the last handle. */
    assert_clone_reads_then_close(&src, flat);
}

static void
test_image_errors(void)
{
    g_autofree char *junk = tmp("junk.qcow2");
    g_autofree char *missing = tmp("missing.qcow2");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = NULL;

    g_assert_true(g_file_set_contents(junk, "this is not a qcow2 image", -1, NULL));
    src = vs_source_open_image(junk, "qcow2", &err);
    g_assert_null(src);
    g_assert_error(err, VS_ERROR, VS_ERROR_IO);
    g_assert_true(g_str_has_prefix(err->message, "image: "));
    g_assert_nonnull(strstr(err->message, junk));
    /* qemu-nbd's own words reach the message instead of our stderr. */
    g_test_message("%s", err->message);
    g_assert_nonnull(strstr(err->message, "not in qcow2 format"));
    g_clear_error(&err);
    assert_no_qemu_nbd();

    src = vs_source_open_image(missing, "qcow2", &err);
    g_assert_null(src);
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
    g_clear_error(&err);

    src = vs_source_open_image(junk, NULL, &err);
    g_assert_null(src);
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_clear_error(&err);
    src = vs_source_open_image(junk, "raw,file.filename=/etc/shadow", &err);
    g_assert_null(src);
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    assert_no_qemu_nbd();
}

/* The base of the chain write-locked by another QEMU (as a running guest's
 * QEMU does while committing): the image source still reads it. */
static void
test_image_locked(void)
{
    g_autofree char *top = make_chain();
    g_autofree char *base = tmp("base.qcow2");
    g_autofree char *flat = tmp("flat-locked.raw");
    char *argv[] = { (char *)"qemu-io", (char *)"-f", (char *)"qcow2", base, NULL };
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = NULL;
    GPid holder;
    int in = -1, out = -1;
    GString *said = g_string_new(NULL);
    char buf[256];
    ssize_t n;
    int status = 0;

    run("qemu-img convert -f qcow2 -O raw %s %s", top, flat);
    g_assert_true(g_spawn_async_with_pipes(NULL, argv, NULL,
                                           G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD |
                                           G_SPAWN_STDERR_TO_DEV_NULL,
                                           die_with_parent, NULL, &holder, &in, &out, NULL, &err));
    g_assert_no_error(err);
    /* qemu-io answers a command only once it has opened (and so locked) the
     * image. Asking it, rather than probing the lock with qemu-img, matters: a
     * probe that opens the image while qemu-io starts takes a shared lock that
     * makes qemu-io's own open fail (seen in CI on a loaded machine). */
    g_assert_cmpint(write(in, "length\n", 7), ==, 7);
    while (!strstr(said->str, "MiB\n")) {
        n = read(out, buf, sizeof buf);
        /* EOF: qemu-io could not open the image and is gone. */
        g_assert_cmpint(n, >, 0);
        g_string_append_len(said, buf, n);
    }
    g_string_free(said, TRUE);
    {
        g_autofree char *cmd = g_strdup_printf("qemu-img info %s", base);
        g_autofree char *o = NULL, *e = NULL;
        g_assert_true(g_spawn_command_line_sync(cmd, &o, &e, &status, NULL));
        g_assert_false(g_spawn_check_wait_status(status, NULL));
        g_assert_nonnull(strstr(e, "lock"));
    }
    src = vs_source_open_image(top, "qcow2", &err);
    g_assert_no_error(err);
    assert_source_equals_file(src, flat);
    g_clear_pointer(&src, vs_source_close);
    close(in);
    close(out);
    waitpid(holder, NULL, 0);
    assert_no_qemu_nbd();
}

static void
test_nbd_uri(void)
{
    g_autofree char *path = make_sparse("nbd.raw", 64 * MiB, sparse_ranges, G_N_ELEMENTS(sparse_ranges));
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = NULL;
    g_autoptr(VsSource) clone = NULL;
    g_autoptr(GArray) ext = NULL;
    g_autoptr(VsRepo) repo = new_repo("repo-nbd");
    VsManifestDisk disk = { 0 };
    NbdServer s = { 0 };

    nbd_server_start(&s, path, "raw");
    src = vs_source_open_nbd_uri(s.uri, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(src->ops->name, ==, "nbd");
    ext = all_extents(src, path);
    for (size_t i = 0; i < G_N_ELEMENTS(sparse_ranges); i++)
        g_assert_true(covered_by_data(ext, sparse_ranges[i].offset, sparse_ranges[i].length));
    g_assert_cmpuint(data_bytes(ext), <=, 4 * MiB);
    assert_source_equals_file(src, path);
    clone = vs_source_clone(src, &err);
    g_assert_no_error(err);
    assert_source_equals_file(clone, path);

    copy_ok(src, repo, &disk, NULL);
    g_assert_cmpuint(disk.chunks->len, ==, G_N_ELEMENTS(sparse_chunks));
    assert_roundtrip(repo, &disk, path);
    disk_clear(&disk);
    g_clear_pointer(&clone, vs_source_close);
    g_clear_pointer(&src, vs_source_close);
    nbd_server_stop(&s);

    /* Nobody listening. */
    {
        g_autofree char *uri = g_strdup_printf("nbd+unix:///?socket=%s/nobody.sock", tmpdir);
        src = vs_source_open_nbd_uri(uri, &err);
        g_assert_null(src);
        g_assert_error(err, VS_ERROR, VS_ERROR_IO);
        g_assert_true(g_str_has_prefix(err->message, "nbd: "));
        g_assert_nonnull(strstr(err->message, "nobody.sock"));
    }
}

/* ------------------------------------------------------------------------- */
/* The engine                                                                */

static void assert_sparse_chunks(const VsManifestDisk *disk);

/* An incremental copy: a full copy of a qcow2, a persistent bitmap, writes into
 * two chunks, then a copy through qemu-nbd's bitmap context with the full copy
 * as the previous backup reads those two chunks only and still describes the
 * whole disk. */
static void
test_copy_incremental(void)
{
    g_autofree char *path = tmp("inc.qcow2"), *ref = tmp("inc.raw");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = NULL;
    g_autoptr(VsRepo) repo = new_repo("repo-inc");
    VsManifestDisk full = { 0 }, inc = { 0 }, odd = { 0 };
    VsCopyOptions opts;
    NbdServer s = { 0 };

    run("qemu-img create -q -f qcow2 %s 64M", path);
    run("qemu-io -f qcow2 -c 'write -q -P 0x11 0 8M' -c 'write -q -P 0x22 32M 4M' %s", path);
    src = vs_source_open_image(path, "qcow2", &err);
    g_assert_no_error(err);
    copy_ok(src, repo, &full, NULL);
    g_assert_cmpuint(full.chunks->len, ==, 12);
    g_clear_pointer(&src, vs_source_close);

    run("qemu-img bitmap --add %s b0", path);
    run("qemu-io -f qcow2 -c 'write -q -P 0x33 2M 512k' -c 'write -q -P 0x44 40M 1M' %s", path);
    run("qemu-img convert -f qcow2 -O raw %s %s", path, ref);
    nbd_server_start_bitmap(&s, path, "qcow2", "b0");
    src = vs_source_open_nbd_bitmap(s.uri, "qemu:dirty-bitmap:b0", &err);
    g_assert_no_error(err);
    vs_copy_options_init(&opts);
    opts.previous = &full;
    opts.readers = 2;
    copy_ok(src, repo, &inc, &opts);
    /* Chunk 2 (a changed half inside old data) and chunk 40 (new), whole. */
    g_assert_cmpuint(inc.bytes_read, ==, 2 * MiB);
    g_assert_cmpuint(inc.chunks->len, ==, 13);
    assert_roundtrip(repo, &inc, ref);

    /* A previous backup of another size shares nothing: refused. */
    odd.virtual_size = 32 * MiB;
    odd.chunks = g_array_new(FALSE, FALSE, sizeof(VsChunkRef));
    opts.previous = &odd;
    g_assert_false(vs_copy_source_to_repo(src, repo, &inc, &opts, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_clear_error(&err);
    g_clear_pointer(&src, vs_source_close);

    /* A bitmap the server does not offer is an error, never "all unchanged". */
    src = vs_source_open_nbd_bitmap(s.uri, "qemu:dirty-bitmap:nope", &err);
    g_assert_null(src);
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
    nbd_server_stop(&s);
    disk_clear(&full);
    disk_clear(&inc);
    disk_clear(&odd);
}

/* ------------------------------------------------------------------------- */
/* Push-mode targets (qcow2 written by a backup job)                         */

/* A full target (every cluster written, some as zero clusters) reads as what
 * qemu-img says it holds; an incremental target (only changed clusters, and a
 * backing file that is NOT the backup's instant) becomes, with the previous
 * backup, exactly the changed disk: chunks partly changed are built from the
 * previous chunk, zeroed clusters count as changes, and the backing file is
 * never read. */
static void
test_push_target(void)
{
    g_autofree char *disk = tmp("push-disk.qcow2"), *ref = tmp("push-ref.raw");
    g_autofree char *ftarget = tmp("push-full.qcow2"), *fref = tmp("push-full.raw");
    g_autofree char *delta = tmp("push-delta.qcow2");
    const char *changes = "-c 'write -q -P 0x33 2M 512k' -c 'write -q -z 5M 64k' "
                          "-c 'write -q -P 0x44 40M 1M' -c 'write -q -P 0x55 50M 64k' "
                          "-c 'write -q -z 32M 1M'";
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = NULL;
    g_autoptr(VsRepo) repo = new_repo("repo-push");
    VsManifestDisk full = { 0 }, inc = { 0 }, ffull = { 0 };
    VsCopyOptions opts;
    g_autoptr(GArray) ext = g_array_new(FALSE, FALSE, sizeof(VsExtent));
    char buf[512];

    /* The full target: data, zero clusters and never-written ranges (zeros). */
    run("qemu-img create -q -f qcow2 %s 64M", ftarget);
    run("qemu-io -f qcow2 -c 'write -q -P 0x11 0 8M' -c 'write -q -z 1M 1M' "
        "-c 'write -q -P 0x22 32M 4M' %s", ftarget);
    run("qemu-img convert -f qcow2 -O raw %s %s", ftarget, fref);
    src = vs_source_open_push_target(ftarget, false, &err);
    g_assert_no_error(err);
    g_assert_false(src->delta);
    assert_source_equals_file(src, fref);
    copy_ok(src, repo, &ffull, NULL);
    g_assert_cmpuint(ffull.bytes_read, ==, 11 * MiB);
    assert_roundtrip(repo, &ffull, fref);
    g_clear_pointer(&src, vs_source_close);

    /* The previous backup: the disk as it was. */
    run("qemu-img create -q -f qcow2 %s 64M", disk);
    run("qemu-io -f qcow2 -c 'write -q -P 0x11 0 8M' -c 'write -q -P 0x22 32M 4M' %s", disk);
    src = vs_source_open_image(disk, "qcow2", &err);
    g_assert_no_error(err);
    copy_ok(src, repo, &full, NULL);
    g_clear_pointer(&src, vs_source_close);

    /* The incremental target over the live disk, as libvirt makes it; then
     * the guest writes on, which the backup must not see. */
    run("qemu-img create -q -f qcow2 -b %s -F qcow2 %s", disk, delta);
    run("qemu-io -f qcow2 %s %s", changes, delta);
    run("qemu-io -f qcow2 %s %s", changes, disk);
    run("qemu-img convert -f qcow2 -O raw %s %s", disk, ref);
    run("qemu-io -f qcow2 -c 'write -q -P 0x77 0 64M' %s", disk);

    src = vs_source_open_push_target(delta, true, &err);
    g_assert_no_error(err);
    g_assert_true(src->delta);
    g_assert_true(vs_source_extents(src, 0, 4 * MiB, ext, &err));
    g_assert_no_error(err);
    g_assert_true(g_array_index(ext, VsExtent, 0).unchanged);
    /* Unchanged bytes are not in the file: reading them is an error, not zeros. */
    g_assert_false(vs_source_pread(src, buf, sizeof buf, 0, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_test_message("%s", err->message);
    g_clear_error(&err);
    /* ... and a delta without the backup it counts from is refused. */
    g_assert_false(vs_copy_source_to_repo(src, repo, &inc, NULL, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_clear_error(&err);

    vs_copy_options_init(&opts);
    opts.previous = &full;
    copy_ok(src, repo, &inc, &opts);
    /* Only the changed data: 512k + 1M + 64k, never the zeroed clusters. */
    g_assert_cmpuint(inc.bytes_read, ==, 512 * 1024 + MiB + 64 * 1024);
    assert_roundtrip(repo, &inc, ref);
    g_clear_pointer(&src, vs_source_close);

    /* What a backup job never writes is refused, never misread. */
    run("qemu-img create -q -f qcow2 %s 64M", ftarget);
    run("qemu-io -f qcow2 -c 'write -q -c -P 0x66 0 64k' %s", ftarget);
    src = vs_source_open_push_target(ftarget, false, &err);
    g_assert_no_error(err);
    g_array_set_size(ext, 0);
    g_assert_false(vs_source_extents(src, 0, MiB, ext, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_UNSUPPORTED);
    g_clear_error(&err);
    g_clear_pointer(&src, vs_source_close);
    g_assert_null(vs_source_open_push_target(fref, false, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(err->message, "not a qcow2"));
    g_clear_error(&err);
    g_assert_null(vs_source_open_push_target(tmp("push-none.qcow2"), false, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
    g_clear_error(&err);

    /* An empty terabyte with one cluster written near its end: a few extents,
     * at once, and nothing but that cluster read. */
    run("qemu-img create -q -f qcow2 %s 1T", ftarget);
    run("qemu-io -f qcow2 -c 'write -q -P 0x12 1023G 64k' %s", ftarget);
    src = vs_source_open_push_target(ftarget, true, &err);
    g_assert_no_error(err);
    g_array_set_size(ext, 0);
    g_assert_true(vs_source_extents(src, 0, vs_source_size(src), ext, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(ext->len, ==, 3);
    g_assert_true(g_array_index(ext, VsExtent, 0).unchanged);
    g_assert_cmpuint(g_array_index(ext, VsExtent, 0).length, ==, 1023 * 1024 * MiB);
    g_assert_false(g_array_index(ext, VsExtent, 1).unchanged);
    g_assert_false(g_array_index(ext, VsExtent, 1).zero);
    g_assert_cmpuint(g_array_index(ext, VsExtent, 1).length, ==, 64 * 1024);
    g_assert_true(g_array_index(ext, VsExtent, 2).unchanged);
    g_assert_true(vs_source_pread(src, buf, sizeof buf, 1023 * 1024 * MiB, &err));
    g_assert_no_error(err);
    g_assert_cmpint(buf[0], ==, 0x12);
    g_clear_pointer(&src, vs_source_close);
    disk_clear(&full);
    disk_clear(&inc);
    disk_clear(&ffull);
}

static void
test_copy_sparse(void)
{
    g_autofree char *path = make_sparse("copy.raw", 64 * MiB, sparse_ranges, G_N_ELEMENTS(sparse_ranges));
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = vs_source_open_file(path, &err);
    g_autoptr(VsRepo) repo = new_repo("repo-sparse");
    VsManifestDisk disk = { 0 };
    VsCopyOptions opts;
    uint64_t bytes_read;

    g_assert_no_error(err);
    copy_ok(src, repo, &disk, NULL);
    g_assert_cmpuint(disk.bytes_stored, >, 0);
    g_assert_cmpuint(disk.bytes_stored, <, 2 * MiB);
    assert_sparse_chunks(&disk);
    bytes_read = disk.bytes_read;
    assert_roundtrip(repo, &disk, path);
    disk_clear(&disk);

    /* The same through reader threads on clones of the file, few slots. */
    vs_copy_options_init(&opts);
    opts.readers = 3;
    opts.max_inflight = 4;
    copy_ok(src, repo, &disk, &opts);
    assert_sparse_chunks(&disk);
    g_assert_cmpuint(disk.bytes_read, ==, bytes_read);
    g_assert_cmpuint(disk.bytes_stored, ==, 0);
    assert_roundtrip(repo, &disk, path);
    disk_clear(&disk);
}

static void
assert_sparse_chunks(const VsManifestDisk *disk)
{
    uint64_t data = 0;

    g_assert_cmpuint(disk->chunks->len, ==, G_N_ELEMENTS(sparse_chunks));
    for (guint i = 0; i < disk->chunks->len; i++) {
        VsChunkRef *c = &g_array_index(disk->chunks, VsChunkRef, i);
        g_assert_cmpuint(c->offset, ==, sparse_chunks[i] * MiB);
        g_assert_cmpuint(c->length, ==, MiB);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(sparse_ranges); i++)
        data += sparse_ranges[i].length;
    /* Only the data spans were read (to filesystem block granularity), not the
     * holes around them nor the 59 empty chunks. */
    g_assert_cmpuint(disk->bytes_read, >=, data);
    g_assert_cmpuint(disk->bytes_read, <=, data + 16 * 4096);
}

static void
test_copy_odd_size(void)
{
    /* Not a multiple of the chunk size; all data (a file without holes); one
     * chunk written as zeros, which must be found by the zero check. */
    g_autofree char *path = tmp("odd.raw");
    g_autofree char *buf = g_malloc(5 * MiB + 123);
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = NULL;
    g_autoptr(VsRepo) repo = new_repo("repo-odd");
    VsManifestDisk disk = { 0 };
    VsChunkRef *last;

    fill_random(buf, 5 * MiB + 123, 7);
    memset(buf + 2 * MiB, 0, MiB);
    g_assert_true(g_file_set_contents(path, buf, 5 * MiB + 123, NULL));
    src = vs_source_open_file(path, &err);
    g_assert_no_error(err);
    copy_ok(src, repo, &disk, NULL);
    g_assert_cmpuint(disk.chunks->len, ==, 5);   /* 0, 1, 3, 4, 5; not 2 */
    g_assert_cmpuint(g_array_index(disk.chunks, VsChunkRef, 2).offset, ==, 3 * MiB);
    last = &g_array_index(disk.chunks, VsChunkRef, 4);
    g_assert_cmpuint(last->offset, ==, 5 * MiB);
    g_assert_cmpuint(last->length, ==, 123);
    g_assert_cmpuint(disk.bytes_read, ==, 5 * MiB + 123);
    assert_roundtrip(repo, &disk, path);
    disk_clear(&disk);
}

static void
test_copy_empty(void)
{
    g_autofree char *path = make_sparse("empty.raw", UINT64_C(1) << 40, NULL, 0);  /* 1 TiB hole */
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = vs_source_open_file(path, &err);
    g_autoptr(VsRepo) repo = new_repo("repo-empty");
    VsManifestDisk disk = { 0 };

    g_assert_no_error(err);
    copy_ok(src, repo, &disk, NULL);
    g_assert_cmpuint(disk.chunks->len, ==, 0);
    g_assert_cmpuint(disk.bytes_read, ==, 0);
    g_assert_cmpuint(disk.bytes_stored, ==, 0);
    g_assert_cmpuint(disk.virtual_size, ==, UINT64_C(1) << 40);
    disk_clear(&disk);
}

static void
test_copy_chain_roundtrip(void)
{
    g_autofree char *top = make_chain();
    g_autofree char *flat = tmp("flat2.raw");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = NULL;
    g_autoptr(VsRepo) repo = new_repo("repo-chain");
    VsManifestDisk disk = { 0 };
    VsCopyOptions opts;

    run("qemu-img convert -f qcow2 -O raw %s %s", top, flat);
    src = vs_source_open_image(top, "qcow2", &err);
    g_assert_no_error(err);
    vs_copy_options_init(&opts);
    opts.max_inflight = 3;     /* fewer slots than chunks with data: slots are reused */
    opts.threads = 2;
    copy_ok(src, repo, &disk, &opts);
    /* [0,3M) and 40M and 63M hold data; 2M..2.5M zeroed but 2.5M..3M is base data. */
    g_assert_cmpuint(disk.chunks->len, ==, 5);
    assert_roundtrip(repo, &disk, flat);
    disk_clear(&disk);
}

/* The whole path a backup takes: image source, engine, manifest committed and
 * loaded back, exported by the repository as raw and as qcow2; both exports
 * equal qemu-img's flattening of the chain. */
static void
test_copy_export(void)
{
    g_autofree char *top = make_chain();
    g_autofree char *flat = tmp("flat3.raw");
    g_autofree char *out_raw = tmp("export.raw"), *out_qcow2 = tmp("export.qcow2");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = NULL;
    g_autoptr(VsRepo) repo = new_repo("repo-export");
    g_autoptr(VsManifest) m = vs_manifest_new();
    g_autoptr(VsManifest) loaded = NULL;
    VsManifestDomain *dom = vs_manifest_add_domain(m, "guest");
    VsManifestDisk *disk = vs_manifest_domain_add_disk(dom, "vda");

    run("qemu-img convert -f qcow2 -O raw %s %s", top, flat);
    src = vs_source_open_image(top, "qcow2", &err);
    g_assert_no_error(err);
    disk->format = g_strdup("qcow2");
    disk->source = g_strdup(top);
    copy_ok(src, repo, disk, NULL);
    g_assert_true(vs_repo_commit_manifest(repo, m, &err));
    g_assert_no_error(err);
    loaded = vs_repo_load_manifest(repo, "latest", &err);
    g_assert_no_error(err);
    g_assert_true(vs_repo_export_disk(repo, loaded, "guest", "vda", out_raw, "raw", &err));
    g_assert_no_error(err);
    run("cmp %s %s", flat, out_raw);
    g_assert_true(vs_repo_export_disk(repo, loaded, "guest", "vda", out_qcow2, NULL, &err));
    g_assert_no_error(err);
    run("qemu-img compare -q -f raw -F qcow2 %s %s", flat, out_qcow2);
}

static void
test_copy_dedup(void)
{
    static const Range r[] = { { 0, 3 * MiB }, { 8 * MiB, 2 * MiB } };
    g_autofree char *path = make_sparse("dedup.raw", 16 * MiB, r, G_N_ELEMENTS(r));
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = vs_source_open_file(path, &err);
    g_autoptr(VsRepo) repo = new_repo("repo-dedup");
    VsManifestDisk a = { 0 }, b = { 0 };

    g_assert_no_error(err);
    copy_ok(src, repo, &a, NULL);
    g_assert_cmpuint(a.bytes_stored, >, 5 * MiB - 1);   /* random data does not compress */
    copy_ok(src, repo, &b, NULL);
    g_assert_cmpuint(b.bytes_stored, ==, 0);
    g_assert_cmpuint(b.bytes_read, ==, a.bytes_read);
    g_assert_cmpuint(a.chunks->len, ==, 5);
    g_assert_cmpuint(b.chunks->len, ==, a.chunks->len);
    for (guint i = 0; i < a.chunks->len; i++) {
        VsChunkRef *x = &g_array_index(a.chunks, VsChunkRef, i), *y = &g_array_index(b.chunks, VsChunkRef, i);
        g_assert_cmpuint(x->offset, ==, y->offset);
        g_assert_cmpuint(x->length, ==, y->length);
        g_assert_true(memcmp(&x->digest, &y->digest, sizeof x->digest) == 0);
    }
    disk_clear(&a);
    disk_clear(&b);
}

static guint
count_threads(void)
{
    g_autoptr(GDir) d = g_dir_open("/proc/self/task", 0, NULL);
    guint n = 0;

    while (g_dir_read_name(d))
        n++;
    return n;
}

/* The engine's threads are idle once it returns: GLib's spare threads can be
 * stopped (each exits when it next waits, so ask again until all have). */
static void
assert_threads_back_to(guint before)
{
    for (int i = 0; i < 400 && count_threads() > before; i++) {
        g_thread_pool_stop_unused_threads();
        g_usleep(5000);
    }
    g_assert_cmpuint(count_threads(), <=, before);
}

typedef struct {
    uint64_t last, total, calls;
    bool monotonic;
} Progress;

static void
on_progress(uint64_t done, uint64_t total, void *opaque)
{
    Progress *p = opaque;

    if (done < p->last || done > total)
        p->monotonic = false;
    p->last = done;
    p->total = total;
    p->calls++;
}

static void
test_copy_fault(void)
{
    static const Range r[] = { { 0, 8 * MiB } };
    g_autofree char *path = make_sparse("fault.raw", 8 * MiB, r, 1);
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = vs_source_open_file(path, &err);
    g_autoptr(VsRepo) repo = new_repo("repo-fault");
    VsManifestDisk disk = { 0 };
    VsCopyOptions opts;
    Progress p = { .monotonic = true };
    guint threads = count_threads();

    g_assert_no_error(err);
    vs_copy_options_init(&opts);
    opts.fault_after_bytes = 3 * MiB;
    opts.progress = on_progress;
    opts.progress_opaque = &p;
    g_assert_false(vs_copy_source_to_repo(src, repo, &disk, &opts, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_IO);
    g_assert_true(g_str_has_prefix(err->message, "copy: "));
    g_assert_nonnull(strstr(err->message, path));
    g_assert_null(disk.chunks);   /* nothing filled in on failure */
    g_assert_true(p.monotonic);
    g_assert_cmpuint(p.last, <=, 3 * MiB);
    g_clear_error(&err);
    assert_threads_back_to(threads);

    /* Progress on success: monotonic, ends at the total. */
    p = (Progress) { .monotonic = true };
    opts.fault_after_bytes = 0;
    copy_ok(src, repo, &disk, &opts);
    g_assert_true(p.monotonic);
    g_assert_cmpuint(p.last, ==, 8 * MiB);
    g_assert_cmpuint(p.total, ==, 8 * MiB);
    g_assert_cmpuint(p.calls, >=, 2);
    disk_clear(&disk);
}

/* A worker's error (here: a repository opened read-only) stops the copy and
 * comes back with the chunk and the source named. */
static void
test_copy_repo_error(void)
{
    static const Range r[] = { { 0, 8 * MiB } };
    g_autofree char *path = make_sparse("ro.raw", 8 * MiB, r, 1);
    g_autofree char *repo_path = tmp("repo-ro");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = vs_source_open_file(path, &err);
    g_autoptr(VsRepo) repo = new_repo("repo-ro");
    VsManifestDisk disk = { 0 };
    VsCopyOptions opts;
    guint threads = count_threads();

    g_assert_no_error(err);
    g_clear_pointer(&repo, vs_repo_close);
    repo = vs_repo_open(repo_path, false, false, 0, &err);
    g_assert_no_error(err);
    vs_copy_options_init(&opts);
    opts.readers = 2;
    g_assert_false(vs_copy_source_to_repo(src, repo, &disk, &opts, &err));
    g_assert_nonnull(err);
    g_test_message("%s", err->message);
    g_assert_true(g_str_has_prefix(err->message, "copy: "));
    g_assert_nonnull(strstr(err->message, path));
    g_assert_nonnull(strstr(err->message, "repo"));
    g_assert_null(disk.chunks);
    assert_threads_back_to(threads);
}

typedef struct {
    uint64_t at;
    bool fired;
    const char *truncate;      /* path to cut to 0 */
    GPid kill_pid;             /* or a process to kill */
    bool kill_qemu_nbd_child;  /* or our qemu-nbd child */
} Vanish;

static void
vanish_progress(uint64_t done, uint64_t total, void *opaque)
{
    Vanish *v = opaque;

    if (v->fired || done < v->at)
        return;
    v->fired = true;
    if (v->truncate)
        g_assert_cmpint(truncate(v->truncate, 0), ==, 0);
    if (v->kill_pid > 0)
        kill(v->kill_pid, SIGKILL);
    if (v->kill_qemu_nbd_child) {
        /* The image's server and those of the engine's reader clones. */
        g_autoptr(GArray) pids = qemu_nbd_children();
        g_assert_cmpuint(pids->len, >=, 1);
        for (guint i = 0; i < pids->len; i++)
            kill(g_array_index(pids, pid_t, i), SIGKILL);
    }
}

static void
copy_must_fail(VsSource *src, const char *name, Vanish *v, const char *expect)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VsRepo) repo = new_repo(name);
    VsManifestDisk disk = { 0 };
    VsCopyOptions opts;
    gint64 t0 = g_get_monotonic_time();

    vs_copy_options_init(&opts);
    opts.progress = vanish_progress;
    opts.progress_opaque = v;
    g_assert_false(vs_copy_source_to_repo(src, repo, &disk, &opts, &err));
    g_assert_true(v->fired);
    g_assert_error(err, VS_ERROR, VS_ERROR_IO);
    g_test_message("%s", err->message);
    g_assert_true(g_str_has_prefix(err->message, "copy: "));
    g_assert_nonnull(strstr(err->message, src->description));
    g_assert_nonnull(strstr(err->message, expect));
    g_assert_cmpint(g_get_monotonic_time() - t0, <, 30 * G_USEC_PER_SEC);
    g_assert_null(disk.chunks);
}

static void
test_vanish_file(void)
{
    static const Range r[] = { { 0, 32 * MiB } };
    g_autofree char *path = make_sparse("vanish.raw", 32 * MiB, r, 1);
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = vs_source_open_file(path, &err);
    Vanish v = { .at = 4 * MiB, .truncate = path };

    g_assert_no_error(err);
    copy_must_fail(src, "repo-vanish-file", &v, "shrank");
}

static void
test_vanish_nbd(void)
{
    static const Range r[] = { { 0, 64 * MiB } };
    g_autofree char *path = make_sparse("vanish-nbd.raw", 64 * MiB, r, 1);
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = NULL;
    NbdServer s = { 0 };
    Vanish v = { .at = 4 * MiB };

    nbd_server_start(&s, path, "raw");
    src = vs_source_open_nbd_uri(s.uri, &err);
    g_assert_no_error(err);
    v.kill_pid = s.pid;
    copy_must_fail(src, "repo-vanish-nbd", &v, "read at offset");
    g_clear_pointer(&src, vs_source_close);
    nbd_server_stop(&s);
}

static void
test_vanish_image(void)
{
    g_autofree char *path = tmp("vanish.qcow2");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = NULL;
    Vanish v = { .at = 4 * MiB, .kill_qemu_nbd_child = true };

    run("qemu-img create -q -f qcow2 %s 64M", path);
    run("qemu-io -f qcow2 -c 'write -q -P 0x5a 0 64M' %s", path);
    src = vs_source_open_image(path, "qcow2", &err);
    g_assert_no_error(err);
    copy_must_fail(src, "repo-vanish-image", &v, "read at offset");
    g_clear_pointer(&src, vs_source_close);
    assert_no_qemu_nbd();
}

/* ------------------------------------------------------------------------- */
/* The mapped image source                                                   */

/* raw base: 0x77 over [8M, 10M); mid (qcow2): 0xaa over [0, 3M), a compressed
 * cluster of 0x33 at 30M, 0x11 at 40M; top (qcow2): 0xbb over [1M, 2M), zeros
 * over [2M, 2.5M) hiding mid's data, 0xcc at the last MiB. Every kind of range
 * qemu-img map reports: data at each depth, zero, unallocated, and data with no
 * file offset (compressed). */
static char *
make_mapped_chain(const char *name)
{
    g_autofree char *base = tmp("m-base.raw");
    g_autofree char *mid = tmp("m-mid.qcow2");
    char *top = tmp(name);

    run("qemu-img create -q -f raw %s 64M", base);
    run("qemu-io -f raw -c 'write -q -P 0x77 8M 2M' %s", base);
    run("qemu-img create -q -f qcow2 -b m-base.raw -F raw %s", mid);
    run("qemu-io -f qcow2 -c 'write -q -P 0xaa 0 3M' -c 'write -q -c -P 0x33 30M 64k' "
        "-c 'write -q -P 0x11 40M 512k' %s", mid);
    run("qemu-img create -q -f qcow2 -b m-mid.qcow2 -F qcow2 %s", top);
    run("qemu-io -f qcow2 -c 'write -q -P 0xbb 1M 1M' -c 'write -q -z 2M 512k' "
        "-c 'write -q -P 0xcc 63M 1M' %s", top);
    return top;
}

static void
test_mapped_chain(void)
{
    g_autofree char *top = make_mapped_chain("m-top.qcow2");
    g_autofree char *flat = tmp("m-flat.raw");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = NULL;
    g_autoptr(GArray) ext = NULL;
    g_autofree char *a = g_malloc(3 * MiB), *b = g_malloc(3 * MiB);
    int fd;

    run("qemu-img convert -f qcow2 -O raw %s %s", top, flat);
    src = vs_source_open_mapped(top, "qcow2", &err);
    g_assert_no_error(err);
    g_assert_cmpstr(src->ops->name, ==, "image");
    g_assert_cmpuint(vs_source_size(src), ==, 64 * MiB);
    /* Walked front to back, as the engine does: every zero extent is zero. */
    ext = all_extents(src, flat);
    g_assert_true(covered_by_data(ext, 0, MiB));            /* mid */
    g_assert_true(covered_by_data(ext, MiB, MiB));          /* top */
    g_assert_true(covered_by_data(ext, 8 * MiB, 2 * MiB));      /* the raw base */
    g_assert_true(covered_by_data(ext, 30 * MiB, 64 * 1024));   /* compressed */
    g_assert_true(covered_by_data(ext, 63 * MiB, MiB));
    g_assert_false(covered_by_data(ext, 2 * MiB, 4096));
    g_assert_false(covered_by_data(ext, 20 * MiB, 4096));
    /* Read without asking for extents first, and again: each range asks qemu-img. */
    assert_source_equals_file(src, flat);
    assert_source_equals_file(src, flat);
    /* Odd, unaligned reads straddling every kind of range. */
    fd = open(flat, O_RDONLY);
    g_assert_cmpint(fd, >=, 0);
    for (uint64_t off = 0; off + 3 * MiB <= 64 * MiB; off += 3 * MiB + 4097) {
        g_assert_true(vs_source_pread(src, a, 3 * MiB - 13, off, &err));
        g_assert_no_error(err);
        g_assert_cmpint(pread(fd, b, 3 * MiB - 13, (off_t)off), ==, (ssize_t)(3 * MiB - 13));
        g_assert_true(memcmp(a, b, 3 * MiB - 13) == 0);
    }
    close(fd);
    g_assert_false(vs_source_pread(src, a, 2, 64 * MiB - 1, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_clear_error(&err);

    /* The compressed cluster's qemu-nbd goes with the last handle. */
    assert_clone_reads_then_close(&src, flat);
}

/* The engine with two reader threads over the mapped source stores exactly
 * what qemu-img's flattening holds, and export gives it back. */
static void
test_mapped_copy(void)
{
    g_autofree char *top = make_mapped_chain("m-top2.qcow2");
    g_autofree char *flat = tmp("m-flat2.raw");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = NULL;
    g_autoptr(VsRepo) repo = new_repo("repo-mapped");
    VsManifestDisk disk = { 0 };
    VsCopyOptions opts;

    run("qemu-img convert -f qcow2 -O raw %s %s", top, flat);
    src = vs_source_open_mapped(top, "qcow2", &err);
    g_assert_no_error(err);
    vs_copy_options_init(&opts);
    opts.max_inflight = 3;
    opts.readers = 2;
    copy_ok(src, repo, &disk, &opts);
    /* 0, 1M and 2M; 8M and 9M; 30M, 40M, 63M. */
    g_assert_cmpuint(disk.chunks->len, ==, 8);
    assert_roundtrip(repo, &disk, flat);
    disk_clear(&disk);
    g_clear_pointer(&src, vs_source_close);
    assert_no_qemu_nbd();
}

/* Chains whose file offsets are not plain data are refused as unsupported
 * (the caller then uses the image source); a missing image is an error. */
static void
test_mapped_unsupported(void)
{
    g_autofree char *enc = tmp("m-enc.qcow2");
    g_autofree char *dfile = tmp("m-dfile.qcow2"), *dfile_data = tmp("m-dfile.data");
    g_autofree char *missing = tmp("m-missing.qcow2");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = NULL;

    /* LUKS times its key derivation on the thread's CPU clock, which a busy
     * machine sometimes fails ("Unable to get accurate CPU usage"): try again. */
    run("sh -c 'for i in 1 2 3 4 5; do qemu-img create -q --object secret,id=s0,data=sekrit -f qcow2 "
        "-o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 %s 16M && exit 0; "
        "sleep 0.2; done; exit 1'", enc);
    src = vs_source_open_mapped(enc, "qcow2", &err);
    g_assert_null(src);
    g_assert_error(err, VS_ERROR, VS_ERROR_UNSUPPORTED);
    g_assert_nonnull(strstr(err->message, enc));
    g_clear_error(&err);

    run("qemu-img create -q -f qcow2 -o data_file=%s %s 16M", dfile_data, dfile);
    src = vs_source_open_mapped(dfile, "qcow2", &err);
    g_assert_null(src);
    g_assert_error(err, VS_ERROR, VS_ERROR_UNSUPPORTED);
    g_clear_error(&err);

    src = vs_source_open_mapped(missing, "qcow2", &err);
    g_assert_null(src);
    g_assert_nonnull(err);
    g_assert_false(g_error_matches(err, VS_ERROR, VS_ERROR_UNSUPPORTED));
    g_assert_true(g_str_has_prefix(err->message, "image: "));
    g_assert_nonnull(strstr(err->message, missing));
}

/* A chain cut short under the reader is an error naming the image, never zeros. */
static void
test_vanish_mapped(void)
{
    g_autofree char *path = tmp("vanish-m.qcow2");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = NULL;
    Vanish v = { .at = 4 * MiB, .truncate = path };

    run("qemu-img create -q -f qcow2 %s 64M", path);
    run("qemu-io -f qcow2 -c 'write -q -P 0x5a 0 64M' %s", path);
    src = vs_source_open_mapped(path, "qcow2", &err);
    g_assert_no_error(err);
    copy_must_fail(src, "repo-vanish-mapped", &v, "read at offset");
}

static uint64_t
vm_hwm_kib(void)
{
    g_autofree char *status = NULL;
    const char *p;

    g_assert_true(g_file_get_contents("/proc/self/status", &status, NULL, NULL));
    p = strstr(status, "VmHWM:");
    g_assert_nonnull(p);
    return g_ascii_strtoull(p + 6, NULL, 10);
}

/* 1 GiB with ~300 MiB of random data in 3 MiB runs every 10 MiB. */
static void
test_copy_rss(void)
{
    g_autofree char *path = tmp("big.raw");
    g_autofree char *buf = g_malloc(MiB);
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) src = NULL;
    g_autoptr(VsRepo) repo = new_repo("repo-rss");
    VsManifestDisk disk = { 0 };
    uint64_t data = 0, hwm;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, 1024 * MiB), ==, 0);
    for (uint64_t i = 0; i < 1024; i++) {
        if (i % 10 >= 3)
            continue;
        fill_random(buf, MiB, i + 1);
        pwrite_all(fd, buf, MiB, i * MiB);
        data += MiB;
    }
    g_assert_cmpint(close(fd), ==, 0);
    /* The peak of this copy, not of the tests before it (their servers' buffers,
     * freed since): "5" resets VmHWM to the current RSS. */
    fd = open("/proc/self/clear_refs", O_WRONLY);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(write(fd, "5", 1), ==, 1);
    close(fd);
    src = vs_source_open_file(path, &err);
    g_assert_no_error(err);
    copy_ok(src, repo, &disk, NULL);
    g_assert_cmpuint(disk.bytes_read, ==, data);
    g_assert_cmpuint(disk.chunks->len, ==, data / MiB);
    hwm = vm_hwm_kib();
    g_test_message("copied %" G_GUINT64_FORMAT " MiB of data, VmHWM %" G_GUINT64_FORMAT " KiB",
                   data / MiB, hwm);
    g_assert_cmpuint(hwm, <, 64 * 1024);
    disk_clear(&disk);
    unlink(path);
}

/* The file sink: data lands where written, zero buffers become holes (over
 * data written before, too), a write past the end or on a read-only source is
 * refused before anything changes, truncate sets the size. */
static void
test_file_sink(void)
{
    g_autofree char *path = tmp("sink.raw");
    g_autofree char *data = g_malloc(4 * MiB), *back = g_malloc(4 * MiB), *zeros = g_malloc0(MiB);
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) ro = NULL;
    g_autoptr(VsSource) sink = vs_source_open_file_rw(path, 16 * MiB, &err);
    struct stat st;

    g_assert_no_error(err);
    g_assert_cmpuint(vs_source_size(sink), ==, 16 * MiB);
    fill_random(data, 4 * MiB, 7);
    g_assert_true(vs_source_pwrite(sink, data, 4 * MiB, 2 * MiB, &err));
    g_assert_no_error(err);
    /* zeros over the second MiB just written: a hole, not written blocks */
    g_assert_true(vs_source_pwrite(sink, zeros, MiB, 3 * MiB, &err));
    g_assert_no_error(err);
    memset(data + MiB, 0, MiB);
    g_assert_true(vs_source_flush(sink, &err));
    g_assert_no_error(err);
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_blocks * 512, <=, 3 * MiB + 64 * 1024);

    g_assert_false(vs_source_pwrite(sink, data, 2 * MiB, 15 * MiB, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(err->message, "beyond its size of 16777216 bytes (nothing written)"));
    g_clear_error(&err);
    g_assert_false(vs_sink_check_size(sink, 16 * MiB + 1, &err));
    g_assert_nonnull(strstr(err->message, "too small: 16777216 bytes, 16777217 needed"));
    g_clear_error(&err);

    g_assert_true(vs_source_pread(sink, back, 4 * MiB, 2 * MiB, &err));
    g_assert_no_error(err);
    g_assert_cmpmem(back, 4 * MiB, data, 4 * MiB);
    g_assert_true(vs_source_truncate(sink, 8 * MiB, &err));
    g_assert_no_error(err);
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, 8 * MiB);
    g_assert_cmpuint(vs_source_size(sink), ==, 8 * MiB);

    ro = vs_source_open_file(path, &err);
    g_assert_no_error(err);
    g_assert_false(vs_source_pwrite(ro, data, MiB, 0, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(err->message, "file: pwrite: "));
    g_assert_nonnull(strstr(err->message, "opened read-only"));
    g_clear_error(&err);
    /* untouched by the refused write */
    g_assert_true(vs_source_pread(ro, back, MiB, 2 * MiB, &err));
    g_assert_cmpmem(back, MiB, data, MiB);
}

/* The URL dispatcher: plain paths and file:// reach the file source; an
 * unknown scheme and a writable NBD URL are refused by name. */
static void
test_open_url(void)
{
    g_autofree char *path = tmp("url.raw");
    g_autofree char *uri = g_filename_to_uri(path, NULL, NULL);
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSource) a = NULL, b = NULL;

    run("truncate -s 1M %s", path);
    a = vs_source_open_url(path, NULL, false, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(a->ops->name, ==, "file");
    b = vs_source_open_url(uri, NULL, true, &err);
    g_assert_no_error(err);
    g_assert_true(b->writable);
    g_assert_cmpuint(vs_source_size(b), ==, MiB);
    g_assert_null(vs_source_open_url("gopher://x/y", NULL, false, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_UNSUPPORTED);
    g_clear_error(&err);
    g_assert_null(vs_source_open_url("nbd+unix:///?socket=/nonexistent", NULL, true, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_UNSUPPORTED);
    g_assert_nonnull(strstr(err->message, "read-only"));
}

/* A server that is not there is VS_ERROR_UNREACHABLE, told from the socket
 * (port 1 on 127.0.0.1 refuses at once), with the hint the user reads. */
static void
test_net_unreachable(void)
{
    g_autoptr(GError) err = NULL;

    g_assert_null(vs_source_open_url("nfs://127.0.0.1/e/d.img?nfsport=1&mountport=1", NULL, false,
                                     &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_UNREACHABLE);
    g_assert_nonnull(strstr(err->message, "(server unreachable, or no NFS server there)"));
    g_clear_error(&err);
    g_assert_null(vs_source_open_url("nfs://127.0.0.1/e/d.img?version=4&nfsport=1", NULL, false,
                                     &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_UNREACHABLE);
    g_clear_error(&err);
    g_assert_null(vs_source_open_url("iscsi://127.0.0.1:1/iqn.2020-01.org.example:t/0", NULL, false,
                                     &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_UNREACHABLE);
    g_assert_nonnull(strstr(err->message, "cannot connect to the portal 127.0.0.1:1"));
}

int
main(int argc, char **argv)
{
    int rc;

    g_test_init(&argc, &argv, NULL);
    /* A dead qemu-nbd must show up as an error, not kill the test. */
    signal(SIGPIPE, SIG_IGN);
    tmpdir = g_dir_make_tmp("vs-source-XXXXXX", NULL);
    g_assert_nonnull(tmpdir);

    g_test_add_func("/source/file/extents", test_file_extents);
    g_test_add_func("/source/file/errors", test_file_errors);
    g_test_add_func("/source/file/sink", test_file_sink);
    g_test_add_func("/source/open-url", test_open_url);
    g_test_add_func("/source/net/unreachable", test_net_unreachable);
    g_test_add_func("/source/image/qcow2-chain", test_image_chain);
    g_test_add_func("/source/image/errors", test_image_errors);
    g_test_add_func("/source/image/locked-base", test_image_locked);
    g_test_add_func("/source/mapped/chain", test_mapped_chain);
    g_test_add_func("/source/mapped/copy", test_mapped_copy);
    g_test_add_func("/source/mapped/unsupported", test_mapped_unsupported);
    g_test_add_func("/source/push-target", test_push_target);
    g_test_add_func("/source/nbd/uri", test_nbd_uri);
    g_test_add_func("/copy/sparse", test_copy_sparse);
    g_test_add_func("/copy/odd-size", test_copy_odd_size);
    g_test_add_func("/copy/empty-1tib", test_copy_empty);
    g_test_add_func("/copy/chain-roundtrip", test_copy_chain_roundtrip);
    g_test_add_func("/copy/export", test_copy_export);
    g_test_add_func("/copy/dedup", test_copy_dedup);
    g_test_add_func("/copy/incremental", test_copy_incremental);
    g_test_add_func("/copy/fault", test_copy_fault);
    g_test_add_func("/copy/repo-error", test_copy_repo_error);
    g_test_add_func("/copy/vanish/file", test_vanish_file);
    g_test_add_func("/copy/vanish/nbd", test_vanish_nbd);
    g_test_add_func("/copy/vanish/image", test_vanish_image);
    g_test_add_func("/copy/vanish/mapped", test_vanish_mapped);
    g_test_add_func("/rss/copy-1gib", test_copy_rss);
    rc = g_test_run();
    /* No thread alive at exit, for valgrind's sake. */
    assert_threads_back_to(1);
    run("rm -rf %s", tmpdir);
    g_free(tmpdir);
    return rc;
}
