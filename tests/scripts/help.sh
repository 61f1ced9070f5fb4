#!/usr/bin/env bash
# Every script in scripts/ (and .ci/run) answers --help and -h with its own
# usage and exit status 0, quickly (nothing built, nothing run), and not with
# QEMU's help; every one but the initramfs /init scripts refuses an unknown
# option with exit status 2 and a message naming the option and --help.
#   tests/scripts/help.sh    (scripts/test runs it first)
set -euo pipefail
cd "$(dirname "$0")/../.."

failures=0
fail() {
    echo "FAILED: $*" >&2
    failures=$((failures + 1))
}

# Runs a script as a user would; the /init scripts' interpreter,
# /bin/busybox, is the guest's, so they run under the machine's sh.
run_script() {
    local script="$1"
    shift
    if head -1 "$script" | grep -q '^#!/bin/busybox'; then
        timeout 20 sh "$script" "$@" </dev/null
    else
        timeout 20 "$script" "$@" </dev/null
    fi
}

scripts=(.ci/run)
for script in scripts/*; do
    [ -x "$script" ] && scripts+=("$script")
done
[ "${#scripts[@]}" -ge 15 ] || fail "only ${#scripts[@]} scripts found: ${scripts[*]}"

for script in "${scripts[@]}"; do
    for flag in --help -h; do
        status=0
        output=$(run_script "$script" "$flag" 2>&1) || status=$?
        if [ "$status" -ne 0 ]; then
            fail "$script $flag exited with status $status: $output"
        elif [[ "$output" != *"$script"* ]]; then
            fail "$script $flag does not name $script: $output"
        elif [[ "$output" == *"QEMU emulator version"* || "$output" == *"usage: qemu-system"* ]]; then
            fail "$script $flag printed QEMU's help"
        fi
    done
    # The /init scripts take no options and would start their work (mounts).
    if head -1 "$script" | grep -q '^#!/bin/busybox'; then
        continue
    fi
    status=0
    output=$(run_script "$script" --no-such-option 2>&1) || status=$?
    if [ "$status" -ne 2 ]; then
        fail "$script --no-such-option exited with status $status, not 2: $output"
    elif [[ "$output" != *"--no-such-option"* || "$output" != *"--help"* ]]; then
        fail "$script --no-such-option does not name the option and --help: $output"
    fi
done

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s) in the scripts' --help" >&2
    exit 1
fi
echo "scripts' --help: ${#scripts[@]} scripts answer --help and -h with their usage, and refuse unknown options" >&2
