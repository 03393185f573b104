/* The output lines of `virtsnap sc-plugin`, Snap Creator's native plug-in
 * protocol: '#'-separated fields after an SC_* keyword, one record per line,
 * read by the framework from the plug-in's standard output. Where the
 * framework's documentation is silent (the timestamp's form, the levels, how
 * a '#' inside a field is written), the choices are made here once and
 * documented in virtsnap(1); tests/unit/test-sc-format.c holds every kind of
 * line to golden files. */
#include "config.h"
#include "sc-format.h"
#include "virtsnap.h"

#include <string.h>

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

static void
append_field(GString *out, const char *field, bool last)
{
    for (const char *p = field ? field : ""; *p; p++) {
        if (g_ascii_iscntrl(*p))
            g_string_append_c(out, ' ');
        else if (!last && (*p == '#' || *p == '%'))
            g_string_append_printf(out, "%%%02X", (unsigned char)*p);
        else
            g_string_append_c(out, *p);
    }
}

void
vs_sc_line(GString *out, const char *kind, const char *const *fields)
{
    g_string_append_printf(out, "SC_%s", kind);
    for (size_t i = 0; fields[i]; i++) {
        g_string_append_c(out, '#');
        append_field(out, fields[i], fields[i + 1] == NULL);
    }
    g_string_append_c(out, '\n');
}

char *
vs_sc_time(gint64 when)
{
    g_autoptr(GDateTime) t = g_date_time_new_from_unix_utc(when);

    return t ? g_date_time_format(t, "%Y-%m-%dT%H:%M:%SZ") : g_strdup("1970-01-01T00:00:00Z");
}

void
vs_sc_msg(GString *out, VsScLevel level, gint64 when, const char *text)
{
    g_autofree char *time = vs_sc_time(when);
    g_auto(GStrv) lines = g_strsplit(text ? text : "", "\n", -1);

    for (size_t i = 0; lines[i]; i++) {
        if (!*lines[i] && lines[i + 1] == NULL && i > 0)
            break;      /* a final newline is not a line of its own */
        vs_sc_line(out, "MSG", (const char *const[]){level_names[level], time, lines[i], NULL});
    }
}

/* The parameters -describe lists: name, meaning, example, required. */
static const struct {
    const char *name, *meaning, *example;
    bool required;
} parameters[] = {
    {"KVM_VM_MAPPING", "the VMs quiesced together and where their disks live, VM:CONTROLLER:VOLUME; per disk "
     "(-discover prints it; only the VM names are used)", "KVM_VM_MAPPING=vm1:array1:/vol/vol1/lun1;", true},
    {"KVM_RESTORE_VM_LIST", "the VMs -restore brings back from the newest backup that holds each, deleted "
     "ones too", "KVM_RESTORE_VM_LIST=vm1,vm2", false},
    {"KVM_VM_CONFIG_DIR", "where -restore also writes each restored VM's definition as NAME.xml",
     "KVM_VM_CONFIG_DIR=/etc/libvirt/qemu", false},
    {"KVM_CMD_RETRY_COUNT", "retries of each guest-agent freeze or thaw, suspend or resume that fails (default 3)",
     "KVM_CMD_RETRY_COUNT=3", false},
    {"APP_DEFINED_RESTORE", "Y: the framework calls -restore (N: a volume restore, which this plug-in "
     "refuses)", "APP_DEFINED_RESTORE=Y", false},
    {"VIRTSNAP_REPO", "the virtsnap repository -restore reads",
     "VIRTSNAP_REPO=/backup/virtsnap", false},
    {"VIRTSNAP_MAX_FREEZE", "seconds after -quiesce at which the guardian thaws the VMs if -unquiesce has not "
     "come (default 30)", "VIRTSNAP_MAX_FREEZE=30", false},
};

char *
vs_sc_describe(void)
{
    static const char *const ops[] = {"quiesce", "unquiesce", "discover", "scdump", "restore"};
    g_autoptr(GString) out = g_string_new(NULL);

    for (size_t i = 0; i < G_N_ELEMENTS(ops); i++)
        vs_sc_line(out, "DESCRIBE", (const char *const[]){"OP", ops[i], NULL});
    vs_sc_line(out, "DESCRIBE", (const char *const[]){"DESCRIPTION",
               "virtsnap: KVM guests frozen together through their agents for the array's snapshot (no "
               "suspend), their disks found on the storage, restored from a virtsnap repository", NULL});
    for (size_t i = 0; i < G_N_ELEMENTS(parameters); i++)
        vs_sc_line(out, "DESCRIBE", (const char *const[]){"PARAMETER", parameters[i].name, parameters[i].meaning,
                   parameters[i].example, parameters[i].required ? "Y" : "N", NULL});
    return g_string_free(g_steal_pointer(&out), FALSE);
}

/* The problem PROBLEMS (VsProblem*, may be NULL) holds for DOMAIN's DISK
 * (NULL: the domain itself), or NULL. */
static const VsProblem *
problem_of(GPtrArray *problems, const char *domain, const char *disk)
{
    for (guint i = 0; problems && i < problems->len; i++) {
        const VsProblem *p = problems->pdata[i];

        if (!g_strcmp0(p->domain, domain) && !g_strcmp0(p->disk, disk))
            return p;
    }
    return NULL;
}

/* One disk's lines; false when it could not be mapped. */
static bool
discover_disk(GString *out, const VsDiscoveredDomain *dom, const VsDiscoveredDisk *d, GPtrArray *problems,
              gint64 when)
{
    g_autofree char *who = g_strdup_printf("%s/%s", dom->name, d->target);
    g_autofree char *controller = NULL, *volume = NULL, *msg = NULL;
    const VsProblem *p = problem_of(problems, dom->name, d->target);

    if (d->skipped) {
        msg = g_strdup_printf("%s: not backed up: %s", who, d->skipped);
        vs_sc_msg(out, VS_SC_INFO, when, msg);
        return true;
    }
    if (d->error || p) {
        msg = p ? g_strdup(p->error->message) : g_strdup_printf("%s: %s", who, d->error);
        vs_sc_msg(out, VS_SC_ERROR, when, msg);
        vs_sc_line(out, "DISCOVER", (const char *const[]){"DATA", "FAILED", who, NULL});
        return false;
    }
    vs_disk_sc_location(d, &controller, &volume);
    msg = g_strdup_printf("%s: controller %s, volume %s%s", who, controller, volume,
                          d->controller ? " (from the storage hook)" : "");
    vs_sc_msg(out, VS_SC_INFO, when, msg);
    vs_sc_line(out, "DISCOVER", (const char *const[]){"DATA", "DISCOVERED", controller, volume, NULL});
    return true;
}

bool
vs_sc_discover(GString *out, GPtrArray *domains, GPtrArray *problems, gint64 when)
{
    bool all = true;

    for (guint i = 0; i < domains->len; i++) {
        const VsDiscoveredDomain *dom = domains->pdata[i];

        for (guint j = 0; j < dom->disks->len; j++)
            all = discover_disk(out, dom, dom->disks->pdata[j], problems, when) && all;
    }
    /* what could not be found or read at all: a domain named that does not
     * exist, one whose definition cannot be read */
    for (guint i = 0; problems && i < problems->len; i++) {
        const VsProblem *p = problems->pdata[i];

        if (p->disk)
            continue;
        vs_sc_msg(out, VS_SC_ERROR, when, p->error->message);
        vs_sc_line(out, "DISCOVER", (const char *const[]){"DATA", "FAILED", p->domain ? p->domain : "(host)",
                   NULL});
        all = false;
    }
    vs_sc_line(out, "DISCOVER", (const char *const[]){"DATA", "RESULT", all ? "0" : "1", NULL});
    /* A mapping without what failed would drop those VMs from the next
     * quiesce without a word: none is offered then. */
    if (!all) {
        vs_sc_msg(out, VS_SC_ERROR, when, "KVM_VM_MAPPING is not offered: not every VM and disk could be mapped (see above)");
        return false;
    }
    {
        g_autoptr(GError) err = NULL;
        g_autofree char *m = vs_discover_to_sc_mapping(domains, &err);

        if (!m) {
            vs_sc_msg(out, VS_SC_ERROR, when, err->message);
            return false;
        }
        g_strchomp(m);
        vs_sc_line(out, "DISCOVER", (const char *const[]){"ENV", "KVM_VM_MAPPING", m, NULL});
    }
    return true;
}

void
vs_sc_dump(GString *out, const VsScDumpInfo *info, GPtrArray *domains)
{
    const char *const unknown = "unknown";

    vs_sc_line(out, "DUMP", (const char *const[]){"virtsnap", info->virtsnap_version ? info->virtsnap_version
                                                  : unknown, NULL});
    vs_sc_line(out, "DUMP", (const char *const[]){"libvirt", info->libvirt_version ? info->libvirt_version
                                                  : unknown, NULL});
    vs_sc_line(out, "DUMP", (const char *const[]){"hypervisor", info->hypervisor_version
                                                  ? info->hypervisor_version : unknown, NULL});
    vs_sc_line(out, "DUMP", (const char *const[]){"OS", info->os ? info->os : unknown, NULL});
    for (guint i = 0; domains && i < domains->len; i++) {
        const VsDiscoveredDomain *dom = domains->pdata[i];
        guint backed = 0;
        g_autofree char *what = NULL;

        for (guint j = 0; j < dom->disks->len; j++)
            backed += ((VsDiscoveredDisk *)dom->disks->pdata[j])->skipped == NULL;
        what = g_strdup_printf("state=%s agent=%s disks=%u backed-up=%u", dom->state ? dom->state : unknown,
                               vs_agent_status_to_string(dom->agent), dom->disks->len, backed);
        vs_sc_line(out, "DUMP", (const char *const[]){"VM", dom->name, what, NULL});
    }
}
