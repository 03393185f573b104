/* Backups and migrations arbitrate (see arbitrate.h): migrate's side takes the
 * domain's lock as "migrate", waiting for a backup to end or asking it to stop
 * (--abort-backup: a request file next to the lock, then SIGTERM to the holder
 * after checking that it is the backup the lock names, by pid and process
 * start); backup's side refuses a domain a migration holds, whether virtsnap's
 * (the lock) or one libvirt runs for someone else (the domain's job). The
 * backup stopped by a request unwinds on its interrupt path and, finding the
 * request, reports itself aborted for a migration, no backup written. */
#include "config.h"
#include "driver-internal.h"
#include "control.h"
#include "arbitrate.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static char *
abort_path(const char *uuid)
{
    g_autofree char *file = g_strconcat(uuid, ".abort", NULL);

    return g_build_filename(vs_lock_dir(), file, NULL);
}

static void
say(VsArbitrateSay func, gpointer data, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static void
say(VsArbitrateSay func, gpointer data, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *line = NULL;

    if (!func)
        return;
    va_start(ap, fmt);
    line = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    func(line, data);
}

/* The request that the backup holding UUID's lock finds once it is
 * interrupted, then SIGTERM to that backup (H, checked live by the caller). */
static bool
ask_backup_to_stop(const char *state_dir, const char *uuid, const char *name, const char *dest_uri,
                   const VsLockHolder *h, GError **error)
{
    g_autofree char *path = abort_path(uuid);
    g_autofree char *what = g_strdup_printf("migrate --abort-backup to %s", dest_uri);
    g_autofree char *start = NULL;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);

    if (fd < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "migrate: --abort-backup: cannot write %s: %s",
                    path, g_strerror(errno));
        return false;
    }
    if (!vs_holder_file_write(fd, path, state_dir, what, error)) {
        close(fd);
        unlink(path);
        return false;
    }
    close(fd);
    /* Checked again just before the signal: a backup that ended meanwhile
     * leaves its pid to whoever gets it next. */
    start = vs_process_start(h->pid);
    if (!start || g_strcmp0(start, h->start) != 0)
        return true;
    if (kill(h->pid, SIGTERM) < 0 && errno != ESRCH) {
        g_set_error(error, VS_ERROR, VS_ERROR_DENIED,
                    "migrate: --abort-backup: cannot signal the backup of domain '%s' (pid %d): %s",
                    name, h->pid, g_strerror(errno));
        unlink(path);
        return false;
    }
    return true;
}

int
vs_migrate_lock(const char *state_dir, const char *uuid, const char *name, const char *dest_uri,
                int wait_s, bool abort_backup, VsArbitrateSay say_func, gpointer data,
                GError **error)
{
    g_autoptr(VsLockHolder) h = vs_domain_lock_holder(uuid, NULL);
    g_autoptr(GError) err = NULL;
    int fd;

    if (h) {
        g_autofree char *who = vs_lock_holder_describe(h);

        if (abort_backup && !g_strcmp0(h->command, "backup")) {
            if (!ask_backup_to_stop(state_dir, uuid, name, dest_uri, h, error))
                return -1;
            say(say_func, data, "migrate: domain '%s': stopping the backup that holds it (%s) for "
                "--abort-backup; waiting up to %d s for it to put the guest back", name, who, wait_s);
        } else {
            say(say_func, data, "migrate: domain '%s' is in use by %s; waiting up to %d s for it to "
                "end (--wait)%s", name, who, wait_s,
                abort_backup ? " (not a backup: --abort-backup does not stop it)" : "");
        }
    }
    fd = vs_domain_lock(state_dir, uuid, name, "migrate", wait_s, &err);
    if (fd >= 0)
        return fd;
    if (g_error_matches(err, VS_ERROR, VS_ERROR_BUSY)) {
        g_autoptr(VsLockHolder) still = vs_domain_lock_holder(uuid, NULL);
        g_autofree char *who = vs_lock_holder_describe(still);

        const char *hint = still && !g_strcmp0(still->command, "backup") && !abort_backup
                               ? " (or --abort-backup to stop the backup)" : "";

        if (wait_s > 0)
            g_set_error(error, VS_ERROR, VS_ERROR_BUSY,
                        "migrate: lock: domain '%s' is still in use by another run after %d s: %s; "
                        "migrate it once that has ended, or give a longer --wait%s", name, wait_s,
                        who, hint);
        else
            g_set_error(error, VS_ERROR, VS_ERROR_BUSY,
                        "migrate: lock: domain '%s' is in use by another run: %s; migrate it once "
                        "that has ended, or give --wait SECONDS%s", name, who, hint);
    } else {
        g_set_error(error, err->domain, err->code, "migrate: %s", err->message);
    }
    vs_migrate_unlock(-1, uuid);
    return -1;
}

void
vs_migrate_unlock(int fd, const char *uuid)
{
    g_autofree char *path = vs_uuid_valid(uuid) ? abort_path(uuid) : NULL;
    g_autoptr(VsLockHolder) req = path ? vs_holder_file_read(path, NULL) : NULL;

    if (req && req->pid == (int)getpid())
        unlink(path);
    vs_domain_unlock(fd);
}

char *
vs_backup_abort_request(const char *uuid)
{
    g_autofree char *path = vs_uuid_valid(uuid) ? abort_path(uuid) : NULL;
    g_autoptr(VsLockHolder) req = path ? vs_holder_file_read(path, NULL) : NULL;

    if (!req || !req->command || !g_str_has_prefix(req->command, "migrate"))
        return NULL;
    return g_strdup_printf("a migration (virtsnap %s, pid %d, since %s)", req->command, req->pid,
                           req->since ? req->since : "?");
}

bool
vs_backup_check_migrate_holder(const char *uuid, const char *name, GError **error)
{
    g_autoptr(VsLockHolder) h = vs_domain_lock_holder(uuid, NULL);
    g_autofree char *who = NULL;

    if (!h || g_strcmp0(h->command, "migrate") != 0)
        return true;
    who = vs_lock_holder_describe(h);
    g_set_error(error, VS_ERROR, VS_ERROR_BUSY,
                "backup: domain '%s' is migrating (%s): back it up once the migration has ended, "
                "on the host it runs on then", name, who);
    return false;
}

static const char *
operation_name(int op)
{
    switch (op) {
    case VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT:
        return "outgoing";
    case VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN:
        return "incoming";
    default:
        return NULL;
    }
}

bool
vs_backup_check_migration_job(virDomainPtr dom, const char *name, int state, int reason,
                              GError **error)
{
    VsJobStats st;
    const char *dir;

    if (!vs_control()->job_stats(dom, false, &st, NULL))
        return true;
    dir = operation_name(st.operation);
    if (dir && st.type != VIR_DOMAIN_JOB_NONE) {
        g_autofree char *done = st.has_progress && st.total > 0
            ? g_strdup_printf(", %llu%% of its data sent", st.processed * 100 / st.total) : g_strdup("");

        g_set_error(error, VS_ERROR, VS_ERROR_BUSY,
                    "backup: domain '%s' is migrating (libvirt's %s migration job%s, not started by "
                    "this virtsnap): back it up once the migration has ended, on the host it runs "
                    "on then", name, dir, done);
        vs_job_stats_clear(&st);
        return false;
    }
    vs_job_stats_clear(&st);
    if (state == VIR_DOMAIN_PAUSED &&
        (reason == VIR_DOMAIN_PAUSED_MIGRATION || reason == VIR_DOMAIN_PAUSED_POSTCOPY ||
         reason == VIR_DOMAIN_PAUSED_POSTCOPY_FAILED)) {
        g_set_error(error, VS_ERROR, VS_ERROR_BUSY,
                    "backup: domain '%s' is paused by a migration that has not finished (no "
                    "migration job runs now): run `virtsnap recover` to settle which host it runs "
                    "on, then back it up there", name);
        return false;
    }
    return true;
}
