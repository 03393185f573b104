/* A scripted control plane for the driver's unit tests, in the manner of
 * libvirt's qemuMonitorTestAddItem: a test queues the calls it expects the
 * code under test to make, in order, each with its answer (or its error); the
 * fake installs itself as the process's control plane (driver/control.h),
 * checks every call against the head of the queue (a call out of script
 * ends the test at once, naming both), and vs_fake_finish fails the test
 * unless each queued call was made. Domains and
 * connections are the fake's own tokens: no libvirt, no daemon, no guest.
 *
 * A call is written "OP DOMAIN ARGS...", OP the table entry's name (queued
 * with a last '*', any call that begins with what precedes it: a name the
 * run draws, as a backup's id):
 *   conn_open URI                  reply ignored: a new connection
 *   conn_alive                     "1", "0" or "-1"
 *   domain_lookup_uuid UUID        the name of a domain made with vs_fake_domain
 *   domain_is_active NAME          "1", "0" or "-1"
 *   domain_state NAME              "running", "paused", "shutdown", "shutoff", "crashed";
 *                                  "paused migration": paused by a migration
 *   domain_xml NAME live|inactive  the XML
 *   fs_freeze NAME, fs_thaw NAME   "ok" (fs_freeze: or how many file systems)
 *   agent_command NAME EXECUTE     the agent's reply (EXECUTE: the command's "execute")
 *   snapshot_create NAME           "ok" (its XML: vs_fake_last_xml)
 *   block_commit NAME DISK, block_copy NAME DISK                 "ok"
 *   block_job_info NAME DISK       "none", or the job's type: "pull", "copy",
 *                                  "commit", "active-commit", "backup"
 *   block_job_abort NAME DISK [pivot]                            "ok"
 *   backup_begin NAME, job_abort NAME                            "ok"
 *   job_stats NAME [completed]     "TYPE [OPERATION [ERRMSG...]]": TYPE none, bounded,
 *                                  unbounded, completed, failed, cancelled; OPERATION
 *                                  backup, migration-out, migration-in or other
 *   checkpoint_list NAME           the names, space-separated
 *   checkpoint_xml NAME CHECKPOINT the XML
 *   checkpoint_redefine NAME       "ok" (its XML: vs_fake_last_xml)
 *   checkpoint_delete NAME CHECKPOINT [metadata-only]           "ok"
 *   domain_is_persistent NAME      "1", "0" or "-1"
 *   domain_resume NAME, domain_suspend NAME                        "ok"
 *   block_info NAME DISK           "CAPACITY ALLOCATION" (bytes)
 *   conn_uri                       the URI (an error item: NULL)
 *   domain_list                    the names of vs_fake_domain domains, space-separated
 *   domain_xml_secure NAME         the persistent XML with its secrets
 *   domain_define                  "ok" (its XML: vs_fake_last_xml)
 *   pool_xml POOL                  the pool's XML
 *   pool_is_active POOL            "1" or "0"
 *   pool_define                    "ok" (its XML: vs_fake_last_xml)
 *   pool_start POOL [build]        "ok"
 *   pool_refresh POOL              "ok"
 *   pool_volume_path POOL VOLUME   the volume's path
 *   domain_destroy NAME            "ok"
 * Not scripted, as they ask nothing of libvirt: conn_close, domain_free,
 * domain_name, domain_uuid, domain_conn, block_job_watch (the events go to the
 * last function watching), job_watch (no events: callers poll), job_unwatch. */
#pragma once

#include <glib.h>
#include <libvirt/libvirt.h>
#include "control.h"

typedef struct _VsFake VsFake;

/* A fake with an empty queue, installed as the control plane. */
VsFake *vs_fake_new(void);
/* Asserts that every queued item was used; puts the
 * libvirt control plane back and frees F. */
void vs_fake_finish(VsFake *f);

/* Domain NAME (UUID) on the fake's first connection; the fake owns it. */
virDomainPtr vs_fake_domain(VsFake *f, const char *name, const char *uuid);
/* The fake's first connection (the one its domains say they are on). */
virConnectPtr vs_fake_conn(VsFake *f);

/* Expects CALL next, answered with REPLY. */
void vs_fake_add_item(VsFake *f, const char *call, const char *reply);
/* Expects CALL next, failing with CODE and MESSAGE. */
void vs_fake_add_error(VsFake *f, const char *call, VsErrorCode code, const char *message);
/* Once the call queued before it has been answered, a block-job event of
 * DOMAIN's DISK with STATUS (VIR_DOMAIN_BLOCK_JOB_*) reaches the watcher,
 * before that call returns (as one already in libvirt's queue would). */
void vs_fake_add_event(VsFake *f, const char *domain, const char *disk, int status);

/* Expects CALL next, answered with what FUNC(CALL, DATA) returns (a new
 * string) when the call comes, on the caller's thread: a reply that names what
 * the run made (an overlay's name), or what the real call does besides
 * answering (a file QEMU writes). */
typedef char *(*VsFakeReplyFunc)(const char *call, gpointer data);
void vs_fake_add_item_func(VsFake *f, const char *call, VsFakeReplyFunc func, gpointer data);
/* The calls queued between begin and end may come in any order (calls made
 * on threads of their own, one per domain), but all of them before any call
 * queued after end: the group as a whole keeps its place. No events inside. */
void vs_fake_any_order_begin(VsFake *f);
void vs_fake_any_order_end(VsFake *f);

/* The fixture of tests about one domain: a fresh fake holding domain "vm1"
 * (UUID VS_FAKE_U1), finished (every queued call used) at teardown. For
 * g_test_add(PATH, VsFakeFixture, NULL, vs_fake_fixture_setup, FUNC,
 * vs_fake_fixture_teardown). */
#define VS_FAKE_U1 "11111111-1111-1111-1111-111111111111"
typedef struct {
    VsFake *fake;
    virDomainPtr vm;
} VsFakeFixture;

void vs_fake_fixture_setup(VsFakeFixture *fx, gconstpointer data);
void vs_fake_fixture_teardown(VsFakeFixture *fx, gconstpointer data);

/* The XML of the last snapshot_create, backup_begin, checkpoint_redefine,
 * domain_define or pool_define. */
const char *vs_fake_last_xml(VsFake *f);
