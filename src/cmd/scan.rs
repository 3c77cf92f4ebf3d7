//! `firefly scan DIR...`: bring the library up to date with music folders.
//!
//! Shows a progress bar (bytes read) on a terminal; with `--json` prints one
//! JSON object with the scan's figures and the skipped files instead.

use crate::data_dir;
use anyhow::Context;
use firefly_library::{Library, ScanObserver, ScanReport};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Arguments of `firefly scan`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Folders to scan (recursively).
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// Where the node keeps its state (default: the platform data dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let library = open_library(args.data_dir)?;
    let bar = if !args.json && std::io::stderr().is_terminal() {
        Some(progress_bar())
    } else {
        None
    };
    let mut observer = BarObserver { bar: bar.clone() };
    let report = library.scan(&args.dirs, &mut observer)?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", report_json(&report)).context("writing to stdout")?;
    } else {
        for s in &report.skipped {
            writeln!(out, "skipped {}: {}", s.path.display(), s.reason)
                .context("writing to stdout")?;
        }
        writeln!(
            out,
            "{} files seen, {} tracks ({:.1} MB, {} chunks, {} unique), {} read, {} unchanged, {} removed, {} skipped, in {:.2} s",
            report.files_seen,
            report.tracks,
            report.bytes as f64 / 1e6,
            report.chunks,
            report.unique_chunks,
            report.files_read,
            report.files_unchanged,
            report.files_removed,
            report.skipped.len(),
            report.seconds
        )
        .context("writing to stdout")?;
    }
    Ok(())
}

/// Opens the library in `--data-dir` (or the default), with a one-line
/// error that says what to do.
pub(crate) fn open_library(data_dir: Option<PathBuf>) -> anyhow::Result<Library> {
    let dir = data_dir::resolve(data_dir)?;
    open_library_in(&dir)
}

pub(crate) fn open_library_in(dir: &Path) -> anyhow::Result<Library> {
    Library::open_in(dir).map_err(|e| match e {
        firefly_library::OpenError::InUse { .. } => {
            anyhow::anyhow!("{e}: stop it or pass another --data-dir")
        }
        e => anyhow::Error::new(e),
    })
}

/// The scan report as the JSON object `firefly scan --json` prints.
pub(crate) fn report_json(report: &ScanReport) -> serde_json::Value {
    serde_json::json!({
        "files_seen": report.files_seen,
        "tracks": report.tracks,
        "skipped": report.skipped.iter().map(|s| serde_json::json!({
            "path": s.path.to_string_lossy(),
            "reason": s.reason,
        })).collect::<Vec<_>>(),
        "bytes": report.bytes,
        "chunks": report.chunks,
        "unique_chunks": report.unique_chunks,
        "files_read": report.files_read,
        "files_unchanged": report.files_unchanged,
        "files_removed": report.files_removed,
        "seconds": report.seconds,
    })
}

fn progress_bar() -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{spinner} scanning [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {wide_msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    ProgressBar::new(0).with_style(style)
}

/// Drives the progress bar from the scan's progress.
struct BarObserver {
    bar: Option<ProgressBar>,
}

impl ScanObserver for BarObserver {
    fn planned(&mut self, _files: u64, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(bytes);
        }
    }

    fn file_done(&mut self, path: &Path, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
            if let Some(name) = path.file_name() {
                bar.set_message(name.to_string_lossy().into_owned());
            }
        }
    }
}
