/* Quiesce and unquiesce for an outside scheduler that takes its own storage
 * snapshots (an array snapshot, Snap Creator's framework): vs_quiesce freezes
 * every named guest at once through its agent (or, with suspend_fallback,
 * pauses one whose agent does not answer), arms a detached guardian that
 * thaws them by the deadline whatever happens, and returns a token while the
 * guests stay frozen; vs_unquiesce thaws (and resumes) them by that token and
 * says whether the deadline was kept. The token registry lives under
 * STATE/quiesce (one JSON file per token, 0600, in a 0700 directory); while
 * a token holds, its guardian holds each guest's per-domain lock, so a backup
 * or restore of it is refused naming the token. `virtsnap recover` settles a
 * token whose guardian died (vs_quiesce_recover). */
#pragma once

#include <glib.h>
#include <libvirt/libvirt.h>
#include <stdbool.h>
#include <stdint.h>
#include "vs-error.h"

G_BEGIN_DECLS

/* The default bound on a quiesce: long enough for an array to take its
 * snapshot (seconds, usually; a scheduler's round trips on top), short
 * enough that applications waiting on a frozen file system time out rarely. */
#define VS_QUIESCE_DEFAULT_MAX_FREEZE_MS 30000

typedef struct {
    const char *state_dir;     /* NULL: $VIRTSNAP_STATE_DIR or /var/lib/virtsnap */
    const char *uri;           /* the guardian's connection (NULL: as virsh) */
    const char *guardian_exe;  /* run as `EXE quiesce-guardian ...`; default /proc/self/exe */
    int max_freeze_ms;         /* the guardian thaws this long after the first freeze call */
    int agent_timeout;         /* seconds for each agent call, default 5 */
    bool suspend_fallback;     /* pause a guest whose agent does not answer */
    int retry_count;           /* retries of a failed freeze, thaw, suspend or resume (default 0) */
} VsQuiesceOptions;

void vs_quiesce_options_init(VsQuiesceOptions *opts);

typedef struct {
    char *name, *uuid;
    bool frozen;               /* its file systems frozen by the agent */
    bool suspended;            /* paused instead (suspend_fallback) */
    int filesystems;           /* how many the agent froze; -1 when not frozen */
    int64_t freeze_started_at; /* unix ms the freeze call was made */
    int64_t frozen_at;         /* unix ms it returned frozen (or suspended); -1 when neither */
    int64_t freeze_ms;         /* how long the call took */
    char *error;               /* why it is neither frozen nor suspended, or why it was paused */
} VsQuiesceDomain;

typedef struct {
    char *token;               /* [a-z0-9-], what unquiesce takes */
    int64_t deadline_at;       /* unix ms the guardian thaws at */
    int max_freeze_ms;
    GPtrArray *domains;        /* VsQuiesceDomain*, in the order named */
} VsQuiesceResult;

void vs_quiesce_result_free(VsQuiesceResult *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsQuiesceResult, vs_quiesce_result_free)

/* Freezes NAMES (NULL-terminated, at least one) as one group. Every guest is
 * frozen (or suspended) when it returns a result; otherwise NULL with *ERROR
 * (the guests it froze thawed again, nothing left frozen, no token left):
 * VS_ERROR_INVALID_ARG (a name given twice), VS_ERROR_NOT_FOUND (no such
 * domain), VS_ERROR_STOPPED (not running), VS_ERROR_BUSY (already quiesced,
 * naming the token, or its lock held by another run, naming it),
 * VS_ERROR_AGENT (a guest whose agent did not freeze it). */
VsQuiesceResult *vs_quiesce(virConnectPtr conn, const char *const *names,
                            const VsQuiesceOptions *opts, GError **error);

typedef struct {
    char *name, *uuid;
    bool thawed;               /* frozen by the quiesce and thawed now (it says thawed) */
    bool resumed;              /* suspended by the quiesce and running again */
    char *error;               /* what failed, or NULL */
} VsUnquiesceDomain;

typedef struct {
    char *token;
    bool already;              /* unquiesced before: nothing was done */
    bool deadline_kept;        /* thawed by unquiesce before the deadline */
    bool guardian_thawed;      /* the guardian thawed at the deadline: whatever snapshot
                                * was taken meanwhile is crash-consistent only */
    int64_t deadline_at, unquiesced_at;  /* unix ms */
    GPtrArray *domains;        /* VsUnquiesceDomain* */
    char *error;               /* --all: why this token could not be unquiesced, or NULL */
} VsUnquiesceToken;

typedef struct {
    GPtrArray *tokens;         /* VsUnquiesceToken* */
} VsUnquiesceResult;

void vs_unquiesce_result_free(VsUnquiesceResult *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsUnquiesceResult, vs_unquiesce_result_free)

/* Thaws and resumes what TOKEN (NULL: every token not yet unquiesced) holds
 * and tells its guardian to go. A token unquiesced before is reported
 * `already` (harmless). NULL with *ERROR: VS_ERROR_INVALID_ARG (not a token),
 * VS_ERROR_NOT_FOUND (no such token). A domain that failed to thaw has its
 * error set; the guardian then keeps the deadline. */
VsUnquiesceResult *vs_unquiesce(virConnectPtr conn, const char *token,
                                const VsQuiesceOptions *opts, GError **error);

/* Whether TOKEN is a token's shape ([a-z0-9-], 1 to 64 characters). */
bool vs_quiesce_token_valid(const char *token);

/* `virtsnap recover`'s part: every token whose guardian is gone while it held
 * (killed, the host's crash) is settled: its guests thawed and resumed, the
 * token removed. One line per thing done goes to ACTIONS. False with *ERROR
 * (the first failure; the token stays) when a guest could not be settled. */
bool vs_quiesce_recover(virConnectPtr conn, const char *state_dir, GPtrArray *actions,
                        GError **error);

/* The hidden `virtsnap quiesce-guardian` command (started by vs_quiesce). */
int vs_quiesce_guardian_main(int argc, char **argv);

G_END_DECLS
