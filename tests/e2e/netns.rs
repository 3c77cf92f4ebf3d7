//! Real-network tests in Linux network namespaces: mDNS discovery on a
//! bridged LAN, bridging two unrouted networks through a relay, and a
//! private swarm keeping a stranger out.
//!
//! Each test builds its own namespaces and veth pairs (created inside the
//! namespaces, so nothing is added to the host's network) and deletes them
//! in a `Drop` guard, also when the test fails. The tests need root; without
//! it they print that they were skipped and pass — except under CI (`CI`
//! set), where a missing root or tool fails the test: CI runs as root and
//! `.ci/setup` installs every tool they use.

use crate::util::{Running, firefly_bin};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Whether this process can create network namespaces.
pub(crate) fn can_use_netns(test: &str) -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false);
    let ip = Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !(root && ip) {
        skip_outside_ci(test, "needs root and iproute2 to create network namespaces");
        return false;
    }
    true
}

/// Says why `test` is skipped; under CI (`CI` set) a missing root or tool
/// is a failure instead, so that no test passes there without running.
pub(crate) fn skip_outside_ci(test: &str, why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} cannot run under CI: it {why} (.ci/setup installs the tools; CI runs as root)"
    );
    println!("{test}: skipped ({why})");
}

/// Whether `tool --version` runs.
pub(crate) fn has_tool(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

pub(crate) fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A set of namespaces owned by one test: processes started in them are
/// killed and the namespaces (with their veths and bridge) deleted on drop.
pub(crate) struct Net {
    prefix: String,
    namespaces: Vec<String>,
    procs: Vec<Running>,
}

impl Net {
    pub(crate) fn new() -> Net {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Net {
            prefix: format!("ff{}x{n}", std::process::id()),
            namespaces: Vec::new(),
            procs: Vec::new(),
        }
    }

    /// The full name of this test's namespace `short` (e.g. `lan`).
    pub(crate) fn name(&self, short: &str) -> String {
        format!("{}{short}", self.prefix)
    }

    /// Creates namespace `name` (with loopback up) and returns its full name.
    pub(crate) fn add(&mut self, name: &str) -> String {
        let ns = format!("{}{name}", self.prefix);
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// Links `a` and `b` with a veth pair: `a_if` in `a` with `a_addr`,
    /// `b_if` in `b` with `b_addr` (CIDR, or "" for no address).
    fn link(&self, a: &str, a_if: &str, a_addr: &str, b: &str, b_if: &str, b_addr: &str) {
        ip(&[
            "-n", a, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b,
        ]);
        for (ns, ifname, addr) in [(a, a_if, a_addr), (b, b_if, b_addr)] {
            if !addr.is_empty() {
                ip(&["-n", ns, "addr", "add", addr, "dev", ifname]);
            }
            ip(&["-n", ns, "link", "set", ifname, "up"]);
        }
    }

    /// Runs `firefly ARGS --events json` (`up` or `relay`) inside `ns`;
    /// killed when the `Net` is dropped.
    pub(crate) fn run(&mut self, ns: &str, label: &str, args: &[&str]) -> usize {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", ns, firefly_bin()])
            .args(args)
            .args(["--events", "json"]);
        // FIREFLY_E2E_LOG=debug shows what the nodes do when a test fails;
        // FIREFLY_E2E_LOG_DIR=DIR writes each node's log to DIR/<label>.log.
        let level = std::env::var("FIREFLY_E2E_LOG").unwrap_or_else(|_| "warn".into());
        command.env("RUST_LOG", level);
        if let Ok(dir) = std::env::var("FIREFLY_E2E_LOG_DIR") {
            let file = std::fs::File::create(format!("{dir}/{label}.log"))
                .expect("FIREFLY_E2E_LOG_DIR is a writable directory");
            command.stderr(file);
        }
        self.procs.push(Running::spawn(label, command));
        self.procs.len() - 1
    }

    pub(crate) fn proc(&self, index: usize) -> &Running {
        &self.procs[index]
    }

    /// Asserts that process `index` reports `other` joined within `limit`.
    fn assert_joined(&self, index: usize, other: &str, limit: Duration) {
        let running = self.proc(index);
        let joined = running.wait_event_where("joined", limit, |e| e["name"] == other);
        assert!(
            joined.is_some(),
            "{} never saw {other}: {:?}",
            running.label(),
            running.lines()
        );
    }

    /// Runs `firefly status --json` inside `ns` and parses it.
    fn status(&self, ns: &str) -> serde_json::Value {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, firefly_bin(), "status", "--json"])
            .output()
            .expect("run firefly status");
        assert!(
            out.status.success(),
            "firefly status in {ns}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status is JSON")
    }

    /// A bridged LAN: namespace `lan` holds bridge `br0`; each node gets
    /// `eth0` with 10.77.0.(i+1)/24 and a multicast route for mDNS.
    pub(crate) fn lan(&mut self, nodes: &[&str]) -> Vec<String> {
        let lan = self.add("lan");
        ip(&["-n", &lan, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &lan, "link", "set", "br0", "up"]);
        let mut made = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let ns = self.add(node);
            let port = format!("p{i}");
            self.link(
                &lan,
                &port,
                "",
                &ns,
                "eth0",
                &format!("10.77.0.{}/24", i + 1),
            );
            ip(&["-n", &lan, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"]);
            made.push(ns);
        }
        made
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Processes first: a namespace with a process in it lingers.
        self.procs.clear();
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn data_dirs(root: &Path, name: &str) -> (String, String) {
    let data = root.join(name);
    let music = data.join("music");
    std::fs::create_dir_all(&music).unwrap();
    (data.display().to_string(), music.display().to_string())
}

fn up_args<'a>(data: &'a str, music: &'a str, name: &'a str) -> Vec<&'a str> {
    vec!["up", "--data-dir", data, "--music", music, "--name", name]
}

fn member_names(status: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = status["members"]
        .as_array()
        .map(|members| {
            members
                .iter()
                .filter_map(|m| m["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn three_nodes_on_a_lan_find_each_other_with_no_flags() {
    let _swarm = crate::playback::one_swarm_at_a_time();
    if !can_use_netns("three_nodes_on_a_lan_find_each_other_with_no_flags") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut net = Net::new();
    let ns = net.lan(&["n1", "n2", "n3"]);
    let mut procs = Vec::new();
    for (i, name) in ["one", "two"].iter().enumerate() {
        let (data, music) = data_dirs(tmp.path(), name);
        procs.push(net.run(&ns[i], name, &up_args(&data, &music, name)));
    }
    for (i, other) in [(0, "two"), (1, "one")] {
        net.assert_joined(procs[i], other, Duration::from_secs(15));
    }

    // A newcomer sees both within a couple of seconds of starting.
    let (data, music) = data_dirs(tmp.path(), "three");
    let started = Instant::now();
    let third = net.run(&ns[2], "three", &up_args(&data, &music, "three"));
    for other in ["one", "two"] {
        net.assert_joined(third, other, Duration::from_secs(15));
    }
    let seen_after = started.elapsed();
    println!("newcomer saw both LAN peers {seen_after:?} after starting (process start included)");
    // The goal is 2 s; the bound leaves room for a loaded CI machine but
    // still catches discovery falling back to slow mDNS intervals.
    assert!(seen_after < Duration::from_secs(4), "took {seen_after:?}");

    for (i, expected) in [
        (0, vec!["three", "two"]),
        (1, vec!["one", "three"]),
        (2, vec!["one", "two"]),
    ] {
        let mut names = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            names = member_names(&net.status(&ns[i]));
            if names == expected {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(names, expected, "members seen in {}", ns[i]);
    }
}

#[test]
fn two_unrouted_networks_meet_through_a_relay() {
    let _swarm = crate::playback::one_swarm_at_a_time();
    if !can_use_netns("two_unrouted_networks_meet_through_a_relay") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut net = Net::new();
    let relay_ns = net.add("relay");
    let a_ns = net.add("a");
    let b_ns = net.add("b");
    // The relay is on both networks; A and B share none and nothing routes
    // between them (forwarding is off in a new namespace).
    net.link(
        &relay_ns,
        "ra",
        "10.78.1.1/24",
        &a_ns,
        "eth0",
        "10.78.1.2/24",
    );
    net.link(
        &relay_ns,
        "rb",
        "10.78.2.1/24",
        &b_ns,
        "eth0",
        "10.78.2.2/24",
    );
    let ping = Command::new("ip")
        .args(["netns", "exec", &a_ns, "ping", "-c1", "-W1", "10.78.2.2"])
        .output();
    if let Ok(out) = ping {
        assert!(!out.status.success(), "A must not reach B directly");
    }

    let relay_dir = tmp.path().join("relay");
    let relay_dir = relay_dir.display().to_string();
    let relay = net.run(
        &relay_ns,
        "relay",
        &[
            "relay",
            "--data-dir",
            &relay_dir,
            "--listen",
            "/ip4/0.0.0.0/tcp/4001",
        ],
    );
    let relay_id = net
        .proc(relay)
        .wait_event("started", Duration::from_secs(15))
        .expect("relay prints its peer id")["peer_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        net.proc(relay)
            .wait_event("listening", Duration::from_secs(15))
            .is_some(),
        "the relay never listened"
    );

    let (a_data, a_music) = data_dirs(tmp.path(), "alice");
    let a_relay = format!("/ip4/10.78.1.1/tcp/4001/p2p/{relay_id}");
    let mut args = up_args(&a_data, &a_music, "alice");
    args.extend(["--relay", &a_relay]);
    let a = net.run(&a_ns, "alice", &args);
    let a_id = net
        .proc(a)
        .wait_event("started", Duration::from_secs(15))
        .expect("alice prints her peer id")["peer_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        net.proc(a)
            .wait_event("relay_reserved", Duration::from_secs(15))
            .is_some(),
        "alice never reserved a relay slot: {:?}",
        net.proc(a).lines()
    );

    let (b_data, b_music) = data_dirs(tmp.path(), "bob");
    let b_relay = format!("/ip4/10.78.2.1/tcp/4001/p2p/{relay_id}");
    let alice_via_relay = format!("{b_relay}/p2p-circuit/p2p/{a_id}");
    let mut args = up_args(&b_data, &b_music, "bob");
    args.extend(["--relay", &b_relay, "--peer", &alice_via_relay]);
    let started = Instant::now();
    let b = net.run(&b_ns, "bob", &args);

    for (who, other) in [(a, "bob"), (b, "alice")] {
        net.assert_joined(who, other, Duration::from_secs(20));
    }
    println!(
        "bob and alice were members of each other through the relay {:?} after bob started",
        started.elapsed()
    );
    assert!(
        net.proc(relay)
            .wait_event("circuit_opened", Duration::from_secs(5))
            .is_some(),
        "the relay carried no circuit: {:?}",
        net.proc(relay).lines()
    );
    assert_eq!(member_names(&net.status(&a_ns)), vec!["bob"]);
    assert_eq!(member_names(&net.status(&b_ns)), vec!["alice"]);
}

#[test]
fn a_node_with_the_wrong_swarm_key_never_joins() {
    let _swarm = crate::playback::one_swarm_at_a_time();
    if !can_use_netns("a_node_with_the_wrong_swarm_key_never_joins") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let key = |name: &str, byte: &str| {
        let path = tmp.path().join(name);
        std::fs::write(
            &path,
            format!("/key/swarm/psk/1.0.0/\n/base16/\n{}\n", byte.repeat(32)),
        )
        .unwrap();
        path.display().to_string()
    };
    let good = key("good.key", "5a");
    let bad = key("bad.key", "a5");
    let mut net = Net::new();
    let ns = net.lan(&["k1", "k2", "k3"]);
    let mut procs = Vec::new();
    for (i, (name, key)) in [("one", &good), ("two", &good), ("stranger", &bad)]
        .into_iter()
        .enumerate()
    {
        let (data, music) = data_dirs(tmp.path(), name);
        let mut args = up_args(&data, &music, name);
        args.extend(["--swarm-key", key]);
        procs.push(net.run(&ns[i], name, &args));
    }
    net.assert_joined(procs[0], "two", Duration::from_secs(15));
    // Give the stranger several mDNS rounds and heartbeats to get in.
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        !net.proc(procs[2]).has_event("joined"),
        "the stranger joined: {:?}",
        net.proc(procs[2]).lines()
    );
    assert_eq!(member_names(&net.status(&ns[0])), vec!["two"]);
    assert_eq!(member_names(&net.status(&ns[1])), vec!["one"]);
    assert!(member_names(&net.status(&ns[2])).is_empty());
    assert!(
        net.status(&ns[2])["connected_peers"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}
