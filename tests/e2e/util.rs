//! Helpers shared by the end-to-end tests: running the `firefly` binary and
//! reading what it prints.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
