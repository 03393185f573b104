#!/bin/bash
# scripts/deps.sh [--test] -- install every Debian 12 package virtsnap needs to build and
# run (with --test: also what the integration tests need: iSCSI/NFS targets, valgrind...),
# then make sure libvirtd can use the iscsi-direct and rbd storage drivers.
#
# Idempotent and quiet when nothing is missing: dpkg is asked first, and apt-get (update +
# install) runs only if a package is absent, so repeated test runs neither need the network
# nor root. Only Debian's archive is used.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/tests/lib/daemons.sh"

TEST=0
case "${1:-}" in
  --test) TEST=1 ;;
  "") ;;
  *) echo "usage: $0 [--test]" >&2; exit 2 ;;
esac

BUILD_PKGS="meson ninja-build pkg-config gcc clang libglib2.0-dev libvirt-dev libxml2-dev
  libjson-glib-dev libzstd-dev libssl-dev libnbd-dev libnfs-dev libiscsi-dev nbdkit-plugin-dev librbd-dev"
RUN_PKGS="qemu-system-x86 qemu-utils qemu-block-extra libvirt-daemon-system libvirt-clients
  libvirt-daemon-driver-storage-iscsi-direct libvirt-daemon-driver-storage-rbd cpio e2fsprogs libnbd-bin python3-libnbd
  python3-libvirt jq nbdkit libxml2-utils"
# systemd: only for /usr/bin/systemd-socket-activate (nfs-target.sh's loopback-only rpcbind)
TEST_PKGS="tgt libiscsi-bin nfs-ganesha nfs-ganesha-vfs rpcbind systemd libnfs-utils xfsprogs
  util-linux iproute2 valgrind zstd btrfs-progs ceph-mon ceph-osd ceph-common genisoimage
  resource-agents pacemaker-cli-utils"
# Installed without their recommends (ceph-mgr, radosgw...): tests/targets/ceph-target.sh needs
# only these (the rbd snapshot provider's test, CEPH_RGW=0).
# resource-agents (ocf-tester) and pacemaker-cli-utils (crm_resource) for tests/integration/cluster.sh:
# without recommends, no cluster daemon is wanted.
NORECOMMENDS="ceph-mon ceph-osd ceph-common resource-agents pacemaker-cli-utils"

log() { echo "deps: $*" >&2; }

pkgs="$BUILD_PKGS $RUN_PKGS"
[ "$TEST" = 1 ] && pkgs="$pkgs $TEST_PKGS"
missing=""
for p in $pkgs; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$st" = "install ok installed" ] || missing="$missing $p"
done

# Services that apt may start on a machine without a policy-rc.d: they bind 0.0.0.0 and take
# the ports (111, 2049, 3260) the loopback-only test targets need.
STRAYS="rpcbind ganesha.nfsd tgtd"
pids_of() { local n; for n in $STRAYS; do pgrep -x "$n" || true; done | sort; }

if [ -n "$missing" ]; then
  [ "$(id -u)" = 0 ] || { log "missing:$missing -- run as root to install them"; exit 1; }
  log "installing:$missing"
  before=$(pids_of)
  # libvirtd loads storage drivers only at start, so the iscsi-direct and rbd drivers go in first.
  first=""
  for p in libvirt-daemon-driver-storage-iscsi-direct libvirt-daemon-driver-storage-rbd; do
    case " $missing " in *" $p "*) first="$first $p" ;; esac
  done
  apt-get update -q
  if [ -n "$first" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $first
  fi
  plain="" norec=""
  for p in $missing; do
    case " $NORECOMMENDS " in *" $p "*) norec="$norec $p" ;; *) plain="$plain $p" ;; esac
  done
  [ -z "$plain" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -q $plain
  [ -z "$norec" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $norec
  after=$(pids_of)
  new=$(comm -13 <(echo "$before") <(echo "$after"))
  for pid in $new; do
    log "stopping $(cat "/proc/$pid/comm" 2>/dev/null || echo '?') (pid $pid) started by apt"
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in $new; do    # the ports must be free when the first test starts its target
    for _ in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
else
  log "all $(echo $pkgs | wc -w) packages installed"
fi

# The demo and the tests build their guest with tests/guest/mkguest.sh, which resolves the
# kernel with apt-cache and fetches it with `apt-get download`: a fresh container may have
# every package installed but no apt lists.
if ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then log "no apt lists for the guest kernel: apt-get update"; apt-get update -q
  else log "WARNING: no apt lists (apt-get update as root); the test guest cannot be built"; fi
fi

# A libvirtd that was running before a driver was installed says supported='no'.
drivers_ok() { vs_iscsi_direct_ok && vs_rbd_pool_ok; }
if pgrep -x libvirtd >/dev/null && vs_libvirt_answers && ! drivers_ok; then
  if [ "$(id -u)" = 0 ]; then
    vs_libvirtd_restart && drivers_ok ||
      log "WARNING: libvirtd lacks the iscsi-direct or rbd pool driver; iscsi-direct/rbd pool tests will fail or skip"
  else
    log "WARNING: libvirtd lacks the iscsi-direct or rbd pool driver (restart it as root)"
  fi
fi
exit 0
