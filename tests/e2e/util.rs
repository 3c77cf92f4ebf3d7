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
