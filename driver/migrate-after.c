/* After `virtsnap migrate`: the domain's checkpoint on the destination. libvirt
 * keeps checkpoints as metadata of the host the domain was defined on, and the
 * migration leaves them behind while the bitmaps travel in the (shared) qcow2
 * images; the repository keeps the newest checkpoint of its chain on each
 * domain (REPO/checkpoints/TAG/UUID.xml, checkpoint.c), from which it is
 * redefined on the destination here, so that the next --mode=begin
 * incremental there continues the chain. Whatever stands in the way becomes
 * the result's note saying why that backup will be a full one; the migration
 * itself has succeeded by then and stays a success. */
#include "config.h"
#include "migrate-internal.h"
#include "vs-repo.h"

static void
note(VsMigrateResult *r, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void
note(VsMigrateResult *r, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_free(r->checkpoint_note);
    r->checkpoint_note = g_strdup_vprintf(fmt, ap);
    va_end(ap);
}

/* The name of the checkpoint the repository keeps for UUID, or NULL with a note. */
static char *
kept_checkpoint(VsMigrateRun *m, const char *repo_path, const char *tag)
{
    g_autofree char *file = g_strdup_printf("%s.xml", m->r->uuid);
    g_autofree char *path = g_build_filename(repo_path, "checkpoints", tag, file, NULL);
    g_autofree char *xml = NULL;
    g_autoptr(VsCheckpointDef) def = NULL;
    g_autoptr(GError) err = NULL;

    if (!g_file_get_contents(path, &xml, NULL, NULL)) {
        note(m->r, "the repository %s keeps no checkpoint of domain '%s' (%s is missing: no "
             "--mode=begin backup of it there yet): the next backup is a full one", repo_path,
             m->r->name, path);
        return NULL;
    }
    if (!(def = vs_checkpoint_def_parse_string(xml, path, &err)) || !def->name) {
        note(m->r, "the checkpoint kept in %s cannot be read (%s): the next backup is a full one", path,
             err ? err->message : "no <name>");
        return NULL;
    }
    return g_strdup(def->name);
}

void
vs_migrate_checkpoints(VsMigrateRun *m, virDomainPtr ddom)
{
    const char *repo_path = m->o->repo_path;
    g_autoptr(VsRepo) repo = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree char *tag = NULL, *name = NULL, *gone = NULL, *why = NULL;

    if (!repo_path) {
        note(m->r, "no --repo: no checkpoint redefined on the destination; the next --mode=begin "
             "backup there redefines it from its repository's record, or is a full one");
        return;
    }
    if (!(repo = vs_repo_open(repo_path, false, false, 0, &err))) {
        note(m->r, "the repository cannot be opened (%s): no checkpoint redefined, the next "
             "--mode=begin backup on the destination may be a full one", err->message);
        return;
    }
    tag = vs_repo_tag(repo);
    if (!(name = kept_checkpoint(m, repo_path, tag)))
        return;
    /* The destination may have it already (a migration back to a host that kept it). */
    if (vs_checkpoint_usable(ddom, name, &gone)) {
        g_ptr_array_add(m->r->checkpoints, g_steal_pointer(&name));
        return;
    }
    if (vs_checkpoint_redefine(ddom, name, repo_path, tag, m->r->uuid, &why)) {
        m->r->checkpoint_redefined = true;
        g_ptr_array_add(m->r->checkpoints, g_steal_pointer(&name));
        return;
    }
    note(m->r, "checkpoint %s could not be redefined on the destination (%s): the next backup "
         "there is a full one", name, why ? why : "the repository's copy names another checkpoint");
}
