/* A backup host off the hypervisor: `virtsnap -c qemu+tcp://HOST/system`
 * where HOST is another machine. Whether a connection is remote is told from
 * its URI alone, before anything is opened: a URI with a host that is not
 * this machine (not a loopback name or address, not an address of one of our
 * interfaces). The disk paths such a libvirtd names are the hypervisor's,
 * never ours, so a remote run reads only what comes over the network: the
 * NBD export of a pull-mode backup job, listening on TCP on the hypervisor,
 * with its scratch files there (beside each image, libvirt's to make and remove). What needs the hypervisor's files
 * here (overlays committed back after reading the base images, a push job
 * writing into our files, storage snapshots by local providers) is refused
 * before anything is touched, naming what to use instead. */
#include "config.h"
#include "backup-internal.h"

#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

/* The port a remote pull job's NBD server listens on unless --nbd-port says:
 * NBD's registered port. libvirt 9.0 picks none itself for TCP. */
#define NBD_DEFAULT_PORT 10809

static bool
same_address(const struct sockaddr *a, const struct sockaddr *b)
{
    if (!a || !b || a->sa_family != b->sa_family)
        return false;
    if (a->sa_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->sa_family == AF_INET6)
        return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                       &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr));
    return false;
}

static bool
is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return false;
}

/* Whether HOST names this machine: a loopback address, or one of our
 * interfaces' (as the kernel of this network namespace has them). A name
 * that does not resolve here is not ours. */
static bool
host_is_local(const char *host)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *res = NULL;
    struct ifaddrs *ifs = NULL;
    bool local = false;

    if (!g_ascii_strcasecmp(host, "localhost") || !g_ascii_strcasecmp(host, "localhost.localdomain"))
        return true;
    if (getaddrinfo(host, NULL, &hints, &res) != 0)
        return false;
    if (getifaddrs(&ifs) < 0)
        ifs = NULL;
    for (const struct addrinfo *ai = res; ai && !local; ai = ai->ai_next) {
        local = is_loopback(ai->ai_addr);
        for (const struct ifaddrs *i = ifs; i && !local; i = i->ifa_next)
            local = same_address(ai->ai_addr, i->ifa_addr);
    }
    freeaddrinfo(res);
    if (ifs)
        freeifaddrs(ifs);
    return local;
}

char *
vs_uri_remote_host(const char *uri)
{
    g_autoptr(GUri) u = uri ? g_uri_parse(uri, G_URI_FLAGS_NON_DNS, NULL) : NULL;
    const char *host = u ? g_uri_get_host(u) : NULL;

    if (!host || !*host || host_is_local(host))
        return NULL;
    return g_strdup(host);
}

/* Why OPTS cannot run from a host that is not the hypervisor, or NULL. */
static const char *
remote_refusal(const VsBackupOptions *opts)
{
    if (opts->storage_snapshot)
        return "--storage-snapshot: its providers snapshot the disks' storage through paths "
               "and tools of this host, and a remote hypervisor's disks are not here; use "
               "--mode=begin (the disks come over the backup job's NBD export), or run virtsnap "
               "on the hypervisor";
    if (opts->push || opts->push_dir)
        return "--push/--push-dir: a push-mode job has the hypervisor's QEMU write the disks "
               "into files of virtsnap's, which are on this host; leave --push out (a pull-mode "
               "job's NBD export is read over TCP), or run virtsnap on the hypervisor";
    if (opts->overlay_dir)
        return "--overlay-dir: overlays go beside the disks on the hypervisor, not into a "
               "directory of this host; use --mode=begin, or run virtsnap on the hypervisor";
    if (opts->mode == VS_BACKUP_METHOD_OVERLAY)
        return "--mode=overlay (the default): an overlay backup reads each disk's base image "
               "by its path, which is the hypervisor's, not this host's; use --mode=begin (a "
               "backup job whose NBD export is read over TCP), or run virtsnap on the "
               "hypervisor";
    return NULL;
}

bool
vs_backup_check_remote(const VsBackupOptions *opts, GError **error)
{
    g_autofree char *host = vs_uri_remote_host(opts->uri);
    const char *why = host ? remote_refusal(opts) : NULL;

    if (why) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARG,
                    "backup: %s is another host (-c %s), and a remote run cannot use %s", host,
                    opts->uri, why);
        return false;
    }
    return true;
}

guint
remote_nbd_port(const Run *run, const DomJob *j)
{
    guint port = run->opts->nbd_port ? (guint)run->opts->nbd_port : NBD_DEFAULT_PORT;

    /* One port for each domain of the run: their jobs run at once. */
    for (guint i = 0; run->doms && i < run->doms->len; i++)
        if (run->doms->pdata[i] == j)
            return port + i;
    return port + (run->doms ? run->doms->len : 0);
}

char *
remote_nbd_uri(const char *host, guint port, const char *export)
{
    /* An IPv6 literal goes in brackets. */
    bool v6 = strchr(host, ':') != NULL;

    return g_strdup_printf("nbd://%s%s%s:%u/%s", v6 ? "[" : "", host, v6 ? "]" : "", port, export);
}
