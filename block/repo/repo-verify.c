/* verify: proves that every chunk the selected backups need can be read back
 * and hashes to its name. The work is per distinct chunk, not per reference:
 * a chunk shared by a hundred disks is read once, on one of a few worker
 * threads, and its verdict then fans out to every (backup, domain, disk,
 * offset) that relies on it, so that the report says what a bad chunk breaks.
 * Each manifest is read once: its chunks not seen in an earlier backup are
 * checked, then its references are judged, before the next manifest is read.
 * Memory stays bounded by the number of distinct chunks (a digest and a verdict
 * each) plus one manifest at a time. */
#include "config.h"
#include "repo-internal.h"

#include <string.h>

#define VERIFY_MAX_THREADS 8
#define VERIFY_BATCH 16
/* Chunk files asked of the kernel ahead of the workers: a cold repository is
 * thousands of small files, and one read at a time per worker leaves the disk
 * idle between them (restore's export measured 2 s of such waiting). */
#define VERIFY_PREFETCH_AHEAD 64

/* The verdict on one distinct chunk; entry I is chunk I of the digest set. */
typedef struct {
    uint32_t length;           /* plain length, when ok */
    uint8_t verdict;           /* ChunkVerdict */
    char *detail;              /* when not ok */
} Entry;

/* Checks entries FIRST to LAST - 1 (the chunks one manifest added). */
typedef struct {
    VsRepo *repo;
    const RepoDigestSet *set;
    GArray *entries;           /* of Entry */
    guint last;
    gint next;                 /* next batch to take */
    gint stop;                 /* the workers are done: the prefetch ends */
} VerifyJob;

/* Workers take batches from a shared counter; each batch owns its slice of
 * entries, so there is nothing to lock. Plain joined threads rather than a
 * GThreadPool: nothing outlives the call. */
static gpointer
check_worker(gpointer data)
{
    VerifyJob *job = data;
    guint first;

    while ((first = (guint)g_atomic_int_add(&job->next, VERIFY_BATCH)) < job->last) {
        guint last = MIN(first + VERIFY_BATCH, job->last);

        for (guint i = first; i < last; i++) {
            Entry *e = &g_array_index(job->entries, Entry, i);
            size_t len = 0;

            e->verdict = (uint8_t)repo_check_chunk(job->repo, repo_digest_set_get(job->set, i), NULL, &len,
                                                   &e->detail);
            e->length = (uint32_t)len;
        }
    }
    return NULL;
}

/* Keeps the kernel reading up to VERIFY_PREFETCH_AHEAD chunk files ahead of
 * the workers. */
static gpointer
prefetch_worker(gpointer data)
{
    VerifyJob *job = data;

    for (guint i = (guint)g_atomic_int_get(&job->next); i < job->last && !g_atomic_int_get(&job->stop); i++) {
        while (i >= (guint)g_atomic_int_get(&job->next) + VERIFY_PREFETCH_AHEAD &&
               !g_atomic_int_get(&job->stop))
            g_usleep(500);
        repo_prefetch_chunk(job->repo, repo_digest_set_get(job->set, i));
    }
    return NULL;
}

void
vs_verify_problem_free(VsVerifyProblem *p)
{
    if (!p)
        return;
    g_free(p->backup_id);
    g_free(p->domain);
    g_free(p->disk);
    g_free(p->digest_hex);
    g_free(p->problem);
    g_free(p);
}

static void
add_problem(GPtrArray *problems, const char *id, const char *domain, const char *disk,
            uint64_t offset, const VsDigest *digest, char *problem)
{
    VsVerifyProblem *p = g_new0(VsVerifyProblem, 1);

    p->backup_id = g_strdup(id);
    p->domain = g_strdup(domain);
    p->disk = g_strdup(disk);
    p->offset = offset;
    if (digest) {
        p->digest_hex = g_malloc(VS_DIGEST_HEX_LEN);
        vs_digest_to_hex(digest, p->digest_hex);
    }
    p->problem = problem;
    g_ptr_array_add(problems, p);
}

static void
entries_clear(GArray *entries)
{
    for (guint i = 0; i < entries->len; i++)
        g_free(g_array_index(entries, Entry, i).detail);
}

/* Checks entries FIRST to the end: a few threads (reading, inflating and
 * hashing keep a core busy each; beyond eight the disk is the limit) when
 * there are enough of them to share, else this thread. */
static void
check_new(VsRepo *repo, const RepoDigestSet *set, GArray *entries, guint first)
{
    VerifyJob job = { repo, set, entries, entries->len, (gint)first, 0 };
    guint nthreads = MIN(CLAMP(g_get_num_processors(), 1, VERIFY_MAX_THREADS),
                         (entries->len - first + VERIFY_BATCH - 1) / VERIFY_BATCH);
    GThread *threads[VERIFY_MAX_THREADS], *prefetch;

    if (nthreads < 2) {
        check_worker(&job);
        return;
    }
    prefetch = g_thread_new("vs-verify-ahead", prefetch_worker, &job);
    for (guint t = 0; t < nthreads; t++)
        threads[t] = g_thread_new("vs-verify", check_worker, &job);
    for (guint t = 0; t < nthreads; t++)
        g_thread_join(threads[t]);
    g_atomic_int_set(&job.stop, 1);
    g_thread_join(prefetch);
}

typedef struct {
    const VsManifest *m;
    RepoDigestSet *set;
    GArray *entries;
    GPtrArray *problems;
} VerifyRefs;

/* A problem for the reference R when the chunk it names was found bad. */
static bool
verify_ref(const VsManifestDomain *d, const VsManifestDisk *disk, const VsChunkRef *r, void *opaque)
{
    VerifyRefs *v = opaque;
    const Entry *e;
    char *problem;
    guint idx = 0;

    repo_digest_set_find(v->set, &r->digest, &idx);
    e = &g_array_index(v->entries, Entry, idx);
    problem = repo_chunk_problem(e->verdict, e->detail, r->length, e->length);
    if (problem)
        add_problem(v->problems, v->m->id, d->name, disk->target, r->offset, &r->digest, problem);
    return true;
}

/* Adds M's chunks to SET (ENTRIES grown to match), checks those it is the
 * first to name, and appends a problem for each reference to a bad chunk. */
static void
verify_manifest(VsRepo *repo, const VsManifest *m, RepoDigestSet *set, GArray *entries, GPtrArray *problems)
{
    guint first = entries->len;
    VerifyRefs v = { m, set, entries, problems };

    repo_digest_set_add_manifest(set, m);
    g_array_set_size(entries, repo_digest_set_size(set));
    if (entries->len > first)
        check_new(repo, set, entries, first);
    vs_manifest_foreach_chunk(m, verify_ref, &v);
}

bool
vs_repo_verify(VsRepo *repo, const char *id, GPtrArray **problems, uint64_t *chunks_checked,
               GError **error)
{
    g_auto(GStrv) ids = NULL;
    g_autoptr(GArray) entries = g_array_new(FALSE, TRUE, sizeof(Entry));
    g_autoptr(RepoDigestSet) set = repo_digest_set_new();

    g_return_val_if_fail(problems != NULL, false);
    if (chunks_checked)
        *chunks_checked = 0;
    if (id) {
        g_autofree char *full = repo_resolve_id(repo, id, error);

        if (!full)
            return false;
        ids = g_new0(char *, 2);
        ids[0] = g_steal_pointer(&full);
    } else if (!(ids = repo_list_ids(repo, error))) {
        return false;
    }
    if (!*problems)
        *problems = g_ptr_array_new_with_free_func((GDestroyNotify)vs_verify_problem_free);

    for (guint b = 0; ids[b]; b++) {
        g_autoptr(GError) merr = NULL;
        g_autoptr(VsManifest) m = repo_load_manifest_exact(repo, ids[b], &merr);

        if (!m) {
            add_problem(*problems, ids[b], NULL, NULL, 0, NULL,
                        g_strdup_printf("corrupt manifest: %s", merr->message));
            continue;
        }
        verify_manifest(repo, m, set, entries, *problems);
    }
    if (chunks_checked)
        *chunks_checked = entries->len;
    entries_clear(entries);
    return true;
}
