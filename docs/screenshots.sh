#!/usr/bin/env bash
# Retakes docs/ui-desktop.png (dark) and docs/ui-phone.png (light) from a
# running `firefly demo` with headless Chromium. Run from the repository root
# after `cargo build --bin firefly`.
set -euo pipefail
bin=${FIREFLY:-target/debug/firefly}
out=$(mktemp)
profile=$(mktemp -d)
"$bin" demo >"$out" 2>&1 &
demo=$!
trap 'kill -INT $demo 2>/dev/null; wait $demo 2>/dev/null; rm -rf "$out" "$profile"' EXIT
for _ in $(seq 60); do
    grep -q "^playing" "$out" && break
    sleep 1
done
api=$(grep -o "api http://[0-9.:]*" "$out" | head -1 | cut -d' ' -f2)
sleep 10 # a few seconds of playback and figures on the page
shot() {
    chromium --headless --no-sandbox --disable-gpu --user-data-dir="$profile" \
        --virtual-time-budget=8000 "$@" "$api/" 2>/dev/null
}
shot --window-size=1280,1370 --force-dark-mode --blink-settings=preferredColorScheme=0 \
    --screenshot=docs/ui-desktop.png
shot --window-size=400,1400 --force-prefers-color-scheme=light \
    --screenshot=docs/ui-phone.png
