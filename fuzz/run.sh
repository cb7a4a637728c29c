#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each: fuzz/run.sh SECONDS [TARGET...]
# FUZZ_RUNS=N ends each target after N executions instead, if that comes first (the full
# run in fuzz/README.md: FUZZ_RUNS=1000000 fuzz/run.sh 1800).
#
# Builds the targets once (cargo-fuzz on nightly: release, debug assertions, address
# sanitizer), then runs each with its seed corpus (fuzz/corpus/TARGET, read only; new
# inputs go to fuzz/target/corpus/TARGET) and its dictionary. Fails when a target
# crashes (the input is in fuzz/artifacts/TARGET/; keep it in fuzz/corpus/TARGET with
# the fix). Prints per target the inputs executed, and a table at the end.
set -euo pipefail
cd "$(dirname "$0")"

if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+$ ]]; then
    echo "usage: fuzz/run.sh SECONDS [TARGET...]" >&2
    exit 2
fi
seconds=$1
shift

toolchain=${FUZZ_TOOLCHAIN:-nightly}
triple=$(rustc +"$toolchain" -vV | sed -n 's/^host: //p')
# FUZZ_TARGET_DIR: where the fuzz build goes (default fuzz/target); CI keeps it outside
# its fresh clone so that the next run on the machine builds warm.
build_dir=${FUZZ_TARGET_DIR:-target}
build_started=$SECONDS
cargo +"$toolchain" fuzz build -O -a --target-dir "$build_dir"
echo "== built in $((SECONDS - build_started)) s"

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +"$toolchain" fuzz list)
fi

# Which dictionaries a target reads (libFuzzer takes one: several are concatenated).
dicts_of() {
    case $1 in
        graph_batch_response) echo "json odata" ;;
        graph_* | store_row | entra_token_response | entra_error_response | entra_device_code | entra_id_token) echo json ;;
        retry_after | claims_challenge | entra_callback | sim_* | web_*) echo odata ;;
        *) echo "" ;;
    esac
}

mkdir -p target/dict target/corpus target/logs artifacts
results=()
failed=0
for target in "${targets[@]}"; do
    binary=$build_dir/$triple/release/$target
    if [ ! -x "$binary" ]; then
        echo "no such target: $target" >&2
        exit 2
    fi
    dict=target/dict/$target.dict
    : >"$dict"
    for name in $(dicts_of "$target"); do
        cat "dict/$name.dict" >>"$dict"
    done
    dict_option=()
    [ -s "$dict" ] && dict_option=("-dict=$dict")
    runs_option=()
    [ -n "${FUZZ_RUNS:-}" ] && runs_option=("-runs=$FUZZ_RUNS")
    mkdir -p "target/corpus/$target" "corpus/$target" "artifacts/$target"
    log=target/logs/$target.log
    echo "== $target (${seconds} s)"
    started=$SECONDS
    status=0
    "$binary" "target/corpus/$target" "corpus/$target" \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="artifacts/$target/" "${dict_option[@]}" "${runs_option[@]}" >"$log" 2>&1 || status=$?
    elapsed=$((SECONDS - started))
    executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    if [ -z "$executions" ]; then
        executions=$(sed -n 's/^#\([0-9]*\)[[:space:]]*DONE.*/\1/p' "$log" | tail -n 1)
    fi
    executions=${executions:-0}
    crashes=0
    if [ "$status" -ne 0 ]; then
        crashes=1
        failed=1
        echo "-- $target FAILED (exit $status) after $elapsed s; the end of $log:"
        tail -n 40 "$log"
    else
        echo "-- $target: $executions executions in $elapsed s"
    fi
    results+=("$target $executions $elapsed $crashes")
done

echo
printf '%-30s %14s %8s %8s\n' target executions seconds crashes
for row in "${results[@]}"; do
    # shellcheck disable=SC2086
    printf '%-30s %14s %8s %8s\n' $row
done
exit "$failed"
