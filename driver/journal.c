/* The crash-recovery journal and per-domain locks. A backup writes what it is
 * about to do (freeze this domain, put that overlay on this disk, commit it;
 * the records are journal-records.h's) to STATE/journal/<id>.jsonl and fsyncs
 * it before doing it, so that after a crash,
 * a kill -9 or a power cut `virtsnap recover` knows exactly which guests may be
 * frozen and which overlays are virtsnap's to commit back; it never touches an
 * overlay it did not create. Export and restore journal the temp images they
 * build (tempfile.c), for recover to remove after a kill -9. The writer's
 * exclusive flock on its journal tells a live run from a dead one, and
 * per-domain locks keep two runs off one domain:
 * host-wide ones in /run/lock/virtsnap, whatever the state directory, each file
 * naming its holder for whoever has to wait. */
#include "config.h"
#include "driver-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct _VsJournal {
    int fd;
    char *path;
};

int64_t
vs_now_ms(void)
{
    return g_get_monotonic_time() / 1000;
}

const char *
vs_state_dir(const char *state_dir)
{
    const char *env;
    g_autofree char *abs = NULL;

    if (!(state_dir && *state_dir)) {
        env = g_getenv("VIRTSNAP_STATE_DIR");
        state_dir = env && *env ? env : VIRTSNAP_STATE_DIR;
    }
    if (g_path_is_absolute(state_dir))
        return state_dir;
    /* Relative to where virtsnap was started: libvirt, QEMU, the guardian
     * and a later recover, each with a working directory of its own, are
     * handed paths under it. Interned: a handful of bytes for the process. */
    abs = g_canonicalize_filename(state_dir, NULL);
    return g_intern_string(abs);
}

static bool
fsync_dir(const char *dir, GError **error)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0 || fsync(fd) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "journal: cannot sync %s: %s", dir, g_strerror(e));
        return false;
    }
    close(fd);
    return true;
}

bool
vs_make_dir(const char *dir, int mode, GError **error)
{
    if (g_mkdir_with_parents(dir, mode) < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO,
                    "state: cannot create %s: %s (set --state-dir to a writable directory)",
                    dir, g_strerror(errno));
        return false;
    }
    return true;
}

VsJournal *
vs_journal_create(const char *state_dir, const char *id, GError **error)
{
    g_autofree char *dir = g_build_filename(vs_state_dir(state_dir), "journal", NULL);
    g_autofree char *name = g_strconcat(id, ".jsonl", NULL);
    VsJournal *j;
    int fd;

    if (!vs_make_dir(dir, 0700, error))
        return NULL;
    j = g_new0(VsJournal, 1);
    j->path = g_build_filename(dir, name, NULL);
    fd = open(j->path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "journal: cannot create %s: %s", j->path,
                    g_strerror(errno));
        g_free(j->path);
        g_free(j);
        return NULL;
    }
    j->fd = fd;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0 || !fsync_dir(dir, error)) {
        if (error && !*error)
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "journal: cannot lock %s: %s", j->path,
                        g_strerror(errno));
        close(fd);
        unlink(j->path);
        g_free(j->path);
        g_free(j);
        return NULL;
    }
    return j;
}

VsJournal *
vs_journal_adopt(int fd, const char *path)
{
    VsJournal *j = g_new0(VsJournal, 1);

    j->fd = fd;
    j->path = g_strdup(path);
    return j;
}

int
vs_journal_fd(const VsJournal *j)
{
    return j->fd;
}

void
vs_journal_close(VsJournal *j)
{
    if (!j)
        return;
    close(j->fd);
    g_free(j->path);
    g_free(j);
}

const char *
vs_journal_path(const VsJournal *j)
{
    return j->path;
}

bool
vs_journal_write_line(VsJournal *j, const char *text, GError **error)
{
    g_autofree char *line = g_strconcat(text, "\n", NULL);
    size_t len = strlen(line), off = 0;

    while (off < len) {
        ssize_t w = write(j->fd, line + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "journal: writing %s: %s", j->path,
                        g_strerror(errno));
            return false;
        }
        off += w;
    }
    if (fdatasync(j->fd) < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "journal: syncing %s: %s", j->path, g_strerror(errno));
        return false;
    }
    return true;
}

void
vs_journal_finish(VsJournal *j)
{
    if (!j)
        return;
    unlink(j->path);
    close(j->fd);
    g_free(j->path);
    g_free(j);
}

static int
compare_paths(gconstpointer a, gconstpointer b)
{
    return g_strcmp0(*(char *const *)a, *(char *const *)b);
}

char **
vs_journal_list(const char *state_dir)
{
    g_autofree char *dir = g_build_filename(vs_state_dir(state_dir), "journal", NULL);
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    GPtrArray *out = g_ptr_array_new();
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        if (g_str_has_suffix(name, ".jsonl"))
            g_ptr_array_add(out, g_build_filename(dir, name, NULL));
    }
    g_ptr_array_sort(out, compare_paths);
    g_ptr_array_add(out, NULL);
    return (char **)g_ptr_array_free(out, FALSE);
}

GPtrArray *
vs_journal_read(const char *path, bool try_lock, int *lock_fd, GError **error)
{
    g_autofree char *text = NULL;
    GPtrArray *out;
    int fd = -1;

    if (try_lock) {
        fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "journal: cannot open %s: %s", path,
                        g_strerror(errno));
            return NULL;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
            close(fd);
            g_set_error(error, VS_ERROR, VS_ERROR_FAILED,
                        "journal: %s belongs to a run still in progress", path);
            return NULL;
        }
    }
    if (!g_file_get_contents(path, &text, NULL, NULL)) {
        if (fd >= 0)
            close(fd);
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "journal: cannot read %s", path);
        return NULL;
    }
    out = vs_journal_parse(text);
    if (lock_fd)
        *lock_fd = fd;
    else if (fd >= 0)
        close(fd);
    return out;
}

/* The directory of the per-domain locks: one for the whole host, whatever the
 * state directory, so that two runs with different --state-dir (two schedulers,
 * say) still keep off each other's domains. */
const char *
vs_lock_dir(void)
{
    const char *env = g_getenv("VIRTSNAP_LOCK_DIR");

    return env && *env ? env : "/run/lock/virtsnap";
}

/* The UUID becomes a file name: nothing but the canonical form gets that far. */
bool
vs_uuid_valid(const char *uuid)
{
    if (!uuid || strlen(uuid) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? uuid[i] != '-' : !g_ascii_isxdigit(uuid[i]))
            return false;
    }
    return true;
}

/* At most MAX bytes of TEXT, anything but printable ASCII as '?': the lock file
 * may have been written by anyone able to, and what it says ends up on a terminal. */
char *
vs_printable(const char *text, size_t max)
{
    GString *out = g_string_new(NULL);

    for (size_t i = 0; i < max && text[i]; i++)
        g_string_append_c(out, g_ascii_isprint(text[i]) ? text[i] : '?');
    return g_string_free(out, FALSE);
}

/* Owned by root or by us, or someone else could hold or rewrite our locks. */
static bool
owner_ok(const struct stat *st)
{
    return st->st_uid == 0 || st->st_uid == geteuid();
}

static int
open_lock_dir(const char *dir, GError **error)
{
    struct stat st;
    int fd;

    /* lstat for a clear message; O_NOFOLLOW and fstat for what is really opened. */
    if (lstat(dir, &st) == 0 && S_ISLNK(st.st_mode)) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO,
                    "lock: %s is a symbolic link: remove it (virtsnap creates the directory itself)", dir);
        return -1;
    }
    if (g_mkdir_with_parents(dir, 0700) < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO,
                    "lock: cannot create %s: %s (run as root, or set $VIRTSNAP_LOCK_DIR to a "
                    "directory of your own)", dir, g_strerror(errno));
        return -1;
    }
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "lock: cannot open %s: %s", dir, g_strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) < 0 || !owner_ok(&st)) {
        close(fd);
        g_set_error(error, VS_ERROR, VS_ERROR_IO,
                    "lock: %s is not owned by root or by uid %u: remove it, or set "
                    "$VIRTSNAP_LOCK_DIR to a directory of your own", dir, (unsigned)geteuid());
        return -1;
    }
    return fd;
}

/* Field 22 of /proc/PID/stat, the process's start in clock ticks since boot:
 * with the pid, it tells a process from a later one given the same pid. NULL
 * when there is no such process. */
char *
vs_process_start(int pid)
{
    g_autofree char *text = NULL;
    g_autofree char *file = g_strdup_printf("/proc/%d/stat", pid);
    g_auto(GStrv) fields = NULL;
    const char *rest;

    /* The command name (field 2) may hold spaces and parentheses: count from
     * the last ')'. */
    if (pid > 0 && g_file_get_contents(file, &text, NULL, NULL) &&
        (rest = strrchr(text, ')')) && (fields = g_strsplit(rest + 2, " ", 21)) &&
        g_strv_length(fields) > 19)
        return g_strdup(fields[19]);
    return NULL;
}

static char *
process_start(void)
{
    char *start = vs_process_start((int)getpid());

    return start ? start : g_strdup_printf("unix %" G_GINT64_FORMAT, g_get_real_time() / G_USEC_PER_SEC);
}

/* Who holds the lock, for the one who waits for it: key=value lines. */
bool
vs_holder_file_write(int fd, const char *path, const char *state_dir, const char *command, GError **error)
{
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_autofree char *since = g_date_time_format(now, "%Y-%m-%dT%H:%M:%SZ");
    g_autofree char *start = process_start();
    g_autofree char *text = g_strdup_printf("pid=%d\nstart=%s\nstate_dir=%s\ncommand=%s\ntime=%s\n",
                                            (int)getpid(), start, vs_state_dir(state_dir),
                                            command, since);
    size_t len = strlen(text), off = 0;

    if (ftruncate(fd, 0) < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "lock: writing %s: %s", path, g_strerror(errno));
        return false;
    }
    while (off < len) {
        ssize_t w = pwrite(fd, text + off, len - off, off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "lock: writing %s: %s", path, g_strerror(errno));
            return false;
        }
        off += w;
    }
    return true;
}

void
vs_lock_holder_free(VsLockHolder *h)
{
    if (!h)
        return;
    g_free(h->pid_text);
    g_free(h->start);
    g_free(h->state_dir);
    g_free(h->command);
    g_free(h->since);
    g_free(h);
}

/* The holder's key=value lines from FD, bounded (the file is untrusted) and
 * printable; pid 0 if the holder is between its truncate and its write. */
static VsLockHolder *
read_holder(int fd)
{
    VsLockHolder *h = g_new0(VsLockHolder, 1);
    char buf[513];
    ssize_t n;
    g_auto(GStrv) lines = NULL;

    do
        n = pread(fd, buf, sizeof buf - 1, 0);
    while (n < 0 && errno == EINTR);
    buf[MAX(n, 0)] = '\0';
    lines = g_strsplit(buf, "\n", -1);
    for (size_t i = 0; lines[i]; i++) {
        char *eq = strchr(lines[i], '=');
        char **slot = NULL;

        if (!eq)
            continue;
        *eq = '\0';
        if (strcmp(lines[i], "pid") == 0)
            slot = &h->pid_text;
        else if (strcmp(lines[i], "start") == 0)
            slot = &h->start;
        else if (strcmp(lines[i], "state_dir") == 0)
            slot = &h->state_dir;
        else if (strcmp(lines[i], "command") == 0)
            slot = &h->command;
        else if (strcmp(lines[i], "time") == 0)
            slot = &h->since;
        if (slot && !*slot)
            *slot = vs_printable(eq + 1, 256);
    }
    /* Only a pid written whole, digits alone, is one to look at. */
    if (h->pid_text && *h->pid_text && strspn(h->pid_text, "0123456789") == strlen(h->pid_text) &&
        strlen(h->pid_text) < 10)
        h->pid = atoi(h->pid_text);
    return h;
}

char *
vs_lock_holder_describe(const VsLockHolder *h)
{
    if (!h || !h->pid_text)
        return g_strdup("a run that has not written its name yet");
    return g_strdup_printf("virtsnap %s, pid %s (start %s), state dir %s, since %s",
                           h->command ? h->command : "?", h->pid_text, h->start ? h->start : "?",
                           h->state_dir ? h->state_dir : "?", h->since ? h->since : "?");
}

/* "virtsnap backup, pid 123 (start 456), state dir /x, since T", from the
 * holder's file. */
static char *
describe_holder(int fd)
{
    g_autoptr(VsLockHolder) h = read_holder(fd);

    return vs_lock_holder_describe(h);
}

VsLockHolder *
vs_holder_file_read(const char *path, GError **error)
{
    int fd;
    struct stat st;
    VsLockHolder *h;

    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return NULL;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || !owner_ok(&st)) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "lock: cannot read %s: %s", path,
                    fd < 0 ? g_strerror(errno) : "not a file owned by root or by us");
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    /* Not probed with flock: a shared lock taken here, however briefly, would
     * turn away a run that takes the lock with no wait at that moment. An
     * unlock empties the file; a holder killed with -9 left its name, but its
     * process is gone (or the pid is another process's, started later). */
    h = read_holder(fd);
    close(fd);
    if (h->pid > 0) {
        g_autofree char *now = vs_process_start(h->pid);

        if (now && !g_strcmp0(now, h->start))
            return h;
    }
    vs_lock_holder_free(h);
    return NULL;
}

VsLockHolder *
vs_domain_lock_holder(const char *uuid, GError **error)
{
    g_autofree char *file = NULL, *path = NULL;

    if (!vs_uuid_valid(uuid)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "lock: '%s' is not a UUID", uuid ? uuid : "");
        return NULL;
    }
    file = g_strconcat(uuid, ".lock", NULL);
    path = g_build_filename(vs_lock_dir(), file, NULL);
    return vs_holder_file_read(path, error);
}

int
vs_domain_lock(const char *state_dir, const char *uuid, const char *name, const char *command,
               int wait_s, GError **error)
{
    const char *dir = vs_lock_dir();
    g_autofree char *file = NULL;
    g_autofree char *path = NULL;
    gint64 deadline = g_get_monotonic_time() + (gint64)MAX(wait_s, 0) * G_USEC_PER_SEC;
    struct stat st;
    int dfd, fd;

    if (!vs_uuid_valid(uuid)) {
        g_autofree char *shown = vs_printable(uuid ? uuid : "", 64);
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "lock: domain '%s': '%s' is not a UUID (36 hex digits and dashes)", name, shown);
        return -1;
    }
    file = g_strconcat(uuid, ".lock", NULL);
    path = g_build_filename(dir, file, NULL);
    if ((dfd = open_lock_dir(dir, error)) < 0)
        return -1;
    fd = openat(dfd, file, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    close(dfd);
    if (fd < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "lock: cannot open %s: %s", path, g_strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || !owner_ok(&st)) {
        close(fd);
        g_set_error(error, VS_ERROR, VS_ERROR_IO,
                    "lock: %s is not a file owned by root or by uid %u: remove it", path,
                    (unsigned)geteuid());
        return -1;
    }
    /* Polled rather than a blocking flock: the wait is bounded, and a run
     * that gives up must be able to say who held the lock. */
    while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;

        if (e == EINTR)
            continue;
        if (e != EWOULDBLOCK) {
            close(fd);
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "lock: cannot lock %s: %s", path, g_strerror(e));
            return -1;
        }
        if (g_get_monotonic_time() >= deadline) {
            g_autofree char *holder = describe_holder(fd);

            close(fd);
            if (wait_s > 0)
                g_set_error(error, VS_ERROR, VS_ERROR_BUSY,
                            "lock: domain '%s' is still in use by another run after %d s: %s "
                            "(lock %s); wait for it, or give a longer --lock-wait",
                            name, wait_s, holder, path);
            else
                g_set_error(error, VS_ERROR, VS_ERROR_BUSY,
                            "lock: domain '%s' is in use by another run: %s (lock %s); wait for "
                            "it, or give --lock-wait SECONDS", name, holder, path);
            return -1;
        }
        g_usleep(150 * 1000);
    }
    if (!vs_holder_file_write(fd, path, state_dir, command, error)) {
        close(fd);
        return -1;
    }
    return fd;
}

void
vs_domain_unlock(int fd)
{
    if (fd < 0)
        return;
    /* The file stays (removing it would race with the next one to open it);
     * emptied, it names no holder that is gone. */
    (void)!ftruncate(fd, 0);
    close(fd);
}
