/* What the virtsnap command's pieces share: the global options every command
 * sees, the command table's signature and the output helpers. The command line
 * stays thin: it parses options, calls the driver library and prints. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdbool.h>
#include "vs-driver.h"
#include "vs-config.h"

typedef struct {
    const char *uri;       /* -c/--connect, else the configuration's LIBVIRT_DEFAULT_URI; NULL: as virsh */
    bool quiet;
    const char *config_path; /* --config FILE, NULL: the default file */
    const VsConfig *config;  /* loaded before the command runs (never NULL then) */
} VsGlobal;

/* The configuration every command reads (virtsnap.c loads it before the
 * command runs; NULL before that). vs_cfg(KEY, OPTION): OPTION if the command's
 * option gave it, else KEY from the environment or the file (vs-config.h). */
const VsConfig *vs_cli_config(void);
const char *vs_cfg(const char *key, const char *option);
/* The VMs KEY (KVM_VM_MAPPING, KVM_RESTORE_VM_LIST) names, NULL-terminated and
 * owned by the configuration, or NULL when it is unset; with MUST_EXIST, NULL
 * and *ERROR (VS_ERROR_INVALID_ARG, "config: FILE:LINE: KEY: VM 'x' does not
 * exist ...") when one is not a domain of CONN (config-vms.c). */
const char *const *vs_config_vms(virConnectPtr conn, const char *key, bool must_exist, GError **error);

/* Each command returns the process exit status: 0 success, 1 failure (some of
 * the work may have been done and reported), 2 bad usage. */
int vs_cmd_discover(const VsGlobal *g, int argc, char **argv);
int vs_cmd_backup(const VsGlobal *g, int argc, char **argv);
int vs_cmd_recover(const VsGlobal *g, int argc, char **argv);
int vs_cmd_guardian(const VsGlobal *g, int argc, char **argv);
int vs_cmd_init(const VsGlobal *g, int argc, char **argv);
int vs_cmd_list(const VsGlobal *g, int argc, char **argv);
int vs_cmd_verify(const VsGlobal *g, int argc, char **argv);
int vs_cmd_export(const VsGlobal *g, int argc, char **argv);
int vs_cmd_gc(const VsGlobal *g, int argc, char **argv);
int vs_cmd_prune(const VsGlobal *g, int argc, char **argv);
int vs_cmd_restore(const VsGlobal *g, int argc, char **argv);
int vs_cmd_mount(const VsGlobal *g, int argc, char **argv);
int vs_cmd_umount(const VsGlobal *g, int argc, char **argv);
int vs_cmd_vault(const VsGlobal *g, int argc, char **argv);
int vs_cmd_scplugin(const VsGlobal *g, int argc, char **argv);
/* The configuration could not be loaded before sc-plugin ran: MESSAGE as an
 * SC_MSG#ERROR line too, where the framework reads the plug-in's words. */
void vs_scplugin_config_failed(const char *message);

int vs_cmd_snapshots(const VsGlobal *g, int argc, char **argv);
int vs_cmd_quiesce(const VsGlobal *g, int argc, char **argv);
int vs_cmd_unquiesce(const VsGlobal *g, int argc, char **argv);
int vs_cmd_quiesce_guardian(const VsGlobal *g, int argc, char **argv);
int vs_cmd_migrate(const VsGlobal *g, int argc, char **argv);
/* `virtsnap agent VERB DOMAIN`: VCS's KVMGuest entry points (cmd-agent.c). */
int vs_cmd_agent(const VsGlobal *g, int argc, char **argv);

/* The repository commands' shared steps (cmd-repo.c, cmd-snapshots.c): the
 * repository named by --repo (OPT), else $VIRTSNAP_REPO; opened for CMD,
 * returning 0 or the exit status with the error printed (2: none given, 1: it
 * cannot be opened). */
struct _VsRepo;
struct _VsSnapConfig;
const char *vs_repo_arg(const char *opt);
int vs_open_repo(const char *cmd, const char *path, bool writable, struct _VsRepo **out);
/* The storage snapshot configuration for CMD (PATH NULL: the default file,
 * whose absence is an empty one): 0, or 1 with the error printed. */
int vs_load_snap_config(const char *cmd, const char *path, struct _VsSnapConfig **out);
/* prune's first step (cmd-snapshots.c): deletes the storage snapshots of the
 * backups PLAN (VsPruneDecision*) removes, through their providers, one
 * already gone being fine, but none a kept backup records too; a backup with
 * a snapshot that cannot be deleted is kept (its decision says why, the error
 * printed). SAY: a line per snapshot. DRY_RUN: only says. Returns 0, 1 when a
 * backup had to be kept, -1 (printed, nothing done) when the manifests
 * cannot all be read. *DELETED: snapshots deleted or found gone. */
int vs_prune_snapshots(struct _VsRepo *r, const struct _VsSnapConfig *c, GPtrArray *plan, bool dry_run, bool say,
                       guint *deleted);

/* Prints "virtsnap: MESSAGE" to stderr. */
void vs_print_error(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

/* A numeric option as given, and the values it may take (max VS_NO_MAX: no
 * upper bound). */
#define VS_NO_MAX G_MAXINT64
typedef struct {
    const char *name;      /* "--parallel" */
    gint64 value;
    gint64 min, max;
} VsIntOption;

/* Checks N numeric options: each one out of its range is named in *ERROR with
 * the values it may take ("CMD: --parallel 0: give 1 to 64; --copy-nice ...").
 * False when any is: a usage error (exit 2). */
bool vs_check_int_options(const char *cmd, const VsIntOption *opts, size_t n, GError **error);

/* A command's failure before it has a result: MESSAGE on stderr and JSON (the
 * command's result shape with MESSAGE as its "error", for --json; NULL: none)
 * on stdout, freed. Returns STATUS. */
int vs_fail_with(int status, const char *message, char *json);

/* Whether ARGV (up to a "--") holds OPTION: for a --json that must shape the
 * output even when the option parser failed before it got there. */
bool vs_argv_has(int argc, char **argv, const char *option);

/* JSON output (json-out.c): a member KEY whose value is VALUE, or null where
 * VALUE is NULL (str) or negative (int_or_null); and the text (pretty or
 * compact) with a final newline. */
void vs_json_add_str(JsonBuilder *b, const char *key, const char *value);
void vs_json_add_int(JsonBuilder *b, const char *key, gint64 value);
void vs_json_add_int_or_null(JsonBuilder *b, const char *key, gint64 value);
void vs_json_add_bool(JsonBuilder *b, const char *key, bool value);
char *vs_json_node_text(JsonNode *root, bool pretty);
char *vs_json_builder_text(JsonBuilder *b, bool pretty);

/* discover output formats (discover-format.c; unit-tested) */
char *vs_discover_to_json(GPtrArray *domains, bool pretty);
char *vs_discover_to_mapping(GPtrArray *domains);
char *vs_discover_to_text(GPtrArray *domains);
/* The mapping as Snap Creator's guide writes KVM_VM_MAPPING, unescaped:
 * VM:CONTROLLER:VOLUME; per disk backed up (vs_disk_sc_location), then a
 * newline. A name or field it cannot hold: NULL, VS_ERROR_UNSUPPORTED. */
char *vs_discover_to_sc_mapping(GPtrArray *domains, GError **error);
/* A disk's controller and volume in that mapping (to free): what a hook's
 * `locate` named, else the NFS server and export+path, the iSCSI portal and
 * IQN/LUN, or localhost and the path. */
void vs_disk_sc_location(const VsDiscoveredDisk *d, char **controller, char **volume);
