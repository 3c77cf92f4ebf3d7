//! Running the real `firefly` binary and reading what it prints.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
pub(crate) fn firefly_bin() -> &'static str {
    env!("CARGO_BIN_EXE_firefly")
}

/// A long-running process (a node, a relay) whose stdout lines are
/// collected as they come; killed on drop.
pub(crate) struct Running {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    label: String,
}

impl Running {
    /// Starts `command` with stdout captured (stderr passes through).
    pub(crate) fn spawn(label: &str, mut command: Command) -> Running {
        use std::io::BufRead;
        command
            .stdout(std::process::Stdio::piped())
            .stdin(std::process::Stdio::null());
        let mut child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {label}: {err}"));
        let stdout = child.stdout.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
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
    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits up to `limit` for a line starting with `prefix`; returns the rest.
    pub(crate) fn wait_line(&self, prefix: &str, limit: std::time::Duration) -> Option<String> {
        self.wait_for(limit, |line| line.strip_prefix(prefix).map(str::to_string))
    }

    /// Waits up to `limit` for a line `pick` accepts.
    pub(crate) fn wait_for<T>(
        &self,
        limit: std::time::Duration,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> Option<T> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(found) = self.lines().iter().find_map(|l| pick(l)) {
                return Some(found);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
    }

    /// The label given at spawn, for messages.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
