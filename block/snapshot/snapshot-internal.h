/* What the storage snapshot providers (snapshot-*.c) share and nothing else
 * needs: the message prefix and a safe rendering of bytes that came from
 * outside (a hook's output, a handle from a repository) for error messages. */
#pragma once

#include "vs-snapshot.h"

/* S cut at MAX bytes (with "..." if cut) and escaped (control characters,
 * quotes, backslashes, bytes >= 0x80 as C escapes): safe in one message line. */
char *snap_escape(const char *s, size_t max);

/* The errno of a failed call as a GError code: ENOENT NOT_FOUND,
 * EOPNOTSUPP/EXDEV/ENOTTY/EINVAL UNSUPPORTED, anything else IO. */
int snap_errno_code(int err);

/* One run of a hook executable (snapshot-hook-run.c): ARGV with exactly ENVP,
 * stdin /dev/null, in a process group of its own that is killed whole when
 * TIMEOUT_MS passes. Spawning failures are errors; how the hook ended is in
 * the result. */
typedef struct {
    bool timed_out;     /* killed at the timeout (status then meaningless) */
    int status;         /* waitpid status */
    GString *out;       /* stdout, at most SNAP_HOOK_OUT_MAX bytes */
    bool out_overflow;  /* it printed more than that */
    GString *err;       /* the start of stderr, at most SNAP_HOOK_ERR_MAX bytes */
} SnapHookRun;
#define SNAP_HOOK_OUT_MAX (64 * 1024)
#define SNAP_HOOK_ERR_MAX 4096
bool snap_hook_run(char **argv, char **envp, unsigned timeout_ms, SnapHookRun *run, GError **error);
void snap_hook_run_clear(SnapHookRun *run);
