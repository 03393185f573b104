/* Running an administrator's hook with a hard bound: its own process group
 * (so that whatever it started dies with it at the timeout), no stdin, both
 * outputs drained concurrently (a hook that fills its stderr pipe must not
 * hang us), output capped so that a runaway hook cannot eat memory. What the
 * hook's result means is snapshot-hook.c's business. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "snapshot-internal.h"

/* After the hook exits, how long a grandchild holding its pipes open may keep
 * us reading: its output past that is not part of the answer. */
#define SNAP_HOOK_DRAIN_MS 500

static void
child_setup(gpointer data)
{
    setpgid(0, 0);
}

/* Reads what is there on FD into BUF (up to MAX, the rest dropped); false at EOF. */
static bool
drain(int fd, GString *buf, size_t max, bool *overflow)
{
    char chunk[4096];
    ssize_t n = read(fd, chunk, sizeof chunk);

    if (n < 0)
        return errno == EINTR || errno == EAGAIN;
    if (n == 0)
        return false;
    if (buf->len + (size_t)n > max) {
        if (overflow)
            *overflow = true;
        n = (ssize_t)(max - MIN(buf->len, max));
    }
    g_string_append_len(buf, chunk, n);
    return true;
}

bool
snap_hook_run(char **argv, char **envp, unsigned timeout_ms, SnapHookRun *run, GError **error)
{
    int fds[2] = {-1, -1};
    GPid pid;
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000, exited_at = 0;
    bool reaped = false;

    memset(run, 0, sizeof *run);
    run->out = g_string_new(NULL);
    run->err = g_string_new(NULL);
    if (!g_spawn_async_with_pipes(NULL, argv, envp, G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDIN_FROM_DEV_NULL,
                                  child_setup, NULL, &pid, NULL, &fds[0], &fds[1], error))
        return false;
    setpgid(pid, pid);      /* also here: no race with a kill before the child ran setup */
    while (fds[0] >= 0 || fds[1] >= 0 || !reaped) {
        struct pollfd pfd[2];
        nfds_t n = 0;
        gint64 now = g_get_monotonic_time();

        if (!reaped && waitpid(pid, &run->status, WNOHANG) == pid) {
            reaped = true;
            exited_at = now;
        }
        if (now >= deadline || (reaped && now - exited_at > SNAP_HOOK_DRAIN_MS * 1000))
            break;
        for (int i = 0; i < 2; i++)
            if (fds[i] >= 0)
                pfd[n++] = (struct pollfd){.fd = fds[i], .events = POLLIN};
        if (poll(pfd, n, 20) < 0 && errno != EINTR)
            break;
        for (nfds_t i = 0; i < n; i++) {
            bool is_out = pfd[i].fd == fds[0];
            if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            if (!drain(pfd[i].fd, is_out ? run->out : run->err, is_out ? SNAP_HOOK_OUT_MAX : SNAP_HOOK_ERR_MAX,
                       is_out ? &run->out_overflow : NULL)) {
                close(pfd[i].fd);
                fds[is_out ? 0 : 1] = -1;
            }
        }
    }
    if (!reaped) {
        run->timed_out = true;
        kill(-pid, SIGKILL);
        while (waitpid(pid, &run->status, 0) < 0 && errno == EINTR)
            ;
    }
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    g_spawn_close_pid(pid);
    return true;
}

void
snap_hook_run_clear(SnapHookRun *run)
{
    if (run->out)
        g_string_free(run->out, TRUE);
    if (run->err)
        g_string_free(run->err, TRUE);
    run->out = run->err = NULL;
}
