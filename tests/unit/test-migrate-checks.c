/* `virtsnap migrate`'s decisions without a second host: the VIR_MIGRATE_* flags
 * for each mode against the domain's state (a persistent domain moves with its
 * definition, --unsafe and --copy-storage pass through, --live and --offline
 * refused against the state, naming what to do), the memory check at its
 * edges, and vs_migrate against libvirt's in-process test driver up to the
 * destination: a busy domain lock refused naming the holder, an unreachable
 * destination named with the checks run so far, no journal left. Locks and
 * state live in a directory of the test's own ($VIRTSNAP_LOCK_DIR). */
#include "config.h"
#include "migrate-internal.h"

#include <stdlib.h>
#include <string.h>

static char *tmpdir;

static void
test_flags(void)
{
    VsMigrateOptions o;
    g_autoptr(GError) err = NULL;
    unsigned long f;

    vs_migrate_options_init(&o);
    f = vs_migrate_flags(&o, "web1", true, true, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(f, ==, VIR_MIGRATE_LIVE | VIR_MIGRATE_PERSIST_DEST | VIR_MIGRATE_UNDEFINE_SOURCE);
    f = vs_migrate_flags(&o, "web1", true, false, &err);
    g_assert_cmpuint(f, ==, VIR_MIGRATE_LIVE);
    o.unsafe = true;
    o.copy_storage = true;
    f = vs_migrate_flags(&o, "web1", true, false, &err);
    g_assert_cmpuint(f, ==, VIR_MIGRATE_LIVE | VIR_MIGRATE_UNSAFE | VIR_MIGRATE_NON_SHARED_DISK);
    /* Shut off: only the definition moves; there are no disks to copy live. */
    f = vs_migrate_flags(&o, "web1", false, true, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(f, ==, VIR_MIGRATE_OFFLINE | VIR_MIGRATE_PERSIST_DEST | VIR_MIGRATE_UNDEFINE_SOURCE |
                            VIR_MIGRATE_UNSAFE);

    o.mode = VS_MIGRATE_LIVE;
    g_assert_cmpuint(vs_migrate_flags(&o, "web1", false, true, &err), ==, 0);
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(err->message, "domain 'web1' is shut off: --live"));
    g_assert_nonnull(strstr(err->message, "--offline"));
    g_clear_error(&err);
    o.mode = VS_MIGRATE_OFFLINE;
    g_assert_cmpuint(vs_migrate_flags(&o, "web1", true, true, &err), ==, 0);
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(err->message, "domain 'web1' is running: --offline"));
    g_clear_error(&err);
    o.mode = VS_MIGRATE_AUTO;
    g_assert_cmpuint(vs_migrate_flags(&o, "web1", false, false, &err), ==, 0);
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
}

static void
test_memory(void)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *d1 = NULL, *d2 = NULL, *d3 = NULL;
    const char *dest = "qemu+tcp://h2/system";

    g_assert_true(vs_migrate_memory_fits("web1", dest, 256 * 1024, 256ULL << 20, &d1, &err));
    g_assert_no_error(err);
    g_assert_cmpstr(d1, ==, "the guest needs 256 MiB, qemu+tcp://h2/system has 256 MiB free");
    g_assert_true(vs_migrate_memory_fits("web1", dest, 1024, 8ULL << 30, &d2, &err));
    g_assert_false(vs_migrate_memory_fits("web1", dest, 256 * 1024 + 1, 256ULL << 20, &d3, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_FAILED);
    g_assert_cmpstr(err->message, ==, "migrate: memory: domain 'web1' needs 257 MiB, the destination "
                    "qemu+tcp://h2/system has 256 MiB free: free memory there, or migrate to another host");
}

static const char *
check_names(const VsMigrateResult *r)
{
    GString *s = g_string_new(NULL);

    for (guint i = 0; i < r->checks->len; i++) {
        const VsMigrateCheck *c = r->checks->pdata[i];
        g_string_append_printf(s, "%s%s:%s", i ? " " : "", c->name, c->ok ? "ok" : "failed");
    }
    return g_intern_string(g_string_free(s, FALSE));
}

/* How many files DIR holds (none when it does not exist). */
static guint
entries(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    guint n = 0;

    while (d && g_dir_read_name(d))
        n++;
    if (d)
        g_dir_close(d);
    return n;
}

static void
test_run_until_destination(void)
{
    g_autofree char *locks = g_build_filename(tmpdir, "locks", NULL);
    g_autofree char *state = g_build_filename(tmpdir, "state", NULL);
    g_autofree char *journals = g_build_filename(state, "journal", NULL);
    g_autoptr(GError) err = NULL;
    g_autoptr(VsMigrateResult) r = NULL;
    virConnectPtr conn;
    VsMigrateOptions o;
    int lock;

    g_setenv("VIRTSNAP_LOCK_DIR", locks, TRUE);
    conn = vs_conn_open("test:///default", &err);
    g_assert_no_error(err);
    vs_migrate_options_init(&o);
    o.state_dir = state;

    /* No such domain. */
    g_assert_false(vs_migrate(conn, "nosuch", "test:///default", &o, &r, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(err->message, "migrate: no domain 'nosuch'"));
    g_clear_error(&err);
    g_clear_pointer(&r, vs_migrate_result_free);

    /* Another run holds the domain: refused, naming it, nothing else checked. */
    lock = vs_domain_lock("/srv/other", "6695eb01-f6a4-8304-79aa-97f2502e193f", "test", "backup", 0, &err);
    g_assert_no_error(err);
    g_assert_false(vs_migrate(conn, "test", "qemu+tcp://127.0.0.1:1/system", &o, &r, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_BUSY);
    g_assert_nonnull(strstr(err->message, "migrate: lock: domain 'test' is in use by another run: virtsnap backup"));
    g_assert_cmpstr(check_names(r), ==, "lock:failed");
    vs_domain_unlock(lock);
    g_clear_error(&err);
    g_clear_pointer(&r, vs_migrate_result_free);

    /* The destination does not answer: named, after the source's own checks. */
    g_assert_false(vs_migrate(conn, "test", "qemu+tcp://127.0.0.1:1/system", &o, &r, &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_UNREACHABLE);
    g_assert_nonnull(strstr(err->message, "migrate: destination qemu+tcp://127.0.0.1:1/system cannot be reached"));
    g_assert_cmpstr(check_names(r), ==, "lock:ok overlay:ok destination:failed");
    g_assert_cmpstr(r->uuid, ==, "6695eb01-f6a4-8304-79aa-97f2502e193f");
    g_assert_cmpuint(r->flags, ==, VIR_MIGRATE_LIVE | VIR_MIGRATE_PERSIST_DEST | VIR_MIGRATE_UNDEFINE_SOURCE);
    /* Nothing was journaled: the journal is written just before the move. */
    g_assert_cmpuint(entries(journals), ==, 0);
    g_clear_error(&err);
    /* The lock was let go: a backup may take it now. */
    lock = vs_domain_lock("/srv/other", "6695eb01-f6a4-8304-79aa-97f2502e193f", "test", "backup", 0, &err);
    g_assert_no_error(err);
    vs_domain_unlock(lock);
    vs_conn_close(conn);
}

int
main(int argc, char **argv)
{
    int rc;

    g_test_init(&argc, &argv, NULL);
    tmpdir = g_dir_make_tmp("vs-migrate-XXXXXX", NULL);
    g_test_add_func("/migrate/flags", test_flags);
    g_test_add_func("/migrate/memory", test_memory);
    g_test_add_func("/migrate/run-until-destination", test_run_until_destination);
    rc = g_test_run();
    {
        g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmpdir);
        (void)!system(cmd);
    }
    return rc;
}
