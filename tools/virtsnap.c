/* The virtsnap command line: global options, then one command. Like virsh, the
 * connection URI comes from -c, else $LIBVIRT_DEFAULT_URI, else qemu:///system.
 * Each command lives in its own cmd-*.c and returns the exit status. */
#include "config.h"
#include "virtsnap.h"
#include "vs-repo.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*run)(const VsGlobal *g, int argc, char **argv);
    const char *summary;
} Command;

static const Command commands[] = {
    { "discover", vs_cmd_discover, "list domains, their disks and where each disk's data lives" },
    { "backup", vs_cmd_backup, "back up running and shut-off domains into a repository" },
    { "restore", vs_cmd_restore, "restore domains from a backup, in place or as new domains" },
    { "recover", vs_cmd_recover, "finish or undo interrupted backups (thaw, commit overlays)" },
    { "init", vs_cmd_init, "create a repository" },
    { "list", vs_cmd_list, "list the backups in a repository" },
    { "verify", vs_cmd_verify, "re-read and re-hash every chunk of a backup" },
    { "export", vs_cmd_export, "write a disk of a backup to a raw or qcow2 image" },
    { "gc", vs_cmd_gc, "delete chunks that no backup references" },
    { "prune", vs_cmd_prune, "remove backups a retention policy does not keep, and their chunks" },
    { "snapshots", vs_cmd_snapshots, "list the storage snapshots a repository's backups record" },
    { "vault", vs_cmd_vault, "copy a --no-copy backup's storage snapshots into the repository" },
    { "mount", vs_cmd_mount, "serve a backed-up disk read-only over NBD" },
    { "umount", vs_cmd_umount, "stop serving a mounted disk" },
    { "sc-plugin", vs_cmd_scplugin, "Snap Creator's native plug-in: -quiesce, -unquiesce, -discover, ..." },
    { "guardian", vs_cmd_guardian, NULL },   /* internal: started by backup */
    { "quiesce", vs_cmd_quiesce, "freeze guests together for an outside snapshot, until unquiesce" },
    { "unquiesce", vs_cmd_unquiesce, "thaw the guests a quiesce froze, by its token" },
    { "quiesce-guardian", vs_cmd_quiesce_guardian, NULL },   /* internal: started by quiesce */
    { "migrate", vs_cmd_migrate, "move a domain to another libvirt host, after pre-checks" },
    { "agent", vs_cmd_agent, "a cluster agent's entry points: online, offline, monitor, clean, migrate" },
};

void
vs_print_error(const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    fprintf(stderr, "virtsnap: %s\n", msg);
}

static bool quiet;
static VsConfig *config;

const VsConfig *
vs_cli_config(void)
{
    return config;
}

const char *
vs_cfg(const char *key, const char *option)
{
    return vs_config_value(config, key, option);
}

/* What the repository layer notices by itself, one line on stderr: a
 * repository open to other users (always, with the command that fixes it),
 * and a directory it made private (unless -q). */
static void
repo_notice(VsRepoNotice kind, const char *repo, const char *message)
{
    g_autofree char *q = NULL;

    if (kind != VS_REPO_NOTICE_OPEN) {
        if (!quiet)
            fprintf(stderr, "virtsnap: %s\n", message);
        return;
    }
    q = strpbrk(repo, " \t\n\"'\\$`*?[](){}<>|&;!#~") ? g_shell_quote(repo) : g_strdup(repo);
    fprintf(stderr, "virtsnap: warning: %s; fix it with: virtsnap init --repo %s --fix-permissions\n",
            message, q);
}

bool
vs_check_int_options(const char *cmd, const VsIntOption *opts, size_t n, GError **error)
{
    g_autoptr(GString) msg = g_string_new(NULL);

    for (size_t i = 0; i < n; i++) {
        const VsIntOption *o = &opts[i];

        if (o->value >= o->min && o->value <= o->max)
            continue;
        g_string_append_printf(msg, "%s%s %" G_GINT64_FORMAT ": give %" G_GINT64_FORMAT,
                               msg->len ? "; " : "", o->name, o->value, o->min);
        if (o->max == VS_NO_MAX)
            g_string_append(msg, " or more");
        else
            g_string_append_printf(msg, " to %" G_GINT64_FORMAT, o->max);
    }
    if (msg->len == 0)
        return true;
    g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "%s: %s", cmd, msg->str);
    return false;
}

int
vs_fail_with(int status, const char *message, char *json)
{
    vs_print_error("%s", message);
    if (json)
        fputs(json, stdout);
    g_free(json);
    return status;
}

bool
vs_argv_has(int argc, char **argv, const char *option)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], option) == 0)
            return true;
    return false;
}

static void
usage(FILE *out)
{
    fprintf(out,
            "Usage: virtsnap [-c URI] [-q] COMMAND [OPTIONS...]\n"
            "\n"
            "Consistent backup and restore of running libvirt/QEMU virtual machines.\n"
            "\n"
            "Global options:\n"
            "  -c, --connect URI   libvirt URI (default: $LIBVIRT_DEFAULT_URI, else qemu:///system)\n"
            "      --config FILE   the configuration file (default " VS_CONFIG_DEFAULT " when present)\n"
            "  -q, --quiet         print errors only\n"
            "  -h, --help          this help; `virtsnap COMMAND --help` for a command's options\n"
            "  -V, --version       print the version\n"
            "\n"
            "Commands:\n");
    for (size_t i = 0; i < G_N_ELEMENTS(commands); i++)
        if (commands[i].summary)
            fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nSee virtsnap(1).\n");
}

int
main(int argc, char **argv)
{
    VsGlobal g = { 0 };
    int i;

    /* A write to a pipe or socket whose reader is gone (a guardian that died,
     * a helper process, libvirt's connection) must fail with EPIPE and be
     * handled, not kill virtsnap in the middle of thawing or committing. */
    signal(SIGPIPE, SIG_IGN);

    /* Global options come before the command name; hand-parsed so that the
     * command's own options (GOptionContext) never swallow them. */
    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-c") || !strcmp(a, "--connect")) {
            if (i + 1 >= argc) {
                vs_print_error("%s needs a URI, e.g. -c qemu:///system", a);
                return 2;
            }
            g.uri = argv[++i];
        } else if (g_str_has_prefix(a, "--connect=")) {
            g.uri = a + strlen("--connect=");
        } else if (!strcmp(a, "--config")) {
            if (i + 1 >= argc || !*argv[i + 1]) {
                vs_print_error("--config needs a file, e.g. --config " VS_CONFIG_DEFAULT);
                return 2;
            }
            g.config_path = argv[++i];
        } else if (g_str_has_prefix(a, "--config=")) {
            g.config_path = a + strlen("--config=");
            if (!*g.config_path) {
                vs_print_error("--config needs a file, e.g. --config=" VS_CONFIG_DEFAULT);
                return 2;
            }
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            g.quiet = true;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
            printf("virtsnap %s\n", VIRTSNAP_VERSION);
            return 0;
        } else {
            vs_print_error("unknown option '%s' (global options go before the command; "
                           "see virtsnap --help)", a);
            return 2;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    quiet = g.quiet;
    vs_repo_set_notice_func(repo_notice);
    /* The guardian a backup starts runs on what that backup was given, not on
     * a file that may have changed since. */
    if (strcmp(argv[i], "guardian") != 0) {
        g_autoptr(GError) err = NULL;

        if (!(config = vs_config_load(g.config_path, &err))) {
            vs_print_error("%s", err->message);
            if (strcmp(argv[i], "sc-plugin") == 0)
                vs_scplugin_config_failed(err->message);
            return err->code == VS_ERROR_INVALID_ARG || err->code == VS_ERROR_NOT_FOUND ? 2 : 1;
        }
        g.config = config;
        g.uri = vs_cfg("LIBVIRT_DEFAULT_URI", g.uri);
    }
    for (size_t c = 0; c < G_N_ELEMENTS(commands); c++) {
        if (strcmp(argv[i], commands[c].name) == 0)
            return commands[c].run(&g, argc - i, argv + i);
    }
    vs_print_error("unknown command '%s' (see virtsnap --help for the commands)", argv[i]);
    return 2;
}
