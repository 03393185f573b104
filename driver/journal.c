/* The crash-recovery journal and per-domain locks. A backup writes what it is
 * about to do (freeze this domain, put that overlay on this disk, commit it) to
 * STATE/journal/<id>.jsonl and fsyncs it before doing it, so that after a crash,
 * a kill -9 or a power cut `virtsnap recover` knows exactly which guests may be
 * frozen and which overlays are virtsnap's to commit back; it never touches an
 * overlay it did not create. The writer's exclusive flock on its journal tells a
 * live run from a dead one, and per-domain locks keep two runs off one domain. */
#include "config.h"
#include "driver-internal.h"

#include <errno.h>
#include <fcntl.h>
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
vs_journal_append(VsJournal *j, GError **error, const char *op, ...)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    g_autofree char *line = NULL;
    g_autofree char *text = NULL;
    const char *key;
    va_list ap;
    size_t len, off = 0;

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "op");
    json_builder_add_string_value(b, op);
    json_builder_set_member_name(b, "time");
    json_builder_add_int_value(b, g_get_real_time());
    va_start(ap, op);
    while ((key = va_arg(ap, const char *))) {
        const char *val = va_arg(ap, const char *);
        json_builder_set_member_name(b, key);
        if (val)
            json_builder_add_string_value(b, val);
        else
            json_builder_add_null_value(b);
    }
    va_end(ap);
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    text = json_generator_to_data(gen, NULL);
    line = g_strconcat(text, "\n", NULL);
    len = strlen(line);
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
    g_auto(GStrv) lines = NULL;
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
                        "journal: %s belongs to a backup still in progress", path);
            return NULL;
        }
    }
    if (!g_file_get_contents(path, &text, NULL, NULL)) {
        if (fd >= 0)
            close(fd);
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "journal: cannot read %s", path);
        return NULL;
    }
    out = g_ptr_array_new_with_free_func((GDestroyNotify)json_object_unref);
    lines = g_strsplit(text, "\n", -1);
    for (size_t i = 0; lines[i]; i++) {
        g_autoptr(JsonParser) p = json_parser_new();
        JsonNode *root;

        if (!*lines[i])
            continue;
        /* A record cut short by a crash is the last one, and was never acted on. */
        if (!json_parser_load_from_data(p, lines[i], -1, NULL))
            continue;
        root = json_parser_get_root(p);
        if (root && JSON_NODE_HOLDS_OBJECT(root))
            g_ptr_array_add(out, json_object_ref(json_node_get_object(root)));
    }
    if (lock_fd)
        *lock_fd = fd;
    else if (fd >= 0)
        close(fd);
    return out;
}

int
vs_domain_lock(const char *state_dir, const char *uuid, const char *name, GError **error)
{
    g_autofree char *dir = g_build_filename(vs_state_dir(state_dir), "locks", NULL);
    g_autofree char *file = g_strconcat(uuid, ".lock", NULL);
    g_autofree char *path = g_build_filename(dir, file, NULL);
    int fd;

    if (!vs_make_dir(dir, 0700, error))
        return -1;
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "lock: cannot open %s: %s", path, g_strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        close(fd);
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED,
                    "domain '%s': another virtsnap run is working on it (lock %s); wait for it "
                    "to finish", name, path);
        return -1;
    }
    return fd;
}

void
vs_domain_unlock(int fd)
{
    if (fd >= 0)
        close(fd);
}
