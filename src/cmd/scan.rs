//! `firefly scan [PATH...]`: bring the library up to date with music folders.
//!
//! While a node runs on the data dir (it holds the database), the node does
//! the scan: `POST /api/scan` on its API (`--http`, default
//! `127.0.0.1:8081`), for its music folder or the named paths inside it.
//! Otherwise the command opens the database itself and scans the named
//! folders, with a progress bar (bytes read) on a terminal. `--json` prints
//! one JSON object with the scan's figures and the skipped files instead of
//! a summary, the same either way.

use crate::cmd::status::request;
use crate::data_dir;
use anyhow::{Context, bail};
use firefly_library::{Library, OpenError, ScanObserver, ScanReport};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where a node's API is when `--http` is not given.
const DEFAULT_HTTP: &str = "127.0.0.1:8081";

/// Arguments of `firefly scan`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Folders to scan (recursively). With a running node: files or folders
    /// inside its music folder (default: all of it).
    #[arg(value_name = "PATH")]
    dirs: Vec<PathBuf>,
    /// Where the node keeps its state (default: the platform data dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Ask the node serving its API here to scan (default: the database
    /// itself when no node holds it, else 127.0.0.1:8081).
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// The node's API token (needed when it is bound to a non-loopback address).
    #[arg(long, env = "FIREFLY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    if let Some(http) = args.http {
        return scan_by_node(http, &args);
    }
    let dir = data_dir::resolve(args.data_dir.clone())?;
    let library = match Library::open_in(&dir) {
        Ok(library) => library,
        Err(OpenError::InUse { .. }) => {
            let http: SocketAddr = DEFAULT_HTTP.parse()?;
            return scan_by_node(http, &args).with_context(|| {
                format!(
                    "a running node holds the library in {}; give its --http address",
                    dir.display()
                )
            });
        }
        Err(e) => return Err(e.into()),
    };
    if args.dirs.is_empty() {
        bail!(
            "name the folders to scan (`firefly scan DIR...`); a running node scans its own \
             music folder by itself"
        );
    }
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
    print_report(&report_json(&report), args.json)
}

/// Asks the node at `http` to scan its music folder (or `args.dirs` in it).
fn scan_by_node(http: SocketAddr, args: &Args) -> anyhow::Result<()> {
    let mut paths = Vec::new();
    for dir in &args.dirs {
        // The node resolves paths as they are; send them absolute.
        let absolute = std::path::absolute(dir)
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        paths.push(absolute.to_string_lossy().into_owned());
    }
    let body = serde_json::json!({ "paths": paths });
    let answer = tokio::runtime::Runtime::new()?.block_on(request(
        http,
        "POST",
        "/api/scan",
        Some(&body),
        args.token.as_deref(),
    ))?;
    let report: serde_json::Value =
        serde_json::from_slice(&answer).context("the node's answer is not JSON")?;
    if report["running"] == serde_json::json!(true) {
        if args.json {
            println!("{report}");
        } else {
            println!(
                "{}",
                report["message"]
                    .as_str()
                    .unwrap_or("the node is still scanning")
            );
        }
        return Ok(());
    }
    print_report(&report, args.json)
}

/// Prints a scan report (as [`report_json`] makes it): the object itself,
/// or the skipped files and a summary line.
fn print_report(report: &serde_json::Value, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{report}").context("writing to stdout")?;
        return Ok(());
    }
    let skipped = report["skipped"].as_array().cloned().unwrap_or_default();
    for s in &skipped {
        writeln!(
            out,
            "skipped {}: {}",
            s["path"].as_str().unwrap_or("?"),
            s["reason"].as_str().unwrap_or("?")
        )
        .context("writing to stdout")?;
    }
    let n = |key: &str| report[key].as_u64().unwrap_or(0);
    writeln!(
        out,
        "{} files seen, {} tracks ({:.1} MB, {} chunks, {} unique), {} read, {} unchanged, {} removed, {} skipped, in {:.2} s",
        n("files_seen"),
        n("tracks"),
        n("bytes") as f64 / 1e6,
        n("chunks"),
        n("unique_chunks"),
        n("files_read"),
        n("files_unchanged"),
        n("files_removed"),
        skipped.len(),
        report["seconds"].as_f64().unwrap_or(0.0)
    )
    .context("writing to stdout")?;
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
