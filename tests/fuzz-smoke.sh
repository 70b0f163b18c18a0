#!/usr/bin/env bash
# Bounded fuzzing smoke test: builds every cargo-fuzz target in fuzz/ once and
# runs each for a fixed time from a scratch copy of its committed seeds.
#
#   bash tests/fuzz-smoke.sh                 # 30 s per target
#   FUZZ_SECONDS=300 bash tests/fuzz-smoke.sh
#
# Environment:
#   FUZZ_SECONDS        time per target (default 30)
#   FUZZ_RSS_LIMIT_MB   libFuzzer's memory limit per target (default 2048)
#   FUZZ_TOOLCHAIN      rustup toolchain to build with (default: nightly when
#                       `rustup toolchain list` has one, else the default
#                       toolchain with RUSTC_BOOTSTRAP=1 so that stable accepts
#                       the -Z flags cargo-fuzz passes)
#   FUZZ_TARGETS        space-separated subset of targets (default: all)
#   FUZZ_TARGET_DIR     cargo target dir of the fuzz build (default ~/.cache/unassigned_port_exporter/fuzz-target;
#                       a folder kept between runs saves the ~8 min first build)
#
# Installs cargo-fuzz if it is missing. Builds into FUZZ_TARGET_DIR (never the
# main target/), crash inputs go to fuzz/artifacts/<target>/. The committed
# corpus in fuzz/corpus/ is never written to. Prints one line per target and
# ends with `fuzz-smoke: N passed, M failed`; exits non-zero if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
seconds=${FUZZ_SECONDS:-30}
rss_limit_mb=${FUZZ_RSS_LIMIT_MB:-2048}
fuzz_dir=$PWD/fuzz
# Outside the checkout, so a later run on the same machine (CI clones afresh)
# reuses the build; a new machine simply builds it.
target_dir=${FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/unassigned_port_exporter/fuzz-target}

if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
    echo "FUZZ_SECONDS must be a positive number of seconds, not '$seconds'" >&2
    exit 2
fi

summary() {
    echo "fuzz-smoke: $1 passed, $2 failed"
}

# --- toolchain and cargo-fuzz ------------------------------------------------
toolchain=${FUZZ_TOOLCHAIN:-}
if [[ -z $toolchain ]] && command -v rustup >/dev/null &&
    rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=nightly
fi
cargo=(cargo)
if [[ -n $toolchain ]]; then
    cargo=(cargo "+$toolchain")
fi
rustc_version=$(rustc ${toolchain:++$toolchain} -vV)
host=$(sed -n 's/^host: //p' <<<"$rustc_version")
release=$(sed -n 's/^release: //p' <<<"$rustc_version")
build_env=()
if [[ $release != *nightly* ]]; then
    # cargo-fuzz needs -Zsanitizer and other nightly flags; a stable rustc
    # accepts them with RUSTC_BOOTSTRAP (cargo-fuzz checks for it too).
    build_env=(RUSTC_BOOTSTRAP=1)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz ${CARGO_FUZZ_VERSION}"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

mapfile -t all_targets < <(cargo fuzz list --fuzz-dir "$fuzz_dir")
read -r -a targets <<<"${FUZZ_TARGETS:-${all_targets[*]}}"
if ((${#targets[@]} == 0)); then
    echo "no fuzz targets found in $fuzz_dir" >&2
    summary 0 1
    exit 1
fi

# --- build -----------------------------------------------------------------
# Release with debug assertions and overflow checks. No AddressSanitizer by
# default: the fuzzed parsers are safe Rust, where a bug shows as a panic, and
# an ASan build of every dependency takes minutes of CI time. Set
# FUZZ_SANITIZER=address to use it.
echo "building the fuzz targets (${#targets[@]} to run) with rustc ${release}${build_env:+ (RUSTC_BOOTSTRAP=1)}, $(cargo fuzz --version)"
started=$SECONDS
if ! env "${build_env[@]}" "${cargo[@]}" fuzz build --fuzz-dir "$fuzz_dir" \
    --release --debug-assertions --sanitizer "${FUZZ_SANITIZER:-none}" --target "$host" \
    --target-dir "$target_dir"; then
    echo "fuzz build failed"
    summary 0 "${#targets[@]}"
    exit 1
fi
echo "built in $((SECONDS - started)) s"
bin_dir=$target_dir/$host/release

# --- run -------------------------------------------------------------------
scratch=$(mktemp -d "${TMPDIR:-/tmp}/fuzz-smoke.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

passed=0
failed=0
for target in "${targets[@]}"; do
    work=$scratch/$target
    mkdir -p "$work/corpus" "$fuzz_dir/artifacts/$target"
    seeds=0
    if [[ -d $fuzz_dir/corpus/$target ]]; then
        # libFuzzer adds what it finds to the first corpus folder: a copy.
        cp -R "$fuzz_dir/corpus/$target/." "$work/corpus/"
        seeds=$(find "$fuzz_dir/corpus/$target" -type f | wc -l)
    fi
    args=(
        "$work/corpus"
        -max_total_time="$seconds"
        -rss_limit_mb="$rss_limit_mb"
        -timeout=10
        -print_final_stats=1
        -artifact_prefix="$fuzz_dir/artifacts/$target/"
    )
    if [[ -f $fuzz_dir/dicts/$target.dict ]]; then
        args+=(-dict="$fuzz_dir/dicts/$target.dict")
    fi
    started=$SECONDS
    status=0
    ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_odr_violation=0 RUST_BACKTRACE=1 \
        "$bin_dir/$target" "${args[@]}" >"$work/log" 2>&1 || status=$?
    elapsed=$((SECONDS - started))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -n 1)
    if ((status == 0)) && [[ -n $execs ]]; then
        passed=$((passed + 1))
        echo "fuzz $target: $execs executions in $elapsed s, corpus $seeds seeds"
        continue
    fi
    failed=$((failed + 1))
    # A crash prints no final stats: the last status line has the count.
    execs=${execs:-$(grep -o '^#[0-9]*' "$work/log" | tail -n 1 | tr -d '#')}
    echo "fuzz $target: FAILED (exit $status) after ${execs:-0} executions in $elapsed s, corpus $seeds seeds"
    artifact=$(sed -n 's/.*Test unit written to //p' "$work/log" | tail -n 1)
    if [[ -n $artifact ]]; then
        echo "  artifact: $artifact"
        echo "  input (hex): $(head -c 512 "$artifact" | od -An -v -tx1 | tr -d ' \n')"
        echo "  reproduce: $bin_dir/$target $artifact"
    fi
    # The panic message or sanitizer report and the top of its stack.
    grep -m 1 -A 30 -E "panicked at|ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)" "$work/log" |
        sed 's/^/  | /' || tail -n 30 "$work/log" | sed 's/^/  | /'
done

summary "$passed" "$failed"
((failed == 0))
