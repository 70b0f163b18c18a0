#!/usr/bin/env bash
# tests/windows-wine.sh: the Windows build, proven on Linux. Cross-builds the
# exporter for x86_64-pc-windows-gnu with mingw-w64, runs clippy for that
# target, then runs the .exe under Wine and checks that it serves /metrics and
# reports a listener on 276/tcp (and 276/udp) opened by a native Linux process;
# then runs the same .exe as a service under Wine's Service Control Manager
# (sc create, start, stop; a bad flag ends it with its exit code).
#
#   bash tests/windows-wine.sh      (as root, on Debian 12)
#
# Installs what it lacks: Debian's gcc-mingw-w64-x86-64 and wine64 (apt), the
# rustup target. A second run reuses them and cargo's target/ directory.
#
# Wine here: a private WINEPREFIX in a temporary directory, WINEDEBUG=-all, no
# display, every wine call under `timeout`, `wineserver -k` at the end. The
# whole Wine run happens inside a network namespace this script creates, so
# port 276 and the exporter's port 9276 never meet other tests' sockets.
#
# Under Wine, Windows' socket table (GetExtendedTcpTable) is Linux's
# /proc/net/tcp as Wine translates it: every socket of the namespace is
# there, but Wine cannot tell which Linux process owns it, so the owner is
# pid 0. The test asserts the socket, not its owner.
#
# Outside the Service Control Manager, Wine takes about 10 s to refuse the
# exporter's StartServiceCtrlDispatcher call (Windows refuses at once), so each
# console start here takes that long.
#
# Rust's standard library imports ProcessPrng from bcryptprimitives.dll, which
# Wine 8 lacks: tests/wine/bcryptprimitives.c is a test-only stand-in, built
# here and put next to the .exe.
#
# One line per check, "ok - ..." or "FAIL - ...", then
# "windows-wine: N passed, M failed"; exit status 1 if any check failed,
# 2 if the tools could not be set up or the build failed.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TARGET=x86_64-pc-windows-gnu
WINE=/usr/lib/wine/wine64
WINESERVER=/usr/lib/wine/wineserver
EXE=${CARGO_TARGET_DIR:-target}/$TARGET/release/unassigned_port_exporter.exe
# Inside the private namespace the default port is free.
ADDRESS=127.0.0.1:9276
WINE_TIMEOUT=180
NETNS=upe-wine-$$

WORK=$(mktemp -d)
# shellcheck source=tests/lib/checks.sh
source tests/lib/checks.sh # the script runs from the checkout root
listener_pid=
exporter_pid=
export DEBIAN_FRONTEND=noninteractive

die() { printf 'windows-wine: %s\n' "$*" >&2; exit 2; }

in_netns() { ip netns exec "$NETNS" "$@"; }

cleanup() {
    set +e
    [ -z "$exporter_pid" ] || kill "$exporter_pid" 2>/dev/null
    [ -z "$listener_pid" ] || kill "$listener_pid" 2>/dev/null
    if [ -d "$WORK/prefix" ]; then
        WINEPREFIX=$WORK/prefix timeout 30 "$WINESERVER" -k 2>/dev/null
    fi
    wait 2>/dev/null
    ip netns del "$NETNS" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
# Killed (Ctrl-C, a closed output pipe): still clean up, through EXIT.
trap 'exit 2' INT TERM HUP PIPE

# --------------------------------------------------------------------------
# Setup
# --------------------------------------------------------------------------

[ "$(id -u)" = 0 ] || die "must run as root (apt-get, ip netns)"

missing=()
command -v x86_64-w64-mingw32-gcc >/dev/null || missing+=(gcc-mingw-w64-x86-64)
[ -x "$WINE" ] || missing+=(wine64)
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
command -v ip >/dev/null || missing+=(iproute2)
if ((${#missing[@]})); then
    echo "# installing ${missing[*]}"
    apt-get update -qq >/dev/null 2>&1 || true
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "could not install ${missing[*]}"
fi
if ! rustup target list --installed | grep -qx "$TARGET"; then
    rustup target add "$TARGET" >/dev/null 2>&1 || die "rustup target add $TARGET failed"
fi

# --------------------------------------------------------------------------
# Build and lint for Windows
# --------------------------------------------------------------------------

echo "# cargo build --release --target $TARGET"
cargo build --quiet --release --target "$TARGET" --bin unassigned_port_exporter \
    >"$WORK/build.out" 2>&1 || { cat "$WORK/build.out"; die "the Windows build failed"; }
passed=$((passed + 1))
echo "ok - cargo build --release --target $TARGET ($(du -k "$EXE" | cut -f1) KiB .exe)"

check "cargo clippy --release --target $TARGET -- -D warnings" \
    cargo clippy --quiet --release --target "$TARGET" -- -D warnings

mkdir -p "$WORK/bin"
cp "$EXE" "$WORK/bin/"
x86_64-w64-mingw32-gcc -O2 -shared -s -o "$WORK/bin/bcryptprimitives.dll" \
    tests/wine/bcryptprimitives.c -ladvapi32 || die "building the stand-in bcryptprimitives.dll failed"

# --------------------------------------------------------------------------
# Run under Wine, in a network namespace of our own
# --------------------------------------------------------------------------

ip netns add "$NETNS" || die "ip netns add failed"
in_netns ip link set lo up

export WINEPREFIX=$WORK/prefix WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
unset DISPLAY WAYLAND_DISPLAY
mkdir "$WINEPREFIX"
echo "# wineboot (new prefix)"
in_netns timeout "$WINE_TIMEOUT" "$WINE" wineboot --init >"$WORK/wineboot.out" 2>&1 \
    || { cat "$WORK/wineboot.out"; die "wineboot failed or timed out"; }
# Then one wineserver (and so one services.exe) for the rest of the run, until
# `wineserver -k` in cleanup. The one wineboot left behind answers service
# calls inconsistently (every other `sc query` misses a service just
# created); a fresh one does not, and staying up saves seconds per call.
in_netns timeout 30 "$WINESERVER" -k
in_netns timeout 30 "$WINESERVER" --persistent || die "wineserver did not start"

check_version() {
    in_netns timeout "$WINE_TIMEOUT" "$WINE" "$WORK/bin/unassigned_port_exporter.exe" --version \
        | tee /dev/stderr | grep -q "^unassigned_port_exporter $(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"
}
check "the .exe runs under Wine (--version)" check_version

# Not through in_netns: $! must be the process itself, for kill.
ip netns exec "$NETNS" timeout "$WINE_TIMEOUT" "$WINE" "$WORK/bin/unassigned_port_exporter.exe" \
    --web.listen-address="$ADDRESS" >"$WORK/exporter.log" 2>&1 &
exporter_pid=$!

scrape() { in_netns curl -fsS --max-time 10 "http://$ADDRESS/metrics" -o "$WORK/metrics"; }

# Waits up to 60 s for a scrape whose output matches the extended regex $1.
scrape_until() {
    local attempt
    for attempt in $(seq 120); do
        if scrape 2>/dev/null && grep -Eq "$1" "$WORK/metrics"; then
            return 0
        fi
        if [ -n "$exporter_pid" ] && ! kill -0 "$exporter_pid" 2>/dev/null; then
            echo "the exporter exited:"
            cat "$WORK/exporter.log"
            return 1
        fi
        sleep 0.5
    done
    echo "no match for $1 after 60 s; last scrape:"
    grep '^unassigned_port_' "$WORK/metrics" 2>/dev/null || echo "(none)"
    echo "exporter log:"
    cat "$WORK/exporter.log"
    return 1
}

# Matches the listener series for PROTOCOL on 276 at ADDRESS, whatever the
# owner labels say (Wine reports pid 0 and no process).
listener_on_276() {
    printf '^unassigned_port_listeners\\{address="%s",[^}]*port="276",[^}]*protocol="%s",[^}]*\\} 1$' "$1" "$2"
}

check "the exporter serves /metrics under Wine with the netstat2 backend" \
    scrape_until '^unassigned_port_collector_info\{backend="netstat2",.*\} 1$'

check_no_listener_yet() {
    scrape && ! grep -E '^unassigned_port_listeners\{.*port="276"' "$WORK/metrics"
}
check "no listener on 276 before one is opened" check_no_listener_yet

# A native Linux process listens on 276/tcp (all addresses) and 276/udp.
ip netns exec "$NETNS" python3 - "$WORK/listening" <<'PY' &
import pathlib, socket, sys, time
tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
tcp.bind(("0.0.0.0", 276))
tcp.listen()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", 276))
pathlib.Path(sys.argv[1]).touch()
time.sleep(300)
PY
listener_pid=$!
for _ in $(seq 50); do [ -e "$WORK/listening" ] && break; sleep 0.1; done
[ -e "$WORK/listening" ] || die "the Linux listener on 276 did not start"

check "a Linux process's listener on 276/tcp appears in /metrics" \
    scrape_until "$(listener_on_276 0.0.0.0 tcp)"
check "a Linux process's socket on 276/udp appears in /metrics" \
    scrape_until "$(listener_on_276 127.0.0.1 udp)"
check "collection succeeds (unassigned_port_collection_success 1)" \
    grep -qx 'unassigned_port_collection_success 1' "$WORK/metrics"
check "no Linux-only series (unassigned_port_unprivileged_port_start)" \
    bash -c '! grep "^unassigned_port_unprivileged_port_start" "$1"' _ "$WORK/metrics"
check "/healthz answers" in_netns curl -fsS --max-time 10 "http://$ADDRESS/healthz"

kill "$listener_pid" 2>/dev/null || true
wait "$listener_pid" 2>/dev/null || true
listener_pid=

# Waits up to 60 s for a scrape without any series on 276.
scrape_until_gone() {
    local attempt
    for attempt in $(seq 120); do
        check_no_listener_yet >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    echo "still there after 60 s:"
    grep -E '^unassigned_port_listeners\{.*port="276"' "$WORK/metrics"
    return 1
}
check "the 276 series disappear once the Linux listener is closed" scrape_until_gone

kill "$exporter_pid" 2>/dev/null || true
wait "$exporter_pid" 2>/dev/null || true
exporter_pid=

# --------------------------------------------------------------------------
# The same .exe as a Windows service, under Wine's Service Control Manager
# --------------------------------------------------------------------------

SERVICE_ADDRESS=127.0.0.1:9277
# Wine's drive Z: is the Linux root.
WINDOWS_EXE="Z:$(tr / '\\' <<<"$WORK/bin/unassigned_port_exporter.exe")"

sc() { in_netns timeout "$WINE_TIMEOUT" "$WINE" sc "$@"; }

# Waits up to 30 s until `sc query SERVICE` shows STATE NUMBER NAME and the
# SERVICE_EXIT_CODE given.
sc_until() {
    local service=$1 state=$2 exit_code=$3 attempt
    for attempt in $(seq 60); do
        sc query "$service" >"$WORK/sc.out" 2>&1 || true
        if grep -Eq "STATE +: $state\b" "$WORK/sc.out" &&
            grep -Eq "SERVICE_EXIT_CODE +: $exit_code " "$WORK/sc.out"; then
            return 0
        fi
        sleep 0.5
    done
    echo "sc query $service after 30 s (wanted STATE $state, SERVICE_EXIT_CODE $exit_code):"
    cat "$WORK/sc.out"
    return 1
}

check "sc create registers the .exe as a service" \
    sc create unassigned_port_exporter binPath= "$WINDOWS_EXE --web.listen-address=$SERVICE_ADDRESS"

service_serves() {
    sc start unassigned_port_exporter >/dev/null 2>&1 || true
    sc_until unassigned_port_exporter "4 +RUNNING" 0 || return 1
    ADDRESS=$SERVICE_ADDRESS scrape_until '^unassigned_port_collection_success 1$'
}
check "sc start: the service reports RUNNING and serves /metrics" service_serves

service_stops() {
    sc stop unassigned_port_exporter >/dev/null 2>&1 || true
    sc_until unassigned_port_exporter "1 +STOPPED" 0 || return 1
    ! in_netns curl -fsS --max-time 5 "http://$SERVICE_ADDRESS/metrics" -o /dev/null
}
check "sc stop: the service reports STOPPED (exit code 0) and stops listening" service_stops

service_refuses_bad_flag() {
    sc create unassigned_port_exporter_bad \
        binPath= "$WINDOWS_EXE --web.listen-address=not-an-address" || return 1
    sc start unassigned_port_exporter_bad >/dev/null 2>&1 || true
    sc_until unassigned_port_exporter_bad "1 +STOPPED" 2
}
check "a bad flag stops the service with SERVICE_EXIT_CODE 2" service_refuses_bad_flag

delete_services() {
    sc delete unassigned_port_exporter && sc delete unassigned_port_exporter_bad
}
check "sc delete removes both services" delete_services

echo "windows-wine: ${passed} passed, ${failed} failed"
((failed == 0))
