#!/usr/bin/env bash
# Checks that every crate this project can pull in is under a license that
# may be combined with the project's own, Apache-2.0 (LICENSE).
#
#   bash tests/check-licenses.sh
#
# It reads `cargo metadata` (no compilation, a second or two): every package
# of the resolved graph, for every target platform (the Windows- and
# macOS-only crates too, which `--filter-platform` would drop) and every
# dependency kind (normal, build, dev). The fuzz/ workspace is left out: it
# is never built into anything shipped. A crate fails when its SPDX
# `license` expression is not satisfied by ALLOWED below, when it declares no
# license, or when it declares only a `license-file` and has no entry in
# LICENSE_FILE_EXCEPTIONS. Each failing crate is named; the exit code is 1.
#
# Expressions: `OR` is satisfied by any one allowed side, `AND` needs both,
# `WITH <exception>` is judged by its license (an SPDX exception only adds
# permissions), parentheses group, and the old `/` separator means `OR`.
# Before reading the real graph, the evaluator is checked against fixed
# cases (with a fixed allowlist of its own), so a broken parser cannot pass
# everything.
set -euo pipefail
cd "$(dirname "$0")/.."

metadata=$(mktemp)
trap 'rm -f "$metadata"' EXIT
cargo metadata --format-version 1 --manifest-path Cargo.toml >"$metadata"

python3 - "$metadata" <<'PY'
import json
import re
import sys

# Licenses a dependency of an Apache-2.0 program may carry. Permissive ones
# impose only notices; MPL-2.0 is file-level copyleft (changes to its own
# files stay MPL, the rest of the program is unaffected).
ALLOWED = {
    "0BSD",
    "Apache-2.0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "BSL-1.0",
    # Mozilla's root certificate data (webpki-roots): a permissive data license.
    "CDLA-Permissive-2.0",
    "CC0-1.0",
    "ISC",
    "MIT",
    "MIT-0",
    "MPL-2.0",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    "Unlicense",
    "Zlib",
}

# Crates that declare a license file instead of an SPDX expression: each
# needs a human to have read that file. name -> why it is acceptable.
LICENSE_FILE_EXCEPTIONS = {
    # e.g. "ring": "ring <0.17: ISC-style (OpenSSL/BoringSSL) terms, read in its LICENSE",
}


class BadExpression(ValueError):
    pass


def tokens(expression):
    # "/" is the pre-SPDX separator crates.io still shows (MIT/Apache-2.0).
    for token in re.findall(r"\(|\)|/|[^\s()/]+", expression):
        upper = token.upper()
        if token == "/":
            yield "OR"
        elif upper in ("AND", "OR", "WITH"):
            yield upper
        else:
            yield token


def refused(expression, allowed):
    """The license terms that keep `expression` from being satisfied by
    `allowed`: empty when it is. Raises BadExpression on a malformed one."""
    items = list(tokens(expression))
    position = 0
    allowed_lower = {name.lower() for name in allowed}

    def peek():
        return items[position] if position < len(items) else None

    def take():
        nonlocal position
        if position >= len(items):
            raise BadExpression(f"{expression!r}: ends too early")
        position += 1
        return items[position - 1]

    # Each parse function returns the set of refused terms (empty = satisfied).
    def any_of():
        refusals = all_of()
        while peek() == "OR":
            take()
            other = all_of()
            refusals = set() if not refusals or not other else refusals | other
        return refusals

    def all_of():
        refusals = term()
        while peek() == "AND":
            take()
            refusals = refusals | term()
        return refusals

    def term():
        token = take()
        if token == "(":
            refusals = any_of()
            if take() != ")":
                raise BadExpression(f"{expression!r}: unbalanced parenthesis")
            return refusals
        if token in ("AND", "OR", "WITH", ")"):
            raise BadExpression(f"{expression!r}: {token} where a license was expected")
        name = token[:-1] if token.endswith("+") else token
        if peek() == "WITH":
            take()
            exception = take()
            if exception in ("AND", "OR", "WITH", "(", ")"):
                raise BadExpression(f"{expression!r}: WITH needs an exception name")
        return set() if name.lower() in allowed_lower else {token}

    if not items:
        raise BadExpression("empty expression")
    refusals = any_of()
    if position != len(items):
        raise BadExpression(f"{expression!r}: unexpected {items[position]!r}")
    return refusals


def self_test():
    allowed = {"MIT", "Apache-2.0", "ISC", "Unicode-3.0"}
    cases = [
        ("MIT", set()),
        ("mit or GPL-3.0-only", set()),
        ("MIT/Apache-2.0", set()),
        ("Apache-2.0 / MIT", set()),
        ("GPL-3.0-only/MIT", set()),
        ("GPL-3.0-only", {"GPL-3.0-only"}),
        ("MIT AND GPL-2.0-or-later", {"GPL-2.0-or-later"}),
        ("Apache-2.0 AND ISC", set()),
        ("(MIT OR Apache-2.0) AND Unicode-3.0", set()),
        ("(MIT OR Apache-2.0) AND LGPL-2.1-only", {"LGPL-2.1-only"}),
        ("Apache-2.0 WITH LLVM-exception OR Apache-2.0 OR MIT", set()),
        ("Apache-2.0 WITH LLVM-exception", set()),
        ("GPL-2.0-only WITH Classpath-exception-2.0", {"GPL-2.0-only"}),
        ("GPL-2.0-only OR AGPL-3.0-only", {"GPL-2.0-only", "AGPL-3.0-only"}),
        ("MIT OR Apache-2.0 OR LGPL-2.1-or-later", set()),
        ("GPL-2.0+", {"GPL-2.0+"}),
    ]
    for expression, expected in cases:
        got = refused(expression, allowed)
        assert got == expected, f"self-test: {expression!r} refused {got}, expected {expected}"
    for malformed in ["", "MIT AND", "(MIT OR Apache-2.0", "MIT Apache-2.0", "MIT WITH", "OR MIT"]:
        try:
            refused(malformed, allowed)
        except BadExpression:
            continue
        raise AssertionError(f"self-test: {malformed!r} was accepted")


def main():
    self_test()
    with open(sys.argv[1]) as f:
        packages = json.load(f)["packages"]
    failures = []
    for package in sorted(packages, key=lambda p: (p["name"], p["version"])):
        crate = f"{package['name']} {package['version']}"
        expression = (package.get("license") or "").strip()
        if expression:
            try:
                refusals = refused(expression, ALLOWED)
            except BadExpression as err:
                failures.append(f"{crate}: unreadable license expression: {err}")
                continue
            if refusals:
                failures.append(f"{crate}: {expression!r} (not allowed: {', '.join(sorted(refusals))})")
        elif package.get("license_file"):
            if package["name"] not in LICENSE_FILE_EXCEPTIONS:
                failures.append(
                    f"{crate}: only a license file ({package['license_file']}); read it, "
                    "then add the crate to LICENSE_FILE_EXCEPTIONS with the reason"
                )
        else:
            failures.append(f"{crate}: declares no license")
    for failure in failures:
        print(f"license not allowed: {failure}")
    print(f"check-licenses: {len(packages)} crates, {len(failures)} refused")
    return 1 if failures else 0


sys.exit(main())
PY
