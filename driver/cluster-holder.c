/* A stop that a backup must not make fail: the agent's offline and clean take
 * the domain's per-domain lock (so no new virtsnap run starts on a domain
 * being stopped), and when a virtsnap backup holds it they interrupt that
 * backup rather than fail or wait it out. The holder is named in the lock
 * file (pid=, start=, command=, written by vs_domain_lock); it is signalled
 * only when the process with that pid started at that clock tick, so a pid
 * reused by another process is never hit. SIGTERM makes the backup unwind as
 * on Ctrl-C: it thaws the guest, commits its overlay and records nothing.
 * Other holders (a restore, a migration) are waited for. Either wait is
 * bounded, and when it runs out the stop goes on without the lock: a cluster
 * whose stop fails fences the node, which is worse for every run on it, and
 * `virtsnap recover` settles what an interrupted run leaves. */
#include "config.h"
#include "cluster-internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    long pid;
    char *start;
    char *command;
} Holder;

static void
holder_clear(Holder *h)
{
    g_free(h->start);
    g_free(h->command);
}

static const char *
lock_path_dir(void)
{
    const char *env = g_getenv("VIRTSNAP_LOCK_DIR");

    return env && *env ? env : "/run/lock/virtsnap";
}

/* The holder's lines from the lock file; false when it names none. The file
 * is anyone's who could write the lock directory: bounded, and the pid must
 * be a plain positive number. */
static bool
read_holder(const char *uuid, Holder *h)
{
    g_autofree char *file = g_strconcat(uuid, ".lock", NULL);
    g_autofree char *path = g_build_filename(lock_path_dir(), file, NULL);
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;
    gsize len = 0;

    if (!g_file_get_contents(path, &text, &len, NULL) || len > 4096)
        return false;
    lines = g_strsplit(text, "\n", -1);
    for (size_t i = 0; lines[i]; i++) {
        if (g_str_has_prefix(lines[i], "pid=")) {
            char *end = NULL;
            long v = strtol(lines[i] + 4, &end, 10);
            h->pid = (end && !*end && v > 1) ? v : 0;
        } else if (g_str_has_prefix(lines[i], "start=") && !h->start) {
            h->start = vs_printable(lines[i] + 6, 64);
        } else if (g_str_has_prefix(lines[i], "command=") && !h->command) {
            h->command = vs_printable(lines[i] + 8, 64);
        }
    }
    return h->pid > 0 && h->start;
}

/* Whether process PID is the one that started at clock tick START (field 22
 * of /proc/PID/stat, counted from the last ')' as vs_domain_lock writes it). */
static bool
same_process(long pid, const char *start)
{
    g_autofree char *path = g_strdup_printf("/proc/%ld/stat", pid);
    g_autofree char *text = NULL;
    g_auto(GStrv) fields = NULL;
    const char *rest;

    if (!g_file_get_contents(path, &text, NULL, NULL) || !(rest = strrchr(text, ')')) || !rest[1])
        return false;
    fields = g_strsplit(rest + 2, " ", 21);
    return g_strv_length(fields) > 19 && strcmp(fields[19], start) == 0;
}

int
vs_cluster_lock_or_interrupt(const char *state_dir, const char *uuid, const char *name,
                             gint64 deadline, int max_wait_s, GPtrArray *notes)
{
    g_autoptr(GError) err = NULL;
    Holder h = { 0 };
    int fd, wait_s;

    if ((fd = vs_domain_lock(state_dir, uuid, name, "agent", 0, &err)) >= 0)
        return fd;
    if (err->code != VS_ERROR_BUSY) {
        vs_cluster_note(notes, "the domain's lock could not be taken, going on without it: %s",
                        err->message);
        return -1;
    }
    g_clear_error(&err);
    if (read_holder(uuid, &h) && g_strcmp0(h.command, "backup") == 0 && same_process(h.pid, h.start)) {
        if (kill((pid_t)h.pid, SIGTERM) == 0)
            vs_cluster_note(notes, "interrupted virtsnap backup pid %ld (start %s) of '%s': it unwinds, "
                            "thaws the guest and records no backup", h.pid, h.start, name);
        else
            vs_cluster_note(notes, "could not signal virtsnap backup pid %ld: %s", h.pid, g_strerror(errno));
    } else {
        vs_cluster_note(notes, "virtsnap %s (pid %ld) holds '%s': waiting for it",
                        h.command ? h.command : "?", h.pid, name);
    }
    /* Half of what is left at most: the stop itself needs the rest. */
    wait_s = (int)MIN((gint64)max_wait_s, (deadline - g_get_monotonic_time()) / G_USEC_PER_SEC / 2);
    fd = wait_s > 0 ? vs_domain_lock(state_dir, uuid, name, "agent", wait_s, &err) : -1;
    if (fd < 0)
        vs_cluster_note(notes, "virtsnap %s (pid %ld) still holds '%s' after %d s: stopping it anyway "
                        "(`virtsnap recover` settles what that run leaves)",
                        h.command ? h.command : "?", h.pid, name, MAX(wait_s, 0));
    holder_clear(&h);
    return fd;
}
