# tests/lib/guest.sh -- sourced (bash) by tests/lib/harness.sh and scripts/demo.sh: the
# cached test guest of tests/guest/ and the waits for it to come up. Functions return
# non-zero with a message on stderr instead of exiting, so the demo and the harness can
# each report a failure their own way.
#
#   vs_guest_prepare            build (once, cached, flock-serialised) the guest into
#                               ${VS_GUEST_CACHE:-/var/cache/virtsnap-tests/guest}; exports VS_GUEST_DIR
#   vs_guest_template_copy OUT  copy the template data disk (qcow2) under a shared lock
#   vs_wait_ready DOM LOG SECS  until GA-GUEST-READY is in the console LOG (fails early if DOM dies)
#   vs_agent_ping DOM           one guest-ping through libvirt (bounded)
#   vs_wait_agent_until DOM SECS

VS_GUEST_SRC=${VS_GUEST_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../guest" && pwd)}
_VS_URI=qemu:///system

_vs_g_log() { echo "guest: $*" >&2; }

_vs_guest_stamp() {
  # The initrd embeds guest-init.sh and guest-writer.sh; a change to any of these must
  # reach the cache, while an unchanged tree must not pay for a rebuild on every test.
  { echo "KFLAVOUR=${KFLAVOUR:-cloud-amd64}"
    cat "$VS_GUEST_SRC"/mkguest.sh "$VS_GUEST_SRC"/guest-init.sh \
        "$VS_GUEST_SRC"/guest-writer.sh "$VS_GUEST_SRC"/mkdisk.sh; } | md5sum | cut -d' ' -f1
}

vs_guest_prepare() {
  local dir=${VS_GUEST_CACHE:-/var/cache/virtsnap-tests/guest} want fd t0 rc=0
  mkdir -p "$dir" || return 1
  # QEMU runs as libvirt-qemu under qemu:///system and opens kernel/initrd itself
  chmod 755 "$dir" "$(dirname "$dir")" 2>/dev/null || true
  want=$(_vs_guest_stamp)
  exec {fd}>"$dir/.lock"
  if ! flock -w 900 "$fd"; then exec {fd}>&-; _vs_g_log "timed out waiting for $dir/.lock"; return 1; fi
  if [ "$(cat "$dir/.stamp" 2>/dev/null)" != "$want" ] ||
     [ ! -s "$dir/vmlinuz" ] || [ ! -s "$dir/initrd.gz" ] || [ ! -s "$dir/data.qcow2" ] ||
     [ ! -s "$dir/guest.env" ]; then
    _vs_g_log "building the test guest in $dir (KFLAVOUR=${KFLAVOUR:-cloud-amd64}; log: $dir/mkguest.log)"
    t0=$(date +%s)
    rm -f "$dir/.stamp" "$dir/data.qcow2" "$dir/guest.env"   # template follows mkdisk.sh too
    if KFLAVOUR=${KFLAVOUR:-cloud-amd64} "$VS_GUEST_SRC/mkguest.sh" "$dir" >"$dir/mkguest.log" 2>&1; then
      echo "$want" > "$dir/.stamp"
      _vs_g_log "guest built in $(( $(date +%s) - t0 )) s"
    else
      rc=1; _vs_g_log "mkguest.sh failed:"; tail -n 30 "$dir/mkguest.log" >&2
    fi
  fi
  exec {fd}>&-
  [ "$rc" = 0 ] || return 1
  export VS_GUEST_DIR=$dir
}

vs_guest_template_copy() {
  local out=$1 fd rc=0
  [ -n "${VS_GUEST_DIR:-}" ] || vs_guest_prepare || return 1
  exec {fd}>"$VS_GUEST_DIR/.lock"
  flock -s -w 900 "$fd" || rc=1      # shared: a rebuild must not swap the template mid-copy
  [ "$rc" = 0 ] && { cp --sparse=always "$VS_GUEST_DIR/data.qcow2" "$out" || rc=1; }
  exec {fd}>&-
  [ "$rc" = 0 ] && chmod 644 "$out"
}

_vs_domstate() { timeout 15 virsh -c "$_VS_URI" domstate "$1" 2>/dev/null | sed -n 1p; }

vs_wait_ready() {
  local dom=$1 log=$2 secs=${3:-120} end st
  end=$(( $(date +%s) + secs ))
  until grep -q GA-GUEST-READY "$log" 2>/dev/null; do
    st=$(_vs_domstate "$dom")
    if [ "$st" != running ]; then
      _vs_g_log "$dom is '$st' before GA-GUEST-READY; console:"; tail -n 20 "$log" >&2 2>/dev/null; return 1
    fi
    if [ "$(date +%s)" -ge "$end" ]; then
      _vs_g_log "no GA-GUEST-READY from $dom in ${secs}s; console:"; tail -n 20 "$log" >&2 2>/dev/null; return 1
    fi
    sleep 0.1
  done
  if grep -q GA-GUEST-ERROR "$log"; then _vs_g_log "$dom: $(grep GA-GUEST-ERROR "$log" | head -n3)"; fi
}

# --timeout: libvirt's default for agent commands is to block for ever when the agent is
# connected but does not answer; the outer timeout guards virsh itself.
vs_agent_ping() {
  timeout 20 virsh -c "$_VS_URI" qemu-agent-command --timeout 5 "$1" '{"execute":"guest-ping"}' >/dev/null 2>&1
}

vs_wait_agent_until() {
  local dom=$1 end=$2
  until vs_agent_ping "$dom"; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.1
  done
}
