/* The records of the crash-recovery journal, typed: the one place that knows
 * how each step of a backup, an export or a restore is written down before it
 * is taken (the crash-safety contract between them and `virtsnap recover`).
 * Writers append one record of their kind and fsync it; the reader turns a
 * journal back into VsJournalRecord structs for recover. On disk a record is
 * one JSON object per line, {"op": KIND, "time": µs, ...string members}, the
 * same since the first version: a journal written by any earlier virtsnap is
 * read, a member it lacks is NULL, and a kind this version does not know is
 * kept as VS_JOURNAL_UNKNOWN with its name, never acted on. */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct _VsJournal VsJournal;

typedef enum {
    VS_JOURNAL_UNKNOWN,      /* written by a later version: only op and time */
    VS_JOURNAL_BEGIN,        /* the run: a backup's id, repo, pid; or a temp run's run_kind, pid, host */
    VS_JOURNAL_FREEZE,       /* about to freeze domain (uuid) */
    VS_JOURNAL_THAWED,       /* domain is known thawed again */
    VS_JOURNAL_OVERLAY,      /* about to put overlay on disk above original (format) */
    VS_JOURNAL_COMMIT,       /* about to commit disk's overlay back */
    VS_JOURNAL_COMMITTED,    /* disk's overlay committed, pivoted and removed */
    VS_JOURNAL_BACKUP_JOB,   /* about to begin a backup job creating checkpoint; its socket_dir, scratch_dir */
    VS_JOURNAL_JOB_ENDED,    /* domain's backup job ended, its files removed */
    VS_JOURNAL_INCOMPLETE,   /* the run ended with work left for recover */
    VS_JOURNAL_TEMP,         /* about to create temp image path */
    VS_JOURNAL_TEMP_DONE,    /* path is a temp image no more */
    VS_JOURNAL_STORAGE_SNAPSHOT, /* about to take disk's storage snapshot (snapshot: the record, handle = label) */
    VS_JOURNAL_SNAPSHOT_MADE,    /* disk's storage snapshot exists (snapshot: the record with its handle) */
    VS_JOURNAL_SNAPSHOT_DELETED, /* disk's storage snapshot of this run is gone again */
    /* `virtsnap migrate` (after a BEGIN of run_kind "migrate", pid, host): about to
     * migrate domain (uuid) from source to dest, two libvirt URIs. Nothing follows
     * it: a migration that ended either way removes its journal, so one left by a
     * dead run (kill -9 mid-migration) means the guest runs on exactly one of the
     * two hosts (or is paused on one) and both have to be asked. */
    VS_JOURNAL_MIGRATE,
} VsJournalKind;

/* One record; members a kind does not have (or an older journal did not
 * write) are NULL, or 0. */
typedef struct {
    VsJournalKind kind;
    char *op;                /* the kind's name as written */
    int64_t time_us;         /* wall clock when written */
    char *domain, *uuid;     /* a domain's records: FREEZE to JOB_ENDED */
    char *disk;              /* OVERLAY, COMMIT, COMMITTED: the target ("vda") */
    char *overlay;           /* OVERLAY, COMMIT: the file virtsnap created */
    char *original;          /* OVERLAY: the image below it (a path or a URL) */
    char *format;            /* OVERLAY: the original's format */
    char *checkpoint;        /* BACKUP_JOB: the checkpoint the job creates */
    char *socket_dir;        /* BACKUP_JOB: pull mode's NBD socket directory (push: NULL) */
    char *scratch_dir;       /* BACKUP_JOB: its scratch or push files */
    char *id;                /* BEGIN of a backup: the backup's id */
    char *repo;              /* BEGIN of a backup: the repository's path */
    char *run_kind;          /* BEGIN of an export or restore: "export", "restore" */
    char *host;              /* BEGIN of an export or restore: vs_temp_host() */
    int pid;                 /* BEGIN: the run's process (0: not written, as by older versions) */
    char *path;              /* TEMP, TEMP_DONE */
    char *snapshot;          /* STORAGE_SNAPSHOT, SNAPSHOT_MADE: VsManifestSnapshot as JSON */
    char *config;            /* STORAGE_SNAPSHOT, SNAPSHOT_MADE: the snapshot configuration the run
                              * used (--snapshot-config), NULL: the default */
    char *source, *dest;     /* MIGRATE: the libvirt URIs of the host it leaves and the one it goes to */
} VsJournalRecord;

void vs_journal_record_free(VsJournalRecord *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsJournalRecord, vs_journal_record_free)
/* "overlay", "temp-done": the kind's name on disk; NULL for VS_JOURNAL_UNKNOWN. */
const char *vs_journal_kind_name(VsJournalKind kind);

/* Writers, one per kind: each appends its record and fsyncs it, or fails with
 * VS_ERROR_IO ("journal: writing PATH: ..."). */
bool vs_journal_begin_backup(VsJournal *j, const char *id, const char *repo, int pid, GError **error);
bool vs_journal_begin_temps(VsJournal *j, const char *run_kind, int pid, const char *host,
                            GError **error);
bool vs_journal_freeze(VsJournal *j, const char *domain, const char *uuid, GError **error);
bool vs_journal_thawed(VsJournal *j, const char *domain, const char *uuid, GError **error);
bool vs_journal_overlay(VsJournal *j, const char *domain, const char *uuid, const char *disk,
                        const char *overlay, const char *original, const char *format,
                        GError **error);
bool vs_journal_commit(VsJournal *j, const char *domain, const char *uuid, const char *disk,
                       const char *overlay, GError **error);
bool vs_journal_committed(VsJournal *j, const char *domain, const char *uuid, const char *disk,
                          GError **error);
bool vs_journal_backup_job(VsJournal *j, const char *domain, const char *uuid,
                           const char *checkpoint, const char *socket_dir, const char *scratch_dir,
                           GError **error);
bool vs_journal_job_ended(VsJournal *j, const char *domain, const char *uuid, GError **error);
bool vs_journal_incomplete(VsJournal *j, GError **error);
bool vs_journal_temp(VsJournal *j, const char *path, GError **error);
bool vs_journal_temp_done(VsJournal *j, const char *path, GError **error);
/* SNAPSHOT: vs_manifest_snapshot_to_json of the record; CONFIG: the snapshot
 * configuration file that names its provider's hook (NULL: the default). */
bool vs_journal_storage_snapshot(VsJournal *j, const char *domain, const char *uuid, const char *disk,
                                 const char *snapshot, const char *config, GError **error);
bool vs_journal_snapshot_made(VsJournal *j, const char *domain, const char *uuid, const char *disk,
                              const char *snapshot, const char *config, GError **error);
bool vs_journal_snapshot_deleted(VsJournal *j, const char *domain, const char *uuid, const char *disk,
                                 GError **error);
bool vs_journal_migrate(VsJournal *j, const char *domain, const char *uuid, const char *source,
                        const char *dest, GError **error);

/* The records of journal TEXT (VsJournalRecord*, owned by the array), in
 * order. A line that is not a JSON object with a string "op" is skipped: the
 * last one may have been cut short by a crash, and was never acted on. */
GPtrArray *vs_journal_parse(const char *text);
