/* A set of chunk digests that grows with the number of distinct chunks, not
 * with references: gc marks every reference of every manifest into one, and
 * verify keeps one verdict per entry. The digests live once, in the order they
 * were first added (an entry's index is its position, so a caller keeps its
 * own per-chunk data in a parallel array), and an open-addressing table of
 * 32-bit indices finds them: about 40 bytes a chunk in all, where a GHashTable
 * of allocated keys takes twice that. Digests come from manifests, which are
 * hostile until verified, so the hash is keyed with random numbers drawn per
 * set: a manifest cannot be crafted to make every digest collide. */
#include "config.h"
#include "repo-internal.h"

#include <string.h>

#define SET_MIN_SLOTS 1024u

struct _RepoDigestSet {
    GArray *digests;           /* of VsDigest, in order of first insertion */
    uint32_t *slots;           /* index + 1 of a digest; 0: empty */
    size_t mask;               /* slots - 1; slots is a power of two, at least twice the entries */
    uint64_t key[4];           /* odd random multipliers */
};

static size_t
slot_of(const RepoDigestSet *s, const VsDigest *d)
{
    uint64_t w[4], h = 0;

    memcpy(w, d->bytes, sizeof(w));
    for (int i = 0; i < 4; i++)
        h += w[i] * s->key[i];
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return (size_t)h & s->mask;
}

RepoDigestSet *
repo_digest_set_new(void)
{
    RepoDigestSet *s = g_new0(RepoDigestSet, 1);

    s->digests = g_array_new(FALSE, FALSE, sizeof(VsDigest));
    s->slots = g_new0(uint32_t, SET_MIN_SLOTS);
    s->mask = SET_MIN_SLOTS - 1;
    for (int i = 0; i < 4; i++)
        s->key[i] = ((uint64_t)g_random_int() << 32 | g_random_int()) | 1;
    return s;
}

void
repo_digest_set_free(RepoDigestSet *s)
{
    if (!s)
        return;
    g_array_unref(s->digests);
    g_free(s->slots);
    g_free(s);
}

/* The slot holding D, or the empty slot where it would go. */
static size_t
probe(const RepoDigestSet *s, const VsDigest *d)
{
    size_t i = slot_of(s, d);

    while (s->slots[i] &&
           memcmp(&g_array_index(s->digests, VsDigest, s->slots[i] - 1), d, sizeof(*d)) != 0)
        i = (i + 1) & s->mask;
    return i;
}

static void
grow(RepoDigestSet *s)
{
    size_t n = (s->mask + 1) * 2;

    g_free(s->slots);
    s->slots = g_new0(uint32_t, n);
    s->mask = n - 1;
    for (guint k = 0; k < s->digests->len; k++)
        s->slots[probe(s, &g_array_index(s->digests, VsDigest, k))] = k + 1;
}

bool
repo_digest_set_add(RepoDigestSet *s, const VsDigest *d, guint *index)
{
    size_t i = probe(s, d);

    if (s->slots[i]) {
        if (index)
            *index = s->slots[i] - 1;
        return false;
    }
    /* An index must fit the 32-bit slot with room for the +1; the digests
     * alone would need 128 GiB before that. */
    if (s->digests->len >= G_MAXUINT32 - 1)
        g_error("repo: more than 4 billion distinct chunks in one set");
    g_array_append_val(s->digests, *d);
    s->slots[i] = s->digests->len;
    if (index)
        *index = s->digests->len - 1;
    if ((size_t)s->digests->len * 2 > s->mask + 1)
        grow(s);
    return true;
}

bool
repo_digest_set_find(const RepoDigestSet *s, const VsDigest *d, guint *index)
{
    size_t i = probe(s, d);

    if (!s->slots[i])
        return false;
    if (index)
        *index = s->slots[i] - 1;
    return true;
}

guint
repo_digest_set_size(const RepoDigestSet *s)
{
    return s->digests->len;
}

static bool
add_chunk(const VsManifestDomain *d, const VsManifestDisk *disk, const VsChunkRef *ref, void *opaque)
{
    repo_digest_set_add(opaque, &ref->digest, NULL);
    return true;
}

void
repo_digest_set_add_manifest(RepoDigestSet *s, const VsManifest *m)
{
    vs_manifest_foreach_chunk(m, add_chunk, s);
}

const VsDigest *
repo_digest_set_get(const RepoDigestSet *s, guint index)
{
    g_return_val_if_fail(index < s->digests->len, NULL);
    return &g_array_index(s->digests, VsDigest, index);
}
