#!/bin/sh
# Checks systemd/atlas-linkd.service: `systemd-analyze verify` must be silent and
# `systemd-analyze security --offline=true` must report an exposure of at most $MAX_EXPOSURE (default 1.5).
#
# Works as root or not, in a plain container without systemd running: verify runs against a throw-away
# root (--root) that holds the unit, a copy of the host's unit library (for sysinit.target and friends)
# and stub executables at every absolute path the unit runs, so nothing on the host is touched.
# Needs: systemd-analyze (Debian/Ubuntu package `systemd`).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
unit_file=${1:-$here/atlas-linkd.service}
max_exposure=${MAX_EXPOSURE:-1.5}
unit=$(basename "$unit_file")

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "check.sh: systemd-analyze not found; install the 'systemd' package" >&2
    exit 1
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT INT TERM

mkdir -p "$root/etc/systemd/system" "$root/usr/lib/systemd"
cp "$unit_file" "$root/etc/systemd/system/$unit"
for lib in /usr/lib/systemd/system /lib/systemd/system; do
    if [ -d "$lib" ]; then
        cp -R "$lib" "$root/usr/lib/systemd/"
        break
    fi
done

# Every Exec*= command: strip the prefixes systemd allows (@ - : + !) and stub the absolute path.
grep -E '^[[:space:]]*Exec[A-Za-z]*=' "$unit_file" \
    | sed -E 's/^[[:space:]]*Exec[A-Za-z]*=[[:space:]]*//; s/^[-@:+!]+//' \
    | awk '{print $1}' | grep '^/' | sort -u \
    | while read -r exe; do
        mkdir -p "$root$(dirname "$exe")"
        printf '#!/bin/sh\nexit 0\n' >"$root$exe"
        chmod 0755 "$root$exe"
    done

status=0

out=$(SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no --root="$root" "$unit" 2>&1) || status=1
if [ -n "$out" ]; then
    status=1
fi
if [ "$status" -ne 0 ]; then
    echo "FAIL: systemd-analyze verify $unit:" >&2
    echo "$out" >&2
else
    echo "ok: systemd-analyze verify $unit is silent"
fi

sec=$(systemd-analyze security --no-pager --offline=true "$unit_file" 2>&1) || true
exposure=$(printf '%s\n' "$sec" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' | tail -n 1)
if [ -z "$exposure" ]; then
    echo "FAIL: no exposure figure from systemd-analyze security:" >&2
    echo "$sec" >&2
    exit 1
fi
if awk -v e="$exposure" -v m="$max_exposure" 'BEGIN { exit !(e + 0 <= m + 0) }'; then
    echo "ok: exposure $exposure <= $max_exposure"
else
    echo "FAIL: exposure $exposure > $max_exposure; what still counts:" >&2
    printf '%s\n' "$sec" | grep '✗' >&2 || true
    status=1
fi
exit "$status"
