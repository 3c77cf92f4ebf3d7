//! `firefly doctor`: checks what a node needs and says, for each thing,
//! whether it is fine and what to do if not.
//!
//! The checks: the sound device (opened and played for a moment: its real
//! latency and whether it reports when frames are heard), mDNS (an interface
//! that can multicast; members a running node sees), the API port (free, or
//! held by a Firefly node), the swarm clock (of the running node, through its
//! API), the data dir (writable, free space) and the music folder (readable,
//! how many tracks). Nothing is sent to the network except requests to the
//! node's own API. `--json` prints the same as one object for scripts; the
//! exit status is 1 when any check failed.

mod firewall;

use crate::config::UpConfig;
use crate::node::OutputArg;
use anyhow::Context;
use firefly_player::{LinearTimeline, OutputChoice, OutputTiming, Player, PlayerConfig};
use serde::Serialize;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long the sound device plays silence before its report is read.
const SOUND_PROBE: Duration = Duration::from_millis(1500);
/// Free space under which the data dir gets a warning, bytes.
const LOW_SPACE: u64 = 512 * 1024 * 1024;
/// Folders the track count looks into at most (a mistaken `/` ends fast).
const MAX_FILES_COUNTED: usize = 200_000;

/// Arguments of `firefly doctor`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Print the checks as one JSON object.
    #[arg(long)]
    json: bool,
    /// The config file `firefly up` would read (default: as `up` finds it).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The node's data dir (default: the config's, else the platform's).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The music folder (default: the config's, else `music` in the data dir).
    #[arg(long, value_name = "DIR")]
    music: Option<PathBuf>,
    /// Where the node serves (or would serve) its API (default: the config's, else 127.0.0.1:8081).
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// The node's API token (needed when it is bound to a non-loopback address).
    #[arg(long, env = "FIREFLY_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    /// Fine.
    Ok,
    /// Works, but not as well as it could.
    Warn,
    /// Does not work.
    Fail,
    /// Could not be checked (no node running, say).
    Skip,
}

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
struct Check {
    /// What was checked: `sound`, `mdns`, `firewall`, `port`, `clock`, `data_dir`, `music`.
    name: &'static str,
    verdict: Verdict,
    /// What was found, in a sentence.
    detail: String,
    /// What to do about it (none when fine).
    fix: Option<String>,
    /// Figures behind the verdict, for scripts.
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    facts: serde_json::Value,
}

impl Check {
    fn new(name: &'static str, verdict: Verdict, detail: impl Into<String>) -> Self {
        Self {
            name,
            verdict,
            detail: detail.into(),
            fix: None,
            facts: serde_json::Value::Null,
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    fn facts(mut self, facts: serde_json::Value) -> Self {
        self.facts = facts;
        self
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let file = match crate::config::find(args.config.as_deref())? {
        Some(path) => crate::config::load(&path)?,
        None => UpConfig::default(),
    };
    let http = args
        .http
        .or(file.http)
        .unwrap_or_else(|| "127.0.0.1:8081".parse().expect("a socket address"));
    let token = args.token.or(file.token.clone());
    // The running node's state, when one answers (the clock, its output, its members).
    let node = crate::api_client::call(http, "GET", "/api/state", None, token.as_deref())
        .ok()
        .and_then(|body| serde_json::from_slice::<serde_json::Value>(&body).ok());
    let data_dir = args.data_dir.or(file.data_dir.clone()).or_else(|| {
        directories::ProjectDirs::from("", "", "firefly").map(|d| d.data_dir().to_path_buf())
    });
    let music = args
        .music
        .or(file.music.clone())
        .or_else(|| data_dir.as_ref().map(|d| d.join("music")));
    let checks = vec![
        sound(file.output.as_ref(), node.as_ref()),
        mdns(file.mdns.unwrap_or(true), node.as_ref()),
        firewall::check(file.listen.as_deref(), file.mdns.unwrap_or(true)),
        port(http, node.as_ref()),
        clock(node.as_ref()),
        data_dir_check(data_dir.as_deref()),
        music_check(music.as_deref()),
    ];
    let failed = checks.iter().any(|c| c.verdict == Verdict::Fail);
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &serde_json::json!({ "checks": checks }))?;
        writeln!(out)?;
    } else {
        for check in &checks {
            let mark = match check.verdict {
                Verdict::Ok => "ok  ",
                Verdict::Warn => "warn",
                Verdict::Fail => "FAIL",
                Verdict::Skip => "skip",
            };
            writeln!(out, "{mark} {:9} {}", check.name, check.detail)?;
            if let Some(fix) = &check.fix {
                writeln!(out, "     {:9} fix: {fix}", "")?;
            }
        }
    }
    out.flush()?;
    if failed {
        anyhow::bail!("some checks failed (see above)");
    }
    Ok(())
}

/// The sound device: the running node's report if one answers (it holds the
/// device), else the device opened and played for a moment.
fn sound(output: Option<&OutputArg>, node: Option<&serde_json::Value>) -> Check {
    if let Some(state) = node {
        let output = &state["output"];
        if output.is_null() {
            return Check::new("sound", Verdict::Warn, "the running node plays no sound")
                .fix("start it with a sound device (leave out --output null)");
        }
        let timing = output["timing"].as_str().unwrap_or("?").to_string();
        let latency_ms = output["delay_us"].as_f64().map(|d| d / 1000.0);
        return timing_check(
            &timing,
            latency_ms,
            output.clone(),
            "the running node's output",
        );
    }
    let choice = match output {
        Some(OutputArg::Null) => {
            return Check::new("sound", Verdict::Skip, "the config says output = \"null\"");
        }
        Some(OutputArg::Play(choice)) => choice.clone(),
        None => OutputChoice::DefaultDevice,
    };
    let opened = match choice.open() {
        Ok(opened) => opened,
        Err(err) => {
            return Check::new("sound", Verdict::Fail, format!("no sound device: {err}")).fix(
                "connect a sound card or speaker and check `aplay -l`; on a desktop make sure \
                     the sound server runs; a node without sound still joins the swarm with \
                     --output null",
            );
        }
    };
    let timeline = Arc::new(LinearTimeline::new(0.0, 0));
    let player = match Player::start(opened, timeline, PlayerConfig::default()) {
        Ok(player) => player,
        Err(err) => {
            return Check::new(
                "sound",
                Verdict::Fail,
                format!("the device opened but cannot play: {err}"),
            )
            .fix(
                "check that no other program holds the device exclusively (`fuser -v /dev/snd/*`)",
            );
        }
    };
    std::thread::sleep(SOUND_PROBE);
    let Some(report) = player.output_report() else {
        return Check::new("sound", Verdict::Fail, "the device gave no report");
    };
    drop(player);
    let facts = serde_json::json!({
        "timing": report.timing.as_str(),
        "periods": report.periods,
        "underruns": report.underruns,
        "delay_us": report.delay_micros,
        "device_rate_ppm": report.device_rate_ppm,
    });
    if report.periods == 0 {
        return Check::new(
            "sound",
            Verdict::Fail,
            "the device opened but never asked for sound",
        )
        .fix("check the device with `speaker-test -c 2`")
        .facts(facts);
    }
    let timing = match report.timing {
        OutputTiming::Starting => "starting",
        other => other.as_str(),
    };
    timing_check(
        timing,
        report.delay_micros.map(|d| d as f64 / 1000.0),
        facts,
        "the device",
    )
}

fn timing_check(
    timing: &str,
    latency_ms: Option<f64>,
    facts: serde_json::Value,
    what: &str,
) -> Check {
    let latency = latency_ms.map_or_else(String::new, |ms| format!(", latency {ms:.1} ms"));
    match timing {
        "reported" => Check::new(
            "sound",
            Verdict::Ok,
            format!("{what} plays and reports when its frames are heard{latency}"),
        )
        .facts(facts),
        "callback-only" => Check::new(
            "sound",
            Verdict::Warn,
            format!("{what} plays but reports no latency: sync is off by its unknown latency"),
        )
        .fix("measure the latency and give it with --latency-ms (or latency_ms in the config)")
        .facts(facts),
        "unpaced" => Check::new(
            "sound",
            Verdict::Warn,
            format!("{what} does not pace itself (it takes sound faster or slower than its rate)"),
        )
        .fix("use another device (`--output device:NAME`, `aplay -L` lists them)")
        .facts(facts),
        "lost" => Check::new("sound", Verdict::Fail, format!("{what} went away"))
            .fix("reconnect the device; the node reopens it by itself")
            .facts(facts),
        other => Check::new(
            "sound",
            Verdict::Warn,
            format!("{what} has not started yet ({other})"),
        )
        .facts(facts),
    }
}

/// mDNS: an interface that is up and can multicast; the members a running
/// node sees. Sends nothing.
fn mdns(enabled: bool, node: Option<&serde_json::Value>) -> Check {
    if !enabled {
        return Check::new(
            "mdns",
            Verdict::Skip,
            "mDNS is off in the config (mdns = false)",
        );
    }
    let interfaces = multicast_interfaces();
    let peers = node.and_then(|s| s["peers"].as_array().map(Vec::len));
    let facts = serde_json::json!({ "interfaces": interfaces, "members": peers });
    if interfaces.is_empty() {
        return Check::new(
            "mdns",
            Verdict::Fail,
            "no network interface is up with multicast: other nodes on the LAN cannot find this one",
        )
        .fix("connect to the LAN (cable or Wi-Fi), or name peers with --peer")
        .facts(facts);
    }
    match peers {
        Some(0) => Check::new(
            "mdns",
            Verdict::Warn,
            format!(
                "multicast on {}, but the running node sees no other node",
                interfaces.join(", ")
            ),
        )
        .fix(
            "start another node on the LAN; if one runs, a firewall may drop mDNS (UDP 5353) \
             or the swarm ports: allow them, or name peers with --peer",
        )
        .facts(facts),
        Some(n) => Check::new(
            "mdns",
            Verdict::Ok,
            format!(
                "multicast on {}; the node sees {n} other node(s)",
                interfaces.join(", ")
            ),
        )
        .facts(facts),
        None => Check::new(
            "mdns",
            Verdict::Ok,
            format!(
                "multicast on {} (no node running to ask whom it sees)",
                interfaces.join(", ")
            ),
        )
        .facts(facts),
    }
}

/// Interfaces other than loopback that are up and can multicast
/// (`/sys/class/net/*/flags`: IFF_UP 0x1, IFF_LOOPBACK 0x8, IFF_MULTICAST 0x1000).
fn multicast_interfaces() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let flags = std::fs::read_to_string(e.path().join("flags")).ok()?;
            let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).ok()?;
            (flags & 0x1 != 0 && flags & 0x8 == 0 && flags & 0x1000 != 0)
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    names
}

/// The API port: free, held by a Firefly node, or held by something else.
fn port(http: SocketAddr, node: Option<&serde_json::Value>) -> Check {
    let facts = serde_json::json!({ "http": http.to_string() });
    if let Some(state) = node {
        return Check::new(
            "port",
            Verdict::Ok,
            format!(
                "{http} is served by the Firefly node {:?}",
                state["name"].as_str().unwrap_or("?")
            ),
        )
        .facts(facts);
    }
    match std::net::TcpListener::bind(http) {
        Ok(_) => Check::new("port", Verdict::Ok, format!("{http} is free for a node's API")).facts(facts),
        Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => Check::new(
            "port",
            Verdict::Fail,
            format!("{http} is held by another program (not a Firefly node answering)"),
        )
        .fix("give the node another address with --http (or http in the config), or stop that program (`ss -ltnp`)")
        .facts(facts),
        Err(err) => Check::new("port", Verdict::Fail, format!("cannot use {http}: {err}"))
            .fix("use an address of this machine with --http")
            .facts(facts),
    }
}

/// The running node's swarm clock.
fn clock(node: Option<&serde_json::Value>) -> Check {
    let Some(state) = node else {
        return Check::new("clock", Verdict::Skip, "no node is running to ask")
            .fix("start one with `firefly up` (or `systemctl start firefly`)");
    };
    let peers = state["peers"].as_array().map_or(0, Vec::len);
    let synced = state["clock_synced"] == true;
    let error_us = state["sync_error_us"].as_f64();
    let worst_offset_us = state["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["clock_offset_us"].as_f64())
        .map(f64::abs)
        .fold(None, |worst: Option<f64>, o| {
            Some(worst.map_or(o, |w| w.max(o)))
        });
    let facts = serde_json::json!({
        "synced": synced,
        "sync_error_us": error_us,
        "worst_peer_offset_us": worst_offset_us,
        "peers": peers,
    });
    if peers == 0 {
        return Check::new(
            "clock",
            Verdict::Ok,
            "the node is alone: its clock is the swarm's",
        )
        .facts(facts);
    }
    if !synced {
        return Check::new(
            "clock",
            Verdict::Warn,
            "the swarm clock is not synced yet with the other nodes",
        )
        .fix("wait a few seconds after start; if it stays so, the link to the peers is lossy")
        .facts(facts);
    }
    let error = error_us.map_or_else(String::new, |e| format!(", ±{e:.0} µs"));
    let worst = worst_offset_us.map_or_else(String::new, |o| {
        format!("; the farthest peer is {o:.0} µs off")
    });
    Check::new(
        "clock",
        Verdict::Ok,
        format!("synced with {peers} peer(s){error}{worst}"),
    )
    .facts(facts)
}

/// The data dir: exists (or can be made), writable, free space.
fn data_dir_check(dir: Option<&Path>) -> Check {
    let Some(dir) = dir else {
        return Check::new(
            "data_dir",
            Verdict::Fail,
            "no home directory for the data dir",
        )
        .fix("pass --data-dir DIR (or data_dir in the config)");
    };
    let shown = dir.display().to_string();
    if !dir.exists() {
        return Check::new(
            "data_dir",
            Verdict::Warn,
            format!("{shown} does not exist yet (`firefly up` creates it)"),
        )
        .facts(serde_json::json!({ "path": shown }));
    }
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    let writable = std::fs::write(&probe, b"firefly doctor").is_ok();
    let _ = std::fs::remove_file(&probe);
    let free = free_bytes(dir);
    let facts = serde_json::json!({ "path": shown, "writable": writable, "free_bytes": free });
    if !writable {
        return Check::new(
            "data_dir",
            Verdict::Fail,
            format!("{shown} is not writable"),
        )
        .fix(format!(
            "give the node's user write access to {shown}, or pass another --data-dir"
        ))
        .facts(facts);
    }
    match free {
        Some(free) if free < LOW_SPACE => Check::new(
            "data_dir",
            Verdict::Warn,
            format!(
                "{shown} is writable but only {} MB are free",
                free / 1_000_000
            ),
        )
        .fix("free some space: downloaded music goes here")
        .facts(facts),
        Some(free) => Check::new(
            "data_dir",
            Verdict::Ok,
            format!("{shown} is writable, {:.1} GB free", free as f64 / 1e9),
        )
        .facts(facts),
        None => Check::new("data_dir", Verdict::Ok, format!("{shown} is writable")).facts(facts),
    }
}

/// Free bytes on the file system holding `dir` (`df`), if it can be read.
fn free_bytes(dir: &Path) -> Option<u64> {
    let out = std::process::Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)?
        .trim()
        .parse()
        .ok()
}

/// The music folder: readable, and how many audio files it holds.
fn music_check(dir: Option<&Path>) -> Check {
    let Some(dir) = dir else {
        return Check::new("music", Verdict::Fail, "no music folder").fix("pass --music DIR");
    };
    let shown = dir.display().to_string();
    if !dir.is_dir() {
        return Check::new("music", Verdict::Warn, format!("{shown} does not exist"))
            .fix(format!(
                "create it and put music in it (`mkdir -p {shown}`), or name another with --music"
            ))
            .facts(serde_json::json!({ "path": shown }));
    }
    let counted = count_tracks(dir);
    let (tracks, unreadable) = match counted {
        Ok(counts) => counts,
        Err(err) => {
            return Check::new(
                "music",
                Verdict::Fail,
                format!("cannot read {shown}: {err:#}"),
            )
            .fix(format!("give the node's user read access to {shown}"))
            .facts(serde_json::json!({ "path": shown }));
        }
    };
    let facts = serde_json::json!({ "path": shown, "tracks": tracks, "unreadable": unreadable });
    if tracks == 0 {
        return Check::new(
            "music",
            Verdict::Warn,
            format!("{shown} holds no audio files"),
        )
        .fix(format!(
            "copy music into {shown} ({}), or let peers' tracks download into it",
            firefly_library::AUDIO_EXTENSIONS.join(", ")
        ))
        .facts(facts);
    }
    let note = if unreadable > 0 {
        format!(" ({unreadable} unreadable entries skipped)")
    } else {
        String::new()
    };
    Check::new(
        "music",
        Verdict::Ok,
        format!("{shown} holds {tracks} audio files{note}"),
    )
    .facts(facts)
}

/// Audio files under `dir` (by extension) and entries that could not be read.
fn count_tracks(dir: &Path) -> anyhow::Result<(u64, u64)> {
    std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    let (mut tracks, mut unreadable) = (0, 0);
    for entry in walkdir::WalkDir::new(dir)
        .into_iter()
        .take(MAX_FILES_COUNTED)
    {
        match entry {
            Ok(e) if e.file_type().is_file() && firefly_library::has_audio_extension(e.path()) => {
                tracks += 1;
            }
            Ok(_) => {}
            Err(_) => unreadable += 1,
        }
    }
    Ok((tracks, unreadable))
}
