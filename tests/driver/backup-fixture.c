/* The fixture of the whole-run backup tests: see backup-fixture.h. Moved
 * here from test-backup-run.c, unchanged but for the second disk and the
 * commit's reply hook, which test-backup-storage.c uses. */
#include "config.h"
#include "backup-fixture.h"

#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

const char *const uuids[3] = {
    "11111111-1111-1111-1111-111111111111",
    "22222222-2222-2222-2222-222222222222",
    "33333333-3333-3333-3333-333333333333",
};

/* ------------------------------------------------------------------------- */
/* The guardian                                                               */

/* EXE guardian URI DEADLINE_MS AGENT_TIMEOUT STATE_DIR ID UUID...: armed at once
 * ("ready"), then whatever the backup says until end of file, written to
 * STATE_DIR/fake-guardian.log as one line ("freeze thawed" when all went
 * well). It thaws nothing: the tests check that the backup did. With
 * $FAKE_GUARDIAN_DIES set it dies before it is armed, as a guardian that
 * cannot open its connection does. */
int
scripted_guardian(int argc, char **argv)
{
    g_autoptr(GString) heard = g_string_new(NULL);
    g_autofree char *log = NULL;
    g_autofree char *before = NULL;
    g_autofree char *text = NULL;
    char buf[64];
    ssize_t r;

    if (argc < 8)
        return 2;
    if (g_getenv("FAKE_GUARDIAN_DIES"))
        return 1;
    if (write(STDOUT_FILENO, "ready\n", 6) != 6)
        return 1;
    close(STDOUT_FILENO);
    while ((r = read(STDIN_FILENO, buf, sizeof buf)) > 0)
        g_string_append_len(heard, buf, r);
    g_strdelimit(heard->str, "\n", ' ');
    g_strstrip(heard->str);
    log = g_build_filename(argv[5], "fake-guardian.log", NULL);
    (void)g_file_get_contents(log, &before, NULL, NULL);
    text = g_strdup_printf("%s%s %d\n", before ? before : "", heard->str, argc - 7);
    return g_file_set_contents(log, text, -1, NULL) ? 0 : 1;
}

char *
guardian_log(Fixture *fx)
{
    g_autofree char *path = g_build_filename(fx->state, "fake-guardian.log", NULL);
    char *text = NULL;

    if (!g_file_get_contents(path, &text, NULL, NULL))
        return g_strdup("");
    return text;
}

/* ------------------------------------------------------------------------- */
/* Domains and their disks                                                    */

void
run_tool(const char *const *argv)
{
    g_autofree char *err = NULL;
    int status = 0;

    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL,
                               G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL,
                               NULL, &err, &status, NULL));
    if (!g_spawn_check_wait_status(status, NULL))
        g_error("%s failed: %s", argv[0], err);
}

/* Domain I's data: a pattern of its own, with a hole, so that each disk's
 * chunks are its own. */
static void
make_disk(Fixture *fx, int i)
{
    g_autofree guint8 *data = g_malloc0(DISK_SIZE);
    g_autofree char *name = g_strdup_printf("vm%d.img", i + 1);

    for (size_t k = 0; k < DISK_SIZE; k++)
        data[k] = k >= DISK_SIZE / 4 && k < DISK_SIZE / 2 ? 0 : (guint8)(k * (i + 3) + k / 4099);
    fx->ref[i] = g_build_filename(fx->dir, name, NULL);
    g_assert_true(g_file_set_contents(fx->ref[i], (const char *)data, DISK_SIZE, NULL));
    if (!fx->qcow2) {
        fx->disk[i] = g_strdup(fx->ref[i]);
        return;
    }
    fx->disk[i] = g_strdup_printf("%s.qcow2", fx->ref[i]);
    run_tool((const char *const[]){ "qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2",
                                     fx->ref[i], fx->disk[i], NULL });
}

/* Domain I's XML with disk TARGET on OVERLAY (NULL: each disk on its own
 * image). */
static char *
domain_xml_on(Fixture *fx, int i, const char *target, const char *overlay)
{
    bool a = overlay && !g_strcmp0(target, "vda"), b = overlay && !g_strcmp0(target, "vdb");
    g_autofree char *vdb = fx->disk2[i]
        ? g_strdup_printf("<disk type='file' device='disk'><driver name='qemu' type='%s'/>"
                          "<source file='%s'/><target dev='vdb' bus='virtio'/></disk>",
                          b ? "qcow2" : "raw", b ? overlay : fx->disk2[i])
        : g_strdup("");

    return g_strdup_printf(
        "<domain type='kvm'><name>vm%d</name><uuid>%s</uuid><devices>"
        "<disk type='file' device='disk'><driver name='qemu' type='%s'/>"
        "<source file='%s'/><target dev='vda' bus='virtio'/></disk>%s"
        "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0' "
        "state='connected'/></channel></devices></domain>",
        i + 1, uuids[i], a ? "qcow2" : fx->qcow2 ? "qcow2" : "raw",
        a ? overlay : fx->disk[i], vdb);
}

char *
domain_xml(Fixture *fx, int i, const char *source)
{
    return domain_xml_on(fx, i, "vda", source);
}

const char *
add_second_disk(Fixture *fx, int i)
{
    g_autofree guint8 *data = g_malloc(DISK_SIZE);
    g_autofree char *name = g_strdup_printf("vm%d-vdb.img", i + 1);

    for (size_t k = 0; k < DISK_SIZE; k++)
        data[k] = (guint8)(k * (i + 7) + k / 513 + 1);
    fx->disk2[i] = g_build_filename(fx->dir, name, NULL);
    g_assert_true(g_file_set_contents(fx->disk2[i], (const char *)data, DISK_SIZE, NULL));
    return fx->disk2[i];
}

static VsDiscoveredDisk *
discovered_disk(const char *target, const char *format, const char *path)
{
    VsDiscoveredDisk *disk = g_new0(VsDiscoveredDisk, 1);

    disk->target = g_strdup(target);
    disk->device = g_strdup("disk");
    disk->type = g_strdup("file");
    disk->format = g_strdup(format);
    disk->path = g_strdup(path);
    disk->pool_type = g_strdup("none");
    disk->iscsi_lun = -1;
    disk->chain = g_ptr_array_new();
    disk->chain_complete = true;
    return disk;
}

/* What discovery would have found of domain I: running, with an agent, its
 * disks local files. */
static VsDiscoveredDomain *
discovered(Fixture *fx, int i)
{
    VsDiscoveredDomain *d = g_new0(VsDiscoveredDomain, 1);

    d->name = g_strdup_printf("vm%d", i + 1);
    d->uuid = g_strdup(uuids[i]);
    d->state = g_strdup("running");
    d->id = i + 1;
    d->persistent = true;
    d->agent = VS_AGENT_RESPONDING;
    d->xml = domain_xml(fx, i, NULL);
    d->def = vs_domain_def_parse_string(d->xml, d->name, NULL);
    g_assert_nonnull(d->def);
    d->problems = g_ptr_array_new_with_free_func((GDestroyNotify)vs_problem_free);
    d->disks = g_ptr_array_new_with_free_func((GDestroyNotify)vs_discovered_disk_free);
    g_ptr_array_add(d->disks, discovered_disk("vda", fx->qcow2 ? "qcow2" : "raw", fx->disk[i]));
    if (fx->disk2[i])
        g_ptr_array_add(d->disks, discovered_disk("vdb", "raw", fx->disk2[i]));
    return d;
}

void
setup(Fixture *fx, gconstpointer data)
{
    g_autofree char *locks = NULL, *run = NULL;

    fx->qcow2 = GPOINTER_TO_INT(data);
    fx->dir = g_dir_make_tmp("vs-backup-run-XXXXXX", NULL);
    fx->repo = g_build_filename(fx->dir, "repo", NULL);
    fx->state = g_build_filename(fx->dir, "state", NULL);
    fx->push_dir = g_build_filename(fx->dir, "push", NULL);
    g_assert_cmpint(g_mkdir(fx->push_dir, 0700), ==, 0);
    locks = g_build_filename(fx->dir, "locks", NULL);
    run = g_build_filename(fx->dir, "run", NULL);
    g_setenv("VIRTSNAP_LOCK_DIR", locks, TRUE);
    g_setenv("VIRTSNAP_RUN_DIR", run, TRUE);
    g_unsetenv("VIRTSNAP_FAULT");
    fx->fake = vs_fake_new();
    for (int i = 0; i < 3; i++) {
        g_autofree char *name = g_strdup_printf("vm%d", i + 1);
        fx->vm[i] = vs_fake_domain(fx->fake, name, uuids[i]);
        make_disk(fx, i);
    }
}

void
teardown(Fixture *fx, gconstpointer data)
{
    const char *argv[] = { "rm", "-rf", fx->dir, NULL };

    (void)data;
    g_unsetenv("VIRTSNAP_FAULT");
    g_unsetenv("FAKE_GUARDIAN_DIES");
    vs_fake_finish(fx->fake);
    run_tool(argv);
    for (int i = 0; i < 3; i++) {
        g_free(fx->disk[i]);
        g_free(fx->ref[i]);
        g_free(fx->disk2[i]);
    }
    g_free(fx->repo); g_free(fx->state); g_free(fx->push_dir); g_free(fx->dir);
}

void
options(Fixture *fx, VsBackupOptions *o)
{
    vs_backup_options_init(o);
    o->repo_path = fx->repo;
    o->init_repo = true;
    o->state_dir = fx->state;
    o->uri = "test:///fake";
    o->copy_nice = 0;
    o->agent_timeout = 1;
}

/* Backs up the domains of N (indexes, -1 ends) with O. */
VsBackupResult *
backup(Fixture *fx, const int *n, const VsBackupOptions *o, GError **error)
{
    GPtrArray *doms = g_ptr_array_new_with_free_func((GDestroyNotify)vs_discovered_domain_free);

    for (; *n >= 0; n++)
        g_ptr_array_add(doms, discovered(fx, *n));
    return backup_run_discovered(vs_fake_conn(fx->fake), doms, o, error);
}

/* ------------------------------------------------------------------------- */
/* What the run asks of libvirt, step by step                                 */

void
add(Fixture *fx, const char *reply, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *call = NULL;

    va_start(ap, fmt);
    call = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    vs_fake_add_item(fx->fake, call, reply);
}

char *
find_overlay_of(Fixture *fx, const char *path)
{
    g_autofree char *base = g_path_get_basename(path);
    g_autofree char *prefix = g_strdup_printf("%s.virtsnap-", base);
    g_autoptr(GDir) dir = g_dir_open(fx->dir, 0, NULL);
    const char *name;

    while ((name = g_dir_read_name(dir)))
        if (g_str_has_prefix(name, prefix))
            return g_build_filename(fx->dir, name, NULL);
    return NULL;
}

char *
find_overlay(Fixture *fx, int i)
{
    return find_overlay_of(fx, fx->disk[i]);
}

typedef struct {
    Fixture *fx;
    int i;
    const char *target;
} DomRef;

static DomRef refs[3][2];

/* The live XML of domain I while its disk TARGET runs on this run's overlay. */
static char *
reply_on_overlay(const char *call, gpointer data)
{
    DomRef *r = data;
    g_autofree char *overlay = find_overlay_of(r->fx, !strcmp(r->target, "vdb") ? r->fx->disk2[r->i]
                                                                                : r->fx->disk[r->i]);

    (void)call;
    g_assert_nonnull(overlay);
    return domain_xml_on(r->fx, r->i, r->target, overlay);
}

/* The plan of domain I: found, running, its persistent definition kept. */
void
expect_plan(Fixture *fx, int i)
{
    g_autofree char *name = g_strdup_printf("vm%d", i + 1);
    g_autofree char *xml = domain_xml(fx, i, NULL);

    add(fx, name, "domain_lookup_uuid %s", uuids[i]);
    add(fx, "running", "domain_state vm%d", i + 1);
    add(fx, "none", "job_stats vm%d", i + 1);
    add(fx, xml, "domain_xml vm%d inactive", i + 1);
}

/* vs_domain_uses_file of domain I, whose definitions name only its image. */
void
expect_uses_nothing(Fixture *fx, int i)
{
    g_autofree char *name = g_strdup_printf("vm%d", i + 1);
    g_autofree char *xml = domain_xml(fx, i, NULL);

    add(fx, name, "domain_lookup_uuid %s", uuids[i]);
    add(fx, "1", "domain_is_active vm%d", i + 1);
    add(fx, "1", "domain_is_persistent vm%d", i + 1);
    add(fx, xml, "domain_xml vm%d live", i + 1);
    add(fx, xml, "domain_xml vm%d inactive", i + 1);
    add(fx, "1", "conn_alive");
}

/* Domain I's overlay of TARGET committed back: the disk on the overlay, no
 * leftover job, the commit (answered by fx->on_commit when set), READY, the
 * pivot, the disk on its image again, the overlay named by nothing (then
 * removed). */
void
expect_commit_disk(Fixture *fx, int i, const char *target)
{
    g_autofree char *xml = domain_xml(fx, i, NULL);
    g_autofree char *name = g_strdup_printf("vm%d", i + 1);
    g_autofree char *call = g_strdup_printf("domain_xml vm%d live", i + 1);
    g_autofree char *commit = g_strdup_printf("block_commit vm%d %s", i + 1, target);
    DomRef *r = &refs[i][!strcmp(target, "vdb")];

    *r = (DomRef){ fx, i, !strcmp(target, "vdb") ? "vdb" : "vda" };
    add(fx, "1", "conn_alive");
    add(fx, "1", "domain_is_active vm%d", i + 1);
    add(fx, "1", "conn_alive");
    vs_fake_add_item_func(fx->fake, call, reply_on_overlay, r);
    add(fx, "none", "block_job_info vm%d %s", i + 1, target);
    if (fx->on_commit)
        vs_fake_add_item_func(fx->fake, commit, fx->on_commit, fx->on_commit_data);
    else
        add(fx, "ok", "%s", commit);
    vs_fake_add_event(fx->fake, name, target, VIR_DOMAIN_BLOCK_JOB_READY);
    add(fx, "ok", "block_job_abort vm%d %s pivot", i + 1, target);
    add(fx, xml, "domain_xml vm%d live", i + 1);
    expect_uses_nothing(fx, i);
}

/* Once its overlays are committed: the guest not paused. */
void
expect_resume_check(Fixture *fx, int i)
{
    add(fx, "1", "conn_alive");
    add(fx, "running", "domain_state vm%d", i + 1);
}

/* Domain I's overlay committed back, the guest not paused. */
void
expect_commit(Fixture *fx, int i)
{
    expect_commit_disk(fx, i, "vda");
    expect_resume_check(fx, i);
}

/* ------------------------------------------------------------------------- */
/* What a user checks                                                         */

/* D's notes, joined as the tool prints them (a new string). */
char *
notes_of(const VsBackupDomainResult *d)
{
    g_autoptr(GPtrArray) v = g_ptr_array_new();

    for (guint k = 0; d->notes && k < d->notes->len; k++)
        g_ptr_array_add(v, d->notes->pdata[k]);
    g_ptr_array_add(v, NULL);
    return g_strjoinv("; ", (char **)v->pdata);
}

VsBackupDomainResult *
result_of(VsBackupResult *r, int i)
{
    g_autofree char *name = g_strdup_printf("vm%d", i + 1);

    for (guint k = 0; k < r->domains->len; k++) {
        VsBackupDomainResult *d = r->domains->pdata[k];
        if (!g_strcmp0(d->name, name))
            return d;
    }
    return NULL;
}

/* Backup ID holds exactly the domains of IN (-1 ends), verified, each disk
 * read back equal to its domain's data; the others are not in it. */
void
assert_backup(Fixture *fx, const char *id, const int *in)
{
    g_autoptr(VsRepo) repo = vs_repo_open(fx->repo, false, false, 0, NULL);
    g_autoptr(VsManifest) m = NULL;
    g_autoptr(GPtrArray) problems = NULL;
    guint n = 0;

    g_assert_nonnull(repo);
    g_assert_nonnull(id);
    m = vs_repo_load_manifest(repo, id, NULL);
    g_assert_nonnull(m);
    g_assert_true(vs_repo_verify(repo, id, &problems, NULL, NULL));
    g_assert_true(!problems || problems->len == 0);
    for (; *in >= 0; in++, n++) {
        g_autofree char *name = g_strdup_printf("vm%d", *in + 1);
        g_autofree char *out = g_build_filename(fx->dir, "exported.raw", NULL);
        g_autofree char *got = NULL, *want = NULL;
        gsize got_len = 0, want_len = 0;

        g_assert_nonnull(vs_manifest_find_domain(m, name));
        g_unlink(out);
        g_assert_true(vs_repo_export_disk(repo, m, name, "vda", out, "raw", NULL));
        g_assert_true(g_file_get_contents(out, &got, &got_len, NULL));
        g_assert_true(g_file_get_contents(fx->ref[*in], &want, &want_len, NULL));
        g_assert_cmpmem(got, got_len, want, want_len);
        g_unlink(out);
    }
    g_assert_cmpuint(m->domains->len, ==, n);
}

/* No journal left in the state directory: nothing for recover. */
void
assert_no_journal(Fixture *fx)
{
    g_auto(GStrv) journals = vs_journal_list(fx->state);

    g_assert_cmpuint(g_strv_length(journals), ==, 0);
}
