/* The lines of Snap Creator's native plug-in protocol that `virtsnap sc-plugin`
 * prints (sc-format.c), kept apart from the command so that the unit tests
 * check every kind against golden files without a libvirt daemon. The shapes
 * follow the framework's native plug-ins: SC_MSG#LEVEL#TIME#TEXT,
 * SC_DESCRIBE#OP|DESCRIPTION|PARAMETER#..., SC_DISCOVER#CLASS#DISCOVERED|FAILED|
 * RESULT#... and SC_DISCOVER#ENV#KEY#VALUE, SC_DUMP#WHAT#...; docs/virtsnap.1
 * (sc-plugin) documents them and the choices made where the guide is silent. */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include "vs-driver.h"

G_BEGIN_DECLS

typedef enum {
    VS_SC_DEBUG,
    VS_SC_INFO,
    VS_SC_WARN,
    VS_SC_ERROR,
} VsScLevel;

/* One line "SC_KIND#F1#...#FN\n" appended to OUT; FIELDS NULL-terminated.
 * Every field but the last has '#' and '%' percent-encoded (the separator
 * stays one); a control character anywhere becomes a space, so that one call
 * is always one line. */
void vs_sc_line(GString *out, const char *kind, const char *const *fields);

/* The timestamp of SC_MSG lines: WHEN (unix seconds) in UTC, ISO 8601
 * ("2026-12-07T20:41:03Z"). */
char *vs_sc_time(gint64 when);

/* SC_MSG#LEVEL#TIME#TEXT; a TEXT of several lines becomes one SC_MSG line
 * each (the same level and time). */
void vs_sc_msg(GString *out, VsScLevel level, gint64 when, const char *text);

/* The whole answer to -describe: the operations, a description, and each
 * parameter (name, meaning, example, Y when required). */
char *vs_sc_describe(void);

/* The answer to -discover for DOMAINS (vs_discover's result, discovered with
 * `locate`) and its PROBLEMS (VsProblem*, may be NULL): an SC_MSG line per
 * disk, SC_DISCOVER#DATA#DISCOVERED#CONTROLLER#VOLUME per disk mapped,
 * SC_DISCOVER#DATA#FAILED#VM/TARGET per disk (SC_DISCOVER#DATA#FAILED#VM per
 * domain) that could not be, SC_DISCOVER#DATA#RESULT#0|1, and the new mapping
 * as SC_DISCOVER#ENV#KVM_VM_MAPPING#... (only when everything was mapped: a
 * mapping without a failed VM would leave it out of the next quiesce).
 * Returns whether everything was mapped. */
bool vs_sc_discover(GString *out, GPtrArray *domains, GPtrArray *problems, gint64 when);

/* What -scdump reports: versions (NULL: unknown) and the discovered domains. */
typedef struct {
    const char *virtsnap_version;
    const char *libvirt_version;      /* "9.0.0" */
    const char *hypervisor_version;   /* "QEMU 7.2.0" */
    const char *os;                   /* "Linux 6.1.0 x86_64" */
} VsScDumpInfo;

/* SC_DUMP#virtsnap#VERSION, SC_DUMP#libvirt#VERSION, SC_DUMP#hypervisor#...,
 * SC_DUMP#OS#..., and per domain SC_DUMP#VM#NAME#state=... agent=... disks=N:
 * nothing secret (no XML, no paths of credentials). */
void vs_sc_dump(GString *out, const VsScDumpInfo *info, GPtrArray *domains);

G_END_DECLS
