#!/usr/bin/env bash
# Runs fuzz targets one after another, each for SECONDS, on corpora seeded from the
# shared ARK data, and prints a table: target, runs, coverage (cov/ft as libFuzzer
# reports them), corpus size, crashes. Exits non-zero when any target crashed; the
# input that did is in fuzz/artifacts/<target>/.
#
# usage: fuzz/run.sh SECONDS [TARGET...]   (all targets when none are named)
# env:   SHARED_DATA (default ../shared/data from the repository root)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"
seconds="${1:-600}"
shift || true
shared="${SHARED_DATA:-../shared/data}"
case "$shared" in /*) ;; *) shared="$root/$shared" ;; esac

if (($#)); then targets=("$@"); else mapfile -t targets < <(cargo +nightly fuzz list); fi
python3 seed.py "$shared" corpus
# Inputs that once crashed a target run first, every time.
for input in regressions/*-crash-*; do
    [ -e "$input" ] || continue
    name=$(basename "$input")
    mkdir -p "corpus/${name%%-crash-*}"
    cp "$input" "corpus/${name%%-crash-*}/$name"
done
cargo +nightly fuzz build -O

mkdir -p logs
failed=()
summary=()
for target in "${targets[@]}"; do
    log="logs/$target.log"
    status=0
    # -timeout: one input taking over 10 s is a finding too (a stall, not a crash).
    cargo +nightly fuzz run -O "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    stats=$(grep -E '^#[0-9]+' "$log" | grep -E 'cov: ' | tail -n 1 || true)
    runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' || true)
    cov=$(sed -nE 's/.*cov: ([0-9]+).*/\1/p' <<<"$stats")
    ft=$(sed -nE 's/.*ft: ([0-9]+).*/\1/p' <<<"$stats")
    corpus=$(sed -nE 's/.*corp: ([0-9]+).*/\1/p' <<<"$stats")
    crashes=0
    if ((status != 0)); then
        crashes=1
        failed+=("$target")
    fi
    summary+=("$(printf '%-16s %10s %6s %7s %7s %8s' "$target" "${runs:-?}" "${cov:-?}" "${ft:-?}" "${corpus:-?}" "$crashes")")
    echo "${summary[-1]}"
done
printf '\n%-16s %10s %6s %7s %7s %8s\n' target runs cov ft corpus crashes
printf '%s\n' "${summary[@]}"
echo "seconds per target: $seconds; logs in fuzz/logs/; reproduce: make fuzz FUZZ_SECONDS=$seconds"
if ((${#failed[@]})); then
    echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
