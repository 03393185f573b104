/* nbdkit-virtsnap-plugin.so: serves one disk of one backup read-only over NBD,
 * straight from the repository, for `virtsnap mount` and `restore --instant`.
 *
 *   nbdkit --readonly virtsnap repo=DIR backup=ID domain=NAME disk=vda
 *
 * The disk is the manifest's sorted chunk list: a read is mapped to the chunks
 * it covers (binary search), each chunk read through vs_repo_get_chunk (which
 * decompresses and re-hashes it: a corrupt chunk is an I/O error, never wrong
 * data), gaps between chunks read as zeros. Block status (.extents) reports the
 * gaps as holes that read as zeros, so qemu-img, nbdcopy and QEMU's block-stream
 * skip them. A few decompressed chunks are kept (LRU): QEMU and qemu-img read in
 * pieces smaller than a chunk, mostly in order.
 *
 * Thread model PARALLEL: vs_repo_get_chunk may be called from many threads; the
 * cache has its own mutex and is never held across a repository read. The
 * repository's lock is held shared for the plugin's life, so that gc cannot
 * delete chunks of the served backup (gc fails while a mount is up).
 *
 * The repository is opened in .get_ready, before nbdkit forks into the
 * background, so that a bad parameter or a missing backup makes nbdkit exit
 * with the error on its standard error (which virtsnap mount reports). */
#include "config.h"
#include "vs-repo.h"

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL
#define DEFAULT_CACHE_CHUNKS 8
#define MAX_CACHE_CHUNKS 256

struct nbdkit_plugin *plugin_init(void);

static char *repo_path, *backup_id, *domain_name, *disk_target, *mount_id, *log_path;
static int log_fd = -1;
static bool forked;                     /* before: nbdkit's stderr is the log already */
static unsigned cache_chunks = DEFAULT_CACHE_CHUNKS;

static VsRepo *repo;
static VsManifest *manifest;
static const VsManifestDisk *disk;      /* in manifest */

typedef struct {
    VsDigest digest;
    GBytes *data;                       /* NULL: empty slot */
    uint64_t used;                      /* LRU tick */
} CacheSlot;

static GMutex cache_lock;
static CacheSlot *cache;
static uint64_t cache_tick;

/* nbdkit_error, and a line in log= when given: nbdkit in the background sends
 * its own stderr to /dev/null unless verbose (which logs every request). */
static void
plugin_error(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

static void
plugin_error(const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    nbdkit_error("%s", msg);
    if (log_fd >= 0 && forked) {
        g_autoptr(GDateTime) now = g_date_time_new_now_local();
        g_autofree char *stamp = g_date_time_format(now, "%F %T");
        g_autofree char *line = g_strdup_printf("%s nbdkit-virtsnap: %s\n", stamp, msg);
        ssize_t n = write(log_fd, line, strlen(line));
        (void)n;
    }
}

static void
vs_unload(void)
{
    for (unsigned i = 0; cache && i < cache_chunks; i++)
        if (cache[i].data)
            g_bytes_unref(cache[i].data);
    g_clear_pointer(&cache, g_free);
    g_clear_pointer(&manifest, vs_manifest_free);
    g_clear_pointer(&repo, vs_repo_close);
    g_clear_pointer(&repo_path, g_free);
    g_clear_pointer(&backup_id, g_free);
    g_clear_pointer(&domain_name, g_free);
    g_clear_pointer(&disk_target, g_free);
    g_clear_pointer(&mount_id, g_free);
    g_clear_pointer(&log_path, g_free);
    if (log_fd >= 0)
        close(log_fd);
    log_fd = -1;
}

static int
vs_config(const char *key, const char *value)
{
    char **slot = NULL;

    if (!strcmp(key, "repo"))
        slot = &repo_path;
    else if (!strcmp(key, "backup"))
        slot = &backup_id;
    else if (!strcmp(key, "domain"))
        slot = &domain_name;
    else if (!strcmp(key, "disk"))
        slot = &disk_target;
    else if (!strcmp(key, "mount"))
        slot = &mount_id;           /* virtsnap's mount id: names the process, not used */
    else if (!strcmp(key, "log"))
        slot = &log_path;
    else if (!strcmp(key, "cache")) {
        char *end = NULL;
        unsigned long n = strtoul(value, &end, 10);

        if (!*value || *end || n < 1 || n > MAX_CACHE_CHUNKS) {
            plugin_error("virtsnap: cache=%s: give a number of chunks from 1 to %d", value,
                         MAX_CACHE_CHUNKS);
            return -1;
        }
        cache_chunks = (unsigned)n;
        return 0;
    } else {
        plugin_error("virtsnap: unknown parameter '%s' (see nbdkit virtsnap --help)", key);
        return -1;
    }
    g_free(*slot);
    *slot = g_strdup(value);
    return 0;
}

static int
vs_config_complete(void)
{
    if (log_path && (log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) < 0) {
        nbdkit_error("virtsnap: log=%s: %s", log_path, g_strerror(errno));
        return -1;
    }
    if (!repo_path || !backup_id || !domain_name || !disk_target) {
        plugin_error("virtsnap: repo=, backup=, domain= and disk= are required");
        return -1;
    }
    return 0;
}

static int
vs_get_ready(void)
{
    g_autoptr(GError) err = NULL;
    const VsManifestDomain *d;

    if (!(repo = vs_repo_open(repo_path, false, false, 0, &err))) {
        plugin_error("virtsnap: %s", err->message);
        return -1;
    }
    /* gc must not delete what is served; a read-only repository cannot be
     * collected anyway, so only a timeout (a gc running now) is an error. */
    if (!vs_repo_lock_shared(repo, &err) && err->code == VS_ERROR_TIMEOUT) {
        plugin_error("virtsnap: %s", err->message);
        return -1;
    }
    g_clear_error(&err);
    if (!(manifest = vs_repo_load_manifest(repo, backup_id, &err))) {
        plugin_error("virtsnap: backup %s: %s", backup_id, err->message);
        return -1;
    }
    d = vs_manifest_find_domain(manifest, domain_name);
    for (guint i = 0; !d && i < manifest->domains->len; i++) {
        const VsManifestDomain *c = manifest->domains->pdata[i];
        if (c->uuid && !g_ascii_strcasecmp(c->uuid, domain_name))
            d = c;
    }
    if (!d) {
        plugin_error("virtsnap: backup %s has no domain '%s'", manifest->id, domain_name);
        return -1;
    }
    if (!(disk = vs_manifest_find_disk(d, disk_target))) {
        plugin_error("virtsnap: backup %s domain '%s' has no disk %s", manifest->id, d->name,
                     disk_target);
        return -1;
    }
    if (!vs_manifest_disk_check_in_repo("virtsnap", repo_path, manifest->id, d->name, disk, &err)) {
        plugin_error("%s", err->message);
        return -1;
    }
    cache = g_new0(CacheSlot, cache_chunks);
    nbdkit_debug("virtsnap: serving backup %s domain %s disk %s: %" G_GUINT64_FORMAT
                 " bytes, %u chunks", manifest->id, d->name, disk->target, disk->virtual_size,
                 disk->chunks->len);
    return 0;
}

static int
vs_after_fork(void)
{
    forked = true;
    return 0;
}

static void *
vs_open(int readonly)
{
    (void)readonly;
    return NBDKIT_HANDLE_NOT_NEEDED;
}

static int64_t
vs_get_size(void *handle)
{
    (void)handle;
    return (int64_t)disk->virtual_size;
}

static int
vs_true(void *handle)
{
    (void)handle;
    return 1;
}

static int
vs_can_cache(void *handle)
{
    (void)handle;
    return NBDKIT_CACHE_EMULATE;
}

static int
vs_block_size(void *handle, uint32_t *minimum, uint32_t *preferred, uint32_t *maximum)
{
    (void)handle;
    *minimum = 1;
    *preferred = MAX(4096u, MIN(vs_repo_chunk_size(repo), 2u * 1024 * 1024));
    *maximum = 0xffffffff;
    return 0;
}

/* Index of the first chunk that ends after OFFSET (disk->chunks->len if none). */
static guint
first_chunk_after(uint64_t offset)
{
    guint lo = 0, hi = disk->chunks->len;

    while (lo < hi) {
        guint mid = lo + (hi - lo) / 2;
        const VsChunkRef *r = &g_array_index(disk->chunks, VsChunkRef, mid);

        if (r->offset + r->length <= offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static GBytes *
chunk_data(const VsChunkRef *r)
{
    g_autoptr(GError) err = NULL;
    GBytes *b = NULL;
    unsigned victim = 0;
    void *data;
    size_t len = 0;

    g_mutex_lock(&cache_lock);
    for (unsigned i = 0; i < cache_chunks; i++) {
        if (cache[i].data && !memcmp(&cache[i].digest, &r->digest, sizeof r->digest)) {
            cache[i].used = ++cache_tick;
            b = g_bytes_ref(cache[i].data);
            break;
        }
    }
    g_mutex_unlock(&cache_lock);
    if (b)
        return b;

    if (!(data = vs_repo_get_chunk(repo, &r->digest, &len, &err))) {
        char hex[VS_DIGEST_HEX_LEN];
        vs_digest_to_hex(&r->digest, hex);
        plugin_error("virtsnap: disk %s at offset %" G_GUINT64_FORMAT ": chunk %s: %s",
                     disk->target, r->offset, hex, err->message);
        return NULL;
    }
    if (len != r->length) {
        plugin_error("virtsnap: disk %s at offset %" G_GUINT64_FORMAT ": the manifest says %u "
                     "bytes, the chunk holds %zu", disk->target, r->offset, r->length, len);
        g_free(data);
        return NULL;
    }
    b = g_bytes_new_take(data, len);

    g_mutex_lock(&cache_lock);
    for (unsigned i = 0; i < cache_chunks; i++) {
        if (!cache[i].data) {
            victim = i;
            break;
        }
        if (cache[i].used < cache[victim].used)
            victim = i;
    }
    if (cache[victim].data)
        g_bytes_unref(cache[victim].data);
    cache[victim].digest = r->digest;
    cache[victim].data = g_bytes_ref(b);
    cache[victim].used = ++cache_tick;
    g_mutex_unlock(&cache_lock);
    return b;
}

static int
vs_pread(void *handle, void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
    char *out = buf;
    uint64_t pos = offset, end = offset + count;
    guint i = first_chunk_after(offset);

    (void)handle; (void)flags;
    while (pos < end) {
        const VsChunkRef *r = i < disk->chunks->len ? &g_array_index(disk->chunks, VsChunkRef, i) : NULL;

        if (!r || r->offset >= end) {
            memset(out + (pos - offset), 0, end - pos);
            break;
        }
        if (pos < r->offset) {
            memset(out + (pos - offset), 0, r->offset - pos);
            pos = r->offset;
        }
        {
            g_autoptr(GBytes) b = chunk_data(r);
            uint64_t n = MIN(end, r->offset + r->length) - pos;

            if (!b) {
                nbdkit_set_error(EIO);
                return -1;
            }
            memcpy(out + (pos - offset), (const char *)g_bytes_get_data(b, NULL) + (pos - r->offset), n);
            pos += n;
        }
        i++;
    }
    return 0;
}

static int
vs_extents(void *handle, uint32_t count, uint64_t offset, uint32_t flags,
           struct nbdkit_extents *extents)
{
    uint64_t pos = offset, end = offset + count;
    guint i = first_chunk_after(offset);

    (void)handle;
    while (pos < end) {
        const VsChunkRef *r = i < disk->chunks->len ? &g_array_index(disk->chunks, VsChunkRef, i) : NULL;
        uint64_t next;

        if (!r || r->offset > pos) {
            /* A gap: zeros, never stored. Up to the next chunk or the end. */
            next = r ? r->offset : disk->virtual_size;
            if (nbdkit_add_extent(extents, pos, next - pos, NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO) < 0)
                return -1;
        } else {
            /* Data: runs of adjacent chunks are one extent. */
            next = r->offset + r->length;
            while (++i < disk->chunks->len) {
                const VsChunkRef *n = &g_array_index(disk->chunks, VsChunkRef, i);
                if (n->offset != next || next >= end)
                    break;
                next = n->offset + n->length;
            }
            if (nbdkit_add_extent(extents, pos, next - pos, 0) < 0)
                return -1;
        }
        pos = next;
        if (flags & NBDKIT_FLAG_REQ_ONE)
            break;
    }
    return 0;
}

static struct nbdkit_plugin plugin = {
    .name = "virtsnap",
    .longname = "virtsnap repository (one disk of one backup, read-only)",
    .version = VIRTSNAP_VERSION,
    .description = "Serves a disk of a virtsnap backup straight from the repository.",
    .unload = vs_unload,
    .config = vs_config,
    .config_complete = vs_config_complete,
    .config_help =
        "repo=DIR        the repository (required)\n"
        "backup=ID       a backup id (or unique prefix, or 'latest') (required)\n"
        "domain=NAME     domain name or UUID in that backup (required)\n"
        "disk=TARGET     the disk, e.g. vda (required)\n"
        "cache=N         decompressed chunks kept in memory (default 8)\n"
        "log=FILE        errors are appended to FILE too",
    .get_ready = vs_get_ready,
    .after_fork = vs_after_fork,
    .open = vs_open,
    .get_size = vs_get_size,
    .can_multi_conn = vs_true,
    .can_extents = vs_true,
    .can_cache = vs_can_cache,
    .block_size = vs_block_size,
    .pread = vs_pread,
    .extents = vs_extents,
    .errno_is_preserved = 0,
};

NBDKIT_REGISTER_PLUGIN(plugin)
