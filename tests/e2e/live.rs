//! Live sources end to end: a FIFO fed by the test with a click train, on
//! one of three real `firefly up` processes (skewed test clocks, virtual
//! outputs), played by all three in step, with the source-to-sound delay
//! measured from the feeder's write instants to the virtual outputs' true
//! instants; the origin killed → every member stopped within 2 s with the
//! reason in the API, and the swarm plays a track at once.

use crate::playback::{
    Node, NodeSpec, http, one_swarm_at_a_time, p99, pairwise_offsets, recent_flashes, spawn_node,
    wait_settled, wait_until,
};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const RATE: u32 = 48_000;
/// A click every 250 ms.
const CLICK_EVERY: u64 = 12_000;

fn unix_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
}

/// Writes a click train (s16le, 48 kHz, stereo) into a FIFO in real time,
/// 10 ms a write; remembers the Unix instant each click was written.
struct Feeder {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<i64>>>,
}

impl Feeder {
    fn start(fifo: PathBuf) -> Self {
        Self::start_with(fifo, |f| if f % CLICK_EVERY < 24 { 24_000 } else { 0 })
    }

    /// Feeds `sample(frame)` on both channels.
    fn start_with(fifo: PathBuf, sample: fn(u64) -> i16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut pipe = std::fs::OpenOptions::new()
                .write(true)
                .open(&fifo)
                .expect("the FIFO opens for writing");
            let mut clicks = Vec::new();
            let start = Instant::now();
            let mut frame = 0u64;
            while !stopping.load(Ordering::Relaxed) {
                let due = start + Duration::from_micros(frame * 1_000_000 / u64::from(RATE));
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let mut bytes = Vec::with_capacity(480 * 4);
                let mut click = false;
                for f in frame..frame + 480 {
                    let v = sample(f);
                    click |= f % CLICK_EVERY == 0;
                    bytes.extend(v.to_le_bytes());
                    bytes.extend(v.to_le_bytes());
                }
                let at = unix_micros();
                if pipe.write_all(&bytes).is_err() {
                    break;
                }
                if click {
                    clicks.push(at);
                }
                frame += 480;
            }
            clicks
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) -> Vec<i64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Three nodes, node 0 with `--source clicks=pipe:FIFO`, node 1 with a track.
fn start_live_swarm(root: &Path, fifo: &Path) -> Vec<Node> {
    let source = format!("clicks=pipe:{}", fifo.display());
    let mut nodes: Vec<Node> = Vec::new();
    for index in 0..3 {
        let bootstrap: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
        let extra: &[&str] = if index == 0 {
            &["--source", &source]
        } else {
            &[]
        };
        let tracks: &[(&str, u32)] = if index == 1 { &[("tone.wav", 20)] } else { &[] };
        nodes.push(spawn_node(
            root,
            &NodeSpec {
                index,
                tracks,
                bootstrap: &bootstrap,
                reuse: None,
                extra,
            },
        ));
    }
    assert!(
        wait_settled(&nodes, Duration::from_secs(30)),
        "the nodes never agreed on a synced timeline and a coordinator"
    );
    nodes
}

fn sources(node: &Node) -> Value {
    http(node.http, "GET", "/api/sources", None).1
}

/// The true Unix instant `node` sounded stream position `pos`, from its flashes.
fn sounded_at(flashes: &[(f64, i64)], pos: f64) -> Option<f64> {
    let i = flashes
        .windows(2)
        .position(|w| w[0].0 <= pos && pos < w[1].0)?;
    let (p0, t0) = flashes[i];
    let (p1, t1) = flashes[i + 1];
    Some(t0 as f64 + (pos - p0) / (p1 - p0) * (t1 - t0) as f64)
}

#[test]
fn a_fifo_plays_in_step_on_three_nodes_and_the_origin_dying_stops_them() {
    let _swarm = one_swarm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("clicks.fifo");
    mkfifo(&fifo);
    let mut nodes = start_live_swarm(tmp.path(), &fifo);
    let mut feeder = Feeder::start(fifo.clone());

    // Every node lists the source, with audio flowing.
    let listed = wait_until(Duration::from_secs(10), || {
        nodes.iter().all(|n| {
            sources(n)["sources"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|s| s["name"] == "clicks" && s["flowing"] == true)
            })
        })
    });
    assert!(
        listed,
        "the source is not in every catalog: {}",
        sources(&nodes[2])
    );

    // Played from a node that is not the origin.
    let (status, body) = http(
        nodes[1].http,
        "POST",
        "/api/sources/play",
        Some(json!({ "name": "clicks" })),
    );
    assert_eq!(status, 200, "{body}");
    // Each node plays once its clock is synced (on a busy machine a node
    // may take a few seconds more), then some seconds of playing.
    assert!(
        wait_until(Duration::from_secs(30), || nodes
            .iter()
            .all(|n| crate::playback::flashes(n).len() > 150)),
        "not every node plays the source"
    );

    // In step: the same stream position at the same true instant.
    let refs: Vec<&Node> = nodes.iter().collect();
    let seen = recent_flashes(&refs, 300);
    assert!(seen.iter().all(|f| f.len() > 100), "too few flashes");
    let spread = p99(pairwise_offsets(&seen));
    println!("live spread p99: {spread:.0} µs");
    assert!(spread <= 1_000.0, "spread p99 {spread} µs");

    // Source to sound: a click's write instant to its true sound instant.
    let origin = sources(&nodes[0])["sources"][0].clone();
    let (cf, cu) = (
        origin["captured_frame"].as_f64().unwrap(),
        origin["captured_unix_us"].as_f64().unwrap(),
    );
    let clicks = feeder.stop();
    let delays: Vec<f64> = clicks
        .iter()
        .filter(|&&w| (w as f64 - cu).abs() < 3e6)
        .filter_map(|&w| {
            let pos = cf + (w as f64 - cu) * f64::from(RATE) / 1e6;
            Some(sounded_at(&seen[1], pos)? - w as f64)
        })
        .collect();
    assert!(
        delays.len() >= 4,
        "too few clicks measured: {}",
        delays.len()
    );
    let mut sorted = delays.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    println!(
        "source to sound: median {:.1} ms over {} clicks (buffer 400 ms)",
        median / 1e3,
        sorted.len()
    );
    assert!(
        (300_000.0..=520_000.0).contains(&median),
        "source to sound {median} µs"
    );

    // The origin dies: every member stops within 2 s and says why.
    let origin = nodes.remove(0);
    let killed = Instant::now();
    drop(origin);
    let stopped = wait_until(Duration::from_secs(2), || {
        nodes
            .iter()
            .all(|n| sources(n)["live"]["ended"].is_string())
    });
    assert!(
        stopped,
        "members still play the dead origin: {}",
        sources(&nodes[0])
    );
    println!("members stopped {:?} after the kill", killed.elapsed());
    // The session ends, and a track plays at once.
    let ended = wait_until(Duration::from_secs(10), || {
        nodes
            .iter()
            .all(|n| http(n.http, "GET", "/api/state", None).1["playback"]["state"] == "stopped")
    });
    assert!(ended, "the session still plays the dead source");
    let (_, library) = http(nodes[0].http, "GET", "/api/library", None);
    let track = library[0]["track"].as_str().unwrap().to_string();
    let (status, body) = http(
        nodes[1].http,
        "POST",
        "/api/play",
        Some(json!({ "track": track })),
    );
    assert_eq!(status, 200, "{body}");
}

/// Makes `secs` seconds of a 440 Hz tone with a click every 250 ms as MP3
/// (128 kbit/s CBR, no info frame, so that copies of it play back to back).
fn make_mp3(dir: &Path, secs: u32) -> Vec<u8> {
    let raw = dir.join("tone.raw");
    let rate = 44_100u32;
    let mut bytes = Vec::new();
    for n in 0..secs * rate {
        let t = f64::from(n) / f64::from(rate);
        let mut s = (t * 440.0 * std::f64::consts::TAU).sin() * 0.2;
        if n % (rate / 4) < 20 {
            s = 0.8;
        }
        let v = (s * f64::from(i16::MAX)) as i16;
        bytes.extend(v.to_le_bytes());
        bytes.extend(v.to_le_bytes());
    }
    std::fs::write(&raw, bytes).unwrap();
    let mp3 = dir.join("tone.mp3");
    let lame = std::process::Command::new("lame")
        .args([
            "--quiet",
            "-r",
            "-s",
            "44.1",
            "--bitwidth",
            "16",
            "--signed",
            "--little-endian",
        ])
        .args(["-m", "j", "-b", "128", "-t"])
        .arg(&raw)
        .arg(&mp3)
        .status();
    match lame {
        Ok(status) if status.success() => {}
        other => {
            assert!(
                std::env::var_os("CI").is_none(),
                "lame is needed (.ci/setup installs it): {other:?}"
            );
            panic!("install lame to run this test: {other:?}");
        }
    }
    let data = std::fs::read(&mp3).unwrap();
    let _ = std::fs::remove_file(raw);
    data
}

/// An endless MP3 stream over HTTP on 127.0.0.1, paced at its bitrate
/// (16 000 bytes a second) after a one-second head start, as Icecast sends.
struct Radio {
    url: String,
    stop: Arc<AtomicBool>,
}

impl Radio {
    fn start(mp3: Vec<u8>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/stream.mp3", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let mp3 = Arc::new(mp3);
        std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        let mp3 = Arc::clone(&mp3);
                        let stopping = Arc::clone(&stopping);
                        std::thread::spawn(move || {
                            let _ = conn.set_nonblocking(false);
                            let mut request = [0u8; 2048];
                            let _ = std::io::Read::read(&mut conn, &mut request);
                            let head = "HTTP/1.0 200 OK\r\ncontent-type: audio/mpeg\r\nicy-name: test\r\n\r\n";
                            if conn.write_all(head.as_bytes()).is_err() {
                                return;
                            }
                            let start = Instant::now();
                            let mut sent = 0usize;
                            while !stopping.load(Ordering::Relaxed) {
                                let allowed =
                                    16_000 + (start.elapsed().as_secs_f64() * 16_000.0) as usize;
                                if sent < allowed {
                                    let at = sent % mp3.len();
                                    let end = (at + 2_000).min(mp3.len());
                                    if conn.write_all(&mp3[at..end]).is_err() {
                                        return;
                                    }
                                    sent += end - at;
                                } else {
                                    std::thread::sleep(Duration::from_millis(20));
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Self { url, stop }
    }
}

impl Drop for Radio {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn cli(node: &Node, args: &[&str]) -> Value {
    let mut all: Vec<&str> = vec!["source"];
    all.extend_from_slice(args);
    let http = node.http.to_string();
    all.extend_from_slice(&["--http", &http, "--json"]);
    let out = crate::util::firefly(&all);
    assert!(
        out.status.success(),
        "firefly {all:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `count` nodes holding no tracks, each dialing the earlier ones, once
/// they are one settled swarm.
fn settled_nodes_without_tracks(root: &Path, count: usize) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for index in 0..count {
        let bootstrap: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
        nodes.push(spawn_node(
            root,
            &NodeSpec {
                index,
                tracks: &[],
                bootstrap: &bootstrap,
                reuse: None,
                extra: &[],
            },
        ));
    }
    assert!(wait_settled(&nodes, Duration::from_secs(30)));
    nodes
}

#[test]
fn an_mp3_radio_plays_in_step_and_a_late_joiner_is_in_step_within_a_second() {
    let _swarm = one_swarm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let radio = Radio::start(make_mp3(tmp.path(), 8));
    let mut nodes = settled_nodes_without_tracks(tmp.path(), 2);

    // Added and played through the CLI.
    let added = cli(&nodes[0], &["add", "radio", &format!("url:{}", radio.url)]);
    assert_eq!(added["kind"], "url");
    let flowing = wait_until(Duration::from_secs(10), || {
        cli(&nodes[1], &["list"])["sources"]
            .as_array()
            .is_some_and(|s| {
                s.iter()
                    .any(|s| s["name"] == "radio" && s["flowing"] == true)
            })
    });
    assert!(flowing, "the radio is not flowing: {}", sources(&nodes[1]));
    let played = cli(&nodes[1], &["play", "radio"]);
    assert_eq!(played["state"], "playing", "{played}");

    // A third node joins mid-stream.
    std::thread::sleep(Duration::from_secs(2));
    let bootstrap: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    nodes.push(spawn_node(
        tmp.path(),
        &NodeSpec {
            index: 2,
            tracks: &[],
            bootstrap: &bootstrap,
            reuse: None,
            extra: &[],
        },
    ));
    let joined = wait_until(Duration::from_secs(30), || {
        sources(&nodes[2])["live"]["playing"]["name"] == "radio"
            && !crate::playback::flashes(&nodes[2]).is_empty()
    });
    assert!(joined, "the late node never played the radio");
    let first = crate::playback::flashes(&nodes[2])[0].1;
    std::thread::sleep(Duration::from_secs(4));
    let refs: Vec<&Node> = nodes.iter().collect();
    let seen = recent_flashes(&refs, 1_000);
    // The joiner, from one second after its first sound on, against node 0.
    let settled: Vec<(f64, i64)> = seen[2]
        .iter()
        .copied()
        .filter(|&(_, t)| t >= first + 1_000_000)
        .collect();
    let joiner = crate::playback::offsets(&settled, &seen[0]);
    let big: Vec<(usize, f64)> = joiner
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, o)| o.abs() > 1_000.0)
        .collect();
    println!(
        "joiner offsets over 1 ms (index of {}, µs): {big:?}",
        joiner.len()
    );
    assert!(
        joiner.len() > 50,
        "too few joiner flashes: {}",
        joiner.len()
    );
    let joiner_p99 = p99(joiner);
    println!("late joiner from 1 s after its first sound: p99 {joiner_p99:.0} µs");
    assert!(joiner_p99 <= 1_000.0, "late joiner p99 {joiner_p99} µs");
    let recent: Vec<Vec<(f64, i64)>> = seen
        .iter()
        .map(|f| f[f.len().saturating_sub(200)..].to_vec())
        .collect();
    let spread = p99(pairwise_offsets(&recent));
    println!("mp3 radio spread p99: {spread:.0} µs");
    assert!(spread <= 1_000.0, "spread p99 {spread} µs");

    // Removing the source stops the members and says why.
    cli(&nodes[0], &["rm", "radio"]);
    let stopped = wait_until(Duration::from_secs(2), || {
        nodes
            .iter()
            .all(|n| sources(n)["live"]["ended"].is_string())
    });
    assert!(
        stopped,
        "members still play a removed source: {:?}",
        nodes
            .iter()
            .map(|n| sources(n)["live"].clone())
            .collect::<Vec<_>>()
    );
}

/// `firefly source play --zone`: a node of one zone starts a radio in
/// another; that zone's node plays it, the sender's zone does not, and an
/// unknown zone is refused.
#[test]
fn a_source_played_for_another_zone_plays_there_only() {
    let _swarm = one_swarm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let radio = Radio::start(make_mp3(tmp.path(), 8));
    let nodes = settled_nodes_without_tracks(tmp.path(), 3);
    crate::zones::make_zone(&nodes, &nodes[0], "Kitchen", &[&nodes[2]]);
    cli(&nodes[0], &["add", "radio", &format!("url:{}", radio.url)]);
    let flowing = wait_until(Duration::from_secs(10), || {
        sources(&nodes[0])["sources"].as_array().is_some_and(|s| {
            s.iter()
                .any(|s| s["name"] == "radio" && s["flowing"] == true)
        })
    });
    assert!(flowing, "the radio is not flowing: {}", sources(&nodes[0]));

    // Unknown zone: refused, nothing plays.
    let http_arg = nodes[0].http.to_string();
    let out = crate::util::firefly(&[
        "source", "play", "radio", "--zone", "Attic", "--http", &http_arg,
    ]);
    assert!(!out.status.success(), "an unknown zone was accepted");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("Attic"),
        "the refusal does not name the zone: {said}"
    );

    let played = cli(&nodes[0], &["play", "radio", "--zone", "Kitchen"]);
    assert_eq!(played["state"], "playing", "{played}");
    let kitchen = wait_until(Duration::from_secs(10), || {
        sources(&nodes[2])["live"]["playing"]["name"] == "radio"
            && !crate::playback::flashes(&nodes[2]).is_empty()
    });
    assert!(
        kitchen,
        "the kitchen never played the radio: {}",
        sources(&nodes[2])
    );
    std::thread::sleep(Duration::from_secs(1));
    for node in &nodes[..2] {
        let (_, state) = http(node.http, "GET", "/api/state", None);
        assert_ne!(
            state["playback"]["state"], "playing",
            "a node of the sender's zone plays: {state}"
        );
        assert!(
            crate::playback::flashes(node).is_empty(),
            "a node of the sender's zone sounds"
        );
    }
}

#[test]
fn loss_on_one_link_conceals_blocks_without_shifting_the_rest() {
    use firefly_faultproxy::{FaultProxy, Faults, LinkFaults};
    let _swarm = one_swarm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("clicks.fifo");
    mkfifo(&fifo);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let source = format!("clicks=pipe:{}", fifo.display());
    let origin = spawn_node(
        tmp.path(),
        &NodeSpec {
            index: 0,
            tracks: &[],
            bootstrap: &[],
            reuse: None,
            extra: &["--source", &source],
        },
    );
    let clean = spawn_node(
        tmp.path(),
        &NodeSpec {
            index: 1,
            tracks: &[],
            bootstrap: std::slice::from_ref(&origin.addr),
            reuse: None,
            extra: &[],
        },
    );
    // Node 2 reaches the origin only through the proxy.
    let target: std::net::SocketAddr = format!("127.0.0.1:{}", origin.port).parse().unwrap();
    let proxy = runtime
        .block_on(FaultProxy::start(target, Faults::default(), 7))
        .expect("start a fault proxy");
    let through_proxy = format!(
        "/ip4/127.0.0.1/tcp/{}/p2p/{}",
        proxy.local_addr().port(),
        origin.peer_id
    );
    let lossy = spawn_node(
        tmp.path(),
        &NodeSpec {
            index: 2,
            tracks: &[],
            bootstrap: &[through_proxy, clean.addr.clone()],
            reuse: None,
            extra: &[],
        },
    );
    let nodes = vec![origin, clean, lossy];
    assert!(wait_settled(&nodes, Duration::from_secs(30)));
    let mut feeder = Feeder::start(fifo.clone());
    let flowing = wait_until(Duration::from_secs(10), || {
        sources(&nodes[2])["sources"].as_array().is_some_and(|s| {
            s.iter()
                .any(|s| s["name"] == "clicks" && s["flowing"] == true)
        })
    });
    assert!(flowing);
    let (status, body) = http(
        nodes[0].http,
        "POST",
        "/api/sources/play",
        Some(json!({ "name": "clicks" })),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        wait_until(Duration::from_secs(30), || nodes
            .iter()
            .all(|n| crate::playback::flashes(n).len() > 120)),
        "not every node plays the source"
    );

    // 3 % of the segments from the origin to node 2 arrive 500 ms late (a
    // retransmission), holding up what follows them, as on TCP.
    proxy.set_faults(Faults::both(
        LinkFaults::default().loss(0.03, Duration::from_millis(500)),
    ));
    std::thread::sleep(Duration::from_secs(6));
    proxy.set_faults(Faults::default());
    std::thread::sleep(Duration::from_secs(1));
    let lossy_live = sources(&nodes[2])["live"].clone();
    let clean_live = sources(&nodes[1])["live"].clone();
    println!("lossy member: {lossy_live}; clean member: {clean_live}");
    let concealed = lossy_live["concealed"].as_u64().unwrap_or(0);
    assert!(concealed > 0, "nothing was concealed: {lossy_live}");
    assert!(
        lossy_live["ended"].is_null(),
        "the stream ended: {lossy_live}"
    );

    // What it played is in step with the clean member: nothing shifted.
    let refs: Vec<&Node> = nodes[1..].iter().collect();
    let seen = recent_flashes(&refs, 600);
    let spread = p99(pairwise_offsets(&seen));
    println!("spread p99 after loss: {spread:.0} µs ({concealed} blocks concealed)");
    assert!(spread <= 1_000.0, "spread p99 {spread} µs");
    feeder.stop();
}

#[test]
fn the_live_panel_shows_the_level_and_plays_a_source_when_clicked() {
    use crate::ui::{chromium, json_true};
    use crate::ui_cdp::Browser;
    let Some(binary) = chromium() else {
        return;
    };
    let _swarm = one_swarm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("tone.fifo");
    mkfifo(&fifo);
    let source = format!("tone=pipe:{}", fifo.display());
    let node = spawn_node(
        tmp.path(),
        &NodeSpec {
            index: 0,
            tracks: &[],
            bootstrap: &[],
            reuse: None,
            extra: &["--source", &source],
        },
    );
    // A 440 Hz tone at half scale.
    let mut feeder = Feeder::start_with(fifo.clone(), |f| {
        ((f as f64 / f64::from(RATE) * 440.0 * std::f64::consts::TAU).sin() * 16_000.0) as i16
    });
    let mut browser = Browser::start(binary, 1280, 1000);
    let page = browser.open(&format!("http://{}", node.http));
    let row = "#sources li[data-name=\"tone\"]";
    let level = format!("(document.querySelector('{row} meter')?.value ?? 0) > 0.4");
    assert_eq!(
        browser.wait(&page, &level, Duration::from_secs(20)),
        json_true(),
        "the level meter never showed the tone"
    );
    browser.click(&page, &format!("{row} .play-live"));
    let playing = wait_until(Duration::from_secs(10), || {
        sources(&node)["live"]["playing"]["name"] == "tone"
    });
    assert!(
        playing,
        "the click did not play the source: {}",
        sources(&node)
    );
    assert_eq!(
        browser.wait(
            &page,
            "document.getElementById('live-status').textContent.includes('Playing live: tone')",
            Duration::from_secs(10)
        ),
        json_true()
    );
    feeder.stop();
}
