/* What a backup and a domain named on the command line mean. A domain is named
 * by its name or its UUID. "latest" next to a domain is the newest backup that
 * holds that domain, not the repository's newest backup (which may be another
 * domain's): export, mount and restore all read it so, and verify, which names
 * no domain, reads it as the newest backup of all. */
#include "config.h"
#include "vs-repo.h"

#include <string.h>

VsManifestDomain *
vs_manifest_lookup_domain(const VsManifest *m, const char *name_or_uuid)
{
    VsManifestDomain *d = vs_manifest_find_domain(m, name_or_uuid);

    for (guint i = 0; !d && m && name_or_uuid && i < m->domains->len; i++) {
        VsManifestDomain *c = m->domains->pdata[i];

        if (c->uuid && g_ascii_strcasecmp(c->uuid, name_or_uuid) == 0)
            d = c;
    }
    return d;
}

VsManifest *
vs_repo_load_manifest_of(VsRepo *repo, const char *id, const char *domain, GError **error)
{
    g_auto(GStrv) ids = NULL;

    if (!domain || g_strcmp0(id, "latest") != 0)
        return vs_repo_load_manifest(repo, id, error);
    if (!(ids = vs_repo_list(repo, error)))
        return NULL;
    for (guint n = g_strv_length(ids); n > 0; n--) {
        g_autoptr(GError) merr = NULL;
        g_autoptr(VsManifest) m = vs_repo_load_manifest(repo, ids[n - 1], &merr);

        /* An unreadable manifest is verify's to report; an older backup may do. */
        if (m && vs_manifest_lookup_domain(m, domain))
            return g_steal_pointer(&m);
    }
    g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND,
                "repo: no backup in %s holds a domain '%s' (see virtsnap list)", vs_repo_path(repo), domain);
    return NULL;
}
