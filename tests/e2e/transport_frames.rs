//! Transport commands switch every node on the same frame of the music, as
//! the nodes' WAV outputs show sample by sample.
//!
//! Three real nodes play into `wav:` outputs. The tracks are a slow tone
//! written as sine on the left and cosine on the right, so every output
//! sample says, by its angle, which source frame it came from (modulo the
//! tone's period), whatever the resampling, fade or volume. Along each
//! node's recording, "source frame − output index" is then a straight line
//! while the music plays, and a command (pause and resume, seek, next,
//! previous, stop) moves it by a jump.
//!
//! What the test compares across nodes needs no clock and no common time
//! base: the jump at every switch (the new content against where the old
//! content had got to at that output frame), and the source frame each
//! node's pause and stop fell silent on. Nodes that switch on the same
//! frame of the shared timeline have the same jumps and the same last
//! frames; a node switching one frame later shows one frame more. The
//! clocks' own spread (steady playback's) does not enter.

use crate::playback::{Node, NodeSpec, http, one_swarm_at_a_time, spawn_node, wait_settled};
use crate::util::arg;
use serde_json::{Value, json};
use std::f64::consts::TAU;
use std::path::Path;
use std::time::Duration;

/// The tracks' sample rate.
const SOURCE_RATE: u32 = 48_000;
/// The `wav:` output's rate (the clocked outputs' format).
const OUTPUT_RATE: f64 = 44_100.0;
/// The tone: 2 Hz, so an output sample names its source frame modulo
/// 24,000 frames (half a second; a switch half a second off would alias).
const TONE_HZ: f64 = 2.0;
const PERIOD: f64 = SOURCE_RATE as f64 / TONE_HZ;
/// Source frames per output frame.
const RATIO: f64 = SOURCE_RATE as f64 / OUTPUT_RATE;
/// Largest difference between two nodes' jumps or last frames, in output
/// frames. The goal is one; the lines read on either side of a switch are
/// fitted over a fifth of a second, in which a loaded machine's clocks move
/// by some tens of µs (up to 2 frames measured on a debug build at load 6).
const SAME_FRAME_LIMIT: f64 = 3.0;

/// Largest distance, in source frames, between where a node's sound began
/// and the frame it was to begin on. A resume is compared with where the
/// swarm's pause fell silent (the nodes' median), read at the fade-out's
/// tail, whose 16-bit samples round to zero a frame or so early.
const START_LIMIT: f64 = 3.0;
/// Track b's tone is a quarter period ahead of a's: its first frame reads as
/// 6,000, so that a run beginning on it is told from one beginning a's.
const B_SHIFT: f64 = PERIOD / 4.0;
/// Where the seek goes: 20.25 s, which reads as half a period (12,000).
const SEEK_MS: u64 = 20_250;

/// The tone track: left sin, right cos, of the phase of its source frame
/// plus `shift` frames.
fn write_tone(path: &Path, secs: u32, shift: f64) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: SOURCE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for n in 0..secs * SOURCE_RATE {
        let phase = (f64::from(n) + shift) / PERIOD * TAU;
        for v in [phase.sin(), phase.cos()] {
            w.write_sample((v * 0.9 * f64::from(i16::MAX)) as i16)
                .unwrap();
        }
    }
    w.finalize().unwrap();
}

/// The 16-bit stereo frames of a WAV file its writer may not have
/// finalized (a killed node): everything after the `data` chunk's header.
fn read_frames(path: &Path) -> Vec<(f64, f64)> {
    let bytes = std::fs::read(path).unwrap();
    let mut at = 12;
    while at + 8 <= bytes.len() && &bytes[at..at + 4] != b"data" {
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        at += 8 + size + size % 2;
    }
    assert!(
        at + 8 <= bytes.len(),
        "{} has no data chunk",
        path.display()
    );
    bytes[at + 8..]
        .chunks_exact(4)
        .map(|f| {
            let l = i16::from_le_bytes([f[0], f[1]]);
            let r = i16::from_le_bytes([f[2], f[3]]);
            (f64::from(l), f64::from(r))
        })
        .collect()
}

/// `x` wrapped into (−PERIOD/2, PERIOD/2].
fn wrap(x: f64) -> f64 {
    let y = x.rem_euclid(PERIOD);
    if y > PERIOD / 2.0 { y - PERIOD } else { y }
}

/// A straight line fitted to "source frame − output frame × RATIO".
#[derive(Debug, Clone, Copy)]
struct Line {
    /// Its value at output frame `k0`, and its slope per output frame.
    k0: f64,
    at_k0: f64,
    slope: f64,
}

impl Line {
    /// Least squares over `points` (output frame, unwrapped offset).
    fn fit(points: &[(usize, f64)]) -> Line {
        let n = points.len() as f64;
        let k0 = points[0].0 as f64;
        let (sx, sy) = points.iter().fold((0.0, 0.0), |(sx, sy), &(k, y)| {
            (sx + (k as f64 - k0), sy + y)
        });
        let (mx, my) = (sx / n, sy / n);
        let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(sxy, sxx), &(k, y)| {
            let dx = k as f64 - k0 - mx;
            (sxy + dx * (y - my), sxx + dx * dx)
        });
        let slope = sxy / sxx;
        Line {
            k0,
            at_k0: my - slope * mx,
            slope,
        }
    }
    /// The offset at output frame `k`, not wrapped.
    fn offset_at(&self, k: f64) -> f64 {
        self.at_k0 + self.slope * (k - self.k0)
    }
    /// The source frame (modulo the tone's period) sounding at output frame `k`.
    fn source_at(&self, k: f64) -> f64 {
        (self.offset_at(k) + k * RATIO).rem_euclid(PERIOD)
    }
}

/// A stretch of steady playback, output frames `start..=end`, with lines
/// fitted over its first and its last fifth of a second: the player slews
/// all the time, so a line over the whole run would be frames off at its
/// ends, where the switches are read.
#[derive(Debug, Clone, Copy)]
struct Run {
    start: usize,
    end: usize,
    head: Line,
    tail: Line,
}

/// Output frames each end's line is fitted over.
const END_SPAN: usize = (OUTPUT_RATE / 5.0) as usize;

/// The runs of steady playback in a recording: full-level frames whose
/// offset moves smoothly, at least 0.3 s of them.
fn runs(frames: &[(f64, f64)]) -> Vec<Run> {
    let level = |&(l, r): &(f64, f64)| (l * l + r * r).sqrt();
    let full = frames.iter().map(level).fold(0.0, f64::max);
    assert!(full > 1000.0, "the recording is silent");
    let offset = |k: usize| {
        let (l, r) = frames[k];
        l.atan2(r).rem_euclid(TAU) / TAU * PERIOD - k as f64 * RATIO
    };
    let mut found = Vec::new();
    let mut current: Vec<(usize, f64)> = Vec::new();
    let mut close = |current: &mut Vec<(usize, f64)>| {
        if current.len() as f64 >= 0.3 * OUTPUT_RATE {
            found.push(Run {
                start: current[0].0,
                end: current[current.len() - 1].0,
                head: Line::fit(&current[..END_SPAN]),
                tail: Line::fit(&current[current.len() - END_SPAN..]),
            });
        }
        current.clear();
    };
    for (k, frame) in frames.iter().enumerate() {
        if level(frame) < 0.6 * full {
            continue;
        }
        let here = offset(k);
        match current.last() {
            Some(&(last_k, last)) if k - last_k <= 4 && wrap(here - last).abs() < 3.0 => {
                current.push((k, last + wrap(here - last)));
            }
            _ => {
                close(&mut current);
                current.push((k, here));
            }
        }
    }
    close(&mut current);
    found
}

/// The last frame with any sound before the first silence (a tenth of a
/// second of zeros) from `from` on.
fn last_sound(frames: &[(f64, f64)], from: usize) -> usize {
    let quiet = (OUTPUT_RATE / 10.0) as usize;
    let mut zeros = 0;
    for (k, frame) in frames.iter().enumerate().skip(from) {
        if *frame == (0.0, 0.0) {
            zeros += 1;
            if zeros == quiet {
                return k - quiet;
            }
        } else {
            zeros = 0;
        }
    }
    panic!("no silence after output frame {from}")
}

/// The first frame of the sound that run `run` belongs to (where it rose
/// out of silence, fade included).
fn first_sound(frames: &[(f64, f64)], run: &Run) -> usize {
    (0..=run.start)
        .rev()
        .find(|&k| frames[k] == (0.0, 0.0))
        .map_or(0, |k| k + 1)
}

/// What one node's recording shows: the jump at every switch between two
/// runs, and the source frames its sound started and fell silent on.
#[derive(Debug)]
struct Switches {
    jumps: Vec<f64>,
    /// The source frame each run's sound began on (fade-in included).
    began_on: Vec<f64>,
    started_on: f64,
    paused_on: f64,
    resumed_on: f64,
    stopped_on: f64,
}

/// Reads one node's recording. The runs the commands began are told apart
/// by what they begin on, not when: the resume is the first run after the
/// pause's silence, the seek's begins on half a period (12,000), next's on
/// track b's first frame (6,000), prev's on a's (0). A recording may hold
/// more runs than commands: a node whose clock stepped under load fades out
/// and back in once, mid-content.
fn switches(node: usize, frames: &[(f64, f64)]) -> Switches {
    let found = runs(frames);
    let began_on = |i: usize| {
        found[i]
            .head
            .source_at(first_sound(frames, &found[i]) as f64)
    };
    let resume = (1..found.len())
        .find(|&i| (found[i].start - found[i - 1].end) as f64 > 0.5 * OUTPUT_RATE)
        .unwrap_or_else(|| panic!("node {node}: no pause's silence: {found:?}"));
    let began = |after: usize, frame: f64, what: &str| {
        (after + 1..found.len())
            .find(|&i| wrap(began_on(i) - frame).abs() <= 50.0)
            .unwrap_or_else(|| {
                let all: Vec<String> = (0..found.len())
                    .map(|i| format!("{:.1}", began_on(i)))
                    .collect();
                panic!(
                    "node {node}: no run after the {after}th began on {what}'s frame {frame} \
                     (a late start joins the timeline elsewhere); runs began on {all:?}"
                )
            })
    };
    let seek = began(resume, PERIOD / 2.0, "the seek");
    let next = began(seek, B_SHIFT, "next");
    let prev = began(next, 0.0, "prev");
    let last = found.last().expect("no steady playback");
    let stopped = last_sound(frames, last.end);
    let jumps = [resume, seek, next, prev]
        .iter()
        .map(|&i| {
            let (old, new) = (&found[i - 1], &found[i]);
            let at = (old.end + new.start) as f64 / 2.0;
            wrap(new.head.offset_at(at) - old.tail.offset_at(at))
        })
        .collect();
    let paused = last_sound(frames, found[resume - 1].end);
    Switches {
        jumps,
        began_on: [0, resume, seek, next, prev].map(began_on).to_vec(),
        started_on: began_on(0),
        paused_on: found[resume - 1].tail.source_at(paused as f64),
        resumed_on: began_on(resume),
        stopped_on: last.tail.source_at(stopped as f64),
    }
}

fn command(node: &Node, path: &str, body: Value) -> Value {
    let (status, reply) = http(node.http, "POST", path, Some(body));
    assert_eq!(status, 200, "{path}: {reply}");
    reply
}

#[test]
fn every_transport_command_switches_every_node_on_the_same_frame() {
    let _swarm = one_swarm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let tracks: &[(&str, u32)] = &[("a.wav", 30), ("b.wav", 10)];
    let mut nodes: Vec<Node> = Vec::new();
    for index in 0..3 {
        let music = tmp.path().join(format!("n{index}")).join("music");
        std::fs::create_dir_all(&music).unwrap();
        write_tone(&music.join("a.wav"), 30, 0.0);
        write_tone(&music.join("b.wav"), 10, B_SHIFT);
        let wav = tmp.path().join(format!("out{index}.wav"));
        let output = format!("wav:{}", arg(&wav));
        let bootstrap: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
        nodes.push(spawn_node(
            tmp.path(),
            &NodeSpec {
                index,
                tracks,
                bootstrap: &bootstrap,
                reuse: None,
                extra: &["--output", &output],
            },
        ));
    }
    assert!(
        wait_settled(&nodes, Duration::from_secs(30)),
        "the nodes never agreed on a synced timeline and a coordinator"
    );
    let a = crate::zones::track_of_length(&nodes[0], 30_000);
    let b = crate::zones::track_of_length(&nodes[0], 10_000);
    let to = &nodes[1];
    let wait = |secs: f64| std::thread::sleep(Duration::from_secs_f64(secs));
    command(to, "/api/play", json!({ "track": a }));
    wait(2.5);
    let paused = command(to, "/api/pause", json!({}));
    let held_ms = paused["position_ms"].as_f64().unwrap();
    wait(1.0);
    command(to, "/api/resume", json!({}));
    wait(1.5);
    command(to, "/api/seek", json!({ "position_ms": SEEK_MS }));
    wait(1.5);
    command(to, "/api/queue", json!({ "tracks": [b] }));
    command(to, "/api/next", json!({}));
    wait(1.5);
    let back = command(to, "/api/prev", json!({}));
    assert_eq!(back["track"].as_str(), Some(a.as_str()), "{back}");
    wait(1.5);
    command(to, "/api/stop", json!({}));
    wait(0.5);
    drop(nodes);

    let seen: Vec<Switches> = (0..3)
        .map(|i| switches(i, &read_frames(&tmp.path().join(format!("out{i}.wav")))))
        .collect();
    for (i, s) in seen.iter().enumerate() {
        eprintln!(
            "node {i}: jumps {:?}; each run began on {:?}; started on {:.2}, paused on {:.2}, resumed on {:.2}, stopped on {:.2} (source frames, mod {PERIOD})",
            s.jumps
                .iter()
                .map(|j| format!("{j:.2}"))
                .collect::<Vec<_>>(),
            s.began_on
                .iter()
                .map(|j| format!("{j:.1}"))
                .collect::<Vec<_>>(),
            s.started_on,
            s.paused_on,
            s.resumed_on,
            s.stopped_on
        );
    }
    // Each node started on the track's first frame, paused where the
    // coordinator said (its answer is in whole ms), and resumed on the frame
    // the swarm paused on, each where its own steady playback puts that
    // frame. Where the swarm paused is the nodes' median: one node's pause
    // is read off its fade-out's tail to within a frame or two (checked
    // across nodes below), and a resume is a new play of the held position,
    // the same on every node, not of where that node's fade fell silent.
    let held = (held_ms * f64::from(SOURCE_RATE) / 1e3).rem_euclid(PERIOD);
    let swarm_paused_on = {
        let mut all: Vec<f64> = seen.iter().map(|s| s.paused_on).collect();
        all.sort_by(f64::total_cmp);
        all[all.len() / 2]
    };
    for (i, s) in seen.iter().enumerate() {
        let checks = [
            ("started", wrap(s.started_on).abs(), START_LIMIT),
            (
                "paused",
                wrap(s.paused_on - held).abs(),
                1e-3 * f64::from(SOURCE_RATE) + 2.0,
            ),
            (
                "resumed",
                wrap(s.resumed_on - swarm_paused_on).abs(),
                START_LIMIT,
            ),
            (
                "sought",
                wrap(s.began_on[2] - PERIOD / 2.0).abs(),
                START_LIMIT,
            ),
            (
                "went next",
                wrap(s.began_on[3] - B_SHIFT).abs(),
                START_LIMIT,
            ),
            ("went back", wrap(s.began_on[4]).abs(), START_LIMIT),
        ];
        for (what, off, limit) in checks {
            assert!(
                off <= limit,
                "node {i} {what} {off:.1} source frames from where it should (a start \
                 late: the command reached it after its instant, and it joined the timeline)"
            );
        }
    }
    // Across nodes: a switch with no silence in between (seek, next,
    // prev) jumps by the same source frames on every node. Over a pause
    // the jump also holds how far each clock moved while silent, so it is
    // reported, not compared.
    let names = ["pause → resume", "seek", "next", "prev"];
    let mut worst: f64 = 0.0;
    for i in 0..seen.len() {
        for j in i + 1..seen.len() {
            let (x, y) = (&seen[i], &seen[j]);
            for (k, name) in names.iter().enumerate().skip(1) {
                let apart = wrap(x.jumps[k] - y.jumps[k]).abs() / RATIO;
                worst = worst.max(apart);
                assert!(
                    apart <= SAME_FRAME_LIMIT,
                    "{name}: nodes {i} and {j} switched {apart:.2} output frames apart"
                );
            }
            for (name, p, q) in [
                ("resume", x.resumed_on, y.resumed_on),
                ("pause", x.paused_on, y.paused_on),
                ("stop", x.stopped_on, y.stopped_on),
            ] {
                let apart = wrap(p - q).abs() / RATIO;
                worst = worst.max(apart);
                assert!(
                    apart <= SAME_FRAME_LIMIT,
                    "{name}: nodes {i} and {j} began or fell silent {apart:.2} output frames apart"
                );
            }
        }
    }
    eprintln!("worst difference between two nodes' switches: {worst:.2} output frames");
}
