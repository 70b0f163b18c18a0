#!/usr/bin/env bash
# tests/deb-roundtrip.sh: builds the Debian package with cargo-deb, installs it
# on this machine with dpkg, checks what it installed, runs the installed
# binary, and purges it again, checking that nothing is left behind.
#
#   bash tests/deb-roundtrip.sh      (as root, on Debian 12 or newer)
#
# Installs cargo-deb (pinned, with `cargo install --locked`) if it is missing
# and adduser/systemd if they are missing; a second run reuses both. The
# machine needs no running systemd: `systemd-analyze verify` works offline,
# and the package's maintainer scripts start the service only where systemd
# is PID 1. Where it is, installing starts the exporter on :9276 for the few
# seconds until the purge.
#
# One line per check, "ok - ..." or "FAIL - ...", then
# "deb-roundtrip: N passed, M failed"; exit status 1 if any check failed,
# 2 if the package could not be built or installed.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO_DEB_VERSION=3.8.0
PACKAGE=unassigned-port-exporter
ACCOUNT=unassigned_port_exporter
BINARY=/usr/bin/unassigned_port_exporter
UNIT=/usr/lib/systemd/system/unassigned_port_exporter.service
DEFAULTS=/etc/default/unassigned_port_exporter
ALLOW=/etc/unassigned_port_exporter/default.allow
SHARE=/usr/share/unassigned-port-exporter
ENABLED_LINK=/etc/systemd/system/multi-user.target.wants/unassigned_port_exporter.service
CRATE_VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
# Worst acceptable `systemd-analyze security` exposure of the packaged unit,
# in tenths: the same limit tests/check-deploy.sh puts on the source unit.
SYSTEMD_EXPOSURE_MAX=30

WORK=$(mktemp -d)
# shellcheck source=tests/lib/checks.sh
source tests/lib/checks.sh # the script runs from the checkout root
export DEBIAN_FRONTEND=noninteractive

die() { printf 'deb-roundtrip: %s\n' "$*" >&2; exit 2; }

# Leaves the machine as it found it, whatever happened in between.
cleanup() {
    if dpkg-query -W -f='${Status}' "$PACKAGE" 2>/dev/null | grep -q installed; then
        dpkg --purge "$PACKAGE" >/dev/null 2>&1 || true
    fi
    [ -z "${server_pid:-}" ] || kill "$server_pid" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
# Killed (Ctrl-C, a closed output pipe): still clean up, through EXIT.
trap 'exit 2' INT TERM HUP PIPE

# --------------------------------------------------------------------------
# Setup
# --------------------------------------------------------------------------

[ "$(id -u)" = 0 ] || die "must run as root (dpkg -i)"

missing=()
command -v adduser >/dev/null || missing+=(adduser)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
    apt-get update -qq >/dev/null 2>&1 || true
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "could not install ${missing[*]}"
fi

if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
    echo "# installing cargo-deb $CARGO_DEB_VERSION"
    cargo install --quiet --locked cargo-deb --version "$CARGO_DEB_VERSION" \
        || die "cargo install cargo-deb failed"
fi

if dpkg-query -W -f='${Status}' "$PACKAGE" 2>/dev/null | grep -q installed; then
    die "$PACKAGE is already installed here; purge it first (dpkg --purge $PACKAGE)"
fi
if getent passwd "$ACCOUNT" >/dev/null; then
    die "an account $ACCOUNT already exists; this test checks that the package creates and removes it"
fi

check "packaged unit is generated from deploy/systemd/ (generate-unit.py --check)" \
    python3 deploy/debian/generate-unit.py --check

echo "# building the package (cargo deb)"
rm -f target/debian/"${PACKAGE}"_*.deb
cargo deb --quiet >"$WORK/cargo-deb.out" 2>&1 || { cat "$WORK/cargo-deb.out"; die "cargo deb failed"; }
DEB=$(ls target/debian/"${PACKAGE}"_*.deb)
echo "# $DEB ($(du -k "$DEB" | cut -f1) KiB)"

# --------------------------------------------------------------------------
# The package as built
# --------------------------------------------------------------------------

check_contents() {
    dpkg-deb -c "$DEB" | awk '{print $6}' | sed 's|^\./|/|' >"$WORK/contents"
    local path missing_paths=0
    for path in "$BINARY" "$UNIT" "$DEFAULTS" "$ALLOW" \
        "$SHARE/prometheus/unassigned-ports.rules.yml" \
        "$SHARE/prometheus/prometheus.yml" \
        "$SHARE/alertmanager/alertmanager.yml" \
        "$SHARE/grafana/unassigned-ports.json" \
        "/usr/share/doc/$PACKAGE/copyright"; do
        grep -qx "$path" "$WORK/contents" || { echo "missing: $path"; missing_paths=1; }
    done
    return "$missing_paths"
}
check "package holds the binary, unit, defaults, rules, dashboard, Alertmanager example" check_contents

check_control() {
    dpkg-deb -f "$DEB" Depends | tee /dev/stderr | grep -q adduser &&
        dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./conffiles | grep -qx "$DEFAULTS" &&
        dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./conffiles | grep -qx "$ALLOW"
}
check "control: depends on adduser, $DEFAULTS and $ALLOW are conffiles" check_control

# --------------------------------------------------------------------------
# Installed
# --------------------------------------------------------------------------

echo "# dpkg -i"
dpkg -i "$DEB" >"$WORK/dpkg-i.out" 2>&1 || { cat "$WORK/dpkg-i.out"; die "dpkg -i failed"; }

check_account() {
    local entry uid shell
    entry=$(getent passwd "$ACCOUNT") || { echo "no account $ACCOUNT"; return 1; }
    uid=$(cut -d: -f3 <<<"$entry")
    shell=$(cut -d: -f7 <<<"$entry")
    getent group "$ACCOUNT" >/dev/null || { echo "no group $ACCOUNT"; return 1; }
    # A system account: uid in the system range, no login shell.
    ((uid > 0 && uid < 1000)) || { echo "uid $uid is not a system uid"; return 1; }
    [[ $shell == */nologin || $shell == /bin/false ]] || { echo "login shell $shell"; return 1; }
}
check "postinst created the system account $ACCOUNT" check_account

check_installed_files() {
    [ -x "$BINARY" ] && [ -f "$UNIT" ] && [ -f "$DEFAULTS" ] &&
        [ -f "$SHARE/prometheus/unassigned-ports.rules.yml" ] &&
        [ -f "$SHARE/grafana/unassigned-ports.json" ] &&
        grep -qx "ExecStart=$BINARY \$ARGS" "$UNIT" &&
        grep -qx "EnvironmentFile=-$DEFAULTS" "$UNIT" &&
        grep -qx "User=$ACCOUNT" "$UNIT"
}
check "installed unit runs $BINARY as $ACCOUNT with $DEFAULTS" check_installed_files

check_verify() {
    # verify prints problems on stderr but does not always fail on them (a
    # line it cannot parse is "ignoring", exit status 0).
    systemd-analyze verify "$UNIT" 2>"$WORK/verify.err" || { cat "$WORK/verify.err"; return 1; }
    if [ -s "$WORK/verify.err" ]; then cat "$WORK/verify.err"; return 1; fi
}
check "installed unit passes systemd-analyze verify (no complaint at all)" check_verify

check_security() {
    systemd-analyze security --offline=true --threshold="$SYSTEMD_EXPOSURE_MAX" "$UNIT" \
        | tail -n1
}
check "installed unit's systemd-analyze security exposure is at most 3.0" check_security

check "postinst enabled the unit (multi-user.target.wants)" test -L "$ENABLED_LINK"

check_version() {
    "$BINARY" --version | tee /dev/stderr | grep -q "$CRATE_VERSION"
}
check "installed binary runs (--version says $CRATE_VERSION)" check_version

# The installed binary as the packaged account, on a free loopback port, with
# the flags from the packaged defaults file (listen address overridden).
check_serves() {
    local port args
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    args=$(. "$DEFAULTS" && echo "$ARGS")
    # shellcheck disable=SC2086 # ARGS is split on whitespace, as systemd does.
    setpriv --reuid="$ACCOUNT" --regid="$ACCOUNT" --init-groups \
        "$BINARY" $args --web.listen-address="127.0.0.1:$port" >"$WORK/server.log" 2>&1 &
    server_pid=$!
    local attempt
    for attempt in $(seq 50); do
        curl -fsS "http://127.0.0.1:$port/metrics" >"$WORK/metrics" 2>/dev/null && break
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
    grep -q '^unassigned_port_collection_success 1' "$WORK/metrics" 2>/dev/null ||
        { echo "no successful scrape after $attempt attempts"; cat "$WORK/server.log"; return 1; }
    # The packaged defaults load the shipped policy (the log says so).
    grep -q "$ALLOW" "$WORK/server.log" ||
        { echo "the packaged defaults did not load $ALLOW"; cat "$WORK/server.log"; return 1; }
}
check_default_policy() {
    cmp "$ALLOW" deploy/allow/default.allow &&
        grep -q -- "--watch.allow-file=$ALLOW" "$DEFAULTS" &&
        "$BINARY" --watch.print-default-allow | cmp - "$ALLOW"
}
check "installed $ALLOW is the shipped policy, loaded by $DEFAULTS, and --watch.print-default-allow prints it" check_default_policy
check "installed binary serves /metrics as $ACCOUNT with the packaged defaults" check_serves

# --------------------------------------------------------------------------
# Purged
# --------------------------------------------------------------------------

echo "# dpkg --purge"
dpkg --purge "$PACKAGE" >"$WORK/dpkg-purge.out" 2>&1 || { cat "$WORK/dpkg-purge.out"; die "dpkg --purge failed"; }

check_files_gone() {
    local path left=0
    for path in $(cat "$WORK/contents"); do
        case $path in
            */) ;; # directories shared with other packages stay
            *) [ ! -e "$path" ] || { echo "left behind: $path"; left=1; } ;;
        esac
    done
    for path in "$SHARE" "/usr/share/doc/$PACKAGE" "$ENABLED_LINK"; do
        [ ! -e "$path" ] && [ ! -L "$path" ] || { echo "left behind: $path"; left=1; }
    done
    return "$left"
}
check "purge removed every file, the conffile and the enable link" check_files_gone

check_account_gone() {
    ! getent passwd "$ACCOUNT" && ! getent group "$ACCOUNT"
}
check "purge removed the account and group $ACCOUNT" check_account_gone

echo "deb-roundtrip: ${passed} passed, ${failed} failed"
((failed == 0))
