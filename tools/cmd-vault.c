/* `virtsnap vault --repo R BACKUP`: copies a `backup --no-copy` backup's
 * storage snapshots into the repository (vs_repo_vault, block/repo/repo-vault.c)
 * and reports per disk what was read: in full, or incrementally against an
 * earlier backup where the storage can say what changed (rbd). A repository
 * command: no libvirt connection, only the repository, the snapshot
 * configuration (for hook-made snapshots) and the storage. */
#include "config.h"
#include "virtsnap.h"
#include "vs-repo.h"
#include "vs-snapshot.h"
#include "vs-interrupt.h"

#include <stdio.h>
#include <string.h>

static const char *
state_name(VsVaultDiskState s)
{
    switch (s) {
    case VS_VAULT_DISK_IN_REPO: return "in_repo";
    case VS_VAULT_DISK_VAULTED: return "vaulted";
    case VS_VAULT_DISK_FAILED: return "failed";
    case VS_VAULT_DISK_SKIPPED: break;
    }
    return "skipped";
}

/* {id, vaulted, disks: [...], error}; RES may be NULL (the backup could not be read). */
static char *
vault_json(const char *id, const VsVaultResult *res, const char *error)
{
    g_autoptr(JsonBuilder) b = json_builder_new();

    json_builder_begin_object(b);
    vs_json_add_str(b, "id", res ? res->id : id);
    vs_json_add_int(b, "vaulted", res ? res->vaulted : 0);
    json_builder_set_member_name(b, "disks");
    json_builder_begin_array(b);
    for (guint i = 0; res && i < res->disks->len; i++) {
        const VsVaultDisk *d = res->disks->pdata[i];
        bool copied = d->state == VS_VAULT_DISK_VAULTED;

        json_builder_begin_object(b);
        vs_json_add_str(b, "domain", d->domain);
        vs_json_add_str(b, "disk", d->disk);
        vs_json_add_str(b, "state", state_name(d->state));
        json_builder_set_member_name(b, "snapshot");
        if (d->handle) {
            json_builder_begin_object(b);
            vs_json_add_str(b, "provider", d->provider);
            vs_json_add_str(b, "handle", d->handle);
            json_builder_end_object(b);
        } else {
            json_builder_add_null_value(b);
        }
        vs_json_add_bool(b, "incremental", d->incremental);
        vs_json_add_str(b, "base", d->base_id);
        vs_json_add_str(b, "full_reason", d->full_why);
        vs_json_add_int(b, "virtual_bytes", (gint64)d->virtual_size);
        vs_json_add_int_or_null(b, "bytes_changed", copied ? (gint64)d->bytes_changed : -1);
        vs_json_add_int_or_null(b, "bytes_read", copied ? (gint64)d->bytes_read : -1);
        vs_json_add_int_or_null(b, "bytes_stored", copied ? (gint64)d->bytes_stored : -1);
        vs_json_add_str(b, "error", d->error);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    vs_json_add_str(b, "error", error);
    json_builder_end_object(b);
    return vs_json_builder_text(b, true);
}

static void
print_text(const VsVaultResult *res)
{
    for (guint i = 0; i < res->disks->len; i++) {
        const VsVaultDisk *d = res->disks->pdata[i];
        g_autofree char *size = g_format_size(d->virtual_size), *rd = g_format_size(d->bytes_read);
        g_autofree char *ch = g_format_size(d->bytes_changed), *st = g_format_size(d->bytes_stored);

        if (d->state == VS_VAULT_DISK_IN_REPO)
            printf("  %s/%s: in the repository already\n", d->domain, d->disk);
        else if (d->state == VS_VAULT_DISK_SKIPPED)
            printf("  %s/%s: not vaulted (stopped before it)\n", d->domain, d->disk);
        else if (d->state == VS_VAULT_DISK_FAILED)
            printf("  %s/%s: FAILED (see below)\n", d->domain, d->disk);
        else if (d->incremental)
            printf("  %s/%s: vaulted from %s %s, incrementally against backup %s: read %s of %s changed "
                   "(%s disk), %s new\n", d->domain, d->disk, d->provider, d->handle, d->base_id, rd, ch, size, st);
        else
            printf("  %s/%s: vaulted from %s %s in full%s%s%s: read %s of %s, %s new\n", d->domain, d->disk,
                   d->provider, d->handle, d->full_why ? " (" : "", d->full_why ? d->full_why : "",
                   d->full_why ? ")" : "", rd, size, st);
    }
}

int
vs_cmd_vault(const VsGlobal *g, int argc, char **argv)
{
    char *repo = NULL, *snap_config = NULL;
    gboolean json = FALSE;
    GOptionEntry entries[] = {
        { "repo", 'r', 0, G_OPTION_ARG_FILENAME, &repo, "repository directory", "DIR" },
        { "snapshot-config", 0, 0, G_OPTION_ARG_FILENAME, &snap_config, "the storage snapshot configuration "
          "naming the hooks of hook-made snapshots (default " VS_SNAP_CONFIG_DEFAULT ")", "FILE" },
        { "json", 0, 0, G_OPTION_ARG_NONE, &json, "print the result as JSON", NULL },
        G_OPTION_ENTRY_NULL
    };
    g_autoptr(GOptionContext) octx = g_option_context_new("BACKUP - copy a --no-copy backup's storage snapshots "
                                                          "into the repository (BACKUP: an id, a unique prefix, "
                                                          "or latest)");
    g_autoptr(GError) err = NULL;
    g_autoptr(VsRepo) r = NULL;
    g_autoptr(VsSnapConfig) config = NULL;
    g_autoptr(VsVaultResult) res = NULL;
    g_autofree char *msg = NULL;
    const char *path;
    bool ok;
    int sig;

    g_option_context_add_main_entries(octx, entries, NULL);
    if (!g_option_context_parse(octx, &argc, &argv, &err)) {
        msg = g_strdup_printf("vault: %s (see virtsnap vault --help)", err->message);
        return vs_fail_with(2, msg, vs_argv_has(argc, argv, "--json") ? vault_json(NULL, NULL, msg) : NULL);
    }
    path = vs_repo_arg(repo);
    if (argc != 2 || !*argv[1] || !path || !*path) {
        msg = g_strdup(argc != 2 || !*argv[1] ? "vault: give one BACKUP (an id, a unique prefix, or latest)"
                                              : "vault: no repository: give --repo DIR or set VIRTSNAP_REPO");
        return vs_fail_with(2, msg, json ? vault_json(NULL, NULL, msg) : NULL);
    }
    if (!(config = vs_snap_config_load(snap_config, &err)) || !(r = vs_repo_open(path, false, true, 0, &err))) {
        msg = g_strdup_printf("vault: %s", err->message);
        return vs_fail_with(1, msg, json ? vault_json(argv[1], NULL, msg) : NULL);
    }
    vs_interrupt_install();
    ok = vs_repo_vault(r, argv[1], config, &res, &err);
    if (json) {
        g_autofree char *text = vault_json(argv[1], res, ok ? NULL : err->message);
        fputs(text, stdout);
    } else if (res && !g->quiet) {
        printf("vault: backup %s\n", res->id);
        print_text(res);
    }
    if (!ok) {
        bool named = false;

        /* Every failed disk by name; ERR is the first of them, or what failed
         * for the whole backup (reading it, the lock, the commit). */
        for (guint i = 0; res && i < res->disks->len; i++) {
            const VsVaultDisk *d = res->disks->pdata[i];
            if (d->error)
                vs_print_error("%s", d->error);
            named |= !g_strcmp0(d->error, err->message);
        }
        if (!named)
            vs_print_error("%s", err->message);
        return (sig = vs_interrupted()) ? vs_interrupt_exit_status(sig) : 1;
    }
    if (!json && !g->quiet) {
        if (res->vaulted)
            printf("vault: backup %s: %u disk(s) vaulted; its data is in the repository now\n", res->id,
                   res->vaulted);
        else
            printf("vault: backup %s has nothing to vault: every disk is in the repository already\n", res->id);
    }
    return 0;
}
