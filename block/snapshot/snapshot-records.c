/* The repository's side of storage snapshots (issue 15): the snapshots its
 * manifests record, one per disk, and what their providers say of them now.
 * `snapshots` lists them, `verify` reports one that is gone (a failure where
 * the disk's data is only there), `prune` deletes them before the backups
 * that name them. A repository is hostile input: every record here has passed
 * the manifest's checks (handles of virtsnap's own making, absolute snapshot
 * directories), and asking about one creates nothing: a reflink or btrfs
 * snapshot directory is looked at before a provider, which would make it, is
 * opened. A provider that cannot be asked (no hook configured for the pool, a
 * cluster down, a file system not mounted) leaves the state unknown, never
 * "gone": prune then keeps the backup rather than forget a snapshot. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include "snapshot-internal.h"

const char *
vs_snap_state_name(VsSnapState state)
{
    switch (state) {
    case VS_SNAP_STATE_EXISTS: return "yes";
    case VS_SNAP_STATE_GONE: return "no";
    default: return "unknown";
    }
}

void
vs_recorded_snapshot_free(VsRecordedSnapshot *r)
{
    if (!r)
        return;
    g_free(r->backup_id);
    g_free(r->domain);
    g_free(r->disk);
    vs_manifest_snapshot_free(r->snapshot);
    g_free(r->reason);
    g_free(r);
}

/* For a reflink or btrfs record: whether its snapshot directory is there to
 * ask. *GONE when the base is there but virtsnap-snapshots is not (nothing was
 * ever kept there: the snapshot cannot exist); false with *WHY when the base
 * itself is missing or not a directory (unmounted?): nobody can tell. */
static bool
fs_dir_present(const VsManifestSnapshot *rec, bool *gone, char **why)
{
    g_autofree char *sub = NULL;
    struct stat st;

    *gone = false;
    if (g_strcmp0(rec->provider, "reflink") && g_strcmp0(rec->provider, "btrfs"))
        return true;
    if (!rec->snapshot_dir)
        return true;   /* vs_snap_provider_for_record says what is wrong */
    if (lstat(rec->snapshot_dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        *why = g_strdup_printf("its snapshot directory %s %s (a file system not mounted?)", rec->snapshot_dir,
                               errno == ENOENT ? "does not exist" : "is not a directory");
        return false;
    }
    sub = g_build_filename(rec->snapshot_dir, "virtsnap-snapshots", NULL);
    if (lstat(sub, &st) < 0 && errno == ENOENT)
        *gone = true;
    return true;
}

VsSnapState
vs_snap_record_state(const VsSnapConfig *c, const VsManifestSnapshot *rec, const char *disk, char **reason)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSnapProvider) p = NULL;
    VsSnapLocation loc;
    bool gone = false, exists = false;

    *reason = NULL;
    if (!fs_dir_present(rec, &gone, reason))
        return VS_SNAP_STATE_UNKNOWN;
    if (gone)
        return VS_SNAP_STATE_GONE;
    if (!(p = vs_snap_provider_for_record(c, rec, disk, &loc, &err)) ||
        !vs_snap_exists(p, &loc, rec->handle, &exists, &err)) {
        *reason = g_strdup(err->message);
        return VS_SNAP_STATE_UNKNOWN;
    }
    return exists ? VS_SNAP_STATE_EXISTS : VS_SNAP_STATE_GONE;
}

bool
vs_snap_record_delete(const VsSnapConfig *c, const VsManifestSnapshot *rec, const char *disk, bool *was_gone,
                      GError **error)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VsSnapProvider) p = NULL;
    g_autofree char *why = NULL;
    VsSnapLocation loc;
    bool gone = false;

    if (was_gone)
        *was_gone = false;
    if (!fs_dir_present(rec, &gone, &why)) {
        /* Not NOT_FOUND: the snapshot may well exist where nobody can see it. */
        g_set_error(error, VS_ERROR, VS_ERROR_UNREACHABLE, "snapshot: %s: delete: %s", disk, why);
        return false;
    }
    if (!gone && (p = vs_snap_provider_for_record(c, rec, disk, &loc, error)) == NULL)
        return false;
    if (gone || vs_snap_delete(p, &loc, rec->handle, &err)) {
        if (was_gone)
            *was_gone = gone;
        return true;
    }
    if (g_error_matches(err, VS_ERROR, VS_ERROR_NOT_FOUND)) {
        if (was_gone)
            *was_gone = true;
        return true;
    }
    g_propagate_error(error, g_steal_pointer(&err));
    return false;
}

static bool
domain_wanted(const VsManifestDomain *d, const char *const *domains)
{
    if (!domains || !*domains)
        return true;
    for (const char *const *n = domains; *n; n++)
        if (!g_strcmp0(d->name, *n) || (d->uuid && !g_ascii_strcasecmp(d->uuid, *n)))
            return true;
    return false;
}

/* The ids ID selects: itself resolved, or every backup. */
static char **
select_ids(VsRepo *repo, const char *id, VsManifest **first, GError **error)
{
    char **ids;

    *first = NULL;
    if (!id)
        return vs_repo_list(repo, error);
    if (!(*first = vs_repo_load_manifest(repo, id, error)))
        return NULL;
    ids = g_new0(char *, 2);
    ids[0] = g_strdup((*first)->id);
    return ids;
}

/* Calls FN on every disk with a recorded snapshot in the backups ID selects;
 * unreadable manifests go to *UNREADABLE. */
typedef void (*RecordFunc)(const VsManifest *m, const VsManifestDomain *d, const VsManifestDisk *k, void *opaque);

static bool
foreach_record(VsRepo *repo, const char *id, const char *const *domains, GPtrArray **unreadable, RecordFunc fn,
               void *opaque, GError **error)
{
    VsManifest *first = NULL;
    g_auto(GStrv) ids = select_ids(repo, id, &first, error);

    if (!ids)
        return false;
    for (guint b = 0; ids[b]; b++) {
        g_autoptr(GError) err = NULL;
        g_autoptr(VsManifest) m = b == 0 && first ? first : vs_repo_load_manifest(repo, ids[b], &err);

        if (!m) {
            if (!*unreadable)
                *unreadable = g_ptr_array_new_with_free_func(g_free);
            g_ptr_array_add(*unreadable, g_strdup_printf("backup %s cannot be read: %s", ids[b], err->message));
            continue;
        }
        for (guint i = 0; i < m->domains->len; i++) {
            const VsManifestDomain *d = m->domains->pdata[i];

            if (!domain_wanted(d, domains))
                continue;
            for (guint k = 0; k < d->disks->len; k++) {
                const VsManifestDisk *disk = d->disks->pdata[k];
                if (disk->snapshot)
                    fn(m, d, disk, opaque);
            }
        }
    }
    return true;
}

typedef struct {
    const VsSnapConfig *c;
    bool ask;
    GPtrArray *out;
} ListCtx;

static void
list_one(const VsManifest *m, const VsManifestDomain *d, const VsManifestDisk *k, void *opaque)
{
    ListCtx *ctx = opaque;
    VsRecordedSnapshot *r = g_new0(VsRecordedSnapshot, 1);

    r->backup_id = g_strdup(m->id);
    r->completed = m->completed;
    r->domain = g_strdup(d->name);
    r->disk = g_strdup(k->target);
    r->in_repo = k->in_repo;
    r->snapshot = vs_manifest_snapshot_copy(k->snapshot);
    r->state = VS_SNAP_STATE_UNKNOWN;
    if (ctx->ask) {
        g_autofree char *name = g_strdup_printf("%s/%s", d->name, k->target);
        r->state = vs_snap_record_state(ctx->c, k->snapshot, name, &r->reason);
    }
    g_ptr_array_add(ctx->out, r);
}

GPtrArray *
vs_repo_list_snapshots(VsRepo *repo, const char *id, const char *const *domains, const VsSnapConfig *c, bool ask,
                       GPtrArray **unreadable, GError **error)
{
    g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func((GDestroyNotify)vs_recorded_snapshot_free);
    ListCtx ctx = { c, ask, out };

    if (!foreach_record(repo, id, domains, unreadable, list_one, &ctx, error))
        return NULL;
    return g_steal_pointer(&out);
}

typedef struct {
    const VsSnapConfig *c;
    GPtrArray *problems, *notices;
    guint checked, unknown;
} VerifyCtx;

static void
verify_one(const VsManifest *m, const VsManifestDomain *d, const VsManifestDisk *k, void *opaque)
{
    VerifyCtx *ctx = opaque;
    g_autofree char *name = g_strdup_printf("%s/%s", d->name, k->target);
    g_autofree char *reason = NULL;
    const VsManifestSnapshot *s = k->snapshot;
    VsSnapState state = vs_snap_record_state(ctx->c, s, name, &reason);
    VsVerifyProblem *p;

    ctx->checked++;
    if (state == VS_SNAP_STATE_EXISTS)
        return;
    if (state == VS_SNAP_STATE_UNKNOWN) {
        ctx->unknown++;
        g_ptr_array_add(ctx->notices, g_strdup_printf("backup %s, domain %s, disk %s: its %s snapshot %s could "
                                                      "not be checked: %s%s", m->id, d->name, k->target,
                                                      s->provider, s->handle, reason,
                                                      k->in_repo ? "" : " (the disk's data is only there)"));
        return;
    }
    if (k->in_repo) {
        g_ptr_array_add(ctx->notices, g_strdup_printf("backup %s, domain %s, disk %s: its %s snapshot %s no "
                                                      "longer exists; the disk's data is in the repository, "
                                                      "so it restores from there", m->id, d->name, k->target,
                                                      s->provider, s->handle));
        return;
    }
    p = g_new0(VsVerifyProblem, 1);
    p->backup_id = g_strdup(m->id);
    p->domain = g_strdup(d->name);
    p->disk = g_strdup(k->target);
    p->problem = g_strdup_printf("its %s snapshot %s no longer exists, and the disk's data was only there: "
                                 "this disk cannot be restored", s->provider, s->handle);
    g_ptr_array_add(ctx->problems, p);
}

bool
vs_repo_verify_snapshots(VsRepo *repo, const char *id, const VsSnapConfig *c, GPtrArray **problems,
                         GPtrArray **notices, guint *checked, guint *unknown, GError **error)
{
    g_autoptr(GPtrArray) unreadable = NULL;
    VerifyCtx ctx = { c, NULL, NULL, 0, 0 };
    bool ok;

    if (!*problems)
        *problems = g_ptr_array_new_with_free_func((GDestroyNotify)vs_verify_problem_free);
    if (!*notices)
        *notices = g_ptr_array_new_with_free_func(g_free);
    ctx.problems = *problems;
    ctx.notices = *notices;
    /* An unreadable manifest is vs_repo_verify's to report. */
    ok = foreach_record(repo, id, NULL, &unreadable, verify_one, &ctx, error);
    if (checked)
        *checked = ctx.checked;
    if (unknown)
        *unknown = ctx.unknown;
    return ok;
}
