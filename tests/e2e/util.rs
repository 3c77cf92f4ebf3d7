//! Helpers shared by the end-to-end tests: running the real `firefly`
//! binary, collecting what it prints, and the repository's fixtures.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The repository's `fixtures/` folder.
pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Copies fixtures into `dir`.
pub(crate) fn copy_fixtures(dir: &Path, names: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    for name in names {
        std::fs::copy(fixtures().join(name), dir.join(name)).unwrap();
    }
}

/// Runs `firefly ARGS` to completion with logging quiet.
pub(crate) fn firefly(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_firefly"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .unwrap()
}

/// Runs `firefly ARGS`, expects success, parses stdout as JSON.
pub(crate) fn firefly_json(args: &[&str]) -> serde_json::Value {
    let out = firefly(args);
    assert!(
        out.status.success(),
        "firefly {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "firefly {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// One request to the API at `base` (`http://host:port`) through the
/// project's one HTTP client crate; returns (status, JSON body or null).
pub(crate) fn http(
    base: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let response = match method {
        "GET" => agent.get(&url).call(),
        "POST" => agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.map(|b| b.to_string()).unwrap_or_default()),
        other => panic!("unsupported method {other}"),
    };
    let mut response = response.unwrap_or_else(|err| panic!("{method} {url}: {err}"));
    let status = response.status().as_u16();
    let bytes = response.body_mut().read_to_vec().unwrap_or_default();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// A path as a `&str` argument.
pub(crate) fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The `firefly` binary Cargo built for these tests.
pub fn firefly_bin() -> &'static str {
    env!("CARGO_BIN_EXE_firefly")
}

/// A running process whose stdout lines are collected; killed on drop.
pub struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    label: String,
}

impl Running {
    /// Starts `command` with stdout captured (stderr passes through).
    pub fn spawn(label: &str, mut command: Command) -> Running {
        command.stdout(Stdio::piped()).stdin(Stdio::null());
        let mut child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {label}: {err}"));
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Running {
            child,
            lines,
            label: label.to_string(),
        }
    }

    /// The process id (for reading its memory use from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for the process to exit; its status.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every line printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits up to `limit` for a line starting with `prefix`; returns the rest.
    pub fn wait_line(&self, prefix: &str, limit: Duration) -> Option<String> {
        self.wait_for(limit, |line| line.strip_prefix(prefix).map(str::to_string))
    }

    /// Waits up to `limit` for a line `pick` accepts.
    pub fn wait_for<T>(
        &self,
        limit: Duration,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(found) = self.lines().iter().find_map(|l| pick(l)) {
                return Some(found);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Every event printed so far, oldest first (the node runs with
    /// `--events json`, `docs/EVENTS.md`; lines that are not JSON are skipped).
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["event"].is_string())
            .collect()
    }

    /// Whether an event of `kind` was printed.
    pub fn has_event(&self, kind: &str) -> bool {
        self.events().iter().any(|e| e["event"] == kind)
    }

    /// Waits up to `limit` for an event of `kind`; returns it.
    pub fn wait_event(&self, kind: &str, limit: Duration) -> Option<serde_json::Value> {
        self.wait_event_where(kind, limit, |_| true)
    }

    /// Waits up to `limit` for an event of `kind` that `accept` accepts.
    pub fn wait_event_where(
        &self,
        kind: &str,
        limit: Duration,
        accept: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        self.wait_for(limit, |line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .filter(|e| e["event"] == kind && accept(e))
        })
    }

    /// The label given at spawn, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
