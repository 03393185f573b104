/* `virtsnap sc-plugin -OPERATION`: virtsnap as a native plug-in of NetApp
 * Snap Creator (installed as plug-ins/native/kvm.sh calling it, see
 * examples/snapcreator/). The framework runs the plug-in once per operation
 * with its parameters in the environment and reads SC_* lines from its
 * standard output (sc-format.c); the exit code is 0, 1 (failed, said in
 * SC_MSG#ERROR lines), 2 (bad usage) or 99 (an operation the plug-in does not
 * implement). Here: the dispatch, -describe, -discover, -scdump and -restore;
 * -quiesce and -unquiesce in sc-quiesce.c. */
#include "config.h"
#include "sc-plugin.h"
#include "vs-interrupt.h"
#include "vs-restore.h"
#include "vs-snapshot.h"

#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

/* Operations the framework may call that virtsnap does not implement: exit
 * 99, as the framework expects, so that it carries on without them. */
static const char *const not_implemented[] = {
    "restore_pre", "restore_post", "restore_cleanup", "clone_pre", "clone_post", "clone_all",
    "clone_cleanup", "mount", "umount", "backup", "backup_pre", "backup_post",
};

const char *
sc_param(const ScRun *r, const char *key)
{
    /* The framework's environment, else the configuration file (checked
     * when virtsnap started: a bad value never gets here). */
    (void)r;
    return vs_cfg(key, NULL);
}

void
vs_scplugin_config_failed(const char *message)
{
    sc_say(VS_SC_ERROR, "%s", message);
}

const char *
sc_state_dir(const ScRun *r)
{
    const char *v = r->state_dir ? r->state_dir : sc_param(r, "VIRTSNAP_STATE_DIR");

    return v && *v ? v : "/var/lib/virtsnap";
}

void
sc_say(VsScLevel level, const char *fmt, ...)
{
    g_autoptr(GString) out = g_string_new(NULL);
    g_autofree char *text = NULL;
    va_list ap;

    va_start(ap, fmt);
    text = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    vs_sc_msg(out, level, g_get_real_time() / G_USEC_PER_SEC, text);
    fputs(out->str, stdout);
    fflush(stdout);
}

static void
print_lines(const char *text)
{
    fputs(text, stdout);
    fflush(stdout);
}

const char *const *
sc_mapped_vms(const ScRun *r, const char *what)
{
    const char *const *vms = vs_config_names(vs_cli_config(), "KVM_VM_MAPPING");

    (void)r;
    if (!vms || !vms[0]) {
        sc_say(VS_SC_ERROR, "%s: KVM_VM_MAPPING names no VM: set it (VM:CONTROLLER:VOLUME;...; -discover "
               "prints it)", what);
        return NULL;
    }
    return vms;
}

static virConnectPtr
connect_or_say(const ScRun *r, const char *what)
{
    g_autoptr(GError) err = NULL;
    virConnectPtr conn = vs_conn_open(r->g->uri, &err);

    if (!conn)
        sc_say(VS_SC_ERROR, "%s: %s", what, err->message);
    return conn;
}

/* Discovery of the mapped VMs (every domain when KVM_VM_MAPPING is unset),
 * locating each disk through its pool's hook when LOCATE. NULL (said) when
 * nothing could be listed. */
static GPtrArray *
discover_vms(const ScRun *r, const char *what, bool locate, GPtrArray **problems)
{
    const char *mapping = sc_param(r, "KVM_VM_MAPPING");
    const char *conf = r->snapshot_config ? r->snapshot_config : sc_param(r, "VIRTSNAP_SNAPSHOT_CONFIG");
    const char *const *names = NULL;
    g_autoptr(VsSnapConfig) snap = NULL;
    g_autoptr(GError) err = NULL;
    VsDiscoverOptions opts;
    virConnectPtr conn;
    GPtrArray *doms;

    if (mapping && *mapping && !(names = sc_mapped_vms(r, what)))
        return NULL;
    if (!(snap = vs_snap_config_load(conf && *conf ? conf : NULL, &err))) {
        sc_say(VS_SC_ERROR, "%s: %s", what, err->message);
        return NULL;
    }
    vs_discover_options_init(&opts);
    opts.snapshot_config = snap;
    opts.locate = locate;
    if (!(conn = connect_or_say(r, what)))
        return NULL;
    doms = vs_discover(conn, names, &opts, problems, &err);
    vs_conn_close(conn);
    if (!doms)
        sc_say(VS_SC_ERROR, "%s", err->message);
    return doms;
}

static int
op_discover(const ScRun *r)
{
    g_autoptr(GPtrArray) problems = NULL;
    g_autoptr(GPtrArray) doms = discover_vms(r, "-discover", true, &problems);
    g_autoptr(GString) out = g_string_new(NULL);
    bool ok;

    if (!doms)
        return SC_EXIT_FAILED;
    ok = vs_sc_discover(out, doms, problems, g_get_real_time() / G_USEC_PER_SEC);
    print_lines(out->str);
    return ok ? SC_EXIT_OK : SC_EXIT_FAILED;
}

static char *
version_string(unsigned long v)
{
    return g_strdup_printf("%lu.%lu.%lu", v / 1000000, v / 1000 % 1000, v % 1000);
}

static int
op_scdump(const ScRun *r)
{
    g_autoptr(GPtrArray) problems = NULL;
    g_autoptr(GPtrArray) doms = NULL;
    g_autoptr(GString) out = g_string_new(NULL);
    g_autofree char *lib = NULL, *hv = NULL, *os = NULL;
    unsigned long v = 0;
    struct utsname u;
    VsScDumpInfo info = {.virtsnap_version = VIRTSNAP_VERSION};
    virConnectPtr conn = connect_or_say(r, "-scdump");

    if (conn) {
        if (virConnectGetLibVersion(conn, &v) == 0)
            info.libvirt_version = lib = version_string(v);
        if (virConnectGetVersion(conn, &v) == 0) {
            g_autofree char *hvv = version_string(v);
            const char *type = virConnectGetType(conn);

            info.hypervisor_version = hv = g_strdup_printf("%s %s", type ? type : "hypervisor", hvv);
        }
        vs_conn_close(conn);
    }
    if (uname(&u) == 0)
        info.os = os = g_strdup_printf("%s %s %s", u.sysname, u.release, u.machine);
    doms = discover_vms(r, "-scdump", false, &problems);
    vs_sc_dump(out, &info, doms);
    print_lines(out->str);
    for (guint i = 0; problems && i < problems->len; i++)
        sc_say(VS_SC_WARN, "%s", ((VsProblem *)problems->pdata[i])->error->message);
    /* support information: what could be gathered is the answer */
    return conn ? SC_EXIT_OK : SC_EXIT_FAILED;
}

static void
restore_progress(const char *message, void *opaque)
{
    (void)opaque;
    sc_say(VS_SC_DEBUG, "restore: %s", message);
}

/* KVM_VM_CONFIG_DIR: the restored definition also written there as
 * NAME.xml (not into libvirt's own directory, which libvirt keeps). */
static void
write_definition(virConnectPtr conn, const char *dir, const char *name)
{
    g_autoptr(GError) err = NULL;
    virDomainPtr dom = virDomainLookupByName(conn, name);
    char *xml = dom ? virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE) : NULL;

    if (!xml)
        sc_say(VS_SC_WARN, "%s: its definition could not be read back for KVM_VM_CONFIG_DIR", name);
    else if (!vs_definition_write(dir, name, xml, &err))
        sc_say(VS_SC_WARN, "%s: KVM_VM_CONFIG_DIR: %s", name, err->message);
    else
        sc_say(VS_SC_INFO, "%s: definition written to %s/%s.xml", name, dir, name);
    free(xml);
    if (dom)
        virDomainFree(dom);
}

/* The per-domain lines of a restore; false when one failed. */
static bool
say_restored(virConnectPtr conn, const VsRestoreResult *res, const char *config_dir)
{
    bool all = true;

    for (guint i = 0; i < res->domains->len; i++) {
        const VsRestoreDomainResult *d = res->domains->pdata[i];

        if (!d->ok) {
            sc_say(VS_SC_ERROR, "%s", d->error);
            all = false;
            continue;
        }
        sc_say(VS_SC_INFO, "%s: restored from backup %s%s%s%s%s", d->restored_as, d->backup_id,
               d->in_place ? " in place" : "", d->stopped ? ", stopped first" : "", d->defined ? ", defined" : "",
               d->started ? ", started" : "");
        for (guint k = 0; k < d->disks->len; k++) {
            const VsRestoreDiskResult *dk = d->disks->pdata[k];

            sc_say(VS_SC_INFO, "%s/%s: %s (%s, %s)", d->restored_as, dk->target, dk->path, dk->format,
                   dk->action);
        }
        if (config_dir)
            write_definition(conn, config_dir, d->restored_as);
    }
    return all;
}

/* -restore: each VM of KVM_RESTORE_VM_LIST from the newest backup that holds
 * it, in place, defined and started; a VM still running is stopped first and
 * its disks replaced (the list asks for exactly that), a deleted one comes
 * back under its name and UUID. */
static int
op_restore(const ScRun *r)
{
    const char *repo = sc_param(r, "VIRTSNAP_REPO");
    const char *config_dir = sc_param(r, "KVM_VM_CONFIG_DIR");
    const char *const *names = vs_config_names(vs_cli_config(), "KVM_RESTORE_VM_LIST");
    g_autoptr(VsRestoreResult) res = NULL;
    g_autoptr(GError) err = NULL;
    VsRestoreOptions opts;
    virConnectPtr conn;
    bool ok;

    if (!vs_config_bool(vs_cli_config(), "APP_DEFINED_RESTORE", true)) {
        sc_say(VS_SC_ERROR, "-restore: APP_DEFINED_RESTORE=N asks for the framework's volume restore, which "
               "this plug-in does not do: set APP_DEFINED_RESTORE=Y");
        return SC_EXIT_FAILED;
    }
    if (!names || !names[0]) {
        sc_say(VS_SC_ERROR, "-restore: KVM_RESTORE_VM_LIST names no VM: give the VMs to restore "
               "(KVM_RESTORE_VM_LIST=vm1,vm2)");
        return SC_EXIT_FAILED;
    }
    if (!repo || !*repo) {
        sc_say(VS_SC_ERROR, "-restore: no repository: set VIRTSNAP_REPO (environment or configuration file)");
        return SC_EXIT_FAILED;
    }
    vs_restore_options_init(&opts);
    opts.repo_path = repo;
    opts.define = opts.start = opts.force = true;
    opts.state_dir = sc_state_dir(r);
    opts.uri = r->g->uri ? r->g->uri : g_getenv("LIBVIRT_DEFAULT_URI");
    opts.progress = restore_progress;
    /* as `virtsnap restore` takes them from the configuration */
    opts.retry_count = vs_config_int(vs_cli_config(), "KVM_CMD_RETRY_COUNT", opts.retry_count);
    opts.deadline_s = vs_config_int(vs_cli_config(), "SC_AGENT_TIMEOUT", 0);
    opts.parallel_disks = (unsigned)vs_config_int(vs_cli_config(), "VIRTSNAP_PARALLEL_DISKS",
                                                  (int)opts.parallel_disks);
    opts.agent_timeout = vs_config_int(vs_cli_config(), "VIRTSNAP_AGENT_TIMEOUT", opts.agent_timeout);
    if (!vs_restore_check_options(names, &opts, &err)) {
        sc_say(VS_SC_ERROR, "%s", err->message);
        return SC_EXIT_FAILED;
    }
    if (!(conn = connect_or_say(r, "-restore")))
        return SC_EXIT_FAILED;
    /* a signal, or SC_AGENT_TIMEOUT passing, stops the restore at its next
     * safe point, each VM left as it was (driver/restore.c) */
    vs_interrupt_install();
    if (!(res = vs_restore_run(conn, names, &opts, &err))) {
        sc_say(VS_SC_ERROR, "%s", err->message);
        vs_conn_close(conn);
        return SC_EXIT_FAILED;
    }
    /* libvirt keeps its own directory itself */
    if (config_dir && (!*config_dir || vs_dir_is_libvirts_own(config_dir)))
        config_dir = NULL;
    ok = say_restored(conn, res, config_dir);
    vs_conn_close(conn);
    return ok ? SC_EXIT_OK : SC_EXIT_FAILED;
}

static void
usage(FILE *out)
{
    fprintf(out,
            "Usage: virtsnap sc-plugin [OPTIONS] -OPERATION\n"
            "\n"
            "Snap Creator's native plug-in protocol (plug-ins/native/): parameters from the environment,\n"
            "else the configuration file (KVM_VM_MAPPING, KVM_RESTORE_VM_LIST, KVM_VM_CONFIG_DIR,\n"
            "KVM_CMD_RETRY_COUNT, APP_DEFINED_RESTORE, VIRTSNAP_REPO, ...), SC_* lines on standard output;\n"
            "exit 0, 1 (failed), 2 (usage, or a bad parameter) or 99 (an operation not implemented).\n"
            "\n"
            "Operations:\n"
            "  -describe    the operations and parameters (SC_DESCRIBE lines)\n"
            "  -quiesce     freeze every VM of KVM_VM_MAPPING at once (suspend only one without an agent)\n"
            "  -unquiesce   thaw them; fails if the guardian had to thaw (crash-consistent snapshot)\n"
            "  -discover    each VM's disks on their storage controller and volume; the new KVM_VM_MAPPING\n"
            "  -scdump      versions and the VMs (SC_DUMP lines)\n"
            "  -restore     the VMs of KVM_RESTORE_VM_LIST from the newest backup (deleted ones too)\n"
            "\n"
            "Options:\n"
            "  --state-dir DIR          where the quiesce token is kept (default $VIRTSNAP_STATE_DIR,\n"
            "                           else /var/lib/virtsnap)\n"
            "  --snapshot-config FILE   the storage snapshot configuration whose hooks -discover asks\n"
            "                           (default $VIRTSNAP_SNAPSHOT_CONFIG, else " VS_SNAP_CONFIG_DEFAULT ")\n"
            "\n"
            "See virtsnap(1), sc-plugin.\n");
}

/* --state-dir DIR, --state-dir=DIR (the same for --snapshot-config) at
 * ARGV[*I]: true when it was one (*I moved past its value); *BAD when its
 * value is missing. */
static bool
take_option(int argc, char **argv, int *i, const char *name, const char **value, bool *bad)
{
    size_t n = strlen(name);

    if (strncmp(argv[*i], name, n) != 0)
        return false;
    if (argv[*i][n] == '=') {
        *value = argv[*i] + n + 1;
        return true;
    }
    if (argv[*i][n] != '\0')
        return false;
    if (*i + 1 >= argc) {
        *bad = true;
        return true;
    }
    *value = argv[++*i];
    return true;
}

static int
run_operation(const ScRun *r, const char *op)
{
    if (!strcmp(op, "describe")) {
        g_autofree char *d = vs_sc_describe();

        print_lines(d);
        return SC_EXIT_OK;
    }
    if (!strcmp(op, "quiesce"))
        return sc_quiesce(r);
    if (!strcmp(op, "unquiesce"))
        return sc_unquiesce(r);
    if (!strcmp(op, "discover"))
        return op_discover(r);
    if (!strcmp(op, "scdump"))
        return op_scdump(r);
    if (!strcmp(op, "restore"))
        return op_restore(r);
    sc_say(VS_SC_INFO, "-%s: not implemented by virtsnap%s", op,
           g_strv_contains(not_implemented, op) ? "" : " (not an operation it knows)");
    return SC_EXIT_NOT_IMPLEMENTED;
}

int
vs_cmd_scplugin(const VsGlobal *g, int argc, char **argv)
{
    ScRun r = {.g = g};
    const char *op = NULL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool bad = false;

        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return SC_EXIT_OK;
        }
        if (take_option(argc, argv, &i, "--state-dir", &r.state_dir, &bad) ||
            take_option(argc, argv, &i, "--snapshot-config", &r.snapshot_config, &bad)) {
            if (bad) {
                vs_print_error("sc-plugin: %s needs a value (see virtsnap sc-plugin --help)", a);
                return SC_EXIT_USAGE;
            }
            continue;
        }
        /* -word: an operation of the framework's (lower case and '_') */
        if (a[0] == '-' && a[1] && a[1] != '-' && !op && strspn(a + 1, "abcdefghijklmnopqrstuvwxyz_") ==
            strlen(a + 1)) {
            op = a + 1;
            continue;
        }
        vs_print_error("sc-plugin: '%s': %s (see virtsnap sc-plugin --help)", a,
                       op && a[0] == '-' && a[1] != '-' ? "one operation at a time" : "unknown argument");
        return SC_EXIT_USAGE;
    }
    if (!op) {
        usage(stderr);
        return SC_EXIT_USAGE;
    }
    return run_operation(&r, op);
}
