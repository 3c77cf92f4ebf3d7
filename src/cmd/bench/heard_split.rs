//! Where a heard offset comes from: the swarm clock or the output path.
//!
//! A click heard early on one channel is either its node's swarm clock
//! reading ahead of the others' (it plays the timeline's later frames at
//! each instant) or its output path (the device fit, the reported latency,
//! the resampler) sounding the right frame at the wrong instant. The
//! recording alone cannot tell the two apart; with `--logs` each node's log
//! can. Every node logs, about once a second, its local clock read against
//! the system's wall clock (`anchor`), and for every period the local and
//! swarm instant its first frame sounds at (`flash`). The nodes share the
//! machine's wall clock, so each node's `swarm − wall` is known at every
//! instant of the recording; the spread of those is the clock's part of
//! what is heard, and the heard offsets with the clock taken out are the
//! output path's.

use super::heard::match_clicks;
use crate::cmd::local_swarm::{least_squares_line, percentile_abs};
use serde_json::json;

/// Anchors whose two local reads lie further apart than this are left out, µs.
const ANCHOR_READ_LIMIT_MICROS: f64 = 50.0;
/// Flashes further apart than this are not interpolated between, µs.
const FLASH_GAP_MICROS: f64 = 200_000.0;

/// One node's swarm clock against the wall clock, from its logs.
#[derive(Debug, Default)]
pub(crate) struct ClockTrace {
    /// (wall µs, swarm − wall µs), sorted by wall instant.
    points: Vec<(f64, f64)>,
}

impl ClockTrace {
    /// From the text of each log the node wrote (a restarted node writes
    /// two; each process's local clock has its own origin).
    pub(crate) fn from_logs<'a>(logs: impl IntoIterator<Item = &'a str>) -> Self {
        let mut points = Vec::new();
        for text in logs {
            let mut anchors = Vec::new();
            let mut flashes = Vec::new();
            for line in text.lines().map(strip_ansi) {
                if let Some(fields) = line.split("firefly_device_timing: anchor ").nth(1) {
                    if let (Some(local), Some(unix), Some(read)) = (
                        field(fields, "local"),
                        field(fields, "unix_us"),
                        field(fields, "read_us"),
                    ) && read <= ANCHOR_READ_LIMIT_MICROS
                    {
                        anchors.push((local, unix - local));
                    }
                } else if let Some(fields) = line.split("firefly_device_timing: flash ").nth(1)
                    && let (Some(local), Some(swarm)) =
                        (field(fields, "local"), field(fields, "swarm"))
                {
                    flashes.push((local, swarm));
                }
            }
            // Local to wall: a straight line (a test clock is the machine's
            // monotonic clock scaled and offset).
            let Some((slope, at)) = least_squares_line(&anchors) else {
                continue;
            };
            for (local, swarm) in flashes {
                let wall = local + at + slope * local;
                points.push((wall, swarm - wall));
            }
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        Self { points }
    }

    /// The node's `swarm − wall` at wall instant `wall`, µs.
    fn at(&self, wall: f64) -> Option<f64> {
        let i = self.points.partition_point(|p| p.0 < wall);
        let (a, b) = (self.points.get(i.checked_sub(1)?)?, self.points.get(i)?);
        let gap = b.0 - a.0;
        (gap > 0.0 && gap <= FLASH_GAP_MICROS).then(|| a.1 + (b.1 - a.1) * (wall - a.0) / gap)
    }
}

/// The clicks heard (`positions`: per channel, in samples at `rate`, the
/// recording started at wall µs `started`) split into the nodes' clock and
/// output-path parts. Per click heard on every channel whose node's clock is
/// known then: the spread of the clocks (`clock_spread_*`), the spread with
/// the clocks taken out (`output_spread_*`), and each channel's offsets from
/// channel 0 over time (`series`: seconds, heard, clock part, output part).
pub(crate) fn split(
    positions: &[Vec<f64>],
    rate: f64,
    started: f64,
    traces: &[ClockTrace],
) -> serde_json::Value {
    let mut clock_spreads = Vec::new();
    let mut output_spreads = Vec::new();
    let mut series = Vec::new();
    for times in match_clicks(positions, rate) {
        let walls: Vec<f64> = times.iter().map(|t| started + t * 1e6 / rate).collect();
        let Some(clocks) = walls
            .iter()
            .zip(traces)
            .map(|(&wall, trace)| trace.at(wall))
            .collect::<Option<Vec<f64>>>()
        else {
            continue;
        };
        // A node whose swarm clock reads ahead by `s` sounds each frame `s`
        // early: its clock part is −s, and what is left is the output path's.
        let heard: Vec<f64> = walls.iter().map(|w| w - walls[0]).collect();
        let outputs: Vec<f64> = heard.iter().zip(&clocks).map(|(h, s)| h + s).collect();
        let clock_parts: Vec<f64> = clocks.iter().map(|s| -(s - clocks[0])).collect();
        clock_spreads.push(spread(&clock_parts));
        output_spreads.push(spread(&outputs));
        series.push(json!([
            ((times[0] / rate) * 100.0).round() / 100.0,
            heard.iter().map(|h| h.round()).collect::<Vec<_>>(),
            clock_parts.iter().map(|c| c.round()).collect::<Vec<_>>(),
            outputs
                .iter()
                .map(|o| (o - outputs[0]).round())
                .collect::<Vec<_>>(),
        ]));
    }
    json!({
        "clicks": clock_spreads.len(),
        "clock_spread_p50_us": percentile_abs(&clock_spreads, 50.0),
        "clock_spread_p99_us": percentile_abs(&clock_spreads, 99.0),
        "output_spread_p50_us": percentile_abs(&output_spreads, 50.0),
        "output_spread_p99_us": percentile_abs(&output_spreads, 99.0),
        "series": series,
    })
}

fn spread(values: &[f64]) -> f64 {
    let (lo, hi) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    hi - lo
}

/// The number after `name=` among a log line's fields.
fn field(fields: &str, name: &str) -> Option<f64> {
    fields.split_whitespace().find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.parse().ok()).flatten()
    })
}

/// The line without terminal colour codes (`ESC [ … m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node's log as the node writes it (coloured), on a clock that reads
    /// `local = (wall − origin) × (1 + ppm)` and a swarm clock `ahead` of
    /// wall time, with flashes every 10 ms from wall `from` to `to` (µs).
    fn node_log(origin: f64, ppm: f64, ahead: f64, from: f64, to: f64) -> String {
        let local = |wall: f64| (wall - origin) * (1.0 + ppm * 1e-6);
        let mut text = String::new();
        let mut wall = from;
        let mut k = 0;
        while wall <= to {
            if k % 100 == 0 {
                text.push_str(&format!(
                    "\u{1b}[2m2026-12-06T16:37:34Z\u{1b}[0m \u{1b}[35mTRACE\u{1b}[0m \
                     \u{1b}[2mfirefly_device_timing\u{1b}[0m\u{1b}[2m:\u{1b}[0m anchor \
                     \u{1b}[3mlocal\u{1b}[0m\u{1b}[2m=\u{1b}[0m{} unix_us={} read_us=1\n",
                    local(wall).round(),
                    wall.round()
                ));
            }
            text.push_str(&format!(
                "2026-12-06T16:37:34Z TRACE firefly_device_timing: flash local={} swarm={} error_frames=0.1\n",
                local(wall).round(),
                (wall + ahead).round()
            ));
            wall += 10_000.0;
            k += 1;
        }
        text
    }

    #[test]
    fn a_clock_reading_ahead_is_told_from_an_output_sounding_early() {
        let start = 1.7e15;
        let rate = 48_000.0;
        // Node 0: clock right, heard on time. Node 1: clock 100 µs ahead,
        // so heard 100 µs early. Node 2: clock right, heard 40 µs late
        // (its output path). Skewed local clocks, one node restarted.
        let logs = [
            vec![node_log(start - 5e6, 200.0, 0.0, start - 1e6, start + 11e6)],
            vec![node_log(
                start - 9e6,
                -200.0,
                100.0,
                start - 1e6,
                start + 11e6,
            )],
            vec![
                node_log(start - 3e6, 50.0, 0.0, start - 1e6, start + 5e6),
                node_log(start + 5.2e6, 50.0, 0.0, start + 5.2e6, start + 11e6),
            ],
        ];
        let traces: Vec<ClockTrace> = logs
            .iter()
            .map(|texts| ClockTrace::from_logs(texts.iter().map(String::as_str)))
            .collect();
        let clicks = |offset_micros: f64| -> Vec<f64> {
            (0..20)
                .map(|k| (0.25 + 0.5 * f64::from(k) + offset_micros * 1e-6) * rate)
                .collect()
        };
        let positions = [clicks(0.0), clicks(-100.0), clicks(40.0)];
        let split = split(&positions, rate, start, &traces);
        let get = |key: &str| split[key].as_f64().unwrap_or(f64::NAN);
        // A click falls in the restarted node's 0.2 s without flashes.
        assert!(split["clicks"].as_u64().unwrap_or(0) >= 18, "{split}");
        assert!((get("clock_spread_p99_us") - 100.0).abs() < 2.0, "{split}");
        assert!((get("output_spread_p99_us") - 40.0).abs() < 2.0, "{split}");
    }

    #[test]
    fn lines_without_anchors_or_with_garbage_give_no_trace() {
        let trace = ClockTrace::from_logs([
            "firefly_device_timing: flash local=1 swarm=2",
            "firefly_device_timing: anchor local=x unix_us=\u{1b}[ read_us=",
        ]);
        assert!(trace.at(1.0).is_none());
    }
}
