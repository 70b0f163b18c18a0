#!/usr/bin/env bash
# Static checks of the monitoring files shipped with unassigned_port_exporter:
# Prometheus config and rules, rule unit tests, Alertmanager config, and the
# Grafana dashboard's JSON. Run from the repository root:
#
#   bash tests/check-rules.sh
#
# Needs promtool and amtool (Debian packages `prometheus` and
# `prometheus-alertmanager`, installed by the top-level test script) and
# python3. Writes nothing; safe to run any number of times.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PROM_CONFIG=deploy/prometheus/prometheus.yml
PROM_RULES=deploy/prometheus/unassigned-ports.rules.yml
AM_CONFIG=deploy/alertmanager/alertmanager.yml
DASHBOARD=dashboards/unassigned-ports.json

missing=()
for tool in promtool amtool python3; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]} > 0)); then
    echo "check-rules: missing ${missing[*]}: install the Debian packages prometheus (promtool), prometheus-alertmanager (amtool) and python3 first, e.g. apt-get install -y prometheus prometheus-alertmanager python3" >&2
    exit 1
fi

passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# check NAME COMMAND...: run one check, print one line, show its output on failure.
check() {
    local name=$1
    shift
    if "$@" >"$log" 2>&1; then
        echo "ok   - $name"
        passed=$((passed + 1))
    else
        echo "FAIL - $name"
        sed 's/^/       /' "$log"
        failed=$((failed + 1))
    fi
}

check_dashboard() {
    python3 - "$1" <<'PY'
import json
import sys

path = sys.argv[1]
with open(path) as f:
    dash = json.load(f)

problems = []
if not any(i.get("name") == "DS_PROMETHEUS" and i.get("type") == "datasource"
           for i in dash.get("__inputs", [])):
    problems.append("__inputs lacks the DS_PROMETHEUS datasource input")
if not isinstance(dash.get("uid"), str) or not dash["uid"]:
    problems.append("dashboard has no stable uid")
if dash.get("schemaVersion", 0) < 39:
    problems.append("schemaVersion %r is older than 39" % dash.get("schemaVersion"))

variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
ds_var = variables.get("datasource")
if not ds_var or ds_var.get("type") != "datasource" or ds_var.get("query") != "prometheus":
    problems.append("no `datasource` template variable of type datasource for prometheus")
for name in ("job", "instance"):
    var = variables.get(name)
    if not var or var.get("type") != "query":
        problems.append("no `%s` query template variable" % name)

def walk(panels):
    for p in panels:
        yield p
        yield from walk(p.get("panels", []))

panels = list(walk(dash.get("panels", [])))
if not panels:
    problems.append("dashboard has no panels")
ids = [p.get("id") for p in panels]
if len(ids) != len(set(ids)):
    problems.append("panel ids are not unique")
for p in panels:
    label = "panel %r (%s)" % (p.get("title"), p.get("id"))
    if not str(p.get("description", "")).strip():
        problems.append(label + " has no description")
    if (p.get("datasource") or {}).get("uid") != "${datasource}":
        problems.append(label + " does not use datasource ${datasource}")
    targets = p.get("targets", [])
    if p.get("type") != "row" and not targets:
        problems.append(label + " has no query")
    for t in targets:
        if (t.get("datasource") or {}).get("uid") != "${datasource}":
            problems.append(label + " target %s does not use ${datasource}" % t.get("refId"))
        expr = t.get("expr", "")
        if "$job" not in expr or "$instance" not in expr:
            problems.append(label + " target %s ignores $job or $instance" % t.get("refId"))

for problem in problems:
    print(problem)
sys.exit(1 if problems else 0)
PY
}

check "promtool check config $PROM_CONFIG" promtool check config "$PROM_CONFIG"
check "promtool check rules $PROM_RULES" promtool check rules "$PROM_RULES"
for test_file in tests/rules/*.test.yml; do
    check "promtool test rules $test_file" promtool test rules "$test_file"
done
check "amtool check-config $AM_CONFIG" amtool check-config "$AM_CONFIG"
check "dashboard sanity $DASHBOARD" check_dashboard "$DASHBOARD"

echo "check-rules: $passed passed, $failed failed"
((failed == 0))
