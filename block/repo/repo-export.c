/* export: writes one disk of a backup back out as an image, raw or qcow2. The
 * result must be as sparse as the backup (a 100 GiB disk with 2 GiB of data
 * exports as 2 GiB), so nothing is written where the backup has no chunk, nor
 * for the zero 4 KiB blocks inside a chunk; raw relies on ftruncate's hole,
 * qcow2 on unallocated clusters. qcow2 is built by our own writer
 * (qcow2-writer.c) with pwrite, in the same process: going through qemu-nbd
 * over a socket, as export did before, cost a third of the CPU of a restore
 * (the process, its socket copies, its page faults). qemu-nbd stays as the
 * fallback (VIRTSNAP_QCOW2_WRITER=qemu-nbd). Either way the image is built
 * under a temp name next to OUT and renamed only once complete and synced: OUT
 * never exists half-written.
 *
 * Speed: reading, inflating and re-hashing chunks costs more CPU than writing
 * them, so a few reader threads do it ahead of the writer (the caller's
 * thread), which writes chunks in order (through qemu-nbd: with several NBD
 * requests in flight); a small ring of chunks, whose buffers are reused from
 * chunk to chunk, bounds memory. A cold repository is thousands of small files
 * read one after another: a prefetch thread asks the kernel for the next few
 * ahead of the readers, or they would spend much of their time waiting for
 * the disk. Every chunk is re-hashed on its way out, so an export is also a
 * verify of the disk: restore relies on that instead of a verify pass of its
 * own. The writer starts the kernel's writeback as it goes, so that the final
 * fsync does not find the whole image still in the page cache. */
#include "config.h"
#include "repo-internal.h"
#include "vs-qcow2.h"
#include "vs-interrupt.h"
#include "vs-fault.h"
#include "vs-temp.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <libnbd.h>

#define ZERO_BLOCK 4096
/* Per NBD request: qemu-nbd allocates a buffer of the request's size. */
#define MAX_WRITE (4u * 1024 * 1024)
/* Readers: reading, inflating and hashing a chunk keeps a core busy; the
 * writer and qemu-nbd need the rest. */
#define EXPORT_MAX_READERS 4
/* Plain chunks held per disk (being read, read ahead, or written and awaiting
 * their NBD replies): the memory bound, whatever the disk's size. Large chunks
 * get at least two slots (one written while the next is read), and one reader
 * fewer than slots: each reader also holds a compressed chunk. */
#define EXPORT_RING_BYTES (8u * 1024 * 1024)
#define EXPORT_MIN_SLOTS 2u
#define EXPORT_MAX_SLOTS 16u
/* Chunk files asked for ahead of the readers (readahead, page cache only):
 * reading a cold repository is one small file after another, and a reader
 * that waits for the disk does not inflate or hash. */
#define EXPORT_PREFETCH_AHEAD 32u
/* NBD writes in flight: qemu-nbd serves up to 16 at once. */
#define EXPORT_MAX_IN_FLIGHT 16
/* Dirty bytes after which the writer starts the kernel writing the image
 * back (sync_file_range), so that the final fsync has little left to do. */
#define EXPORT_WRITEBACK_BYTES (64u * 1024 * 1024)

/* One disk being exported. */
typedef struct {
    VsRepo *repo;
    const VsManifest *m;
    const VsManifestDomain *d;
    const VsManifestDisk *disk;
    const char *tmp;           /* written */
    const char *out;           /* named in errors */
    VsExportControl *ctl;      /* may be NULL */
    int fd;                    /* TMP, created and opened by the caller (read-write) */
} ExportJob;

/* Where the chunks go: a raw file (fd alone), a qcow2 image our own writer
 * builds in fd, or a qcow2 image qemu-nbd writes (fd then only serves the
 * writeback). */
typedef struct {
    int fd;
    VsQcow2Writer *qcow2;
    struct nbd_handle *nbd;
} Sink;

/* One chunk in the ring, from the reader that fills it to the writer's last
 * NBD reply. */
typedef struct {
    guint index;               /* into disk->chunks */
    bool ready;                /* read and checked: verdict, data, detail set */
    uint8_t verdict;           /* ChunkVerdict */
    char *detail;
    void *data;                /* chunk_size bytes, the slot's for the whole export */
    size_t len;
    guint writes;              /* NBD writes of it not yet replied to */
} Slot;

/* The pipeline of one disk: readers take chunks in order and fill the ring;
 * the caller's thread writes them in order. Chunk I may go into the ring only
 * once chunk I - nslots has left it (its writes all replied to): that is the
 * memory bound and the flow control. */
typedef struct {
    VsRepo *repo;
    const VsManifestDisk *disk;
    const gint *cancel;        /* another disk's failure */
    bool verify_hash;          /* SHA-256 every chunk, not only its frame checksum */
    GMutex lock;
    GCond cond;
    Slot *slots;
    guint nslots;
    guint next_read;           /* next chunk a reader takes */
    guint next_prefetch;       /* next chunk file the prefetcher asks for */
    guint freed;               /* chunks [0, freed) have left the ring */
    guint written;             /* chunks [0, written) handed to the sink */
    guint in_flight;           /* NBD writes not yet replied to */
    int write_err;             /* the first errno an NBD reply gave */
    uint64_t write_err_offset; /* and the offset of that write */
    bool stop;
} Pipe;

static bool
pipe_stopped(Pipe *p)
{
    /* An interrupt is one more cancel: the writer's wait below looks at it
     * at least every 100 ms. */
    return p->stop || (p->cancel && g_atomic_int_get(p->cancel)) || vs_interrupted();
}

/* Under p->lock: the next chunk for a worker whose counter is *NEXT, waiting
 * until it is less than *BASE + WINDOW; false when the pipe stopped or every
 * chunk was taken. */
static bool
pipe_take_locked(Pipe *p, guint *next, const guint *base, guint window, guint *index)
{
    guint i;

    if (pipe_stopped(p) || *next >= p->disk->chunks->len)
        return false;
    i = (*next)++;
    while (!pipe_stopped(p) && i >= *base + window)
        g_cond_wait(&p->cond, &p->lock);
    *index = i;
    return !pipe_stopped(p);
}

static gpointer
read_worker(gpointer data)
{
    Pipe *p = data;
    g_autofree void *zbuf = NULL;  /* compressed chunk files, reused */
    size_t zcap = 0;
    guint i;

    g_mutex_lock(&p->lock);
    /* A slot is free once the chunk nslots before has left the ring. */
    while (pipe_take_locked(p, &p->next_read, &p->freed, p->nslots, &i)) {
        const VsChunkRef *r = &g_array_index(p->disk->chunks, VsChunkRef, i);
        Slot *s = &p->slots[i % p->nslots];
        char *detail = NULL;
        size_t len = 0;
        ChunkVerdict v;

        /* The prefetcher waits for readers to move on. */
        g_cond_broadcast(&p->cond);
        g_mutex_unlock(&p->lock);
        /* Read and inflated, its frame checksum and size checked (SHA-256
         * too if asked): the write pass is the verification. Into the slot's
         * own buffer: the slot is this reader's until it is marked ready, and
         * memory used again costs no page faults. */
        v = repo_check_chunk_into(p->repo, &r->digest, &zbuf, &zcap, s->data, &len, p->verify_hash,
                                  &detail);
        g_mutex_lock(&p->lock);
        s->index = i;
        s->verdict = (uint8_t)v;
        s->len = len;
        s->detail = detail;
        s->writes = 0;
        s->ready = true;
        g_cond_broadcast(&p->cond);
    }
    g_mutex_unlock(&p->lock);
    return NULL;
}

/* Asks the kernel to read the chunk files the readers will want next, so that
 * many reads are in flight at once rather than one per reader. Only a hint:
 * a file it cannot open is the reader's to report. */
static gpointer
prefetch_worker(gpointer data)
{
    Pipe *p = data;
    guint i;

    g_mutex_lock(&p->lock);
    while (pipe_take_locked(p, &p->next_prefetch, &p->next_read, EXPORT_PREFETCH_AHEAD, &i)) {
        g_mutex_unlock(&p->lock);
        repo_prefetch_chunk(p->repo, &g_array_index(p->disk->chunks, VsChunkRef, i).digest);
        g_mutex_lock(&p->lock);
    }
    g_mutex_unlock(&p->lock);
    return NULL;
}

static void
slot_clear(Slot *s)
{
    g_clear_pointer(&s->detail, g_free);
    s->ready = false;
}

/* Under p->lock: chunks leave the ring in order, once handed to the sink and
 * replied to. */
static void
pipe_release_locked(Pipe *p)
{
    bool any = false;

    while (p->freed < p->written) {
        Slot *s = &p->slots[p->freed % p->nslots];

        if (s->writes > 0)
            break;
        slot_clear(s);
        p->freed++;
        any = true;
    }
    if (any)
        g_cond_broadcast(&p->cond);
}

typedef struct {
    Pipe *pipe;
    Slot *slot;
    uint64_t offset;
} WriteReply;

/* Runs in the writer's thread, inside libnbd's poll. */
static int
write_done(void *user_data, int *error)
{
    WriteReply *w = user_data;

    g_mutex_lock(&w->pipe->lock);
    if (*error && !w->pipe->write_err) {
        w->pipe->write_err = *error;
        w->pipe->write_err_offset = w->offset;
    }
    w->slot->writes--;
    w->pipe->in_flight--;
    g_mutex_unlock(&w->pipe->lock);
    return 1;
}

typedef struct {
    Pipe *pipe;
    Sink *sink;
    const char *out;
    uint64_t dirty;            /* bytes written since the last writeback start */
} Writer;

/* Waits for one NBD reply (or, with nothing in flight, returns). */
static bool
writer_poll(Writer *w, GError **error)
{
    uint64_t offset;
    int err;

    if (w->pipe->in_flight > 0 && nbd_poll(w->sink->nbd, -1) < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "export: %s: %s", w->out, nbd_get_error());
        return false;
    }
    g_mutex_lock(&w->pipe->lock);
    err = w->pipe->write_err;
    offset = w->pipe->write_err_offset;
    pipe_release_locked(w->pipe);
    g_mutex_unlock(&w->pipe->lock);
    if (err) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "export: %s: writing at offset %" G_GUINT64_FORMAT ": %s",
                    w->out, offset, g_strerror(err));
        return false;
    }
    return true;
}

static bool
sink_write(Writer *w, Slot *slot, size_t start, size_t len, uint64_t offset, GError **error)
{
    const char *buf = (const char *)slot->data + start;

    if (w->sink->nbd) {
        WriteReply *reply;

        while (w->pipe->in_flight >= EXPORT_MAX_IN_FLIGHT)
            if (!writer_poll(w, error))
                return false;
        reply = g_new(WriteReply, 1);
        *reply = (WriteReply){ w->pipe, slot, offset };
        g_mutex_lock(&w->pipe->lock);
        slot->writes++;
        w->pipe->in_flight++;
        g_mutex_unlock(&w->pipe->lock);
        if (nbd_aio_pwrite(w->sink->nbd, buf, len, offset,
                           (nbd_completion_callback){ .callback = write_done, .user_data = reply,
                                                      .free = g_free }, 0) < 0) {
            g_mutex_lock(&w->pipe->lock);
            slot->writes--;
            w->pipe->in_flight--;
            g_mutex_unlock(&w->pipe->lock);
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "export: %s: writing at offset %" G_GUINT64_FORMAT
                        ": %s", w->out, offset, nbd_get_error());
            return false;
        }
    } else if (w->sink->qcow2) {
        if (!vs_qcow2_writer_pwrite(w->sink->qcow2, buf, len, offset, error)) {
            vs_error_prefix(error, "export");
            return false;
        }
    } else {
        int err = repo_pwrite_all(w->sink->fd, buf, len, (off_t)offset);

        if (err) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "export: %s: writing at offset %" G_GUINT64_FORMAT
                        ": %s", w->out, offset, g_strerror(err));
            return false;
        }
    }
    w->dirty += len;
    if (w->dirty >= EXPORT_WRITEBACK_BYTES && w->sink->fd >= 0) {
        /* Only a start: it does not wait for the disk. */
        (void)sync_file_range(w->sink->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        w->dirty = 0;
    }
    return true;
}

/* A chunk the disk needs and cannot have: the problem as verify would list it,
 * and an error naming the chunk's file. A repository that is gone altogether
 * is not a problem of the backup, just an error. */
static bool
chunk_failed(ExportJob *job, const Slot *s, GError **error)
{
    VsRepo *repo = job->repo;
    const VsManifestDisk *disk = job->disk;
    const char *out = job->out;
    const VsChunkRef *r = &g_array_index(disk->chunks, VsChunkRef, s->index);
    g_autofree char *marker = g_build_filename(vs_repo_path(repo), REPO_MARKER, NULL);
    g_autofree char *file = repo_chunk_path(repo, &r->digest);
    g_autofree char *problem = NULL;
    char hex[VS_DIGEST_HEX_LEN];

    vs_digest_to_hex(&r->digest, hex);
    if (s->verdict == CHUNK_MISSING && !g_file_test(marker, G_FILE_TEST_EXISTS)) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "export: %s: disk %s at offset %" G_GUINT64_FORMAT
                    ": the repository %s is gone (no %s)", out, disk->target, r->offset, vs_repo_path(repo),
                    marker);
        return false;
    }
    problem = repo_chunk_problem(s->verdict, s->detail, r->length, s->len);
    g_set_error(error, VS_ERROR, VS_ERROR_IO, "export: %s: disk %s at offset %" G_GUINT64_FORMAT
                ": chunk %s (%s) is %s", out, disk->target, r->offset, hex, file, problem);
    if (job->ctl) {
        VsVerifyProblem *p = g_new0(VsVerifyProblem, 1);

        p->backup_id = g_strdup(job->m->id);
        p->domain = g_strdup(job->d->name);
        p->disk = g_strdup(disk->target);
        p->offset = r->offset;
        p->digest_hex = g_strdup(hex);
        p->problem = g_steal_pointer(&problem);
        vs_verify_problem_free(job->ctl->bad_chunk);
        job->ctl->bad_chunk = p;
    }
    return false;
}

/* Hands one checked chunk to the sink: runs of non-zero 4 KiB blocks, each
 * written once; zero blocks stay holes. */
static bool
write_slot(Writer *w, Slot *s, uint64_t offset, GError **error)
{
    const char *data = s->data;
    size_t len = s->len, pos = 0;

    while (pos < len) {
        size_t start;

        while (pos < len && vs_buffer_is_zero(data + pos, MIN(ZERO_BLOCK, len - pos)))
            pos += MIN(ZERO_BLOCK, len - pos);
        start = pos;
        while (pos < len && pos - start < MAX_WRITE &&
               !vs_buffer_is_zero(data + pos, MIN(ZERO_BLOCK, len - pos)))
            pos += MIN(ZERO_BLOCK, len - pos);
        if (pos > start && !sink_write(w, s, start, pos - start, offset + start, error))
            return false;
    }
    return true;
}

static bool
write_chunks(ExportJob *job, Sink *sink, GError **error)
{
    VsRepo *repo = job->repo;
    const VsManifestDisk *disk = job->disk;
    const char *out = job->out;
    guint n = disk->chunks->len;
    guint nslots = CLAMP(EXPORT_RING_BYTES / MAX(vs_repo_chunk_size(repo), 1), EXPORT_MIN_SLOTS,
                         EXPORT_MAX_SLOTS);
    guint nreaders = MIN(MIN(CLAMP(g_get_num_processors(), 1, EXPORT_MAX_READERS), nslots - 1), MAX(n, 1));
    Pipe p = { .repo = repo, .disk = disk, .cancel = job->ctl ? job->ctl->cancel : NULL, .nslots = nslots,
               .verify_hash = job->ctl && job->ctl->verify_hash };
    Writer w = { .pipe = &p, .sink = sink, .out = out };
    GThread *readers[EXPORT_MAX_READERS], *prefetcher;
    bool ok = true;

    g_mutex_init(&p.lock);
    g_cond_init(&p.cond);
    p.slots = g_new0(Slot, nslots);
    for (guint k = 0; k < nslots; k++)
        p.slots[k].data = g_malloc(vs_repo_chunk_size(repo));
    for (guint t = 0; t < nreaders; t++)
        readers[t] = g_thread_new("vs-export", read_worker, &p);
    prefetcher = g_thread_new("vs-prefetch", prefetch_worker, &p);

    for (guint i = 0; ok && i < n; i++) {
        Slot *s = &p.slots[i % nslots];
        const VsChunkRef *r = &g_array_index(disk->chunks, VsChunkRef, i);

        g_mutex_lock(&p.lock);
        while (!(s->ready && s->index == i) && !pipe_stopped(&p)) {
            if (i >= p.freed + nslots) {
                /* Chunk I waits for the slot's previous chunk: its replies. */
                g_mutex_unlock(&p.lock);
                ok = writer_poll(&w, error);
                g_mutex_lock(&p.lock);
                if (!ok)
                    break;
            } else {
                /* Bounded: a cancel from another disk signals nobody here. */
                g_cond_wait_until(&p.cond, &p.lock, g_get_monotonic_time() + 100 * G_TIME_SPAN_MILLISECOND);
            }
        }
        if (ok && !(s->ready && s->index == i)) {
            if (vs_interrupted())
                g_set_error(error, VS_ERROR, VS_ERROR_INTERRUPTED, "export: %s: interrupted by %s", out,
                            vs_signal_name(vs_interrupted()));
            else
                g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "export: %s: cancelled", out);
            ok = false;
        }
        g_mutex_unlock(&p.lock);
        if (!ok)
            break;
        if (s->verdict != CHUNK_OK || s->len != r->length)
            ok = chunk_failed(job, s, error);
        else
            ok = write_slot(&w, s, r->offset, error);
        g_mutex_lock(&p.lock);
        p.written = i + 1;
        pipe_release_locked(&p);
        g_mutex_unlock(&p.lock);
        /* Tests: a moment when the temp image exists, partly written. */
        if (i == 0)
            vs_fault_point("export-writing");
    }
    /* The last replies; writer_poll also reports a failed write when nothing
     * was left in flight. */
    do
        ok = ok && writer_poll(&w, error);
    while (ok && p.in_flight > 0);

    g_mutex_lock(&p.lock);
    p.stop = true;
    g_cond_broadcast(&p.cond);
    g_mutex_unlock(&p.lock);
    for (guint t = 0; t < nreaders; t++)
        g_thread_join(readers[t]);
    g_thread_join(prefetcher);
    /* On failure writes may still be in flight, reading the ring: closing the
     * handle (which stops qemu-nbd) ends them before the ring goes. */
    if (!ok && sink->nbd)
        g_clear_pointer(&sink->nbd, nbd_close);
    for (guint k = 0; k < nslots; k++) {
        slot_clear(&p.slots[k]);
        g_free(p.slots[k].data);
    }
    g_free(p.slots);
    g_mutex_clear(&p.lock);
    g_cond_clear(&p.cond);
    return ok;
}

/* A raw image (sparse: ftruncate's hole wherever nothing is written) or a
 * qcow2 image built by our own writer, with pwrite: no helper process, no
 * socket. */
static bool
export_file(ExportJob *job, bool qcow2, GError **error)
{
    const VsManifestDisk *disk = job->disk;
    const char *out = job->out;
    Sink s = { -1, NULL, NULL };
    int err = 0;
    bool ok;

    /* The descriptor the caller created the file with: never reopened by name. */
    s.fd = job->fd;
    if (qcow2 && !(s.qcow2 = vs_qcow2_writer_new(s.fd, out, disk->virtual_size, error))) {
        vs_error_prefix(error, "export");
        return false;
    }
    if (!qcow2 && ftruncate(s.fd, (off_t)disk->virtual_size) < 0) {
        err = errno;
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "export: %s: setting the size to %" G_GUINT64_FORMAT ": %s",
                    out, disk->virtual_size, g_strerror(err));
        return false;
    }
    ok = write_chunks(job, &s, error);
    if (ok && s.qcow2 && !vs_qcow2_writer_finish(s.qcow2, error)) {
        vs_error_prefix(error, "export");
        ok = false;
    }
    g_clear_pointer(&s.qcow2, vs_qcow2_writer_free);
    if (ok && fsync(s.fd) < 0)
        err = errno;
    if (ok && err) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "export: %s: %s", out, g_strerror(err));
        ok = false;
    }
    return ok;
}

static bool
run_qemu_img_create(const char *qemu_img, const char *tmp, uint64_t size, GError **error)
{
    g_autofree char *size_str = g_strdup_printf("%" G_GUINT64_FORMAT, size);
    const char *argv[] = { qemu_img, "create", "-q", "-f", "qcow2", tmp, size_str, NULL };
    g_autofree char *out = NULL, *err = NULL;
    g_autoptr(GError) serr = NULL;
    int status = 0;

    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err, &status, &serr)) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "export: running %s: %s", qemu_img, serr->message);
        return false;
    }
    if (!g_spawn_check_wait_status(status, NULL)) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "export: qemu-img create %s failed: %s", tmp,
                    g_strstrip(err));
        return false;
    }
    return true;
}

/* qcow2 through qemu-nbd: the way every qcow2 was written before our own
 * writer, kept for VIRTSNAP_QCOW2_WRITER=qemu-nbd (a second opinion when an
 * image of ours is in doubt, and the comparison the bench makes). An image
 * that our writer cannot build (a backing chain, another format, writing into
 * an existing image) would come this way too; restore needs none today: it
 * writes standalone images, and network targets go through
 * vs_copy_repo_to_sink. */
static bool
export_qcow2_nbd(ExportJob *job, GError **error)
{
    const VsManifestDisk *disk = job->disk;
    const char *tmp = job->tmp, *out = job->out;
    g_autofree char *qemu_img = g_find_program_in_path("qemu-img");
    g_autofree char *qemu_nbd = g_find_program_in_path("qemu-nbd");
    Sink s = { -1, NULL, NULL };
    bool ok = false;
    int err;

    if (!qemu_img || !qemu_nbd) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "export: %s: qcow2 needs qemu-img and qemu-nbd, and %s is not in PATH "
                    "(install qemu-utils, or export --format raw)", out, qemu_img ? "qemu-nbd" : "qemu-img");
        return false;
    }
    if (!run_qemu_img_create(qemu_img, tmp, disk->virtual_size, error))
        return false;

    s.nbd = nbd_create();
    if (!s.nbd) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "export: %s: %s", out, nbd_get_error());
        return false;
    }
    {
        /* cache=unsafe: qemu-nbd skips fsync on every flush; we fsync the file
         * once, after qemu-nbd has exited. */
        const char *argv[] = { qemu_nbd, "-f", "qcow2", "--cache=unsafe", "--discard=unmap", tmp, NULL };

        if (nbd_connect_systemd_socket_activation(s.nbd, (char **)argv) < 0) {
            g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "export: %s: starting qemu-nbd: %s", out,
                        nbd_get_error());
            goto out;
        }
    }
    /* Not needed for writing: the writer starts the kernel's writeback through
     * it as the image grows. */
    s.fd = open(tmp, O_RDONLY | O_CLOEXEC);
    if (!write_chunks(job, &s, error))
        goto out;
    /* The flush makes qemu-nbd write its qcow2 metadata caches to the file. */
    if (nbd_flush(s.nbd, 0) < 0 || nbd_shutdown(s.nbd, 0) < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "export: %s: %s", out, nbd_get_error());
        goto out;
    }
    ok = true;
out:
    /* Waits for qemu-nbd to exit: only then is the file complete. */
    nbd_close(s.nbd);
    if (s.fd >= 0)
        close(s.fd);
    if (!ok)
        return false;
    err = fsync(job->fd) < 0 ? errno : 0;
    if (err) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "export: %s: syncing: %s", out, g_strerror(err));
        return false;
    }
    return true;
}

bool
vs_repo_export_disk(VsRepo *repo, const VsManifest *m, const char *domain, const char *disk,
                    const char *out, const char *format, GError **error)
{
    return vs_repo_export_disk_ctl(repo, m, domain, disk, out, format, NULL, error);
}

bool
vs_repo_export_disk_ctl(VsRepo *repo, const VsManifest *m, const char *domain, const char *disk,
                        const char *out, const char *format, VsExportControl *ctl, GError **error)
{
    const VsManifestDomain *d = vs_manifest_find_domain(m, domain);
    const VsManifestDisk *k = d ? vs_manifest_find_disk(d, disk) : NULL;
    g_autofree char *abs = NULL, *dir = NULL, *base = NULL, *tmp = NULL, *tmp_dir = NULL, *tmp_base = NULL;
    const char *fmt;
    bool keep = ctl && ctl->tmp && ctl->keep_tmp;
    struct stat st;
    int fd, dir_fd = -1, tmp_fd = -1, err;
    bool ok;

    if (!d) {
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND, "export: backup %s has no domain \"%s\"", m->id,
                    domain ? domain : "");
        return false;
    }
    if (!k) {
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND, "export: domain %s in backup %s has no disk \"%s\"",
                    d->name, m->id, disk ? disk : "");
        return false;
    }
    if (!vs_manifest_disk_check_in_repo("export", vs_repo_path(repo), m->id, d->name, k, error))
        return false;
    fmt = format ? format : k->format;
    if (g_strcmp0(fmt, "raw") != 0 && g_strcmp0(fmt, "qcow2") != 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "export: format \"%s\"%s is not supported (supported: raw, qcow2)%s", fmt ? fmt : "",
                    format ? "" : " (the disk's own)", format ? "" : "; choose one with --format");
        return false;
    }
    if (!out || !*out) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "export: no output file given");
        return false;
    }
    if (!keep && (lstat(out, &st) == 0 || errno != ENOENT)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "export: %s exists: remove it or choose another name",
                    out);
        return false;
    }
    if (!vs_interrupt_check("export", error))
        return false;

    /* An absolute temp name: QEMU takes "a:b" for protocol a, but never when
     * the name starts with a slash. Its name says whose it is (vs-temp.h),
     * for recover and for whoever finds it after a kill -9. */
    abs = g_canonicalize_filename(out, NULL);
    dir = g_path_get_dirname(abs);
    base = g_path_get_basename(abs);
    if (ctl && ctl->tmp)
        tmp = g_path_is_absolute(ctl->tmp) ? g_strdup(ctl->tmp) : g_canonicalize_filename(ctl->tmp, NULL);
    else
        tmp = vs_temp_path(dir, base);
    tmp_dir = g_path_get_dirname(tmp);
    tmp_base = g_path_get_basename(tmp);
    /* Everything in OUT's directory (and the temp's, the same unless the
     * caller chose it) is reached from it by descriptor, a new name claimed
     * exclusively (0600: it is a whole guest disk) and never through a
     * symlink; qemu-img create then reuses the file and its mode. With KEEP
     * the caller installs the image itself and OUT (a URL, perhaps) is only
     * its name. */
    if ((!keep && (dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) ||
        (tmp_fd = open(tmp_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
        (fd = openat(tmp_fd, tmp_base, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0) {
        err = errno;
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "export: creating %s: %s", tmp, g_strerror(err));
        if (tmp_fd >= 0)
            close(tmp_fd);
        if (dir_fd >= 0)
            close(dir_fd);
        return false;
    }

    {
        ExportJob job = { repo, m, d, k, tmp, out, ctl, fd };

        if (strcmp(fmt, "qcow2") == 0 && g_strcmp0(g_getenv("VIRTSNAP_QCOW2_WRITER"), "qemu-nbd") == 0)
            ok = export_qcow2_nbd(&job, error);
        else
            ok = export_file(&job, strcmp(fmt, "qcow2") == 0, error);
    }
    close(fd);
    if (ok && !keep) {
        err = repo_renameat_noreplace(tmp_fd, tmp_base, dir_fd, base);
        if (err == EEXIST) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                        "export: %s exists: remove it or choose another name", out);
            ok = false;
        } else if (err || (fsync(dir_fd) < 0 && (err = errno) != EINVAL)) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "export: %s: %s", out, g_strerror(err));
            ok = false;
        }
    }
    if (!ok)
        unlinkat(tmp_fd, tmp_base, 0);
    close(tmp_fd);
    if (dir_fd >= 0)
        close(dir_fd);
    return ok;
}
