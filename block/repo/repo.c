/* The repository's storage layer: opening (and on request initialising) the
 * directory, content-addressed chunks in and out, and the shared lock that keeps
 * garbage collection away from running backups. Every file that appears in the
 * repository is written whole to REPO/tmp first, made durable, then renamed into
 * place, so a reader, a concurrent writer or a crash only ever sees complete
 * files; a failed write (a full disk above all) removes its temp file and leaves
 * nothing. Chunks are made durable in batches: put_chunk writes the temp file
 * without fsync and records it as pending, and a flush (every REPO_FLUSH_BYTES,
 * on a flusher thread so that the writers never wait for the disk, and before
 * every commit, waited for) makes all pending temp files durable with one
 * syncfs(2) before renaming any of them, so a chunk's final name never holds
 * bytes that a crash could lose. The layout is documented in
 * docs/repository-format.md, which is the contract: change one, change the
 * other. */
#include "config.h"
#include "repo-internal.h"
#include "vs-temp.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <zstd.h>

/* How long vs_repo_lock_shared waits for a running gc before giving up. */
#define LOCK_WAIT_US (10 * G_USEC_PER_SEC)

/* ------------------------------------------------------------------------- */
/* Digests                                                                   */

void
vs_digest_to_hex(const VsDigest *d, char out[VS_DIGEST_HEX_LEN])
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < sizeof(d->bytes); i++) {
        out[2 * i] = hex[d->bytes[i] >> 4];
        out[2 * i + 1] = hex[d->bytes[i] & 15];
    }
    out[64] = '\0';
}

static int
hex_nibble(char c)
{
    /* Lowercase only: digests name files, and a file system that distinguishes
     * case would otherwise see two names for one chunk. */
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

bool
vs_digest_from_hex(const char *hex, VsDigest *out)
{
    VsDigest d;

    if (!hex || strnlen(hex, VS_DIGEST_HEX_LEN) != VS_DIGEST_HEX_LEN - 1)
        return false;
    for (size_t i = 0; i < sizeof(d.bytes); i++) {
        int hi = hex_nibble(hex[2 * i]), lo = hex_nibble(hex[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return false;
        d.bytes[i] = (uint8_t)(hi << 4 | lo);
    }
    *out = d;
    return true;
}

/* EVP (OpenSSL's SHA-NI or AVX2 code, whatever the CPU has) through an
 * implementation fetched once and one context per thread: EVP_Digest with
 * EVP_sha256() would look the provider up and allocate a context per chunk. The
 * fetched implementation lives as long as the process. */
static GPrivate digest_ctx = G_PRIVATE_INIT((GDestroyNotify)EVP_MD_CTX_free);

void
vs_digest_compute(const void *data, size_t len, VsDigest *out)
{
    static EVP_MD *sha256;
    static gsize fetched;
    EVP_MD_CTX *ctx = g_private_get(&digest_ctx);
    unsigned int n = 0;

    /* Only an allocation failure inside OpenSSL (or an OpenSSL without
     * SHA-256) gets to g_error; like g_malloc we do not pretend to recover. */
    if (g_once_init_enter(&fetched)) {
        sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
        if (!sha256)
            g_error("repo: OpenSSL has no SHA-256");
        g_once_init_leave(&fetched, 1);
    }
    if (!ctx) {
        ctx = EVP_MD_CTX_new();
        if (!ctx)
            g_error("repo: out of memory for an OpenSSL context");
        g_private_set(&digest_ctx, ctx);
    }
    if (!EVP_DigestInit_ex2(ctx, sha256, NULL) || !EVP_DigestUpdate(ctx, data, len) ||
        !EVP_DigestFinal_ex(ctx, out->bytes, &n) || n != sizeof(out->bytes))
        g_error("repo: OpenSSL SHA-256 failed");
}

bool
vs_buffer_is_zero(const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t head = MIN(len, 16);

    for (size_t i = 0; i < head; i++)
        if (p[i])
            return false;
    /* The first 16 bytes are zero, so the buffer is zero iff it equals itself
     * shifted by 16: memcmp runs at memory speed, a byte loop does not. */
    return len <= 16 || memcmp(p, p + 16, len - 16) == 0;
}

/* ------------------------------------------------------------------------- */
/* Small POSIX helpers                                                       */

void
repo_random_hex(char *out, size_t nhex)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t buf[32];
    size_t nbytes = (nhex + 1) / 2;

    g_assert(nbytes <= sizeof(buf));
    /* getrandom rather than GRand: a forked child inherits GRand's state, and
     * two processes writing one repository must not pick the same names. */
    if (getrandom(buf, nbytes, 0) != (ssize_t)nbytes)
        for (size_t i = 0; i < nbytes; i++)
            buf[i] = (uint8_t)g_random_int();
    for (size_t i = 0; i < nhex; i++)
        out[i] = hex[i % 2 ? buf[i / 2] & 15 : buf[i / 2] >> 4];
    out[nhex] = '\0';
}

/* The loop of both: OFFSET -1 writes at the file position. */
static int
write_all_at(int fd, const void *buf, size_t len, off_t offset)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = offset < 0 ? write(fd, p, len) : pwrite(fd, p, len, offset);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (n == 0)
            return EIO;
        p += n;
        len -= (size_t)n;
        if (offset >= 0)
            offset += n;
    }
    return 0;
}

int
repo_write_all(int fd, const void *buf, size_t len)
{
    return write_all_at(fd, buf, len, -1);
}

int
repo_pwrite_all(int fd, const void *buf, size_t len, off_t offset)
{
    return offset < 0 ? EINVAL : write_all_at(fd, buf, len, offset);
}

int
repo_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int err = 0;

    if (fd < 0)
        return errno;
    if (fsync(fd) < 0)
        err = errno;
    close(fd);
    /* Some file systems cannot fsync a directory; their renames are as
     * durable as they are going to get. */
    return err == EINVAL ? 0 : err;
}

int
repo_renameat_noreplace(int olddir, const char *oldpath, int newdir, const char *newpath)
{
    struct stat st;
    int err;

    if (renameat2(olddir, oldpath, newdir, newpath, RENAME_NOREPLACE) == 0)
        return 0;
    err = errno;
    if (err != EINVAL && err != ENOSYS && err != EOPNOTSUPP)
        return err;
    /* NFS and some FUSE file systems lack RENAME_NOREPLACE; link() refuses an
     * existing name just as atomically. */
    if (linkat(olddir, oldpath, newdir, newpath, 0) == 0) {
        unlinkat(olddir, oldpath, 0);
        return 0;
    }
    err = errno;
    if (err != EPERM && err != EOPNOTSUPP && err != ENOSYS)
        return err;
    /* No hard links either (vfat, some CIFS): the check and the rename are two
     * steps, and the window between them is the best this file system allows. */
    if (fstatat(newdir, newpath, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return EEXIST;
    return renameat(olddir, oldpath, newdir, newpath) == 0 ? 0 : errno;
}

int
repo_rename_noreplace(const char *oldpath, const char *newpath)
{
    return repo_renameat_noreplace(AT_FDCWD, oldpath, AT_FDCWD, newpath);
}

/* writev until all of IOV (N entries, modified) is written; 0 or an errno. */
static int
writev_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, MIN(n, IOV_MAX));

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (w == 0)
            return EIO;
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

static int
write_temp_iov(const RepoPerms *perms, const char *dir, const char *kind, struct iovec *iov, int niov,
               bool sync, char **tmp_path)
{
    char rnd[17];
    g_autofree char *name = NULL;
    int fd, err;

    repo_random_hex(rnd, 16);
    /* KIND-PID-RANDOM@HOST.tmp: gc removes one whose maker is gone (vs-temp.h).
     * The mode before the first byte: rename keeps it, and a chunk is never
     * readable by more than the repository's owner (and group). */
    name = g_strdup_printf("%s/%s-%d-%s@%s.tmp", dir, kind, (int)getpid(), rnd, vs_temp_host());
    fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno;
    err = repo_perms_apply_fd(fd, false, perms);
    if (!err)
        err = writev_all(fd, iov, niov);
    if (!err && sync && fsync(fd) < 0)
        err = errno;
    /* Unsynced: start its write-back now all the same, so that the disk works
     * while we compute and the flush's syncfs (the last one is waited for
     * before the manifest) finds little left to write. Only a hint: what it
     * cannot do, or an error it meets, the syncfs does or reports. */
    if (!err && !sync)
        (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    /* NFS reports some write errors only at close. */
    if (close(fd) < 0 && !err)
        err = errno;
    if (err) {
        unlink(name);
        return err;
    }
    *tmp_path = g_steal_pointer(&name);
    return 0;
}

static int
write_temp(const RepoPerms *perms, const char *dir, const char *kind, const void *data, size_t len,
           bool sync, char **tmp_path)
{
    struct iovec iov = { .iov_base = (void *)data, .iov_len = len };

    return write_temp_iov(perms, dir, kind, &iov, 1, sync, tmp_path);
}

int
repo_write_temp(const RepoPerms *perms, const char *dir, const char *kind, const void *data,
                size_t len, char **tmp_path)
{
    return write_temp(perms, dir, kind, data, len, true, tmp_path);
}

/* ------------------------------------------------------------------------- */
/* Pending chunks: written to REPO/tmp, not yet durable nor in place         */

static guint
digest_hash(gconstpointer key)
{
    const VsDigest *d = key;
    guint h;

    /* SHA-256 bytes are as uniform as a hash gets. */
    memcpy(&h, d->bytes, sizeof(h));
    return h;
}

static gboolean
digest_equal(gconstpointer a, gconstpointer b)
{
    return memcmp(a, b, sizeof(VsDigest)) == 0;
}

static void
pending_free(gpointer p)
{
    RepoPending *e = p;

    g_free(e->tmp_path);
    g_free(e);
}

static GHashTable *
pending_table_new(void)
{
    /* The key is the entry's own digest, freed with the entry. */
    return g_hash_table_new_full(digest_hash, digest_equal, NULL, pending_free);
}

/* Unlinks the temp file of every entry of TABLE and empties it; TABLE is no
 * longer reachable from the repository. */
static void
discard_table(GHashTable *table)
{
    GHashTableIter it;
    RepoPending *e;

    g_hash_table_iter_init(&it, table);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&e))
        unlink(e->tmp_path);
    g_hash_table_remove_all(table);
}

/* Under repo->lock: the pending or flushing entry for DIGEST, or NULL. */
static RepoPending *
pending_lookup_locked(VsRepo *repo, const VsDigest *digest)
{
    RepoPending *e = g_hash_table_lookup(repo->pending, digest);

    if (!e && repo->flushing)
        e = g_hash_table_lookup(repo->flushing, digest);
    return e;
}

/* The temp file holding DIGEST while it is pending or being flushed, or NULL. */
static char *
pending_tmp_path(VsRepo *repo, const VsDigest *digest)
{
    RepoPending *e;
    char *path = NULL;

    g_mutex_lock(&repo->lock);
    e = pending_lookup_locked(repo, digest);
    if (e)
        path = g_strdup(e->tmp_path);
    g_mutex_unlock(&repo->lock);
    return path;
}

void
repo_test_set_flush(VsRepo *repo, uint64_t flush_bytes, guint flush_chunks, int sync_errno)
{
    g_mutex_lock(&repo->lock);
    repo->flush_bytes = flush_bytes ? flush_bytes : REPO_FLUSH_BYTES;
    repo->flush_chunks = flush_chunks ? flush_chunks : REPO_FLUSH_CHUNKS;
    repo->test_sync_errno = sync_errno;
    g_mutex_unlock(&repo->lock);
}

/* ------------------------------------------------------------------------- */
/* Open, initialise, close                                                   */

bool
repo_chunk_size_valid(uint64_t n)
{
    return n >= REPO_MIN_CHUNK_SIZE && n <= REPO_MAX_CHUNK_SIZE && (n & (n - 1)) == 0;
}

char *
repo_marker_json(uint32_t chunk_size, int64_t created, const char *group, gid_t gid)
{
    g_autoptr(GDateTime) t = g_date_time_new_from_unix_utc(created / G_USEC_PER_SEC);
    g_autofree char *when = g_date_time_format(t, "%Y-%m-%dT%H:%M:%SZ");
    g_autoptr(GString) s = g_string_new(NULL);

    g_string_append_printf(s, "{\n"
                           "  \"format\": \"%s\",\n"
                           "  \"version\": %d,\n"
                           "  \"chunk_size\": %u,\n"
                           "  \"created\": \"%s\"",
                           REPO_MARKER_FORMAT, VS_REPO_FORMAT_VERSION, chunk_size, when);
    if (group) {
        g_autoptr(JsonNode) name = json_node_init_string(json_node_alloc(), group);
        g_autofree char *quoted = json_to_string(name, FALSE);

        g_string_append_printf(s, ",\n  \"group\": %s,\n  \"gid\": %u", quoted, (unsigned)gid);
    }
    g_string_append(s, "\n}\n");
    return g_string_free(g_steal_pointer(&s), FALSE);
}

/* The marker's group and gid: both or neither. */
static bool
marker_group(JsonCheck *c, JsonObject *o, char **group, gid_t *gid)
{
    bool has_group = json_object_has_member(o, "group"), has_gid = json_object_has_member(o, "gid");
    uint64_t v;

    *group = NULL;
    *gid = (gid_t)-1;
    if (!has_group && !has_gid)
        return true;
    if (!jc_string(c, o, NULL, "group", false, group) || !jc_uint(c, o, NULL, "gid", &v))
        return false;
    if (!**group || v >= (gid_t)-1) {
        jc_fail(c, VS_ERROR_FAILED, NULL, **group ? "gid" : "group", "not a group");
        g_clear_pointer(group, g_free);
        return false;
    }
    *gid = (gid_t)v;
    return true;
}

static bool
marker_parse(const char *marker, const char *text, gsize len, VsRepo *repo, GError **error)
{
    static const char *const members[] = { "format", "version", "chunk_size", "created", "group",
                                           "gid", NULL };
    g_autofree char *where = g_strdup_printf("repo: %s", marker);
    JsonCheck c = { where, error };
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) jerr = NULL;
    g_autofree char *format = NULL;
    JsonObject *o;
    uint64_t version, cs;
    int64_t created_us;
    gid_t gid;

    if (!json_parser_load_from_data(parser, text, (gssize)len, &jerr)) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "%s: not valid JSON: %s", where, jerr->message);
        return false;
    }
    o = jc_root_object(&c, parser);
    if (!o || !jc_string(&c, o, NULL, "format", false, &format))
        return false;
    if (strcmp(format, REPO_MARKER_FORMAT) != 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "%s: format is \"%s\", not \"%s\"",
                    where, format, REPO_MARKER_FORMAT);
        return false;
    }
    if (!jc_version(&c, o, NULL, "version", &version))
        return false;
    if (!jc_members(&c, o, NULL, members) ||
        !jc_uint(&c, o, NULL, "chunk_size", &cs) ||
        !jc_time(&c, o, NULL, "created", &created_us) ||
        !marker_group(&c, o, &repo->group, &gid))
        return false;
    if (!repo_chunk_size_valid(cs)) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED,
                    "%s: chunk_size: %" G_GUINT64_FORMAT " is not a power of two from %u to %u",
                    where, cs, REPO_MIN_CHUNK_SIZE, REPO_MAX_CHUNK_SIZE);
        return false;
    }
    repo->chunk_size = (uint32_t)cs;
    repo->created = created_us;
    repo->perms = repo_perms(gid);
    return true;
}

/* 1 when DIR holds nothing, or only what an interrupted initialisation leaves
 * behind, or the lost+found of a freshly made file system (such a directory may
 * be initialised), 0 when it holds anything else, -1 on error. */
static int
dir_is_blank(const char *dir, GError **error)
{
    static const char *const layout[] = { "chunks", "backups", "tmp", "lock", "lost+found", NULL };
    g_autoptr(GError) derr = NULL;
    g_autoptr(GDir) d = g_dir_open(dir, 0, &derr);
    const char *name;

    if (!d) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s", derr->message);
        return -1;
    }
    while ((name = g_dir_read_name(d)))
        if (!g_strv_contains(layout, name))
            return 0;
    return 1;
}

/* Makes the blank directory PATH a repository (private, or shared with GID
 * when GROUP is not NULL). PATH is made private first, whatever it was: a
 * directory that EXISTED (a mount point) and was open to others is said to
 * have been closed. */
static bool
repo_initialise(const char *path, uint32_t chunk_size, const char *group, gid_t gid, bool existed,
                GError **error)
{
    static const char *const subdirs[] = { "chunks", "backups", "tmp", NULL };
    RepoPerms perms = repo_perms(group ? gid : (gid_t)-1);
    g_autofree char *tmp_dir = g_build_filename(path, "tmp", NULL);
    g_autofree char *lock = g_build_filename(path, "lock", NULL);
    g_autofree char *marker = g_build_filename(path, REPO_MARKER, NULL);
    g_autofree char *json = repo_marker_json(chunk_size ? chunk_size : VS_REPO_DEFAULT_CHUNK_SIZE,
                                             g_get_real_time(), group, gid);
    g_autofree char *tmp = NULL;
    mode_t was = 0;
    int fd, err;

    if ((err = repo_perms_apply_dir(path, true, &perms, &was))) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s: setting its mode: %s", path, g_strerror(err));
        return false;
    }
    if (existed && was != perms.dir_mode)
        repo_notice(VS_REPO_NOTICE_MADE_PRIVATE, path,
                    "repo: %s had mode %04o: made it %04o%s%s, so that %s may read the backups", path,
                    (unsigned)was, (unsigned)perms.dir_mode, group ? ", group " : "", group ? group : "",
                    group ? "only its owner and group" : "only its owner");
    /* What an interrupted initialisation left gets the modes too. */
    for (size_t i = 0; subdirs[i]; i++) {
        g_autofree char *sub = g_build_filename(path, subdirs[i], NULL);

        if ((err = repo_mkdir(sub, &perms)) || (err = repo_perms_apply_dir(sub, false, &perms, NULL))) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: creating %s: %s", sub, g_strerror(err));
            return false;
        }
    }
    fd = open(lock, O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
    err = fd < 0 ? errno : repo_perms_apply_fd(fd, false, &perms);
    if (fd >= 0)
        close(fd);
    if (err) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: creating %s: %s", lock, g_strerror(err));
        return false;
    }
    /* The marker goes last: its presence is what makes the directory a
     * repository. Two processes initialising at once: the first marker wins
     * and the second opens the repository it describes. */
    err = repo_write_temp(&perms, tmp_dir, "marker", json, strlen(json), &tmp);
    if (!err) {
        err = repo_rename_noreplace(tmp, marker);
        if (err)
            unlink(tmp);
        if (err == EEXIST)
            err = 0;
    }
    if (!err)
        err = repo_fsync_dir(path);
    if (err) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: writing %s: %s", marker, g_strerror(err));
        return false;
    }
    return true;
}

static bool
repo_probe_write(VsRepo *repo, GError **error)
{
    g_autofree char *tmp = NULL;
    int err;

    /* A repository copied without its empty directories is still whole. */
    if (!(err = repo_mkdir(repo->chunks_dir, &repo->perms)) &&
        !(err = repo_mkdir(repo->backups_dir, &repo->perms)) &&
        !(err = repo_mkdir(repo->tmp_dir, &repo->perms))) {
        /* Unnamed where the file system can (O_TMPFILE): a process killed
         * between the probe's create and unlink left a named one behind,
         * found by no recover (nothing is journaled yet this early). */
        int fd = open(repo->tmp_dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);

        if (fd >= 0) {
            ssize_t w = write(fd, "virtsnap\n", 9);

            if (w != 9)
                err = w < 0 ? errno : EIO;
            else if (fsync(fd) < 0)
                err = errno;
            if (close(fd) < 0 && !err)
                err = errno;
        } else if (errno == EROFS || errno == EACCES || errno == EPERM || errno == ENOSPC ||
                   errno == EDQUOT) {
            err = errno;
        } else {
            err = repo_write_temp(&repo->perms, repo->tmp_dir, "probe", "virtsnap\n", 9, &tmp);
        }
    }
    if (tmp)
        unlink(tmp);
    if (err == EROFS || err == EACCES || err == EPERM) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s is read-only: %s", repo->path,
                    g_strerror(err));
        return false;
    }
    if (err) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s is not writable: %s", repo->path,
                    g_strerror(err));
        return false;
    }
    return true;
}

static void
free_cctx(gpointer c)
{
    ZSTD_freeCCtx(c);
}

static void
free_dctx(gpointer d)
{
    ZSTD_freeDCtx(d);
}

/* vs_repo_open; a repository it creates is shared with GROUP (GID) unless
 * GROUP is NULL. With CHECK, a repository open to others is noticed. */
static VsRepo *
repo_open(const char *path, bool create, bool writable, uint32_t chunk_size, const char *group,
          gid_t gid, bool check, GError **error)
{
    g_autoptr(VsRepo) repo = NULL;
    g_autofree char *marker = NULL, *text = NULL;
    g_autofree void *zeros = NULL;
    size_t len = 0;
    struct stat st;
    int err;
    bool existed = true;

    if (!path || !*path) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "repo: no repository given (--repo or VIRTSNAP_REPO)");
        return NULL;
    }
    if (chunk_size && !repo_chunk_size_valid(chunk_size)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "repo: chunk size %u is not a power of two from %u to %u",
                    chunk_size, REPO_MIN_CHUNK_SIZE, REPO_MAX_CHUNK_SIZE);
        return NULL;
    }
    if (stat(path, &st) < 0) {
        err = errno;
        if (err == ENOENT && !create) {
            g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND,
                        "repo: %s does not exist (a mistyped path, or a backup disk not mounted?); "
                        "create a repository there with virtsnap init --repo %s", path, path);
            return NULL;
        }
        if (err != ENOENT) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s: %s", path, g_strerror(err));
            return NULL;
        }
        /* Private from the start (initialisation sets the exact mode). */
        if (g_mkdir_with_parents(path, 0700) < 0) {
            err = errno;
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: creating %s: %s", path, g_strerror(err));
            return NULL;
        }
        existed = false;
    } else if (!S_ISDIR(st.st_mode)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "repo: %s is not a directory", path);
        return NULL;
    }

    if (!repo_check_layout(path, error))
        return NULL;
    marker = g_build_filename(path, REPO_MARKER, NULL);
    if ((err = repo_read_regular(AT_FDCWD, marker, &text, &len))) {
        if (err != ENOENT) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s: %s", marker, repo_strerror(err));
            return NULL;
        }
        switch (dir_is_blank(path, error)) {
        case -1:
            return NULL;
        case 0:
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                        "repo: %s is not a virtsnap repository (no %s) and holds other files: give "
                        "the repository's own directory, or virtsnap init --repo a new or empty one",
                        path, REPO_MARKER);
            return NULL;
        default:
            break;
        }
        if (!create) {
            g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND,
                        "repo: %s is not a virtsnap repository (it is empty); create one with "
                        "virtsnap init --repo %s", path, path);
            return NULL;
        }
        if (!repo_initialise(path, chunk_size, group, gid, existed, error))
            return NULL;
        if ((err = repo_read_regular(AT_FDCWD, marker, &text, &len))) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s: %s", marker, repo_strerror(err));
            return NULL;
        }
    }

    repo = g_new0(VsRepo, 1);
    g_mutex_init(&repo->lock);
    g_mutex_init(&repo->flush_lock);
    g_cond_init(&repo->flusher_cond);
    repo->lock_fd = -1;
    repo->tmp_fd = -1;
    repo->pending = pending_table_new();
    repo->flush_bytes = REPO_FLUSH_BYTES;
    repo->flush_chunks = REPO_FLUSH_CHUNKS;
    /* Absolute: journals name it for a later recover, and helper processes
     * (nbdkit) are handed paths under it. */
    repo->path = g_canonicalize_filename(path, NULL);
    repo->chunks_dir = g_build_filename(repo->path, "chunks", NULL);
    repo->backups_dir = g_build_filename(repo->path, "backups", NULL);
    repo->tmp_dir = g_build_filename(repo->path, "tmp", NULL);
    repo->cctx_pool = g_ptr_array_new_with_free_func(free_cctx);
    repo->dctx_pool = g_ptr_array_new_with_free_func(free_dctx);
    if (!marker_parse(marker, text, len, repo, error))
        return NULL;
    zeros = g_malloc0(repo->chunk_size);
    vs_digest_compute(zeros, repo->chunk_size, &repo->zero_digest);
    if (writable && !repo_probe_write(repo, error))
        return NULL;
    if (writable) {
        repo->tmp_fd = open(repo->tmp_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (repo->tmp_fd < 0) {
            err = errno;
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s is not writable: %s: %s", repo->path,
                        repo->tmp_dir, g_strerror(err));
            return NULL;
        }
    }
    repo->writable = writable;
    if (check)
        vs_repo_check_permissions(repo);
    return g_steal_pointer(&repo);
}

VsRepo *
vs_repo_open(const char *path, bool create, bool writable, uint32_t chunk_size, GError **error)
{
    return repo_open(path, create, writable, chunk_size, NULL, (gid_t)-1, true, error);
}

VsRepo *
vs_repo_init(const char *path, uint32_t chunk_size, const char *group, bool *regrouped, GError **error)
{
    g_autoptr(VsRepo) repo = NULL;
    gid_t gid = (gid_t)-1;

    *regrouped = false;
    if (group && !repo_group_gid(group, &gid, error))
        return NULL;
    repo = repo_open(path, true, true, chunk_size, group, gid, false, error);
    if (!repo)
        return NULL;
    if (group && (g_strcmp0(repo->group, group) != 0 || repo->perms.gid != gid)) {
        if (!repo_set_group(repo, group, gid, error))
            return NULL;
        *regrouped = true;
    }
    return g_steal_pointer(&repo);
}

void
vs_repo_close(VsRepo *repo)
{
    if (!repo)
        return;
    /* The flusher first: a flush it is running finishes, one only queued is
     * dropped (its chunks are discarded below like any unflushed ones), and
     * after this no thread of ours touches the tables. */
    if (repo->flusher)
        g_thread_pool_free(repo->flusher, TRUE, TRUE);
    g_clear_error(&repo->flusher_error);
    g_cond_clear(&repo->flusher_cond);
    vs_repo_unlock(repo);
    /* Chunks never flushed belong to a backup that did not commit: nothing may
     * rely on them, and nobody else knows their temp names. */
    if (repo->pending)
        discard_table(repo->pending);
    g_clear_pointer(&repo->pending, g_hash_table_unref);
    if (repo->tmp_fd >= 0)
        close(repo->tmp_fd);
    g_clear_pointer(&repo->cctx_pool, g_ptr_array_unref);
    g_clear_pointer(&repo->dctx_pool, g_ptr_array_unref);
    g_mutex_clear(&repo->flush_lock);
    g_mutex_clear(&repo->lock);
    g_free(repo->path);
    g_free(repo->group);
    g_free(repo->chunks_dir);
    g_free(repo->backups_dir);
    g_free(repo->tmp_dir);
    g_free(repo);
}

const char *
vs_repo_path(const VsRepo *repo)
{
    return repo->path;
}

void
vs_repo_set_compression(VsRepo *repo, bool compress)
{
    repo->store_raw = !compress;
}

uint32_t
vs_repo_chunk_size(const VsRepo *repo)
{
    return repo->chunk_size;
}

/* ------------------------------------------------------------------------- */
/* Chunks                                                                    */

char *
repo_chunk_problem(ChunkVerdict v, const char *detail, uint32_t want, size_t got)
{
    switch (v) {
    case CHUNK_MISSING:
        return g_strdup("missing");
    case CHUNK_CORRUPT:
        return g_strdup_printf("corrupt: %s", detail);
    case CHUNK_UNREADABLE:
        return g_strdup_printf("unreadable: %s", detail);
    case CHUNK_NOT_REGULAR:
        return g_strdup("not a regular file");
    case CHUNK_OK:
    default:
        return got == want ? NULL
                           : g_strdup_printf("corrupt: the manifest says %u bytes, the chunk holds %zu", want, got);
    }
}

char *
repo_chunk_path(const VsRepo *repo, const VsDigest *digest)
{
    char hex[VS_DIGEST_HEX_LEN];

    vs_digest_to_hex(digest, hex);
    return g_strdup_printf("%s/%.2s/%s", repo->chunks_dir, hex, hex);
}

/* zstd contexts are costly to create (hundreds of KiB of tables each) and
 * cheap to reuse, so the repository keeps the ones its threads have used, in
 * one pool for each direction: the newest one back is the next one out. */
static gpointer
ctx_pool_take(VsRepo *repo, GPtrArray *pool)
{
    gpointer ctx = NULL;

    g_mutex_lock(&repo->lock);
    if (pool->len)
        ctx = g_ptr_array_steal_index_fast(pool, pool->len - 1);
    g_mutex_unlock(&repo->lock);
    return ctx;
}

static void
ctx_pool_give(VsRepo *repo, GPtrArray *pool, gpointer ctx)
{
    g_mutex_lock(&repo->lock);
    g_ptr_array_add(pool, ctx);
    g_mutex_unlock(&repo->lock);
}

static ZSTD_CCtx *
cctx_get(VsRepo *repo)
{
    ZSTD_CCtx *c = ctx_pool_take(repo, repo->cctx_pool);

    if (!c) {
        c = ZSTD_createCCtx();
        if (!c)
            g_error("repo: out of memory for a zstd context");
        ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, REPO_ZSTD_LEVEL);
        /* The XXH64 frame checksum lets `zstd -t` check a chunk without
         * virtsnap; the content size in the header bounds decompression. */
        ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
        ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1);
    }
    return c;
}

static void
cctx_put(VsRepo *repo, ZSTD_CCtx *c)
{
    ctx_pool_give(repo, repo->cctx_pool, c);
}

static ZSTD_DCtx *
dctx_get(VsRepo *repo)
{
    ZSTD_DCtx *d = ctx_pool_take(repo, repo->dctx_pool);

    if (!d) {
        d = ZSTD_createDCtx();
        if (!d)
            g_error("repo: out of memory for a zstd context");
    }
    return d;
}

static void
dctx_put(VsRepo *repo, ZSTD_DCtx *d)
{
    ctx_pool_give(repo, repo->dctx_pool, d);
}

static void
mark_dirty(VsRepo *repo, uint8_t idx)
{
    g_mutex_lock(&repo->lock);
    repo->dir_dirty[idx] = 1;
    g_mutex_unlock(&repo->lock);
}

/* Marks dirty again the directories of DIRTY from FROM on, whose sync failed:
 * the next commit retries them. */
static void
redirty(VsRepo *repo, const uint8_t dirty[256], unsigned from)
{
    g_mutex_lock(&repo->lock);
    for (unsigned j = from; j < 256; j++)
        repo->dir_dirty[j] |= dirty[j];
    g_mutex_unlock(&repo->lock);
}

bool
repo_sync_dirty_dirs(VsRepo *repo, GError **error)
{
    uint8_t dirty[256];
    bool any = false;

    /* Cleared before the sync, so that a put marking a directory meanwhile
     * is never lost; set again when the sync fails. */
    g_mutex_lock(&repo->lock);
    memcpy(dirty, repo->dir_dirty, sizeof(dirty));
    memset(repo->dir_dirty, 0, sizeof(repo->dir_dirty));
    g_mutex_unlock(&repo->lock);
    for (unsigned i = 0; i < 256 && !any; i++)
        any = dirty[i];
    if (!any)
        return true;
    /* One syncfs(2) makes every rename on the file system durable, however
     * many fan-out directories a backup touched (up to all 256, each once
     * per flush when synced one by one: a thousand fsyncs on a 1.5 GiB
     * backup). Where it is missing, each directory is synced. */
    if (syncfs(repo->tmp_fd) == 0)
        return true;
    if (errno != ENOSYS) {
        int err = errno;

        redirty(repo, dirty, 0);
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: syncing %s: %s", repo->chunks_dir, g_strerror(err));
        return false;
    }
    for (unsigned i = 0; i < 256; i++) {
        g_autofree char *dir = NULL;
        int err;

        if (!dirty[i])
            continue;
        dir = g_strdup_printf("%s/%02x", repo->chunks_dir, i);
        err = repo_fsync_dir(dir);
        if (err) {
            redirty(repo, dirty, i);
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: syncing %s: %s", dir, g_strerror(err));
            return false;
        }
    }
    return true;
}

static bool
check_writable(VsRepo *repo, GError **error)
{
    if (repo->writable)
        return true;
    g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "repo: %s was opened read-only", repo->path);
    return false;
}

/* Makes the content of every temp file of TABLE durable: one syncfs(2) of the
 * file system REPO/tmp is on (chunks/ is on the same one, or rename could not
 * work), through a descriptor opened with the repository so that it reports
 * every write-back error since; or, where syncfs is missing, an fdatasync per
 * file. SYNC_ERRNO (tests) stands for what syncfs returned. */
static int
sync_temps(VsRepo *repo, GHashTable *table, int sync_errno, char **what)
{
    GHashTableIter it;
    RepoPending *e;
    int err = sync_errno;

    if (!err && syncfs(repo->tmp_fd) < 0)
        err = errno;
    if (err != ENOSYS) {
        if (err)
            *what = g_strdup_printf("syncing %s", repo->tmp_dir);
        return err;
    }
    g_hash_table_iter_init(&it, table);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&e)) {
        int fd = open(e->tmp_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

        err = fd < 0 || fdatasync(fd) < 0 ? errno : 0;
        if (fd >= 0)
            close(fd);
        if (err) {
            *what = g_strdup_printf("syncing %s", e->tmp_path);
            return err;
        }
    }
    return 0;
}

/* Makes the fan-out directories the chunks of TABLE go to exist, durably,
 * before anything is renamed into them, so that no chunk a manifest will name
 * can vanish with its directory. One fsync of chunks/ covers all the
 * directories this flush made or met for the first time (met: another writer
 * may have made it a moment ago and not synced it yet). */
static int
ensure_fanouts(VsRepo *repo, GHashTable *table, char **what)
{
    uint8_t need[256] = { 0 };
    GHashTableIter it;
    RepoPending *e;
    bool any = false;
    int err;

    g_mutex_lock(&repo->lock);
    g_hash_table_iter_init(&it, table);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&e))
        if (!repo->dir_known[e->digest.bytes[0]]) {
            need[e->digest.bytes[0]] = 1;
            any = true;
        }
    g_mutex_unlock(&repo->lock);
    if (!any)
        return 0;
    for (unsigned i = 0; i < 256; i++) {
        g_autofree char *dir = NULL;

        if (!need[i])
            continue;
        dir = g_strdup_printf("%s/%02x", repo->chunks_dir, i);
        if ((err = repo_mkdir(dir, &repo->perms))) {
            *what = g_strdup_printf("creating %s", dir);
            return err;
        }
    }
    if ((err = repo_fsync_dir(repo->chunks_dir))) {
        *what = g_strdup_printf("syncing %s", repo->chunks_dir);
        return err;
    }
    g_mutex_lock(&repo->lock);
    for (unsigned i = 0; i < 256; i++)
        repo->dir_known[i] |= need[i];
    g_mutex_unlock(&repo->lock);
    return 0;
}

/* One flush; the caller holds flush_lock. */
static bool
flush_locked(VsRepo *repo, GError **error)
{
    g_autoptr(GHashTable) table = NULL, poisoned = NULL;
    g_autofree char *what = NULL;
    uint8_t touched[256] = { 0 };
    GHashTableIter it;
    RepoPending *e;
    int err, sync_errno;

    /* 1. Swap: puts from now on fill a fresh table, and still find these
     *    chunks (in repo->flushing) until they are in place. */
    g_mutex_lock(&repo->lock);
    if (g_hash_table_size(repo->pending) == 0) {
        g_mutex_unlock(&repo->lock);
        return true;
    }
    table = repo->pending;
    repo->pending = pending_table_new();
    repo->pending_bytes = 0;
    repo->flushing = table;
    sync_errno = repo->test_sync_errno;
    g_mutex_unlock(&repo->lock);

    /* 2. Every temp file durable, before any of them gets its final name. */
    err = sync_temps(repo, table, sync_errno, &what);
    if (err) {
        /* A failed sync may stand for the write-back of any temp file written
         * so far, ours or those of chunks put since the swap, and reports it
         * only once: none of them may be placed. Puts still writing see the
         * epoch move and fail. */
        g_mutex_lock(&repo->lock);
        repo->flushing = NULL;
        repo->sync_epoch++;
        repo->sync_err = err;
        poisoned = repo->pending;
        repo->pending = pending_table_new();
        repo->pending_bytes = 0;
        g_mutex_unlock(&repo->lock);
        discard_table(poisoned);
        discard_table(table);
        goto out;
    }
    err = ensure_fanouts(repo, table, &what);
    if (err) {
        g_mutex_lock(&repo->lock);
        repo->flushing = NULL;
        g_mutex_unlock(&repo->lock);
        discard_table(table);
        goto out;
    }

    /* 3. Final names. Content is durable now, so every rename that works is
     *    safe to keep even when another fails. */
    g_hash_table_iter_init(&it, table);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&e)) {
        g_autofree char *final = repo_chunk_path(repo, &e->digest);
        int rerr = repo_rename_noreplace(e->tmp_path, final);

        if (rerr == EEXIST) {
            /* Another writer placed the same bytes (its own flush synced
             * them first); ours relies on that rename being durable too. */
            unlink(e->tmp_path);
            rerr = 0;
        }
        if (rerr) {
            if (!err) {
                char hex[VS_DIGEST_HEX_LEN];

                vs_digest_to_hex(&e->digest, hex);
                err = rerr;
                what = g_strdup_printf("placing chunk %s", hex);
            }
            unlink(e->tmp_path);
            continue;
        }
        touched[e->digest.bytes[0]] = 1;
    }

    /* 4. The renames are made durable with the manifest that will name
     *    them (repo_sync_dirty_dirs, before it is written), not here: until
     *    then nothing relies on them, and a crash that loses one only loses
     *    a chunk no manifest names yet. */
    for (unsigned i = 0; i < 256; i++)
        if (touched[i])
            mark_dirty(repo, (uint8_t)i);

    /* 5. Drop the table: its chunks are found under their final names. */
    g_mutex_lock(&repo->lock);
    repo->flushing = NULL;
    g_mutex_unlock(&repo->lock);
out:
    if (err) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s: flushing chunks: %s: %s", repo->path, what,
                    g_strerror(err));
        return false;
    }
    return true;
}

/* The flusher thread's task. Its error is recorded before flush_lock is let
 * go, so that a vs_repo_flush, which takes flush_lock after it, reports it: a
 * caller whose chunks this flush took learns that they were not placed. */
static void
flusher_run(gpointer data, gpointer user_data)
{
    VsRepo *repo = user_data;
    GError *err = NULL;

    (void)data;
    g_mutex_lock(&repo->lock);
    repo->flush_queued = false;
    repo->flush_running = true;
    g_mutex_unlock(&repo->lock);
    g_mutex_lock(&repo->flush_lock);
    flush_locked(repo, &err);
    g_mutex_lock(&repo->lock);
    if (err && !repo->flusher_error)
        repo->flusher_error = g_steal_pointer(&err);
    repo->flush_running = false;
    g_cond_broadcast(&repo->flusher_cond);
    g_mutex_unlock(&repo->lock);
    g_mutex_unlock(&repo->flush_lock);
    g_clear_error(&err);
}

/* Hands a flush to the flusher thread, unless one is queued already (it will
 * take whatever is pending when it begins). Returns false when there is no
 * thread to hand it to; the caller then flushes itself. */
static bool
flusher_kick(VsRepo *repo)
{
    bool push;

    g_mutex_lock(&repo->lock);
    if (!repo->flusher) {
        /* Exclusive: one thread of its own, never busy with anything else
         * when a flush is due. */
        repo->flusher = g_thread_pool_new(flusher_run, repo, 1, TRUE, NULL);
        if (!repo->flusher) {
            g_mutex_unlock(&repo->lock);
            return false;
        }
    }
    push = !repo->flush_queued;
    repo->flush_queued = true;
    g_mutex_unlock(&repo->lock);
    if (push)
        g_thread_pool_push(repo->flusher, repo, NULL);
    return true;
}

void
repo_test_wait_flusher(VsRepo *repo)
{
    g_mutex_lock(&repo->lock);
    while (repo->flush_queued || repo->flush_running)
        g_cond_wait(&repo->flusher_cond, &repo->lock);
    g_mutex_unlock(&repo->lock);
}

/* A background flush's error, as the error of an operation that relies on it. */
static bool
flusher_failed(VsRepo *repo, bool take, GError **error)
{
    GError *err;

    g_mutex_lock(&repo->lock);
    err = repo->flusher_error;
    if (err && take)
        repo->flusher_error = NULL;
    else if (err)
        err = g_error_copy(err);
    g_mutex_unlock(&repo->lock);
    if (!err)
        return false;
    g_propagate_error(error, err);
    return true;
}

bool
vs_repo_flush(VsRepo *repo, GError **error)
{
    g_autoptr(GError) err = NULL;
    bool ok;

    if (!repo->writable)
        return true;
    g_mutex_lock(&repo->flush_lock);
    ok = flush_locked(repo, &err);
    /* A background flush that ran before this one may have taken some of the
     * caller's chunks and failed to place them: that is the caller's error
     * too (reported once; the repository is usable again afterwards). */
    if (flusher_failed(repo, true, error)) {
        g_mutex_unlock(&repo->flush_lock);
        return false;
    }
    g_mutex_unlock(&repo->flush_lock);
    if (!ok) {
        g_propagate_error(error, g_steal_pointer(&err));
        return false;
    }
    return true;
}

/* XXH64 (seed 0), for the content checksum of the frames written by
 * raw_frame: zstd computes it inside its compressor and does not export it,
 * and the frame must carry it like every other chunk (`zstd -t` checks it). */
#define XXH_P1 11400714785074694791ULL
#define XXH_P2 14029467366897019727ULL
#define XXH_P3 1609587929392839161ULL
#define XXH_P4 9650029242287828579ULL
#define XXH_P5 2870177450012600261ULL

static inline uint64_t
xxh_rotl(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t
xxh_read64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return GUINT64_FROM_LE(v);
}

static inline uint64_t
xxh_round(uint64_t acc, uint64_t input)
{
    return xxh_rotl(acc + input * XXH_P2, 31) * XXH_P1;
}

static inline uint64_t
xxh_merge(uint64_t acc, uint64_t v)
{
    return (acc ^ xxh_round(0, v)) * XXH_P1 + XXH_P4;
}

uint64_t
repo_xxh64(const void *data, size_t len)
{
    const uint8_t *p = data, *end = p + len;
    uint64_t h;

    if (len >= 32) {
        uint64_t v1 = XXH_P1 + XXH_P2, v2 = XXH_P2, v3 = 0, v4 = -XXH_P1;

        do {
            v1 = xxh_round(v1, xxh_read64(p));
            v2 = xxh_round(v2, xxh_read64(p + 8));
            v3 = xxh_round(v3, xxh_read64(p + 16));
            v4 = xxh_round(v4, xxh_read64(p + 24));
            p += 32;
        } while (end - p >= 32);
        h = xxh_rotl(v1, 1) + xxh_rotl(v2, 7) + xxh_rotl(v3, 12) + xxh_rotl(v4, 18);
        h = xxh_merge(xxh_merge(xxh_merge(xxh_merge(h, v1), v2), v3), v4);
    } else {
        h = XXH_P5;
    }
    h += len;
    for (; end - p >= 8; p += 8)
        h = xxh_rotl(h ^ xxh_round(0, xxh_read64(p)), 27) * XXH_P1 + XXH_P4;
    if (end - p >= 4) {
        uint32_t v;

        memcpy(&v, p, sizeof(v));
        h = xxh_rotl(h ^ (uint64_t)GUINT32_FROM_LE(v) * XXH_P1, 23) * XXH_P2 + XXH_P3;
        p += 4;
    }
    for (; p < end; p++)
        h = xxh_rotl(h ^ *p * XXH_P5, 11) * XXH_P1;
    h ^= h >> 33;
    h *= XXH_P2;
    h ^= h >> 29;
    h *= XXH_P3;
    h ^= h >> 32;
    return h;
}

/* Whether DATA is not worth compressing: SAMPLES evenly spread slices of
 * SAMPLE bytes, each compressed on its own, save under 1/64 of their size
 * together. zstd level 1 does not make incompressible data smaller but still
 * searches it for matches (about 0.5 ms a MiB here, as long as SHA-256
 * takes); the samples cost a few percent of that. A chunk that compresses
 * anywhere near a sample point is compressed whole as before, so only a
 * chunk that is random (already compressed or encrypted data) at every
 * sample point is stored in raw blocks. */
#define RAW_SAMPLES 8
#define RAW_SAMPLE 4096

static bool
looks_incompressible(ZSTD_CCtx *cctx, const uint8_t *data, size_t len)
{
    uint8_t out[RAW_SAMPLE + 64];
    size_t in = 0, got = 0;

    if (len < 16 * RAW_SAMPLE)
        return false;
    for (unsigned i = 0; i < RAW_SAMPLES; i++) {
        size_t at = (len - RAW_SAMPLE) / (RAW_SAMPLES - 1) * i;
        size_t n = ZSTD_compress2(cctx, out, sizeof(out), data + at, RAW_SAMPLE);

        if (ZSTD_isError(n))
            return false;
        in += RAW_SAMPLE;
        got += n;
    }
    return got >= in - in / 64;
}

/* The largest block zstd allows, and what raw_frame cuts a chunk into. */
#define ZSTD_BLOCK_MAX (128u * 1024)

/* At most this many blocks in a chunk (REPO_MAX_CHUNK_SIZE / 128 KiB). */
#define RAW_MAX_BLOCKS (REPO_MAX_CHUNK_SIZE / ZSTD_BLOCK_MAX)

/* The headers of a raw frame, and the iovecs that put them around the data. */
typedef struct {
    uint8_t hdr[4 + 1 + 4 + 3 * RAW_MAX_BLOCKS + 4];
    struct iovec iov[2 * RAW_MAX_BLOCKS + 1];
    int niov;
    size_t size;
} RawFrame;

/* Describes DATA as one zstd frame (RFC 8878) of raw, that is stored, blocks:
 * the same kind of frame ZSTD_compress2 makes of data it cannot shrink (single
 * segment, content size, XXH64 checksum), without its search for matches, and
 * written straight from DATA (writev) rather than copied. Any zstd decoder
 * reads it. */
static void
raw_frame(RawFrame *f, const uint8_t *data, size_t len)
{
    uint8_t *o = f->hdr, *start = f->hdr;
    uint32_t v32;

    g_assert(len > 0 && len <= REPO_MAX_CHUNK_SIZE);
    f->niov = 0;
    f->size = len;
    v32 = GUINT32_TO_LE(0xFD2FB528u);                 /* magic */
    memcpy(o, &v32, 4);
    o += 4;
    /* Frame_Header_Descriptor: a 4-byte content size, single segment (no
     * window descriptor), content checksum, no dictionary. */
    *o++ = (uint8_t)(2u << 6 | 1u << 5 | 1u << 2);
    v32 = GUINT32_TO_LE((uint32_t)len);
    memcpy(o, &v32, 4);
    o += 4;
    for (size_t at = 0; at < len;) {
        size_t n = MIN(len - at, ZSTD_BLOCK_MAX);
        /* Block header: last-block bit, type 0 (raw), size. */
        uint32_t bh = (uint32_t)(n << 3) | (at + n == len ? 1u : 0u);

        *o++ = (uint8_t)bh;
        *o++ = (uint8_t)(bh >> 8);
        *o++ = (uint8_t)(bh >> 16);
        f->iov[f->niov++] = (struct iovec){ .iov_base = start, .iov_len = (size_t)(o - start) };
        f->iov[f->niov++] = (struct iovec){ .iov_base = (void *)(data + at), .iov_len = n };
        f->size += (size_t)(o - start);
        start = o;
        at += n;
    }
    v32 = GUINT32_TO_LE((uint32_t)repo_xxh64(data, len));
    memcpy(o, &v32, 4);
    o += 4;
    f->iov[f->niov++] = (struct iovec){ .iov_base = start, .iov_len = (size_t)(o - start) };
    f->size += (size_t)(o - start);
}

/* What vs_repo_put_chunk finds of a chunk before it writes anything. */
typedef enum {
    CHUNK_ABSENT,          /* to be written */
    CHUNK_HELD,            /* pending (the flush that places it is ours) or in place */
    CHUNK_LOOKUP_FAILED,   /* error set */
} ChunkPresence;

/* *EPOCH: the sync epoch a write that follows starts in. */
static ChunkPresence
chunk_presence(VsRepo *repo, const VsDigest *digest, const char *hex, uint64_t *epoch, GError **error)
{
    g_autofree char *path = NULL;
    struct stat st;
    bool known;

    g_mutex_lock(&repo->lock);
    known = pending_lookup_locked(repo, digest) != NULL;
    *epoch = repo->sync_epoch;
    g_mutex_unlock(&repo->lock);
    if (known)
        return CHUNK_HELD;
    path = g_strdup_printf("%s/%.2s/%s", repo->chunks_dir, hex, hex);
    if (stat(path, &st) == 0) {
        /* Present (a chunk gets its final name only once durable), perhaps
         * only just renamed there by another process: our manifest will rely
         * on that rename, so its directory gets synced with ours. */
        mark_dirty(repo, digest->bytes[0]);
        return CHUNK_HELD;
    }
    if (errno != ENOENT) {
        int err = errno;

        g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s: %s", path, g_strerror(err));
        return CHUNK_LOOKUP_FAILED;
    }
    return CHUNK_ABSENT;
}

/* Compresses DATA (or frames it raw where compression would not pay) into a
 * new temp file *TMP of *ZLEN bytes. No fsync: the next flush makes this file
 * durable along with every other pending one, before it gets its final name. */
static bool
chunk_write_temp(VsRepo *repo, const void *data, size_t len, const char *hex, char **tmp, size_t *zlen,
                 GError **error)
{
    g_autofree void *zbuf = NULL;
    g_autofree RawFrame *raw = NULL;
    ZSTD_CCtx *cctx = cctx_get(repo);
    int err;

    if (repo->store_raw || looks_incompressible(cctx, data, len)) {
        raw = g_new(RawFrame, 1);
        raw_frame(raw, data, len);
        *zlen = raw->size;
    } else {
        zbuf = g_malloc(ZSTD_compressBound(len));
        *zlen = ZSTD_compress2(cctx, zbuf, ZSTD_compressBound(len), data, len);
    }
    cctx_put(repo, cctx);
    if (ZSTD_isError(*zlen)) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "repo: compressing chunk %s: %s",
                    hex, ZSTD_getErrorName(*zlen));
        return false;
    }
    err = raw ? write_temp_iov(&repo->perms, repo->tmp_dir, "chunk", raw->iov, raw->niov, false, tmp)
              : write_temp(&repo->perms, repo->tmp_dir, "chunk", zbuf, *zlen, false, tmp);
    if (err) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s: writing chunk %s: %s",
                    repo->path, hex, g_strerror(err));
        return false;
    }
    return true;
}

/* Makes the temp file *TMP (ZLEN bytes) the pending copy of DIGEST, taking
 * *TMP, unless another thread put the same bytes meanwhile (*KNOWN) or a sync
 * failed since EPOCH (returns its errno: its write-back error may have been
 * this file's); *TMP is left to the caller then. *KICK: this put crossed the
 * threshold of a background flush; *FLUSH: it crossed twice that, with the
 * flusher not having taken the last batch yet, so the caller flushes itself,
 * which bounds what is unsynced to about twice the threshold. */
static int
pending_add(VsRepo *repo, const VsDigest *digest, char **tmp, size_t zlen, uint64_t epoch,
            bool *known, bool *kick, bool *flush)
{
    int err = 0;

    g_mutex_lock(&repo->lock);
    if (repo->sync_epoch != epoch) {
        err = repo->sync_err;
    } else if (pending_lookup_locked(repo, digest)) {
        *known = true;
    } else {
        RepoPending *e = g_new(RepoPending, 1);
        uint64_t before = repo->pending_bytes;

        e->digest = *digest;
        e->tmp_path = g_steal_pointer(tmp);
        e->size = zlen;
        g_hash_table_insert(repo->pending, &e->digest, e);
        repo->pending_bytes += zlen;
        *kick = (before < repo->flush_bytes && repo->pending_bytes >= repo->flush_bytes) ||
                g_hash_table_size(repo->pending) == repo->flush_chunks;
        *flush = (before < 2 * repo->flush_bytes && repo->pending_bytes >= 2 * repo->flush_bytes) ||
                 g_hash_table_size(repo->pending) == 2 * repo->flush_chunks;
    }
    g_mutex_unlock(&repo->lock);
    return err;
}

bool
vs_repo_put_chunk(VsRepo *repo, const void *data, size_t len, VsDigest *digest,
                  uint64_t *stored, GError **error)
{
    char hex[VS_DIGEST_HEX_LEN];
    g_autofree char *tmp = NULL;
    size_t zlen = 0;
    uint64_t epoch = 0;
    bool known = false, kick = false, flush = false;
    int err;

    if (stored)
        *stored = 0;
    if (!check_writable(repo, error))
        return false;
    /* A background flush failed: the chunks it held are not in place, and a
     * backup relying on them must fail; the sooner, the less it writes. */
    if (flusher_failed(repo, false, error))
        return false;
    if (len == 0 || len > repo->chunk_size) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "repo: %s: a chunk holds 1 to %u bytes, not %zu", repo->path, repo->chunk_size, len);
        return false;
    }
    if (vs_buffer_is_zero(data, len)) {
        /* Zeros are never stored: the manifest leaves them out (commit drops
         * any reference to them) and readers see a gap as zeros. */
        if (len == repo->chunk_size)
            *digest = repo->zero_digest;
        else
            vs_digest_compute(data, len, digest);
        return true;
    }
    vs_digest_compute(data, len, digest);
    vs_digest_to_hex(digest, hex);
    switch (chunk_presence(repo, digest, hex, &epoch, error)) {
    case CHUNK_HELD:
        return true;
    case CHUNK_LOOKUP_FAILED:
        return false;
    case CHUNK_ABSENT:
        break;
    }
    if (!chunk_write_temp(repo, data, len, hex, &tmp, &zlen, error))
        return false;
    err = pending_add(repo, digest, &tmp, zlen, epoch, &known, &kick, &flush);
    if (tmp)
        unlink(tmp);
    if (err) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO,
                    "repo: %s: writing chunk %s: the file system reported a write error meanwhile: %s",
                    repo->path, hex, g_strerror(err));
        return false;
    }
    if (known)
        return true;
    if (stored)
        *stored = zlen;
    /* The put that crosses the threshold starts a flush in the background and
     * goes on, as do the others: durability is the business of the flush
     * before the manifest (vs_repo_flush), not of the put. */
    if (kick && !flush)
        flush = !flusher_kick(repo);
    if (flush && !vs_repo_flush(repo, error)) {
        if (stored)
            *stored = 0;
        return false;
    }
    return true;
}

ChunkVerdict
repo_check_chunk(VsRepo *repo, const VsDigest *digest, void **data, size_t *len, char **detail)
{
    g_autofree void *zbuf = NULL;
    g_autofree void *out = g_malloc(repo->chunk_size);
    size_t zcap = 0, n = 0;
    ChunkVerdict v = repo_check_chunk_into(repo, digest, &zbuf, &zcap, out, &n, true, detail);

    if (v == CHUNK_OK && len)
        *len = n;
    if (v == CHUNK_OK && data)
        *data = g_realloc(g_steal_pointer(&out), n);
    return v;
}

ChunkVerdict
repo_check_chunk_into(VsRepo *repo, const VsDigest *digest, void **zbufp, size_t *zcap, void *out,
                      size_t *len, bool hash, char **detail)
{
    g_autofree char *path = repo_chunk_path(repo, digest);
    g_autofree char *tmp = pending_tmp_path(repo, digest);
    char *zbuf;
    size_t cap = ZSTD_compressBound(repo->chunk_size) + 4096;
    unsigned long long fcs;
    size_t zlen = 0, n, fsize;
    VsDigest got;
    ZSTD_DCtx *dctx;
    struct stat st;
    int fd = -1, err = 0;

    /* A pending chunk is read from its temp file. Should a flush move it
     * meanwhile, it is under its final name by the time the temp name is
     * gone (or nowhere, when the flush failed). */
    if (tmp && (err = repo_open_regular(AT_FDCWD, tmp, &fd, &st)) && err != ENOENT) {
        *detail = g_strdup(repo_strerror(err));
        return err == REPO_ERR_NOT_REGULAR ? CHUNK_NOT_REGULAR : CHUNK_UNREADABLE;
    }
    /* Someone else's repository: a FIFO would block us, a symlink lead anywhere. */
    if (fd < 0 && (err = repo_open_regular(AT_FDCWD, path, &fd, &st))) {
        *detail = g_strdup(err == ENOENT ? "missing" : repo_strerror(err));
        return err == ENOENT ? CHUNK_MISSING : err == REPO_ERR_NOT_REGULAR ? CHUNK_NOT_REGULAR
                                                                         : CHUNK_UNREADABLE;
    }
    /* Nothing in a chunk file is trusted: not its size, not what its frame
     * header claims, not the data until it hashes right. */
    if (st.st_size <= 0 || (uint64_t)st.st_size > cap) {
        close(fd);
        *detail = g_strdup_printf("file is %lld bytes, not a compressed chunk of at most %u bytes",
                                  (long long)st.st_size, repo->chunk_size);
        return CHUNK_CORRUPT;
    }
    if (*zcap < (size_t)st.st_size) {
        g_free(*zbufp);
        *zbufp = g_malloc(cap);
        *zcap = cap;
    }
    zbuf = *zbufp;
    while (zlen < (size_t)st.st_size) {
        ssize_t r = pread(fd, zbuf + zlen, (size_t)st.st_size - zlen, (off_t)zlen);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            err = r < 0 ? errno : 0;
            break;
        }
        zlen += (size_t)r;
    }
    close(fd);
    if (err) {
        *detail = g_strdup_printf("read error: %s", g_strerror(err));
        return err == EIO ? CHUNK_CORRUPT : CHUNK_UNREADABLE;
    }
    fcs = ZSTD_getFrameContentSize(zbuf, zlen);
    if (fcs == ZSTD_CONTENTSIZE_ERROR) {
        *detail = g_strdup("not a zstd frame");
        return CHUNK_CORRUPT;
    }
    if (fcs != ZSTD_CONTENTSIZE_UNKNOWN && (fcs == 0 || fcs > repo->chunk_size)) {
        *detail = g_strdup_printf("zstd frame claims %llu bytes, not 1 to %u", fcs, repo->chunk_size);
        return CHUNK_CORRUPT;
    }
    fsize = ZSTD_findFrameCompressedSize(zbuf, zlen);
    if (ZSTD_isError(fsize) || fsize != zlen) {
        *detail = g_strdup(ZSTD_isError(fsize) ? "truncated zstd frame" : "data after the zstd frame");
        return CHUNK_CORRUPT;
    }
    dctx = dctx_get(repo);
    n = ZSTD_decompressDCtx(dctx, out, fcs != ZSTD_CONTENTSIZE_UNKNOWN ? (size_t)fcs : repo->chunk_size,
                            zbuf, zlen);
    if (ZSTD_isError(n)) {
        /* A failed frame leaves the context in a state the next user would
         * have to reset; a fresh one is simpler. */
        ZSTD_freeDCtx(dctx);
        *detail = g_strdup_printf("zstd: %s", ZSTD_getErrorName(n));
        return CHUNK_CORRUPT;
    }
    dctx_put(repo, dctx);
    if (n == 0 || (fcs != ZSTD_CONTENTSIZE_UNKNOWN && n != fcs)) {
        *detail = g_strdup_printf("decompressed to %zu bytes", n);
        return CHUNK_CORRUPT;
    }
    /* zstd checked the frame's XXH64 while inflating (it does unless told
     * not to); a frame without one (none virtsnap writes) is hashed. The flag
     * is bit 2 of the frame header descriptor, the byte after the magic
     * number (RFC 8878, 3.1.1.1.1). */
    if (!hash)
        hash = zlen < 5 || !(((const uint8_t *)zbuf)[4] & 0x04);
    if (hash)
        vs_digest_compute(out, n, &got);
    if (hash && memcmp(got.bytes, digest->bytes, sizeof(got.bytes)) != 0) {
        char hex[VS_DIGEST_HEX_LEN];

        vs_digest_to_hex(&got, hex);
        *detail = g_strdup_printf("content has SHA-256 %s", hex);
        return CHUNK_CORRUPT;
    }
    *len = n;
    return CHUNK_OK;
}

void *
vs_repo_get_chunk(VsRepo *repo, const VsDigest *digest, size_t *len, GError **error)
{
    g_autofree char *detail = NULL;
    char hex[VS_DIGEST_HEX_LEN];
    void *data = NULL;

    switch (repo_check_chunk(repo, digest, &data, len, &detail)) {
    case CHUNK_OK:
        return data;
    case CHUNK_MISSING:
        vs_digest_to_hex(digest, hex);
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND, "repo: %s: chunk %s is missing", repo->path, hex);
        return NULL;
    case CHUNK_CORRUPT:
        vs_digest_to_hex(digest, hex);
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s: chunk %s is corrupt: %s",
                    repo->path, hex, detail);
        return NULL;
    case CHUNK_NOT_REGULAR: {
        g_autofree char *file = repo_chunk_path(repo, digest);

        vs_digest_to_hex(digest, hex);
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s: chunk %s (%s) is not a regular file",
                    repo->path, hex, file);
        return NULL;
    }
    case CHUNK_UNREADABLE:
    default:
        vs_digest_to_hex(digest, hex);
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s: reading chunk %s: %s",
                    repo->path, hex, detail);
        return NULL;
    }
}

bool
repo_chunk_placed(VsRepo *repo, const VsDigest *digest)
{
    g_autofree char *path = repo_chunk_path(repo, digest);
    struct stat st;

    return lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

bool
vs_repo_has_chunk(VsRepo *repo, const VsDigest *digest)
{
    bool pending;

    g_mutex_lock(&repo->lock);
    pending = pending_lookup_locked(repo, digest) != NULL;
    g_mutex_unlock(&repo->lock);
    return pending || repo_chunk_placed(repo, digest);
}

/* ------------------------------------------------------------------------- */
/* The repository lock                                                       */

int
repo_open_lock_file(VsRepo *repo, GError **error)
{
    g_autofree char *lock = g_build_filename(repo->path, "lock", NULL);
    /* Made anew (a repository copied without it): with the repository's mode. */
    int fd = open(lock, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600), err;

    if (fd >= 0 && (err = repo_perms_apply_fd(fd, false, &repo->perms))) {
        close(fd);
        unlink(lock);
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s: creating the lock: %s", lock, g_strerror(err));
        return -1;
    }
    if (fd < 0 && errno == EEXIST)
        fd = open(lock, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    /* flock needs no write access: a read-only repository still locks. */
    if (fd < 0 && (errno == EROFS || errno == EACCES))
        fd = open(lock, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        err = errno;
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s: opening the lock: %s", lock, g_strerror(err));
    }
    return fd;
}

bool
vs_repo_lock_shared(VsRepo *repo, GError **error)
{
    gint64 deadline = g_get_monotonic_time() + LOCK_WAIT_US;
    int fd;

    if (repo->lock_fd >= 0)
        return true;
    fd = repo_open_lock_file(repo, error);
    if (fd < 0)
        return false;
    /* Non-blocking with a bounded retry: a gc finishes in seconds, and a hung
     * one must not hang every backup behind it. */
    while (flock(fd, LOCK_SH | LOCK_NB) < 0) {
        int err = errno;

        if (err == EINTR)
            continue;
        if (err != EWOULDBLOCK) {
            close(fd);
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "repo: %s: locking: %s", repo->path, g_strerror(err));
            return false;
        }
        if (g_get_monotonic_time() >= deadline) {
            close(fd);
            g_set_error(error, VS_ERROR, VS_ERROR_TIMEOUT,
                        "repo: %s: garbage collection is running (lock held); try again when it has finished",
                        repo->path);
            return false;
        }
        g_usleep(100 * 1000);
    }
    repo->lock_fd = fd;
    return true;
}

void
vs_repo_unlock(VsRepo *repo)
{
    if (repo->lock_fd >= 0) {
        close(repo->lock_fd);
        repo->lock_fd = -1;
    }
}

void
repo_prefetch_chunk(VsRepo *repo, const VsDigest *digest)
{
    g_autofree char *path = repo_chunk_path(repo, digest);
    int fd = -1;

    if (repo_open_regular(AT_FDCWD, path, &fd, NULL) == 0) {
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
        close(fd);
    }
}
