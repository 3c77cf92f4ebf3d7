//! Scanning folders into the library.
//!
//! A scan walks its folders (following symlinks, with loop detection), takes
//! every regular file whose (size, mtime) matches its record as unchanged
//! without opening it, and reads the others on a few worker threads: probe
//! the head with symphonia, then one pass of FastCDC + BLAKE3 (see
//! `chunking`). Files with an audio extension or none are probed — the
//! content decides, the extension only rules out files named as something
//! else (`cover.jpg`). Results are written in batches, many files per transaction.
//! Files under the folders that were not seen any more leave the library.
//! Progress goes to a [`ScanObserver`]; problems with single files end up in
//! [`ScanReport::skipped`], never as an error of the whole scan.

use crate::chunking::{self, DigestError};
use crate::cover::Cover;
use crate::error::{ScanError, StoreError};
use crate::id::ChunkId;
use crate::manifest::Manifest;
use crate::probe::{self, ProbeError};
use crate::store::{IndexTables, Library, mtime_ns};
use crate::tables::{FileRecord, TRACKS, decode};
use redb::ReadableDatabase;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

/// Files written per transaction.
const BATCH_FILES: usize = 1024;
/// Bytes read per transaction (bounds what a crash mid-scan throws away).
const BATCH_BYTES: u64 = 512 * 1024 * 1024;
/// Cover picture bytes held per transaction (each is at most
/// [`crate::MAX_COVER_BYTES`]).
const BATCH_COVER_BYTES: usize = 32 * 1024 * 1024;
/// Most worker threads a scan uses.
const MAX_WORKERS: usize = 4;

/// Receives scan progress. Every method has an empty default.
pub trait ScanObserver {
    /// The walk is done: `files` files with `bytes` bytes need reading
    /// (unchanged files are not counted).
    fn planned(&mut self, files: u64, bytes: u64) {
        let _ = (files, bytes);
    }
    /// A file was read (indexed or skipped); `bytes` is its size.
    fn file_done(&mut self, path: &Path, bytes: u64) {
        let _ = (path, bytes);
    }
    /// A file or folder was skipped.
    fn skipped(&mut self, path: &Path, reason: &str) {
        let _ = (path, reason);
    }
}

/// An observer that ignores everything.
impl ScanObserver for () {}

/// A file or folder left out of the library, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// The path.
    pub path: PathBuf,
    /// Why, in a few words.
    pub reason: String,
}

/// What a scan found.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ScanReport {
    /// Regular files seen under the folders.
    pub files_seen: u64,
    /// Files that hold a track (new, changed or unchanged).
    pub tracks: u64,
    /// Files and folders skipped, with reasons (non-audio files are left out
    /// silently).
    pub skipped: Vec<Skipped>,
    /// Bytes in the track files.
    pub bytes: u64,
    /// Chunks in the track files.
    pub chunks: u64,
    /// Distinct chunk ids among them.
    pub unique_chunks: u64,
    /// Files read this time (new or changed).
    pub files_read: u64,
    /// Files taken as unchanged without reading them.
    pub files_unchanged: u64,
    /// Files that left the library because they are gone.
    pub files_removed: u64,
    /// Wall time of the scan in seconds.
    pub seconds: f64,
}

/// A regular file found by the walk.
struct Found {
    path: PathBuf,
    size: u64,
    mtime_ns: u64,
}

/// What a worker made of one file.
enum Outcome {
    /// Boxed: a manifest is large beside the other variants.
    Track(Box<(Manifest, Option<Cover>)>),
    Skip(String),
    /// Not audio and not named like audio: left out silently.
    Ignore,
}

impl Library {
    /// Holds off other scans until the guard drops. A panic in another scan
    /// leaves nothing half-done that this lock protects (each batch is one
    /// transaction), so poisoning is ignored.
    fn one_scan_at_a_time(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner
            .scan_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Scans `roots` recursively and brings the library up to date with them.
    pub fn scan(
        &self,
        roots: &[PathBuf],
        observer: &mut dyn ScanObserver,
    ) -> Result<ScanReport, ScanError> {
        let _scanning = self.one_scan_at_a_time();
        let started = Instant::now();
        let mut report = ScanReport::default();
        let mut roots_canon = Vec::new();
        for root in roots {
            let canon = root.canonicalize().map_err(|source| ScanError::Root {
                path: root.clone(),
                source,
            })?;
            std::fs::read_dir(&canon).map_err(|source| ScanError::Root {
                path: root.clone(),
                source,
            })?;
            roots_canon.push(canon);
        }

        let staging = self.inner.staging_dir.canonicalize().ok();
        let mut found = Vec::new();
        for root in &roots_canon {
            self.walk(root, staging.as_deref(), &mut found, &mut report, observer);
        }
        let known = self.known_under(&roots_canon)?;
        self.reconcile(found, known, report, observer, started)
    }

    /// Brings the library up to date with `paths` only (files or folders,
    /// absolute, as a watcher of the music folder reports them): a folder is
    /// walked like a scan root, a file is read if it is new or changed, and
    /// what the library knew at or under a path that is gone leaves it.
    /// Nothing outside `paths` is looked at.
    pub fn scan_paths(
        &self,
        paths: &[PathBuf],
        observer: &mut dyn ScanObserver,
    ) -> Result<ScanReport, ScanError> {
        let _scanning = self.one_scan_at_a_time();
        let started = Instant::now();
        let mut report = ScanReport::default();
        let staging = self.inner.staging_dir.canonicalize().ok();
        let mut found = Vec::new();
        let mut compared = Vec::new();
        for path in paths {
            if staging.as_deref().is_some_and(|s| path.starts_with(s)) {
                continue;
            }
            match std::fs::metadata(path) {
                Ok(meta) if meta.is_dir() => {
                    self.walk(path, staging.as_deref(), &mut found, &mut report, observer);
                }
                Ok(meta) if meta.is_file() => found.push(Found {
                    path: path.clone(),
                    size: meta.len(),
                    mtime_ns: mtime_ns(&meta),
                }),
                // Sockets, pipes: not files; what was here before is gone.
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    skip(&mut report, observer, path, format!("cannot stat: {e}"));
                    continue;
                }
            }
            compared.push(path.clone());
        }
        let known = self.known_under(&compared)?;
        self.reconcile(found, known, report, observer, started)
    }

    /// The file records at or under `roots`.
    fn known_under(&self, roots: &[PathBuf]) -> Result<HashMap<PathBuf, FileRecord>, ScanError> {
        let mut known = HashMap::new();
        let txn = self.inner.db.begin_write().map_err(StoreError::from)?;
        let tables = IndexTables::open(&txn)?;
        for root in roots {
            known.extend(tables.files_under(root)?);
        }
        drop(tables);
        txn.abort().map_err(StoreError::from)?;
        Ok(known)
    }

    /// Reads the new and changed files of `found`, takes the others as
    /// unchanged, and unlinks the `known` files that were not found.
    fn reconcile(
        &self,
        mut found: Vec<Found>,
        known: HashMap<PathBuf, FileRecord>,
        mut report: ScanReport,
        observer: &mut dyn ScanObserver,
        started: Instant,
    ) -> Result<ScanReport, ScanError> {
        // Overlapping roots (or a symlink to a folder inside a root) can
        // show one path twice.
        found.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        found.dedup_by(|a, b| a.path == b.path);
        report.files_seen = found.len() as u64;

        let mut to_read = Vec::new();
        let mut unchanged_tracks = Vec::new();
        let mut seen: HashSet<&Path> = HashSet::with_capacity(found.len());
        for f in &found {
            seen.insert(&f.path);
            match known.get(&f.path) {
                Some(rec)
                    if rec.size == f.size && rec.mtime_ns == f.mtime_ns && rec.mtime_ns != 0 =>
                {
                    report.files_unchanged += 1;
                    if let Some(track) = rec.track {
                        unchanged_tracks.push(track);
                        report.bytes += f.size;
                    } else if let Some(reason) = &rec.skipped {
                        observer.skipped(&f.path, reason);
                        report.skipped.push(Skipped {
                            path: f.path.clone(),
                            reason: reason.clone(),
                        });
                    }
                }
                _ => to_read.push(f),
            }
        }
        let gone: Vec<PathBuf> = known
            .keys()
            .filter(|p| !seen.contains(p.as_path()))
            .cloned()
            .collect();

        observer.planned(to_read.len() as u64, to_read.iter().map(|f| f.size).sum());

        // Chunk statistics over every track file under the roots.
        let mut chunk_ids: HashSet<ChunkId> = HashSet::new();
        let mut chunk_count = 0u64;
        let mut count = |m: &Manifest| {
            chunk_count += m.chunks.len() as u64;
            chunk_ids.extend(m.chunks.iter().map(|c| c.id));
        };
        {
            let txn = self.inner.db.begin_read().map_err(StoreError::from)?;
            let tracks = txn.open_table(TRACKS).map_err(StoreError::from)?;
            for track in &unchanged_tracks {
                if let Some(v) = tracks.get(track.as_bytes()).map_err(StoreError::from)? {
                    count(&decode(v.value(), "manifest")?);
                }
            }
        }

        self.read_files(&to_read, &mut report, observer, &mut count)?;

        if !gone.is_empty() {
            let txn = self.inner.db.begin_write().map_err(StoreError::from)?;
            let mut tables = IndexTables::open(&txn)?;
            for path in &gone {
                tables.unlink_file(path)?;
            }
            tables.finish()?;
            txn.commit().map_err(StoreError::from)?;
            report.files_removed = gone.len() as u64;
        }

        report.tracks += unchanged_tracks.len() as u64;
        report.chunks = chunk_count;
        report.unique_chunks = chunk_ids.len() as u64;
        report.seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            files = report.files_seen,
            tracks = report.tracks,
            read = report.files_read,
            removed = report.files_removed,
            skipped = report.skipped.len(),
            seconds = report.seconds,
            "scan done"
        );
        Ok(report)
    }

    /// Walks one root, collecting regular files and reporting what cannot be
    /// walked.
    fn walk(
        &self,
        root: &Path,
        staging: Option<&Path>,
        found: &mut Vec<Found>,
        report: &mut ScanReport,
        observer: &mut dyn ScanObserver,
    ) {
        let walker = walkdir::WalkDir::new(root)
            .follow_links(true)
            .into_iter()
            .filter_entry(|e| {
                // Never index our own partial downloads.
                !(e.file_type().is_dir()
                    && staging.is_some()
                    && e.file_name() == crate::store::STAGING_DIR
                    && e.path().canonicalize().ok().as_deref() == staging)
            });
        for entry in walker {
            match entry {
                Ok(entry) => {
                    if !entry.file_type().is_file() {
                        continue;
                    }
                    match entry.metadata() {
                        Ok(meta) => found.push(Found {
                            path: entry.into_path(),
                            size: meta.len(),
                            mtime_ns: mtime_ns(&meta),
                        }),
                        Err(e) => skip(report, observer, entry.path(), format!("cannot stat: {e}")),
                    }
                }
                Err(e) => {
                    let path = e.path().unwrap_or(root).to_path_buf();
                    let reason = if e.loop_ancestor().is_some() {
                        "symlink loop".to_owned()
                    } else if let Some(io) = e.io_error() {
                        format!("unreadable: {io}")
                    } else {
                        e.to_string()
                    };
                    skip(report, observer, &path, reason);
                }
            }
        }
    }

    /// Reads `files` on worker threads and writes the results in batches.
    fn read_files(
        &self,
        files: &[&Found],
        report: &mut ScanReport,
        observer: &mut dyn ScanObserver,
        count: &mut dyn FnMut(&Manifest),
    ) -> Result<(), ScanError> {
        if files.is_empty() {
            return Ok(());
        }
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, MAX_WORKERS)
            .min(files.len());
        let next = AtomicUsize::new(0);
        let (tx, rx) = mpsc::sync_channel::<(usize, Outcome)>(workers * 4);
        std::thread::scope(|scope| -> Result<(), ScanError> {
            for _ in 0..workers {
                let tx = tx.clone();
                let next = &next;
                scope.spawn(move || {
                    let mut buf = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(f) = files.get(i) else { break };
                        let outcome = read_one(&f.path, f.size, &mut buf);
                        if tx.send((i, outcome)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let mut batch: Vec<(usize, Outcome)> = Vec::new();
            let mut batch_bytes = 0u64;
            let mut batch_cover_bytes = 0usize;
            let mut result = Ok(());
            for (i, outcome) in rx.iter() {
                let f = files[i];
                observer.file_done(&f.path, f.size);
                match &outcome {
                    Outcome::Track(found) => {
                        let m = &found.0;
                        report.tracks += 1;
                        report.bytes += m.size;
                        count(m);
                    }
                    Outcome::Skip(reason) => skip(report, observer, &f.path, reason.clone()),
                    Outcome::Ignore => {}
                }
                report.files_read += 1;
                batch_bytes += f.size;
                if let Outcome::Track(found) = &outcome
                    && let Some(cover) = &found.1
                {
                    batch_cover_bytes += cover.bytes.len();
                }
                batch.push((i, outcome));
                if batch.len() >= BATCH_FILES
                    || batch_bytes >= BATCH_BYTES
                    || batch_cover_bytes >= BATCH_COVER_BYTES
                {
                    if let Err(e) = self.write_batch(files, &batch) {
                        // Stop the workers: they see the closed channel.
                        result = Err(e);
                        break;
                    }
                    batch.clear();
                    batch_bytes = 0;
                    batch_cover_bytes = 0;
                }
            }
            if result.is_ok() && !batch.is_empty() {
                result = self.write_batch(files, &batch);
            }
            // Dropping the receiver ends any worker still sending.
            drop(rx);
            result
        })
    }

    fn write_batch(&self, files: &[&Found], batch: &[(usize, Outcome)]) -> Result<(), ScanError> {
        let txn = self.inner.db.begin_write().map_err(StoreError::from)?;
        let mut tables = IndexTables::open(&txn)?;
        for (i, outcome) in batch {
            let f = files[*i];
            let (manifest, cover, skipped) = match outcome {
                Outcome::Track(found) => (Some(&found.0), found.1.as_ref(), None),
                Outcome::Skip(reason) => (None, None, Some(reason.clone())),
                Outcome::Ignore => (None, None, None),
            };
            let record = FileRecord {
                size: manifest.map(|m| m.size).unwrap_or(f.size),
                mtime_ns: f.mtime_ns,
                track: manifest.map(|m| m.track),
                skipped,
            };
            tables.link_file(&f.path, &record, manifest, cover)?;
        }
        tables.finish()?;
        txn.commit().map_err(StoreError::from)?;
        Ok(())
    }
}

fn skip(report: &mut ScanReport, observer: &mut dyn ScanObserver, path: &Path, reason: String) {
    observer.skipped(path, &reason);
    report.skipped.push(Skipped {
        path: path.to_path_buf(),
        reason,
    });
}

/// Probes and digests one file.
fn read_one(path: &Path, size: u64, buf: &mut Vec<u8>) -> Outcome {
    let named_audio = probe::has_audio_extension(path);
    // Files named as something else (cover.jpg, notes.txt, backup.zip) are
    // not probed: decoders are lenient enough to find "frames" in large
    // binary files. Files without an extension are probed.
    if !named_audio && path.extension().is_some() {
        return Outcome::Ignore;
    }
    if size == 0 {
        return if named_audio {
            Outcome::Skip("empty file".to_owned())
        } else {
            Outcome::Ignore
        };
    }
    let (meta, cover) = match probe::probe_with_cover(path) {
        Ok(probed) => probed,
        Err(ProbeError::Io(e)) => return Outcome::Skip(format!("unreadable: {e}")),
        Err(e) if named_audio => return Outcome::Skip(e.to_string()),
        Err(_) => return Outcome::Ignore,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return Outcome::Skip(format!("unreadable: {e}")),
    };
    match chunking::digest_with(file, buf) {
        Ok(d) if d.size == 0 => Outcome::Skip("empty file".to_owned()),
        Ok(d) => Outcome::Track(Box::new((
            Manifest {
                track: d.track,
                size: d.size,
                chunks: d.chunks,
                meta,
            },
            cover,
        ))),
        Err(DigestError::Io(e)) => Outcome::Skip(format!("unreadable: {e}")),
        Err(e) => Outcome::Skip(e.to_string()),
    }
}
