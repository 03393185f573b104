/* The guardian: a separate process, armed before any guest is frozen, whose one
 * job is to make sure no guest stays frozen longer than --max-freeze. It opens
 * its own libvirt connection first and says "ready"; it may be started early,
 * while the backup prepares, and then waits on a pipe from the backup process
 * for "freeze" (sent just before the first guest is frozen: end of file before
 * it means nothing was frozen, and it leaves). From "freeze" on, "thawed" means
 * the backup thawed everything itself; end of file means the backup died (kill
 * -9 included), and the deadline passing means it hangs — in both cases the
 * guardian thaws every guest it was given, at once, without anyone running a
 * command, and keeps at it (a new connection when libvirtd restarts, an agent
 * that answers late) until each guest says it is thawed or is gone; end of
 * file also comes from a backup that could not thaw them all itself. It runs
 * in its own session so that a Ctrl-C aimed at the backup does not take it
 * down too. */
#include "config.h"
#include "driver-internal.h"
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct _VsGuardian {
    GPid pid;
    int ctl_fd;      /* write end: "thawed\n" */
    int out_fd;      /* read end: "ready\n", until armed */
    char *uri;
    GStrv uuids;     /* the domains it thaws */
    int agent_timeout;
};

/* How long the guardian keeps trying to thaw a guest that does not say it is
 * thawed; after that the journal's freeze is left to `virtsnap recover`. */
#define PERSIST_S (24 * 3600)

/* Descriptor 3 of the child, and its session; standard error on /dev/null
 * once QUIET (a caller's pipe must not wait for a guardian that outlives it). */
typedef struct {
    bool quiet;
} ChildSetup;

static void
child_setup(gpointer data)
{
    ChildSetup *cs = data;

    setsid();
    if (cs->quiet) {
        int null = open("/dev/null", O_WRONLY);

        if (null >= 0) {
            dup2(null, STDERR_FILENO);
            close(null);
        }
    }
}

VsGuardian *
vs_guardian_spawn_args(const char *exe, const char *const *args, int pass_fd, bool quiet,
                       const char *uri, const char *const *uuids, int agent_timeout, GError **error)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) local = NULL;
    VsGuardian *g = g_new0(VsGuardian, 1);
    ChildSetup cs = { quiet };
    int source_fds[1] = { pass_fd }, target_fds[1] = { 3 };

    g_ptr_array_add(argv, g_strdup(exe && *exe ? exe : "/proc/self/exe"));
    for (size_t i = 0; args[i]; i++)
        g_ptr_array_add(argv, g_strdup(args[i]));
    g_ptr_array_add(argv, NULL);

    g->out_fd = -1;
    g->agent_timeout = agent_timeout;
    g->uri = g_strdup(vs_default_uri(uri));
    g->uuids = g_strdupv((char **)uuids);
    if (!g_spawn_async_with_pipes_and_fds(NULL, (const char *const *)argv->pdata, NULL,
                                          G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_CLOEXEC_PIPES,
                                          child_setup, &cs, -1, -1, -1,
                                          pass_fd >= 0 ? source_fds : NULL,
                                          pass_fd >= 0 ? target_fds : NULL, pass_fd >= 0 ? 1 : 0,
                                          &g->pid, &g->ctl_fd, &g->out_fd, NULL, &local)) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "guardian: cannot start %s: %s",
                    (char *)argv->pdata[0], local->message);
        g_strfreev(g->uuids);
        g_free(g->uri);
        g_free(g);
        return NULL;
    }
    return g;
}

VsGuardian *
vs_guardian_spawn(const char *exe, const char *uri, const char *state_dir, const char *id,
                  int deadline_ms, const char *const *uuids, int agent_timeout, GError **error)
{
    g_autoptr(GPtrArray) args = g_ptr_array_new_with_free_func(g_free);

    g_ptr_array_add(args, g_strdup("guardian"));
    g_ptr_array_add(args, g_strdup(vs_default_uri(uri)));
    g_ptr_array_add(args, g_strdup_printf("%d", deadline_ms));
    g_ptr_array_add(args, g_strdup_printf("%d", agent_timeout));
    g_ptr_array_add(args, g_strdup(vs_state_dir(state_dir)));
    g_ptr_array_add(args, g_strdup(id));
    for (size_t i = 0; uuids && uuids[i]; i++)
        g_ptr_array_add(args, g_strdup(uuids[i]));
    g_ptr_array_add(args, NULL);
    return vs_guardian_spawn_args(exe, (const char *const *)args->pdata, -1, false, uri, uuids,
                                  agent_timeout, error);
}

bool
vs_guardian_covers(const VsGuardian *g, const char *uuid)
{
    return g->uuids && g_strv_contains((const char *const *)g->uuids, uuid);
}

/* Until it says "ready" (its own connection is open), nothing may be frozen.
 * A guardian that cannot serve says "error MESSAGE" instead. */
static bool
wait_armed(VsGuardian *g, GError **error)
{
    char buf[1024] = "";
    size_t got = 0;
    gint64 until = g_get_monotonic_time() + 15 * G_USEC_PER_SEC;

    while (!memchr(buf, '\n', got) && got < sizeof buf - 1 && g_get_monotonic_time() < until) {
        struct pollfd pfd = { .fd = g->out_fd, .events = POLLIN };
        ssize_t r;
        if (poll(&pfd, 1, 200) <= 0)
            continue;
        r = read(g->out_fd, buf + got, sizeof buf - 1 - got);
        if (r <= 0)
            break;
        got += r;
    }
    close(g->out_fd);
    g->out_fd = -1;
    if (strncmp(buf, "ready\n", 6) == 0)
        return true;
    if (strncmp(buf, "error ", 6) == 0 && memchr(buf, '\n', got)) {
        *strchr(buf, '\n') = '\0';
        g_set_error(error, VS_ERROR, VS_ERROR_BUSY, "%s", buf + 6);
        return false;
    }
    g_set_error(error, VS_ERROR, VS_ERROR_FAILED,
                "guardian: did not arm (it could not open %s?); nothing was frozen", g->uri);
    return false;
}

bool
vs_guardian_arm(VsGuardian *g, GError **error)
{
    if (!wait_armed(g, error))
        return false;
    if (write(g->ctl_fd, "freeze\n", 7) != 7) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED,
                    "guardian: it ended before the freeze (%s); nothing was frozen", g_strerror(errno));
        return false;
    }
    return true;
}

VsGuardian *
vs_guardian_start(const char *exe, const char *uri, const char *state_dir, const char *id,
                  int deadline_ms, const char *const *uuids, int agent_timeout, GError **error)
{
    VsGuardian *g = vs_guardian_spawn(exe, uri, state_dir, id, deadline_ms, uuids, agent_timeout,
                                      error);

    if (g && !vs_guardian_arm(g, error)) {
        vs_guardian_stop(g, true);
        return NULL;
    }
    return g;
}

void
vs_guardian_release(VsGuardian *g)
{
    (void)!write(g->ctl_fd, "held\n", 5);
    close(g->ctl_fd);
    if (g->out_fd >= 0)
        close(g->out_fd);
    g_spawn_close_pid(g->pid);
    g_strfreev(g->uuids);
    g_free(g->uri);
    g_free(g);
}

bool
vs_guardian_stop(VsGuardian *g, bool all_thawed)
{
    int status = 0;
    bool confirmed = all_thawed;

    if (!g)
        return all_thawed;
    if (g->ctl_fd >= 0) {
        /* Without "thawed", end of file makes the guardian thaw once more, now. */
        if (all_thawed)
            (void)!write(g->ctl_fd, "thawed\n", 7);
        close(g->ctl_fd);
    }
    if (g->out_fd >= 0)
        close(g->out_fd);
    if (all_thawed) {
        while (waitpid(g->pid, &status, 0) < 0 && errno == EINTR)
            ;
    } else {
        /* Its first round (a thaw and a status query per guest that answers)
         * fits in this; a guest that stays silent is left to it, and to the
         * journal, rather than holding the backup up too. */
        gint64 until = g_get_monotonic_time() + ((gint64)g->agent_timeout + 3) * G_USEC_PER_SEC;
        pid_t r;

        while ((r = waitpid(g->pid, &status, WNOHANG)) == 0 && g_get_monotonic_time() < until)
            g_usleep(50 * 1000);
        confirmed = r == g->pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    g_spawn_close_pid(g->pid);
    g_strfreev(g->uuids);
    g_free(g->uri);
    g_free(g);
    return confirmed;
}

void
vs_guardian_log(const char *state_dir, const char *id, const char *fmt, ...)
{
    g_autofree char *path = g_build_filename(state_dir, "guardian.log", NULL);
    g_autofree char *msg = NULL;
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_autofree char *ts = g_date_time_format_iso8601(now);
    va_list ap;
    FILE *f;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    fprintf(stderr, "virtsnap guardian: %s\n", msg);
    if ((f = fopen(path, "a"))) {
        fprintf(f, "%s %s %s\n", ts, id, msg);
        fclose(f);
    }
}

/* One try at DOM: thaw, then ask. True when the guest says it is thawed;
 * otherwise *WHY says what stands in the way. */
static bool
thaw_one(virDomainPtr dom, int agent_timeout, char **why)
{
    g_autoptr(GError) err = NULL;

    if (vs_agent_thaw_confirmed(dom, agent_timeout, &err))
        return true;
    *why = g_strdup(err->message);
    return false;
}

/* Looks domain UUID up on *CONN for a try of thaw_all: NULL when it is gone
 * (*GONE; a live connection said so) or when the lookup failed (logged). */
static virDomainPtr
lookup_for_thaw(const VsThawPlan *p, virConnectPtr conn, const char *uuid, int attempt, bool *gone)
{
    const VsControlOps *c = vs_control();
    g_autoptr(GError) err = NULL;
    virDomainPtr dom = c->domain_lookup_uuid(conn, uuid, &err);

    *gone = false;
    if (dom)
        return dom;
    if (g_error_matches(err, VS_ERROR, VS_ERROR_NOT_FOUND) && c->conn_alive(conn) == 1) {
        vs_guardian_log(p->state_dir, p->id, "domain %s no longer exists", uuid);
        *gone = true;
    } else {
        vs_guardian_log(p->state_dir, p->id, "try %d: domain %s: %s", attempt, uuid, err->message);
    }
    return NULL;
}

int
vs_guardian_thaw_all(virConnectPtr *conn, const VsThawPlan *p, char **uuids, int n)
{
    const VsControlOps *c = vs_control();
    g_autoptr(GPtrArray) pending = g_ptr_array_new();
    gint64 until = g_get_monotonic_time() + (gint64)p->persist_s * G_USEC_PER_SEC;
    gulong pause_ms = p->first_pause_ms;

    for (int i = 0; i < n; i++)
        g_ptr_array_add(pending, uuids[i]);
    for (int attempt = 1;; attempt++) {
        if (!*conn || c->conn_alive(*conn) != 1) {
            g_autoptr(GError) err = NULL;

            vs_conn_close(*conn);
            if (!(*conn = vs_conn_open(p->uri, &err)))
                vs_guardian_log(p->state_dir, p->id, "try %d: %s", attempt, err->message);
        }
        for (guint i = 0; *conn && i < pending->len;) {
            bool gone;
            virDomainPtr dom = lookup_for_thaw(p, *conn, pending->pdata[i], attempt, &gone);
            g_autofree char *why = NULL;

            if (!dom) {
                if (gone)
                    g_ptr_array_remove_index(pending, i);
                else
                    i++;
                continue;
            }
            if (c->domain_is_active(dom) == 0) {
                vs_guardian_log(p->state_dir, p->id, "domain '%s' no longer runs", c->domain_name(dom));
                g_ptr_array_remove_index(pending, i);
            } else if (thaw_one(dom, p->agent_timeout, &why)) {
                vs_guardian_log(p->state_dir, p->id, "thawed domain '%s' (it says thawed)",
                             c->domain_name(dom));
                g_ptr_array_remove_index(pending, i);
            } else {
                vs_guardian_log(p->state_dir, p->id, "try %d: domain '%s' is not thawed yet: %s",
                             attempt, c->domain_name(dom), why);
                i++;
            }
            c->domain_free(dom);
        }
        if (pending->len == 0)
            return 0;
        if (attempt == 1 && p->detach) {
            /* From here on it may outlive the backup: a pipe the backup's caller
             * reads (a shell's $(...), a test runner) must not wait for it. Its
             * log file goes on saying what it does. */
            int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

            if (null >= 0) {
                dup2(null, STDERR_FILENO);
                close(null);
            }
        }
        if (g_get_monotonic_time() + (gint64)pause_ms * 1000 > until) {
            vs_guardian_log(p->state_dir, p->id, "gave up after %d tries: %u domain(s) may still be "
                         "frozen; `virtsnap recover` thaws them", attempt, pending->len);
            return 1;
        }
        g_usleep(pause_ms * 1000);
        pause_ms = MIN(pause_ms * 2, (gulong)p->max_pause_ms);
    }
}

/* argv: guardian URI DEADLINE_MS AGENT_TIMEOUT STATE_DIR ID UUID... */
int
vs_guardian_main(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    virConnectPtr conn;
    int deadline_ms, agent_timeout, rc = 0;
    const char *state_dir, *id;
    gint64 until;
    char buf[16] = "";
    size_t got = 0;
    bool told_thawed = false;

    if (argc < 7) {
        fprintf(stderr, "virtsnap guardian: internal command, started by virtsnap backup\n");
        return 2;
    }
    deadline_ms = atoi(argv[2]);
    agent_timeout = atoi(argv[3]);
    state_dir = argv[4];
    id = argv[5];
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);

    if (!(conn = vs_conn_open(argv[1], &err))) {
        fprintf(stderr, "virtsnap guardian: %s\n", err->message);
        return 1;
    }
    /* Tests: a guardian that dies before it is armed. */
    vs_fault_point("guardian-before-ready");
    if (write(STDOUT_FILENO, "ready\n", 6) != 6)
        return 1;
    close(STDOUT_FILENO);

    /* Until "freeze", nothing of this backup is frozen: no deadline, and end
     * of file (the backup ended or died before freezing) needs no thaw. */
    while (!strstr(buf, "freeze\n")) {
        ssize_t r = got < sizeof buf - 1 ? read(STDIN_FILENO, buf + got, sizeof buf - 1 - got) : 0;

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            vs_conn_close(conn);
            return 0;
        }
        got += r;
    }
    /* What followed "freeze" in the same read stays in BUF. */
    {
        char *rest = strstr(buf, "freeze\n") + 7;

        got = strlen(rest);
        memmove(buf, rest, got + 1);
    }
    until = g_get_monotonic_time() + (gint64)deadline_ms * 1000;
    told_thawed = strstr(buf, "thawed\n") != NULL;

    while (!told_thawed) {
        gint64 left = until - g_get_monotonic_time();
        struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
        ssize_t r;

        if (left <= 0)
            break;
        if (poll(&pfd, 1, (int)(left / 1000) + 1) <= 0)
            continue;
        r = read(STDIN_FILENO, buf + got, sizeof buf - 1 - got);
        if (r <= 0)
            break;   /* the backup process is gone */
        got += r;
        told_thawed = strstr(buf, "thawed\n") != NULL;
    }
    if (told_thawed) {
        vs_conn_close(conn);
        return 0;
    }
    vs_guardian_log(state_dir, id, "%s: thawing %d domain(s)",
                 g_get_monotonic_time() >= until ? "freeze bound reached"
                 : "backup process ended, or could not thaw them all", argc - 6);
    {
        VsThawPlan plan = { .uri = argv[1], .state_dir = state_dir, .id = id,
                            .agent_timeout = agent_timeout, .first_pause_ms = 500,
                            .max_pause_ms = 30000, .persist_s = PERSIST_S, .detach = true };

        rc = vs_guardian_thaw_all(&conn, &plan, argv + 6, argc - 6);
    }
    vs_conn_close(conn);
    return rc;
}
