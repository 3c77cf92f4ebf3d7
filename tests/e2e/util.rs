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
