#!/bin/bash
# repo-permissions.sh -- who may read a backup. A repository directory that already exists
# with mode 0755 (the usual case: a mount point) under umask 022: after `init` and a backup
# (of a shut-off domain) every directory in it is 0700 and every file 0600, so user nobody
# cannot read a chunk; init says that it made the directory private. The files virtsnap writes
# outside the repository that hold backup data (an `export` image, a restored disk and its
# XML in --target-dir) are 0600 too. A repository opened up with chmod gets one warning line,
# naming it and the fix, from each command that opens it; `init --fix-permissions` fixes it,
# says how many entries it changed, and neither follows nor changes a symlink in the
# repository (nor what it points to). `init --group backup` gives a group-shared repository:
# 0750/0640, group backup, nothing for "other", kept by a later backup even under umask 077,
# readable by a member of the group and not by anyone else.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open --libvirt rp
GROUP=backup
getent group "$GROUP" >/dev/null || vs_skip "no group $GROUP on this machine"

# Entries of REPO (not following symlinks) whose mode is not DMODE (directories) or FMODE
# (regular files), or whose group is not GRP (when given), one per line: "MODE GROUP PATH".
wrong_modes() {
  local repo=$1 dmode=$2 fmode=$3 grp=${4:-}
  find "$repo" \( -type d ! -perm "$dmode" -o -type f ! -perm "$fmode" \) -printf '%m %g %p\n'
  [ -z "$grp" ] || find "$repo" \( -type d -o -type f \) ! -group "$grp" -printf '%m %g %p\n'
}
# Fails unless nothing in REPO is off DMODE/FMODE (and group GRP); WHAT names the check.
assert_modes() {
  local repo=$1 dmode=$2 fmode=$3 grp=$4 what=$5 bad
  bad=$(wrong_modes "$repo" "$dmode" "$fmode" "$grp")
  [ -z "$bad" ] || vs_fail "$what: entries not $dmode/$fmode${grp:+ group $grp}:
$(head -n 20 <<< "$bad")"
  vs_log "$what: every entry $dmode/$fmode${grp:+, group $grp} ($(find "$repo" | wc -l) entries)"
}
a_chunk() { find "$1/chunks" -mindepth 2 -type f | head -n 1; }

qemu-img create -q -f qcow2 "$W/$D.qcow2" 16M
chmod 644 "$W/$D.qcow2"
qemu-io -f qcow2 -c "write -q -P 0x5a 0 3M" "$W/$D.qcow2" >/dev/null
vs_domain_track "$D"
vs_guest_xml "$D" "$W/$D.qcow2" > "$W/$D.xml"
virsh define "$W/$D.xml" >/dev/null

# --- a pre-existing 0755 directory under umask 022 -----------------------------------------
umask 022
REPO=$W/repo
mkdir "$REPO"
vs_assert_eq "$(stat -c %a "$REPO")" 755 "the repository directory starts 0755"
vs_virtsnap init --repo "$REPO" --chunk-size 64 > "$W/init.out" 2> "$W/init.err"
cat "$W/init.err" >&2
ID=$(vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" --json "$D" | jq -r .id)
[ "$ID" != null ] || vs_fail "backup failed"
CHUNK=$(a_chunk "$REPO")
[ -n "$CHUNK" ] || vs_fail "the backup stored no chunk"
assert_modes "$REPO" 700 600 "" "after init and a backup"
if runuser -u nobody -- cat "$CHUNK" > /dev/null 2>&1; then
  vs_fail "user nobody can read chunk $CHUNK"
fi
runuser -u nobody -- cat "$REPO/backups/$ID.json" > /dev/null 2>&1 && vs_fail "user nobody can read the manifest"
vs_assert_contains "$(cat "$W/init.err")" "$REPO had mode 0755: made it 0700" "init says that it made the directory private"

# --- files written outside the repository -----------------------------------------------------
vs_virtsnap export --repo "$REPO" "$ID" "$D" vda "$W/export.qcow2" >/dev/null
vs_assert_eq "$(stat -c %a "$W/export.qcow2")" 600 "mode of an exported image"
vs_virtsnap export --repo "$REPO" "$ID" "$D" vda "$W/export.raw" --format raw >/dev/null
vs_assert_eq "$(stat -c %a "$W/export.raw")" 600 "mode of an exported raw image"
mkdir "$W/target"
vs_virtsnap restore --repo "$REPO" --state-dir "$STATE" --as "$D-c" --target-dir "$W/target" "$D" >/dev/null
vs_assert_eq "$(stat -c %a "$W/target/$D-c-vda.qcow2")" 600 "mode of a disk restored into --target-dir"
vs_assert_eq "$(stat -c %a "$W/target/$D-c.xml")" 600 "mode of the XML restored into --target-dir"
qemu-img compare -q "$W/export.qcow2" "$W/target/$D-c-vda.qcow2" || vs_fail "the restored disk differs from the export"

# --- opened up with chmod: a warning from each command, init --fix-permissions ----------------
chmod 755 "$REPO" "$REPO/chunks" "$(dirname "$CHUNK")"
chmod 644 "$CHUNK" "$REPO/backups/$ID.json"
echo "not a backup" > "$W/outside.txt"; chmod 644 "$W/outside.txt"
mkdir "$W/outside.d"; echo x > "$W/outside.d/f"; chmod 755 "$W/outside.d"; chmod 644 "$W/outside.d/f"
ln -s "$W/outside.txt" "$REPO/link-to-file"
ln -s "$W/outside.d" "$REPO/tmp/link-to-dir"
fix_hint="virtsnap init --repo $REPO --fix-permissions"
for cmd in "list" "verify" "export $ID $D vda $W/warn.raw"; do
  # shellcheck disable=SC2086
  vs_virtsnap $cmd --repo "$REPO" > /dev/null 2> "$W/warn.err" || vs_fail "$cmd failed: $(cat "$W/warn.err")"
  cat "$W/warn.err" >&2
  # (the harness logs each command line to stderr too: "[  1.2s] virtsnap ...")
  vs_assert_eq "$(grep -vc '^\[' "$W/warn.err")" 1 "$cmd: one line on stderr"
  vs_assert_contains "$(cat "$W/warn.err")" "$REPO is open to other users" "$cmd: the warning names the repository"
  vs_assert_contains "$(cat "$W/warn.err")" "$fix_hint" "$cmd: the warning names the fix"
done
vs_virtsnap backup --repo "$REPO" --state-dir "$STATE" "$D" > /dev/null 2> "$W/warn.err"
vs_assert_eq "$(grep -c "$fix_hint" "$W/warn.err")" 1 "backup: one line naming the fix"
vs_virtsnap init --repo "$REPO" --fix-permissions > "$W/fix.out" 2>&1
cat "$W/fix.out" >&2
# the root, chunks/, the chunk's fan-out directory, the chunk and the manifest
vs_assert_contains "$(cat "$W/fix.out")" "5 entries" "fix-permissions counts what it changed"
find "$REPO" -type l -printf '%p\n' | sort > "$W/links"
vs_assert_eq "$(tr '\n' ' ' < "$W/links")" "$REPO/link-to-file $REPO/tmp/link-to-dir " "the symlinks stay"
vs_assert_eq "$(stat -c %a "$W/outside.txt") $(stat -c %a "$W/outside.d") $(stat -c %a "$W/outside.d/f")" \
  "644 755 644" "what the symlinks point to is not changed"
assert_modes "$REPO" 700 600 "" "after init --fix-permissions"
vs_virtsnap list --repo "$REPO" > /dev/null 2> "$W/warn.err"
vs_assert_eq "$(grep -v '^\[' "$W/warn.err")" "" "no warning once fixed"
vs_virtsnap init --repo "$REPO" --fix-permissions > "$W/fix.out" 2>&1
vs_assert_contains "$(cat "$W/fix.out")" "0 entries" "a private repository needs no fixing"
rm "$REPO/link-to-file" "$REPO/tmp/link-to-dir"
vs_virtsnap verify --repo "$REPO" > /dev/null

# --- a group-shared repository ------------------------------------------------------------------
GREPO=$W/grepo
mkdir "$GREPO"
vs_virtsnap init --repo "$GREPO" --chunk-size 64 --group "$GROUP" > /dev/null
vs_virtsnap backup --repo "$GREPO" --state-dir "$STATE" "$D" > /dev/null
# a later writer with a tight umask still shares with the group, never with others
(umask 077 && qemu-io -f qcow2 -c "write -q -P 0x33 4M 2M" "$W/$D.qcow2" >/dev/null &&
  vs_virtsnap backup --repo "$GREPO" --state-dir "$STATE" "$D" > /dev/null)
assert_modes "$GREPO" 750 640 "$GROUP" "group-shared repository"
others=$(find "$GREPO" -perm /007 -printf '%m %p\n')
vs_assert_eq "$others" "" "nothing in a group-shared repository is open to others"
CHUNK=$(a_chunk "$GREPO")
runuser -u nobody -g "$GROUP" -- cat "$CHUNK" > /dev/null || vs_fail "a member of $GROUP cannot read $CHUNK"
runuser -u nobody -- cat "$CHUNK" > /dev/null 2>&1 && vs_fail "nobody outside $GROUP can read $CHUNK"
vs_virtsnap list --repo "$GREPO" > /dev/null 2> "$W/warn.err"
vs_assert_eq "$(grep -v '^\[' "$W/warn.err")" "" "no warning for a group-shared repository"
vs_virtsnap verify --repo "$GREPO" > /dev/null
vs_log "repo-permissions: all checks passed"
