//! Where a node keeps its state: `--data-dir`, or the platform's data directory.

use anyhow::{Context, anyhow};
use std::path::PathBuf;

/// The data directory to use: `explicit` if given, else the platform default
/// (e.g. `~/.local/share/firefly` on Linux). Creates it if missing.
pub(crate) fn resolve(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = match explicit {
        Some(dir) => dir,
        None => directories::ProjectDirs::from("", "", "firefly")
            .map(|dirs| dirs.data_dir().to_path_buf())
            .ok_or_else(|| {
                anyhow!("no home directory to put the data dir in: pass --data-dir DIR")
            })?,
    };
    std::fs::create_dir_all(&dir).with_context(|| {
        format!(
            "cannot create data dir {}: pass a writable --data-dir",
            dir.display()
        )
    })?;
    Ok(dir)
}
