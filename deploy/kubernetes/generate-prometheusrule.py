#!/usr/bin/env python3
"""Generate deploy/kubernetes/prometheusrule.yaml from the Prometheus rules.

The rule groups live in one place, deploy/prometheus/unassigned-ports.rules.yml
(loaded as is by a plain Prometheus, tested by promtool and the end-to-end
test). For prometheus-operator they have to be wrapped in a PrometheusRule
object; this script does that wrapping, so the two never drift apart:

    python3 deploy/kubernetes/generate-prometheusrule.py          # rewrite
    python3 deploy/kubernetes/generate-prometheusrule.py --check  # CI: fail if stale

`spec.groups` of the output is exactly the `groups` list of the rules file:
same groups, same rules, same order, same strings. Needs PyYAML.
"""

import argparse
import difflib
import pathlib
import sys

try:
    import yaml
except ImportError:  # pragma: no cover - depends on the machine
    sys.exit("generate-prometheusrule.py: PyYAML is missing (pip install pyyaml)")

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
RULES = REPO / "deploy" / "prometheus" / "unassigned-ports.rules.yml"
OUTPUT = HERE / "prometheusrule.yaml"

HEADER = """\
# GENERATED FILE, DO NOT EDIT.
# Made by deploy/kubernetes/generate-prometheusrule.py from
# deploy/prometheus/unassigned-ports.rules.yml; edit that file and rerun:
#   python3 deploy/kubernetes/generate-prometheusrule.py
# tests/check-deploy.sh fails while this file is stale.
#
# prometheus-operator loads PrometheusRules picked by its ruleSelector; with
# kube-prometheus-stack that is usually the label `release: <helm release>`.
# Add it in a kustomize overlay if your Prometheus needs it.
"""


class _Dumper(yaml.SafeDumper):
    """SafeDumper that indents lists under their key and keeps multi-line
    strings readable (literal block style)."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def _str_representer(dumper, value):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def load_groups(path):
    """Return the `groups` list of a Prometheus rules file, or exit with a
    message saying what is wrong with it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        sys.exit(f"generate-prometheusrule.py: cannot read {path}: {err}")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        sys.exit(f"generate-prometheusrule.py: {path} is not valid YAML: {err}")
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list) or not doc["groups"]:
        sys.exit(f"generate-prometheusrule.py: {path} has no non-empty `groups:` list")
    return doc["groups"]


def render(groups):
    """The full text of prometheusrule.yaml for these rule groups."""
    obj = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "unassigned-port-exporter",
            "labels": {
                "app.kubernetes.io/name": "unassigned-port-exporter",
                "app.kubernetes.io/component": "exporter",
            },
        },
        "spec": {"groups": groups},
    }
    body = yaml.dump(
        obj,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100000,
    )
    text = HEADER + body
    # The point of the file: what Kubernetes reads back is exactly the groups.
    if yaml.safe_load(text)["spec"]["groups"] != groups:
        sys.exit("generate-prometheusrule.py: internal error: output does not round-trip")
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if the output file is missing or stale")
    parser.add_argument("--rules", type=pathlib.Path, default=RULES,
                        help=f"Prometheus rules file (default: {RULES.relative_to(REPO)})")
    parser.add_argument("--output", type=pathlib.Path, default=OUTPUT,
                        help=f"PrometheusRule file (default: {OUTPUT.relative_to(REPO)})")
    args = parser.parse_args(argv)

    wanted = render(load_groups(args.rules))

    if args.check:
        try:
            current = args.output.read_text(encoding="utf-8")
        except OSError:
            current = None
        if current == wanted:
            print(f"{args.output.name} is up to date with {args.rules.name}")
            return 0
        if current is None:
            print(f"{args.output} is missing", file=sys.stderr)
        else:
            sys.stderr.writelines(difflib.unified_diff(
                current.splitlines(keepends=True), wanted.splitlines(keepends=True),
                fromfile=f"{args.output.name} (committed)", tofile=f"{args.output.name} (generated)"))
        print("stale: run python3 deploy/kubernetes/generate-prometheusrule.py", file=sys.stderr)
        return 1

    args.output.write_text(wanted, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
