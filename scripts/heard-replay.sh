#!/usr/bin/env bash
# Replays a `firefly bench heard --logs DIR` run through the working tree's
# device fit (crates/player/src/output/device_clock.rs) and tells how the
# heard spread would have moved: for each click, each node's heard offset is
# moved by how much the new fit's instant for that moment differs from the
# logged one (the sound follows the fit; a straight-line sound was checked
# against the recording to about 5 µs).
#
#   scripts/heard-replay.sh DIR CASE [NODES] [FROM_S] [TO_S]
#
# NODES: which nodes' logs to use, e.g. "01" (default all three: "012"), so a
# restart run's untouched pair can be replayed; FROM_S/TO_S: the recording's
# stretch, in seconds.
set -euo pipefail
dir=$1 case=$2 nodes=${3:-012} from=${4:--1} to=${5:-1e9}
cd "$(dirname "$0")/.."
for n in $(echo "$nodes" | grep -o .); do
    # Without the terminal's colour codes.
    sed 's/\x1b\[[0-9;]*m//g' "$dir/$case-node$n.log" > "$dir/plain$n.log"
    FIREFLY_REPLAY_IN="$dir/plain$n.log" FIREFLY_REPLAY_OUT="$dir/replay$n.csv" \
        cargo test -q -p firefly-player --lib replay_logged_periods -- --ignored >/dev/null
    rm -f "$dir/plain$n.log"
done
python3 scripts/heard_replay_spread.py "$dir" "$case" "$nodes" "$from" "$to"
