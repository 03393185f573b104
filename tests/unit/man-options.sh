#!/bin/bash
# man-options.sh -- keeps docs/virtsnap.1 from drifting away from the program: every option
# that `virtsnap --help` and `virtsnap COMMAND --help` list (--help itself aside) must appear
# in the man page twice: in the command's SYNOPSIS entry and in the command's own section
# (.SS COMMAND with its heading; the global options in GLOBAL OPTIONS). Needs no daemon and no root.
# Usage: man-options.sh VIRTSNAP MANPAGE
set -uo pipefail
BIN=${1:?virtsnap binary}
MAN=${2:?man page}
fail=0

# The man page as plain text lines: roff's \- is a -, font changes go.
text=$(sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' "$MAN")

# options_of HELP: the long options a --help output lists, one per line
options_of() { grep -oE '^  +(-[a-zA-Z], )?--[a-z][a-z-]*' <<<"$1" | grep -oE -- '--[a-z][a-z-]*' |
               grep -vxE -- '--help(-all)?' | sort -u; }

# synopsis_of CMD: the SYNOPSIS entries (split at .PP and .br) whose command is CMD
synopsis_of() {
  awk -v cmd="$1" '
    /^\.SH / { in_syn = ($2 == "SYNOPSIS"); next }
    !in_syn { next }
    /^\.(PP|br)$/ { if (is) printf "%s\n", buf; buf = ""; is = 0; next }
    { buf = buf " " $0
      if ($1 == ".B") { for (i = 2; i <= NF; i++) if ($i == cmd) is = 1 } }
    END { if (is) printf "%s\n", buf }' <<<"$text"
}

# section_of CMD: the text of ".SS CMD ..." up to the next .SS or .SH
section_of() {
  awk -v cmd="$1" '
    /^\.S[SH] / { in_sec = ($1 == ".SS" && $2 == cmd) }
    in_sec' <<<"$text"
}

has() { grep -qE -- "$2([^a-z-]|\$)" <<<"$1"; }

commands=$("$BIN" --help | awk '/^Commands:/ { on = 1; next } on && /^  [a-z]/ { print $1 }')
[ -n "$commands" ] || { echo "FAIL: virtsnap --help lists no commands"; exit 1; }

global=$(awk '/^\.SH GLOBAL OPTIONS/ { on = 1; next } /^\.SH / { on = 0 } on' <<<"$text")
for opt in $(options_of "$("$BIN" --help)"); do
  if has "$global" "$opt"; then echo "ok: global $opt"; else echo "FAIL: global option $opt is not in GLOBAL OPTIONS"; fail=1; fi
done

for cmd in $commands; do
  help=$("$BIN" "$cmd" --help 2>&1) || { echo "FAIL: virtsnap $cmd --help: $help"; fail=1; continue; }
  syn=$(synopsis_of "$cmd")
  sec=$(section_of "$cmd")
  [ -n "$syn" ] || { echo "FAIL: $cmd has no SYNOPSIS entry"; fail=1; }
  [ -n "$sec" ] || { echo "FAIL: $cmd has no .SS section"; fail=1; }
  opts=$(options_of "$help")
  [ -n "$opts" ] || { echo "FAIL: virtsnap $cmd --help lists no option"; fail=1; }
  for opt in $opts; do
    if has "$syn" "$opt"; then echo "ok: $cmd $opt in SYNOPSIS"
    else echo "FAIL: virtsnap $cmd --help lists $opt; the man page's SYNOPSIS of $cmd does not"; fail=1; fi
    if has "$sec" "$opt"; then echo "ok: $cmd $opt in its section"
    else echo "FAIL: virtsnap $cmd --help lists $opt; the man page's section $cmd does not"; fail=1; fi
  done
done
exit $fail
