#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian machine (as root), then
# runs every check and test of the project. `.ci/run` calls exactly this.
#
#   bash tests/run-all.sh
#
# Each step prints its result; the last line counts them.
set -uo pipefail
cd "$(dirname "$0")/.."

passed=0
failed=0
failures=()
step() {
    local name=$1
    shift
    echo "=== ${name}"
    local started=$SECONDS
    if "$@"; then
        passed=$((passed + 1))
        echo "--- ok: ${name} ($((SECONDS - started)) s)"
    else
        failed=$((failed + 1))
        failures+=("${name}")
        echo "--- FAILED: ${name} ($((SECONDS - started)) s)"
    fi
}

install_packages() {
    # rpcbind ... avahi-daemon: the stock daemons tests/fleet_daemons.rs runs
    # in a namespace of its own against the shipped default allow policy.
    local wanted=(prometheus prometheus-alertmanager iproute2 systemd python3-yaml python3-venv curl openssl
        rpcbind nfs-common openssh-server chrony dnsmasq avahi-daemon util-linux
        podman runc conmon containernetworking-plugins busybox-static iptables)
    local missing=()
    for package in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    if ((${#missing[@]})); then
        echo "installing: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    # Debian starts the packaged services; the tests start their own copies.
    systemctl stop prometheus prometheus-alertmanager prometheus-node-exporter 2>/dev/null || true
    # Where systemd is not PID 1 the packages' init scripts may have started
    # the daemons anyway: stop them (the fleet test starts its own copies).
    local service
    for service in rpcbind rpc-statd nfs-common ssh chrony dnsmasq avahi-daemon; do
        systemctl stop "$service" 2>/dev/null || true
        if [[ -x /etc/init.d/$service ]]; then /etc/init.d/"$service" stop >/dev/null 2>&1 || true; fi
    done
    command -v promtool >/dev/null && command -v prometheus-alertmanager >/dev/null
}

# Nothing here can run launchd: check that the plist parses and starts the
# binary where the README installs it, with flags only (no shell).
check_launchd_plist() {
    python3 - deploy/launchd/unassigned_port_exporter.plist <<'PY'
import plistlib, sys
with open(sys.argv[1], "rb") as f:
    plist = plistlib.load(f)
args = plist["ProgramArguments"]
assert plist["Label"] == "unassigned_port_exporter", plist["Label"]
assert args[0] == "/usr/local/bin/unassigned_port_exporter", args[0]
assert all(a.startswith("--") and "=" in a for a in args[1:]), args
assert plist["RunAtLoad"] is True
print("launchd plist:", " ".join(args))
PY
}

# A non-empty CI makes the tests fail, not skip, when a capability is missing.
# Pass CI on only when it is set to something; an empty CI is unset rather
# than exported, so no test sees a CI variable that means nothing.
if [[ -n ${CI:-} ]]; then
    export CI
else
    unset CI
fi
step "install test dependencies (apt)" install_packages
step "cargo fmt --check" cargo fmt --check
step "cargo clippy --all-targets -- -D warnings" cargo clippy --quiet --all-targets -- -D warnings
step "dependency licenses" bash tests/check-licenses.sh
# --no-fail-fast: one failing test binary must not hide the others' results.
step "cargo test --release (unit, integration, end-to-end)" cargo test --release --no-fail-fast
step "alert rules, Alertmanager config, dashboard" bash tests/check-rules.sh
step "deployment manifests" bash tests/check-deploy.sh
step "benchmarks (smoke mode): connections, namespaces, kernel events, listeners, event trail" \
    cargo bench --bench scrape --bench netns --bench events --bench listeners --bench trail -- --smoke
if [[ -x tests/fuzz-smoke.sh ]]; then
    step "fuzz targets (bounded)" bash tests/fuzz-smoke.sh
fi

step "Debian package: build, dpkg -i, systemd-analyze verify, purge" bash tests/deb-roundtrip.sh
step "Windows: cross-build, clippy for the target, .exe under Wine" bash tests/windows-wine.sh
step "macOS launchd plist parses" check_launchd_plist

if ((failed)); then
    echo "failed steps: ${failures[*]}"
fi
echo "run-all: ${passed} passed, ${failed} failed"
((failed == 0))
