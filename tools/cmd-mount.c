/* `virtsnap mount` and `virtsnap umount`: a disk of a backup served read-only
 * over NBD (driver/mount.c), listed, and stopped. mount prints the NBD URI on
 * the first line of its output, so that `$(virtsnap mount ... | head -n 1)`
 * is the URI. Exit 0 on success, 1 on failure, 2 on bad usage. */
#include "config.h"
#include "virtsnap.h"
#include "vs-restore.h"

#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>

static JsonNode *
mount_json(const VsMount *m)
{
    g_autoptr(JsonBuilder) b = json_builder_new();

    json_builder_begin_object(b);
    vs_json_add_str(b, "id", m->id);
    vs_json_add_str(b, "uri", m->uri);
    vs_json_add_str(b, "socket", m->socket);
    json_builder_set_member_name(b, "port");
    m->port ? json_builder_add_int_value(b, m->port) : json_builder_add_null_value(b);
    vs_json_add_int(b, "pid", m->pid);
    vs_json_add_bool(b, "alive", m->alive);
    vs_json_add_str(b, "repo", m->repo);
    vs_json_add_str(b, "backup", m->backup_id);
    vs_json_add_str(b, "domain", m->domain);
    vs_json_add_str(b, "disk", m->disk);
    vs_json_add_int(b, "virtual_size", (gint64)m->virtual_size);
    vs_json_add_str(b, "log", m->log);
    json_builder_end_object(b);
    return json_builder_get_root(b);
}

static void
print_json(JsonNode *root)
{
    g_autofree char *text = vs_json_node_text(root, true);

    fputs(text, stdout);
}

static int
list_mounts(bool json)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) all = vs_mount_list(&err);

    if (!all) {
        vs_print_error("%s", err->message);
        return 1;
    }
    if (json) {
        g_autoptr(JsonNode) root = json_node_new(JSON_NODE_ARRAY);
        JsonArray *a = json_array_new();

        for (guint i = 0; i < all->len; i++)
            json_array_add_element(a, mount_json(all->pdata[i]));
        json_node_take_array(root, a);
        print_json(root);
        return 0;
    }
    for (guint i = 0; i < all->len; i++) {
        const VsMount *m = all->pdata[i];
        g_autofree char *size = g_format_size(m->virtual_size);

        printf("%s  %s  %s %s %s (%s)  %s\n", m->id, m->uri, m->backup_id, m->domain, m->disk,
               size, m->alive ? "" : "[nbdkit gone: virtsnap umount removes it]");
    }
    return 0;
}

int
vs_cmd_mount(const VsGlobal *g, int argc, char **argv)
{
    gboolean json = FALSE, foreground = FALSE, list = FALSE;
    g_autofree char *repo = NULL, *socket = NULL, *owner = NULL;
    int port = -1;       /* not given */
    GOptionEntry entries[] = {
        { "repo", 'r', 0, G_OPTION_ARG_FILENAME, &repo, "repository directory (default $VIRTSNAP_REPO)", "DIR" },
        { "socket", 's', 0, G_OPTION_ARG_FILENAME, &socket, "serve on this unix socket (default RUN/mounts/ID.sock)", "PATH" },
        { "port", 'p', 0, G_OPTION_ARG_INT, &port, "serve on 127.0.0.1:PORT (1 to 65535) instead of a socket", "PORT" },
        { "owner", 0, 0, G_OPTION_ARG_FILENAME, &owner, "give the socket to USER[:GROUP] (e.g. libvirt-qemu); default: root only", "USER" },
        { "foreground", 'f', 0, G_OPTION_ARG_NONE, &foreground, "serve until interrupted (Ctrl-C) instead of in the background", NULL },
        { "list", 'l', 0, G_OPTION_ARG_NONE, &list, "list the mounts", NULL },
        { "json", 0, 0, G_OPTION_ARG_NONE, &json, "print the mount as JSON", NULL },
        G_OPTION_ENTRY_NULL
    };
    g_autoptr(GOptionContext) octx =
        g_option_context_new("BACKUP DOMAIN DISK - serve a backed-up disk read-only over NBD "
                             "(BACKUP: an id, a unique prefix, or latest: the newest that holds DOMAIN)");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsMount) m = NULL;
    VsMountOptions o = { 0 };

    g_option_context_add_main_entries(octx, entries, NULL);
    if (!g_option_context_parse(octx, &argc, &argv, &err)) {
        vs_print_error("mount: %s (see virtsnap mount --help)", err->message);
        return 2;
    }
    if (list) {
        if (argc > 1) {
            vs_print_error("mount: --list takes no arguments");
            return 2;
        }
        return list_mounts(json);
    }
    if (argc != 4) {
        vs_print_error("mount: give BACKUP DOMAIN DISK (see virtsnap mount --help)");
        return 2;
    }
    if (port != -1) {
        const VsIntOption ints[] = { { "--port", port, 1, 65535 } };

        if (!vs_check_int_options("mount", ints, 1, &err)) {
            vs_print_error("%s", err->message);
            return 2;
        }
    }
    o.repo_path = vs_repo_arg(repo);
    o.backup_id = argv[1];
    o.domain = argv[2];
    o.disk = argv[3];
    o.socket = socket;
    o.port = port == -1 ? 0 : port;
    o.owner = owner;
    o.foreground = foreground;
    if (!vs_mount_check_options(&o, &err)) {
        vs_print_error("%s", err->message);
        return 2;
    }
    if (!(m = vs_mount_start(&o, &err))) {
        vs_print_error("%s", err->message);
        return 1;
    }
    if (json) {
        print_json(mount_json(m));
    } else {
        g_autofree char *size = g_format_size(m->virtual_size);

        printf("%s\n", m->uri);
        if (!g->quiet) {
            printf("  backup %s domain %s disk %s (%s), read-only; nbdkit pid %d, mount %s\n",
                   m->backup_id, m->domain, m->disk, size, m->pid, m->id);
            if (foreground)
                printf("  serving until interrupted (Ctrl-C)\n");
            else
                printf("  stop it with: virtsnap umount %s\n", m->id);
        }
    }
    fflush(stdout);
    if (foreground && !vs_mount_wait(m, &err)) {
        vs_print_error("%s", err->message);
        return 1;
    }
    return 0;
}

int
vs_cmd_umount(const VsGlobal *g, int argc, char **argv)
{
    gboolean all = FALSE, force = FALSE;
    GOptionEntry entries[] = {
        { "all", 'a', 0, G_OPTION_ARG_NONE, &all, "stop every mount", NULL },
        { "force", 0, 0, G_OPTION_ARG_NONE, &force, "stop it even while a running domain reads through it", NULL },
        G_OPTION_ENTRY_NULL
    };
    g_autoptr(GOptionContext) octx =
        g_option_context_new("(ID | SOCKET | URI | PORT)... - stop serving backed-up disks");
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) mounts = g_ptr_array_new_with_free_func((GDestroyNotify)vs_mount_free);
    virConnectPtr conn = NULL;
    int rc = 0;

    g_option_context_add_main_entries(octx, entries, NULL);
    if (!g_option_context_parse(octx, &argc, &argv, &err)) {
        vs_print_error("umount: %s (see virtsnap umount --help)", err->message);
        return 2;
    }
    if ((argc > 1) == all) {
        vs_print_error("umount: name the mounts (id, socket, URI or port), or give --all");
        return 2;
    }
    if (all) {
        g_autoptr(GPtrArray) l = vs_mount_list(&err);
        if (!l) {
            vs_print_error("%s", err->message);
            return 1;
        }
        while (l->len)
            g_ptr_array_add(mounts, g_ptr_array_steal_index(l, 0));
    }
    for (int i = 1; i < argc; i++) {
        VsMount *m = vs_mount_find(argv[i], &err);
        if (!m) {
            vs_print_error("%s", err->message);
            g_clear_error(&err);
            rc = 1;
            continue;
        }
        g_ptr_array_add(mounts, m);
    }
    /* A guest restored with --instant reads through its export until its copy
     * is done: look before stopping one. */
    if (!force && mounts->len > 0 && !(conn = vs_conn_open(g->uri, &err))) {
        vs_print_error("umount: cannot check that no running domain uses the export: %s "
                       "(give --force to stop it anyway)", err->message);
        return 1;
    }
    for (guint i = 0; i < mounts->len; i++) {
        VsMount *m = mounts->pdata[i];
        g_clear_error(&err);
        if (!vs_mount_stop(m, conn, force, &err)) {
            vs_print_error("%s", err->message);
            rc = 1;
        } else if (!g->quiet) {
            printf("%s: stopped (%s)\n", m->id, m->uri);
        }
    }
    vs_conn_close(conn);
    return rc;
}
