/* verify: proves that every chunk the selected backups need can be read back
 * and hashes to its name. The work is per distinct chunk, not per reference:
 * a chunk shared by a hundred disks is read once, on one of a few worker
 * threads, and its verdict then fans out to every (backup, domain, disk,
 * offset) that relies on it, so that the report says what a bad chunk breaks.
 * Memory stays bounded by the number of distinct chunks (a digest and a verdict
 * each) plus one manifest at a time: manifests are read twice rather than all
 * held at once. */
#include "config.h"
#include "repo-internal.h"

#include <string.h>

#define VERIFY_MAX_THREADS 8
#define VERIFY_BATCH 16
/* Chunk files asked of the kernel ahead of the workers: a cold repository is
 * thousands of small files, and one read at a time per worker leaves the disk
 * idle between them (restore's export measured 2 s of such waiting). */
#define VERIFY_PREFETCH_AHEAD 64

typedef struct {
    VsDigest digest;
    uint32_t length;           /* plain length, when ok */
    uint8_t verdict;           /* ChunkVerdict */
    char *detail;              /* when not ok */
} Entry;

typedef struct {
    VsRepo *repo;
    GArray *entries;           /* of Entry, sorted by digest, unique */
    gint next;                 /* next batch to take */
    gint stop;                 /* the workers are done: the prefetch ends */
} VerifyJob;

static int
cmp_digest(gconstpointer a, gconstpointer b)
{
    return memcmp(a, b, sizeof(VsDigest));
}

/* Workers take batches from a shared counter; each batch owns its slice of
 * entries, so there is nothing to lock. Plain joined threads rather than a
 * GThreadPool: nothing outlives the call. */
static gpointer
check_worker(gpointer data)
{
    VerifyJob *job = data;
    guint first;

    while ((first = (guint)g_atomic_int_add(&job->next, VERIFY_BATCH)) < job->entries->len) {
        guint last = MIN(first + VERIFY_BATCH, job->entries->len);

        for (guint i = first; i < last; i++) {
            Entry *e = &g_array_index(job->entries, Entry, i);
            size_t len = 0;

            e->verdict = (uint8_t)repo_check_chunk(job->repo, &e->digest, NULL, &len, &e->detail);
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

    for (guint i = 0; i < job->entries->len && !g_atomic_int_get(&job->stop); i++) {
        while (i >= (guint)g_atomic_int_get(&job->next) + VERIFY_PREFETCH_AHEAD &&
               !g_atomic_int_get(&job->stop))
            g_usleep(500);
        repo_prefetch_chunk(job->repo, &g_array_index(job->entries, Entry, i).digest);
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

bool
vs_repo_verify(VsRepo *repo, const char *id, GPtrArray **problems, uint64_t *chunks_checked,
               GError **error)
{
    g_auto(GStrv) ids = NULL;
    g_autoptr(GArray) entries = g_array_new(FALSE, TRUE, sizeof(Entry));
    g_autoptr(GHashTable) unreadable = g_hash_table_new(g_str_hash, g_str_equal);
    VerifyJob job = { repo, entries, 0, 0 };
    guint out = 0;

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

    /* Pass 1: the distinct digests. */
    for (guint b = 0; ids[b]; b++) {
        g_autoptr(GError) merr = NULL;
        g_autoptr(VsManifest) m = repo_load_manifest_exact(repo, ids[b], &merr);

        if (!m) {
            g_hash_table_add(unreadable, ids[b]);
            add_problem(*problems, ids[b], NULL, NULL, 0, NULL,
                        g_strdup_printf("corrupt manifest: %s", merr->message));
            continue;
        }
        for (guint i = 0; i < m->domains->len; i++) {
            VsManifestDomain *d = g_ptr_array_index(m->domains, i);

            for (guint k = 0; k < d->disks->len; k++) {
                VsManifestDisk *disk = g_ptr_array_index(d->disks, k);

                for (guint j = 0; j < disk->chunks->len; j++) {
                    Entry e = { .digest = g_array_index(disk->chunks, VsChunkRef, j).digest };

                    g_array_append_val(entries, e);
                }
            }
        }
        /* Dedup as we go so that many backups of one disk cost one copy of
         * its digests, not one per backup. */
        g_array_sort(entries, cmp_digest);
        out = 0;
        for (guint i = 0; i < entries->len; i++)
            if (out == 0 || cmp_digest(&g_array_index(entries, Entry, out - 1),
                                       &g_array_index(entries, Entry, i)) != 0)
                g_array_index(entries, Entry, out++) = g_array_index(entries, Entry, i);
        g_array_set_size(entries, out);
    }

    /* Check each once, on a few threads: reading, inflating and hashing keep
     * a core busy each; beyond eight the disk is the limit. */
    {
        guint nthreads = MIN(CLAMP(g_get_num_processors(), 1, VERIFY_MAX_THREADS),
                             (entries->len + VERIFY_BATCH - 1) / VERIFY_BATCH);
        GThread *threads[VERIFY_MAX_THREADS], *prefetch;

        prefetch = g_thread_new("vs-verify-ahead", prefetch_worker, &job);
        for (guint t = 0; t < nthreads; t++)
            threads[t] = g_thread_new("vs-verify", check_worker, &job);
        for (guint t = 0; t < nthreads; t++)
            g_thread_join(threads[t]);
        g_atomic_int_set(&job.stop, 1);
        g_thread_join(prefetch);
    }
    if (chunks_checked)
        *chunks_checked = entries->len;

    /* Pass 2: fan the verdicts out to the disks that need them. */
    for (guint b = 0; ids[b]; b++) {
        g_autoptr(GError) merr = NULL;
        g_autoptr(VsManifest) m = NULL;

        if (g_hash_table_contains(unreadable, ids[b]))
            continue;
        m = repo_load_manifest_exact(repo, ids[b], &merr);
        if (!m) {
            add_problem(*problems, ids[b], NULL, NULL, 0, NULL,
                        g_strdup_printf("corrupt manifest: %s", merr->message));
            continue;
        }
        for (guint i = 0; i < m->domains->len; i++) {
            VsManifestDomain *d = g_ptr_array_index(m->domains, i);

            for (guint k = 0; k < d->disks->len; k++) {
                VsManifestDisk *disk = g_ptr_array_index(d->disks, k);

                for (guint j = 0; j < disk->chunks->len; j++) {
                    const VsChunkRef *r = &g_array_index(disk->chunks, VsChunkRef, j);
                    const Entry *e = bsearch(&r->digest, entries->data, entries->len, sizeof(Entry), cmp_digest);
                    char *problem = NULL;

                    if (!e)     /* the manifest changed between the passes */
                        problem = g_strdup("unreadable: backup changed while it was verified");
                    else
                        problem = repo_chunk_problem(e->verdict, e->detail, r->length, e->length);
                    if (problem)
                        add_problem(*problems, ids[b], d->name, disk->target, r->offset, &r->digest, problem);
                }
            }
        }
    }
    entries_clear(entries);
    return true;
}
