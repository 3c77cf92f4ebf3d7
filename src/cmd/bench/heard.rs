//! `firefly bench heard`: sync as heard through a real sound server.
//!
//! Three `firefly up --output device` nodes on 127.0.0.1 play one click
//! track, each through ALSA into its own channel of one null sink of a
//! private sound server (its own socket, no network listener): PulseAudio
//! (ALSA's `pulse` plugin, one `module-remap-sink` per node) or, with
//! `--server pipewire`, PipeWire (ALSA's `pipewire` plugin, one loopback
//! per node, linked by WirePlumber). The sink's monitor is recorded
//! (`parec`, `pw-record`); every click is located in every channel to a
//! fraction of a sample by cross-correlation with the known click, and the
//! spread between the nodes' clicks is what a listener would hear. The
//! nodes' test clocks run at the same rate (`still`) or at +200, +50 and
//! −200 ppm (`skewed`). It reports the spread (p50, p99, max), its drift
//! (µs/s), the devices' underruns and the CPU of each node and of its
//! output path (the device thread, the decoder, the control thread).
//!
//! With `--logs` the spread is also split between the nodes' swarm clocks
//! and their output paths (`heard_split`).
//!
//! The end-to-end test `heard` runs this with a short window; the figures
//! in BENCHMARKS.md come from the long one.

use super::heard_split::{self, ClockTrace};
use super::sync::{cpu_seconds, cpu_seconds_in};
use crate::cmd::local_swarm::{
    Node, NodeSetup, get_json, music_dir, percentile_abs, post, start_node_with, wait_settled,
};
use anyhow::{Context, bail};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Nodes, one channel each.
const NODES: usize = 3;
/// The sink's rate.
const SINK_RATE: u32 = 48_000;
/// The track's rate (the nodes resample it to the device's).
const TRACK_RATE: u32 = 44_100;
/// A click every this many seconds.
const CLICK_EVERY: f64 = 0.5;
/// The click: a Hann-windowed chirp this long…
const CLICK_SECONDS: f64 = 0.004;
/// …from this frequency to the next.
const CLICK_FROM_HZ: f64 = 1_000.0;
const CLICK_TO_HZ: f64 = 6_000.0;

/// Goals of the issue.
const GOAL_SKEWED_P99_MICROS: f64 = 100.0;
const GOAL_STILL_P99_MICROS: f64 = 50.0;
const GOAL_DRIFT: f64 = 1.0;
const GOAL_OUTPUT_CPU_PERCENT: f64 = 0.5;

/// Arguments of `firefly bench heard`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Seconds recorded per case.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(5..=900))]
    seconds: u32,
    /// Seconds of playback before recording (the nodes settle).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=600))]
    warmup: u32,
    /// Which clocks: `still` (same rate), `skewed` (+200, +50, −200 ppm),
    /// `both`, or `restart` (skewed, and the last node is killed and started
    /// again halfway through the recording: how soon is it back in step?).
    #[arg(long, value_enum, default_value_t = Case::Both)]
    case: Case,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Keep, in this folder, each node's log with every device period's
    /// timing (`CASE-nodeN.log`) and every click located per channel
    /// (`CASE-clicks.txt`), to line the sound up with the reports; and
    /// split the spread between the nodes' swarm clocks and their output
    /// paths (`clock_and_output` in the report, per click in `CASE-split.json`).
    #[arg(long)]
    logs: Option<PathBuf>,
    /// The sink's first channels that no node plays into (the nodes play
    /// into the ones after). The sink's first channel (`aux0`) was heard
    /// about 26 µs late against the others in 7 of 7 runs of one session,
    /// whichever node played into it, and not in the next session's
    /// (BENCHMARKS.md, "Sync as heard"): this tells the rig from the nodes.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=8))]
    spare_channels: u8,
    /// The sound server the nodes play through.
    #[arg(long, value_enum, default_value_t = ServerKind::Pulseaudio)]
    server: ServerKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Case {
    Still,
    Skewed,
    Both,
    Restart,
}

impl Case {
    fn rates(self) -> [f64; NODES] {
        match self {
            Self::Skewed | Self::Restart => [200.0, 50.0, -200.0],
            Self::Still | Self::Both => [0.0; NODES],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Still => "still",
            Self::Skewed => "skewed",
            Self::Both => "both",
            Self::Restart => "restart",
        }
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let cases = match args.case {
        Case::Both => vec![Case::Still, Case::Skewed],
        one => vec![one],
    };
    if let Some(dir) = &args.logs {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut reports = Vec::new();
    for case in cases {
        let root: PathBuf = std::env::temp_dir().join(format!(
            "firefly-bench-heard-{}-{}",
            std::process::id(),
            case.name()
        ));
        std::fs::create_dir_all(&root)?;
        let result = tokio::runtime::Runtime::new()?.block_on(bench(&root, &args, case));
        let _ = std::fs::remove_dir_all(&root);
        reports.push(result?);
    }
    let report = json!({ "seconds": args.seconds, "warmup": args.warmup, "cases": reports });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&reports);
    }
    Ok(())
}

/// Which sound server the rig runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ServerKind {
    /// PulseAudio, reached through ALSA's `pulse` plugin (libpulse).
    Pulseaudio,
    /// PipeWire with WirePlumber, reached through ALSA's `pipewire` plugin.
    Pipewire,
}

impl ServerKind {
    fn name(self) -> &'static str {
        match self {
            Self::Pulseaudio => "pulseaudio",
            Self::Pipewire => "pipewire",
        }
    }
}

/// A private sound server with one null sink and a one-channel sink per
/// node mapped onto its own channel of it; killed (and its folder left to
/// the caller's cleanup) when dropped.
///
/// PulseAudio: a `module-null-sink` and a `module-remap-sink` per node.
/// PipeWire: a `support.null-audio-sink` driven by PipeWire's timer and a
/// `libpipewire-module-loopback` per node, linked by WirePlumber (which
/// needs a D-Bus session bus: `dbus-run-session` gives it a private one).
pub(crate) struct SoundServer {
    kind: ServerKind,
    /// The server's processes, each the leader of its own process group.
    children: Vec<Child>,
    dir: PathBuf,
    /// PulseAudio's socket.
    socket: PathBuf,
    /// Unused first channels of the sink.
    spare: usize,
}

impl SoundServer {
    /// Starts a `kind` server in `dir` with `channels` channels for nodes
    /// after `spare` unused first ones.
    pub(crate) fn start(
        dir: &Path,
        channels: usize,
        spare: usize,
        kind: ServerKind,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir.join("home"))?;
        std::fs::create_dir_all(dir.join("run"))?;
        let mut server = Self {
            kind,
            children: Vec::new(),
            dir: dir.to_path_buf(),
            socket: dir.join("run").join("native"),
            spare,
        };
        match kind {
            ServerKind::Pulseaudio => server.start_pulseaudio(channels)?,
            ServerKind::Pipewire => server.start_pipewire(channels)?,
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for child in &mut server.children {
                if let Some(status) = child.try_wait()? {
                    bail!("the sound server exited at start ({status})");
                }
            }
            if server.is_ready(channels) {
                if kind == ServerKind::Pulseaudio {
                    server.realtime_everywhere();
                }
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!("the sound server did not come up within 20 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn start_pulseaudio(&mut self, channels: usize) -> anyhow::Result<()> {
        let sink_channels = channels + self.spare;
        let map: Vec<String> = (0..sink_channels).map(|c| format!("aux{c}")).collect();
        let mut script = format!(
            "load-module module-native-protocol-unix auth-anonymous=1 socket={}\n\
             load-module module-null-sink sink_name=heard channels={sink_channels} channel_map={} \
             rate={SINK_RATE} format=float32le norewinds=1\n",
            self.socket.display(),
            map.join(",")
        );
        for c in 0..channels {
            script.push_str(&format!(
                "load-module module-remap-sink sink_name=ch{c} master=heard channels=1 \
                 master_channel_map=aux{} channel_map=mono remix=no\n",
                c + self.spare
            ));
        }
        let pa = self.dir.join("server.pa");
        std::fs::write(&pa, script)?;
        std::fs::write(
            self.alsa_conf(None),
            "pcm.!default { type pulse }\nctl.!default { type pulse }\n",
        )?;
        let child = self
            .command("pulseaudio")
            .args(["--system=false", "--daemonize=no", "-n", "-F"])
            .arg(&pa)
            .args(["--exit-idle-time=-1", "--log-target=stderr"])
            // A sound server is given real-time priority where the system allows, as a desktop's is.
            .args(["--realtime=yes", "--high-priority=yes"])
            .spawn()
            .context("cannot start pulseaudio (is PulseAudio installed? .ci/setup installs it)")?;
        self.children.push(child);
        Ok(())
    }

    fn start_pipewire(&mut self, channels: usize) -> anyhow::Result<()> {
        let sink_channels = channels + self.spare;
        let map: Vec<String> = (0..sink_channels).map(|c| format!("AUX{c}")).collect();
        let loopbacks: String = (0..channels)
            .map(|c| {
                format!(
                    "  {{ name = libpipewire-module-loopback args = {{\n\
                     \x20   node.description = \"ch{c}\"\n\
                     \x20   capture.props = {{ node.name = ch{c} media.class = Audio/Sink audio.position = [ MONO ] }}\n\
                     \x20   playback.props = {{ node.name = ch{c}.out audio.position = [ AUX{} ] \
                     target.object = heard stream.dont-remix = true node.passive = true }}\n\
                     \x20 }} }}\n",
                    c + self.spare
                )
            })
            .collect();
        let conf = format!(
            "context.properties = {{\n\
             \x20 core.daemon = true\n\
             \x20 core.name = pipewire-0\n\
             \x20 default.clock.rate = {SINK_RATE}\n\
             }}\n\
             context.spa-libs = {{\n\
             \x20 audio.convert.* = audioconvert/libspa-audioconvert\n\
             \x20 support.* = support/libspa-support\n\
             }}\n\
             context.modules = [\n\
             \x20 {{ name = libpipewire-module-rt args = {{ nice.level = -11 }} flags = [ ifexists nofail ] }}\n\
             \x20 {{ name = libpipewire-module-protocol-native }}\n\
             \x20 {{ name = libpipewire-module-metadata }}\n\
             \x20 {{ name = libpipewire-module-spa-node-factory }}\n\
             \x20 {{ name = libpipewire-module-client-node }}\n\
             \x20 {{ name = libpipewire-module-access }}\n\
             \x20 {{ name = libpipewire-module-adapter }}\n\
             \x20 {{ name = libpipewire-module-link-factory }}\n\
             {loopbacks}\
             ]\n\
             context.objects = [\n\
             \x20 {{ factory = metadata args = {{ metadata.name = default }} }}\n\
             \x20 {{ factory = spa-node-factory args = {{ factory.name = support.node.driver \
             node.name = Dummy-Driver node.group = pipewire.dummy priority.driver = 20000 }} }}\n\
             \x20 {{ factory = adapter args = {{ factory.name = support.null-audio-sink node.name = heard \
             media.class = Audio/Sink object.linger = true audio.rate = {SINK_RATE} \
             audio.position = [ {} ] monitor.channel-volumes = true }} }}\n\
             ]\n",
            map.join(" ")
        );
        let conf_path = self.dir.join("pipewire.conf");
        std::fs::write(&conf_path, conf)?;
        for c in 0..channels {
            std::fs::write(
                self.alsa_conf(Some(c)),
                format!(
                    "pcm.!default {{ type pipewire playback_node \"ch{c}\" }}\n\
                     ctl.!default {{ type pipewire }}\n"
                ),
            )?;
        }
        std::fs::write(
            self.alsa_conf(None),
            "pcm.!default { type pipewire }\nctl.!default { type pipewire }\n",
        )?;
        let pipewire = self
            .command("pipewire")
            .arg("-c")
            .arg(&conf_path)
            .spawn()
            .context("cannot start pipewire (is PipeWire installed? pipewire, pipewire-bin)")?;
        self.children.push(pipewire);
        let socket = self.dir.join("run").join("pipewire-0");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if Instant::now() > deadline {
                bail!("pipewire made no socket within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let wireplumber = self
            .command("dbus-run-session")
            .args(["--", "wireplumber"])
            .spawn()
            .context("cannot start wireplumber (needs wireplumber and dbus-run-session)")?;
        self.children.push(wireplumber);
        Ok(())
    }

    /// A command for the server's side, in its own folders and process group.
    fn command(&self, program: &str) -> Command {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(program);
        command
            .envs(self.env(None))
            .env_remove("PULSE_SINK")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        command
    }

    /// Whether the server is up with every node's sink (and, for PipeWire,
    /// the loopbacks linked into the null sink).
    fn is_ready(&self, channels: usize) -> bool {
        let last = channels.saturating_sub(1);
        let (program, args, wanted): (&str, &[&str], String) = match self.kind {
            ServerKind::Pulseaudio => ("pactl", &["list", "short", "sinks"], format!("ch{last}")),
            ServerKind::Pipewire => (
                "pw-link",
                &["--links"],
                format!("heard:playback_AUX{}", last + self.spare),
            ),
        };
        Command::new(program)
            .args(args)
            .envs(self.env(None))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .output()
            .is_ok_and(|o| {
                o.status.success() && String::from_utf8_lossy(&o.stdout).contains(&wanted)
            })
    }

    /// Moves every thread of the server to real-time priority (`SCHED_RR`
    /// 5, PulseAudio's own default for its I/O thread), where permitted.
    /// PulseAudio gives it only to the sink's I/O thread; its main thread,
    /// which takes the clients' data off their sockets, stays at nice −11,
    /// and on a loaded machine the sink then runs dry for all clients at
    /// once. A PipeWire desktop moves client data on its real-time loop;
    /// this makes the private server behave alike, so that what remains is
    /// Firefly's.
    fn realtime_everywhere(&self) {
        let Some(server) = self.children.first() else {
            return;
        };
        let done = Command::new("chrt")
            .args(["--all-tasks", "--rr", "--pid", "5"])
            .arg(server.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !done {
            tracing::info!("the sound server runs without real-time priority (chrt refused)");
        }
    }

    /// ALSA's configuration for a client of this server, into channel
    /// `channel`'s sink (PipeWire names the sink in it).
    fn alsa_conf(&self, channel: Option<usize>) -> PathBuf {
        match (self.kind, channel) {
            (ServerKind::Pipewire, Some(c)) => self.dir.join(format!("asound-ch{c}.conf")),
            _ => self.dir.join("asound.conf"),
        }
    }

    /// The environment that sends a client (ALSA's plugin, the recorder)
    /// to this server, into channel `channel`'s sink.
    pub(crate) fn env(&self, channel: Option<usize>) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "ALSA_CONFIG_PATH".to_string(),
                self.alsa_conf(channel).display().to_string(),
            ),
            (
                "HOME".to_string(),
                self.dir.join("home").display().to_string(),
            ),
            (
                "XDG_RUNTIME_DIR".to_string(),
                self.dir.join("run").display().to_string(),
            ),
        ];
        match (self.kind, channel) {
            (ServerKind::Pulseaudio, channel) => {
                env.push((
                    "PULSE_SERVER".to_string(),
                    format!("unix:{}", self.socket.display()),
                ));
                if let Some(c) = channel {
                    env.push(("PULSE_SINK".to_string(), format!("ch{c}")));
                }
            }
            (ServerKind::Pipewire, _) => {
                env.push(("PIPEWIRE_REMOTE".to_string(), "pipewire-0".to_string()));
            }
        }
        env
    }

    /// Starts recording the sink's monitor (every channel, named, the spare
    /// ones too) into `path` as raw 32-bit float frames.
    pub(crate) fn record(&self, path: &Path, channels: usize) -> anyhow::Result<Child> {
        let channels = channels + self.spare;
        let file = std::fs::File::create(path)?;
        let mut command = match self.kind {
            ServerKind::Pulseaudio => {
                let map: Vec<String> = (0..channels).map(|c| format!("aux{c}")).collect();
                let mut command = Command::new("parec");
                command
                    .args(["-d", "heard.monitor", "--raw", "--format=float32le"])
                    .arg(format!("--rate={SINK_RATE}"))
                    .arg(format!("--channels={channels}"))
                    .arg(format!("--channel-map={}", map.join(",")));
                command
            }
            ServerKind::Pipewire => {
                let map: Vec<String> = (0..channels).map(|c| format!("AUX{c}")).collect();
                let mut command = Command::new("pw-record");
                command
                    .args(["--target", "heard", "-P", "{ stream.capture.sink = true }"])
                    .args(["--format", "f32"])
                    .arg(format!("--rate={SINK_RATE}"))
                    .arg(format!("--channels={channels}"))
                    .arg(format!("--channel-map=[{}]", map.join(",")))
                    // `-`: raw frames to standard output.
                    .arg("-");
                command
            }
        };
        command
            .envs(self.env(None))
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start the recorder of {:?}", self.kind))
    }
}

impl Drop for SoundServer {
    fn drop(&mut self) {
        // Each server process leads its own group: WirePlumber runs under
        // `dbus-run-session` with a bus daemon beside it.
        for child in self.children.iter_mut().rev() {
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{}", child.id())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The click at time `t` seconds from its start (zero outside it).
fn click(t: f64) -> f64 {
    if !(0.0..CLICK_SECONDS).contains(&t) {
        return 0.0;
    }
    let window = 0.5 - 0.5 * (std::f64::consts::TAU * t / CLICK_SECONDS).cos();
    let sweep = (CLICK_TO_HZ - CLICK_FROM_HZ) / CLICK_SECONDS;
    let phase = std::f64::consts::TAU * (CLICK_FROM_HZ * t + sweep * t * t / 2.0);
    window * phase.sin()
}

/// Writes the click track: a click every [`CLICK_EVERY`] s for `seconds`.
fn write_click_track(path: &Path, seconds: u32) -> anyhow::Result<()> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: TRACK_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)
        .with_context(|| format!("cannot write {}", path.display()))?;
    for n in 0..seconds * TRACK_RATE {
        let t = f64::from(n) / f64::from(TRACK_RATE);
        let s = (click(t % CLICK_EVERY) * 0.8 * f64::from(i16::MAX)) as i16;
        w.write_sample(s)?;
        w.write_sample(s)?;
    }
    w.finalize()?;
    Ok(())
}

/// Where each click sounds in `signal` (sub-sample positions, in samples),
/// found by cross-correlation with the click.
fn locate_clicks(signal: &[f32]) -> Vec<f64> {
    let template: Vec<f64> = (0..(CLICK_SECONDS * f64::from(SINK_RATE)).ceil() as usize)
        .map(|k| click(k as f64 / f64::from(SINK_RATE)))
        .collect();
    let energy: f64 = template.iter().map(|x| x * x).sum();
    let gap = (CLICK_EVERY * f64::from(SINK_RATE) / 2.0) as usize;
    let reach = template.len();
    let mut found = Vec::new();
    let mut i = 0;
    while i < signal.len() {
        if signal[i].abs() < 0.05 {
            i += 1;
            continue;
        }
        // A click starts within a click length before its first loud sample.
        let from = i.saturating_sub(reach);
        let to = (i + reach).min(signal.len().saturating_sub(reach));
        let corr = |lag: usize| -> f64 {
            template
                .iter()
                .zip(&signal[lag..lag + reach])
                .map(|(a, &b)| a * f64::from(b))
                .sum()
        };
        if to > from + 2 {
            let (best, value) = (from..to)
                .map(|lag| (lag, corr(lag)))
                .fold((from, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
            // Only a whole click (not one cut by the recording's edges), and a parabola through the peak.
            if best > from && best + 1 < to && value > 0.3 * energy * 0.8 {
                let (l, c, r) = (corr(best - 1), value, corr(best + 1));
                let denom = l - 2.0 * c + r;
                let shift = if denom < 0.0 {
                    0.5 * (l - r) / denom
                } else {
                    0.0
                };
                found.push(best as f64 + shift.clamp(-0.5, 0.5));
            }
        }
        i += gap;
    }
    found
}

/// What the recording shows: per click heard on every channel, the spread
/// (µs) and time (s); and each channel's offset from channel 0 over time.
struct Heard {
    spreads: Vec<f64>,
    /// (time s, offset of channel c from channel 0 µs) per channel 1…
    offsets: Vec<Vec<(f64, f64)>>,
    clicks: Vec<usize>,
    /// Every click located, per channel (samples).
    positions: Vec<Vec<f64>>,
}

/// `raw` holds `spare` unused channels first, then `channels` nodes'.
fn analyse(raw: &[u8], spare: usize, channels: usize) -> Heard {
    let samples: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let recorded = channels + spare;
    let per_channel: Vec<Vec<f64>> = (spare..recorded)
        .map(|c| {
            let signal: Vec<f32> = samples.iter().skip(c).step_by(recorded).copied().collect();
            locate_clicks(&signal)
        })
        .collect();
    let clicks = per_channel.iter().map(Vec::len).collect();
    let micros = |samples: f64| samples * 1e6 / f64::from(SINK_RATE);
    let mut spreads = Vec::new();
    let mut offsets = vec![Vec::new(); channels.saturating_sub(1)];
    for times in match_clicks(&per_channel, f64::from(SINK_RATE)) {
        let t0 = times[0];
        let (lo, hi) = times
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &t| (lo.min(t), hi.max(t)));
        spreads.push(micros(hi - lo));
        for (c, t) in times.iter().enumerate().skip(1) {
            offsets[c - 1].push((t0 / f64::from(SINK_RATE), micros(t - t0)));
        }
    }
    Heard {
        spreads,
        offsets,
        clicks,
        positions: per_channel,
    }
}

/// The clicks heard on every channel, matched: per click of channel 0, its
/// position on each channel (samples at `rate`).
pub(crate) fn match_clicks(per_channel: &[Vec<f64>], rate: f64) -> Vec<Vec<f64>> {
    let tolerance = CLICK_EVERY * rate / 4.0;
    let first = per_channel.first().map(Vec::as_slice).unwrap_or_default();
    first
        .iter()
        .filter_map(|&t0| {
            per_channel
                .iter()
                .map(|clicks| {
                    let i = clicks.partition_point(|&t| t < t0 - tolerance);
                    clicks
                        .get(i)
                        .copied()
                        .filter(|t| (t - t0).abs() < tolerance)
                })
                .collect()
        })
        .collect()
}

/// Least-squares slope of `points` (y per x).
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (sxx, sxy) = points.iter().fold((0.0, 0.0), |(sxx, sxy), (x, y)| {
        (sxx + (x - mx) * (x - mx), sxy + (x - mx) * (y - my))
    });
    if sxx > 0.0 { sxy / sxx } else { 0.0 }
}

/// CPU seconds of the threads of `pid` that make up the output path.
fn output_path_cpu(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .filter_map(Result::ok)
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm")).is_ok_and(|name| {
                let name = name.trim();
                name.starts_with("cpal_alsa_out")
                    || name.starts_with("firefly-decode")
                    || name.starts_with("firefly-device")
            })
        })
        .filter_map(|task| cpu_seconds_in(&task.path().join("stat").display().to_string()))
        .sum()
}

async fn bench(root: &Path, args: &Args, case: Case) -> anyhow::Result<serde_json::Value> {
    let spare = usize::from(args.spare_channels);
    let server = SoundServer::start(&root.join("sound"), NODES, spare, args.server)?;
    let track_seconds = args.warmup + args.seconds + 20;
    let rates = case.rates();
    let mut nodes: Vec<Node> = Vec::new();
    let mut setups: Vec<NodeSetup> = Vec::new();
    for (i, ppm) in rates.iter().enumerate() {
        let music = music_dir(root, i);
        std::fs::create_dir_all(&music)?;
        if i == 0 {
            write_click_track(&music.join("clicks.wav"), track_seconds)?;
        } else {
            std::fs::copy(
                music_dir(root, 0).join("clicks.wav"),
                music.join("clicks.wav"),
            )?;
        }
        let sign = if i % 2 == 0 { 1 } else { -1 };
        let mut env = server.env(Some(i));
        let log = args.logs.as_ref().map(|dir| {
            env.push(("RUST_LOG".into(), "info,firefly_device_timing=trace".into()));
            dir.join(format!("{}-node{i}.log", case.name()))
        });
        let setup = NodeSetup {
            output: "device".into(),
            test_clock: format!("{},{ppm}", sign * 250_000 * i as i64),
            env,
            log,
        };
        let peers: Vec<String> = nodes.iter().map(|node| node.addr.clone()).collect();
        nodes.push(start_node_with(root, i, &peers, &setup)?);
        setups.push(setup);
    }
    wait_settled(&nodes, Duration::from_secs(60)).await?;
    let library = get_json(nodes[0].http, "/api/library").await?;
    let track = library
        .as_array()
        .and_then(|tracks| tracks.first())
        .and_then(|t| t["track"].as_str())
        .context("the click track is not in the library")?
        .to_string();
    post(nodes[0].http, "/api/play", json!({ "track": track })).await?;
    tokio::time::sleep(Duration::from_secs(u64::from(args.warmup) + 3)).await;
    let underruns_before = underruns(&nodes).await;
    let cpu_before: Vec<(f64, f64)> = nodes
        .iter()
        .map(|n| {
            (
                cpu_seconds(n.pid()).unwrap_or(0.0),
                output_path_cpu(n.pid()),
            )
        })
        .collect();
    let recording = root.join("monitor.raw");
    let recording_from = std::time::SystemTime::now();
    let mut parec = server.record(&recording, NODES)?;
    let started = Instant::now();
    let mut restart = None;
    if case == Case::Restart {
        restart = Some(restart_last(root, &mut nodes, &mut setups, args, started).await?);
    }
    let left = Duration::from_secs(u64::from(args.seconds)).saturating_sub(started.elapsed());
    tokio::time::sleep(left).await;
    let _ = parec.kill();
    let _ = parec.wait();
    let elapsed = started.elapsed().as_secs_f64();
    let cpu: Vec<(f64, f64)> = nodes
        .iter()
        .zip(&cpu_before)
        .map(|(n, (all, path))| {
            // A restarted node's process is not the one measured before (null in the report).
            if restart.is_some() && n.index + 1 == NODES {
                return (f64::NAN, f64::NAN);
            }
            (
                (cpu_seconds(n.pid()).unwrap_or(0.0) - all) / elapsed * 100.0,
                (output_path_cpu(n.pid()) - path) / elapsed * 100.0,
            )
        })
        .collect();
    let underruns_after = underruns(&nodes).await;
    let outputs: Vec<serde_json::Value> = {
        let mut all = Vec::new();
        for node in &nodes {
            let state = get_json(node.http, "/api/state").await?;
            all.push(state["output"].clone());
        }
        all
    };
    drop(nodes);
    drop(server);
    let raw = std::fs::read(&recording).context("no recording")?;
    let heard = analyse(&raw, spare, NODES);
    let mut split = None;
    if let Some(dir) = &args.logs {
        write_clicks(
            &dir.join(format!("{}-clicks.txt", case.name())),
            recording_from,
            &heard,
        )?;
        split = Some(split_by_logs(dir, case, recording_from, &heard)?);
    }
    if heard.spreads.len() < 4 {
        bail!(
            "too few clicks heard on every channel ({:?} per channel, {} bytes recorded)",
            heard.clicks,
            raw.len()
        );
    }
    let drift = heard
        .offsets
        .iter()
        .map(|points| slope(points))
        .fold(0.0f64, |a, b| if b.abs() > a.abs() { b } else { a });
    let underruns: Vec<u64> = underruns_after
        .iter()
        .zip(&underruns_before)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    let goal_p99 = if case == Case::Skewed {
        GOAL_SKEWED_P99_MICROS
    } else {
        GOAL_STILL_P99_MICROS
    };
    Ok(json!({
        "case": case.name(),
        "server": args.server.name(),
        "spare_channels": spare,
        "clock_ppm": rates,
        "seconds": args.seconds,
        "clicks": heard.spreads.len(),
        "clicks_per_channel": heard.clicks,
        "spread_p50_us": percentile_abs(&heard.spreads, 50.0),
        "spread_p99_us": percentile_abs(&heard.spreads, 99.0),
        "spread_max_us": percentile_abs(&heard.spreads, 100.0),
        "drift_us_per_s": drift,
        "offsets_us": heard.offsets.iter().map(|points| {
            let mean = points.iter().map(|p| p.1).sum::<f64>() / points.len().max(1) as f64;
            json!({
                "mean": mean,
                "first": points.first().map(|p| p.1),
                "last": points.last().map(|p| p.1),
                "slope_us_per_s": slope(points),
            })
        }).collect::<Vec<_>>(),
        "underruns": underruns,
        "restart": restart.as_ref().map(|r| rejoin(&heard, r)),
        "clock_and_output": split,
        "cpu_percent": cpu.iter().map(|c| c.0).collect::<Vec<_>>(),
        "output_path_cpu_percent": cpu.iter().map(|c| c.1).collect::<Vec<_>>(),
        "outputs": outputs,
        "goals": {
            "spread_p99_us": goal_p99,
            "drift_us_per_s": GOAL_DRIFT,
            "underruns": 0,
            "output_path_cpu_percent": GOAL_OUTPUT_CPU_PERCENT,
        },
    }))
}

/// When the last node was killed and when it was up again, in seconds
/// since the recording started.
struct Restart {
    killed_at: f64,
    up_at: f64,
}

/// Kills the last node halfway through the recording and starts it again
/// (same folder, clock and peers), as a crash and a restart would.
async fn restart_last(
    root: &Path,
    nodes: &mut Vec<Node>,
    setups: &mut [NodeSetup],
    args: &Args,
    started: Instant,
) -> anyhow::Result<Restart> {
    tokio::time::sleep(Duration::from_secs_f64(f64::from(args.seconds) / 2.0)).await;
    let last = nodes.pop().context("no node to restart")?;
    let i = last.index;
    last.kill();
    let killed_at = started.elapsed().as_secs_f64();
    let setup = setups.get_mut(i).context("no setup for the node")?;
    if let (Some(dir), Some(_)) = (&args.logs, &setup.log) {
        setup.log = Some(dir.join(format!("restart-node{i}-again.log")));
    }
    let peers: Vec<String> = nodes.iter().map(|node| node.addr.clone()).collect();
    nodes.push(start_node_with(root, i, &peers, setup)?);
    Ok(Restart {
        killed_at,
        up_at: started.elapsed().as_secs_f64(),
    })
}

/// How the restarted (last) channel came back: when it was first heard
/// again, and from when on its clicks stayed within 100 µs of the mean of
/// the other channels' (for 2 s at least), in seconds after the kill; and
/// its offset from them at each click heard after the restart.
fn rejoin(heard: &Heard, restart: &Restart) -> serde_json::Value {
    const WITHIN_MICROS: f64 = 100.0;
    const STAYS_SECONDS: f64 = 2.0;
    let rate = f64::from(SINK_RATE);
    let last = heard.positions.len().saturating_sub(1);
    let tolerance = CLICK_EVERY * rate / 4.0;
    let mut series: Vec<(f64, f64)> = Vec::new();
    for &t in heard
        .positions
        .get(last)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        if t / rate < restart.killed_at {
            continue;
        }
        let others: Option<Vec<f64>> = heard.positions[..last]
            .iter()
            .map(|clicks| {
                let i = clicks.partition_point(|&c| c < t - tolerance);
                clicks.get(i).copied().filter(|c| (c - t).abs() < tolerance)
            })
            .collect();
        if let Some(others) = others.filter(|o| !o.is_empty()) {
            let mean = others.iter().sum::<f64>() / others.len() as f64;
            series.push((t / rate - restart.killed_at, (t - mean) * 1e6 / rate));
        }
    }
    let in_step = series.iter().enumerate().find_map(|(k, &(at, _))| {
        let rest = &series[k..];
        let span = rest.last().map_or(0.0, |l| l.0 - at);
        (span >= STAYS_SECONDS
            && rest
                .iter()
                .take_while(|(t, _)| t - at <= STAYS_SECONDS)
                .all(|(_, off)| off.abs() <= WITHIN_MICROS))
        .then_some(at)
    });
    json!({
        "killed_at_s": restart.killed_at,
        "up_after_s": restart.up_at - restart.killed_at,
        "heard_after_s": series.first().map(|s| s.0),
        "within_100us_after_s": in_step,
        "offsets_us": series
            .iter()
            .map(|(t, off)| [(t * 100.0).round() / 100.0, off.round()])
            .collect::<Vec<_>>(),
    })
}

/// The spread heard, split into the nodes' swarm clocks and their output
/// paths by their logs (`heard_split`); the per-click series goes to
/// `CASE-split.json` in `dir`, the summary into the report.
fn split_by_logs(
    dir: &Path,
    case: Case,
    from: std::time::SystemTime,
    heard: &Heard,
) -> anyhow::Result<serde_json::Value> {
    let started = from
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_micros() as f64);
    let traces: Vec<ClockTrace> = (0..NODES)
        .map(|i| {
            let logs: Vec<String> = [
                format!("{}-node{i}.log", case.name()),
                format!("{}-node{i}-again.log", case.name()),
            ]
            .iter()
            .filter_map(|name| std::fs::read_to_string(dir.join(name)).ok())
            .collect();
            ClockTrace::from_logs(logs.iter().map(String::as_str))
        })
        .collect();
    let mut split = heard_split::split(&heard.positions, f64::from(SINK_RATE), started, &traces);
    let path = dir.join(format!("{}-split.json", case.name()));
    std::fs::write(&path, serde_json::to_string(&split)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(summary) = split.as_object_mut() {
        summary.remove("series");
    }
    Ok(split)
}

/// Writes every located click: a header with the UNIX µs at which the
/// recording was started, then one line per channel per click: channel and
/// position (s from the recording's start).
fn write_clicks(path: &Path, from: std::time::SystemTime, heard: &Heard) -> anyhow::Result<()> {
    let unix = from
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let mut text = format!("# recording started at unix_us {unix}\n");
    for (c, clicks) in heard.positions.iter().enumerate() {
        for p in clicks {
            text.push_str(&format!("{c} {:.7}\n", p / f64::from(SINK_RATE)));
        }
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Each node's device underruns so far (from `/api/state`).
async fn underruns(nodes: &[Node]) -> Vec<u64> {
    let mut all = Vec::new();
    for node in nodes {
        let state = get_json(node.http, "/api/state").await.ok();
        all.push(
            state
                .and_then(|s| s["output"]["underruns"].as_u64())
                .unwrap_or(0),
        );
    }
    all
}

fn print_table(reports: &[serde_json::Value]) {
    println!(
        "{:<8} {:>7} {:>10} {:>10} {:>10} {:>9} {:>10} {:>16}",
        "case", "clicks", "p50 µs", "p99 µs", "max µs", "µs/s", "underruns", "output CPU %"
    );
    for r in reports {
        let path: Vec<String> = r["output_path_cpu_percent"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|v| format!("{:.2}", v.as_f64().unwrap_or(0.0)))
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "{:<8} {:>7} {:>10.1} {:>10.1} {:>10.1} {:>9.2} {:>10} {:>16}",
            r["case"].as_str().unwrap_or(""),
            r["clicks"],
            r["spread_p50_us"].as_f64().unwrap_or(0.0),
            r["spread_p99_us"].as_f64().unwrap_or(0.0),
            r["spread_max_us"].as_f64().unwrap_or(0.0),
            r["drift_us_per_s"].as_f64().unwrap_or(0.0),
            r["underruns"],
            path.join(" "),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recording made by hand: clicks placed at known fractional positions
    /// on two channels after a spare one, whose own clicks are not counted.
    #[test]
    fn clicks_are_located_to_a_fraction_of_a_sample() {
        let rate = f64::from(SINK_RATE);
        let starts = [
            (1000.25, 1000.0),
            (25_000.5, 25_000.9),
            (49_000.0, 48_999.3),
        ];
        let mut raw = Vec::new();
        for n in 0..60_000 {
            let spare = click((f64::from(n) - 10_000.0) / rate) * 0.8;
            raw.extend_from_slice(&(spare as f32).to_le_bytes());
            for channel in 0..2 {
                let mut s = 0.0;
                for (a, b) in starts {
                    let at = if channel == 0 { a } else { b };
                    s += click((f64::from(n) - at) / rate) * 0.8;
                }
                raw.extend_from_slice(&(s as f32).to_le_bytes());
            }
        }
        let heard = analyse(&raw, 1, 2);
        assert_eq!(heard.clicks, vec![3, 3]);
        for (spread, (a, b)) in heard.spreads.iter().zip(starts) {
            let want = (a - b).abs() * 1e6 / rate;
            assert!((spread - want).abs() < 0.5, "{spread} vs {want}");
        }
    }
}
