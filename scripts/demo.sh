#!/bin/bash
# scripts/demo.sh -- see virtsnap work on a fresh Debian 12 machine in one command: install
# what is missing, build, boot a throwaway VM (the tiny test guest of tests/guest/, which
# keeps writing checksummed records to its data disk), run `virtsnap discover` on it, back
# it up while it keeps writing (frozen for milliseconds, never suspended), then through
# libvirt's backup job (a checkpoint, then an incremental, pull and push mode), verify the
# backups, export the newest disk and prove the copy consistent (fsck clean, every record
# valid).
# The VM is transient and is destroyed, and its files removed, when the script ends,
# however it ends. Needs root (qemu:///system).
#
# Env: VS_BUILD_DIR (default build), VS_DEMO_DIR (default /var/tmp/virtsnap-demo).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
B=${VS_BUILD_DIR:-build}
DOM=virtsnap-demo
DIR=${VS_DEMO_DIR:-/var/tmp/virtsnap-demo}
export LIBVIRT_DEFAULT_URI=qemu:///system

n=0
step() { n=$((n + 1)); echo; echo "==> [$n/13] $*"; }
die() { echo "demo: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root: it installs packages and uses qemu:///system"

step "installing missing Debian packages (scripts/deps.sh)"
./scripts/deps.sh

step "building virtsnap in $B/"
blog=$(mktemp)
if [ -f "$B/meson-private/coredata.dat" ]; then set -- --reconfigure; else set --; fi
meson setup "$@" "$B" >"$blog" 2>&1 || { cat "$blog"; rm -f "$blog"; die "meson setup failed"; }
meson compile -C "$B" >"$blog" 2>&1 || { cat "$blog"; rm -f "$blog"; die "build failed"; }
tail -n 1 "$blog"; rm -f "$blog"
VIRTSNAP=$ROOT/$B/tools/virtsnap
[ -x "$VIRTSNAP" ] || die "$VIRTSNAP was not built"

step "starting virtlogd/libvirtd if needed (no systemd here)"
. "$ROOT/tests/lib/daemons.sh"
. "$ROOT/tests/lib/guest.sh"
vs_daemons_up || die "libvirtd does not answer"
echo "libvirt: $(virsh uri)"

step "preparing the demo guest (Debian cloud kernel + busybox + qemu-ga; cached after the first run)"
vs_guest_prepare || die "cannot build the guest"
echo "guest files: $VS_GUEST_DIR"

cleanup() {
  set +e
  echo; echo "==> cleaning up: destroying $DOM, removing $DIR"
  virsh destroy "$DOM" >/dev/null 2>&1
  rm -rf "$DIR"
}
step "booting the throwaway VM '$DOM' (transient, TCG)"
if virsh dominfo "$DOM" >/dev/null 2>&1; then
  echo "a '$DOM' from an earlier demo is still there: removing it"
  virsh destroy "$DOM" >/dev/null 2>&1 || true
  virsh undefine "$DOM" >/dev/null 2>&1 || true
fi
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
rm -rf "$DIR"; mkdir -p "$DIR"
chmod 755 "$DIR"                      # QEMU runs as libvirt-qemu and opens the disk
vs_guest_template_copy "$DIR/data.qcow2" || die "cannot copy the data disk"
"$ROOT/tests/guest/mkdomain.sh" "$DOM" "$VS_GUEST_DIR" "$DIR/data.qcow2" "$DIR/console.log" > "$DIR/domain.xml"
t0=$(date +%s%N)
virsh create "$DIR/domain.xml" >/dev/null
echo "started; waiting for the guest and its agent (console: $DIR/console.log)"
vs_wait_ready "$DOM" "$DIR/console.log" 120 || die "the guest did not boot"
vs_wait_agent_until "$DOM" $(( $(date +%s) + 120 )) || die "the guest agent does not answer"
echo "guest agent answers after $(( ($(date +%s%N) - t0) / 1000000 )) ms; it is writing /data/records.log"

step "virtsnap discover $DOM"
echo "\$ $B/tools/virtsnap discover $DOM"
"$VIRTSNAP" discover "$DOM"

step "virtsnap discover --json $DOM"
echo "\$ $B/tools/virtsnap discover --json $DOM"
"$VIRTSNAP" discover --json "$DOM"

REPO=$DIR/repo
step "virtsnap backup: freeze for milliseconds, snapshot, thaw, copy, commit back"
echo "\$ $B/tools/virtsnap backup --repo $REPO --init --state-dir $DIR/state $DOM"
"$VIRTSNAP" backup --repo "$REPO" --init --state-dir "$DIR/state" "$DOM"
echo "the VM kept running on its own disk:"
virsh domblklist "$DOM"

step "a second backup stores only what changed"
"$VIRTSNAP" backup --repo "$REPO" --state-dir "$DIR/state" "$DOM"

step "virtsnap backup --mode=begin: libvirt's backup job and a checkpoint; the next one reads only what changed"
echo "\$ $B/tools/virtsnap backup --repo $REPO --state-dir $DIR/state --mode=begin $DOM"
"$VIRTSNAP" backup --repo "$REPO" --state-dir "$DIR/state" --mode=begin "$DOM"
sleep 1   # the guest's writer keeps writing
"$VIRTSNAP" backup --repo "$REPO" --state-dir "$DIR/state" --mode=begin "$DOM"
echo "its checkpoints:"
virsh checkpoint-list "$DOM" --name | sed '/^$/d'

step "the same as a push-mode job: QEMU writes the changed clusters into a qcow2 that virtsnap reads, then removes"
echo "\$ $B/tools/virtsnap backup --repo $REPO --state-dir $DIR/state --push $DOM"
"$VIRTSNAP" backup --repo "$REPO" --state-dir "$DIR/state" --push "$DOM"
"$VIRTSNAP" list --repo "$REPO"

step "virtsnap verify: re-read and re-hash every chunk"
"$VIRTSNAP" verify --repo "$REPO"

step "virtsnap export the disk, and prove the copy consistent"
echo "\$ $B/tools/virtsnap export --repo $REPO latest $DOM vda $DIR/restored.qcow2"
"$VIRTSNAP" export --repo "$REPO" latest "$DOM" vda "$DIR/restored.qcow2"
"$ROOT/tests/guest/verify-backup.sh" "$DIR/restored.qcow2" || die "the exported copy is not consistent"
echo
echo "demo: done"
