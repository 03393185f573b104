/* Mounts: one disk of a backup served read-only over NBD (started, waited
 * for, stopped), and who QEMU runs as (the owner of a socket it must reach).
 *
 * The server is nbdkit with our plugin (block/nbdkit/nbdkit-virtsnap.c) rather than a
 * server of our own: nbdkit does the protocol (structured replies, block
 * status, multi-conn, many clients) and is what qemu-img, QEMU, nbdfuse and
 * guestfish are tested against. nbdkit runs in the foreground as our child,
 * in its own session unless the mount is a foreground one, with --pidfile:
 * nbdkit writes the pid file only once its socket listens and the plugin has
 * opened the backup, so the pid file appearing is the "ready" signal, and
 * nbdkit exiting first is the error (its log says why). Each mount is
 * registered in RUN/mounts/ID.json (mount-registry.c) beside ID.pid, ID.log
 * and, by default, ID.sock. RUN is /run/virtsnap (mode 0755: QEMU, running as libvirt-qemu,
 * must reach a socket there); the socket itself is root's alone (0600) unless
 * given to an owner, e.g. QEMU's DAC user. The pieces of restore --instant
 * that sit on top of mounts are in instant.c. */
#include "config.h"
#include "driver-internal.h"
#include "mount-internal.h"
#include "vs-block.h"
#include "vs-restore.h"
#include "vs-repo.h"
#include "vs-xml.h"

#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define READY_TIMEOUT_S 30
#define STOP_TIMEOUT_S 10
#define LOG_TAIL 1500

/* SIGTERM, then SIGKILL after STOP_TIMEOUT_S; true once gone. */
static bool
stop_pid(int pid, uint64_t starttime)
{
    gint64 deadline = g_get_monotonic_time() + STOP_TIMEOUT_S * G_USEC_PER_SEC;

    if (!vs_mount_pid_alive(pid, starttime))
        return true;
    kill(pid, SIGTERM);
    while (g_get_monotonic_time() < deadline) {
        (void)waitpid(pid, NULL, WNOHANG);
        if (!vs_mount_pid_alive(pid, starttime))
            return true;
        g_usleep(20 * 1000);
    }
    kill(pid, SIGKILL);
    for (int i = 0; i < 250; i++) {
        (void)waitpid(pid, NULL, WNOHANG);
        if (!vs_mount_pid_alive(pid, starttime))
            return true;
        g_usleep(20 * 1000);
    }
    return false;
}

static char *
log_tail(const char *log)
{
    g_autofree char *text = NULL;
    size_t len = 0;
    const char *start;

    if (!log || !g_file_get_contents(log, &text, &len, NULL) || len == 0)
        return g_strdup("(nothing logged)");
    start = len > LOG_TAIL ? text + len - LOG_TAIL : text;
    return g_strstrip(g_strdup(start));
}

/* ------------------------------------------------------------------------- */
/* Starting                                                                   */

static bool
parse_id(const char *s, unsigned long *out)
{
    char *end = NULL;

    if (*s == '+')
        s++;
    if (!g_ascii_isdigit(*s))
        return false;
    errno = 0;
    *out = strtoul(s, &end, 10);
    return !errno && end && !*end && *out < (unsigned long)G_MAXINT32;
}

/* USER[:GROUP], +UID[:+GID]; a user named without a group brings their group. */
static bool
parse_owner(const char *owner, uid_t *uid, gid_t *gid, GError **error)
{
    g_auto(GStrv) parts = g_strsplit(owner, ":", 2);
    unsigned long n;

    *gid = (gid_t)-1;
    if (!parts[0] || !*parts[0])
        goto bad;
    if (parse_id(parts[0], &n)) {
        *uid = (uid_t)n;
    } else {
        struct passwd *pw = getpwnam(parts[0]);
        if (!pw) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "mount: --owner %s: no user %s",
                        owner, parts[0]);
            return false;
        }
        *uid = pw->pw_uid;
        *gid = pw->pw_gid;
    }
    if (parts[1] && *parts[1]) {
        if (parse_id(parts[1], &n)) {
            *gid = (gid_t)n;
        } else {
            struct group *gr = getgrnam(parts[1]);
            if (!gr) {
                g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "mount: --owner %s: no group %s",
                            owner, parts[1]);
                return false;
            }
            *gid = gr->gr_gid;
        }
    } else if (parts[1]) {
        goto bad;
    }
    return true;
bad:
    g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                "mount: --owner %s: give USER, USER:GROUP or +UID:+GID", owner);
    return false;
}

static bool
socket_answers(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok;

    if (fd < 0)
        return false;
    g_strlcpy(sa.sun_path, path, sizeof sa.sun_path);
    ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

static char *
plugin_path(void)
{
    const char *env = g_getenv("VIRTSNAP_NBDKIT_PLUGIN");
    g_autofree char *exe = g_file_read_link("/proc/self/exe", NULL);

    if (env && *env)
        return g_strdup(env);
    if (exe) {
        /* Run from a build tree: tools/virtsnap beside block/nbdkit-virtsnap-plugin.so */
        g_autofree char *dir = g_path_get_dirname(exe);
        g_autofree char *cand = g_build_filename(dir, "..", "block", "nbdkit-virtsnap-plugin.so", NULL);
        if (g_file_test(cand, G_FILE_TEST_IS_REGULAR))
            return g_canonicalize_filename(cand, NULL);
    }
    return g_strdup("virtsnap");         /* installed in nbdkit's plugin directory */
}

typedef struct {
    bool new_session;
} ChildSetup;

static void
child_setup(gpointer data)
{
    ChildSetup *cs = data;

    if (cs->new_session)
        setsid();
}

/* What the backup says about the disk: full id, domain name, size. */
static bool
check_backup(const VsMountOptions *o, VsMount *m, GError **error)
{
    g_autoptr(VsRepo) repo = vs_repo_open(o->repo_path, false, false, 0, error);
    g_autoptr(VsManifest) man = NULL;
    const VsManifestDomain *d = NULL;
    const VsManifestDisk *k;

    if (!repo) {
        vs_error_prefix(error, "mount");
        return false;
    }
    if (!(man = vs_repo_load_manifest_of(repo, o->backup_id ? o->backup_id : "latest", o->domain,
                                         error))) {
        vs_error_prefix(error, "mount: backup '%s'", o->backup_id ? o->backup_id : "latest");
        return false;
    }
    if (!(d = vs_manifest_lookup_domain(man, o->domain))) {
        g_autoptr(GString) have = g_string_new(NULL);
        for (guint i = 0; i < man->domains->len; i++)
            g_string_append_printf(have, "%s%s", i ? ", " : "",
                                   ((VsManifestDomain *)man->domains->pdata[i])->name);
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND,
                    "mount: backup %s has no domain '%s' (it holds: %s)", man->id, o->domain, have->str);
        return false;
    }
    if (!(k = vs_manifest_find_disk(d, o->disk))) {
        g_autoptr(GString) have = g_string_new(NULL);
        for (guint i = 0; i < d->disks->len; i++)
            g_string_append_printf(have, "%s%s", i ? ", " : "",
                                   ((VsManifestDisk *)d->disks->pdata[i])->target);
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND,
                    "mount: domain '%s' in backup %s has no disk %s (it has: %s)", d->name, man->id,
                    o->disk, have->str);
        return false;
    }
    if (!vs_manifest_disk_check_in_repo("mount", o->repo_path, man->id, d->name, k, error))
        return false;
    m->repo = g_canonicalize_filename(o->repo_path, NULL);
    m->backup_id = g_strdup(man->id);
    m->domain = g_strdup(d->name);
    m->disk = g_strdup(k->target);
    m->virtual_size = k->virtual_size;
    return true;
}

bool
vs_mount_check_options(const VsMountOptions *o, GError **error)
{
    if (!o->repo_path || !*o->repo_path) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "mount: no repository: give --repo DIR or set VIRTSNAP_REPO");
        return false;
    }
    if (!o->domain || !*o->domain || !o->disk || !*o->disk || (o->backup_id && !*o->backup_id)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "mount: name the backup, domain and disk");
        return false;
    }
    if (o->socket && o->port) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "mount: --socket and --port exclude each other");
        return false;
    }
    if (o->port < 0 || o->port > 65535) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "mount: --port %d: give 1 to 65535", o->port);
        return false;
    }
    if (o->owner && o->port) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG, "mount: --owner applies to a socket, not to --port");
        return false;
    }
    return true;
}

/* M's endpoint: TCP on 127.0.0.1:PORT, or a unix socket (by default
 * RUN/mounts/ID.sock) whose directory exists and that no server answers on. */
static bool
mount_endpoint(const VsMountOptions *o, VsMount *m, GError **error)
{
    struct sockaddr_un sa;
    g_autofree char *sdir = NULL, *q = NULL;
    struct stat st;

    if (o->port) {
        m->port = o->port;
        m->uri = g_strdup_printf("nbd://127.0.0.1:%d", o->port);
        return true;
    }
    m->socket = o->socket ? g_canonicalize_filename(o->socket, NULL) : vs_mount_file(m->id, ".sock");
    if (strlen(m->socket) >= sizeof sa.sun_path) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "mount: socket path %s is too long (at most %zu bytes)", m->socket,
                    sizeof sa.sun_path - 1);
        return false;
    }
    sdir = g_path_get_dirname(m->socket);
    if (!g_file_test(sdir, G_FILE_TEST_IS_DIR)) {
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_FOUND,
                    "mount: the socket's directory %s does not exist", sdir);
        return false;
    }
    if (lstat(m->socket, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                        "mount: %s exists and is not a socket", m->socket);
            return false;
        }
        if (socket_answers(m->socket)) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                        "mount: %s is in use by a running server", m->socket);
            return false;
        }
        unlink(m->socket);           /* left by a server that died */
    }
    q = g_uri_escape_string(m->socket, "/", FALSE);
    m->uri = g_strdup_printf("nbd+unix:///?socket=%s", q);
    return true;
}

/* nbdkit's command line for M (NULL-terminated). */
static GPtrArray *
nbdkit_argv(const VsMountOptions *o, const VsMount *m, const char *nbdkit, const char *plugin,
            const char *pidfile)
{
    GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);

    g_ptr_array_add(argv, g_strdup(nbdkit));
    /* nbdkit in the foreground dies with its parent (PR_SET_PDEATHSIG), so a
     * mount that outlives us is nbdkit's own daemon. */
    if (o->foreground)
        g_ptr_array_add(argv, g_strdup("--foreground"));
    g_ptr_array_add(argv, g_strdup("--readonly"));
    g_ptr_array_add(argv, g_strdup("--log=stderr"));
    g_ptr_array_add(argv, g_strdup("--pidfile"));
    g_ptr_array_add(argv, g_strdup(pidfile));
    if (o->foreground)
        g_ptr_array_add(argv, g_strdup("--exit-with-parent"));
    if (m->port) {
        g_ptr_array_add(argv, g_strdup("--ipaddr"));
        g_ptr_array_add(argv, g_strdup("127.0.0.1"));
        g_ptr_array_add(argv, g_strdup("--port"));
        g_ptr_array_add(argv, g_strdup_printf("%d", m->port));
    } else {
        g_ptr_array_add(argv, g_strdup("--unix"));
        g_ptr_array_add(argv, g_strdup(m->socket));
    }
    g_ptr_array_add(argv, g_strdup(plugin));
    g_ptr_array_add(argv, g_strdup_printf("repo=%s", m->repo));
    g_ptr_array_add(argv, g_strdup_printf("backup=%s", m->backup_id));
    g_ptr_array_add(argv, g_strdup_printf("domain=%s", m->domain));
    g_ptr_array_add(argv, g_strdup_printf("disk=%s", m->disk));
    g_ptr_array_add(argv, g_strdup_printf("mount=%s", m->id));
    if (!o->foreground)         /* the daemon's stderr is /dev/null: the plugin logs */
        g_ptr_array_add(argv, g_strdup_printf("log=%s", m->log));
    g_ptr_array_add(argv, NULL);
    return argv;
}

/* Waits until nbdkit (started as PID) is ready: when the pid file names the
 * server, which nbdkit writes once the socket listens (in the background:
 * the daemon writes it after the process we started has exited 0). Sets
 * m->pid; on failure nothing of it runs any more. */
static bool
wait_ready(const VsMountOptions *o, VsMount *m, GPid pid, const char *pidfile, GError **error)
{
    gint64 deadline = g_get_monotonic_time() + READY_TIMEOUT_S * G_USEC_PER_SEC;

    for (bool parent_gone = false;;) {
        g_autofree char *text = NULL;
        int status, p;

        if (g_file_get_contents(pidfile, &text, NULL, NULL) && (p = atoi(text)) > 0 &&
            strchr(text, '\n') && (o->foreground ? p == pid : p != pid)) {
            m->pid = p;
            break;
        }
        if (!parent_gone && waitpid(pid, &status, WNOHANG) == pid) {
            parent_gone = true;
            if (o->foreground || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                g_autofree char *tail = log_tail(m->log);
                g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "mount: nbdkit failed (exit %d): %s",
                            WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), tail);
                return false;
            }
        }
        if (g_get_monotonic_time() > deadline) {
            g_autofree char *tail = log_tail(m->log);
            if (!parent_gone) {
                kill(pid, SIGKILL);
                (void)waitpid(pid, NULL, 0);
            }
            g_set_error(error, VS_ERROR, VS_ERROR_TIMEOUT,
                        "mount: nbdkit was not ready within %d s: %s", READY_TIMEOUT_S, tail);
            return false;
        }
        g_usleep(10 * 1000);
    }
    if (!o->foreground && waitpid(pid, NULL, WNOHANG) == 0)
        (void)waitpid(pid, NULL, 0);     /* the daemon's parent: it exits once it has forked */
    {
        char s = 0;
        (void)vs_mount_proc_stat(m->pid, &s, &m->starttime);
    }
    m->alive = true;
    return true;
}

/* Owner (read and connect) and root only. */
static bool
own_socket(const VsMountOptions *o, const VsMount *m, uid_t uid, gid_t gid, GError **error)
{
    int err = 0;

    if (o->owner && chown(m->socket, uid, gid) < 0)
        err = errno;
    if (!err && chmod(m->socket, gid != (gid_t)-1 ? 0660 : 0600) < 0)
        err = errno;
    if (err) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "mount: giving %s to %s: %s", m->socket,
                    o->owner ? o->owner : "root", g_strerror(err));
        return false;
    }
    return true;
}

VsMount *
vs_mount_start(const VsMountOptions *o, GError **error)
{
    g_autoptr(VsMount) m = g_new0(VsMount, 1);
    g_autofree char *dir = vs_mounts_dir();
    g_autofree char *nbdkit = NULL, *plugin = NULL, *pidfile = NULL, *rnd = NULL;
    g_autoptr(GPtrArray) argv = NULL;
    g_autoptr(GError) lerr = NULL;
    uid_t uid = (uid_t)-1;
    gid_t gid = (gid_t)-1;
    ChildSetup cs = { .new_session = !o->foreground };
    const char *env_nbdkit = g_getenv("VIRTSNAP_NBDKIT");
    GPid pid = 0;
    int logfd;

    if (!vs_mount_check_options(o, error))
        return NULL;
    if (o->owner && !parse_owner(o->owner, &uid, &gid, error))
        return NULL;
    if (!check_backup(o, m, error))
        return NULL;
    nbdkit = env_nbdkit && *env_nbdkit ? g_strdup(env_nbdkit) : g_find_program_in_path("nbdkit");
    if (!nbdkit) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "mount: nbdkit is not installed (apt-get install nbdkit)");
        return NULL;
    }
    plugin = plugin_path();
    if (!vs_make_dir(dir, 0755, error))
        return NULL;

    do {
        g_free(rnd);
        rnd = g_strdup_printf("%08x", g_random_int());
        g_free(pidfile);
        pidfile = vs_mount_file(rnd, ".json");
    } while (g_file_test(pidfile, G_FILE_TEST_EXISTS));
    m->id = g_steal_pointer(&rnd);
    g_free(pidfile);
    pidfile = vs_mount_file(m->id, ".pid");
    m->log = vs_mount_file(m->id, ".log");
    m->instant_dest = g_strdup(o->instant_dest);
    m->instant_tmp = g_strdup(o->instant_tmp);
    m->instant_copy = o->instant_copy;
    if (o->instant_dest) {
        char pst;
        m->restore_pid = getpid();
        (void)vs_mount_proc_stat(m->restore_pid, &pst, &m->restore_starttime);
    }
    if (!mount_endpoint(o, m, error))
        return NULL;

    logfd = open(m->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (logfd < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "mount: %s: %s", m->log, g_strerror(errno));
        return NULL;
    }
    argv = nbdkit_argv(o, m, nbdkit, plugin, pidfile);
    unlink(pidfile);
    if (!g_spawn_async_with_pipes_and_fds(o->foreground ? NULL : "/",
                                          (const char *const *)argv->pdata, NULL,
                                          G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL,
                                          child_setup, &cs, -1, -1, logfd, NULL, NULL, 0, &pid,
                                          NULL, NULL, NULL, &lerr)) {
        close(logfd);
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "mount: starting %s: %s", nbdkit, lerr->message);
        vs_mount_registry_remove(m);
        return NULL;
    }
    close(logfd);
    if (!wait_ready(o, m, pid, pidfile, error)) {
        vs_mount_registry_remove(m);
        return NULL;
    }
    if (m->socket && !own_socket(o, m, uid, gid, error)) {
        stop_pid(m->pid, m->starttime);
        vs_mount_registry_remove(m);
        return NULL;
    }
    if (!vs_mount_registry_write(m, error)) {
        stop_pid(m->pid, m->starttime);
        vs_mount_registry_remove(m);
        return NULL;
    }
    return g_steal_pointer(&m);
}

static volatile sig_atomic_t stop_signal;

static void
on_stop_signal(int sig)
{
    stop_signal = sig;
}

bool
vs_mount_wait(VsMount *m, GError **error)
{
    struct sigaction sa = { .sa_handler = on_stop_signal }, old[3];
    const int sigs[3] = { SIGINT, SIGTERM, SIGHUP };
    int status = 0;
    bool exited = false;

    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; i++)
        sigaction(sigs[i], &sa, &old[i]);
    while (!stop_signal) {
        if (waitpid(m->pid, &status, WNOHANG) == m->pid) {
            exited = true;
            break;
        }
        g_usleep(100 * 1000);
    }
    if (!exited)
        stop_pid(m->pid, m->starttime);
    for (int i = 0; i < 3; i++)
        sigaction(sigs[i], &old[i], NULL);
    if (exited && !(WIFEXITED(status) && WEXITSTATUS(status) == 0) &&
        !(WIFSIGNALED(status) && (WTERMSIG(status) == SIGINT || WTERMSIG(status) == SIGTERM))) {
        g_autofree char *tail = log_tail(m->log);
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "mount: nbdkit ended (status %d): %s",
                    status, tail);
        vs_mount_registry_remove(m);
        return false;
    }
    vs_mount_registry_remove(m);
    return true;
}

/* Which running domain's live XML names M's export, if any (NULL: none). */
static char *
mount_user(const VsMount *m, virConnectPtr conn, GError **error)
{
    virDomainPtr *doms = NULL;
    int n = virConnectListAllDomains(conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
    g_autofree char *needle = m->socket ? g_markup_escape_text(m->socket, -1)
                                        : g_strdup_printf("port='%d'", m->port);
    char *who = NULL;

    if (n < 0) {
        vs_set_libvirt_error(error, VS_ERROR_LIBVIRT, "umount: cannot list the running domains");
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        const char *name = virDomainGetName(doms[i]);
        g_autofree char *xml = who ? NULL : virDomainGetXMLDesc(doms[i], 0);

        if (xml && strstr(xml, needle) && (m->socket || strstr(xml, "protocol='nbd'")))
            who = g_strdup(name ? name : "?");
        virDomainFree(doms[i]);
    }
    free(doms);
    return who ? who : g_strdup("");
}

bool
vs_mount_stop(VsMount *m, virConnectPtr conn, bool force, GError **error)
{
    if (m->alive && conn && !force) {
        g_autofree char *who = mount_user(m, conn, error);

        if (!who) {
            vs_error_prefix(error, "umount: %s (give --force to stop it anyway)", m->id);
            return false;
        }
        if (*who) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                        "umount: domain '%s' is running on %s (a disk of it still reads the backup "
                        "through it): stopping it would fail the guest's reads; finish its copy "
                        "first (virsh blockpull %s DISK --wait), or give --force", who, m->uri, who);
            return false;
        }
    }
    if (m->alive && !stop_pid(m->pid, m->starttime)) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "umount: nbdkit (pid %d) of mount %s does "
                    "not exit", m->pid, m->id);
        return false;
    }
    m->alive = false;
    vs_mount_registry_remove(m);
    return true;
}

/* ------------------------------------------------------------------------- */
/* Who QEMU runs as (the owner a socket QEMU reads must have)                 */

char *
vs_qemu_dac_owner(virConnectPtr conn, const char *virt_type)
{
    g_autofree char *caps = virConnectGetCapabilities(conn);
    xmlDoc *doc;
    xmlNode *root, *host = NULL;
    char *label = NULL;

    if (!caps || !(doc = xmlReadMemory(caps, (int)strlen(caps), "capabilities.xml", NULL,
                                       XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)))
        return NULL;
    root = xmlDocGetRootElement(doc);
    for (xmlNode *c = root ? root->children : NULL; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && !xmlStrcmp(c->name, BAD_CAST "host"))
            host = c;
    for (xmlNode *sm = host ? host->children : NULL; sm && !label; sm = sm->next) {
        bool dac = false;

        if (sm->type != XML_ELEMENT_NODE || xmlStrcmp(sm->name, BAD_CAST "secmodel"))
            continue;
        for (xmlNode *c = sm->children; c; c = c->next) {
            if (c->type == XML_ELEMENT_NODE && !xmlStrcmp(c->name, BAD_CAST "model")) {
                xmlChar *t = xmlNodeGetContent(c);
                dac = t && !xmlStrcmp(t, BAD_CAST "dac");
                xmlFree(t);
            }
        }
        for (xmlNode *c = sm->children; dac && c; c = c->next) {
            xmlChar *type, *t;

            if (c->type != XML_ELEMENT_NODE || xmlStrcmp(c->name, BAD_CAST "baselabel"))
                continue;
            type = xmlGetProp(c, BAD_CAST "type");
            t = xmlNodeGetContent(c);
            if (t && (!label || (virt_type && type && !xmlStrcmp(type, BAD_CAST virt_type)))) {
                g_free(label);
                label = g_strdup((const char *)t);
            }
            xmlFree(type);
            xmlFree(t);
        }
    }
    xmlFreeDoc(doc);
    return label;
}
