//! `firefly doctor --json` with no sound card and with a private PulseAudio
//! server's null sink (through ALSA's pulse plugin, as `tests/heard.rs`
//! plays): the sound verdict is `fail` with a fix, then `ok` with the
//! device's real latency; the other checks see the folders and the port.
//!
//! Without PulseAudio the second case says so and passes, unless `CI` is
//! set (`.ci/setup` installs it), where a missing server fails.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `firefly doctor --json` on `root`'s folders with `env`; its checks by name.
fn doctor(root: &Path, env: &[(String, String)]) -> serde_json::Map<String, serde_json::Value> {
    let port = crate::playback::free_port();
    let out = Command::new(crate::util::firefly_bin())
        .args(["doctor", "--json", "--http", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(root.join("data"))
        .arg("--music")
        .arg(root.join("music"))
        .arg("--config")
        .arg(root.join("config.toml"))
        .env("RUST_LOG", "error")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let checks: serde_json::Map<_, _> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c.clone()))
        .collect();
    // Any failure makes the exit status 1, for scripts.
    let failed = checks.values().any(|c| c["verdict"] == "fail");
    assert_eq!(out.status.success(), !failed, "{report}");
    checks
}

fn folders(root: &Path) {
    std::fs::create_dir_all(root.join("data")).unwrap();
    crate::playback::write_track(&root.join("music").join("a.wav"), 1);
    crate::playback::write_track(&root.join("music").join("sub").join("b.wav"), 1);
    std::fs::write(root.join("music").join("notes.txt"), "not audio").unwrap();
    std::fs::write(root.join("config.toml"), "name = \"doctor\"\n").unwrap();
}

fn assert_common(checks: &serde_json::Map<String, serde_json::Value>) {
    assert_eq!(
        checks["data_dir"]["verdict"], "ok",
        "{:?}",
        checks["data_dir"]
    );
    assert_eq!(checks["data_dir"]["facts"]["writable"], true);
    assert_eq!(checks["music"]["verdict"], "ok", "{:?}", checks["music"]);
    assert_eq!(checks["music"]["facts"]["tracks"], 2);
    assert_eq!(checks["port"]["verdict"], "ok", "{:?}", checks["port"]);
    // No node runs: the clock cannot be asked.
    assert_eq!(checks["clock"]["verdict"], "skip");
    assert!(checks.contains_key("mdns"));
}

#[test]
fn doctor_without_a_sound_card_fails_the_sound_check_with_a_fix() {
    let tmp = tempfile::tempdir().unwrap();
    folders(tmp.path());
    // An ALSA configuration with no devices at all: what a machine without
    // a sound card has.
    let alsa = tmp.path().join("asound.conf");
    std::fs::write(&alsa, "# no devices\n").unwrap();
    let env = [("ALSA_CONFIG_PATH".to_string(), alsa.display().to_string())];
    let checks = doctor(tmp.path(), &env);
    assert_common(&checks);
    let sound = &checks["sound"];
    assert_eq!(sound["verdict"], "fail", "{sound}");
    assert!(
        sound["fix"]
            .as_str()
            .is_some_and(|f| f.contains("--output null")),
        "{sound}"
    );
}

/// A private PulseAudio server with one null sink, killed on drop.
struct Pulse {
    child: Child,
    env: Vec<(String, String)>,
}

impl Drop for Pulse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pulse(dir: &Path) -> Option<Pulse> {
    let plugin = [
        "/usr/lib/x86_64-linux-gnu/alsa-lib/libasound_module_pcm_pulse.so",
        "/usr/lib/alsa-lib/libasound_module_pcm_pulse.so",
    ]
    .iter()
    .any(|p| Path::new(p).exists());
    let have = |p: &str| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !plugin || !have("pulseaudio") || !have("pactl") {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have PulseAudio and ALSA's pulse plugin (.ci/setup installs them)"
        );
        println!(
            "doctor: the PulseAudio case skipped (needs pulseaudio, pulseaudio-utils, libasound2-plugins)"
        );
        return None;
    }
    for sub in ["home", "run"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let socket = dir.join("run").join("native");
    std::fs::write(
        dir.join("server.pa"),
        format!(
            "load-module module-native-protocol-unix auth-anonymous=1 socket={}\n\
             load-module module-null-sink sink_name=doctor\n",
            socket.display()
        ),
    )
    .unwrap();
    let alsa = dir.join("asound.conf");
    std::fs::write(
        &alsa,
        "pcm.!default { type pulse }\nctl.!default { type pulse }\n",
    )
    .unwrap();
    let env = vec![
        (
            "PULSE_SERVER".to_string(),
            format!("unix:{}", socket.display()),
        ),
        ("ALSA_CONFIG_PATH".to_string(), alsa.display().to_string()),
        ("HOME".to_string(), dir.join("home").display().to_string()),
        (
            "XDG_RUNTIME_DIR".to_string(),
            dir.join("run").display().to_string(),
        ),
    ];
    let child = Command::new("pulseaudio")
        .args(["--system=false", "--daemonize=no", "-n", "-F"])
        .arg(dir.join("server.pa"))
        .args(["--exit-idle-time=-1"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Pulse { child, env };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = Command::new("pactl")
            .args(["list", "short", "sinks"])
            .envs(server.env.iter().map(|(k, v)| (k, v)))
            .output()
            .is_ok_and(|o| {
                o.status.success() && String::from_utf8_lossy(&o.stdout).contains("doctor")
            });
        if ready {
            // A sound server runs at real-time priority on a desktop (rtkit),
            // above the node's audio threads; so does this private one, or a
            // loaded machine starves it under them and the check sees the
            // device go away (`bench heard` does the same).
            let _ = Command::new("chrt")
                .args(["--all-tasks", "--rr", "--pid", "5"])
                .arg(server.child.id().to_string())
                .status();
            return Some(server);
        }
        assert!(Instant::now() < deadline, "pulseaudio did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn doctor_with_a_pulseaudio_null_sink_passes_the_sound_check_with_its_latency() {
    // Real-time audio threads of another test's swarm starved this test's
    // sound server once: one at a time.
    let _swarm = crate::playback::one_swarm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    folders(tmp.path());
    let Some(server) = pulse(&tmp.path().join("pulse")) else {
        return;
    };
    let checks = doctor(tmp.path(), &server.env);
    assert_common(&checks);
    let sound = &checks["sound"];
    assert_eq!(sound["verdict"], "ok", "{sound}");
    assert_eq!(sound["facts"]["timing"], "reported", "{sound}");
    let delay = sound["facts"]["delay_us"].as_i64().unwrap();
    assert!(delay > 0 && delay < 2_000_000, "{sound}");
    assert!(sound["fix"].is_null());
}

/// `firefly doctor --json`'s firewall check, run inside namespace `ns`.
fn firewall_in(ns: &str, root: &Path) -> serde_json::Value {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(crate::util::firefly_bin())
        .args(["doctor", "--json", "--http", "127.0.0.1:18099"])
        .arg("--data-dir")
        .arg(root.join("data"))
        .arg("--music")
        .arg(root.join("music"))
        .arg("--config")
        .arg(root.join("config.toml"))
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "firewall")
        .cloned()
        .expect("no firewall check")
}

fn nft(ns: &str, rules: &str) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), rules.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "nft refused {rules}");
}

/// In a network namespace of its own (its rules touch nothing else): no
/// firewall is fine; an input chain that drops by default warns and names
/// mDNS and the swarm ports; once rules accept them, it is fine again.
#[test]
fn doctor_reads_a_firewall_that_drops_what_a_node_needs() {
    let test = "doctor_reads_a_firewall_that_drops_what_a_node_needs";
    if !crate::netns::can_use_netns(test) {
        return;
    }
    if !crate::netns::has_tool("nft") {
        crate::netns::skip_outside_ci(test, "needs nftables' nft");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    folders(tmp.path());
    std::fs::write(
        tmp.path().join("config.toml"),
        "name = \"doctor\"\nlisten = [\"/ip4/0.0.0.0/tcp/4001\", \"/ip4/0.0.0.0/udp/4001/quic-v1\"]\n",
    )
    .unwrap();
    let mut net = crate::netns::Net::new();
    let ns = net.add("fw");

    let open = firewall_in(&ns, tmp.path());
    assert_eq!(open["verdict"], "ok", "{open}");

    nft(
        &ns,
        "table inet guard {\n chain input { type filter hook input priority 0; policy drop;\n  \
         ct state established,related accept\n  iif lo accept\n }\n}\n",
    );
    let closed = firewall_in(&ns, tmp.path());
    assert_eq!(closed["verdict"], "warn", "{closed}");
    assert_eq!(
        closed["facts"]["dropped"],
        serde_json::json!(["tcp/4001", "udp/4001", "udp/5353"]),
        "{closed}"
    );
    assert!(
        closed["fix"].as_str().is_some_and(|f| f.contains("5353")),
        "{closed}"
    );

    nft(
        &ns,
        "add rule inet guard input udp dport 5353 accept\n\
         add rule inet guard input meta l4proto { tcp, udp } th dport 4001 accept\n",
    );
    let allowed = firewall_in(&ns, tmp.path());
    assert_eq!(allowed["verdict"], "ok", "{allowed}");
}
