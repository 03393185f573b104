/* Backups and migrations arbitrate (issue 17 item 2), through the per-domain
 * lock (journal.c) and libvirt's own job of the domain. A migration waits,
 * bounded, for the backup that holds the domain (its frozen window and its
 * overlays or job end before the backup lets the lock go), or with
 * --abort-backup asks that backup to stop: it leaves a request file next to
 * the lock, <uuid>.abort, naming itself, and sends the holder SIGTERM, so that
 * the backup's interrupt path (vs-interrupt.h) unwinds it exactly as on a
 * Ctrl-C and the backup, finding the request, says it was aborted for a
 * migration. A backup of a domain that is migrating is refused, naming the
 * migration: virtsnap's own (the lock's holder says "migrate") or one that
 * libvirt runs for anyone else (the domain's job is a migration). */
#pragma once

#include <glib.h>
#include <libvirt/libvirt.h>
#include <stdbool.h>

G_BEGIN_DECLS

/* How migrate tells its user whom it waits for (one line, no newline). */
typedef void (*VsArbitrateSay)(const char *line, gpointer data);

/* Takes domain UUID's lock (NAME in messages) for a migration to DEST_URI,
 * waiting up to WAIT_S seconds for the run that holds it; with ABORT_BACKUP a
 * backup holding it is asked to stop first (SIGTERM, after the request file).
 * SAY (may be NULL) hears whom it waits for. Returns the lock's fd for
 * vs_migrate_unlock, or -1 with VS_ERROR_BUSY naming the holder. */
int vs_migrate_lock(const char *state_dir, const char *uuid, const char *name, const char *dest_uri,
                    int wait_s, bool abort_backup, VsArbitrateSay say, gpointer data,
                    GError **error);
/* Lets the lock go, and the abort request this process left, if any. */
void vs_migrate_unlock(int fd, const char *uuid);

/* "a migration to URI (virtsnap migrate --abort-backup, pid N ...)" when a
 * live migrate asked the backup of domain UUID to stop, else NULL. */
char *vs_backup_abort_request(const char *uuid);

/* Refuses (false, VS_ERROR_BUSY, "backup: domain 'NAME' is migrating: ...")
 * a backup of a domain that a virtsnap migrate holds, with no wait: the
 * domain will be gone from this host once it ends. */
bool vs_backup_check_migrate_holder(const char *uuid, const char *name, GError **error);
/* Refuses a backup of DOM (NAME) while libvirt runs a migration of it (its
 * job's operation), or when it is paused for a migration that did not finish
 * (STATE, REASON as virDomainGetState says). A job libvirt cannot report is
 * not a refusal: the backup's own calls then fail with libvirt's words. */
bool vs_backup_check_migration_job(virDomainPtr dom, const char *name, int state, int reason,
                                   GError **error);

G_END_DECLS
