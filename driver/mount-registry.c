/* The registry of mounts: RUN/mounts/ID.json for each nbdkit that serves a
 * disk of a backup (mount.c starts and stops them), beside its ID.pid, ID.log
 * and, by default, ID.sock. Each entry has nbdkit's pid with the start time of
 * that process (/proc/PID/stat), so that a pid reused by another process is
 * never taken for nbdkit, and, for restore --instant, what recover needs to
 * finish it (instant.c). */
#include "config.h"
#include "driver-internal.h"
#include "mount-internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

char *
vs_mounts_dir(void)
{
    return g_build_filename(vs_run_dir(), "mounts", NULL);
}

char *
vs_mount_file(const char *id, const char *ext)
{
    g_autofree char *dir = vs_mounts_dir();
    g_autofree char *base = g_strconcat(id, ext, NULL);

    return g_build_filename(dir, base, NULL);
}

void
vs_mount_free(VsMount *m)
{
    if (!m)
        return;
    g_free(m->id); g_free(m->uri); g_free(m->socket); g_free(m->repo); g_free(m->backup_id);
    g_free(m->domain); g_free(m->disk); g_free(m->log);
    g_free(m->instant_dest); g_free(m->instant_tmp);
    g_free(m);
}

/* ------------------------------------------------------------------------- */
/* Processes                                                                  */

/* State letter and start time (clock ticks since boot) of PID. */
bool
vs_mount_proc_stat(int pid, char *state, uint64_t *starttime)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/stat", pid);
    g_autofree char *text = NULL;
    g_auto(GStrv) f = NULL;
    char *p;

    if (pid <= 0 || !g_file_get_contents(path, &text, NULL, NULL) || !(p = strrchr(text, ')')))
        return false;
    f = g_strsplit(p + 1 + (p[1] == ' '), " ", 0);
    if (g_strv_length(f) < 20)
        return false;
    *state = f[0][0];
    *starttime = g_ascii_strtoull(f[19], NULL, 10);
    return true;
}

bool
vs_mount_pid_alive(int pid, uint64_t starttime)
{
    char st = 0;
    uint64_t t = 0;

    if (!vs_mount_proc_stat(pid, &st, &t))
        return false;
    if (st == 'Z' || st == 'X') {
        (void)waitpid(pid, NULL, WNOHANG);    /* our child (restore --instant): reap it */
        return false;
    }
    return starttime == 0 || t == starttime;
}

/* ------------------------------------------------------------------------- */
/* Registry                                                                   */

bool
vs_mount_registry_write(const VsMount *m, GError **error)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    g_autofree char *text = NULL, *path = vs_mount_file(m->id, ".json");
    g_autoptr(GError) lerr = NULL;

    json_builder_begin_object(b);
#define STR(k, v) do { json_builder_set_member_name(b, k); \
        (v) ? json_builder_add_string_value(b, v) : json_builder_add_null_value(b); } while (0)
#define INT(k, v) do { json_builder_set_member_name(b, k); json_builder_add_int_value(b, (gint64)(v)); } while (0)
    STR("id", m->id);
    INT("pid", m->pid);
    INT("starttime", m->starttime);
    STR("uri", m->uri);
    STR("socket", m->socket);
    INT("port", m->port);
    STR("repo", m->repo);
    STR("backup", m->backup_id);
    STR("domain", m->domain);
    STR("disk", m->disk);
    INT("virtual_size", m->virtual_size);
    STR("log", m->log);
    STR("instant_dest", m->instant_dest);
    STR("instant_tmp", m->instant_tmp);
    INT("restore_pid", m->restore_pid);
    INT("instant_copy", m->instant_copy);
    INT("restore_starttime", m->restore_starttime);
#undef STR
#undef INT
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    json_generator_set_pretty(gen, TRUE);
    text = json_generator_to_data(gen, NULL);
    if (!g_file_set_contents(path, text, -1, &lerr)) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "mount: writing %s: %s", path, lerr->message);
        return false;
    }
    return true;
}

static VsMount *
registry_read(const char *path)
{
    g_autoptr(JsonParser) p = json_parser_new();
    JsonNode *root;
    JsonObject *o;
    VsMount *m;

    if (!json_parser_load_from_file(p, path, NULL) || !(root = json_parser_get_root(p)) ||
        !JSON_NODE_HOLDS_OBJECT(root))
        return NULL;
    o = json_node_get_object(root);
#define S(k) g_strdup(json_object_get_string_member_with_default(o, k, NULL))
#define I(k) json_object_get_int_member_with_default(o, k, 0)
    m = g_new0(VsMount, 1);
    m->id = S("id");
    m->pid = (int)I("pid");
    m->starttime = (uint64_t)I("starttime");
    m->uri = S("uri");
    m->socket = S("socket");
    m->port = (int)I("port");
    m->repo = S("repo");
    m->backup_id = S("backup");
    m->domain = S("domain");
    m->disk = S("disk");
    m->virtual_size = (uint64_t)I("virtual_size");
    m->log = S("log");
    m->instant_dest = S("instant_dest");
    m->instant_tmp = S("instant_tmp");
    m->restore_pid = (int)I("restore_pid");
    m->instant_copy = I("instant_copy") != 0;
    m->restore_starttime = (uint64_t)I("restore_starttime");
#undef S
#undef I
    if (!m->id) {
        vs_mount_free(m);
        return NULL;
    }
    m->alive = vs_mount_pid_alive(m->pid, m->starttime);
    return m;
}

void
vs_mount_registry_remove(const VsMount *m)
{
    g_autofree char *json = vs_mount_file(m->id, ".json");
    g_autofree char *pid = vs_mount_file(m->id, ".pid");
    struct stat st;

    if (m->socket && lstat(m->socket, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(m->socket);
    unlink(pid);
    if (m->log)
        unlink(m->log);
    unlink(json);
}

/* Oldest first (the start time of a dead one's pid still orders it). */
static gint
by_start(gconstpointer a, gconstpointer b)
{
    const VsMount *x = *(VsMount *const *)a, *y = *(VsMount *const *)b;

    return x->starttime < y->starttime ? -1 : x->starttime > y->starttime;
}

GPtrArray *
vs_mount_list(GError **error)
{
    g_autofree char *dir = vs_mounts_dir();
    g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func((GDestroyNotify)vs_mount_free);
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) lerr = NULL;
    GDir *d = g_dir_open(dir, 0, &lerr);
    const char *name;

    if (!d) {
        if (g_error_matches(lerr, G_FILE_ERROR, G_FILE_ERROR_NOENT))
            return g_steal_pointer(&out);
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "mount: %s", lerr->message);
        return NULL;
    }
    while ((name = g_dir_read_name(d)))
        if (g_str_has_suffix(name, ".json"))
            g_ptr_array_add(names, g_build_filename(dir, name, NULL));
    g_dir_close(d);
    for (guint i = 0; i < names->len; i++) {
        VsMount *m = registry_read(names->pdata[i]);
        if (m)
            g_ptr_array_add(out, m);
    }
    g_ptr_array_sort(out, by_start);
    return g_steal_pointer(&out);
}

VsMount *
vs_mount_find(const char *what, GError **error)
{
    g_autoptr(GPtrArray) all = vs_mount_list(error);
    g_autofree char *canon = NULL;
    const char *port_s = what;

    if (!all)
        return NULL;
    if (g_str_has_prefix(port_s, "nbd://127.0.0.1:"))
        port_s += strlen("nbd://127.0.0.1:");
    else if (g_str_has_prefix(port_s, "127.0.0.1:"))
        port_s += strlen("127.0.0.1:");
    if (what[0] && !strstr(what, "://"))
        canon = g_canonicalize_filename(what, NULL);
    for (guint i = 0; i < all->len; i++) {
        VsMount *m = all->pdata[i];
        bool hit = !g_strcmp0(m->id, what) || !g_strcmp0(m->uri, what) ||
                   (m->socket && (!g_strcmp0(m->socket, what) || !g_strcmp0(m->socket, canon)));

        if (!hit && m->port > 0) {
            char *end = NULL;
            long p = strtol(port_s, &end, 10);
            hit = *port_s && end && !*end && p == m->port;
        }
        if (hit)
            return g_ptr_array_steal_index(all, i);
    }
    g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND,
                "mount: no mount %s (virtsnap mount --list shows them)", what);
    return NULL;
}
