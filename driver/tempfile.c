/* Journaled temp files: the images export and restore build beside the file
 * they become. Each run that makes them has a journal of its own
 * (STATE/journal/KIND-TIME-PID.jsonl, see journal.c) that names every temp file
 * before it is created ("temp") and says when one stopped being a temp file
 * ("temp-done": renamed into place, or handed to a guest), so that after a
 * kill -9 `virtsnap recover` removes exactly those left (recover.c); the
 * journal's flock tells it the run is gone. An interrupt (SIGINT, SIGTERM,
 * SIGHUP) needs none of this: the run removes its temp files itself and ends
 * its journal. */
#include "config.h"
#include "driver-internal.h"
#include "vs-restore.h"
#include "vs-temp.h"

#include <unistd.h>

VsJournal *
vs_temp_journal_create(const char *state_dir, const char *kind, GError **error)
{
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_autofree char *stamp = g_date_time_format(now, "%Y%m%dT%H%M%SZ");
    g_autofree char *id = g_strdup_printf("%s-%s-%d-%08x", kind, stamp, (int)getpid(), g_random_int());
    VsJournal *j;

    if (!vs_make_dir(vs_state_dir(state_dir), 0755, error) ||
        !(j = vs_journal_create(state_dir, id, error)))
        return NULL;
    if (!vs_journal_begin_temps(j, kind, (int)getpid(), vs_temp_host(), error)) {
        vs_journal_finish(j);
        return NULL;
    }
    return j;
}

char *
vs_temp_claim(VsJournal *j, const char *dir, const char *base, GError **error)
{
    g_autofree char *path = vs_temp_path(dir, base);

    if (!vs_journal_temp(j, path, error))
        return NULL;
    return g_steal_pointer(&path);
}

void
vs_temp_done(VsJournal *j, const char *path)
{
    /* Best effort: a temp file recover then finds is in place (a file of a
     * domain: left alone) or gone. */
    if (j && path)
        (void)vs_journal_temp_done(j, path, NULL);
}

bool
vs_export_file(VsRepo *repo, const VsManifest *m, const char *domain, const char *disk,
               const char *out, const char *format, const char *state_dir, VsExportControl *ctl,
               GError **error)
{
    VsExportControl local = { 0 };
    g_autofree char *abs = NULL, *dir = NULL, *base = NULL, *tmp = NULL;
    VsJournal *j;
    bool ok;

    if (!ctl)
        ctl = &local;
    if (!out || !*out)
        return vs_repo_export_disk_ctl(repo, m, domain, disk, out, format, ctl, error);
    abs = g_canonicalize_filename(out, NULL);
    dir = g_path_get_dirname(abs);
    base = g_path_get_basename(abs);
    if (!(j = vs_temp_journal_create(state_dir, "export", error))) {
        vs_error_prefix(error, "export");
        return false;
    }
    if (!(tmp = vs_temp_claim(j, dir, base, error))) {
        vs_error_prefix(error, "export");
        vs_journal_finish(j);
        return false;
    }
    ctl->tmp = tmp;
    ctl->keep_tmp = false;
    ok = vs_repo_export_disk_ctl(repo, m, domain, disk, out, format, ctl, error);
    ctl->tmp = NULL;
    /* Renamed into place, or removed by the export. */
    vs_journal_finish(j);
    return ok;
}
