//! The [`Library`] handle: the redb database of one node, and the queries and
//! changes on it that are not scanning or downloading.
//!
//! A [`Library`] is cheap to clone and may be used from many threads (async
//! code calls it through `spawn_blocking`: every method blocks on disk I/O).
//! [`IndexTables`] is the one place that links and unlinks files, tracks and
//! chunk locations and appends to the version log, so the invariants listed
//! in the `tables` module are kept in one spot.

use crate::cover::Cover;
use crate::delta::{self, Answer, Changes, LogOp, net_changes};
use crate::download::DownloadPlan;
use crate::error::{OpenError, ReadChunkError, StoreError};
use crate::id::{ChunkId, CoverId, TrackId};
use crate::manifest::Manifest;
use crate::prefix::VerifiedPrefix;
use crate::tables::{
    self, CHUNK_LOCATIONS, COVER_TRACKS, COVERS, DOWNLOAD_CHUNKS, DOWNLOADS, FILES, FLOOR,
    FileRecord, LOG, LogEntry, META, SETTINGS, TRACK_COVERS, TRACK_FILES, TRACKS, VERSION, decode,
    encode, path_bytes, path_from_bytes,
};
use redb::{
    Database, MultimapTable, ReadableDatabase, ReadableMultimapTable, ReadableTable, Table,
    WriteTransaction,
};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

/// File name of the database inside the data dir.
pub const DATABASE_FILE: &str = "library.redb";
/// Folder inside the data dir for partial downloads.
pub const STAGING_DIR: &str = "staging";
/// Default music folder inside the data dir, for downloaded tracks.
pub const MUSIC_DIR: &str = "music";

/// Where a library keeps its state.
#[derive(Debug, Clone)]
pub struct LibraryConfig {
    /// The node's data dir: holds the database and the staging folder.
    pub data_dir: PathBuf,
    /// Where completed downloads go. Default: `music` inside the data dir.
    pub music_dir: Option<PathBuf>,
}

impl LibraryConfig {
    /// A config with the default music folder.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            music_dir: None,
        }
    }

    /// Sets the folder completed downloads go to.
    pub fn music_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.music_dir = Some(dir.into());
        self
    }
}

/// One track of the library and the files that hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackEntry {
    /// The manifest.
    pub manifest: Manifest,
    /// Files with exactly these bytes (at least one).
    pub paths: Vec<PathBuf>,
}

/// A handle on a node's library. Clone it freely; all clones share one
/// database.
#[derive(Clone)]
pub struct Library {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library")
            .field("data_dir", &self.inner.data_dir)
            .field("music_dir", &self.inner.music_dir)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) db: Database,
    pub(crate) data_dir: PathBuf,
    pub(crate) music_dir: PathBuf,
    pub(crate) staging_dir: PathBuf,
    /// Download plans by track, computed once per download.
    pub(crate) plans: Mutex<HashMap<TrackId, Arc<DownloadPlan>>>,
    /// Held while a download is being finished, so it is finished once.
    pub(crate) finish_lock: Mutex<()>,
    /// How many chunks each download has present, kept per batch so storing
    /// a batch never rescans the present set. Taken only while holding a
    /// write transaction; cleared with the present set.
    pub(crate) present_counts: Mutex<HashMap<TrackId, usize>>,
    /// Each download's whole-file check over its present prefix, advanced
    /// as chunks arrive (see `prefix`). An entry is created only while
    /// holding a write transaction that sees the download recorded, and is
    /// dropped with the download's present set (`clear_present`), so an
    /// entry never outlives its download nor covers bytes of an older
    /// staging file.
    pub(crate) prefixes: Mutex<HashMap<TrackId, Arc<Mutex<VerifiedPrefix>>>>,
    /// How many downloads were finished by reading their staging file back
    /// whole (their prefix check was missing or broken).
    pub(crate) staged_rereads: AtomicU64,
    /// Held for a whole scan: two scans of one folder at once would each
    /// take the other's new files for gone ones.
    pub(crate) scan_lock: Mutex<()>,
}

impl Library {
    /// Opens (or creates) the library in `config.data_dir`, creating the
    /// folders it needs, and finishes or repairs downloads a crash
    /// interrupted.
    pub fn open(config: &LibraryConfig) -> Result<Library, OpenError> {
        let data_dir = config.data_dir.clone();
        let staging_dir = data_dir.join(STAGING_DIR);
        let music_dir = config
            .music_dir
            .clone()
            .unwrap_or_else(|| data_dir.join(MUSIC_DIR));
        for dir in [&data_dir, &staging_dir, &music_dir] {
            std::fs::create_dir_all(dir).map_err(|source| OpenError::CreateDir {
                path: dir.clone(),
                source,
            })?;
        }
        let path = data_dir.join(DATABASE_FILE);
        let db = Database::create(&path).map_err(|source| match source {
            redb::DatabaseError::DatabaseAlreadyOpen => OpenError::InUse { path: path.clone() },
            source => OpenError::Database {
                path: path.clone(),
                source,
            },
        })?;
        let library = Library {
            inner: Arc::new(Inner {
                db,
                data_dir,
                music_dir,
                staging_dir,
                plans: Mutex::new(HashMap::new()),
                finish_lock: Mutex::new(()),
                present_counts: Mutex::new(HashMap::new()),
                prefixes: Mutex::new(HashMap::new()),
                staged_rereads: AtomicU64::new(0),
                scan_lock: Mutex::new(()),
            }),
        };
        library.create_tables()?;
        library.recover_downloads()?;
        Ok(library)
    }

    /// Opens the library in `data_dir` with the default music folder.
    pub fn open_in(data_dir: impl Into<PathBuf>) -> Result<Library, OpenError> {
        Library::open(&LibraryConfig::new(data_dir))
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// The folder completed downloads go to.
    pub fn music_dir(&self) -> &Path {
        &self.inner.music_dir
    }

    /// Makes every table exist, so read transactions never meet a missing one.
    fn create_tables(&self) -> Result<(), StoreError> {
        let txn = self.inner.db.begin_write()?;
        txn.open_table(FILES)?;
        txn.open_table(TRACKS)?;
        txn.open_multimap_table(TRACK_FILES)?;
        txn.open_multimap_table(CHUNK_LOCATIONS)?;
        txn.open_table(LOG)?;
        txn.open_table(META)?;
        txn.open_table(SETTINGS)?;
        txn.open_table(DOWNLOADS)?;
        txn.open_table(DOWNLOAD_CHUNKS)?;
        txn.open_table(COVERS)?;
        txn.open_table(TRACK_COVERS)?;
        txn.open_multimap_table(COVER_TRACKS)?;
        name_covers_in_manifests(&txn)?;
        txn.commit()?;
        Ok(())
    }

    /// The cover picture of `track`, if the library holds the track and
    /// its tags had one (see [`Cover`]).
    pub fn cover(&self, track: TrackId) -> Result<Option<Cover>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let track_covers = txn.open_table(TRACK_COVERS)?;
        let Some(hash) = track_covers.get(track.as_bytes())?.map(|v| *v.value()) else {
            return Ok(None);
        };
        let covers = txn.open_table(COVERS)?;
        Ok(covers
            .get(&hash)?
            .and_then(|v| Cover::from_bytes(v.value().to_vec())))
    }

    /// The picture `cover` names, if a track this library holds shows it.
    pub fn cover_by_id(&self, cover: CoverId) -> Result<Option<Cover>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let covers = txn.open_table(COVERS)?;
        Ok(covers
            .get(cover.as_bytes())?
            .and_then(|v| Cover::from_bytes(v.value().to_vec())))
    }

    /// The tracks of this library that have a cover picture.
    pub fn tracks_with_cover(&self) -> Result<HashSet<TrackId>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let track_covers = txn.open_table(TRACK_COVERS)?;
        let mut out = HashSet::new();
        for row in track_covers.iter()? {
            out.insert(TrackId(*row?.0.value()));
        }
        Ok(out)
    }

    /// Every track with the files that hold it, ordered by track id.
    pub fn tracks(&self) -> Result<Vec<TrackEntry>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let tracks = txn.open_table(TRACKS)?;
        let track_files = txn.open_multimap_table(TRACK_FILES)?;
        let mut out = Vec::new();
        for row in tracks.iter()? {
            let (key, value) = row?;
            let manifest: Manifest = decode(value.value(), "manifest")?;
            let mut paths = Vec::new();
            for path in track_files.get(key.value())? {
                paths.push(path_from_bytes(path?.value()));
            }
            out.push(TrackEntry { manifest, paths });
        }
        Ok(out)
    }

    /// Every manifest, ordered by track id.
    pub fn manifests(&self) -> Result<Vec<Manifest>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let tracks = txn.open_table(TRACKS)?;
        let mut out = Vec::new();
        for row in tracks.iter()? {
            out.push(decode(row?.1.value(), "manifest")?);
        }
        Ok(out)
    }

    /// The manifest of `track`, if the library holds it.
    pub fn manifest(&self, track: TrackId) -> Result<Option<Manifest>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let tracks = txn.open_table(TRACKS)?;
        match tracks.get(track.as_bytes())? {
            Some(v) => Ok(Some(decode(v.value(), "manifest")?)),
            None => Ok(None),
        }
    }

    /// The files holding `track` (empty when the library does not hold it).
    pub fn track_paths(&self, track: TrackId) -> Result<Vec<PathBuf>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let track_files = txn.open_multimap_table(TRACK_FILES)?;
        let mut out = Vec::new();
        for path in track_files.get(track.as_bytes())? {
            out.push(path_from_bytes(path?.value()));
        }
        Ok(out)
    }

    /// The library version: grows by one with every track added or removed.
    pub fn version(&self) -> Result<u64, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get(VERSION)?.map(|v| v.value()).unwrap_or(0))
    }

    /// What a peer that last saw version `since` needs: the net delta, or the
    /// full list when the log no longer reaches back that far (or `since` is
    /// ahead of this library).
    pub fn changes_since(&self, since: u64) -> Result<Changes, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let current = meta.get(VERSION)?.map(|v| v.value()).unwrap_or(0);
        let floor = meta.get(FLOOR)?.map(|v| v.value()).unwrap_or(0);
        let tracks = txn.open_table(TRACKS)?;
        match delta::answer(since, current, floor) {
            Answer::UpToDate => Ok(Changes::Delta {
                from: since,
                to: current,
                added: Vec::new(),
                removed: Vec::new(),
            }),
            Answer::Full => {
                let mut manifests = Vec::new();
                for row in tracks.iter()? {
                    manifests.push(decode(row?.1.value(), "manifest")?);
                }
                Ok(Changes::Full {
                    version: current,
                    manifests,
                })
            }
            Answer::Delta => {
                let log = txn.open_table(LOG)?;
                let mut entries = Vec::new();
                for row in log.range(since + 1..)? {
                    let entry: LogEntry = decode(row?.1.value(), "log entry")?;
                    entries.push((entry.track, entry.op));
                }
                let (added_ids, removed) = net_changes(entries);
                let mut added = Vec::with_capacity(added_ids.len());
                for id in added_ids {
                    // Invariant 2 and the log: an id added and not removed
                    // since is in TRACKS; tolerate a miss rather than fail.
                    if let Some(v) = tracks.get(id.as_bytes())? {
                        added.push(decode(v.value(), "manifest")?);
                    }
                }
                Ok(Changes::Delta {
                    from: since,
                    to: current,
                    added,
                    removed,
                })
            }
        }
    }

    /// Whether the library can serve `chunk`: some file holds it, or a
    /// download in progress already has it.
    pub fn has_chunk(&self, chunk: ChunkId) -> Result<bool, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let locations = txn.open_multimap_table(CHUNK_LOCATIONS)?;
        if locations.get(chunk.as_bytes())?.next().is_some() {
            return Ok(true);
        }
        Ok(self.partial_holder(&txn, chunk)?.is_some())
    }

    /// A download in progress whose staging file holds `chunk`, and the
    /// chunk's first offset and length there.
    fn partial_holder(
        &self,
        txn: &redb::ReadTransaction,
        chunk: ChunkId,
    ) -> Result<Option<(TrackId, u64, u32)>, StoreError> {
        let downloads = txn.open_table(DOWNLOADS)?;
        let present = txn.open_table(DOWNLOAD_CHUNKS)?;
        for row in downloads.iter()? {
            let (key, value) = row?;
            let track = TrackId(*key.value());
            if present.get((track.as_bytes(), chunk.as_bytes()))?.is_none() {
                continue;
            }
            let record: tables::DownloadRecord = decode(value.value(), "download record")?;
            if let Some((offset, c)) = record.manifest.offsets().find(|(_, c)| c.id == chunk) {
                return Ok(Some((track, offset, c.len)));
            }
        }
        Ok(None)
    }

    /// `chunk` from the staging file of a download that has it, verified.
    fn read_partial(&self, chunk: ChunkId) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let Some((track, offset, len)) = self.partial_holder(&txn, chunk)? else {
            return Ok(None);
        };
        Ok(read_at(&self.staging_path(track), offset, len)
            .ok()
            .filter(|bytes| ChunkId::of(bytes) == chunk))
    }

    /// The bytes of `chunk`, read from one of its files (or the staging file
    /// of a download that has it) and verified against the id. Locations whose bytes no longer match (the file changed or
    /// vanished) are dropped, and their files marked for re-reading on the
    /// next scan; if none is left the chunk is [`ReadChunkError::Unavailable`].
    pub fn read_chunk(&self, chunk: ChunkId) -> Result<Vec<u8>, ReadChunkError> {
        let candidates: Vec<(Vec<u8>, u64, u32)> = {
            let txn = self.inner.db.begin_read().map_err(StoreError::from)?;
            let locations = txn
                .open_multimap_table(CHUNK_LOCATIONS)
                .map_err(StoreError::from)?;
            let mut out = Vec::new();
            for loc in locations.get(chunk.as_bytes()).map_err(StoreError::from)? {
                let loc = loc.map_err(StoreError::from)?;
                let (path, offset, len) = loc.value();
                out.push((path.to_vec(), offset, len));
            }
            out
        };
        if candidates.is_empty() {
            return self
                .read_partial(chunk)?
                .ok_or(ReadChunkError::NotFound(chunk));
        }
        let mut stale = Vec::new();
        let mut found = None;
        for (path, offset, len) in candidates {
            match read_at(&path_from_bytes(&path), offset, len) {
                Ok(bytes) if ChunkId::of(&bytes) == chunk => {
                    found = Some(bytes);
                    break;
                }
                Ok(_) => {
                    tracing::warn!(path = %path_from_bytes(&path).display(), "chunk {chunk:?} changed underneath");
                    stale.push((path, offset, len));
                }
                Err(e) => {
                    tracing::warn!(path = %path_from_bytes(&path).display(), "chunk {chunk:?} unreadable: {e}");
                    stale.push((path, offset, len));
                }
            }
        }
        if !stale.is_empty() {
            self.drop_locations(chunk, &stale)?;
        }
        if found.is_none() {
            found = self.read_partial(chunk)?;
        }
        found.ok_or(ReadChunkError::Unavailable(chunk))
    }

    /// Drops stale locations of `chunk` and forgets their files' (size,
    /// mtime), so the next scan re-reads them.
    fn drop_locations(
        &self,
        chunk: ChunkId,
        stale: &[(Vec<u8>, u64, u32)],
    ) -> Result<(), StoreError> {
        let txn = self.inner.db.begin_write()?;
        {
            let mut locations = txn.open_multimap_table(CHUNK_LOCATIONS)?;
            let mut files = txn.open_table(FILES)?;
            for (path, offset, len) in stale {
                locations.remove(chunk.as_bytes(), (path.as_slice(), *offset, *len))?;
                let record = match files.get(path.as_slice())? {
                    Some(v) => Some(decode::<FileRecord>(v.value(), "file record")?),
                    None => None,
                };
                if let Some(mut record) = record {
                    record.mtime_ns = 0;
                    files.insert(path.as_slice(), encode(&record).as_slice())?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// A setting stored with [`Library::put_setting`].
    pub fn get_setting(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let settings = txn.open_table(SETTINGS)?;
        Ok(settings.get(name)?.map(|v| v.value().to_vec()))
    }

    /// Stores a setting (e.g. the node's identity key), durably.
    pub fn put_setting(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let txn = self.inner.db.begin_write()?;
        txn.open_table(SETTINGS)?.insert(name, value)?;
        txn.commit()?;
        Ok(())
    }
}

/// Reads `len` bytes at `offset` of the file at `path`.
fn read_at(path: &Path, offset: u64, len: u32) -> std::io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    // Read into spare capacity: zero-filling first would be one more pass
    // over every chunk served.
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(u64::from(len)).read_to_end(&mut bytes)?;
    if bytes.len() != len as usize {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(bytes)
}

/// Nanoseconds since the epoch of a file's mtime; 0 when unknown.
pub(crate) fn mtime_ns(metadata: &std::fs::Metadata) -> u64 {
    metadata
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The tables a change to the index touches, opened once per transaction.
pub(crate) struct IndexTables<'t> {
    files: Table<'t, &'static [u8], &'static [u8]>,
    tracks: Table<'t, &'static [u8; 32], &'static [u8]>,
    track_files: MultimapTable<'t, &'static [u8; 32], &'static [u8]>,
    locations: MultimapTable<'t, &'static [u8; 32], (&'static [u8], u64, u32)>,
    log: Table<'t, u64, &'static [u8]>,
    meta: Table<'t, &'static str, u64>,
    covers: Table<'t, &'static [u8; 32], &'static [u8]>,
    track_covers: Table<'t, &'static [u8; 32], &'static [u8; 32]>,
    cover_tracks: MultimapTable<'t, &'static [u8; 32], &'static [u8; 32]>,
    version: u64,
}

impl<'t> IndexTables<'t> {
    /// Opens the tables in `txn`.
    pub(crate) fn open(txn: &'t WriteTransaction) -> Result<Self, StoreError> {
        let meta = txn.open_table(META)?;
        let version = meta.get(VERSION)?.map(|v| v.value()).unwrap_or(0);
        Ok(Self {
            files: txn.open_table(FILES)?,
            tracks: txn.open_table(TRACKS)?,
            track_files: txn.open_multimap_table(TRACK_FILES)?,
            locations: txn.open_multimap_table(CHUNK_LOCATIONS)?,
            log: txn.open_table(LOG)?,
            meta,
            covers: txn.open_table(COVERS)?,
            track_covers: txn.open_table(TRACK_COVERS)?,
            cover_tracks: txn.open_multimap_table(COVER_TRACKS)?,
            version,
        })
    }

    /// The record of `path`, if any.
    pub(crate) fn file(&self, path: &[u8]) -> Result<Option<FileRecord>, StoreError> {
        match self.files.get(path)? {
            Some(v) => Ok(Some(decode(v.value(), "file record")?)),
            None => Ok(None),
        }
    }

    /// Records `path` as holding `manifest`'s track (or, with `None`, as a
    /// file that is not a track), replacing whatever it held before.
    /// `cover` is the picture in the file's tags; a track that has none yet
    /// takes it (invariant 5).
    pub(crate) fn link_file(
        &mut self,
        path: &Path,
        record: &FileRecord,
        manifest: Option<&Manifest>,
        cover: Option<&Cover>,
    ) -> Result<(), StoreError> {
        self.link_file_only(path, record, manifest)?;
        if let (Some(m), Some(cover)) = (manifest, cover) {
            self.set_cover(m.track, cover)?;
        }
        Ok(())
    }

    fn link_file_only(
        &mut self,
        path: &Path,
        record: &FileRecord,
        manifest: Option<&Manifest>,
    ) -> Result<(), StoreError> {
        let key = path_bytes(path);
        if let Some(old) = self.file(key)? {
            if let Some(m) = manifest.filter(|m| old.track == Some(m.track)) {
                // Same bytes, only the mtime moved. Put back any location
                // `read_chunk` dropped meanwhile (inserting is idempotent).
                self.files.insert(key, encode(record).as_slice())?;
                for (offset, chunk) in m.offsets() {
                    self.locations
                        .insert(chunk.id.as_bytes(), (key, offset, chunk.len))?;
                }
                return Ok(());
            }
            self.unlink_file(path)?;
        }
        self.files.insert(key, encode(record).as_slice())?;
        let Some(manifest) = manifest else {
            return Ok(());
        };
        let track = manifest.track.as_bytes();
        if self.tracks.get(track)?.is_none() {
            self.tracks.insert(track, encode(manifest).as_slice())?;
            self.append_log(manifest.track, LogOp::Added)?;
        }
        self.track_files.insert(track, key)?;
        for (offset, chunk) in manifest.offsets() {
            self.locations
                .insert(chunk.id.as_bytes(), (key, offset, chunk.len))?;
        }
        Ok(())
    }

    /// Forgets `path`: its chunk locations, its link to its track, and the
    /// track itself when no other file holds it.
    pub(crate) fn unlink_file(&mut self, path: &Path) -> Result<(), StoreError> {
        let key = path_bytes(path);
        let Some(record) = self.file(key)? else {
            return Ok(());
        };
        self.files.remove(key)?;
        let Some(track) = record.track else {
            return Ok(());
        };
        let manifest: Option<Manifest> = match self.tracks.get(track.as_bytes())? {
            Some(v) => Some(decode(v.value(), "manifest")?),
            None => None,
        };
        if let Some(manifest) = &manifest {
            for (offset, chunk) in manifest.offsets() {
                self.locations
                    .remove(chunk.id.as_bytes(), (key, offset, chunk.len))?;
            }
        }
        self.track_files.remove(track.as_bytes(), key)?;
        if self.track_files.get(track.as_bytes())?.next().is_none() {
            self.tracks.remove(track.as_bytes())?;
            self.drop_cover(track)?;
            if manifest.is_some() {
                self.append_log(track, LogOp::Removed)?;
            }
        }
        Ok(())
    }

    /// Gives `track` (in [`TRACKS`]) `cover` unless it has one (invariant 5).
    fn set_cover(&mut self, track: TrackId, cover: &Cover) -> Result<(), StoreError> {
        let id = track.as_bytes();
        if self.tracks.get(id)?.is_none() || self.track_covers.get(id)?.is_some() {
            return Ok(());
        }
        let hash = cover.hash();
        if self.covers.get(&hash)?.is_none() {
            self.covers.insert(&hash, cover.bytes.as_slice())?;
        }
        self.track_covers.insert(id, &hash)?;
        self.cover_tracks.insert(&hash, id)?;
        Ok(())
    }

    /// Forgets `track`'s cover, and the picture when no track shows it any
    /// more (invariant 5).
    fn drop_cover(&mut self, track: TrackId) -> Result<(), StoreError> {
        let id = track.as_bytes();
        let Some(hash) = self.track_covers.remove(id)?.map(|v| *v.value()) else {
            return Ok(());
        };
        self.cover_tracks.remove(&hash, id)?;
        if self.cover_tracks.get(&hash)?.next().is_none() {
            self.covers.remove(&hash)?;
        }
        Ok(())
    }

    /// Every file record whose path starts with `root` (component-wise).
    pub(crate) fn files_under(
        &self,
        root: &Path,
    ) -> Result<Vec<(PathBuf, FileRecord)>, StoreError> {
        let prefix = path_bytes(root);
        let mut out = Vec::new();
        for row in self.files.range(prefix..)? {
            let (k, v) = row?;
            let key = k.value();
            if !key.starts_with(prefix) {
                break;
            }
            let path = path_from_bytes(key);
            if path.starts_with(root) {
                out.push((path, decode(v.value(), "file record")?));
            }
        }
        Ok(out)
    }

    fn append_log(&mut self, track: TrackId, op: LogOp) -> Result<(), StoreError> {
        self.version += 1;
        self.log
            .insert(self.version, encode(&LogEntry { track, op }).as_slice())?;
        Ok(())
    }

    /// Writes the version back and trims the log to [`delta::LOG_KEEP`]
    /// entries (invariant 3). Call once before committing.
    pub(crate) fn finish(mut self) -> Result<(), StoreError> {
        self.meta.insert(VERSION, self.version)?;
        let floor = self.meta.get(FLOOR)?.map(|v| v.value()).unwrap_or(0);
        let drop = delta::entries_to_drop(self.version, floor);
        if drop > 0 {
            let new_floor = floor + drop;
            for version in floor + 1..=new_floor {
                self.log.remove(version)?;
            }
            self.meta.insert(FLOOR, new_floor)?;
        }
        Ok(())
    }
}

/// Libraries scanned before manifests named their cover (`TrackMeta::cover`)
/// hold the picture but not its id in the manifest, and an unchanged file
/// is not probed again: name it from `track_covers`, so other nodes can
/// fetch it. Runs once per library ([`tables::COVERS_NAMED`]): from then on
/// the scan names covers itself.
fn name_covers_in_manifests(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META)?;
    if meta.get(tables::COVERS_NAMED)?.is_some() {
        return Ok(());
    }
    meta.insert(tables::COVERS_NAMED, 1)?;
    let track_covers = txn.open_table(TRACK_COVERS)?;
    let mut tracks = txn.open_table(TRACKS)?;
    let mut unnamed = Vec::new();
    for row in track_covers.iter()? {
        let (track, cover) = row?;
        let (track, cover) = (*track.value(), *cover.value());
        let Some(stored) = tracks.get(&track)? else {
            continue;
        };
        let mut manifest: Manifest = decode(stored.value(), "manifest")?;
        if manifest.meta.cover.is_none() {
            manifest.meta.cover = Some(CoverId(cover));
            unnamed.push((track, manifest));
        }
    }
    for (track, manifest) in unnamed {
        tracks.insert(&track, encode(&manifest).as_slice())?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::manifest::{ChunkRef, TrackMeta};

    fn manifest(n: u32) -> Manifest {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&n.to_le_bytes());
        Manifest {
            track: TrackId(id),
            size: 10,
            chunks: vec![ChunkRef {
                id: ChunkId(id),
                len: 10,
            }],
            meta: TrackMeta::default(),
        }
    }

    #[test]
    fn opening_names_the_cover_of_a_manifest_scanned_before_covers_had_ids() {
        let dir = tempfile::tempdir().unwrap();
        let old = manifest(7);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend_from_slice(&[1; 16]);
        let cover = Cover::from_bytes(png.clone()).unwrap();
        {
            let lib = Library::open_in(dir.path()).unwrap();
            let txn = lib.inner.db.begin_write().unwrap();
            let mut tables = IndexTables::open(&txn).unwrap();
            let record = FileRecord {
                size: 10,
                mtime_ns: 1,
                track: Some(old.track),
                skipped: None,
            };
            tables
                .link_file(Path::new("/old"), &record, Some(&old), Some(&cover))
                .unwrap();
            tables.finish().unwrap();
            // As a library written before the flag existed.
            txn.open_table(META)
                .unwrap()
                .remove(tables::COVERS_NAMED)
                .unwrap();
            txn.commit().unwrap();
            assert_eq!(lib.manifest(old.track).unwrap().unwrap().meta.cover, None);
        }
        let lib = Library::open_in(dir.path()).unwrap();
        let named = lib.manifest(old.track).unwrap().unwrap();
        assert_eq!(named.meta.cover, Some(CoverId::of(&png)));
        assert_eq!(lib.cover_by_id(CoverId::of(&png)).unwrap(), Some(cover));
    }

    #[test]
    fn a_peer_behind_the_trimmed_log_gets_the_full_list() {
        let dir = tempfile::tempdir().unwrap();
        let lib = Library::open_in(dir.path()).unwrap();
        let keep = manifest(u32::MAX);
        let txn = lib.inner.db.begin_write().unwrap();
        let mut tables = IndexTables::open(&txn).unwrap();
        let record = |m: &Manifest| FileRecord {
            size: 10,
            mtime_ns: 1,
            track: Some(m.track),
            skipped: None,
        };
        tables
            .link_file(Path::new("/keep"), &record(&keep), Some(&keep), None)
            .unwrap();
        // Enough add/remove pairs to push the first entries out of the log.
        let cycles = u32::try_from(delta::LOG_KEEP).unwrap() / 2 + 10;
        for n in 0..cycles {
            let m = manifest(n);
            let path = PathBuf::from(format!("/t{n}"));
            tables
                .link_file(&path, &record(&m), Some(&m), None)
                .unwrap();
            tables.unlink_file(&path).unwrap();
        }
        tables.finish().unwrap();
        txn.commit().unwrap();

        let version = lib.version().unwrap();
        assert_eq!(version, 1 + 2 * u64::from(cycles));
        match lib.changes_since(0).unwrap() {
            Changes::Full {
                version: v,
                manifests,
            } => {
                assert_eq!(v, version);
                assert_eq!(manifests, vec![keep.clone()]);
            }
            delta => panic!("expected the full list, got {delta:?}"),
        }
        // A recent peer still gets a (compacted, empty) delta.
        match lib.changes_since(version - 100).unwrap() {
            Changes::Delta { added, removed, .. } => {
                assert!(added.is_empty() && removed.is_empty());
            }
            full => panic!("expected a delta, got {full:?}"),
        }
    }
}
