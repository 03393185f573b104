/* libFuzzer target for what a repository hands virtsnap: a manifest's JSON and
 * the names and paths in it. A manifest either fails with an error naming the
 * file, or parses into one whose every name is one plain file-name component
 * and whose every path has no ".." component (what restore builds file names
 * from), and that writes out and parses back to the same text. The input is
 * also given to the name validator directly, under each kind, and whatever it
 * accepts must keep the same promises. */
#include "fuzz-common.h"
#include "repo-internal.h"

#define FUZZ_MANIFEST "fuzz.json"

static bool
climbs(const char *s)
{
    for (const char *p = s; *p; p++)
        if ((p == s || p[-1] == '/') && p[0] == '.' && p[1] == '.' && (p[2] == '/' || p[2] == '\0'))
            return true;
    return false;
}

static bool
has_control(const char *s)
{
    while (*s && !g_ascii_iscntrl(*s))
        s++;
    return *s != '\0';
}

/* What every accepted name of KIND promises, whatever the rules' details. */
static void
check_accepted(RepoNameKind kind, const char *s)
{
    FUZZ_CHECK(*s && g_utf8_validate(s, -1, NULL) && !has_control(s));
    if (kind == REPO_NAME_PATH) {
        FUZZ_CHECK(!climbs(s) && strlen(s) <= REPO_MAX_PATH);
        return;
    }
    FUZZ_CHECK(!strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0);
    FUZZ_CHECK(strlen(s) <= REPO_MAX_DOMAIN_NAME);
    if (kind == REPO_NAME_TARGET || kind == REPO_NAME_FORMAT)
        FUZZ_CHECK(s[0] != '.' && s[0] != '-');
}

static void
check_names(const VsManifest *m)
{
    for (guint i = 0; i < m->domains->len; i++) {
        const VsManifestDomain *d = g_ptr_array_index(m->domains, i);

        check_accepted(REPO_NAME_DOMAIN, d->name);
        if (d->uuid)
            check_accepted(REPO_NAME_UUID, d->uuid);
        for (guint k = 0; k < d->disks->len; k++) {
            const VsManifestDisk *disk = g_ptr_array_index(d->disks, k);

            check_accepted(REPO_NAME_TARGET, disk->target);
            check_accepted(REPO_NAME_FORMAT, disk->format);
            if (disk->source)
                check_accepted(REPO_NAME_PATH, disk->source);
            for (guint j = 0; j < disk->chain->len; j++) {
                const VsManifestImage *img = g_ptr_array_index(disk->chain, j);

                check_accepted(REPO_NAME_PATH, img->path);
                check_accepted(REPO_NAME_FORMAT, img->format);
            }
        }
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autofree char *text = fuzz_string(data, size);
    g_autoptr(GError) error = NULL;
    g_autoptr(VsManifest) m = vs_manifest_from_json(text, FUZZ_MANIFEST, &error);
    g_autoptr(VsManifest) m2 = NULL;
    g_autofree char *out = NULL, *out2 = NULL;

    for (int kind = REPO_NAME_DOMAIN; kind <= REPO_NAME_PATH; kind++)
        if (!repo_name_problem((RepoNameKind)kind, text))
            check_accepted((RepoNameKind)kind, text);
    if (!m) {
        FUZZ_CHECK(error && error->domain == VS_ERROR);
        FUZZ_CHECK(g_str_has_prefix(error->message, "manifest: " FUZZ_MANIFEST ": "));
        return 0;
    }
    FUZZ_CHECK(error == NULL);
    check_names(m);
    out = vs_manifest_to_json(m);
    m2 = vs_manifest_from_json(out, FUZZ_MANIFEST, &error);
    if (!m2)
        fprintf(stderr, "reparse failed: %s\n--- output:\n%s\n", error->message, out);
    FUZZ_CHECK(m2 != NULL);
    out2 = vs_manifest_to_json(m2);
    FUZZ_CHECK(strcmp(out, out2) == 0);
    return 0;
}
