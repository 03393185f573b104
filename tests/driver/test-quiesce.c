/* The quiesce token registry and what unquiesce and recover make of a token,
 * against the scripted control plane: tokens of a hostile shape or files not
 * of virtsnap's making are refused before they become paths or decide a
 * thaw; a token whose guardian is gone is settled by recover (its frozen
 * guest thawed, its paused one resumed, the token removed) while a live one
 * is left alone; unquiesce of a token the guardian thawed says so (the
 * snapshot is crash-consistent) and a second one is harmless; a guest that
 * will not thaw keeps the token held. */
#include "config.h"
#include "quiesce-internal.h"
#include "fake-control.h"

#include <glib/gstdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define U1 VS_FAKE_U1
#define U2 "22222222-2222-2222-2222-222222222222"
#define TOKEN "q-20260101-000000-0a0b0c0d"

typedef struct {
    VsFakeFixture fx;
    virDomainPtr vm2;
    char *dir;
    GPtrArray *actions;
} Fixture;

static void
setup(Fixture *f, gconstpointer data)
{
    vs_fake_fixture_setup(&f->fx, data);
    f->vm2 = vs_fake_domain(f->fx.fake, "vm2", U2);
    f->dir = g_dir_make_tmp("vs-quiesce-XXXXXX", NULL);
    f->actions = g_ptr_array_new_with_free_func(g_free);
}

static void
teardown(Fixture *f, gconstpointer data)
{
    g_autofree char *rm = NULL;

    g_ptr_array_unref(f->actions);
    vs_fake_fixture_teardown(&f->fx, data);
    rm = g_strdup_printf("rm -rf '%s'", f->dir);
    g_assert_cmpint(system(rm), ==, 0);
    g_free(f->dir);
}

static VsQuiesceDomain *
domain(const char *name, const char *uuid, bool frozen)
{
    VsQuiesceDomain *d = g_new0(VsQuiesceDomain, 1);

    d->name = g_strdup(name);
    d->uuid = g_strdup(uuid);
    d->frozen = frozen;
    d->suspended = !frozen;
    d->filesystems = frozen ? 1 : -1;
    return d;
}

/* TOKEN in STATE: vm1 frozen, vm2 paused, in state S, its deadline a minute away. */
static void
write_token(Fixture *f, VsQuiesceState s)
{
    g_autoptr(VsQuiesceToken) t = g_new0(VsQuiesceToken, 1);
    g_autoptr(GError) err = NULL;

    t->token = g_strdup(TOKEN);
    t->state = s;
    t->max_freeze_ms = 60000;
    t->agent_timeout = 5;
    t->created_at = g_get_real_time() / 1000;
    t->deadline_at = t->created_at + 60000;
    t->unquiesced_at = t->guardian_thawed_at = -1;
    t->domains = g_ptr_array_new_with_free_func((GDestroyNotify)vs_quiesce_domain_free);
    g_ptr_array_add(t->domains, domain("vm1", U1, true));
    g_ptr_array_add(t->domains, domain("vm2", U2, false));
    g_assert_true(vs_quiesce_token_write(f->dir, t, &err));
    g_assert_no_error(err);
}

static char *
token_file(Fixture *f, const char *name)
{
    return g_build_filename(f->dir, "quiesce", name, NULL);
}

/* vm1 thawed (it says so), vm2 resumed: on a thread each, in any order. */
static void
expect_release(Fixture *f, bool thaw_ok)
{
    VsFake *fake = f->fx.fake;

    vs_fake_any_order_begin(fake);
    vs_fake_add_item(fake, "domain_lookup_uuid " U1, "vm1");
    vs_fake_add_item(fake, "domain_is_active vm1", "1");
    if (thaw_ok) {
        vs_fake_add_item(fake, "fs_thaw vm1", "ok");
        vs_fake_add_item(fake, "agent_command vm1 guest-fsfreeze-status", "{\"return\":\"thawed\"}");
    } else {
        vs_fake_add_error(fake, "fs_thaw vm1", VS_ERROR_LIBVIRT, "agent busy");
        vs_fake_add_error(fake, "agent_command vm1 guest-fsfreeze-thaw", VS_ERROR_LIBVIRT, "agent busy");
        vs_fake_add_item(fake, "agent_command vm1 guest-fsfreeze-status", "{\"return\":\"frozen\"}");
    }
    vs_fake_add_item(fake, "domain_lookup_uuid " U2, "vm2");
    vs_fake_add_item(fake, "domain_is_active vm2", "1");
    vs_fake_add_item(fake, "domain_state vm2", "paused");
    vs_fake_add_item(fake, "domain_resume vm2", "ok");
    vs_fake_any_order_end(fake);
}

static void
test_token_shape(void)
{
    const char *good[] = { TOKEN, "a", "q-1", NULL };
    const char *bad[] = { "", "-q", "../etc", "Q-1", "q_1", "q/1", "q 1", ".lock",
                          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", NULL };
    g_autofree char *made = vs_quiesce_token_new();

    for (size_t i = 0; good[i]; i++)
        g_assert_true(vs_quiesce_token_valid(good[i]));
    for (size_t i = 0; bad[i]; i++)
        g_assert_false(vs_quiesce_token_valid(bad[i]));
    g_assert_false(vs_quiesce_token_valid(NULL));
    g_assert_true(vs_quiesce_token_valid(made));
}

static void
test_registry(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VsQuiesceToken) t = NULL;
    g_autofree char *path = token_file(f, TOKEN ".json");
    g_autofree char *qdir = g_build_filename(f->dir, "quiesce", NULL);
    g_autofree char *text = NULL;
    g_auto(GStrv) list = NULL;
    struct stat st;

    (void)data;
    write_token(f, VS_QSTATE_QUIESCED);
    g_assert_cmpint(stat(qdir, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 0777, ==, 0700);
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 0777, ==, 0600);
    t = vs_quiesce_token_read(f->dir, TOKEN, &err);
    g_assert_no_error(err);
    g_assert_cmpint(t->state, ==, VS_QSTATE_QUIESCED);
    g_assert_cmpuint(t->domains->len, ==, 2);
    g_assert_true(((VsQuiesceDomain *)t->domains->pdata[1])->suspended);

    /* Names that are not a token's never become paths; strays are not listed. */
    g_assert_null(vs_quiesce_token_read(f->dir, "../journal/x", &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_INVALID_ARG);
    g_clear_error(&err);
    g_assert_null(vs_quiesce_token_read(f->dir, "q-none", &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
    g_clear_error(&err);
    {
        g_autofree char *stray = token_file(f, "Bad.json");
        g_autofree char *tmp = token_file(f, "q-x.json.tmp");
        g_assert_true(g_file_set_contents(stray, "{}", -1, NULL));
        g_assert_true(g_file_set_contents(tmp, "{}", -1, NULL));
    }
    list = vs_quiesce_token_list(f->dir);
    g_assert_cmpuint(g_strv_length(list), ==, 1);
    g_assert_cmpstr(list[0], ==, TOKEN);

    /* A file that names another token, or a domain by something not a UUID,
     * or a symbolic link: refused. */
    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    {
        const char *const edits[][2] = {
            { "\"token\" : \"" TOKEN "\"", "\"token\" : \"q-other\"" },
            { U2, "../../etc/passwd" },
            { "\"quiesced\"", "\"thawed-by-magic\"" },
        };
        for (size_t i = 0; i < G_N_ELEMENTS(edits); i++) {
            g_autoptr(GString) bad = g_string_new(text);
            g_assert_cmpuint(g_string_replace(bad, edits[i][0], edits[i][1], 1), ==, 1);
            g_assert_true(g_file_set_contents(path, bad->str, -1, NULL));
            g_assert_null(vs_quiesce_token_read(f->dir, TOKEN, &err));
            g_assert_error(err, VS_ERROR, VS_ERROR_IO);
            g_clear_error(&err);
        }
    }
    g_assert_cmpint(unlink(path), ==, 0);
    g_assert_cmpint(symlink("/etc/hostname", path), ==, 0);
    g_assert_null(vs_quiesce_token_read(f->dir, TOKEN, &err));
    g_assert_nonnull(err);
}

static void
test_recover_dead_guardian(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *path = token_file(f, TOKEN ".json");
    g_autofree char *said = NULL;

    (void)data;
    write_token(f, VS_QSTATE_QUIESCED);
    expect_release(f, true);
    g_assert_true(vs_quiesce_recover(vs_fake_conn(f->fx.fake), f->dir, f->actions, &err));
    g_assert_no_error(err);
    g_ptr_array_add(f->actions, NULL);
    said = g_strjoinv("\n", (char **)f->actions->pdata);
    g_assert_nonnull(strstr(said, "thawed domain 'vm1'"));
    g_assert_nonnull(strstr(said, "resumed domain 'vm2'"));
    g_assert_nonnull(strstr(said, "settled quiesce token " TOKEN));
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
}

static void
test_recover_live_left(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *path = token_file(f, TOKEN ".json");
    g_autofree char *id = vs_quiesce_journal_id(TOKEN);
    VsJournal *j;

    (void)data;
    write_token(f, VS_QSTATE_QUIESCED);
    /* Its guardian holds the journal: no call, the token stays. */
    j = vs_journal_create(f->dir, id, &err);
    g_assert_no_error(err);
    g_assert_cmpint(vs_quiesce_live(f->dir, TOKEN), ==, 1);
    g_assert_true(vs_quiesce_recover(vs_fake_conn(f->fx.fake), f->dir, f->actions, &err));
    g_assert_cmpuint(f->actions->len, ==, 0);
    g_assert_true(g_file_test(path, G_FILE_TEST_EXISTS));
    vs_journal_finish(j);
    g_assert_cmpint(vs_quiesce_live(f->dir, TOKEN), ==, 0);
}

static VsUnquiesceResult *
unquiesce(Fixture *f, const char *token, GError **error)
{
    VsQuiesceOptions o;

    vs_quiesce_options_init(&o);
    o.state_dir = f->dir;
    return vs_unquiesce(vs_fake_conn(f->fx.fake), token, &o, error);
}

/* TOKEN written in state S, then unquiesced with vm1's thaw THAW_OK. */
static VsUnquiesceResult *
unquiesce_in(Fixture *f, VsQuiesceState s, bool thaw_ok)
{
    g_autoptr(GError) err = NULL;
    VsUnquiesceResult *r;

    write_token(f, s);
    expect_release(f, thaw_ok);
    r = unquiesce(f, TOKEN, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(r->tokens->len, ==, 1);
    return r;
}

static void
test_unquiesce_after_guardian(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    /* A guest the guardian could not settle gets another try. */
    g_autoptr(VsUnquiesceResult) r = unquiesce_in(f, VS_QSTATE_GUARDIAN_THAWED, true);
    g_autoptr(VsUnquiesceResult) again = NULL;
    const VsUnquiesceToken *t = r->tokens->pdata[0];

    (void)data;
    g_assert_true(t->guardian_thawed);
    g_assert_false(t->deadline_kept);
    g_assert_false(t->already);
    /* The second: nothing done, said so. */
    again = unquiesce(f, TOKEN, &err);
    g_assert_no_error(err);
    t = again->tokens->pdata[0];
    g_assert_true(t->already);
    g_assert_true(t->guardian_thawed);
    g_assert_cmpuint(t->domains->len, ==, 0);
    /* A token that never was is not "already". */
    g_assert_null(unquiesce(f, "q-never", &err));
    g_assert_error(err, VS_ERROR, VS_ERROR_NOT_FOUND);
}

static void
test_unquiesce_thaw_fails(Fixture *f, gconstpointer data)
{
    g_autoptr(VsUnquiesceResult) r = unquiesce_in(f, VS_QSTATE_QUIESCED, false);
    const VsUnquiesceToken *t = r->tokens->pdata[0];
    const VsUnquiesceDomain *vm1 = t->domains->pdata[0], *vm2 = t->domains->pdata[1];
    g_autoptr(VsQuiesceToken) now = NULL;
    g_autoptr(GError) err = NULL;

    (void)data;
    g_assert_true(t->deadline_kept);
    g_assert_false(vm1->thawed);
    g_assert_nonnull(strstr(vm1->error, "domain 'vm1'"));
    g_assert_true(vm2->resumed);
    /* Still held: the guardian keeps the deadline. */
    now = vs_quiesce_token_read(f->dir, TOKEN, &err);
    g_assert_no_error(err);
    g_assert_cmpint(now->state, ==, VS_QSTATE_QUIESCED);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/quiesce/token-shape", test_token_shape);
#define ADD(path, fn) g_test_add(path, Fixture, NULL, setup, fn, teardown)
    ADD("/quiesce/registry", test_registry);
    ADD("/quiesce/recover-dead-guardian", test_recover_dead_guardian);
    ADD("/quiesce/recover-live-left", test_recover_live_left);
    ADD("/quiesce/unquiesce-after-guardian", test_unquiesce_after_guardian);
    ADD("/quiesce/unquiesce-thaw-fails", test_unquiesce_thaw_fails);
    return g_test_run();
}
