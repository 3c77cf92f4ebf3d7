//! The node's library upkeep: scans (the whole music folder at start-up and
//! on `POST /api/scan`, or the paths the music folder watcher hands over),
//! then tells the swarm (the library gossip) and the node
//! ([`LibraryEvent`]) what changed.
//!
//! Scans run one at a time, so each one's changes are told once. Problems
//! with single files go to the log, at most [`SKIP_LINES`] lines per
//! [`SKIP_WINDOW`] (a folder of broken files must not flood it); a file is
//! re-read only when it changes, so one broken file is reported once.

use super::announce::{NodeEvent, announce};
use anyhow::Context;
use firefly_library::{Changes, Library, ScanReport, TrackId};
use firefly_swarm::Client;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Most "skipped" lines logged per [`SKIP_WINDOW`].
const SKIP_LINES: u32 = 10;
/// The window [`SKIP_LINES`] counts in.
const SKIP_WINDOW: Duration = Duration::from_secs(30);

/// What changed in this node's library, for the parts of the node that
/// care (the player: a queued or playing track that is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LibraryEvent {
    /// The track joined this node's library.
    TrackAdded(TrackId),
    /// The track left this node's library: its last file was removed or
    /// changed into other bytes.
    TrackRemoved(TrackId),
}

/// A handle on the node's library upkeep. Clone it freely.
#[derive(Clone)]
pub(crate) struct Indexer {
    library: Library,
    music: PathBuf,
    client: Client,
    events: broadcast::Sender<LibraryEvent>,
    /// Held for a scan and the telling of its changes.
    running: Arc<tokio::sync::Mutex<()>>,
    skips: Arc<Mutex<RateLimit>>,
}

impl Indexer {
    /// Upkeep of `library` for the music folder `music` (canonical).
    pub(crate) fn new(library: Library, music: PathBuf, client: Client) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            library,
            music,
            client,
            events,
            running: Arc::new(tokio::sync::Mutex::new(())),
            skips: Arc::new(Mutex::new(RateLimit::new(SKIP_LINES, SKIP_WINDOW))),
        }
    }

    /// The music folder.
    pub(crate) fn music(&self) -> &Path {
        &self.music
    }

    /// The library.
    pub(crate) fn library(&self) -> &Library {
        &self.library
    }

    /// Library events from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<LibraryEvent> {
        self.events.subscribe()
    }

    /// Rescans the whole music folder.
    pub(crate) async fn scan_all(&self) -> anyhow::Result<ScanReport> {
        let roots = vec![self.music.clone()];
        self.run(move |library| library.scan(&roots, &mut ()))
            .await
            .context("scanning the music folder")
    }

    /// Brings the library up to date with `paths` (inside the music folder).
    pub(crate) async fn scan_paths(&self, paths: Vec<PathBuf>) -> anyhow::Result<ScanReport> {
        self.run(move |library| library.scan_paths(&paths, &mut ()))
            .await
            .context("updating the library")
    }

    async fn run(
        &self,
        scan: impl FnOnce(&Library) -> Result<ScanReport, firefly_library::ScanError> + Send + 'static,
    ) -> anyhow::Result<ScanReport> {
        let _one_at_a_time = self.running.lock().await;
        let library = self.library.clone();
        let (before, report, changes) = tokio::task::spawn_blocking(move || {
            let before = library.version()?;
            let report = scan(&library)?;
            let changes = if library.version()? == before {
                None
            } else {
                Some(library.changes_since(before)?)
            };
            anyhow::Ok((before, report, changes))
        })
        .await
        .context("the scan task failed")??;
        self.log_skipped(&report);
        let Some(changes) = changes else {
            return Ok(report);
        };
        match &changes {
            Changes::Delta { added, removed, .. } => {
                for manifest in added {
                    announce(&NodeEvent::TrackAdded {
                        track: manifest.track.to_hex(),
                        title: firefly_library::display_text(&manifest.meta.title),
                    });
                    let _ = self.events.send(LibraryEvent::TrackAdded(manifest.track));
                }
                for track in removed {
                    announce(&NodeEvent::TrackRemoved {
                        track: track.to_hex(),
                    });
                    let _ = self.events.send(LibraryEvent::TrackRemoved(*track));
                }
            }
            Changes::Full { version, .. } => {
                // Only after thousands of changes in one scan.
                tracing::info!(before, version, "the library changed too much to list");
            }
        }
        // Peers learn the change from the library gossip (and the version
        // from heartbeats).
        self.client.library_changed().await?;
        Ok(report)
    }

    fn log_skipped(&self, report: &ScanReport) {
        if report.skipped.is_empty() {
            return;
        }
        let mut limit = self
            .skips
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for skipped in &report.skipped {
            match limit.allow(Instant::now()) {
                Allowed::Yes { suppressed } => {
                    if suppressed > 0 {
                        tracing::warn!("{suppressed} more skipped files were not logged");
                    }
                    tracing::warn!(
                        path = %skipped.path.display(),
                        reason = %skipped.reason,
                        "skipped"
                    );
                }
                Allowed::No => {}
            }
        }
    }
}

/// Whether a line may be logged now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Allowed {
    /// Yes; `suppressed` lines were held back since the last one logged.
    Yes { suppressed: u64 },
    /// No: the window's lines are used up.
    No,
}

/// At most `lines` log lines per `window`, counting the ones held back.
#[derive(Debug)]
pub(crate) struct RateLimit {
    lines: u32,
    window: Duration,
    window_start: Option<Instant>,
    used: u32,
    suppressed: u64,
}

impl RateLimit {
    pub(crate) fn new(lines: u32, window: Duration) -> Self {
        Self {
            lines,
            window,
            window_start: None,
            used: 0,
            suppressed: 0,
        }
    }

    /// Whether a line may be logged at `now`.
    pub(crate) fn allow(&mut self, now: Instant) -> Allowed {
        if self
            .window_start
            .is_none_or(|start| now.duration_since(start) >= self.window)
        {
            self.window_start = Some(now);
            self.used = 0;
        }
        if self.used >= self.lines {
            self.suppressed += 1;
            return Allowed::No;
        }
        self.used += 1;
        Allowed::Yes {
            suppressed: std::mem::take(&mut self.suppressed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_holds_lines_back_and_counts_them() {
        let mut limit = RateLimit::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limit.allow(t0), Allowed::Yes { suppressed: 0 });
        assert_eq!(limit.allow(t0), Allowed::Yes { suppressed: 0 });
        for _ in 0..5 {
            assert_eq!(limit.allow(t0), Allowed::No);
        }
        let later = t0 + Duration::from_secs(10);
        assert_eq!(limit.allow(later), Allowed::Yes { suppressed: 5 });
        assert_eq!(limit.allow(later), Allowed::Yes { suppressed: 0 });
        assert_eq!(limit.allow(later), Allowed::No);
    }
}
