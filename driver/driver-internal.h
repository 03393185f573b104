/* The driver's private header: the pieces backup, recover and the guardian share
 * and that no tool may call directly (the journal, per-domain locks, freeze and
 * thaw with bounded agent calls, block-job waiting on libvirt events). */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>
#include <libvirt/libvirt.h>
#include <stdbool.h>
#include "vs-driver.h"
#include "vs-backup.h"
#include "vs-copy.h"
#include "vs-xml.h"
#include "vs-fault.h"
#include "journal-records.h"
#include "vs-snapshot.h"

/* ------------------------------------------------------------------------- */
/* libvirt errors and states (conn.c)                                        */

/* Sets *error from libvirt's last error: "PREFIX: <libvirt message>". */
void vs_set_libvirt_error(GError **error, VsErrorCode code, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

/* "running", "blocked", "paused", "shutdown", "shutoff", "crashed", "pmsuspended" */
const char *vs_domain_state_string(int state);

/* ------------------------------------------------------------------------- */
/* Discovery's storage snapshot answer (discover-snapshot.c)                   */

/* Sets D->snapshot_provider, or D->snapshot_reason, from what discovery found
 * about where D lives (vs_snap_which: nothing is created) and what CONFIG
 * (may be NULL) says for its pool: a hook, provider=none or another provider,
 * the snapshot directory. DOMAIN names the disk in the block layer's location. */
void vs_discover_snapshot_provider(VsDiscoveredDisk *d, const char *domain, const VsSnapConfig *config);
/* Where D lives as the block layer's snapshot providers take it (strings
 * borrowed from D, NAME for messages); false with *WHY (to free) when no
 * provider could reach it (skipped, unresolved, a network disk of another
 * protocol). */
bool vs_discover_snap_location(const VsDiscoveredDisk *d, const char *name, VsSnapLocation *loc, char **why);
/* D's controller and controller_volume from the `locate` of the hook CONFIG
 * names for its pool (auto or hook asked for): left NULL without one, for a
 * disk skipped or unresolved, or where the hook cannot say (exit 3). False
 * with the hook's error, prefixed with the domain and disk, when it failed. */
bool vs_discover_locate(VsDiscoveredDisk *d, const char *domain, const struct _VsSnapConfig *config,
                        GError **error);

/* ------------------------------------------------------------------------- */
/* Recovery of a dead run's storage snapshots (recover-snapshots.c): each one
 * RECS made and did not delete is kept when BEGIN's backup records it, else
 * deleted; false (the journal stays) when that cannot be known or done. */
bool recover_storage_snapshots(GPtrArray *recs, const VsJournalRecord *begin, GPtrArray *actions,
                               GError **error);
/* One line of what recover did, into ACTIONS (NULL: dropped) (recover.c). */
void recover_act(GPtrArray *actions, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* ------------------------------------------------------------------------- */
/* State directory                                                           */

/* opts->state_dir, else $VIRTSNAP_STATE_DIR, else the configured default. */
const char *vs_state_dir(const char *state_dir);
bool vs_make_dir(const char *dir, int mode, GError **error);
/* $VIRTSNAP_RUN_DIR, else /run/virtsnap: sockets and the mount registry (dirs.c). */
const char *vs_run_dir(void);
/* "+UID:+GID" of QEMU's DAC label on CONN's host (capabilities), NULL if none
 * (mount.c): the owner a socket QEMU must reach is given to. */
char *vs_qemu_dac_owner(virConnectPtr conn, const char *virt_type);

/* ------------------------------------------------------------------------- */
/* Journal: STATE/journal/<id>.jsonl, one JSON object per line, each fsync'd
 * before the step it announces. The writer holds an exclusive flock on the file
 * for its whole life, which is how recover tells a live run from a dead one. */

VsJournal *vs_journal_create(const char *state_dir, const char *id, GError **error);
/* Appends TEXT (one JSON object) as a line and fsyncs it; the records'
 * writers (journal-records.h) are what call it. */
bool vs_journal_write_line(VsJournal *j, const char *text, GError **error);
/* The run is over: the journal is removed. */
void vs_journal_finish(VsJournal *j);
/* The run ends with work left for recover: the journal stays, unlocked. */
void vs_journal_close(VsJournal *j);
const char *vs_journal_path(const VsJournal *j);
/* The journal's descriptor (its lock goes with it: a process handed a dup of
 * it keeps the run alive for recover), and a journal made of one inherited
 * that way (FD at PATH, already locked). */
int vs_journal_fd(const VsJournal *j);
VsJournal *vs_journal_adopt(int fd, const char *path);

/* Journaled temp files of export and restore (tempfile.c): a journal of its
 * own for a run of KIND ("export", "restore"); the name of a temp file in DIR
 * for BASE, journaled before it is created (create it O_EXCL); and the record
 * that it is a temp file no more (renamed into place, or kept on purpose). */
VsJournal *vs_temp_journal_create(const char *state_dir, const char *kind, GError **error);
char *vs_temp_claim(VsJournal *j, const char *dir, const char *base, GError **error);
void vs_temp_done(VsJournal *j, const char *path);

/* Journal files in STATE/journal, sorted. */
char **vs_journal_list(const char *state_dir);
/* Reads the records (VsJournalRecord*, owned by the array; see
 * vs_journal_parse); a torn last line is ignored. With try_lock, fails with VS_ERROR_FAILED "in progress" if a live
 * process holds the journal; on success *lock_fd holds the lock (close it). */
GPtrArray *vs_journal_read(const char *path, bool try_lock, int *lock_fd, GError **error);

/* ------------------------------------------------------------------------- */
/* A connection that comes back after libvirtd restarts (link.c)              */

typedef struct _VsLink VsLink;

/* Borrows CONN (the caller closes it); connections reopened later are the link's. */
VsLink *vs_link_new(virConnectPtr conn, const char *uri);
void vs_link_free(VsLink *l);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsLink, vs_link_free)
virConnectPtr vs_link_conn(VsLink *l);
guint vs_link_generation(VsLink *l);
bool vs_link_alive(VsLink *l);
/* After a failed call: true when the connection is alive, or was reopened now
 * (waiting, with backoff, up to a minute for libvirtd); false with
 * VS_ERROR_CONNECTION, the message starting with WHAT. Thread-safe: one reopen
 * serves every thread. */
bool vs_link_revive(VsLink *l, const char *what, GError **error);
/* *DOM for UUID on the link's current connection: looked up again (the old
 * one freed) when *DOM is NULL or *GEN is older than the connection. Fails
 * with VS_ERROR_STOPPED when the domain no longer exists. */
bool vs_link_domain(VsLink *l, const char *uuid, virDomainPtr *dom, guint *gen, GError **error);

/* Whether domain UUID may still use PATH, as a live connection says: 1 when
 * its live chain or persistent definition names it, 0 when neither does (or
 * the domain no longer exists), -1 with *error when that cannot be known.
 * Only a 0 allows removing a file a guest may have used. */
int vs_domain_uses_file(virConnectPtr conn, const char *uuid, const char *path, GError **error);
/* Resumes DOM when QEMU paused it for an I/O error (*RESUMED says so); a pause
 * of anyone else's is left alone. */
bool vs_domain_resume_paused(virDomainPtr dom, bool *resumed, GError **error);

/* ------------------------------------------------------------------------- */
/* Per-domain locks: /run/lock/virtsnap/<uuid>.lock ($VIRTSNAP_LOCK_DIR),    */
/* one per host whatever the state directory, flock LOCK_EX|LOCK_NB.         */

/* Takes the lock of domain UUID (NAME in messages) for COMMAND ("backup",
 * "restore"), retrying for up to WAIT_S seconds, and writes the holder into it
 * (pid, process start, STATE_DIR, COMMAND, time). Returns its fd, or -1 with
 * VS_ERROR_BUSY naming the holder when the wait ran out. */
int vs_domain_lock(const char *state_dir, const char *uuid, const char *name, const char *command,
                   int wait_s, GError **error);
void vs_domain_unlock(int fd);
/* Whether UUID is a canonical UUID (it becomes a file name). */
bool vs_uuid_valid(const char *uuid);
/* At most MAX bytes of TEXT, anything but printable ASCII as '?': for what a
 * file anyone could have written says, on its way to a terminal. */
char *vs_printable(const char *text, size_t max);

/* ------------------------------------------------------------------------- */
/* Each of ITEMS on a thread of its own at once (parallel.c): a group's freeze,
 * snapshot or thaw takes as long as its slowest member, not the sum. */
typedef void (*VsEachFunc)(gpointer item, gpointer data);
void vs_each_parallel(GPtrArray *items, VsEachFunc func, gpointer data);

/* ------------------------------------------------------------------------- */
/* Agent: freeze and thaw with a bound on every call.                         */

/* Freezes all guest file systems. On failure the caller must still thaw: a
 * timed-out freeze may have frozen some file systems. */
bool vs_agent_freeze(virDomainPtr dom, int timeout_s, GError **error);
/* The same, returning how many file systems the agent froze (-1: failed). */
int vs_agent_freeze_count(virDomainPtr dom, int timeout_s, GError **error);
/* Thaws; a guest that is not frozen is not an error. */
bool vs_agent_thaw(virDomainPtr dom, int timeout_s, GError **error);
/* Thaws, then asks: true when the guest says it is thawed; otherwise *ERROR
 * says what stands in the way (the agent call's error, or "it still says
 * frozen"). */
bool vs_agent_thaw_confirmed(virDomainPtr dom, int timeout_s, GError **error);
/* "frozen", "thawed", or NULL with *error. */
char *vs_agent_freeze_status(virDomainPtr dom, int timeout_s, GError **error);

/* ------------------------------------------------------------------------- */
/* Block jobs                                                                 */

/* Active commit of DISK's top image into the image directly below it, pivot
 * only after the READY event, bounded by TIMEOUT_S; on timeout or failure the
 * job is cancelled and the domain stays on the overlay (consistent, reported). */
bool vs_blockcommit_pivot(virConnectPtr conn, virDomainPtr dom, const char *disk,
                          int timeout_s, GError **error);
/* The same with the bound in milliseconds and the copy limited to BANDWIDTH
 * bytes/s (0: as fast as it goes). */
/* Copies DOM's running DISK, whole chain, into the existing file DEST as FORMAT
 * (a block copy), waits for it to be in step and pivots the domain onto it (its
 * persistent definition too). Cancelled on failure: the disk stays as it was. */
bool vs_blockcopy_pivot(virConnectPtr conn, virDomainPtr dom, const char *disk, const char *dest,
                        const char *format, GError **error);
bool vs_blockcommit_pivot_limited(virConnectPtr conn, virDomainPtr dom, const char *disk,
                                  int timeout_ms, unsigned long bandwidth, GError **error);

/* CHAP credentials of network iSCSI disk TARGET of DOMAIN_XML, from the libvirt
 * secret its <auth> names: NULL without <auth> (*error unset) or when the
 * secret cannot be read (*error set). Free with vs_iscsi_auth_free. */
VsIscsiAuth *vs_disk_iscsi_auth(virConnectPtr conn, const char *domain_xml, const char *target,
                                GError **error);

/* The current top source path of DISK in the live XML (NULL if none). */
char *vs_domain_disk_source(virDomainPtr dom, const char *disk, bool inactive, GError **error);

/* ------------------------------------------------------------------------- */
/* Checkpoints and pull-mode backup jobs (checkpoint.c)                        */

/* Eight hex digits naming REPO's chain of checkpoints: kept in
 * REPO/checkpoints/tag, made from its real path the first time. */
char *vs_repo_tag(VsRepo *repo);
/* "virtsnap-TAG-BACKUPID": the checkpoint taken at the instant of that backup. */
char *vs_checkpoint_name(const char *tag, const char *backup_id);
/* True when checkpoint NAME exists; otherwise *WHY says, in one line, why not.
 * Whether its bitmaps are intact shows only when a job uses it. */
bool vs_checkpoint_usable(virDomainPtr dom, const char *name, char **why);

typedef struct {
    const char *target;
    bool bitmap;          /* qcow2: gets a bitmap in the checkpoint */
    /* Read since the job's checkpoint (backupmode='incremental'); else whole. */
    bool incremental;
    const char *scratch;  /* pull: the job's scratch file for this disk */
    const char *push_target;  /* push: the qcow2 the job writes this disk into */
} VsJobDisk;

/* Where a pull-mode job's NBD server listens: on unix SOCKET (this host), or
 * on TCP HOST:PORT of the hypervisor (a remote one, read over the network). */
typedef struct {
    const char *socket;
    const char *host;
    guint port;
} VsJobServer;

/* The domainbackup and domaincheckpoint XML (what `virsh backup-begin DOM
 * BACKUP_XML CHECKPOINT_XML` takes) of one backup job over DISKS: pull mode
 * (NBD exports named after each target on SERVER), or push mode when SERVER
 * is NULL (each disk into its push_target, a qcow2); since checkpoint
 * INCREMENTAL (NULL: full; DIFF: INCREMENTAL is the chain's full backup),
 * creating CHECKPOINT, whose description says whether it is a full backup's,
 * followed by DESCRIPTION (may be NULL); OTHER_TARGETS (NULL-terminated, may
 * be NULL) are left out of both. A pull disk without a scratch file gets
 * libvirt's own (made on the hypervisor, beside the domain's state). */
void vs_backup_job_xml(const VsJobServer *server, const char *incremental, bool diff,
                       const char *checkpoint, const char *description, const VsJobDisk *disks,
                       guint n_disks, const char *const *other_targets, char **backup_xml,
                       char **checkpoint_xml);
/* The job begun from them; REUSE_EXTERNAL: on scratch or push target images
 * the caller made (empty qcow2 of each disk's size). */
bool vs_backup_job_begin(virDomainPtr dom, const char *name, const char *incremental,
                         const char *backup_xml, const char *checkpoint_xml, bool reuse_external,
                         GError **error);
/* Waits until DOM's push-mode backup job has ended, however long it takes,
 * and says how: false with the job's own error when it failed or was aborted,
 * or when the domain stopped under it. PROGRESS (may be NULL) hears, a few
 * times a second, the bytes the job has written of its total. */
typedef void (*VsPushProgress)(uint64_t done, uint64_t total, void *opaque);
bool vs_push_job_wait(virDomainPtr dom, const char *name, VsPushProgress progress, void *opaque,
                      GError **error);
/* Keeps checkpoint NAME's XML in the repository (REPO/checkpoints/TAG/UUID.xml, with
 * the repository's modes), and redefines it from there (REPO_PATH) when libvirt has
 * lost it (domain defined anew): true when it was; false with *WHY set when that
 * failed, without when none was kept. */
bool vs_checkpoint_save(virDomainPtr dom, const char *name, VsRepo *repo, const char *tag,
                        const char *uuid, GError **error);
bool vs_checkpoint_redefine(virDomainPtr dom, const char *name, const char *repo_path,
                            const char *tag, const char *uuid, char **why);
/* Checkpoint NAME as libvirt describes it with the bytes written since it,
 * per disk, estimated from the bitmaps (VsCheckpointDiskDef.size, from
 * VIR_DOMAIN_CHECKPOINT_XML_SIZE); NULL when libvirt does not say. */
VsCheckpointDef *vs_checkpoint_with_sizes(virDomainPtr dom, const char *name);
/* Whether DOM runs a backup job (ours or not). */
bool vs_backup_job_active(virDomainPtr dom);
/* 1: DOM runs a backup job; 0: none (or the domain stopped); -1: libvirt
 * cannot say (a closed connection): then nothing of the job may be removed. */
int vs_backup_job_state(virDomainPtr dom);
/* Ends DOM's backup job, if it has one (virDomainAbortJob), and waits until
 * QEMU has torn it down: vs_backup_job_abort, then vs_backup_job_wait_gone. */
bool vs_backup_job_end(virDomainPtr dom, const char *name, GError **error);
bool vs_backup_job_abort(virDomainPtr dom, const char *name, GError **error);
bool vs_backup_job_wait_gone(virDomainPtr dom, const char *name, GError **error);
/* Deletes checkpoint NAME (none: true). */
bool vs_checkpoint_delete(virDomainPtr dom, const char *name);
/* The newest checkpoint of DOM named for TAG that a full backup created, or NULL:
 * where a differential backup counts from. */
char *vs_checkpoint_chain_full(virDomainPtr dom, const char *tag);
/* The backup id in checkpoint NAME of TAG's chain, or NULL when NAME is not one. */
char *vs_checkpoint_backup_id(const char *tag, const char *name);
/* Deletes every checkpoint of DOM named for TAG except KEEP and KEEP2 (may be
 * NULL); names that could not be deleted go to FAILED (char*, may be NULL). */
guint vs_checkpoints_prune(virDomainPtr dom, const char *tag, const char *keep, const char *keep2,
                           GPtrArray *failed);

/* ------------------------------------------------------------------------- */
/* Guardian                                                                   */

typedef struct _VsGuardian VsGuardian;

/* Starts a guardian that will thaw DOMAINS (UUIDs) deadline_ms from now, or at
 * once if this process dies. Returns once the guardian is armed (its own libvirt
 * connection open, its deadline running). */
VsGuardian *vs_guardian_start(const char *exe, const char *uri, const char *state_dir,
                              const char *id, int deadline_ms, const char *const *uuids,
                              int agent_timeout, GError **error);
/* The same in steps, so that the guardian's start (a process and a libvirt
 * connection) overlaps other work: spawn it early; arm it just before the
 * freeze (waits until it is ready, then starts its deadline). Stopped before
 * it was armed, it leaves without thawing anything. On failure the caller
 * stops it. */
VsGuardian *vs_guardian_spawn(const char *exe, const char *uri, const char *state_dir,
                              const char *id, int deadline_ms, const char *const *uuids,
                              int agent_timeout, GError **error);
bool vs_guardian_arm(VsGuardian *g, GError **error);
/* Whether G thaws domain UUID. */
bool vs_guardian_covers(const VsGuardian *g, const char *uuid);
/* Tells the guardian all is thawed and reaps it; or, if not ALL_THAWED, lets
 * it thaw and waits (bounded) for its verdict: true when every guest said it
 * is thawed (or is gone). A guardian still trying is left to go on alone. */
bool vs_guardian_stop(VsGuardian *g, bool all_thawed);

/* What the guardian's thawing (vs_guardian_thaw_all) works with: where to
 * connect and log, the bound of each agent call, the pause between tries
 * (doubling from FIRST_PAUSE_MS up to MAX_PAUSE_MS), how long to keep at it
 * (PERSIST_S), and whether to let go of stderr after the first try. */
typedef struct {
    const char *uri, *state_dir, *id;
    int agent_timeout;
    int first_pause_ms, max_pause_ms;
    int persist_s;
    bool detach;
} VsThawPlan;

/* The guardian's thaw: thaws the domains of UUIDS (N of them) until each says
 * it is thawed (guest-fsfreeze-status), or no longer runs or exists: 0 when
 * all did, 1 when P->persist_s passed first. Each try is logged to
 * STATE_DIR/guardian.log; *CONN is reopened whenever it is not alive. */
int vs_guardian_thaw_all(virConnectPtr *conn, const VsThawPlan *p, char **uuids, int n);

/* The guardian's command line after the executable (ARGS, NULL-terminated,
 * ARGS[0] the hidden command), spawned in its own session as
 * vs_guardian_spawn does, with PASS_FD (-1: none) as its descriptor 3 and
 * its standard error on /dev/null when QUIET; URI, UUIDS and AGENT_TIMEOUT
 * as there. It arms as that one does; one that writes "error MESSAGE"
 * instead of "ready" fails vs_guardian_arm with MESSAGE. */
VsGuardian *vs_guardian_spawn_args(const char *exe, const char *const *args, int pass_fd,
                                   bool quiet, const char *uri, const char *const *uuids,
                                   int agent_timeout, GError **error);
/* Tells the guardian "held" (it goes on alone, past this process) and lets go
 * of it without waiting. */
void vs_guardian_release(VsGuardian *g);
/* A line to STATE_DIR/guardian.log (and standard error), prefixed by ID. */
void vs_guardian_log(const char *state_dir, const char *id, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

int64_t vs_now_ms(void);
