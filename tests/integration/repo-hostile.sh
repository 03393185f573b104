#!/bin/bash
# repo-hostile.sh -- a repository someone else could write to (a shared NFS export, another
# admin) is hostile until validated. Repositories are built by hand here (chunk files made with
# zstd, manifests with jq), each with one hostile change, and every command that reads them must
# refuse with an error naming what is wrong, never hang, and create or delete nothing outside the
# directories the user named:
#   - traversal names in every manifest field that becomes a path (domain name, disk target,
#     format, chain and source paths): the manifest is unreadable, naming the field; a restore
#     with --target-dir writes nothing outside it (this part needs libvirtd: the harness's, under
#     the integration lock);
#   - `tmp/` and `chunks/XX` symlinked to another directory: gc deletes nothing there;
#   - `chunks/`, `backups/`, `tmp/`, `checkpoints/`, `checkpoints/TAG` symlinks or not
#     directories: every command refuses, naming the path;
#   - a FIFO, a directory and a symlink in place of a chunk, a FIFO in place of a manifest:
#     verify says "BAD chunk ... not a regular file", export, restore and reads of a mount fail
#     naming the chunk, nothing hangs;
#   - backup refuses a domain whose name a repository may not hold (longer than 128 bytes)
#     before it copies anything.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --root
CS=65536

# A repository with one backup of one 2-chunk disk (both chunks real data), built by hand so
# that every field can be made hostile. Fields: NAME TARGET FORMAT SOURCE CHAINPATH.
ID=20261201T000000Z-abcdef
mkrepo() {   # DIR [NAME [TARGET [FORMAT [SOURCE [CHAINPATH]]]]]
  local dir=$1 name=${2:-vst-ok} target=${3:-vda} format=${4:-raw}
  local source=${5:-/var/lib/libvirt/images/vst-ok.raw} chain=${6:-/var/lib/libvirt/images/vst-ok.raw}
  local h1 h2 xml
  vs_virtsnap init --repo "$dir" --chunk-size 64 >/dev/null
  head -c $CS /dev/urandom > "$W/c1"; head -c $CS /dev/urandom > "$W/c2"
  h1=$(sha256sum < "$W/c1" | cut -c1-64); h2=$(sha256sum < "$W/c2" | cut -c1-64)
  mkdir -p "$dir/chunks/${h1:0:2}" "$dir/chunks/${h2:0:2}"
  zstd -q -1 "$W/c1" -o "$dir/chunks/${h1:0:2}/$h1"
  zstd -q -1 "$W/c2" -o "$dir/chunks/${h2:0:2}/$h2"
  cat "$W/c1" "$W/c2" > "$dir.expect"
  xml="<domain type='kvm'><name>vst-hostile</name><memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os><devices><disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/var/lib/libvirt/images/vst-ok.raw'/><target dev='vda' bus='virtio'/></disk></devices></domain>"
  jq -n --arg id "$ID" --arg name "$name" --arg target "$target" --arg format "$format" \
        --arg source "$source" --arg chain "$chain" --arg xml "$xml" --arg h1 "$h1" --arg h2 "$h2" \
        --argjson cs $CS '{
    format: "virtsnap-manifest", version: 1, id: $id, chunk_size: $cs,
    started: "2026-12-01T00:00:00.000000Z", completed: "2026-12-01T00:00:01.000000Z",
    hostname: "h", group_freeze_ms: null,
    domains: [{ name: $name, uuid: null, consistency: "crash", freeze_ms: null, xml: $xml,
      disks: [{ target: $target, format: $format, virtual_size: (2 * $cs), source: $source,
        chain: [{path: $chain, format: "raw"}], bytes_read: (2 * $cs), bytes_stored: 0,
        chunks: [[0, $cs, $h1], [$cs, $cs, $h2]] }] }] }' > "$dir/backups/$ID.json"
  echo "$h1 $h2"
}

# What exists under the work dir outside the repositories and output directories a case
# names: compared before and after each case, so anything created or deleted elsewhere shows.
outside() { find "$W" -path "$W/r-*" -prune -o -path "$W/out-*" -prune -o -name '*.expect' -prune \
                 -o -name 'c[12]' -prune -o -name '.*' -prune -o -printf '%P %y\n' | sort; }

# run EXPECTED_RC NEEDLE CMD...: runs CMD (bounded: a hang is a failure), checks its exit code
# and that NEEDLE is in its output, and that nothing outside changed. Leaves output in $OUT.
OUT=
run() {
  local want=$1 needle=$2 rc=0 before after; shift 2
  before=$(outside)
  OUT=$(timeout 30 "$@" 2>&1) || rc=$?
  [ $rc != 124 ] || vs_fail "$* hung (killed after 30 s)"
  after=$(outside)
  [ "$before" = "$after" ] || vs_fail "$*: files outside the named directories changed:
$(diff <(echo "$before") <(echo "$after"))"
  vs_assert_eq "$rc" "$want" "exit code of $*"
  vs_assert_contains "$OUT" "$needle" "output of $*"
}
V=${VIRTSNAP:-$VS_BUILD_ROOT/tools/virtsnap}

# A victim directory the repository's symlinks point at, with files gc would take for its own.
mkdir -p "$W/victim/ff"
VFILE=ff$(printf '%062d' 0)
mkvictim() {
  touch -d '2 hours ago' "$W/victim/old-file" "$W/victim/ff/$VFILE"
}
mkvictim

# ---------------------------------------------------------------- a sane repository works
vs_log "--- a repository built by hand reads back (the cases below differ in one thing)"
mkrepo "$W/r-ok" >/dev/null
run 0 "verify: OK, 2 chunks checked" "$V" verify --repo "$W/r-ok"
mkdir -p "$W/out-ok"
run 0 "exported" "$V" export --repo "$W/r-ok" "$ID" vst-ok vda "$W/out-ok/d.raw"
cmp "$W/out-ok/d.raw" "$W/r-ok.expect" || vs_fail "the sane repository exports other data"

# ---------------------------------------------------------------- traversal in manifest fields
vs_log "--- traversal names in manifest fields that become paths"
NFIELD=0
check_field() {   # FIELD-PATH-IN-ERROR ARGS-TO-mkrepo...
  local field=$1 n=$((++NFIELD)); shift
  mkrepo "$W/r-f$n" "$@" >/dev/null
  run 1 "$field" "$V" verify --repo "$W/r-f$n"
  run 1 "$field" "$V" list --repo "$W/r-f$n"
  mkdir -p "$W/out-f$n"
  run 1 "$field" "$V" export --repo "$W/r-f$n" "$ID" "$1" "${2:-vda}" "$W/out-f$n/x.raw"
  [ -z "$(ls -A "$W/out-f$n")" ] || vs_fail "export left files in out-f$n: $(ls -A "$W/out-f$n")"
}
check_field "domains[0].name" "../../victim/evil"
check_field "domains[0].name" ".."
check_field "domains[0].disks[0].target" vst-ok "../../victim/t"
check_field "domains[0].disks[0].format" vst-ok vda "raw/../../../victim/f"
check_field "domains[0].disks[0].source" vst-ok vda raw "/var/lib/../../etc/shadow"
check_field "domains[0].disks[0].chain[0].path" vst-ok vda raw /var/lib/x.raw "../victim/base.raw"

# ---------------------------------------------------------------- symlinked tmp/ and chunks/XX
vs_log "--- gc must not follow a symlinked tmp/ or chunks/XX"
mkrepo "$W/r-tmp" >/dev/null
rm -rf "$W/r-tmp/tmp"; ln -s "$W/victim" "$W/r-tmp/tmp"
run 1 "$W/r-tmp/tmp" "$V" gc --repo "$W/r-tmp"
vs_assert_contains "$OUT" "real directory" "gc on a symlinked tmp/"
[ -e "$W/victim/old-file" ] || vs_fail "gc deleted a file through the symlinked tmp/"

mkrepo "$W/r-ff" >/dev/null
rm -rf "$W/r-ff/chunks/ff"; ln -s "$W/victim/ff" "$W/r-ff/chunks/ff"
run 1 "$W/r-ff/chunks/ff" "$V" gc --repo "$W/r-ff"
vs_assert_contains "$OUT" "real directory" "gc on a symlinked chunks/ff"
[ -e "$W/victim/ff/$VFILE" ] || vs_fail "gc deleted a file through the symlinked chunks/ff"
run 1 "real directory" "$V" prune --repo "$W/r-ff" --keep-last 1
[ -e "$W/victim/ff/$VFILE" ] || vs_fail "prune deleted a file through the symlinked chunks/ff"

# ---------------------------------------------------------------- fixed directories
vs_log "--- fixed directories that are symlinks or not directories are refused by every command"
for fixed in chunks backups tmp checkpoints checkpoints/0db4d6a6; do
  for kind in symlink file; do
    dir=$W/r-${fixed//\//-}-$kind
    mkrepo "$dir" >/dev/null
    mkdir -p "$dir/checkpoints"
    if [ $fixed = backups ]; then cp -a "$dir/backups" "$W/victim/backups-$kind"; fi
    rm -rf "${dir:?}/$fixed"
    if [ $kind = symlink ]; then
      if [ $fixed = backups ]; then ln -s "$W/victim/backups-$kind" "$dir/$fixed"
      else ln -s "$W/victim" "$dir/$fixed"; fi
    else
      echo x > "$dir/$fixed"
    fi
    out=$W/out-d-${fixed//\//-}-$kind
    mkdir -p "$out"
    for cmd in "list" "verify" "gc" "prune --keep-last 1" "export $ID vst-ok vda $out/x.raw"; do
      # shellcheck disable=SC2086
      run 1 "$dir/$fixed" "$V" $cmd --repo "$dir"
      vs_assert_contains "$OUT" "must be a real directory" "$cmd with $fixed a $kind"
    done
    [ -z "$(ls -A "$out")" ] || vs_fail "export left files in $out"
    mkvictim
  done
done

# ---------------------------------------------------------------- not regular files
vs_log "--- a FIFO, a directory, a symlink in place of a chunk; a FIFO in place of a manifest"
for kind in fifo dir symlink; do
  dir=$W/r-chunk-$kind
  read -r h1 _ < <(mkrepo "$dir")
  f=$dir/chunks/${h1:0:2}/$h1
  case $kind in
    fifo) rm "$f"; mkfifo "$f" ;;
    dir) rm "$f"; mkdir "$f" ;;
    symlink) mv "$f" "$W/victim/moved-chunk"; ln -s "$W/victim/moved-chunk" "$f" ;;
  esac
  run 1 "BAD chunk $h1 (offset 0): not a regular file" "$V" verify --repo "$dir"
  mkdir -p "$W/out-c-$kind"
  run 1 "$h1" "$V" export --repo "$dir" "$ID" vst-ok vda "$W/out-c-$kind/x.raw"
  vs_assert_contains "$OUT" "not a regular file" "export with a $kind chunk"
  [ -z "$(ls -A "$W/out-c-$kind")" ] || vs_fail "export left files in out-c-$kind"
done
rm -f "$W/victim/moved-chunk"

dir=$W/r-man-fifo
mkrepo "$dir" >/dev/null
rm "$dir/backups/$ID.json"; mkfifo "$dir/backups/$ID.json"
run 1 "not a regular file" "$V" verify --repo "$dir"
run 1 "not a regular file" "$V" list --repo "$dir"
run 1 "not a regular file" "$V" gc --repo "$dir"

vs_log "--- reads of a mount over a FIFO chunk fail naming it, without hanging"
if command -v nbdkit >/dev/null; then
  export VIRTSNAP_RUN_DIR=$W/out-run
  vs_on_exit "$V" umount --all --force
  dir=$W/r-mount-fifo
  read -r h1 _ < <(mkrepo "$dir")
  rm "$dir/chunks/${h1:0:2}/$h1"; mkfifo "$dir/chunks/${h1:0:2}/$h1"
  uri=$(timeout 60 "$V" mount --repo "$dir" "$ID" vst-ok vda | sed -n 1p)
  rc=0; timeout 30 nbdcopy "$uri" "$W/out-run/copy.raw" > "$W/out-run/copy.out" 2>&1 || rc=$?
  [ $rc != 124 ] || vs_fail "reading the mount hung on a FIFO chunk"
  [ $rc != 0 ] || vs_fail "reading the mount over a FIFO chunk succeeded"
  vs_assert_contains "$(cat "$VIRTSNAP_RUN_DIR"/mounts/*.log)" "$h1" "the mount's log"
  vs_assert_contains "$(cat "$VIRTSNAP_RUN_DIR"/mounts/*.log)" "not a regular file" "the mount's log"
  vs_virtsnap umount --force "$uri" >/dev/null   # no libvirtd here: nothing can use it
else
  vs_log "nbdkit not installed: mount case skipped"
fi

# ---------------------------------------------------------------- restore (libvirt)
vs_log "--- restore --target-dir with a traversal domain name writes nothing outside it"
vs_libvirt_up
mkdir -p "$W/out-p/p"
mkrepo "$W/r-evil" "../../victim/evil" >/dev/null
run 1 "domains[0].name" "$V" restore --repo "$W/r-evil" --state-dir "$W/out-p/state" \
  "../../victim/evil" --target-dir "$W/out-p/p"
run 1 "domains[0].name" "$V" restore --repo "$W/r-evil" --state-dir "$W/out-p/state" \
  --backup "$ID" "../../victim/evil" --target-dir "$W/out-p/p"
[ ! -e "$W/victim/evil-vda.raw" ] && [ ! -e "$W/victim/evil.xml" ] ||
  vs_fail "restore wrote outside --target-dir: $(ls "$W/victim")"
[ -z "$(ls -A "$W/out-p/p")" ] || vs_fail "restore left files in the target dir: $(ls -A "$W/out-p/p")"

vs_log "--- backup refuses a domain whose name no repository may hold, before copying anything"
LONG=vst-$(printf 'l%.0s' $(seq 1 130))
qemu-img create -q -f qcow2 "$W/out-long.qcow2" 16M
vs_domain_track "$LONG"
vs_guest_xml "$LONG" "$W/out-long.qcow2" > "$W/out-long.xml"
virsh define "$W/out-long.xml" >/dev/null
vs_virtsnap init --repo "$W/r-long" >/dev/null
run 1 "is longer than 128 bytes" "$V" backup --repo "$W/r-long" --state-dir "$W/out-long-state" "$LONG"
[ -z "$(ls -A "$W/r-long/backups")" ] || vs_fail "a backup of $LONG was written"
[ -z "$(find "$W/r-long/chunks" -type f)" ] || vs_fail "the refused backup copied chunks"

vs_log "--- restore with a FIFO in place of a chunk fails naming it, without hanging"
dir=$W/r-restore-fifo
read -r h1 _ < <(mkrepo "$dir")
rm "$dir/chunks/${h1:0:2}/$h1"; mkfifo "$dir/chunks/${h1:0:2}/$h1"
mkdir -p "$W/out-r"
run 1 "$h1" "$V" restore --repo "$dir" --state-dir "$W/out-r/state" vst-ok --target-dir "$W/out-r"
vs_assert_contains "$OUT" "not a regular file" "restore with a FIFO chunk"
[ -z "$(ls -A "$W/out-r" | grep -v '^state$' || true)" ] || vs_fail "restore left files in out-r: $(ls -A "$W/out-r")"

vs_log "PASS"
