/* Recovery of the storage snapshots a dead backup run left (issue 15): each
 * snapshot the journal says was to be made, or was made, and not deleted
 * again is either the backup's (its manifest, committed, records it: kept) or
 * nobody's (deleted through its provider, so that no snapshot lives on that
 * neither `prune` nor `recover` knows). The repository answers which: a
 * manifest that cannot be read leaves the journal for the next recover,
 * because deleting a snapshot a --no-copy backup consists of loses the backup. */
#include "config.h"
#include "driver-internal.h"

#include <string.h>

static bool
manifest_records(const VsManifest *m, const char *uuid, const char *disk, const VsManifestSnapshot *snap)
{
    for (guint i = 0; i < m->domains->len; i++) {
        const VsManifestDomain *d = m->domains->pdata[i];
        const VsManifestDisk *k = g_strcmp0(d->uuid, uuid) == 0 ? vs_manifest_find_disk(d, disk) : NULL;

        if (k && k->snapshot && !g_strcmp0(k->snapshot->handle, snap->handle) &&
            !g_strcmp0(k->snapshot->provider, snap->provider))
            return true;
    }
    return false;
}

/* A commit that met an existing id drew new random digits for it (same
 * second): the backup may be under a sibling id the journal never saw. */
static int
sibling_records(VsRepo *repo, const char *id, const char *uuid, const char *disk, const VsManifestSnapshot *snap,
                GError **error)
{
    const char *dash = strrchr(id, '-');
    g_autofree char *prefix = dash ? g_strndup(id, (gsize)(dash - id) + 1) : g_strdup(id);
    g_auto(GStrv) ids = vs_repo_list(repo, error);

    if (!ids)
        return -1;
    for (guint i = 0; ids[i]; i++) {
        g_autoptr(VsManifest) m = NULL;

        if (!g_str_has_prefix(ids[i], prefix) || !strcmp(ids[i], id))
            continue;
        if (!(m = vs_repo_load_manifest(repo, ids[i], error)))
            return -1;
        if (manifest_records(m, uuid, disk, snap))
            return 1;
    }
    return 0;
}

/* Whether BEGIN's backup was committed with SNAP recorded for UUID's DISK:
 * 1 yes, 0 no (no such backup, or it does not record it), -1 cannot say. */
static int
recorded(const VsJournalRecord *begin, const char *uuid, const char *disk, const VsManifestSnapshot *snap,
         GError **error)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VsManifest) m = NULL;
    VsRepo *repo;
    int found;

    if (!begin || !begin->repo || !begin->id) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "recover: the journal names no repository to ask "
                    "whether snapshot %s is a backup's", snap->handle);
        return -1;
    }
    if (!(repo = vs_repo_open(begin->repo, false, false, 0, &err))) {
        g_set_error(error, VS_ERROR, err->code, "recover: cannot tell whether snapshot %s is backup %s's: %s",
                    snap->handle, begin->id, err->message);
        return -1;
    }
    m = vs_repo_load_manifest(repo, begin->id, &err);
    if (m)
        found = manifest_records(m, uuid, disk, snap);
    else if (g_error_matches(err, VS_ERROR, VS_ERROR_NOT_FOUND)) {
        g_clear_error(&err);
        found = sibling_records(repo, begin->id, uuid, disk, snap, &err);
    } else
        found = -1;
    vs_repo_close(repo);
    if (found < 0)
        g_set_error(error, VS_ERROR, err->code, "recover: cannot tell whether snapshot %s is backup %s's: %s",
                    snap->handle, begin->id, err->message);
    return found;
}

/* R (STORAGE_SNAPSHOT or SNAPSHOT_MADE, the last of its disk) not deleted by
 * the run: kept or deleted now. */
static bool
settle_snapshot(const VsJournalRecord *r, const VsJournalRecord *begin, bool made, GPtrArray *actions,
                GError **error)
{
    g_autofree char *name = g_strdup_printf("%s/%s", r->domain ? r->domain : "?", r->disk ? r->disk : "?");
    g_autoptr(VsManifestSnapshot) snap = NULL;
    g_autoptr(VsSnapProvider) p = NULL;
    g_autoptr(VsSnapConfig) config = NULL;
    g_autoptr(GError) err = NULL;
    VsSnapLocation loc;
    int kept;

    if (!r->snapshot || !(snap = vs_manifest_snapshot_from_json(r->snapshot, name, &err))) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "recover: %s: the journal's snapshot record is "
                    "unreadable (%s): look for a snapshot of this disk on its storage",
                    name, err ? err->message : "missing");
        return false;
    }
    if ((kept = recorded(begin, r->uuid, r->disk, snap, error)) < 0)
        return false;
    if (kept) {
        recover_act(actions, "kept storage snapshot %s of %s: backup %s records it", snap->handle, name, begin->id);
        return true;
    }
    /* A hook names its snapshots itself: before it answered, only the label is known. */
    if (!made && !strcmp(snap->provider, "hook")) {
        recover_act(actions, "storage snapshot of %s: the hook was asked to make one labelled %s and the run died "
            "before it answered: if the array has it, delete it there", name, snap->handle);
        return true;
    }
    /* The configuration the run used: a hook is named there, by pool. */
    if (!(config = vs_snap_config_load(r->config, &err)) ||
        !(p = vs_snap_provider_for_record(config, snap, name, &loc, &err))) {
        /* No snapshot directory at all: no snapshot in it either. */
        if (config && g_error_matches(err, VS_ERROR, VS_ERROR_NOT_FOUND))
            return true;
        g_set_error(error, VS_ERROR, err->code, "recover: storage snapshot %s of %s, left by an interrupted "
                    "backup: %s", snap->handle, name, err->message);
        return false;
    }
    if (!vs_snap_delete(p, &loc, snap->handle, &err)) {
        if (g_error_matches(err, VS_ERROR, VS_ERROR_NOT_FOUND))
            return true;
        g_set_error(error, VS_ERROR, err->code, "recover: cannot delete storage snapshot %s of %s, left by "
                    "an interrupted backup: %s", snap->handle, name, err->message);
        return false;
    }
    recover_act(actions, "deleted storage snapshot %s of %s, left by an interrupted backup", snap->handle, name);
    return true;
}

bool
recover_storage_snapshots(GPtrArray *recs, const VsJournalRecord *begin, GPtrArray *actions, GError **error)
{
    /* "uuid/disk" -> the disk's last snapshot record, or NULL once deleted */
    g_autoptr(GHashTable) last = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    GHashTableIter it;
    gpointer key, value;
    bool ok = true;

    for (guint k = 0; k < recs->len; k++) {
        VsJournalRecord *r = recs->pdata[k];

        if (r->kind != VS_JOURNAL_STORAGE_SNAPSHOT && r->kind != VS_JOURNAL_SNAPSHOT_MADE &&
            r->kind != VS_JOURNAL_SNAPSHOT_DELETED)
            continue;
        g_hash_table_insert(last, g_strdup_printf("%s/%s", r->uuid ? r->uuid : "", r->disk ? r->disk : ""),
                            r->kind == VS_JOURNAL_SNAPSHOT_DELETED ? NULL : r);
    }
    g_hash_table_iter_init(&it, last);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        const VsJournalRecord *r = value;
        g_autoptr(GError) err = NULL;

        if (!r)
            continue;
        if (!settle_snapshot(r, begin, r->kind == VS_JOURNAL_SNAPSHOT_MADE, actions, &err)) {
            if (ok)
                g_propagate_error(error, g_steal_pointer(&err));
            else
                recover_act(actions, "%s", err->message);
            ok = false;
        }
    }
    return ok;
}
