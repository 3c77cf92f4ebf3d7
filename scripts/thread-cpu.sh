#!/usr/bin/env bash
# Where each running node's CPU goes, by thread, over SECONDS (default 10):
# CPU share (from /proc/PID/task/*/schedstat, ns), voluntary switches a
# second (its wake-ups) and involuntary ones (preempted), for the threads of
# every `firefly … up` process (audio, runtime, decoder, libpulse's mainloop).
#
#   scripts/thread-cpu.sh [SECONDS]
set -euo pipefail
seconds=${1:-10}
snapshot() {
    for pid in $(pgrep -f "firefly[^ ]* up " || true); do
        for task in /proc/"$pid"/task/*; do
            name=$(cat "$task/comm" 2>/dev/null) || continue
            ns=$(awk '{print $1}' "$task/schedstat" 2>/dev/null) || continue
            switches=$(awk '/^voluntary/{v=$2} /^nonvoluntary/{n=$2} END{print v, n}' "$task/status" 2>/dev/null) || continue
            echo "$pid:$(basename "$task") ${name// /_} $ns $switches"
        done
    done | sort
}
before=$(mktemp) after=$(mktemp)
trap 'rm -f "$before" "$after"' EXIT
snapshot > "$before"
sleep "$seconds"
snapshot > "$after"
join "$before" "$after" | awk -v s="$seconds" '{
    printf "%-14s %-16s cpu %6.3f %%  wake-ups/s %6.1f  preempted/s %6.1f\n",
        $1, $2, ($7 - $3) / s / 1e7, ($8 - $4) / s, ($9 - $5) / s }'
