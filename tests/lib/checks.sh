# Shared by the shell test scripts (tests/deb-roundtrip.sh,
# tests/windows-wine.sh): named checks that count passes and failures and
# show a failing command's output, indented. The script sets WORK (a scratch
# folder) before calling check, and prints the counts at the end.

passed=0
failed=0

# check NAME COMMAND [ARG...]: runs the command, quietly unless it fails.
check() {
    local name=$1
    shift
    if "$@" >"$WORK/check.out" 2>&1; then
        passed=$((passed + 1))
        echo "ok - $name"
    else
        failed=$((failed + 1))
        echo "FAIL - $name"
        sed 's/^/    /' "$WORK/check.out"
    fi
}
