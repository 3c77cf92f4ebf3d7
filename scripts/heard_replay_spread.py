#!/usr/bin/env python3
"""The heard spread of a `bench heard` run as recorded, and as it would have
been with the replayed fit (see heard-replay.sh). Standard library only."""
import bisect
import csv
import json
import re
import sys

directory, case, nodes, t_from, t_to = sys.argv[1:6]
nodes = [int(c) for c in nodes]
t_from, t_to = float(t_from), float(t_to)
ansi = re.compile(r"\x1b\[[0-9;]*m")

with open(f"{directory}/{case}-clicks.txt") as f:
    recording_start = next(
        int(m.group(1)) for m in (re.search(r"unix_us (\d+)", line) for line in f) if m
    )
series = json.load(open(f"{directory}/{case}-split.json"))["series"]


def anchors_of(node):
    """(unix µs, local µs) pairs the node logged about once a second."""
    out = []
    for line in open(f"{directory}/{case}-node{node}.log"):
        line = ansi.sub("", line)
        if "anchor local=" in line:
            fields = dict(kv.split("=") for kv in line.split("anchor ")[1].split())
            out.append((float(fields["unix_us"]), float(fields["local"])))
    return out


def local_at(anchors, unix):
    units = [a[0] for a in anchors]
    i = max(1, min(len(anchors) - 1, bisect.bisect_left(units, unix)))
    (u0, l0), (u1, l1) = anchors[i - 1], anchors[i]
    return l0 + (unix - u0) * (l1 - l0) / (u1 - u0)


fits = {}
for node in nodes:
    rows = list(csv.DictReader(open(f"{directory}/replay{node}.csv")))
    logged = [float(r["old_fit"]) for r in rows]
    moved = [float(r["old_fit"]) - float(r["new_fit"]) for r in rows]
    fits[node] = (anchors_of(node), logged, moved)


def moved_at(logged, moved, local):
    """How much earlier the new fit puts the period sounding at `local`."""
    for i in range(len(logged) - 1, -1, -1):
        if logged[i] <= local:
            return moved[i]
    return 0.0


before, after = [], []
for t, heard, _clock, _output in series:
    if not t_from <= t <= t_to:
        continue
    unix = recording_start + t * 1e6
    old = [heard[n] for n in nodes]
    new = []
    for n in nodes:
        anchors, logged, moved = fits[n]
        new.append(heard[n] + moved_at(logged, moved, local_at(anchors, unix)))
    before.append(max(old) - min(old))
    after.append(max(new) - min(new))


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


print(
    f"clicks {len(before)}: recorded p50 {pct(before, .5):.1f} p99 {pct(before, .99):.1f} µs; "
    f"replayed p50 {pct(after, .5):.1f} p99 {pct(after, .99):.1f} µs"
)
