//! Watching the music folder: files added, changed or removed reach the
//! library (and, through the library gossip, every node's catalog) without
//! a restart.
//!
//! `notify` reports changes (inotify on Linux); each changed path waits in
//! [`Settle`] until it is quiet and its size and mtime stand still, then a
//! batch of settled paths goes to [`Indexer::scan_paths`]. A folder that
//! appears is walked whole (files copied into it before its own watch was
//! set are found that way). When notify loses events (its queue
//! overflowed, or more paths changed than [`super::settle::MAX_PENDING`]) the
//! whole folder is rescanned. When the music folder itself is removed its
//! tracks leave the library; it is watched again once it is back.
//!
//! What it isn't: a scanner (that is the library crate) or the decider of
//! when a file is complete (that is [`settle`]).

use super::announce::{NodeEvent, announce};
use super::indexer::{Allowed, Indexer, RateLimit};
use super::settle::{Change, Settle, Stat};
use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Events buffered between notify's thread and the watcher task; when full,
/// the folder is rescanned whole instead.
const EVENT_BUFFER: usize = 4096;
/// How often a lost music folder is looked for.
const LOST_POLL: Duration = Duration::from_secs(2);
/// Most notify error lines logged per minute.
const ERROR_LINES: u32 = 5;

/// Starts watching the indexer's music folder. `ignore` lists paths whose
/// changes are the node's own (its database, its staging folder).
pub(crate) fn spawn(indexer: Indexer, ignore: Vec<PathBuf>) {
    tokio::spawn(async move {
        let mut watch = Watch::new(indexer, ignore);
        watch.run().await;
    });
}

struct Watch {
    indexer: Indexer,
    root: PathBuf,
    ignore: Vec<PathBuf>,
    settle: Settle,
    /// Set by notify's thread when the buffer was full (events lost).
    overflow: Arc<AtomicBool>,
    events: mpsc::Receiver<notify::Result<notify::Event>>,
    sender: mpsc::Sender<notify::Result<notify::Event>>,
    /// The live watch; `None` while the music folder is gone.
    watcher: Option<RecommendedWatcher>,
    started: Instant,
    errors: RateLimit,
}

impl Watch {
    fn new(indexer: Indexer, ignore: Vec<PathBuf>) -> Self {
        let (sender, events) = mpsc::channel(EVENT_BUFFER);
        Self {
            root: indexer.music().to_path_buf(),
            indexer,
            ignore,
            settle: Settle::default(),
            overflow: Arc::new(AtomicBool::new(false)),
            events,
            sender,
            watcher: None,
            started: Instant::now(),
            errors: RateLimit::new(ERROR_LINES, Duration::from_secs(60)),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Watches the music folder; whether that worked.
    fn start_watching(&mut self) -> bool {
        let sender = self.sender.clone();
        let overflow = self.overflow.clone();
        let handler = move |event: notify::Result<notify::Event>| {
            if sender.try_send(event).is_err() {
                overflow.store(true, Ordering::Relaxed);
            }
        };
        let started = RecommendedWatcher::new(handler, notify::Config::default())
            .and_then(|mut w| w.watch(&self.root, RecursiveMode::Recursive).map(|()| w));
        match started {
            Ok(watcher) => {
                self.watcher = Some(watcher);
                true
            }
            Err(err) => {
                self.log_error(&format!(
                    "cannot watch the music folder {}: {err}; new files need `firefly scan`",
                    self.root.display()
                ));
                false
            }
        }
    }

    async fn run(&mut self) {
        if self.start_watching() {
            tracing::info!(folder = %self.root.display(), "watching the music folder");
        }
        let mut lost_poll = tokio::time::interval(LOST_POLL);
        lost_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = self
                .settle
                .poll_timeout()
                .map(|at| at.saturating_sub(self.now()))
                .unwrap_or(u64::MAX / 2);
            tokio::select! {
                event = self.events.recv() => match event {
                    // The sender lives in `self`: the channel never closes.
                    None => return,
                    Some(event) => self.on_event(event),
                },
                () = tokio::time::sleep(Duration::from_micros(wake)), if !self.settle.is_empty() => {
                    self.on_settled().await;
                }
                _ = lost_poll.tick(), if self.watcher.is_none() => self.look_for_root().await,
            }
            if self.overflow.swap(false, Ordering::Relaxed) || self.settle.is_overflowed() {
                self.settle.clear();
                tracing::info!("many changes at once: rescanning the music folder");
                self.rescan_all().await;
            }
        }
    }

    fn on_event(&mut self, event: notify::Result<notify::Event>) {
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                let text = match err.kind {
                    notify::ErrorKind::MaxFilesWatch => format!(
                        "cannot watch every folder of {} (the system's watch limit, \
                         fs.inotify.max_user_watches): changes in some folders need `firefly scan`",
                        self.root.display()
                    ),
                    _ => format!("watching the music folder: {err}"),
                };
                self.log_error(&text);
                return;
            }
        };
        if event.need_rescan() {
            self.overflow.store(true, Ordering::Relaxed);
            return;
        }
        let change = match event.kind {
            EventKind::Modify(ModifyKind::Data(_)) => Change::Written,
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => Change::Closed,
            // Reads and opens change nothing.
            EventKind::Access(_) => return,
            _ => Change::Other,
        };
        let now = self.now();
        for path in &event.paths {
            if self.ignore.iter().any(|i| path.starts_with(i)) {
                continue;
            }
            if path == &self.root && !self.root.is_dir() {
                self.lose_root();
                continue;
            }
            self.settle.handle_change(now, path, change, stat(path));
        }
    }

    /// The music folder was removed (or moved away): its tracks leave the
    /// library; it is looked for every [`LOST_POLL`].
    fn lose_root(&mut self) {
        if self.watcher.take().is_some() {
            announce(&NodeEvent::MusicFolder {
                path: self.root.display().to_string(),
                present: false,
            });
        }
        // Settles at once (a gone path's stat stays `None`) and unlinks
        // everything under the folder.
        self.settle
            .handle_change(self.now(), &self.root.clone(), Change::Other, None);
    }

    async fn look_for_root(&mut self) {
        if !self.root.is_dir() || !self.start_watching() {
            return;
        }
        announce(&NodeEvent::MusicFolder {
            path: self.root.display().to_string(),
            present: true,
        });
        self.settle.clear();
        self.rescan_all().await;
    }

    async fn on_settled(&mut self) {
        let now = self.now();
        let ready = self.settle.poll_ready(now, stat);
        if ready.is_empty() {
            return;
        }
        tracing::debug!(paths = ready.len(), "settled changes in the music folder");
        if let Err(err) = self.indexer.scan_paths(ready).await {
            self.log_error(&format!("{err:#}"));
        }
    }

    async fn rescan_all(&mut self) {
        if !self.root.is_dir() {
            return;
        }
        if let Err(err) = self.indexer.scan_all().await {
            self.log_error(&format!("{err:#}"));
        }
    }

    fn log_error(&mut self, text: &str) {
        match self.errors.allow(Instant::now()) {
            Allowed::Yes { suppressed } => {
                if suppressed > 0 {
                    tracing::warn!("{suppressed} more music folder errors were not logged");
                }
                tracing::warn!("{text}");
            }
            Allowed::No => {}
        }
    }
}

/// How `path` looks now (`None`: gone or unreadable).
fn stat(path: &Path) -> Option<Stat> {
    let meta = std::fs::metadata(path).ok()?;
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    Some(Stat {
        size: meta.len(),
        mtime_ns,
    })
}
