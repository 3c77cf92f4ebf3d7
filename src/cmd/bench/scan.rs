//! `firefly bench scan DIR`: first-scan throughput against raw BLAKE3, and
//! rescan speed.
//!
//! In one run: read every file under DIR once (so both measurements find the
//! files in the page cache), hash them all with single-threaded BLAKE3 (the
//! baseline: read + hash, nothing else), scan DIR into a fresh library in a
//! temporary data dir (probe, FastCDC, per-chunk and whole-file BLAKE3,
//! redb), then scan again with nothing changed. Goals: scan ≥ 0.8 × raw
//! hashing; rescan ≥ 10,000 files/s.

use anyhow::{Context, bail};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `firefly bench scan`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Folder of audio files to scan (e.g. made by `scripts/make-bench-dir.sh`).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Print the figures as one JSON object.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let files = list_files(&args.dir)?;
    if files.is_empty() {
        bail!("{} holds no files to scan", args.dir.display());
    }
    // Warm the page cache, then measure the baseline on warm files.
    hash_all(&files)?;
    let started = Instant::now();
    let bytes = hash_all(&files)?;
    let raw_seconds = started.elapsed().as_secs_f64();

    let data_dir = std::env::temp_dir().join(format!("firefly-bench-scan-{}", std::process::id()));
    let result = scan_twice(&args.dir, &data_dir);
    let _ = std::fs::remove_dir_all(&data_dir);
    let (first, second) = result?;

    let mb = |b: u64, s: f64| b as f64 / 1e6 / s.max(1e-9);
    let raw_mb_s = mb(bytes, raw_seconds);
    // The scan reads every file (tracks and non-tracks alike).
    let scan_mb_s = mb(bytes, first.seconds);
    let rescan_files_s = second.files_seen as f64 / second.seconds.max(1e-9);
    let figures = serde_json::json!({
        "dir": args.dir.to_string_lossy(),
        "files": files.len(),
        "bytes": bytes,
        "tracks": first.tracks,
        "skipped": first.skipped.len(),
        "raw_blake3_seconds": raw_seconds,
        "raw_blake3_mb_s": raw_mb_s,
        "first_scan_seconds": first.seconds,
        "first_scan_mb_s": scan_mb_s,
        "scan_to_raw_ratio": scan_mb_s / raw_mb_s,
        "rescan_seconds": second.seconds,
        "rescan_files": second.files_seen,
        "rescan_files_s": rescan_files_s,
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    });
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{figures}").context("writing to stdout")?;
    } else {
        writeln!(
            out,
            "{} files, {:.1} MB\nraw BLAKE3 (1 thread): {:.0} MB/s\nfirst scan: {:.0} MB/s = {:.2} x raw (goal >= 0.8)\nrescan: {:.0} files/s (goal >= 10000)",
            files.len(),
            bytes as f64 / 1e6,
            raw_mb_s,
            scan_mb_s,
            scan_mb_s / raw_mb_s,
            rescan_files_s
        )
        .context("writing to stdout")?;
    }
    Ok(())
}

fn scan_twice(
    dir: &Path,
    data_dir: &Path,
) -> anyhow::Result<(firefly_library::ScanReport, firefly_library::ScanReport)> {
    let library = super::super::scan::open_library_in(data_dir)?;
    let roots = [dir.to_path_buf()];
    let first = library.scan(&roots, &mut ())?;
    let second = library.scan(&roots, &mut ())?;
    if second.files_read != 0 {
        bail!("rescan re-read {} unchanged files", second.files_read);
    }
    Ok((first, second))
}

/// Regular files under `dir` (following symlinks to files, not to folders,
/// so a loop cannot trap it).
fn list_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let entries =
            std::fs::read_dir(&folder).with_context(|| format!("reading {}", folder.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", folder.display()))?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads and BLAKE3-hashes every file on this thread; returns the bytes.
fn hash_all(files: &[PathBuf]) -> anyhow::Result<u64> {
    let mut buf = vec![0u8; 4 * 1024 * 1024];
    let mut total = 0u64;
    for path in files {
        let mut file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut hasher = blake3::Hasher::new();
        loop {
            let n = file
                .read(&mut buf)
                .with_context(|| format!("reading {}", path.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            total += n as u64;
        }
        std::hint::black_box(hasher.finalize());
    }
    Ok(total)
}
