/* backup-pools.c on the scripted control plane: the persistent XML of each
 * pool a backed-up disk lives in goes into the manifest once per pool; a disk
 * not backed up, or in no pool, asks nothing; a pool whose XML cannot be read
 * is a note naming the disk, the pool and what it costs, and the backup goes
 * on. */
#include "config.h"
#include "backup-internal.h"
#include "fake-control.h"

#include <string.h>

static VsDiscoveredDisk *
disc_disk(const char *target, const char *pool)
{
    VsDiscoveredDisk *d = g_new0(VsDiscoveredDisk, 1);

    d->target = g_strdup(target);
    d->pool = g_strdup(pool);
    d->iscsi_lun = -1;
    d->chain = g_ptr_array_new();
    return d;
}

static DiskJob *
disk_job(const char *target)
{
    DiskJob *d = g_new0(DiskJob, 1);

    d->target = g_strdup(target);
    return d;
}

typedef struct {
    VsFake *fake;
    Run run;
    DomJob job;
    VsManifest *m;
    VsManifestDomain *md;
} Fx;

/* Domain vm1: vda and vdb in pool p1, vdc in p2 but not backed up, vdd in
 * no pool, vde in p3. */
static void
setup(Fx *fx, gconstpointer data)
{
    VsDiscoveredDomain *disc = g_new0(VsDiscoveredDomain, 1);

    (void)data;
    fx->fake = vs_fake_new();
    (void)vs_fake_domain(fx->fake, "vm1", VS_FAKE_U1);
    disc->name = g_strdup("vm1");
    disc->uuid = g_strdup(VS_FAKE_U1);
    disc->disks = g_ptr_array_new_with_free_func((GDestroyNotify)vs_discovered_disk_free);
    disc->problems = g_ptr_array_new();
    g_ptr_array_add(disc->disks, disc_disk("vda", "p1"));
    g_ptr_array_add(disc->disks, disc_disk("vdb", "p1"));
    g_ptr_array_add(disc->disks, disc_disk("vdc", "p2"));
    g_ptr_array_add(disc->disks, disc_disk("vdd", NULL));
    g_ptr_array_add(disc->disks, disc_disk("vde", "p3"));
    fx->run.discovered = g_ptr_array_new_with_free_func((GDestroyNotify)vs_discovered_domain_free);
    g_ptr_array_add(fx->run.discovered, disc);
    fx->run.link = vs_link_new(vs_fake_conn(fx->fake), "test:///fake");
    fx->job.name = g_strdup("vm1");
    fx->job.uuid = g_strdup(VS_FAKE_U1);
    fx->job.notes = g_ptr_array_new_with_free_func(g_free);
    fx->job.disks = g_ptr_array_new_with_free_func((GDestroyNotify)disk_job_free);
    g_ptr_array_add(fx->job.disks, disk_job("vda"));
    g_ptr_array_add(fx->job.disks, disk_job("vdb"));
    g_ptr_array_add(fx->job.disks, disk_job("vdd"));
    g_ptr_array_add(fx->job.disks, disk_job("vde"));
    fx->m = vs_manifest_new();
    fx->md = vs_manifest_add_domain(fx->m, "vm1");
    fx->md->consistency = g_strdup("crash");
    fx->m->chunk_size = VS_REPO_DEFAULT_CHUNK_SIZE;
}

static void
teardown(Fx *fx, gconstpointer data)
{
    (void)data;
    vs_fake_finish(fx->fake);
    vs_link_free(fx->run.link);
    g_ptr_array_unref(fx->run.discovered);
    g_ptr_array_unref(fx->job.notes);
    g_ptr_array_unref(fx->job.disks);
    g_free(fx->job.name);
    g_free(fx->job.uuid);
    vs_manifest_free(fx->m);
}

#define P1 "<pool type='dir'><name>p1</name><target><path>/srv/p1</path></target></pool>"
#define P3 "<pool type='rbd'><name>p3</name><source><name>rbd</name></source></pool>"

static void
test_saved(Fx *fx, gconstpointer data)
{
    g_autofree char *json = NULL;
    g_autoptr(VsManifest) back = NULL;
    g_autoptr(GError) err = NULL;

    (void)data;
    vs_fake_add_item(fx->fake, "pool_xml p1", P1);
    vs_fake_add_item(fx->fake, "pool_xml p3", P3);
    backup_save_pools(&fx->run, &fx->job, fx->md);
    g_assert_cmpuint(fx->job.notes->len, ==, 0);
    g_assert_cmpuint(fx->md->pools->len, ==, 2);
    g_assert_cmpstr(vs_manifest_domain_find_pool(fx->md, "p1")->xml, ==, P1);
    g_assert_cmpstr(vs_manifest_domain_find_pool(fx->md, "p3")->xml, ==, P3);
    g_assert_null(vs_manifest_domain_find_pool(fx->md, "p2"));
    /* and they survive the manifest's round trip */
    json = vs_manifest_to_json(fx->m);
    back = vs_manifest_from_json(json, "test", &err);
    g_assert_no_error(err);
    g_assert_cmpstr(vs_manifest_domain_find_pool(vs_manifest_find_domain(back, "vm1"), "p3")->xml, ==, P3);
}

static void
test_unreadable(Fx *fx, gconstpointer data)
{
    (void)data;
    vs_fake_add_error(fx->fake, "pool_xml p1", VS_ERROR_LIBVIRT, "connection reset");
    vs_fake_add_item(fx->fake, "pool_xml p3", P3);
    backup_save_pools(&fx->run, &fx->job, fx->md);
    g_assert_cmpuint(fx->md->pools->len, ==, 1);
    g_assert_nonnull(vs_manifest_domain_find_pool(fx->md, "p3"));
    /* vdb is in p1 too: asked once, noted once */
    g_assert_cmpuint(fx->job.notes->len, ==, 1);
    g_assert_nonnull(strstr(fx->job.notes->pdata[0], "disk vda"));
    g_assert_nonnull(strstr(fx->job.notes->pdata[0], "pool 'p1'"));
    g_assert_nonnull(strstr(fx->job.notes->pdata[0], "connection reset"));
    g_assert_nonnull(strstr(fx->job.notes->pdata[0], "--define-pools"));
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add("/backup-pools/saved", Fx, NULL, setup, test_saved, teardown);
    g_test_add("/backup-pools/unreadable", Fx, NULL, setup, test_unreadable, teardown);
    return g_test_run();
}
