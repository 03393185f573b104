#!/bin/bash
# cli-usage.sh -- the command line's contract with scripts and people, on a repository made
# by hand (synthetic manifests over real zstd chunks, as docs/repository-format.md describes
# them): no libvirtd, no guest. Checks that every usage error exits 2 with a message that
# names what is wrong (unknown options, missing arguments, bad values, conflicting options,
# each numeric option with its own range), and before any connection is made; that a
# restore --as name outside the allowed characters says so; that `latest DOMAIN` (export,
# mount) is the newest backup holding DOMAIN even when another domain was backed up later;
# that backup --json prints a JSON object with an "error" member when it fails before any
# domain runs; that verify names an unreadable manifest; that a missing or foreign
# repository is reported problem first, then the fix; and that an --iscsi-auth file
# another user owns, or that others may read, is refused, its secret never printed.
set -euo pipefail
. "$VS_SOURCE_ROOT/tests/lib/harness.sh"

vs_test_open
# The test driver needs no daemon: were a command to connect before checking its options,
# it would get that far and fail later, with another exit status.
T=test:///default
export VIRTSNAP_RUN_DIR=$W/run VIRTSNAP_STATE_DIR=$W/state VIRTSNAP_LOCK_DIR=$W/lock
unset VIRTSNAP_REPO LIBVIRT_DEFAULT_URI

# run ARGS...: sets $out (stdout and stderr) and $rc, never fails the test itself
run() { set +e; out=$(vs_virtsnap "$@" 2>&1); rc=$?; set -e; }
# usage WHAT NEEDLE ARGS...: exit 2 and NEEDLE in the message
usage() {
  local what=$1 needle=$2; shift 2
  run "$@"
  vs_assert_eq "$rc" 2 "$what: exit status"
  vs_assert_contains "$out" "$needle" "$what: message"
}

# --- a repository holding two backups: domain A, then (later) domain B -----------------
# mkbackup ID SECOND DOMAIN UUID IMAGE: a manifest over IMAGE's non-zero 64 KiB chunks
mkbackup() {
  local id=$1 sec=$2 dom=$3 uuid=$4 img=$5 size chunks="" off=0 n hex f
  size=$(stat -c %s "$img")
  while [ "$off" -lt "$size" ]; do
    n=$(( size - off < 65536 ? size - off : 65536 ))
    dd if="$img" of="$W/chunk" bs=65536 skip=$((off / 65536)) count=1 status=none
    if [ -n "$(tr -d '\0' < "$W/chunk" | head -c 1)" ]; then
      hex=$(sha256sum < "$W/chunk" | cut -c1-64)
      mkdir -p "$REPO/chunks/${hex:0:2}"
      f=$REPO/chunks/${hex:0:2}/$hex
      [ -e "$f" ] || zstd -q -1 --check "$W/chunk" -o "$f"
      chunks+="${chunks:+,}[$off,$n,\"$hex\"]"
    fi
    off=$((off + n))
  done
  jq -n --arg id "$id" --arg dom "$dom" --arg uuid "$uuid" --arg src "/var/lib/libvirt/images/$dom.raw" \
     --arg t0 "2026-12-01T00:0$sec:00.000000Z" --arg t1 "2026-12-01T00:0$sec:30.000000Z" \
     --argjson size "$size" --argjson chunks "[$chunks]" '{
    format: "virtsnap-manifest", version: 1, id: $id, chunk_size: 65536,
    started: $t0, completed: $t1, hostname: "cli-usage", group_freeze_ms: null,
    domains: [{ name: $dom, uuid: $uuid, consistency: "crash", freeze_ms: null, xml: null,
      disks: [{ target: "vda", format: "raw", virtual_size: $size, source: $src,
        chain: [{ path: $src, format: "raw" }], bytes_read: $size, bytes_stored: 0,
        chunks: $chunks }] }] }' > "$REPO/backups/$id.json"
}
vs_virtsnap init --repo "$REPO" --chunk-size 64 >/dev/null
truncate -s 256K "$W/a.raw" "$W/b.raw"
head -c 100000 /dev/urandom | dd of="$W/a.raw" conv=notrunc status=none
head -c 70000 /dev/urandom | dd of="$W/b.raw" bs=1 seek=131072 conv=notrunc status=none
ID_A=20261201T000100Z-a1a1a1
ID_B=20261201T000200Z-b2b2b2
mkbackup "$ID_A" 1 vst-cli-a 11111111-2222-3333-4444-555555555555 "$W/a.raw"
mkbackup "$ID_B" 2 vst-cli-b 66666666-7777-8888-9999-000000000000 "$W/b.raw"
vs_virtsnap verify --repo "$REPO" >/dev/null
vs_assert_eq "$(vs_virtsnap list --repo "$REPO" --json | jq -r '.[-1].id')" "$ID_B" "B's backup is the newest"

# --- usage errors: exit 2, before anything is connected to or opened -------------------
usage "backup without a domain" "name the domains to back up, or give --all" -c $T backup --repo "$REPO"
usage "backup --all and a name" "--all and domain names exclude each other" -c $T backup --repo "$REPO" --all x
usage "backup without a repository" "give --repo DIR or set VIRTSNAP_REPO" -c $T backup x
usage "backup --backup-xml for two domains" "name one domain" \
  -c $T backup --repo "$REPO" --backup-xml "$W/none.xml" x y
usage "backup --quiesce bad" "--quiesce=sometimes: use require, try or off" \
  -c $T backup --repo "$REPO" --quiesce=sometimes x
usage "backup of an empty name" "a domain name given is empty" -c $T backup --repo "$REPO" ""
usage "restore of an empty name" "a domain name given is empty" -c $T restore --repo "$REPO" ""
usage "restore --backup ''" "--backup is empty" -c $T restore --repo "$REPO" --backup "" x
usage "restore --format vmdk" "--format vmdk: use raw or qcow2" -c $T restore --repo "$REPO" --format vmdk x
usage "restore without a domain" "name the domains to restore" -c $T restore --repo "$REPO"
usage "restore --target-dir and --pool" "--target-dir and --pool exclude each other" \
  -c $T restore --repo "$REPO" --target-dir "$W" --pool default x
usage "restore --as for two domains" "restore one domain at a time" -c $T restore --repo "$REPO" --as n x y
usage "restore --instant --pool" "--instant restores whole domains" -c $T restore --repo "$REPO" --instant --pool p x
usage "mount --port 99999" "--port 99999" mount --repo "$REPO" --port 99999 latest vst-cli-a vda
vs_assert_contains "$out" "1 to 65535" "mount --port: the valid range"
usage "mount --port 0" "--port 0" mount --repo "$REPO" --port 0 latest vst-cli-a vda
usage "mount --socket and --port" "--socket and --port exclude each other" \
  mount --repo "$REPO" --socket "$W/s" --port 10809 latest vst-cli-a vda
usage "mount --owner with --port" "--owner applies to a socket" \
  mount --repo "$REPO" --owner root --port 10809 latest vst-cli-a vda
usage "mount without a repository" "give --repo DIR or set VIRTSNAP_REPO" mount latest vst-cli-a vda
usage "export to an empty OUT" "OUT" export --repo "$REPO" latest vst-cli-a vda ""
usage "export with an empty DOMAIN" "DOMAIN" export --repo "$REPO" latest "" vda "$W/x.raw"
usage "export --format vmdk" "--format vmdk: use raw or qcow2" export --repo "$REPO" --format vmdk latest vst-cli-a vda "$W/x"
usage "export with three arguments" "needs BACKUP DOMAIN DISK OUT" export --repo "$REPO" latest vst-cli-a vda
usage "export without a repository" "give --repo DIR or set VIRTSNAP_REPO" export latest vst-cli-a vda "$W/x.raw"
usage "list with an argument" "list: takes no arguments" list --repo "$REPO" extra
usage "list without a repository" "give --repo DIR or set VIRTSNAP_REPO" list
usage "gc with an argument" "gc: takes no arguments" gc --repo "$REPO" extra
usage "verify with two backups" "at most one BACKUP" verify --repo "$REPO" a b
usage "verify without a repository" "give --repo DIR or set VIRTSNAP_REPO" verify
usage "prune without a policy" "nothing is removed" prune --repo "$REPO"
usage "snapshots without a repository" "give --repo DIR or set VIRTSNAP_REPO" snapshots
usage "snapshots with an empty DOMAIN" "a DOMAIN given is empty" snapshots --repo "$REPO" ""
usage "init without --repo" "give the repository as --repo DIR" init
usage "discover --json --mapping" "exclude each other" -c $T discover --json --mapping
usage "discover --mapping=json" "the formats are --mapping (escaped) and --mapping=sc" -c $T discover --mapping=json
usage "discover --update-config without --mapping" "--update-config needs --mapping" -c $T discover --update-config "$W/x.conf"
usage "sc-plugin without an operation" "Usage: virtsnap sc-plugin" -c $T sc-plugin
usage "sc-plugin with two operations" "one operation at a time" -c $T sc-plugin -quiesce -unquiesce
usage "sc-plugin --state-dir without a value" "--state-dir needs a value" -c $T sc-plugin --state-dir
usage "umount with nothing named" "name the mounts" -c $T umount
usage "recover with an argument" "recover: takes no arguments" -c $T recover extra
usage "no command" "Usage: virtsnap" -c $T
usage "unknown command" "unknown command 'frobnicate'" frobnicate
usage "-c without a URI" "-c needs a URI" -c
for cmd in discover backup restore recover init list verify export gc prune snapshots mount umount; do
  usage "$cmd --no-such-option" "Unknown option --no-such-option" -c $T "$cmd" --no-such-option
  vs_assert_contains "$out" "virtsnap $cmd --help" "$cmd: where to look"
done
usage "backup --parallel without its value" "Missing argument for --parallel" -c $T backup --repo "$REPO" x --parallel
usage "backup --parallel not a number" "Cannot parse integer value" -c $T backup --repo "$REPO" --parallel two x

# --- each numeric option named, with its own range -------------------------------------
usage "backup --parallel 0" "backup: --parallel 0: give 1 to 64" -c $T backup --repo "$REPO" --parallel 0 x
usage "backup --copy-nice 20" "backup: --copy-nice 20: give 0 to 19" -c $T backup --repo "$REPO" --copy-nice 20 x
usage "backup --max-freeze 0" "backup: --max-freeze 0: give more than 0, at most 600" \
  -c $T backup --repo "$REPO" --max-freeze 0 x
usage "backup --agent-timeout 0" "backup: --agent-timeout 0: give 1 to 300" -c $T backup --repo "$REPO" --agent-timeout 0 x
usage "backup --commit-timeout 0" "backup: --commit-timeout 0: give 1 to 604800" \
  -c $T backup --repo "$REPO" --commit-timeout 0 x
usage "backup --commit-bandwidth -1" "backup: --commit-bandwidth -1: give 0 or more" \
  -c $T backup --repo "$REPO" --commit-bandwidth -1 x
usage "backup --lock-wait -1" "backup: --lock-wait -1: give 0 to 86400" -c $T backup --repo "$REPO" --lock-wait -1 x
usage "restore --parallel 0" "restore: --parallel 0: give 1 to 64" -c $T restore --repo "$REPO" --parallel 0 x
usage "restore --shutdown-timeout -1" "restore: --shutdown-timeout -1: give 0 to 86400" \
  -c $T restore --repo "$REPO" --shutdown-timeout -1 x
usage "restore --agent-timeout 0" "restore: --agent-timeout 0: give 1 to 300" -c $T restore --repo "$REPO" --agent-timeout 0 x
usage "restore --lock-wait -1" "restore: --lock-wait -1: give 0 to 86400" -c $T restore --repo "$REPO" --lock-wait -1 x
usage "prune --keep-last -1" "prune: --keep-last -1: give 0 or more" prune --repo "$REPO" --keep-last -1
usage "prune --keep-monthly -2" "prune: --keep-monthly -2: give 0 or more" prune --repo "$REPO" --keep-daily 1 --keep-monthly -2
usage "discover --agent-timeout 301" "discover: --agent-timeout 301: give 0 to 300" -c $T discover --agent-timeout 301
usage "init --chunk-size 100" "init: --chunk-size 100: give a power of two from 64 to 16384" \
  init --repo "$W/new" --chunk-size 100

# --- restore --as: a name outside the characters allowed --------------------------------
usage "restore --as ünï" "'ünï' cannot be a domain name" -c $T restore --repo "$REPO" --as "ünï" vst-cli-a
vs_assert_contains "$out" "ASCII letters, digits" "restore --as: which characters"
case "$out" in *"Invalid byte sequence"*) vs_fail "restore --as: a conversion error: $out" ;; esac
usage "restore --as a/b" "contains '/'" -c $T restore --repo "$REPO" --as "a/b" vst-cli-a

# --- latest DOMAIN: the newest backup that holds DOMAIN --------------------------------
vs_virtsnap export --repo "$REPO" latest vst-cli-a vda "$W/a-out.raw" >/dev/null
cmp "$W/a-out.raw" "$W/a.raw" || vs_fail "export latest vst-cli-a is not A's disk"
vs_virtsnap export --repo "$REPO" latest 11111111-2222-3333-4444-555555555555 vda "$W/a-uuid.raw" >/dev/null
cmp "$W/a-uuid.raw" "$W/a.raw" || vs_fail "export latest by A's UUID is not A's disk"
vs_virtsnap export --repo "$REPO" latest vst-cli-b vda "$W/b-out.raw" >/dev/null
cmp "$W/b-out.raw" "$W/b.raw" || vs_fail "export latest vst-cli-b is not B's disk"
run export --repo "$REPO" latest vst-cli-none vda "$W/none.raw"
vs_assert_eq "$rc" 1 "export latest of a domain no backup holds"
vs_assert_contains "$out" "no backup in $REPO holds a domain 'vst-cli-none'" "export latest: which domain"
[ ! -e "$W/none.raw" ] || vs_fail "export of a missing domain left a file"
if command -v nbdkit >/dev/null && command -v nbdcopy >/dev/null; then
  uri=$(vs_virtsnap mount --repo "$REPO" latest vst-cli-a vda | head -n 1)
  nbdcopy "$uri" "$W/a-nbd.raw"
  vs_virtsnap umount --force --all >/dev/null
  cmp "$W/a-nbd.raw" "$W/a.raw" || vs_fail "mount latest vst-cli-a does not serve A's disk"
else
  vs_log "nbdkit or nbdcopy missing: mount latest not checked"
fi

# --- backup --json: a JSON object with the error when nothing ran ------------------------
run -c $T backup --json --repo "$W/no-such-repo" x
vs_assert_eq "$rc" 1 "backup --json into a missing repository"
set +e; json=$(vs_virtsnap -c $T backup --json --repo "$W/no-such-repo" x 2>/dev/null); set -e
vs_assert_contains "$(jq -r .error <<<"$json")" "no-such-repo" "backup --json: the error member"
vs_assert_eq "$(jq -c '[.id, .domains]' <<<"$json")" '[null,[]]' "backup --json: no id, no domains"
set +e; json=$(vs_virtsnap -c $T backup --json --repo "$REPO" 2>/dev/null); rc=$?; set -e
vs_assert_eq "$rc" 2 "backup --json without a domain"
vs_assert_contains "$(jq -r .error <<<"$json")" "name the domains to back up" "backup --json usage error: the error member"
set +e; json=$(vs_virtsnap -c $T restore --json --repo "$W/no-such-repo" x 2>/dev/null); rc=$?; set -e
vs_assert_eq "$rc" 1 "restore --json from a missing repository"
vs_assert_contains "$(jq -r .error <<<"$json")" "no-such-repo" "restore --json: the error member"

# --- not a repository: the problem first, then the fix ----------------------------------
mkdir "$W/empty" "$W/other"; touch "$W/other/file"
for cmd in list verify gc snapshots; do
  run "$cmd" --repo "$W/empty"
  vs_assert_eq "$rc" 1 "$cmd on an empty directory"
  vs_assert_contains "$out" "$cmd: repo: $W/empty is not a virtsnap repository" "$cmd: the problem"
  vs_assert_contains "$out" "; create one with virtsnap init --repo $W/empty" "$cmd: the fix, after it"
done
run list --repo "$W/nothing-here"
vs_assert_contains "$out" "list: repo: $W/nothing-here does not exist" "list on a missing path: the problem"
vs_assert_contains "$out" "virtsnap init --repo $W/nothing-here" "list on a missing path: the fix"
run export --repo "$W/other" latest a vda "$W/x.raw"
vs_assert_contains "$out" "export: repo: $W/other is not a virtsnap repository" "export on another directory"
vs_assert_contains "$out" "holds other files" "export on another directory: why init will not do"
run -c $T backup --repo "$W/empty" x
vs_assert_contains "$out" "backup: repo: $W/empty is not a virtsnap repository" "backup: the problem first"
vs_assert_contains "$out" "virtsnap init --repo $W/empty (or give backup --init)" "backup: then the fix"
run -c $T restore --repo "$W/empty" x
vs_assert_contains "$out" "restore: repo: $W/empty is not a virtsnap repository" "restore: the problem first"
run mount --repo "$W/empty" latest a vda
vs_assert_contains "$out" "mount: repo: $W/empty is not a virtsnap repository" "mount: the problem first"

# --- verify: an unreadable manifest is named as such ------------------------------------
cp -a "$REPO" "$W/repo-bad"
echo '{"format": "virtsnap-manifest", "version": 1, "id": ' > "$W/repo-bad/backups/20261201T000300Z-c3c3c3.json"
run verify --repo "$W/repo-bad"
vs_assert_eq "$rc" 1 "verify with an unreadable manifest"
vs_assert_contains "$out" "BAD manifest of backup 20261201T000300Z-c3c3c3" "verify: the manifest named"
case "$out" in *"(null)"*) vs_fail "verify prints (null): $out" ;; esac

# --- --iscsi-auth: root's (or the caller's) file, no access for group or others --------------
SECRET=cli-usage-secret-$$
LUN=iscsi://127.0.0.1:1/iqn.2026-12.test:cli/0
printf 'user=u\npassword=%s\n' "$SECRET" > "$W/chap"
chmod 640 "$W/chap"
run export --repo "$REPO" --iscsi-auth "$W/chap" latest vst-cli-a vda "$LUN"
vs_assert_eq "$rc" 1 "export --iscsi-auth with a file others may read"
vs_assert_contains "$out" "$W/chap" "iscsi-auth mode 0640: the file named"
vs_assert_contains "$out" "chmod 600 $W/chap" "iscsi-auth mode 0640: the fix"
case "$out" in *"$SECRET"*) vs_fail "the secret was printed: $out" ;; esac
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
  chmod 600 "$W/chap"; chown nobody "$W/chap"
  run export --repo "$REPO" --iscsi-auth "$W/chap" latest vst-cli-a vda "$LUN"
  vs_assert_eq "$rc" 1 "export --iscsi-auth with a file another user owns"
  vs_assert_contains "$out" "$W/chap is owned by nobody" "iscsi-auth of another user: the owner named"
  vs_assert_contains "$out" "chown root $W/chap" "iscsi-auth of another user: the fix"
  case "$out" in *"$SECRET"*) vs_fail "the secret was printed: $out" ;; esac
  run -c $T backup --repo "$REPO" --iscsi-auth "$W/chap" x
  vs_assert_eq "$rc" 1 "backup --iscsi-auth with a file another user owns"
  vs_assert_contains "$out" "backup: --iscsi-auth: iscsi: credentials: $W/chap is owned by nobody" "backup: the file"
  case "$out" in *"$SECRET"*) vs_fail "the secret was printed: $out" ;; esac
  # the file of the user running virtsnap (here root), 0600: accepted (the LUN then does not answer)
  chown root "$W/chap"
  run export --repo "$REPO" --iscsi-auth "$W/chap" latest vst-cli-a vda "$LUN"
  case "$out" in *"credentials"*) vs_fail "root's 0600 credentials refused: $out" ;; esac
  case "$out" in *"$SECRET"*) vs_fail "the secret was printed: $out" ;; esac
else
  vs_log "not root (or no user nobody): the owner check is not tested"
fi
vs_log "all checks passed"
