//! `firefly bench install`: from the Debian package to a node the swarm
//! sees, the way a user gets there: one `apt-get install ./firefly.deb` on a
//! machine that runs systemd, and nothing else (no configuration: mDNS).
//!
//! The "fresh machine" is this machine's own system booted in a throwaway
//! container: an overlay whose lower layer is `/` and whose writes go to a
//! scratch folder, booted by `systemd-nspawn` with systemd as its PID 1 and
//! sharing this machine's network. An observer node started here (mDNS on,
//! `--events json`) stamps the moment the container's node joins. Each run
//! boots a new container, so every install is a first install; the
//! container is powered off, unmounted and deleted after every run.
//!
//! Needs root, `systemd-nspawn` (Debian: `systemd-container`), overlayfs,
//! and the API port the package's config uses (8081) free on this machine,
//! since the container shares its network.

use anyhow::{Context, bail};
use serde::Serialize;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::node::announce::NodeEvent;

/// The goal (issue 18): an installed package is a visible node within this.
const GOAL: Duration = Duration::from_secs(5);
/// How long the container may take to boot.
const BOOT_LIMIT: Duration = Duration::from_secs(90);
/// How long after the install command the node may take to be seen.
const VISIBLE_LIMIT: Duration = Duration::from_secs(60);
/// The API address of the packaged config (must be free: shared network).
const PACKAGED_API: &str = "127.0.0.1:8081";

/// Arguments of `firefly bench install`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The package to install (`cargo deb -p firefly` writes it under target/debian/).
    #[arg(long)]
    deb: PathBuf,
    /// Fresh containers to install into, one after another.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// One install, ms from the start of the install command.
#[derive(Debug, Serialize)]
struct Run {
    /// The install command returned (unpacked, user made, service started).
    command_ms: f64,
    /// systemd started the node's process (its `ExecMainStartTimestamp`).
    service_started_ms: f64,
    /// The observer saw the new node join the swarm.
    visible_ms: f64,
}

/// What the benchmark measured.
#[derive(Debug, Serialize)]
struct Report {
    deb: String,
    runs: Vec<Run>,
    visible_p50_ms: f64,
    visible_max_ms: f64,
    command_p50_ms: f64,
    /// The node's own part: its process started → the observer saw it.
    started_to_visible_p50_ms: f64,
    started_to_visible_max_ms: f64,
    goal_ms: f64,
    goal_met: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let deb = args
        .deb
        .canonicalize()
        .with_context(|| format!("cannot read the package {}", args.deb.display()))?;
    preflight()?;
    let scratch = Scratch::new()?;
    let observer = Observer::start(&scratch.0.join("observer"))?;
    let mut runs = Vec::new();
    for run in 0..args.runs {
        let result = install_once(&scratch.0.join(format!("run{run}")), &deb, run, &observer)?;
        if !args.json {
            println!(
                "run {run}: install command {:.0} ms, service started at {:.0} ms, node visible at \
                 {:.0} ms (ms after the command began)",
                result.command_ms, result.service_started_ms, result.visible_ms
            );
        }
        runs.push(result);
    }
    let visible = sorted(runs.iter().map(|r| r.visible_ms));
    let command = sorted(runs.iter().map(|r| r.command_ms));
    let own = sorted(runs.iter().map(|r| r.visible_ms - r.service_started_ms));
    let visible_max_ms = visible.last().copied().unwrap_or(f64::NAN);
    let report = Report {
        deb: deb.display().to_string(),
        visible_p50_ms: visible[visible.len() / 2],
        command_p50_ms: command[command.len() / 2],
        started_to_visible_p50_ms: own[own.len() / 2],
        started_to_visible_max_ms: own.last().copied().unwrap_or(f64::NAN),
        visible_max_ms,
        goal_ms: GOAL.as_secs_f64() * 1000.0,
        goal_met: visible_max_ms <= GOAL.as_secs_f64() * 1000.0,
        runs,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "package → visible node ({} fresh containers): p50 {:.0} ms, max {:.0} ms \
             (goal ≤ {:.0} ms: {}); the install command alone p50 {:.0} ms; the node's own part \
             (process started → visible) p50 {:.0} ms, max {:.0} ms",
            report.runs.len(),
            report.visible_p50_ms,
            report.visible_max_ms,
            report.goal_ms,
            if report.goal_met { "met" } else { "NOT met" },
            report.command_p50_ms,
            report.started_to_visible_p50_ms,
            report.started_to_visible_max_ms,
        );
    }
    Ok(())
}

/// Checks what the benchmark needs, with one line saying what is missing.
fn preflight() -> anyhow::Result<()> {
    let tool = |program: &str, package: &str| -> anyhow::Result<()> {
        let found = Command::new(program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if found {
            Ok(())
        } else {
            bail!("`{program}` is needed (Debian package `{package}`)")
        }
    };
    tool("systemd-nspawn", "systemd-container")?;
    tool("nsenter", "util-linux")?;
    let uid = Command::new("id").arg("-u").output()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        bail!("booting a container and mounting its root needs root: run it with sudo");
    }
    if TcpListener::bind(PACKAGED_API).is_err() {
        bail!(
            "{PACKAGED_API} is in use: the container shares this machine's network and its node \
             serves its API there; stop what listens on it"
        );
    }
    Ok(())
}

/// One fresh container: boot, install, time, tear down.
fn install_once(dir: &Path, deb: &Path, run: u32, observer: &Observer) -> anyhow::Result<Run> {
    let host = format!("ffbench-{}-{run}", std::process::id());
    let container = Container::boot(dir, &host)?;
    std::fs::copy(deb, container.root.join("root/firefly.deb"))
        .context("cannot copy the package into the container")?;
    container.wait_booted()?;
    observer.drain();
    let began = Instant::now();
    let began_wall = chrono::Utc::now();
    let install = container
        .exec(&[
            "env",
            "DEBIAN_FRONTEND=noninteractive",
            "apt-get",
            "install",
            "-y",
            "/root/firefly.deb",
        ])
        .output()
        .context("cannot run apt-get in the container")?;
    let command = began.elapsed();
    if !install.status.success() {
        bail!(
            "apt-get install failed in the container: {}",
            String::from_utf8_lossy(&install.stderr).trim()
        );
    }
    let seen = observer
        .joined(&host, began + VISIBLE_LIMIT)
        .with_context(|| {
            let status = container
                .exec(&["systemctl", "status", "firefly", "--no-pager"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            format!(
                "the observer did not see the node {host} within {VISIBLE_LIMIT:?}; \
                 its service:\n{status}"
            )
        })?;
    let started = container.service_started()?;
    Ok(Run {
        command_ms: ms(command),
        service_started_ms: (started - began_wall)
            .num_microseconds()
            .unwrap_or(i64::MAX) as f64
            / 1000.0,
        visible_ms: ms(seen.saturating_duration_since(began)),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn sorted(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values
}

/// A booted throwaway system: an overlay of `/` booted by `systemd-nspawn`.
/// Dropping it powers the container off, then (its `_mount` field) unmounts
/// the overlay and deletes the written layer.
struct Container {
    /// The overlay's mount point (the container's `/`).
    root: PathBuf,
    nspawn: Child,
    /// The container's PID 1 as seen from here.
    init: u32,
    _mount: Unmount,
}

impl Container {
    fn boot(dir: &Path, host: &str) -> anyhow::Result<Self> {
        // The written layer goes to memory when there is a tmpfs for it (it
        // must not lie inside the lower layer, `/`, anyway).
        let layers = if Path::new("/dev/shm").is_dir() {
            PathBuf::from(format!("/dev/shm/firefly-bench-{host}"))
        } else {
            dir.join("layers")
        };
        let root = dir.join("root");
        for d in [layers.join("upper"), layers.join("work"), root.clone()] {
            std::fs::create_dir_all(&d)
                .with_context(|| format!("cannot create {}", d.display()))?;
        }
        let options = format!(
            "lowerdir=/,upperdir={},workdir={}",
            layers.join("upper").display(),
            layers.join("work").display()
        );
        let mounted = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &options])
            .arg(&root)
            .output()
            .context("cannot run mount")?;
        if !mounted.status.success() {
            let _ = std::fs::remove_dir_all(&layers);
            bail!(
                "cannot mount the container's overlay root: {}",
                String::from_utf8_lossy(&mounted.stderr).trim()
            );
        }
        let mount = Unmount {
            root: root.clone(),
            layers,
        };
        // The node's name is the host name, which systemd takes from the
        // root's /etc/hostname over nspawn's.
        std::fs::write(root.join("etc/hostname"), format!("{host}\n"))
            .context("cannot name the container")?;
        let mut nspawn = Command::new("systemd-nspawn")
            .arg("-D")
            .arg(&root)
            .args([
                &format!("--machine={host}"),
                &format!("--hostname={host}"),
                "--register=no",
                "--link-journal=no",
                "--keep-unit",
                "--boot",
                "--console=pipe",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run systemd-nspawn")?;
        match find_init(nspawn.id()) {
            Ok(init) => Ok(Self {
                root,
                nspawn,
                init,
                _mount: mount,
            }),
            Err(err) => {
                let _ = nspawn.kill();
                let said = nspawn
                    .wait_with_output()
                    .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
                    .unwrap_or_default();
                drop(mount);
                Err(err.context(format!("systemd-nspawn said: {said}")))
            }
        }
    }

    /// A command run inside the container (all its namespaces).
    fn exec(&self, args: &[&str]) -> Command {
        let mut command = Command::new("nsenter");
        command
            .args(["-t", &self.init.to_string(), "-a", "--"])
            .args(args)
            .stdin(Stdio::null());
        command
    }

    /// When systemd started the node's process, to the µs (the container
    /// shares this machine's kernel, so its wall clock is this one).
    fn service_started(&self) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
        let out = self
            .exec(&[
                "systemctl",
                "show",
                "firefly",
                "--property=ExecMainStartTimestamp",
                "--timestamp=us+utc",
            ])
            .output()
            .context("cannot ask the container's systemd")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let value = text
            .trim()
            .strip_prefix("ExecMainStartTimestamp=")
            .with_context(|| format!("systemctl show said {text:?}"))?;
        // "Sun 2026-12-06 10:53:13.726387 UTC"
        let stamp = value
            .split_whitespace()
            .skip(1)
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let naive = chrono::NaiveDateTime::parse_from_str(&stamp, "%Y-%m-%d %H:%M:%S%.f")
            .with_context(|| format!("cannot read the service's start time {value:?}"))?;
        Ok(naive.and_utc())
    }

    fn wait_booted(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + BOOT_LIMIT;
        while Instant::now() < deadline {
            let state = self
                .exec(&["systemctl", "is-system-running"])
                .output()
                .context("cannot ask the container's systemd")?;
            match String::from_utf8_lossy(&state.stdout).trim() {
                "running" | "degraded" => return Ok(()),
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
        bail!("the container did not finish booting within {BOOT_LIMIT:?}")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.exec(&["systemctl", "poweroff"]).output();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.nspawn.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = self.nspawn.kill();
                    let _ = self.nspawn.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        // `self._mount` drops next: it unmounts and deletes the layer.
    }
}

/// Unmounts an overlay root and deletes its written layer when dropped.
struct Unmount {
    root: PathBuf,
    layers: PathBuf,
}

impl Drop for Unmount {
    fn drop(&mut self) {
        for _ in 0..50 {
            let done = Command::new("umount")
                .arg(&self.root)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if done {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        if let Err(err) = std::fs::remove_dir_all(&self.layers) {
            tracing::warn!(path = %self.layers.display(), %err, "overlay layer not removed");
        }
    }
}

/// The container's PID 1: the `systemd` descendant of `nspawn`.
fn find_init(nspawn: u32) -> anyhow::Result<u32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let mut frontier = vec![nspawn];
        while let Some(pid) = frontier.pop() {
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            for child in children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
            {
                let comm =
                    std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
                if comm.trim() == "systemd" {
                    return Ok(child);
                }
                frontier.push(child);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("the container's systemd did not start")
}

/// A node on this machine, mDNS on, whose `--events json` says who joins.
struct Observer {
    child: Child,
    /// `joined` events: the member's name and when the line arrived.
    joins: mpsc::Receiver<(String, Instant)>,
}

impl Observer {
    fn start(dir: &Path) -> anyhow::Result<Self> {
        let music = dir.join("music");
        std::fs::create_dir_all(&music)?;
        let http = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let exe = std::env::current_exe().context("cannot find the firefly binary")?;
        let mut child = Command::new(exe)
            .arg("up")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--music")
            .arg(&music)
            .args(["--name", "bench-observer", "--events", "json"])
            .args(["--output", "null", "--http", &http.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start the observer node")?;
        let stdout = child.stdout.take().context("no stdout from the observer")?;
        let (tx, joins) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(NodeEvent::Joined { name, .. }) = serde_json::from_str(&line) {
                    let _ = tx.send((name, Instant::now()));
                }
            }
        });
        Ok(Self { child, joins })
    }

    /// Forgets joins seen so far.
    fn drain(&self) {
        while self.joins.try_recv().is_ok() {}
    }

    /// When `name` joined, waiting until `deadline`.
    fn joined(&self, name: &str, deadline: Instant) -> anyhow::Result<Instant> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.joins.recv_timeout(left) {
                Ok((joined, at)) if joined == name => return Ok(at),
                Ok(_) => {}
                Err(_) => bail!("no join of {name}"),
            }
        }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The benchmark's scratch folder, deleted at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let path =
            std::env::temp_dir().join(format!("firefly-bench-install-{}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating the scratch folder {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(path = %self.0.display(), %err, "scratch folder not removed");
        }
    }
}
