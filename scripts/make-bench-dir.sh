#!/usr/bin/env bash
# Makes a folder of audio files for `firefly bench scan DIR`.
#
#   scripts/make-bench-dir.sh DIR [FILES] [BASES] [SECONDS]
#
# Encodes BASES distinct MP3s of SECONDS each with ffmpeg (tones plus noise,
# 192 kb/s, so every file has real, incompressible audio), then makes FILES
# files by copying the streams with different tags (`-c copy`, no
# re-encoding): every file is a different track of realistic size. Defaults:
# 2000 files from 8 bases of 60 s (about 1.4 MB each, 2.9 GB in all).
set -euo pipefail
dir=${1:?usage: make-bench-dir.sh DIR [FILES] [BASES] [SECONDS]}
files=${2:-2000}
bases=${3:-8}
seconds=${4:-60}
command -v ffmpeg >/dev/null || { echo "needs ffmpeg (apt-get install ffmpeg)" >&2; exit 1; }
mkdir -p "$dir/.bases"
for b in $(seq 1 "$bases"); do
    out="$dir/.bases/base-$b.mp3"
    [ -s "$out" ] && continue
    ffmpeg -loglevel error -y \
        -f lavfi -i "sine=frequency=$((200 + 37 * b)):duration=$seconds" \
        -f lavfi -i "anoisesrc=color=pink:amplitude=0.2:seed=$b:duration=$seconds" \
        -filter_complex "[0][1]amix=inputs=2,aformat=channel_layouts=stereo" \
        -ar 44100 -c:a libmp3lame -b:a 192k "$out"
done
for i in $(seq 1 "$files"); do
    b=$(( (i - 1) % bases + 1 ))
    sub="$dir/album-$(( (i - 1) / 100 + 1 ))"
    mkdir -p "$sub"
    out="$sub/track-$i.mp3"
    [ -s "$out" ] && continue
    ffmpeg -loglevel error -y -i "$dir/.bases/base-$b.mp3" -c copy \
        -metadata title="Bench Track $i" -metadata artist="Bench Artist $(( i % 50 ))" \
        -metadata album="Bench Album $(( (i - 1) / 100 + 1 ))" -metadata track="$(( (i - 1) % 100 + 1 ))" \
        "$out"
done
rm -rf "$dir/.bases"
echo "$dir: $(find "$dir" -type f | wc -l) files, $(du -sh "$dir" | cut -f1)"
