#!/bin/bash
# mount.sh -- `virtsnap mount` serves a backed-up disk read-only over NBD straight from the
# repository (nbdkit + the virtsnap plugin). A shut-off domain's raw disk with data at
# known places (chunk-aligned or not, holes between) is backed up into a repository with
# small chunks; the mount reads back byte-identical to `virtsnap export` and to the
# original (qemu-img compare, nbdcopy, unaligned reads across chunk boundaries and holes
# with nbdsh), block status shows the gaps as holes, a qcow2 overlay with the export as
# its backing file (QEMU's block layer, as restore --instant uses it) reads the same,
# on a socket (root only, or given to --owner) or on 127.0.0.1:PORT; gc is refused while
# a mount holds the repository; umount (by socket, port or id) stops nbdkit and removes
# the socket; --foreground serves until SIGINT; a corrupt chunk is a read error, never
# wrong data; bad requests fail with nothing left behind.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt mt
command -v nbdkit >/dev/null || vs_skip "nbdkit not installed (scripts/deps.sh)"
export VIRTSNAP_RUN_DIR=$W/run
vs_on_exit "$VIRTSNAP" umount --all --force

# --- a shut-off domain with a disk whose content we know ------------------------------------
DISK=$W/disk.raw
truncate -s 64M "$DISK"
dd if=/dev/urandom of="$DISK" bs=64K seek=3 count=5 conv=notrunc status=none         # chunk-aligned
dd if=/dev/urandom of="$DISK" bs=1000 seek=9000 count=300 conv=notrunc status=none   # unaligned, spans chunks
dd if=/dev/urandom of="$DISK" bs=4K seek=$((40 * 256)) count=1 conv=notrunc status=none
dd if=/dev/urandom of="$DISK" bs=1K seek=$((64 * 1024 - 3)) count=3 conv=notrunc status=none  # the very end
chmod 644 "$DISK"
vs_domain_track "$D"
DISK_FMT=raw vs_guest_xml "$D" "$DISK" > "$W/$D.xml"
virsh define "$W/$D.xml" >/dev/null
vs_virtsnap init --repo "$REPO" --chunk-size 64 >/dev/null
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --json "$D" > "$W/b.json"
ID=$(jq -r .id "$W/b.json")
[ "$ID" != null ] || vs_fail "backup failed: $(cat "$W/b.json")"
nchunks=$(jq --arg d "$D" '.domains[] | select(.name == $d) | .disks[0].chunks | length' "$REPO/backups/$ID.json")
vs_log "backup $ID: $nchunks chunks of 64 KiB"
vs_virtsnap export --repo "$REPO" --format raw "$ID" "$D" vda "$W/export.raw"

# --- mount on the default socket -------------------------------------------------------------
t0=$(date +%s%N)
# $(...) returns only if nothing of the background nbdkit keeps the pipe open
out=$(timeout 60 "$VIRTSNAP" mount --repo "$REPO" "$ID" "$D" vda)
vs_log "mount took $(( ($(date +%s%N) - t0) / 1000000 )) ms:
$out"
URI=$(echo "$out" | sed -n 1p)
MID=$(echo "$out" | sed -n 's/.*, mount \([0-9a-f]\{8\}\)$/\1/p')
SOCK=$VIRTSNAP_RUN_DIR/mounts/$MID.sock
vs_assert_eq "$URI" "nbd+unix:///?socket=$SOCK" "URI"
vs_assert_contains "$out" "virtsnap umount $MID" "how to stop it"
vs_assert_eq "$(stat -c '%a %U' "$SOCK")" "600 root" "socket mode and owner"
vs_assert_eq "$(stat -c '%a' "$VIRTSNAP_RUN_DIR/mounts")" 755 "mounts directory mode"
PID=$(jq -r --arg id "$MID" '.[] | select(.id == $id) | .pid' <("$VIRTSNAP" mount --list --json))
vs_alive "$PID" || vs_fail "nbdkit (pid $PID) is not running"
vs_assert_contains "$(tr '\0' ' ' < "/proc/$PID/cmdline")" "nbdkit" "process"

vs_assert_eq "$(nbdinfo --size "$URI")" $((64 * 1024 * 1024)) "export size"
vs_assert_contains "$(nbdinfo "$URI")" "is_read_only: true" "read-only export"
qemu-img compare -f raw -F raw "$W/export.raw" "$URI" || vs_fail "the mount differs from the export"
qemu-img compare -f raw -F raw "$DISK" "$URI" || vs_fail "the mount differs from the original"
nbdcopy "$URI" "$W/copy.raw"
cmp "$DISK" "$W/copy.raw" || vs_fail "nbdcopy of the mount differs from the original"
# unaligned reads across chunk boundaries and into holes, compared with the file
/usr/bin/python3 - "$URI" "$DISK" <<'EOF' || vs_fail "unaligned reads differ"
import sys, random, nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1])
data = open(sys.argv[2], "rb").read()
random.seed(7)
cases = [(0, 1), (65535, 2), (9000 * 1000 - 7, 300 * 1000 + 20), (len(data) - 3000, 3000), (3 * 65536 - 1, 5 * 65536 + 2)]
cases += [(o, random.randint(1, 300000)) for o in (random.randrange(len(data) - 300000) for _ in range(200))]
for off, n in cases:
    assert h.pread(n, off) == data[off:off + n], (off, n)
print("ok:", len(cases), "reads")
EOF
map=$(nbdinfo --map "$URI")
echo "$map" | head -n 12 >&2
vs_assert_contains "$map" "hole,zero" "block status reports the gaps"
data_bytes=$(echo "$map" | awk '$3 == 0 { s += $2 } END { print s + 0 }')
vs_assert_eq "$data_bytes" $((nchunks * 65536)) "data extents = the chunks stored"

# a qcow2 overlay on the export: what restore --instant starts a domain on
qemu-img create -q -f qcow2 -b "$URI" -F raw "$W/overlay.qcow2"
qemu-img compare -f qcow2 -F raw "$W/overlay.qcow2" "$DISK" || vs_fail "overlay on the export differs"
vs_assert_eq "$(qemu-img map -f qcow2 --output=json "$W/overlay.qcow2" | jq '[.[] | select(.data) | .length] | add')" \
  "$data_bytes" "allocation seen through the overlay"

# gc must not delete what is served
set +e; "$VIRTSNAP" gc --repo "$REPO" > "$W/gc.out" 2>&1; rc=$?; set -e
vs_assert_eq "$rc" 1 "gc while mounted"
vs_log "gc while mounted: $(cat "$W/gc.out")"

# --- on a port, with --json; and a socket given to an owner ----------------------------------
PORT=$((20000 + $$ % 20000))
while _vs_port_busy "$PORT"; do PORT=$((PORT + 1)); done
vs_virtsnap mount --repo "$REPO" --port "$PORT" --json "$ID" "$D" vda > "$W/m2.json"
vs_assert_eq "$(jq -r .uri "$W/m2.json")" "nbd://127.0.0.1:$PORT" "TCP URI"
vs_assert_eq "$(jq -r '[.backup, .domain, .disk, .virtual_size] | map(tostring) | join(",")' "$W/m2.json")" \
  "$ID,$D,vda,$((64 * 1024 * 1024))" "mount JSON"
qemu-img compare -f raw -F raw "$W/export.raw" "nbd://127.0.0.1:$PORT" || vs_fail "TCP mount differs"
vs_virtsnap mount --repo "$REPO" --socket "$W/own.sock" --owner libvirt-qemu:libvirt-qemu latest "$D" vda > "$W/m3.out"
vs_assert_eq "$(stat -c '%a %U %G' "$W/own.sock")" "660 libvirt-qemu libvirt-qemu" "socket given to --owner"
vs_assert_eq "$(runuser -u libvirt-qemu -- nbdinfo --size "nbd+unix:///?socket=$W/own.sock")" $((64 * 1024 * 1024)) \
  "the owner can read it"
runuser -u nobody -- nbdinfo --size "nbd+unix:///?socket=$SOCK" >/dev/null 2>&1 &&
  vs_fail "another user can read the root-only socket"
vs_assert_eq "$("$VIRTSNAP" mount --list --json | jq length)" 3 "three mounts listed"

# --- umount by socket path, port and id -------------------------------------------------------
vs_virtsnap umount "$SOCK"
[ ! -e "$SOCK" ] || vs_fail "socket $SOCK still there after umount"
for _ in $(seq 50); do vs_alive "$PID" || break; sleep 0.1; done
vs_alive "$PID" && vs_fail "nbdkit $PID still running after umount"
nbdinfo --size "$URI" >/dev/null 2>&1 && vs_fail "the export still answers"
vs_virtsnap umount "$PORT"
vs_virtsnap umount "$(jq -r '.[0].id' <("$VIRTSNAP" mount --list --json))"
[ ! -e "$W/own.sock" ] || vs_fail "$W/own.sock still there"
vs_assert_eq "$(ls "$VIRTSNAP_RUN_DIR/mounts" | wc -l)" 0 "nothing left in the run directory"
vs_virtsnap gc --repo "$REPO" >/dev/null

# --- foreground: serves until SIGINT --------------------------------------------------------
"$VIRTSNAP" mount --repo "$REPO" --foreground --socket "$W/fg.sock" "$ID" "$D" vda > "$W/fg.out" 2>&1 &
fg=$!
for _ in $(seq 100); do grep -qs "^nbd+unix" "$W/fg.out" && break; sleep 0.1; done
vs_assert_contains "$(cat "$W/fg.out")" "until interrupted" "foreground mount"
qemu-img compare -f raw -F raw "$W/export.raw" "nbd+unix:///?socket=$W/fg.sock" || vs_fail "foreground mount differs"
kill -INT "$fg"
wait "$fg" || vs_fail "foreground mount exited with $? on SIGINT"
[ ! -e "$W/fg.sock" ] || vs_fail "foreground socket left behind"
vs_assert_eq "$(ls "$VIRTSNAP_RUN_DIR/mounts" | wc -l)" 0 "foreground mount unregistered"

# --- a corrupt chunk is a read error ---------------------------------------------------------
cp -a "$REPO" "$W/bad-repo"
digest=$(jq -r --arg d "$D" '.domains[] | select(.name == $d) | .disks[0].chunks[1][2]' "$REPO/backups/$ID.json")
f=$W/bad-repo/chunks/${digest:0:2}/$digest
chmod u+w "$f"; printf 'garbage' | dd of="$f" bs=1 seek=20 conv=notrunc status=none
URI2=$("$VIRTSNAP" mount --repo "$W/bad-repo" "$ID" "$D" vda | sed -n 1p)
set +e; qemu-img compare -f raw -F raw "$W/export.raw" "$URI2" > "$W/cmp.out" 2>&1; rc=$?; set -e
[ "$rc" -ne 0 ] || vs_fail "reading past a corrupt chunk succeeded"
vs_log "compare over a corrupt chunk: exit $rc: $(head -c 300 "$W/cmp.out")"
vs_assert_contains "$(cat "$VIRTSNAP_RUN_DIR"/mounts/*.log)" "$digest" "the log names the chunk"
vs_virtsnap umount "$URI2"

# --- refusals leave nothing behind ----------------------------------------------------------
set +e; "$VIRTSNAP" mount --repo "$REPO" "$ID" "$D" vdz > "$W/e1.out" 2>&1; rc=$?; set -e
vs_assert_eq "$rc" 1 "mount of an unknown disk"
vs_assert_contains "$(cat "$W/e1.out")" "has no disk vdz (it has: vda)" "unknown disk message"
set +e; "$VIRTSNAP" mount --repo "$REPO" nosuchbackup "$D" vda > "$W/e2.out" 2>&1; rc=$?; set -e
vs_assert_eq "$rc" 1 "mount of an unknown backup"
set +e; "$VIRTSNAP" umount nosuchmount > "$W/e3.out" 2>&1; rc=$?; set -e
vs_assert_eq "$rc" 1 "umount of an unknown mount"
vs_assert_eq "$(ls "$VIRTSNAP_RUN_DIR/mounts" | wc -l)" 0 "nothing left after the refusals"
vs_log "mount: all checks passed"
