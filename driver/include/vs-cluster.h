/* What a cluster manager asks of a domain, as one logic for two of them: the
 * entry points of Veritas Cluster Server's KVMGuest agent (online, offline,
 * monitor, clean, migrate; attributes GuestName, DelayAfterGuestOnline,
 * DelayAfterGuestOffline, SyncDir, GuestConfigFilePath) behind `virtsnap agent`,
 * which the OCF agent ocf:virtsnap:domain calls in turn. Each operation runs
 * against a deadline (the cluster's timeout for it): waits end there, a
 * graceful shutdown becomes a destroy before it, and an offline never fails
 * because a virtsnap backup holds the domain: the backup is interrupted
 * (SIGTERM to the lock's holder, checked by its start time) and unwinds.
 * Monitor's answer is VCS's: a state and a confidence, which
 * vs_cluster_monitor_exit turns into the script exit code VCS reads. */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include "vs-error.h"

G_BEGIN_DECLS

typedef enum {
    VS_CLUSTER_ONLINE,
    VS_CLUSTER_OFFLINE,              /* not running here, as nobody expected otherwise */
    VS_CLUSTER_FAULTED,              /* crashed, destroyed or gone while meant to run */
    VS_CLUSTER_INTENTIONAL_OFFLINE,  /* migrated away, or shut down gracefully outside the cluster */
    VS_CLUSTER_UNKNOWN,              /* libvirt cannot say */
} VsClusterState;

/* "ONLINE", "OFFLINE", "FAULTED", "INTENTIONAL OFFLINE", "UNKNOWN". */
const char *vs_cluster_state_string(VsClusterState state);

/* VCS's script exit code for a monitor: 110 down to 101 for ONLINE with
 * CONFIDENCE 100 down to 10, 100 for OFFLINE and FAULTED (VCS faults a
 * resource it expected online that reports offline), 200 for INTENTIONAL
 * OFFLINE, 99 for UNKNOWN. */
int vs_cluster_monitor_exit(VsClusterState state, int confidence);

/* The exit codes of the other verbs, OCF's numbers where OCF has the meaning
 * (so the OCF agent passes them on). */
enum {
    VS_CLUSTER_EXIT_OK = 0,
    VS_CLUSTER_EXIT_FAILED = 1,
    VS_CLUSTER_EXIT_USAGE = 2,
    VS_CLUSTER_EXIT_UNSUPPORTED = 3,  /* migrate without the migration driver */
    VS_CLUSTER_EXIT_CONFIG = 6,       /* no such domain and no GuestConfigFilePath, a bad file */
};

/* The attributes, as VCS names them (vs_cluster_attr_set takes those keys). */
typedef struct {
    char *guest_name;        /* GuestName: the domain, when not given as DOMAIN */
    int delay_online_s;      /* DelayAfterGuestOnline (default 5) */
    int delay_offline_s;     /* DelayAfterGuestOffline (default 30; bounded by the deadline) */
    char *sync_dir;          /* SyncDir: the definition copied there by offline, NULL: none */
    char *config_path;       /* GuestConfigFilePath: defines a missing domain at online */
    int timeout_s;           /* the whole operation's bound (Timeout, --timeout; default 300) */
    char *state_dir;         /* where the agent remembers what it did (NULL: virtsnap's) */
} VsClusterAttrs;

void vs_cluster_attrs_init(VsClusterAttrs *a);
void vs_cluster_attrs_clear(VsClusterAttrs *a);
/* Sets attribute KEY (VCS's name, case as VCS writes it) to VALUE;
 * VS_ERROR_INVALID_ARG naming the key for an unknown key or a bad number. */
bool vs_cluster_attr_set(VsClusterAttrs *a, const char *key, const char *value, GError **error);
/* Reads KEY=VALUE lines (blank lines and # comments skipped, a value may be
 * in double quotes, as in main.cf) from PATH. */
bool vs_cluster_attrs_load(VsClusterAttrs *a, const char *path, GError **error);

/* The VCS state of a domain from what libvirt says: EXISTS (defined or
 * running here), its virDomainState STATE and REASON, and what the agent
 * remembers of its last verb here (MEMORY: "online", "offline", "migrated",
 * or NULL). *CONFIDENCE gets 10..100 for ONLINE; *WHY a phrase (static). */
VsClusterState vs_cluster_classify(bool exists, int state, int reason, const char *memory,
                                   int *confidence, const char **why);

typedef struct {
    VsClusterState state;
    int confidence;
    char *why;               /* one line for the administrator */
} VsClusterStatus;

void vs_cluster_status_clear(VsClusterStatus *s);

/* The verbs, on DOMAIN (NULL: GuestName, else the <name> of
 * GuestConfigFilePath) at URI (NULL: as virsh). Each one ends by the
 * deadline A->timeout_s from its call, VS_ERROR_TIMEOUT when the domain's
 * state could not be reached in time. Online starts the domain (defining it
 * from GuestConfigFilePath when it is missing), waits for it to run and
 * DelayAfterGuestOnline; offline stops it gracefully, destroying it when
 * the bound is near, waits DelayAfterGuestOffline and copies its
 * definition to SyncDir; clean destroys it. NOTES (may be NULL) gets a line
 * per thing worth saying (a backup interrupted, the delay cut short). */
bool vs_cluster_online(const char *uri, const char *domain, const VsClusterAttrs *a,
                       GPtrArray *notes, GError **error);
bool vs_cluster_offline(const char *uri, const char *domain, const VsClusterAttrs *a,
                        GPtrArray *notes, GError **error);
bool vs_cluster_clean(const char *uri, const char *domain, const VsClusterAttrs *a,
                      GPtrArray *notes, GError **error);
/* Migrate moves the running domain to TARGET (a libvirt URI) through
 * vs_migrate (its pre-checks; a backup holding the domain is stopped, as for
 * offline); afterwards monitor here says INTENTIONAL OFFLINE. */
bool vs_cluster_migrate(const char *uri, const char *domain, const VsClusterAttrs *a,
                        const char *target, GPtrArray *notes, GError **error);
/* False only when the connection cannot be had; a domain libvirt cannot
 * describe is UNKNOWN. */
bool vs_cluster_monitor(const char *uri, const char *domain, const VsClusterAttrs *a,
                        VsClusterStatus *out, GError **error);

/* The domain's name in the definition at PATH (a <name> element). */
char *vs_cluster_name_from_file(const char *path, GError **error);

G_END_DECLS
