/* What quiesce, unquiesce, the quiesce guardian and recover share: the token
 * registry (STATE/quiesce/TOKEN.json, one per quiesce, written whole and
 * renamed into place, read as hostile), the state a token moves through, and
 * the steps each of them takes on a guest (thaw and say thawed, resume what
 * the quiesce paused). A token's liveness is its journal's lock
 * (STATE/journal/quiesce-TOKEN.jsonl): the quiesce creates it and hands it to
 * its guardian, which holds it until the token is settled. */
#pragma once

#include "driver-internal.h"
#include "vs-quiesce.h"

typedef enum {
    VS_QSTATE_FREEZING,          /* the quiesce is freezing (or died doing so) */
    VS_QSTATE_QUIESCED,          /* held: the guardian waits for unquiesce or the deadline */
    VS_QSTATE_UNQUIESCING,       /* an unquiesce is thawing */
    VS_QSTATE_GUARDIAN_THAWING,  /* the deadline came first: the guardian is thawing */
    VS_QSTATE_GUARDIAN_THAWED,   /* ...and is done: unquiesce reports crash-consistent */
    VS_QSTATE_UNQUIESCED,        /* settled; kept a while so that a second unquiesce can say so */
} VsQuiesceState;

typedef struct {
    char *token;
    VsQuiesceState state;
    int max_freeze_ms, agent_timeout;
    int64_t created_at, deadline_at;        /* unix ms */
    int64_t unquiesced_at;                  /* unix ms an unquiesce began, -1 */
    int64_t guardian_thawed_at;             /* unix ms, -1 */
    bool deadline_kept, guardian_thawed;
    GPtrArray *domains;                     /* VsQuiesceDomain* */
} VsQuiesceToken;

void vs_quiesce_token_free(VsQuiesceToken *t);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsQuiesceToken, vs_quiesce_token_free)
void vs_quiesce_domain_free(VsQuiesceDomain *d);

/* A new token: "q-YYYYMMDD-HHMMSS-" and eight random hex digits. */
char *vs_quiesce_token_new(void);
/* "quiesce-TOKEN": its journal's id. */
char *vs_quiesce_journal_id(const char *token);
/* Whether state S still holds guests (or may): freezing to guardian-thawing. */
bool vs_quiesce_state_holds(VsQuiesceState s);
const char *vs_quiesce_state_name(VsQuiesceState s);

/* STATE/quiesce, made 0700 if missing, refused when it is not a directory
 * of ours. */
char *vs_quiesce_dir(const char *state_dir, GError **error);
/* The registry's lock (a short one, around a read and a write of a token):
 * an fd to close, or -1 with *ERROR. */
int vs_quiesce_lock(const char *state_dir, GError **error);
/* Token TOKEN as its file says, validated (VS_ERROR_NOT_FOUND: none;
 * VS_ERROR_IO: unreadable or not a token virtsnap wrote). */
VsQuiesceToken *vs_quiesce_token_read(const char *state_dir, const char *token, GError **error);
/* Writes T whole (0600, synced, renamed into place). */
bool vs_quiesce_token_write(const char *state_dir, const VsQuiesceToken *t, GError **error);
void vs_quiesce_token_remove(const char *state_dir, const char *token);
/* Every token's name in the registry, sorted (names not of a token's shape
 * are left out). Settled ones older than a week are removed on the way. */
GStrv vs_quiesce_token_list(const char *state_dir);
/* 1 when TOKEN's guardian (or its quiesce) is alive, 0 when not. */
int vs_quiesce_live(const char *state_dir, const char *token);

/* Resumes DOM when it is paused (a guest quiesce suspended); *RESUMED says
 * whether it was. */
bool vs_quiesce_resume(virDomainPtr dom, int retries, bool *resumed, GError **error);
/* Thaws DOM and asks: true when it says thawed. */
bool vs_quiesce_thaw(virDomainPtr dom, int agent_timeout, int retries, GError **error);
