//! Downloading a track chunk by chunk into a staging file, then into the
//! music folder.
//!
//! [`DownloadPlan`] is the sans-IO bookkeeping: which distinct chunks a
//! manifest has, where each one goes (a chunk may occur at several offsets),
//! and which are still missing given the present set. The [`Library`]
//! methods around it do the I/O with these crash-safety rules:
//!
//! - The staging file (`<data dir>/staging/<track hex>.part`) is created at
//!   full length and synced in the same write transaction that records the
//!   download, so a recorded download always has its file.
//! - A chunk's bytes are written at every offset and synced *before* the
//!   transaction that marks the chunk present commits (invariant 4 in
//!   `tables`), so after a kill the present set never claims unwritten bytes.
//! - After each batch commits, the file's contiguous present prefix is fed
//!   to the download's [`VerifiedPrefix`] (whole-file BLAKE3 and FastCDC
//!   cut check), from the batch in memory or read back from the staging
//!   file, so the last batch finds the file already verified. Only when
//!   that check is missing (no chunk accepted since the library was
//!   opened) or broke does completion read the whole file back.
//! - Completion verifies the whole staging file, records the `Finishing` state,
//!   hard-links the file into the music folder under a fresh sanitized name
//!   (a link never replaces an existing file), indexes it and drops the
//!   download in one transaction, then deletes the staging name. Opening the
//!   library finishes a `Finishing` download and removes orphaned staging
//!   files, so a kill at any point leaves either the download (same missing
//!   set) or the finished track — never a half-moved or corrupt file.

use crate::chunking;
use crate::error::{DownloadError, StoreError};
use crate::id::{ChunkId, TrackId};
use crate::manifest::{ChunkRef, Manifest, TrackMeta};
use crate::names::FileName;
use crate::prefix::{StagedCheck, VerifiedPrefix};
use crate::probe;
use crate::store::{IndexTables, Library, mtime_ns};
use crate::tables::{
    DOWNLOAD_CHUNKS, DOWNLOADS, DownloadRecord, DownloadState, FileRecord, decode, encode,
};
use redb::{ReadableDatabase, ReadableTable, WriteTransaction};
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

/// How many numbered names (`Title (n).ext`) to try before giving up.
const MAX_NAME_CANDIDATES: u32 = 10_000;

/// Where each distinct chunk of a manifest goes, and in which order to ask
/// for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadPlan {
    /// Distinct chunk ids in order of first occurrence in the file.
    order: Vec<ChunkId>,
    /// For each distinct chunk: its length and every offset it occurs at.
    places: HashMap<ChunkId, (u32, Vec<u64>)>,
    /// The manifest's chunks in file order, repeats included.
    sequence: Vec<ChunkRef>,
}

impl DownloadPlan {
    /// The plan for `manifest`.
    pub fn new(manifest: &Manifest) -> Self {
        let mut order = Vec::new();
        let mut places: HashMap<ChunkId, (u32, Vec<u64>)> = HashMap::new();
        for (offset, chunk) in manifest.offsets() {
            places
                .entry(chunk.id)
                .or_insert_with(|| {
                    order.push(chunk.id);
                    (chunk.len, Vec::new())
                })
                .1
                .push(offset);
        }
        Self {
            order,
            places,
            sequence: manifest.chunks.clone(),
        }
    }

    /// Length and offsets of `chunk`, if the manifest has it.
    pub fn places(&self, chunk: ChunkId) -> Option<(u32, &[u64])> {
        self.places
            .get(&chunk)
            .map(|(len, at)| (*len, at.as_slice()))
    }

    /// The manifest's chunks in file order, repeats included.
    pub(crate) fn sequence(&self) -> &[ChunkRef] {
        &self.sequence
    }

    /// Distinct chunks in file order.
    pub fn chunks(&self) -> &[ChunkId] {
        &self.order
    }

    /// Distinct chunks not in `present`, in file order.
    pub fn missing(&self, present: &HashSet<ChunkId>) -> Vec<ChunkId> {
        self.order
            .iter()
            .filter(|id| !present.contains(id))
            .copied()
            .collect()
    }
}

/// Where a download stands after starting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadStatus {
    /// The library already holds the track, in these files.
    Have(Vec<PathBuf>),
    /// Chunks are still missing.
    Pending {
        /// How many distinct chunks.
        missing: usize,
    },
    /// The download completed (chunks the library already held were enough).
    Completed(PathBuf),
}

/// What accepting a chunk did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Stored; chunks are still missing.
    Pending {
        /// How many distinct chunks.
        missing: usize,
    },
    /// It was the last one: the track is in the music folder and indexed.
    Completed(PathBuf),
}

/// What storing a batch of chunks did.
#[derive(Debug)]
pub struct BatchAccepted {
    /// Where the download stands after the batch.
    pub accepted: Accepted,
    /// Chunks refused, each with why ([`DownloadError::WrongBytes`] or
    /// [`DownloadError::NotInManifest`]): their sender sent bad data.
    pub refused: Vec<(ChunkId, DownloadError)>,
}

impl BatchAccepted {
    fn all(accepted: Accepted) -> Self {
        Self {
            accepted,
            refused: Vec::new(),
        }
    }
}

impl Library {
    /// Starts downloading the track `manifest` describes (validated first).
    /// Idempotent: a download in progress is kept as it is. Chunks the
    /// library already holds (from other tracks) are copied in right away.
    pub fn start_download(&self, manifest: &Manifest) -> Result<DownloadStatus, DownloadError> {
        manifest.validate()?;
        let track = manifest.track;
        if manifest.chunks.is_empty() {
            return Err(DownloadError::NotAudio {
                track,
                reason: "empty track".to_owned(),
            });
        }
        let have = self.track_paths(track)?;
        if !have.is_empty() {
            return Ok(DownloadStatus::Have(have));
        }
        {
            // The write transaction serializes starts, so the staging file is
            // created once and never truncated under a running download.
            let txn = self.inner.db.begin_write().map_err(StoreError::from)?;
            let exists = is_downloading(&txn, track)?;
            if !exists {
                self.create_staging(track, manifest.size)?;
                let record = DownloadRecord {
                    manifest: manifest.clone(),
                    state: DownloadState::Fetching,
                };
                put_record(&txn, track, &record)?;
                self.clear_present(&txn, track)?;
                txn.commit().map_err(StoreError::from)?;
            }
        }
        // Copy in what we already hold locally.
        // Batches bound the memory held at once.
        const LOCAL_BATCH: usize = 64;
        let plan = self.plan(track)?;
        let mut batch = Vec::with_capacity(LOCAL_BATCH);
        let held = plan.chunks().iter().copied();
        let mut held = held.peekable();
        while let Some(chunk) = held.next() {
            if self.has_chunk(chunk)?
                && let Ok(bytes) = self.read_chunk(chunk)
            {
                batch.push((chunk, bytes));
            }
            if batch.len() == LOCAL_BATCH || (held.peek().is_none() && !batch.is_empty()) {
                let stored = self.accept_chunks(track, &batch)?;
                batch.clear();
                if let Accepted::Completed(path) = stored.accepted {
                    return Ok(DownloadStatus::Completed(path));
                }
            }
        }
        Ok(DownloadStatus::Pending {
            missing: self.missing_chunks(track)?.len(),
        })
    }

    /// The manifest of a download in progress (`None` when `track` is not
    /// being downloaded), so a reader can map byte offsets to chunks while
    /// the track is still arriving.
    pub fn download_manifest(&self, track: TrackId) -> Result<Option<Manifest>, StoreError> {
        Ok(self.download_record(track)?.map(|record| record.manifest))
    }

    /// Tracks being downloaded.
    pub fn downloads(&self) -> Result<Vec<TrackId>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let downloads = txn.open_table(DOWNLOADS)?;
        let mut out = Vec::new();
        for row in downloads.iter()? {
            out.push(TrackId(*row?.0.value()));
        }
        Ok(out)
    }

    /// Verifies `bytes` against `chunk`, writes them at every offset where the
    /// chunk occurs in `track`'s staging file, and records the chunk as
    /// present. When it was the last missing chunk the download completes.
    /// One chunk of [`Library::accept_chunks`]; its refusal is the error.
    pub fn accept_chunk(
        &self,
        track: TrackId,
        chunk: ChunkId,
        bytes: &[u8],
    ) -> Result<Accepted, DownloadError> {
        let mut batch = self.accept_chunks(track, &[(chunk, bytes)])?;
        match batch.refused.pop() {
            Some((_, refusal)) => Err(refusal),
            None => Ok(batch.accepted),
        }
    }

    /// Stores a batch of chunks of `track` at the cost of one: every chunk is
    /// verified against its id, the good ones are written at every offset
    /// where they occur, the staging file is synced once, and all of them
    /// are recorded present in one write transaction after that sync
    /// (invariant 4). A chunk with wrong bytes or not in the manifest is
    /// refused on its own — the rest of the batch is still stored — and
    /// listed in [`BatchAccepted::refused`]. Errors that are not about one
    /// chunk (the download is unknown, the disk fails) fail the whole batch
    /// and record nothing new.
    pub fn accept_chunks<B: AsRef<[u8]>>(
        &self,
        track: TrackId,
        chunks: &[(ChunkId, B)],
    ) -> Result<BatchAccepted, DownloadError> {
        let plan = match self.plan(track) {
            Ok(plan) => plan,
            Err(DownloadError::NotStarted(_)) => {
                // Finished meanwhile (by a concurrent caller)?
                if let Some(path) = self.track_paths(track)?.into_iter().next() {
                    return Ok(BatchAccepted::all(Accepted::Completed(path)));
                }
                return Err(DownloadError::NotStarted(track));
            }
            Err(e) => return Err(e),
        };
        let mut refused = Vec::new();
        let mut good: Vec<(ChunkId, &[u8], &[u64])> = Vec::with_capacity(chunks.len());
        // Every verified chunk of the batch, present once the batch is
        // committed (or already), so the prefix check can take its bytes
        // from here instead of reading them back.
        let mut verified: HashMap<ChunkId, &[u8]> = HashMap::with_capacity(chunks.len());
        for (chunk, bytes) in chunks {
            let (chunk, bytes) = (*chunk, bytes.as_ref());
            let Some((len, offsets)) = plan.places(chunk) else {
                refused.push((chunk, DownloadError::NotInManifest { track, chunk }));
                continue;
            };
            if bytes.len() != len as usize || ChunkId::of(bytes) != chunk {
                refused.push((chunk, DownloadError::WrongBytes(chunk)));
                continue;
            }
            if verified.insert(chunk, bytes).is_none() {
                good.push((chunk, bytes, offsets));
            }
        }
        // Chunks already present need no second write (one lookup each).
        {
            let txn = self.inner.db.begin_read().map_err(StoreError::from)?;
            let table = txn.open_table(DOWNLOAD_CHUNKS).map_err(StoreError::from)?;
            let mut kept = Vec::with_capacity(good.len());
            for entry in good {
                let known = table
                    .get((track.as_bytes(), entry.0.as_bytes()))
                    .map_err(StoreError::from)?
                    .is_some();
                if !known {
                    kept.push(entry);
                }
            }
            good = kept;
        }
        if good.is_empty() {
            let missing = self.missing_count(track, &plan)?;
            return Ok(BatchAccepted {
                accepted: Accepted::Pending { missing },
                refused,
            });
        }
        let path = self.staging_path(track);
        let mut file = match OpenOptions::new().write(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(done) = self.track_paths(track)?.into_iter().next() {
                    return Ok(BatchAccepted {
                        accepted: Accepted::Completed(done),
                        refused,
                    });
                }
                return Err(DownloadError::io("opening the staging file")(e));
            }
            Err(e) => return Err(DownloadError::io("opening the staging file")(e)),
        };
        for &(_, bytes, offsets) in &good {
            for &offset in offsets {
                file.seek(SeekFrom::Start(offset))
                    .and_then(|_| file.write_all(bytes))
                    .map_err(DownloadError::io("writing the staging file"))?;
            }
        }
        // Invariant 4: the bytes are durable before the chunks count as present.
        file.sync_data()
            .map_err(DownloadError::io("syncing the staging file"))?;
        drop(file);

        let missing = {
            let txn = self.inner.db.begin_write().map_err(StoreError::from)?;
            let still_downloading = is_downloading(&txn, track)?;
            if !still_downloading {
                drop(txn);
                if let Some(done) = self.track_paths(track)?.into_iter().next() {
                    return Ok(BatchAccepted {
                        accepted: Accepted::Completed(done),
                        refused,
                    });
                }
                return Err(DownloadError::NotStarted(track));
            }
            // Created under the write transaction that sees the download
            // recorded (see `Inner::prefixes`).
            let prefix = self.prefix_for(track);
            // Lock order: write transaction, then the counts (see `clear_present`).
            let mut counts = self.present_counts();
            let present = {
                let mut table = txn.open_table(DOWNLOAD_CHUNKS).map_err(StoreError::from)?;
                let mut added = 0usize;
                for &(chunk, _, _) in &good {
                    let before = table
                        .insert((track.as_bytes(), chunk.as_bytes()), ())
                        .map_err(StoreError::from)?;
                    if before.is_none() {
                        added += 1;
                    }
                }
                match counts.get(&track) {
                    Some(&known) => known + added,
                    // First batch since opening: count once, then keep count.
                    None => present_of(&table, track)?.len(),
                }
            };
            counts.remove(&track);
            txn.commit().map_err(StoreError::from)?;
            counts.insert(track, present);
            drop(counts);
            // After the commit: the new chunks count as present now.
            self.advance_prefix(track, &plan, &prefix, &verified);
            plan.chunks().len().saturating_sub(present)
        };
        if missing == 0 {
            let path = self.finish_download(track)?;
            return Ok(BatchAccepted {
                accepted: Accepted::Completed(path),
                refused,
            });
        }
        Ok(BatchAccepted {
            accepted: Accepted::Pending { missing },
            refused,
        })
    }

    /// How many distinct chunks of `track` are missing, from the kept count
    /// when there is one.
    fn missing_count(&self, track: TrackId, plan: &DownloadPlan) -> Result<usize, DownloadError> {
        if let Some(&present) = self.present_counts().get(&track) {
            return Ok(plan.chunks().len().saturating_sub(present));
        }
        Ok(plan.missing(&self.present(track)?).len())
    }

    /// The distinct chunks `track` still needs, in file order. Empty when the
    /// library holds the track already.
    pub fn missing_chunks(&self, track: TrackId) -> Result<Vec<ChunkId>, DownloadError> {
        let plan = match self.plan(track) {
            Ok(plan) => plan,
            Err(DownloadError::NotStarted(_)) if !self.track_paths(track)?.is_empty() => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        Ok(plan.missing(&self.present(track)?))
    }

    /// Gives up a download: forgets it and deletes its staging file.
    pub fn cancel_download(&self, track: TrackId) -> Result<(), DownloadError> {
        let _guard = self.finish_guard();
        let txn = self.inner.db.begin_write().map_err(StoreError::from)?;
        remove_record(&txn, track)?;
        self.clear_present(&txn, track)?;
        txn.commit().map_err(StoreError::from)?;
        self.forget_plan(track);
        remove_if_exists(&self.staging_path(track))
            .map_err(DownloadError::io("removing the staging file"))?;
        Ok(())
    }

    /// Completes a download whose chunks are all present: verifies the whole
    /// file, links it into the music folder and indexes it. Returns the path
    /// of the track's file. Called by [`Library::accept_chunk`] on the last
    /// chunk and by recovery; safe to call again.
    pub fn finish_download(&self, track: TrackId) -> Result<PathBuf, DownloadError> {
        let _guard = self.finish_guard();
        let Some(record) = self.download_record(track)? else {
            return self
                .track_paths(track)?
                .into_iter()
                .next()
                .ok_or(DownloadError::NotStarted(track));
        };
        let (meta, chunks) = match record.state {
            DownloadState::Finishing { meta, chunks } => (*meta, chunks),
            DownloadState::Fetching => {
                let missing = self.missing_chunks(track)?.len();
                if missing > 0 {
                    return Err(DownloadError::Incomplete { track, missing });
                }
                let staging = self.staging_path(track);
                let checked = match self.prefix_verdict(track) {
                    Some(checked) => checked,
                    None => {
                        // No check ran over the whole file as it arrived
                        // (lost with a restart, or broken): read it back.
                        self.inner.staged_rereads.fetch_add(1, Ordering::Relaxed);
                        check_staged(&staging, &record.manifest)
                            .map_err(DownloadError::io("reading the staging file"))?
                    }
                };
                let chunks = match checked {
                    // Every chunk was verified against its id when it was
                    // stored, so the manifest's list is the file's.
                    StagedCheck::Canonical => record.manifest.chunks.clone(),
                    // The right bytes, cut elsewhere than FastCDC cuts them:
                    // index the file by its own cuts.
                    StagedCheck::NotCanonical => {
                        let file = File::open(&staging)
                            .map_err(DownloadError::io("opening the staging file"))?;
                        let digest = chunking::digest(file).map_err(|e| match e {
                            chunking::DigestError::Io(source) => DownloadError::Io {
                                context: "reading the staging file".to_owned(),
                                source,
                            },
                            chunking::DigestError::TooLarge => DownloadError::TrackMismatch(track),
                        })?;
                        if digest.track != track {
                            return Err(DownloadError::TrackMismatch(track));
                        }
                        digest.chunks
                    }
                    StagedCheck::Mismatch => {
                        tracing::warn!("assembled {track:?} does not match its id; restarting it");
                        let txn = self.inner.db.begin_write().map_err(StoreError::from)?;
                        self.clear_present(&txn, track)?;
                        txn.commit().map_err(StoreError::from)?;
                        return Err(DownloadError::TrackMismatch(track));
                    }
                };
                let given = &record.manifest.meta;
                let meta = match probe::probe_file_as(&staging, &given.extension, &given.title) {
                    Ok((meta, _)) => meta,
                    Err(e) => {
                        drop(_guard);
                        self.cancel_download(track)?;
                        return Err(DownloadError::NotAudio {
                            track,
                            reason: e.to_string(),
                        });
                    }
                };
                let record = DownloadRecord {
                    manifest: record.manifest.clone(),
                    state: DownloadState::Finishing {
                        meta: Box::new(meta.clone()),
                        chunks: chunks.clone(),
                    },
                };
                let txn = self.inner.db.begin_write().map_err(StoreError::from)?;
                put_record(&txn, track, &record)?;
                txn.commit().map_err(StoreError::from)?;
                (meta, chunks)
            }
        };
        self.link_into_music(track, record.manifest.size, meta, chunks)
    }

    /// The `Finishing` phase: link, index, forget the download, unlink the
    /// staging name. Every step is safe to repeat after a crash.
    fn link_into_music(
        &self,
        track: TrackId,
        size: u64,
        meta: TrackMeta,
        chunks: Vec<ChunkRef>,
    ) -> Result<PathBuf, DownloadError> {
        let staging = self.staging_path(track);
        let name = FileName::for_track(meta.artist.as_deref(), &meta.title, &meta.extension);
        let music = self.inner.music_dir.clone();
        let mut placed = None;
        for n in 1..=MAX_NAME_CANDIDATES {
            let candidate = music.join(name.candidate(n));
            if candidate.exists() {
                // Ours from an attempt a crash interrupted? Then reuse it.
                if holds_track(&candidate, size, track) {
                    placed = Some(candidate);
                    break;
                }
                continue;
            }
            if !staging.exists() {
                break;
            }
            match link_no_clobber(&staging, &candidate, &music, track) {
                Ok(()) => {
                    placed = Some(candidate);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(DownloadError::io("moving the track into the music folder")(
                        e,
                    ));
                }
            }
        }
        let Some(path) = placed else {
            if !staging.exists() {
                // Neither the staging file nor a linked copy: start over.
                tracing::warn!("download of {track:?} lost its staging file; restarting it");
                let txn = self.inner.db.begin_write().map_err(StoreError::from)?;
                let record = self.download_record(track)?;
                if let Some(mut record) = record {
                    self.create_staging(track, size)?;
                    record.state = DownloadState::Fetching;
                    put_record(&txn, track, &record)?;
                }
                self.clear_present(&txn, track)?;
                txn.commit().map_err(StoreError::from)?;
                return Err(DownloadError::TrackMismatch(track));
            }
            return Err(DownloadError::Io {
                context: format!("no free file name for {}", name.candidate(1)),
                source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            });
        };
        sync_dir(&music).map_err(DownloadError::io("syncing the music folder"))?;
        let file_meta = std::fs::metadata(&path)
            .map_err(DownloadError::io("reading the downloaded file's metadata"))?;
        let manifest = Manifest {
            track,
            size,
            chunks,
            meta,
        };
        let record = FileRecord {
            size,
            mtime_ns: mtime_ns(&file_meta),
            track: Some(track),
            skipped: None,
        };
        // The picture is read from the placed file: a crash between the
        // phases keeps only the probed tags in the download record.
        let cover = probe::probe_file_as(&path, &manifest.meta.extension, &manifest.meta.title)
            .ok()
            .and_then(|(_, cover)| cover);
        let txn = self.inner.db.begin_write().map_err(StoreError::from)?;
        {
            let mut tables = IndexTables::open(&txn)?;
            tables.link_file(&path, &record, Some(&manifest), cover.as_ref())?;
            tables.finish()?;
        }
        remove_record(&txn, track)?;
        self.clear_present(&txn, track)?;
        txn.commit().map_err(StoreError::from)?;
        self.forget_plan(track);
        remove_if_exists(&staging).map_err(DownloadError::io("removing the staging file"))?;
        tracing::info!(path = %path.display(), "download of {track:?} complete");
        Ok(path)
    }

    /// On open: finish downloads a crash left `Finishing`, give every
    /// `Fetching` download its staging file back, delete orphaned staging
    /// files.
    pub(crate) fn recover_downloads(&self) -> Result<(), crate::error::OpenError> {
        let mut known = HashSet::new();
        for track in self.downloads()? {
            known.insert(self.staging_path(track));
            let Some(record) = self.download_record(track).map_err(store_to_open)? else {
                continue;
            };
            let recovered = match record.state {
                DownloadState::Finishing { .. } => self.finish_download(track).map(drop),
                DownloadState::Fetching => self.ensure_staging(track, record.manifest.size),
            };
            // A download that cannot be recovered now (say, the music folder
            // is not writable) stays as it is and is retried on the next
            // open; it must not keep the library from opening.
            if let Err(e) = recovered {
                tracing::warn!("cannot recover the download of {track:?} yet: {e}");
            }
        }
        if let Ok(entries) = std::fs::read_dir(&self.inner.staging_dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if !known.contains(&path) {
                    tracing::info!(path = %path.display(), "removing orphaned staging file");
                    if let Err(e) = remove_if_exists(&path) {
                        tracing::warn!(path = %path.display(), "cannot remove: {e}");
                    }
                }
            }
        }
        Ok(())
    }

    /// A `Fetching` download whose staging file is gone or the wrong length
    /// starts over with nothing present.
    fn ensure_staging(&self, track: TrackId, size: u64) -> Result<(), DownloadError> {
        let path = self.staging_path(track);
        let ok = std::fs::metadata(&path).is_ok_and(|m| m.len() == size);
        if ok {
            return Ok(());
        }
        tracing::warn!("staging file of {track:?} is missing or damaged; restarting it");
        let txn = self.inner.db.begin_write().map_err(StoreError::from)?;
        self.create_staging(track, size)?;
        self.clear_present(&txn, track)?;
        txn.commit().map_err(StoreError::from)?;
        Ok(())
    }

    fn create_staging(&self, track: TrackId, size: u64) -> Result<(), DownloadError> {
        let path = self.staging_path(track);
        let file = File::create(&path).map_err(DownloadError::io("creating the staging file"))?;
        file.set_len(size)
            .and_then(|()| file.sync_all())
            .map_err(DownloadError::io("sizing the staging file"))?;
        sync_dir(&self.inner.staging_dir).map_err(DownloadError::io("syncing the staging folder"))
    }

    pub(crate) fn staging_path(&self, track: TrackId) -> PathBuf {
        self.inner
            .staging_dir
            .join(format!("{}.part", track.to_hex()))
    }

    fn download_record(&self, track: TrackId) -> Result<Option<DownloadRecord>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let downloads = txn.open_table(DOWNLOADS)?;
        match downloads.get(track.as_bytes())? {
            Some(v) => Ok(Some(decode(v.value(), "download record")?)),
            None => Ok(None),
        }
    }

    /// The plan of a download in progress, cached.
    fn plan(&self, track: TrackId) -> Result<Arc<DownloadPlan>, DownloadError> {
        if let Some(plan) = self.plans().get(&track) {
            return Ok(plan.clone());
        }
        let record = self
            .download_record(track)?
            .ok_or(DownloadError::NotStarted(track))?;
        let plan = Arc::new(DownloadPlan::new(&record.manifest));
        self.plans().insert(track, plan.clone());
        Ok(plan)
    }

    fn forget_plan(&self, track: TrackId) {
        self.plans().remove(&track);
    }

    fn plans(&self) -> std::sync::MutexGuard<'_, HashMap<TrackId, Arc<DownloadPlan>>> {
        // A panic while holding this lock cannot leave the cache inconsistent:
        // every entry is a complete plan.
        self.inner
            .plans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn finish_guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner
            .finish_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets every present chunk of `track` in `txn`. The kept count is
    /// dropped while `txn` is open: `accept_chunks` takes the counts lock
    /// only while holding the (exclusive) write transaction and keeps it
    /// until it has stored its new count, so no stale count survives a clear.
    fn clear_present(&self, txn: &WriteTransaction, track: TrackId) -> Result<(), StoreError> {
        let mut table = txn.open_table(DOWNLOAD_CHUNKS)?;
        table.retain_in(
            (track.as_bytes(), &[0u8; 32])..=(track.as_bytes(), &[0xffu8; 32]),
            |_, _| false,
        )?;
        self.present_counts().remove(&track);
        self.prefixes().remove(&track);
        Ok(())
    }

    fn present_counts(&self) -> std::sync::MutexGuard<'_, HashMap<TrackId, usize>> {
        // Entries are written whole; a panic cannot leave a torn one.
        self.inner
            .present_counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn present(&self, track: TrackId) -> Result<HashSet<ChunkId>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        present_of(&txn.open_table(DOWNLOAD_CHUNKS)?, track)
    }

    /// How many downloads this library finished by reading their staging
    /// file back whole, because their bytes could not be checked while they
    /// arrived (for example, [`Library::finish_download`] called on a
    /// download no chunk was accepted for since the library was opened). A
    /// diagnostic: downloads completed through [`Library::accept_chunks`]
    /// are checked as they arrive and do not count.
    pub fn staged_rereads(&self) -> u64 {
        self.inner.staged_rereads.load(Ordering::Relaxed)
    }

    fn prefixes(&self) -> std::sync::MutexGuard<'_, HashMap<TrackId, Arc<Mutex<VerifiedPrefix>>>> {
        // Entries are inserted and removed whole.
        self.inner
            .prefixes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The prefix check of `track`, created empty if there is none. Only
    /// call while holding a write transaction that sees the download
    /// recorded (see `Inner::prefixes`).
    fn prefix_for(&self, track: TrackId) -> Arc<Mutex<VerifiedPrefix>> {
        self.prefixes()
            .entry(track)
            .or_insert_with(|| Arc::new(Mutex::new(VerifiedPrefix::new())))
            .clone()
    }

    /// The verdict of `track`'s prefix check if it covered the whole file.
    fn prefix_verdict(&self, track: TrackId) -> Option<StagedCheck> {
        let prefix = self.prefixes().get(&track)?.clone();
        lock_prefix(&prefix).verdict()
    }

    /// Feeds `track`'s prefix check every chunk that now continues its
    /// contiguous present prefix: from `in_memory` (verified bytes of the
    /// batch just stored) where it is there, otherwise read back from the
    /// staging file if the database has the chunk present. Stops at the
    /// first chunk that is not present yet; a later batch goes on from
    /// there. A thread that finds the check busy waits for it, so the call
    /// that stores the last chunk finds every chunk fed. Failing to read
    /// back breaks the check (the finish then reads the file itself); the
    /// batch stays stored either way.
    fn advance_prefix(
        &self,
        track: TrackId,
        plan: &DownloadPlan,
        prefix: &Mutex<VerifiedPrefix>,
        in_memory: &HashMap<ChunkId, &[u8]>,
    ) {
        let mut state = lock_prefix(prefix);
        let chunks = plan.sequence();
        let mut present = None;
        let mut file = None;
        let mut buf = Vec::new();
        while let Some((offset, chunk)) = state.next_chunk(chunks) {
            if let Some(bytes) = in_memory.get(&chunk.id) {
                state.feed(chunks, track, bytes);
                continue;
            }
            let fed = self.read_present(track, offset, chunk, &mut present, &mut file, &mut buf);
            match fed {
                Ok(true) => state.feed(chunks, track, &buf),
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!("cannot check {track:?} as it arrives: {e}");
                    state.mark_broken();
                    break;
                }
            }
        }
    }

    /// Reads `chunk` (at `offset`) back from `track`'s staging file into
    /// `buf` if the database has it present; `Ok(false)` if not. The read
    /// transaction and the file are opened on first use and kept.
    fn read_present(
        &self,
        track: TrackId,
        offset: u64,
        chunk: &ChunkRef,
        present: &mut Option<PresentTable>,
        file: &mut Option<File>,
        buf: &mut Vec<u8>,
    ) -> Result<bool, DownloadError> {
        let table = match present {
            Some(table) => table,
            None => {
                let txn = self.inner.db.begin_read().map_err(StoreError::from)?;
                let table = txn.open_table(DOWNLOAD_CHUNKS).map_err(StoreError::from)?;
                present.insert(table)
            }
        };
        let known = table
            .get((track.as_bytes(), chunk.id.as_bytes()))
            .map_err(StoreError::from)?
            .is_some();
        if !known {
            return Ok(false);
        }
        // Invariant 4: a present chunk's bytes are in the staging file.
        let file = match file {
            Some(file) => file,
            None => file.insert(
                File::open(self.staging_path(track))
                    .map_err(DownloadError::io("opening the staging file"))?,
            ),
        };
        buf.clear();
        buf.resize(chunk.len as usize, 0);
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(buf))
            .map_err(DownloadError::io("reading the staging file back"))?;
        Ok(true)
    }
}

/// [`DOWNLOAD_CHUNKS`] opened for reading.
type PresentTable = redb::ReadOnlyTable<(&'static [u8; 32], &'static [u8; 32]), ()>;

/// Locks a prefix check. A panic while feeding may have left it torn, so a
/// poisoned one is marked broken rather than trusted.
fn lock_prefix(prefix: &Mutex<VerifiedPrefix>) -> MutexGuard<'_, VerifiedPrefix> {
    match prefix.lock() {
        Ok(state) => state,
        Err(poisoned) => {
            let mut state = poisoned.into_inner();
            state.mark_broken();
            state
        }
    }
}

/// The chunks of `track` recorded as present in `table`.
fn present_of(
    table: &impl ReadableTable<(&'static [u8; 32], &'static [u8; 32]), ()>,
    track: TrackId,
) -> Result<HashSet<ChunkId>, StoreError> {
    let mut out = HashSet::new();
    for row in table.range((track.as_bytes(), &[0u8; 32])..=(track.as_bytes(), &[0xffu8; 32]))? {
        out.insert(ChunkId(*row?.0.value().1));
    }
    Ok(out)
}

fn is_downloading(txn: &WriteTransaction, track: TrackId) -> Result<bool, StoreError> {
    Ok(txn.open_table(DOWNLOADS)?.get(track.as_bytes())?.is_some())
}

fn put_record(
    txn: &WriteTransaction,
    track: TrackId,
    record: &DownloadRecord,
) -> Result<(), StoreError> {
    txn.open_table(DOWNLOADS)?
        .insert(track.as_bytes(), encode(record).as_slice())?;
    Ok(())
}

fn remove_record(txn: &WriteTransaction, track: TrackId) -> Result<(), StoreError> {
    txn.open_table(DOWNLOADS)?.remove(track.as_bytes())?;
    Ok(())
}

fn store_to_open(e: StoreError) -> crate::error::OpenError {
    crate::error::OpenError::Store(e)
}

/// Reads the staging file at `path` back and checks it against `manifest`:
/// the whole-file BLAKE3 and FastCDC's cut points, each computed on its own
/// thread over its own read of the file (both read the same page cache),
/// so the check takes about as long as the slower of the two rather than
/// their sum. The chunks themselves are not hashed again: each was
/// verified against its id before it was written (see `accept_chunks`).
fn check_staged(path: &Path, manifest: &Manifest) -> std::io::Result<StagedCheck> {
    let (hash, cuts) = std::thread::scope(|scope| {
        let cuts = scope.spawn(|| cuts_match(path, manifest));
        let hash = hash_matches(path, manifest.size, manifest.track);
        (hash, cuts.join())
    });
    let cuts = cuts.map_err(|_| std::io::Error::other("the cut-point scan panicked"))?;
    Ok(match (hash?, cuts?) {
        (false, _) => StagedCheck::Mismatch,
        (true, true) => StagedCheck::Canonical,
        (true, false) => StagedCheck::NotCanonical,
    })
}

/// Read size of [`check_staged`]'s two passes.
const CHECK_BUFFER_LEN: usize = 1024 * 1024;

/// Whether the file at `path` is `size` bytes long and hashes to `track`.
fn hash_matches(path: &Path, size: u64, track: TrackId) -> std::io::Result<bool> {
    let file = File::open(path)?;
    if file.metadata()?.len() != size {
        return Ok(false);
    }
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; CHECK_BUFFER_LEN];
    let mut reader = std::io::Read::take(file, size);
    loop {
        let n = match std::io::Read::read(&mut reader, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
    }
    Ok(TrackId::from(hasher.finalize()) == track)
}

/// Whether FastCDC cuts the file at `path` exactly into `manifest`'s chunk
/// lengths (stops at the first difference).
fn cuts_match(path: &Path, manifest: &Manifest) -> std::io::Result<bool> {
    let mut reader = std::io::Read::take(File::open(path)?, manifest.size);
    let mut want = manifest.chunks.iter().map(|c| c.len);
    let mut buf = vec![0u8; CHECK_BUFFER_LEN];
    let mut filled = 0usize;
    let mut eof = false;
    while !eof {
        while filled < buf.len() {
            match std::io::Read::read(&mut reader, &mut buf[filled..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let (lens, covered) = chunking::plan_cuts(&buf[..filled], eof);
        if lens.into_iter().any(|len| want.next() != Some(len)) {
            return Ok(false);
        }
        buf.copy_within(covered..filled, 0);
        filled -= covered;
    }
    Ok(want.next().is_none())
}

/// Whether the file at `path` has `size` bytes that hash to `track`.
fn holds_track(path: &Path, size: u64, track: TrackId) -> bool {
    if std::fs::metadata(path).map(|m| m.len()).ok() != Some(size) {
        return false;
    }
    File::open(path)
        .ok()
        .and_then(|f| chunking::digest(f).ok())
        .is_some_and(|d| d.track == track)
}

/// Makes `to` a name of `from`'s bytes without ever replacing an existing
/// file: a hard link, or where the folders are on different file systems, a
/// synced copy under a temporary name that is then hard-linked.
fn link_no_clobber(from: &Path, to: &Path, dir: &Path, track: TrackId) -> std::io::Result<()> {
    match std::fs::hard_link(from, to) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(e),
        Err(e) => tracing::debug!("hard link failed ({e}); copying instead"),
    }
    let tmp = dir.join(format!(".{}.firefly-tmp", track.to_hex()));
    std::fs::copy(from, &tmp)?;
    File::open(&tmp)?.sync_all()?;
    let linked = std::fs::hard_link(&tmp, to);
    remove_if_exists(&tmp)?;
    linked
}

fn remove_if_exists(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Makes a folder's entries (a new or removed name) durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A library in `dir` with a download of `reference.wav` whose bytes are
    /// all in the staging file and whose record says `Finishing`: the state
    /// a kill between recording `Finishing` and linking leaves.
    fn finishing_download(dir: &Path) -> (Manifest, Vec<u8>, String) {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/reference.wav");
        let bytes = std::fs::read(&fixture).unwrap();
        let digest = chunking::digest(&bytes[..]).unwrap();
        let meta = probe::probe_file(&fixture).unwrap();
        let manifest = Manifest {
            track: digest.track,
            size: digest.size,
            chunks: digest.chunks.clone(),
            meta: meta.clone(),
        };
        let lib = Library::open_in(dir).unwrap();
        lib.start_download(&manifest).unwrap();
        std::fs::write(lib.staging_path(manifest.track), &bytes).unwrap();
        let txn = lib.inner.db.begin_write().unwrap();
        let record = DownloadRecord {
            manifest: manifest.clone(),
            state: DownloadState::Finishing {
                meta: Box::new(meta.clone()),
                chunks: digest.chunks,
            },
        };
        put_record(&txn, manifest.track, &record).unwrap();
        txn.commit().unwrap();
        let name =
            FileName::for_track(meta.artist.as_deref(), &meta.title, &meta.extension).candidate(1);
        (manifest, bytes, name)
    }

    #[test]
    fn reopening_finishes_a_download_killed_before_the_link() {
        let tmp = tempfile::tempdir().unwrap();
        let (manifest, bytes, name) = finishing_download(tmp.path());
        let lib = Library::open_in(tmp.path()).unwrap();
        let path = lib.music_dir().join(&name);
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert_eq!(lib.track_paths(manifest.track).unwrap(), vec![path]);
        assert!(lib.downloads().unwrap().is_empty());
        assert!(!lib.staging_path(manifest.track).exists());
    }

    #[test]
    fn reopening_after_a_kill_between_link_and_commit_keeps_one_copy() {
        let tmp = tempfile::tempdir().unwrap();
        let (manifest, bytes, name) = finishing_download(tmp.path());
        let music = tmp.path().join(crate::store::MUSIC_DIR);
        let staging = tmp
            .path()
            .join(crate::store::STAGING_DIR)
            .join(format!("{}.part", manifest.track.to_hex()));
        std::fs::hard_link(&staging, music.join(&name)).unwrap();
        let lib = Library::open_in(tmp.path()).unwrap();
        assert_eq!(
            std::fs::read_dir(&music).unwrap().count(),
            1,
            "no second copy"
        );
        assert_eq!(std::fs::read(music.join(&name)).unwrap(), bytes);
        assert_eq!(
            lib.track_paths(manifest.track).unwrap(),
            vec![music.join(&name)]
        );
        assert!(!staging.exists());
    }

    /// A 16-bit stereo 44.1 kHz WAV of `frames` frames of noise.
    fn noise_wav(frames: u32, seed: u64) -> Vec<u8> {
        use rand::{RngCore, SeedableRng};
        let data_len = frames * 4;
        let mut out = Vec::with_capacity(44 + data_len as usize);
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data_len).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes()); // PCM
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&44_100u32.to_le_bytes());
        out.extend_from_slice(&(44_100u32 * 4).to_le_bytes());
        out.extend_from_slice(&4u16.to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&data_len.to_le_bytes());
        let mut pcm = vec![0u8; data_len as usize];
        rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut pcm);
        out.extend_from_slice(&pcm);
        out
    }

    /// The manifest and bytes of a noise WAV of about 1.4 MB, and a
    /// library in `dir` that is downloading it with nothing present.
    fn noise_download(dir: &Path) -> (Library, Manifest, Vec<u8>) {
        let bytes = noise_wav(352_800, 7);
        let wav = dir.join("noise.wav");
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(&wav, &bytes).unwrap();
        let digest = chunking::digest(&bytes[..]).unwrap();
        let manifest = Manifest {
            track: digest.track,
            size: digest.size,
            chunks: digest.chunks,
            meta: probe::probe_file(&wav).unwrap(),
        };
        std::fs::remove_file(&wav).unwrap();
        assert!(manifest.chunks.len() >= 4, "enough chunks to reorder");
        let lib = Library::open_in(dir).unwrap();
        lib.start_download(&manifest).unwrap();
        (lib, manifest, bytes)
    }

    /// The bytes of `manifest`'s chunk number `i`.
    fn chunk_of<'a>(manifest: &Manifest, bytes: &'a [u8], i: usize) -> (ChunkId, &'a [u8]) {
        let (offset, chunk) = manifest.offsets().nth(i).unwrap();
        let at = offset as usize;
        (chunk.id, &bytes[at..at + chunk.len as usize])
    }

    fn prefix_offset(lib: &Library, track: TrackId) -> Option<u64> {
        let prefix = lib.prefixes().get(&track)?.clone();
        Some(lock_prefix(&prefix).offset())
    }

    #[test]
    fn the_prefix_check_follows_the_contiguous_present_chunks() {
        let tmp = tempfile::tempdir().unwrap();
        let (lib, manifest, bytes) = noise_download(tmp.path());
        let track = manifest.track;
        let len = |i: usize| u64::from(manifest.chunks[i].len);
        lib.accept_chunks(track, &[chunk_of(&manifest, &bytes, 2)])
            .unwrap();
        lib.accept_chunks(track, &[chunk_of(&manifest, &bytes, 3)])
            .unwrap();
        assert_eq!(prefix_offset(&lib, track), Some(0), "chunk 0 is missing");
        lib.accept_chunks(track, &[chunk_of(&manifest, &bytes, 0)])
            .unwrap();
        assert_eq!(prefix_offset(&lib, track), Some(len(0)));
        // Chunk 1 from memory, 2 and 3 read back from the staging file.
        lib.accept_chunks(track, &[chunk_of(&manifest, &bytes, 1)])
            .unwrap();
        assert_eq!(
            prefix_offset(&lib, track),
            Some(len(0) + len(1) + len(2) + len(3))
        );
        // Cancelling drops the check with the download.
        lib.cancel_download(track).unwrap();
        assert_eq!(prefix_offset(&lib, track), None);
        assert!(lib.prefixes().is_empty());
    }

    #[test]
    fn a_prefix_check_a_panic_left_locked_is_not_trusted() {
        let chunks = [ChunkRef {
            id: ChunkId::of(b"x"),
            len: 1,
        }];
        let prefix = Mutex::new(VerifiedPrefix::new());
        let panicked = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let _held = prefix.lock().unwrap();
                    panic!("a panic while feeding");
                })
                .join()
        });
        assert!(panicked.is_err());
        let state = lock_prefix(&prefix);
        assert_eq!(state.next_chunk(&chunks), None, "nothing more is fed");
        assert_eq!(state.verdict(), None, "the finish reads the file back");
    }

    #[test]
    fn a_finished_download_leaves_no_prefix_check_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let (lib, manifest, bytes) = noise_download(tmp.path());
        let all: Vec<(ChunkId, &[u8])> = (0..manifest.chunks.len())
            .map(|i| chunk_of(&manifest, &bytes, i))
            .collect();
        let stored = lib.accept_chunks(manifest.track, &all).unwrap();
        assert!(matches!(stored.accepted, Accepted::Completed(_)));
        assert!(lib.prefixes().is_empty());
        assert_eq!(lib.staged_rereads(), 0);
    }

    #[test]
    fn a_broken_prefix_check_falls_back_to_reading_the_file_back() {
        let tmp = tempfile::tempdir().unwrap();
        let (lib, manifest, bytes) = noise_download(tmp.path());
        let track = manifest.track;
        lib.accept_chunks(track, &[chunk_of(&manifest, &bytes, 0)])
            .unwrap();
        let prefix = lib.prefixes().get(&track).unwrap().clone();
        lock_prefix(&prefix).mark_broken();
        let rest: Vec<(ChunkId, &[u8])> = (1..manifest.chunks.len())
            .map(|i| chunk_of(&manifest, &bytes, i))
            .collect();
        let Accepted::Completed(path) = lib.accept_chunks(track, &rest).unwrap().accepted else {
            panic!("the rest completes the track");
        };
        assert_eq!(std::fs::read(path).unwrap(), bytes);
        assert_eq!(lib.staged_rereads(), 1);
    }

    #[test]
    fn finishing_a_download_with_no_prefix_check_reads_the_file_back() {
        let tmp = tempfile::tempdir().unwrap();
        let (manifest, bytes) = {
            let (lib, manifest, bytes) = noise_download(tmp.path());
            // All bytes in place and every chunk present, as a kill right
            // after the last commit leaves it, with no check in memory.
            std::fs::write(lib.staging_path(manifest.track), &bytes).unwrap();
            let txn = lib.inner.db.begin_write().unwrap();
            {
                let mut table = txn.open_table(DOWNLOAD_CHUNKS).unwrap();
                for c in &manifest.chunks {
                    table
                        .insert((manifest.track.as_bytes(), c.id.as_bytes()), ())
                        .unwrap();
                }
            }
            txn.commit().unwrap();
            (manifest, bytes)
        };
        let lib = Library::open_in(tmp.path()).unwrap();
        assert!(lib.missing_chunks(manifest.track).unwrap().is_empty());
        let path = lib.finish_download(manifest.track).unwrap();
        assert_eq!(std::fs::read(path).unwrap(), bytes);
        assert_eq!(lib.staged_rereads(), 1);
        assert_eq!(
            lib.manifest(manifest.track).unwrap().unwrap().chunks,
            manifest.chunks
        );
    }

    fn manifest(ids: &[u8], len: u32) -> Manifest {
        Manifest {
            track: TrackId([9; 32]),
            size: u64::from(len) * ids.len() as u64,
            chunks: ids
                .iter()
                .map(|&i| ChunkRef {
                    id: ChunkId([i; 32]),
                    len,
                })
                .collect(),
            meta: TrackMeta::default(),
        }
    }

    #[test]
    fn repeated_chunks_have_all_their_offsets() {
        let plan = DownloadPlan::new(&manifest(&[1, 2, 1, 3, 1], 10));
        assert_eq!(
            plan.chunks(),
            &[ChunkId([1; 32]), ChunkId([2; 32]), ChunkId([3; 32])]
        );
        assert_eq!(
            plan.places(ChunkId([1; 32])),
            Some((10, &[0u64, 20, 40][..]))
        );
        assert_eq!(plan.places(ChunkId([7; 32])), None);
    }

    #[test]
    fn missing_keeps_file_order_and_ignores_strangers() {
        let plan = DownloadPlan::new(&manifest(&[5, 4, 3, 2, 1], 10));
        let present: HashSet<ChunkId> = [ChunkId([4; 32]), ChunkId([2; 32]), ChunkId([8; 32])]
            .into_iter()
            .collect();
        assert_eq!(
            plan.missing(&present),
            vec![ChunkId([5; 32]), ChunkId([3; 32]), ChunkId([1; 32])]
        );
        let all: HashSet<ChunkId> = plan.chunks().iter().copied().collect();
        assert!(plan.missing(&all).is_empty());
    }
}
