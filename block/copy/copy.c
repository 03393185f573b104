/* The copy engine: reads a source into the repository as chunk-aligned chunks.
 * The calling thread plans (walks the source's extents, skipping chunks that are
 * wholly zero without reading them, reading only the data span of the others),
 * reads each chunk into one of max_inflight slots and hands it to a GThreadPool
 * whose workers zero-check, hash, compress and store it (vs_repo_put_chunk is
 * thread-safe). It retires finished slots strictly in offset order, so the chunk
 * list comes out sorted and a slot is reused only once everything before it is
 * done: memory is max_inflight chunk buffers however large the disk. Reading
 * moves to reader threads, each on its own clone of the source, only where that
 * was measured to pay (bench/copy-bench.c, 2 CPUs): a qcow2 chain behind
 * qemu-nbd, where one sync connection leaves the server idle between requests;
 * a local file is read fastest by one thread and the kernel's readahead. The
 * An incremental source marks the ranges not written since the previous backup
 * `unchanged`; a chunk with no changed byte is neither read nor stored: its
 * entry is taken from the previous manifest (a slot born done), which is what
 * keeps every manifest a full description of its disk. A delta source (a
 * push-mode incremental target) has no bytes for its unchanged ranges: a chunk
 * partly changed there is built from the previous backup's chunk with the
 * changed ranges laid over it (the slot is "patched"). The
 * first error, from any thread, stops planning and reading at once; readers and
 * workers skip what is still queued, and both pools are drained before
 * returning, so no thread of ours touches the source, the repository or the
 * buffers afterwards. */
#include "config.h"
#include "source-internal.h"
#include "vs-copy.h"
#include "vs-interrupt.h"
#include "vs-fault.h"

#include <string.h>

#define DEFAULT_MAX_INFLIGHT 16

typedef struct {
    uint64_t offset;
    uint32_t length;
    uint64_t lo, hi;        /* the span to read; the rest of the chunk is zeros */
    uint64_t to_read;       /* bytes the source is asked for */
    /* A delta source's chunk with unchanged and changed parts: BASE (the
     * previous manifest's entry; NULL: zeros) under PIECES (VsExtent: the
     * changed ranges, read or zeroed), instead of [lo, hi). */
    bool patch;
    const VsChunkRef *base;
    GArray *pieces;
    char *buf;              /* chunk_size bytes, allocated on first use */
    bool done;              /* the worker has finished with it (under Engine.lock) */
    bool zero;
    VsDigest digest;
    uint64_t stored;
} Slot;

typedef struct {
    VsSource *src;
    VsRepo *repo;
    uint32_t chunk_size;
    uint64_t size;

    GMutex lock;
    GCond cond;
    GError *error;          /* the first error, under lock */
    gint failed;            /* atomic mirror of error != NULL, read without the lock */

    GThreadPool *workers;
    GThreadPool *readers;   /* NULL: the calling thread reads */
    GAsyncQueue *clones;    /* of VsSource*: one per reader thread, taken while reading */

    Slot *slots;
    unsigned nslots;
    uint64_t issued;        /* sequence numbers: slot = seq % nslots */
    uint64_t retired;

    /* The planner's view of the source's extents: EXT covers [ext_start, ext_end)
     * contiguously; entries before the current chunk are dropped as it moves. */
    GArray *ext;
    uint64_t ext_end;
    uint64_t pos;           /* next chunk-aligned offset to plan */

    const VsManifestDisk *previous;   /* NULL: not incremental */
    guint prev_idx;         /* first entry of previous->chunks not behind pos */
} Engine;

void
vs_copy_options_init(VsCopyOptions *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->max_inflight = DEFAULT_MAX_INFLIGHT;
    opts->threads = 0;
}

/* Takes ownership of ERR; keeps it only if it is the first. */
static void
engine_fail(Engine *eng, GError *err)
{
    g_mutex_lock(&eng->lock);
    if (!eng->error) {
        eng->error = err;
        err = NULL;
        g_atomic_int_set(&eng->failed, 1);
        g_cond_broadcast(&eng->cond);
    }
    g_mutex_unlock(&eng->lock);
    if (err)
        g_error_free(err);
}

/* SLOT is finished (stored, failed or skipped): the issuing thread may retire it. */
static void
slot_done(Engine *eng, Slot *slot)
{
    g_mutex_lock(&eng->lock);
    slot->done = true;
    g_cond_broadcast(&eng->cond);
    g_mutex_unlock(&eng->lock);
}

static bool
is_zero(const char *p, size_t n)
{
    size_t head = MIN(n, 16);

    for (size_t i = 0; i < head; i++)
        if (p[i])
            return false;
    /* With the first 16 bytes zero, p[i] == p[i + 16] for all i means all zero;
     * memcmp is vectorised where a byte loop is not. */
    return n <= 16 || memcmp(p, p + 16, n - 16) == 0;
}

static void
worker(gpointer data, gpointer user_data)
{
    Slot *slot = data;
    Engine *eng = user_data;
    GError *err = NULL;

    if (!g_atomic_int_get(&eng->failed)) {
        slot->zero = is_zero(slot->buf, slot->length);
        slot->stored = 0;
        if (!slot->zero &&
            !vs_repo_put_chunk(eng->repo, slot->buf, slot->length, &slot->digest, &slot->stored,
                               &err)) {
            vs_error_prefix(&err, "copy: %s: chunk at offset %" G_GUINT64_FORMAT,
                            eng->src->description, slot->offset);
            engine_fail(eng, err);
        }
    }
    slot_done(eng, slot);
}

/* A patched slot: the previous backup's chunk, the changed ranges over it. */
static bool
read_patch(Engine *eng, VsSource *src, Slot *slot, GError **error)
{
    if (!slot->base) {
        memset(slot->buf, 0, slot->length);
    } else {
        size_t n = 0;
        g_autofree char *data = vs_repo_get_chunk(eng->repo, &slot->base->digest, &n, error);

        if (!data) {
            vs_error_prefix(error, "copy: %s: the previous backup's chunk at offset %"
                            G_GUINT64_FORMAT " (its unchanged part)", src->description, slot->offset);
            return false;
        }
        if (n != slot->length) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO,
                        "copy: %s: the previous backup's chunk at offset %" G_GUINT64_FORMAT
                        " holds %zu bytes, not %u", src->description, slot->offset, n, slot->length);
            return false;
        }
        memcpy(slot->buf, data, n);
    }
    for (guint i = 0; i < slot->pieces->len; i++) {
        const VsExtent *p = &g_array_index(slot->pieces, VsExtent, i);
        char *at = slot->buf + (p->offset - slot->offset);

        if (p->zero) {
            memset(at, 0, p->length);
        } else if (!vs_source_pread(src, at, p->length, p->offset, error)) {
            vs_error_prefix(error, "copy");
            return false;
        }
    }
    return true;
}

static bool
read_slot(Engine *eng, VsSource *src, Slot *slot, GError **error)
{
    /* Page-aligned, so that a source may read into it with O_DIRECT. */
    if (!slot->buf)
        slot->buf = g_aligned_alloc(1, eng->chunk_size, 4096);
    if (slot->patch)
        return read_patch(eng, src, slot, error);
    if (slot->lo > slot->offset)
        memset(slot->buf, 0, slot->lo - slot->offset);
    if (slot->offset + slot->length > slot->hi)
        memset(slot->buf + (slot->hi - slot->offset), 0, slot->offset + slot->length - slot->hi);
    if (!vs_source_pread(src, slot->buf + (slot->lo - slot->offset), slot->hi - slot->lo, slot->lo,
                         error)) {
        vs_error_prefix(error, "copy");
        return false;
    }
    return true;
}

static void
reader(gpointer data, gpointer user_data)
{
    Slot *slot = data;
    Engine *eng = user_data;
    GError *err = NULL;

    if (!g_atomic_int_get(&eng->failed)) {
        VsSource *src = g_async_queue_pop(eng->clones);
        bool ok = read_slot(eng, src, slot, &err);

        g_async_queue_push(eng->clones, src);
        if (ok) {
            g_thread_pool_push(eng->workers, slot, NULL);
            return;
        }
        engine_fail(eng, err);
    }
    slot_done(eng, slot);
}

/* Makes EXT cover up to END (at most the size). */
static bool
fetch_extents(Engine *eng, uint64_t end, GError **error)
{
    while (eng->ext_end < end) {
        g_autoptr(GArray) got = g_array_new(FALSE, FALSE, sizeof(VsExtent));
        uint64_t at = eng->ext_end;

        if (!vs_source_extents(eng->src, at, eng->size - at, got, error)) {
            vs_error_prefix(error, "copy");
            return false;
        }
        for (guint i = 0; i < got->len; i++) {
            VsExtent *e = &g_array_index(got, VsExtent, i);
            if (e->offset != eng->ext_end || e->length == 0 || e->length > eng->size - e->offset) {
                g_set_error(error, VS_ERROR, VS_ERROR_IO,
                            "copy: %s: the source reported extents that are not contiguous "
                            "(%" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT " after %" G_GUINT64_FORMAT ")",
                            eng->src->description, e->offset, e->length, eng->ext_end);
                return false;
            }
            eng->ext_end += e->length;
            g_array_append_val(eng->ext, *e);
        }
        if (eng->ext_end == at) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO,
                        "copy: %s: the source reported no extents at offset %" G_GUINT64_FORMAT,
                        eng->src->description, at);
            return false;
        }
    }
    return true;
}

/* The previous manifest's entry for the chunk at OFFSET, or NULL (zeros).
 * Offsets only grow, so the cursor only moves forward. */
static const VsChunkRef *
previous_chunk(Engine *eng, uint64_t offset)
{
    GArray *prev = eng->previous->chunks;

    while (eng->prev_idx < prev->len && g_array_index(prev, VsChunkRef, eng->prev_idx).offset < offset)
        eng->prev_idx++;
    if (eng->prev_idx < prev->len && g_array_index(prev, VsChunkRef, eng->prev_idx).offset == offset)
        return &g_array_index(prev, VsChunkRef, eng->prev_idx);
    return NULL;
}

/* The next chunk holding data, into SLOT: its offset and length, and the
 * smallest span [lo, hi) inside it that covers its data extents (the rest
 * reads as zeros); *REUSE when no byte of it changed since the previous backup
 * (then nothing is read); for a delta source's chunk partly changed, the
 * changed pieces to lay over the previous chunk (slot->patch). Returns false
 * with *error unset at the end of the source. */
static bool
plan_next(Engine *eng, Slot *slot, bool *reuse, GError **error)
{
    bool delta = eng->src->delta;

    while (eng->pos < eng->size) {
        uint64_t start = eng->pos, end = MIN(start + eng->chunk_size, eng->size);
        uint64_t dlo = UINT64_MAX, dhi = 0, zero_end = end, changed_data = 0;
        bool any_changed = false, any_unchanged = false;
        guint drop = 0;

        if (!fetch_extents(eng, end, error))
            return false;
        while (drop < eng->ext->len) {
            VsExtent *e = &g_array_index(eng->ext, VsExtent, drop);
            if (e->offset + e->length > start)
                break;
            drop++;
        }
        if (drop)
            g_array_remove_range(eng->ext, 0, drop);
        if (delta) {
            if (!slot->pieces)
                slot->pieces = g_array_new(FALSE, FALSE, sizeof(VsExtent));
            g_array_set_size(slot->pieces, 0);
        }
        for (guint i = 0; i < eng->ext->len; i++) {
            VsExtent *e = &g_array_index(eng->ext, VsExtent, i);
            uint64_t a = MAX(e->offset, start), b = MIN(e->offset + e->length, end);
            if (e->offset >= end)
                break;
            if (!e->zero) {
                dlo = MIN(dlo, a);
                dhi = MAX(dhi, b);
            }
            if (e->unchanged) {
                any_unchanged = true;
                continue;
            }
            any_changed = true;
            if (delta) {
                VsExtent piece = { .offset = a, .length = b - a, .zero = e->zero };
                g_array_append_val(slot->pieces, piece);
                changed_data += e->zero ? 0 : b - a;
            }
        }
        /* A delta's unchanged extents are never zero: its chunks always come here. */
        if (dhi > dlo) {
            slot->offset = start;
            slot->length = (uint32_t)(end - start);
            slot->lo = dlo;
            slot->hi = dhi;
            slot->patch = delta && any_changed && any_unchanged;
            slot->to_read = slot->patch ? changed_data : dhi - dlo;
            *reuse = eng->previous != NULL && !any_changed;
            eng->pos = end;
            return true;
        }
        /* All zero: jump over every whole chunk the known zero run covers, so
         * that an empty terabyte costs a few extents calls, not a loop per chunk. */
        for (guint i = 0; i < eng->ext->len; i++) {
            VsExtent *e = &g_array_index(eng->ext, VsExtent, i);
            if (!e->zero)
                break;
            zero_end = MAX(zero_end, e->offset + e->length);
        }
        eng->pos = MAX(end, zero_end - zero_end % eng->chunk_size);
    }
    return false;
}

static void
report_progress(Engine *eng, const VsCopyOptions *opts, uint64_t *last)
{
    uint64_t done;

    if (!opts->progress)
        return;
    g_mutex_lock(&eng->lock);
    done = eng->retired < eng->issued ? eng->slots[eng->retired % eng->nslots].offset : eng->pos;
    g_mutex_unlock(&eng->lock);
    if (done != *last) {
        *last = done;
        opts->progress(done, eng->size, opts->progress_opaque);
    }
}

/* Moves finished slots, oldest first, into CHUNKS. */
static void
retire(Engine *eng, GArray *chunks, uint64_t *bytes_stored)
{
    g_mutex_lock(&eng->lock);
    while (eng->retired < eng->issued) {
        Slot *s = &eng->slots[eng->retired % eng->nslots];
        if (!s->done)
            break;
        if (!s->zero && !eng->error) {
            VsChunkRef ref = { .offset = s->offset, .length = s->length, .digest = s->digest };
            /* A reused chunk costs nothing: s->stored is 0. */
            g_array_append_val(chunks, ref);
            *bytes_stored += s->stored;
        }
        eng->retired++;
    }
    g_mutex_unlock(&eng->lock);
}

static bool
run(Engine *eng, const VsCopyOptions *opts, GArray *chunks,
    uint64_t *bytes_read, uint64_t *bytes_stored)
{
    uint64_t last_progress = UINT64_MAX;
    bool planned_all = false;

    for (;;) {
        bool reuse = false;
        GError *err = NULL;
        Slot *slot;

        retire(eng, chunks, bytes_stored);
        report_progress(eng, opts, &last_progress);
        if (g_atomic_int_get(&eng->failed))
            return false;
        /* An interrupt ends the copy here, between chunks; the caller's
         * cleanup (commit, abort) is not a copy and runs to its end. A test
         * holds the copy here (sleep:copy-chunk:MS) to reach it mid-copy. */
        vs_fault_point("copy-chunk");
        if (vs_interrupted()) {
            engine_fail(eng, g_error_new(VS_ERROR, VS_ERROR_INTERRUPTED, "copy: %s: interrupted by %s",
                                         eng->src->description, vs_signal_name(vs_interrupted())));
            return false;
        }
        if (planned_all) {
            if (eng->retired == eng->issued)
                return true;
        } else if (eng->issued - eng->retired < eng->nslots) {
            slot = &eng->slots[eng->issued % eng->nslots];
            if (!plan_next(eng, slot, &reuse, &err)) {
                if (err) {
                    engine_fail(eng, err);
                    return false;
                }
                planned_all = true;
                continue;
            }
            if (opts->fault_after_bytes && *bytes_read + slot->to_read > opts->fault_after_bytes) {
                engine_fail(eng, g_error_new(VS_ERROR, VS_ERROR_IO,
                                             "copy: %s: injected fault after %" G_GUINT64_FORMAT
                                             " bytes read (at offset %" G_GUINT64_FORMAT ")",
                                             eng->src->description, *bytes_read, slot->lo));
                return false;
            }
            slot->stored = 0;
            slot->base = slot->patch || reuse ? previous_chunk(eng, slot->offset) : NULL;
            if (reuse) {
                const VsChunkRef *prev = slot->base;
                /* Born done, in order: retire lists it after every earlier chunk. */
                slot->zero = prev == NULL;
                if (prev)
                    slot->digest = prev->digest;
                g_mutex_lock(&eng->lock);
                slot->done = true;
                g_mutex_unlock(&eng->lock);
                eng->issued++;
                continue;
            }
            slot->done = false;
            *bytes_read += slot->to_read;
            if (eng->readers) {
                eng->issued++;
                g_thread_pool_push(eng->readers, slot, NULL);
                continue;
            }
            if (!read_slot(eng, eng->src, slot, &err)) {
                engine_fail(eng, err);
                return false;
            }
            eng->issued++;
            g_thread_pool_push(eng->workers, slot, NULL);
            continue;
        }
        /* Every slot busy (or all planned): wait for the oldest. */
        g_mutex_lock(&eng->lock);
        while (!eng->error && !eng->slots[eng->retired % eng->nslots].done)
            g_cond_wait(&eng->cond, &eng->lock);
        g_mutex_unlock(&eng->lock);
    }
}

/* Opens the reader threads and their clones of the source, when asked for and
 * the source can be cloned; otherwise leaves reading to the calling thread. */
static bool
start_readers(Engine *eng, unsigned n, GError **error)
{
    GError *err = NULL;

    if (n < 2 || !eng->src->ops->clone)
        return true;
    eng->clones = g_async_queue_new_full((GDestroyNotify)vs_source_close);
    for (unsigned i = 0; i < n; i++) {
        VsSource *clone = vs_source_clone(eng->src, error);
        if (!clone) {
            vs_error_prefix(error, "copy");
            return false;
        }
        g_async_queue_push(eng->clones, clone);
    }
    eng->readers = g_thread_pool_new(reader, eng, (gint)n, FALSE, &err);
    if (!eng->readers) {
        g_propagate_prefixed_error(error, err, "copy: %s: reader threads: ", eng->src->description);
        return false;
    }
    return true;
}

bool
vs_copy_source_to_repo(VsSource *src, VsRepo *repo, VsManifestDisk *disk,
                       const VsCopyOptions *opts, GError **error)
{
    VsCopyOptions defaults;
    Engine eng = { 0 };
    g_autoptr(GArray) chunks = g_array_new(FALSE, FALSE, sizeof(VsChunkRef));
    uint64_t bytes_read = 0, bytes_stored = 0;
    unsigned threads;
    GError *err = NULL;
    bool ok = false;

    if (!opts) {
        vs_copy_options_init(&defaults);
        opts = &defaults;
    }
    eng.src = src;
    eng.repo = repo;
    eng.chunk_size = vs_repo_chunk_size(repo);
    eng.size = vs_source_size(src);
    eng.previous = opts->previous;
    eng.nslots = opts->max_inflight ? opts->max_inflight : DEFAULT_MAX_INFLIGHT;
    eng.slots = g_new0(Slot, eng.nslots);
    eng.ext = g_array_new(FALSE, FALSE, sizeof(VsExtent));
    g_mutex_init(&eng.lock);
    g_cond_init(&eng.cond);
    if (eng.chunk_size == 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "copy: %s: repository chunk size is 0",
                    src->description);
        goto out;
    }
    if (src->delta && !eng.previous) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "copy: %s holds only what changed since a previous backup, and none was "
                    "given to take the rest from", src->description);
        goto out;
    }
    if (eng.previous && eng.previous->virtual_size != eng.size) {
        /* Another chunk grid, or another disk: nothing of it can be reused. */
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "copy: %s: the previous backup's disk is %" G_GUINT64_FORMAT " bytes, this one %"
                    G_GUINT64_FORMAT, src->description, eng.previous->virtual_size, eng.size);
        goto out;
    }
    threads = opts->threads ? opts->threads : MAX(1u, g_get_num_processors());
    /* More workers than slots could never all be busy. */
    threads = MIN(threads, eng.nslots);
    /* Shared pools: the threads return to GLib's spare pool when it is freed
     * (idle, holding nothing of ours), so the next disk's copy reuses them. */
    eng.workers = g_thread_pool_new(worker, &eng, (gint)threads, FALSE, &err);
    if (!eng.workers) {
        g_propagate_prefixed_error(error, err, "copy: %s: worker threads: ", src->description);
        goto out;
    }
    if (!start_readers(&eng, MIN(opts->readers ? opts->readers : src->ops->preferred_readers,
                                 eng.nslots), error))
        goto out;

    ok = run(&eng, opts, chunks, &bytes_read, &bytes_stored);
    if (!ok)
        g_propagate_error(error, g_steal_pointer(&eng.error));

out:
    /* Readers first (they feed the workers), each waiting until every queued
     * slot has been through reader() and worker(), which skip the work once an
     * error is set: after this no thread of ours touches the source, the
     * repository or the buffers. */
    if (eng.readers)
        g_thread_pool_free(eng.readers, FALSE, TRUE);
    if (eng.workers)
        g_thread_pool_free(eng.workers, FALSE, TRUE);
    if (eng.clones)
        g_async_queue_unref(eng.clones);
    if (ok) {
        disk->virtual_size = eng.size;
        disk->bytes_read = bytes_read;
        disk->bytes_stored = bytes_stored;
        if (disk->chunks)
            g_array_unref(disk->chunks);
        disk->chunks = g_steal_pointer(&chunks);
    }
    for (unsigned i = 0; i < eng.nslots; i++) {
        g_aligned_free(eng.slots[i].buf);
        if (eng.slots[i].pieces)
            g_array_unref(eng.slots[i].pieces);
    }
    g_free(eng.slots);
    g_array_unref(eng.ext);
    g_clear_error(&eng.error);
    g_mutex_clear(&eng.lock);
    g_cond_clear(&eng.cond);
    return ok;
}
