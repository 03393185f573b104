/* What the pieces of `virtsnap sc-plugin` share (cmd-scplugin.c: the
 * operations but quiesce; sc-quiesce.c: -quiesce and -unquiesce): the run's
 * settings, its parameters (Snap Creator passes them in the environment; the
 * configuration file gives them too), and the SC_MSG lines it prints as it
 * goes. */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include "sc-format.h"
#include "virtsnap.h"

G_BEGIN_DECLS

/* The plug-in's exit codes (the framework's): 99 for an operation it does
 * not implement. */
enum { SC_EXIT_OK = 0, SC_EXIT_FAILED = 1, SC_EXIT_USAGE = 2, SC_EXIT_NOT_IMPLEMENTED = 99 };

typedef struct {
    const VsGlobal *g;
    const char *state_dir;        /* --state-dir; NULL: the parameter VIRTSNAP_STATE_DIR */
    const char *snapshot_config;  /* --snapshot-config; NULL: VIRTSNAP_SNAPSHOT_CONFIG */
} ScRun;

/* A parameter's value (KVM_VM_MAPPING, ...; a key vs-config.h knows): the
 * environment Snap Creator sets, else the configuration file; NULL when
 * neither gives it. */
const char *sc_param(const ScRun *r, const char *key);

/* STATE: --state-dir, else VIRTSNAP_STATE_DIR, else /var/lib/virtsnap. */
const char *sc_state_dir(const ScRun *r);

/* The VM names of KVM_VM_MAPPING (NULL-terminated, the configuration's); NULL
 * with an SC_MSG#ERROR printed when it names none (WHAT: "-quiesce"). */
const char *const *sc_mapped_vms(const ScRun *r, const char *what);

/* One SC_MSG line (several for a multi-line text) on stdout, now. */
void sc_say(VsScLevel level, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* -quiesce and -unquiesce (sc-quiesce.c): exit codes. */
int sc_quiesce(const ScRun *r);
int sc_unquiesce(const ScRun *r);

G_END_DECLS
