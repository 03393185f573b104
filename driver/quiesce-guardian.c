/* The quiesce guardian (`virtsnap quiesce-guardian URI STATE_DIR TOKEN`, with
 * the quiesce's journal as descriptor 3): a process in its own session that
 * makes sure the guests of one token do not stay frozen or paused past its
 * deadline, whatever happens to the quiesce, its caller or unquiesce. It
 * opens its own connection and takes every guest's per-domain lock (held
 * while the token holds, naming the token to a backup or restore that wants
 * one), says "ready" (or "error MESSAGE"), and starts the deadline at
 * "freeze". Until "held" it is the quiesce's backstop, as the backup's
 * guardian is: end of file or the deadline and it thaws, resumes and removes
 * the token; "thawed" and it leaves. Held, it outlives the quiesce and waits
 * for the token to say "unquiesced" or for the deadline, when it takes over:
 * it thaws (persistently, as the backup's guardian does), resumes what was
 * paused, and marks the token guardian-thawed for unquiesce to report. The
 * journal it holds tells recover it is alive; it is removed when the token
 * is settled. */
#include "config.h"
#include "quiesce-internal.h"
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define PERSIST_S (24 * 3600)

typedef struct {
    const char *uri, *state_dir, *token;
    char *log_id;
    virConnectPtr conn;
    VsJournal *journal;
    GArray *locks;            /* int: the per-domain locks' fds */
    int max_freeze_ms, agent_timeout;
    char buf[64];             /* what the quiesce said, not yet heard */
    size_t got;
    VsQuiesceToken *last;     /* the token as last read */
    bool unreadable_logged;
} Guard;

/* "error MESSAGE" on the pipe the quiesce waits on, and out. */
static int
refuse(const char *message)
{
    g_autofree char *line = g_strdup_printf("error %s\n", message);

    (void)!write(STDOUT_FILENO, line, strlen(line));
    return 1;
}

static bool
take_locks(Guard *gd, const VsQuiesceToken *t, GError **error)
{
    g_autofree char *command = g_strdup_printf("quiesce (token %s)", t->token);

    for (guint i = 0; i < t->domains->len; i++) {
        const VsQuiesceDomain *d = t->domains->pdata[i];
        int fd = vs_domain_lock(gd->state_dir, d->uuid, d->name, command, 0, error);

        if (fd < 0)
            return false;
        g_array_append_val(gd->locks, fd);
    }
    return true;
}

/* The token as its file says now, kept as GD->last; NULL when it cannot be
 * read (GD->last, the last good reading, then stands: a token gone or
 * damaged does not keep the guardian from thawing). */
static VsQuiesceToken *
refresh(Guard *gd)
{
    g_autoptr(GError) err = NULL;
    VsQuiesceToken *t = vs_quiesce_token_read(gd->state_dir, gd->token, &err);

    if (!t) {
        if (!gd->unreadable_logged)
            vs_guardian_log(gd->state_dir, gd->log_id, "%s (holding to the deadline)", err->message);
        gd->unreadable_logged = true;
        return NULL;
    }
    vs_quiesce_token_free(gd->last);
    gd->last = t;
    return t;
}

/* Thaws the frozen guests of T (until each says so, as the backup's guardian
 * does) and resumes the paused ones. */
static void
settle_guests(Guard *gd, const VsQuiesceToken *t)
{
    const VsControlOps *c = vs_control();
    g_autoptr(GPtrArray) frozen = g_ptr_array_new();
    VsThawPlan plan = { .uri = gd->uri, .state_dir = gd->state_dir, .id = gd->log_id,
                        .agent_timeout = gd->agent_timeout, .first_pause_ms = 500,
                        .max_pause_ms = 30000, .persist_s = PERSIST_S, .detach = false };

    /* libvirtd may have restarted while it held. */
    if (!gd->conn || c->conn_alive(gd->conn) != 1) {
        g_autoptr(GError) err = NULL;

        vs_conn_close(gd->conn);
        if (!(gd->conn = vs_conn_open(gd->uri, &err)))
            vs_guardian_log(gd->state_dir, gd->log_id, "%s", err->message);
    }
    for (guint i = 0; i < t->domains->len; i++) {
        VsQuiesceDomain *d = t->domains->pdata[i];
        g_autoptr(GError) err = NULL;
        virDomainPtr dom;
        bool resumed = false;

        /* A guest the quiesce tried and failed to freeze is not held. */
        if (!d->suspended && (d->frozen || d->freeze_started_at < 0)) {
            g_ptr_array_add(frozen, d->uuid);
            continue;
        }
        if (!d->suspended)
            continue;
        if (!gd->conn || !(dom = c->domain_lookup_uuid(gd->conn, d->uuid, &err))) {
            vs_guardian_log(gd->state_dir, gd->log_id, "cannot resume domain '%s': %s", d->name,
                            err ? err->message : "no connection");
            continue;
        }
        if (vs_quiesce_resume(dom, 3, &resumed, &err))
            vs_guardian_log(gd->state_dir, gd->log_id, "%s domain '%s'",
                            resumed ? "resumed" : "did not need to resume", d->name);
        else
            vs_guardian_log(gd->state_dir, gd->log_id, "%s", err->message);
        c->domain_free(dom);
    }
    if (frozen->len > 0)
        (void)vs_guardian_thaw_all(&gd->conn, &plan, (char **)frozen->pdata, frozen->len);
}

/* The journal's freezes settled: it goes, and with it the token's liveness. */
static void
finish(Guard *gd)
{
    vs_journal_finish(g_steal_pointer(&gd->journal));
    for (guint i = 0; i < gd->locks->len; i++)
        vs_domain_unlock(g_array_index(gd->locks, int, i));
    g_array_set_size(gd->locks, 0);
}

/* The deadline (or the quiesce's end before it held): the guardian thaws,
 * whatever the registry says or fails to say. A token that was held stays,
 * marked guardian-thawed, for unquiesce to report; one that never was (the
 * quiesce failed or died while freezing) goes. */
static void
take_over(Guard *gd, const char *why)
{
    g_autoptr(GError) err = NULL;
    int lock = vs_quiesce_lock(gd->state_dir, &err);
    VsQuiesceToken *t = refresh(gd);
    bool held;

    if (lock < 0)
        vs_guardian_log(gd->state_dir, gd->log_id, "%s (thawing all the same)", err->message);
    if (t && t->state == VS_QSTATE_UNQUIESCED) {
        if (lock >= 0)
            close(lock);
        return;
    }
    held = gd->last->state == VS_QSTATE_QUIESCED || gd->last->state == VS_QSTATE_UNQUIESCING;
    if (t && (t->state == VS_QSTATE_QUIESCED || t->state == VS_QSTATE_FREEZING)) {
        t->state = VS_QSTATE_GUARDIAN_THAWING;
        (void)vs_quiesce_token_write(gd->state_dir, t, NULL);
    }
    if (lock >= 0)
        close(lock);
    vs_guardian_log(gd->state_dir, gd->log_id, "%s: thawing %u domain(s)", why, gd->last->domains->len);
    settle_guests(gd, gd->last);
    lock = vs_quiesce_lock(gd->state_dir, NULL);
    if ((t = refresh(gd)) && t->state == VS_QSTATE_GUARDIAN_THAWING) {
        if (held) {
            t->state = VS_QSTATE_GUARDIAN_THAWED;
            t->guardian_thawed = true;
            t->guardian_thawed_at = g_get_real_time() / 1000;
            (void)vs_quiesce_token_write(gd->state_dir, t, NULL);
        } else {
            vs_quiesce_token_remove(gd->state_dir, gd->token);
        }
    }
    if (lock >= 0)
        close(lock);
}

typedef enum { SAID_FREEZE, SAID_HELD, SAID_THAWED, SAID_EOF, SAID_TIMEOUT } Said;

/* The next line the quiesce says ("freeze", "held", "thawed"), or end of
 * file, or UNTIL (monotonic µs; 0: none) passing first. */
static Said
hear(Guard *gd, gint64 until)
{
    static const char *const words[] = { "freeze", "held", "thawed" };

    for (;;) {
        struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
        char *nl = memchr(gd->buf, '\n', gd->got);
        int wait = -1;
        ssize_t r;

        if (nl) {
            size_t len = nl - gd->buf;
            Said said = SAID_EOF;

            for (size_t i = 0; i < G_N_ELEMENTS(words); i++)
                if (len == strlen(words[i]) && memcmp(gd->buf, words[i], len) == 0)
                    said = (Said)i;
            memmove(gd->buf, nl + 1, gd->got - len - 1);
            gd->got -= len + 1;
            if (said != SAID_EOF)
                return said;
            continue;   /* a line of nothing it knows */
        }
        if (gd->got == sizeof gd->buf)
            gd->got = 0;
        if (until) {
            gint64 left = until - g_get_monotonic_time();
            if (left <= 0)
                return SAID_TIMEOUT;
            wait = (int)(left / 1000) + 1;
        }
        if (poll(&pfd, 1, wait) <= 0)
            continue;
        r = read(STDIN_FILENO, gd->buf + gd->got, sizeof gd->buf - gd->got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return SAID_EOF;
        gd->got += r;
    }
}

/* Held: until the token says unquiesced, or the deadline. */
static void
hold(Guard *gd, gint64 until)
{
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);

    /* Past the quiesce from here on: nothing of its caller's stays open. */
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDERR_FILENO);
        close(null);
    }
    while (g_get_monotonic_time() < until) {
        const VsQuiesceToken *t = refresh(gd);

        if (t && (t->state == VS_QSTATE_UNQUIESCED || t->state == VS_QSTATE_GUARDIAN_THAWED))
            return;
        g_usleep(100 * 1000);
    }
    take_over(gd, "freeze bound reached");
}

/* After "freeze": the quiesce says "held", "thawed" (it undid everything
 * itself), or ends or runs out of time (the guardian undoes it). */
static void
guard(Guard *gd)
{
    const VsQuiesceToken *t;
    gint64 until;
    Said said;

    if (hear(gd, 0) != SAID_FREEZE)
        return;   /* nothing was frozen */
    until = g_get_monotonic_time() + (gint64)gd->max_freeze_ms * 1000;
    said = hear(gd, until);
    if (said == SAID_HELD) {
        hold(gd, until);
        return;
    }
    if (said == SAID_THAWED)
        return;
    /* A token the quiesce marked quiesced before it went is held all the same. */
    t = refresh(gd);
    if (said == SAID_EOF && t && t->state == VS_QSTATE_QUIESCED) {
        hold(gd, until);
        return;
    }
    take_over(gd, said == SAID_TIMEOUT ? "freeze bound reached before the quiesce held"
                                       : "the quiesce ended before it held");
}

int
vs_quiesce_guardian_main(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *journal_path = NULL, *jname = NULL;
    Guard gd = { 0 };

    if (argc != 4) {
        fprintf(stderr, "virtsnap quiesce-guardian: internal command, started by virtsnap quiesce\n");
        return 2;
    }
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    /* It may outlive the mount the quiesce was started from; its paths are absolute. */
    (void)!chdir("/");
    gd.uri = argv[1];
    gd.state_dir = argv[2];
    gd.token = argv[3];
    gd.locks = g_array_new(FALSE, FALSE, sizeof(int));
    if (!vs_quiesce_token_valid(gd.token) || fcntl(3, F_GETFD) < 0)
        return refuse("quiesce-guardian: started without a token or its journal");
    gd.log_id = vs_quiesce_journal_id(gd.token);
    jname = g_strconcat(gd.log_id, ".jsonl", NULL);
    journal_path = g_build_filename(vs_state_dir(gd.state_dir), "journal", jname, NULL);
    fcntl(3, F_SETFD, FD_CLOEXEC);
    gd.journal = vs_journal_adopt(3, journal_path);
    if (!(gd.last = vs_quiesce_token_read(gd.state_dir, gd.token, &err)))
        return refuse(err->message);
    gd.max_freeze_ms = gd.last->max_freeze_ms;
    gd.agent_timeout = gd.last->agent_timeout;
    if (!(gd.conn = vs_conn_open(gd.uri, &err)) || !take_locks(&gd, gd.last, &err)) {
        finish(&gd);
        vs_conn_close(gd.conn);
        return refuse(err->message);
    }
    if (write(STDOUT_FILENO, "ready\n", 6) != 6) {
        finish(&gd);
        return 1;
    }
    close(STDOUT_FILENO);
    guard(&gd);
    if (gd.journal)
        finish(&gd);
    g_array_unref(gd.locks);
    vs_quiesce_token_free(gd.last);
    g_free(gd.log_id);
    vs_conn_close(gd.conn);
    return 0;
}
