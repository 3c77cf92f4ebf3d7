//! The transfer protocols at work: library sync and chunk downloads driven
//! from the swarm's event loop.
//!
//! [`Transfer`] is the part of the event loop's state that belongs to the
//! transfer protocols. The loop hands it the events of the three
//! request-response behaviours, the `firefly/library/1` gossip, peers'
//! library versions (from heartbeats), departures, its own commands and its
//! timer; [`Transfer`] answers through a [`TransferIo`] that borrows the
//! behaviours it needs. Library reads and writes block, so they run on
//! `tokio::task::spawn_blocking` and come back through [`Transfer::next_done`],
//! which the loop polls in its `select!`.
//!
//! Policy lives in the sans-IO pieces: which chunks to ask whom for in
//! [`DownloadScheduler`], the upload cap in [`UploadLimiter`], the union of
//! libraries in [`SwarmCatalog`], message limits in [`wire`](super::wire).
//! This module moves messages between them and the network, and counts what
//! it refused; its three jobs live in submodules: [`serve`] (answering
//! requests), [`sync`] (library sync) and [`download`] (fetching tracks),
//! beside [`cover`] (pictures both ways). The events of the four
//! request-response protocols go through one dispatcher, [`exchange`].

use super::catalog::{CatalogEntry, CatalogError, SwarmCatalog, SyncNeed};
use super::codec::{ChunksBehaviour, LibraryBehaviour, ManifestBehaviour};
use super::limiter::UploadLimiter;
use super::scheduler::{
    ChunkOutcome, DownloadEvent, DownloadScheduler, Failure, Holding, PenaltyReason, Progress,
    RequestToken, SchedulerConfig,
};
use super::wire::{
    ChunkBytes, ChunkReply, ChunksBody, ChunksRequest, ChunksResponse, LIBRARY_TOPIC,
    LibraryAnnounce, LibraryBody, LibraryDelta, LibraryRequest, LibraryResponse,
    MAX_RESPONSE_PAYLOAD, MAX_TRACKS_PER_RESPONSE, ManifestBody, ManifestRequest, ManifestResponse,
    Refusal, TrackSummary, WIRE_VERSION, WireError,
};
use crate::inbound::Inbound;
use crate::status::{Load, NodeStatus};
use firefly_clock::LocalMicros;
use firefly_library::{
    Accepted, Changes, ChunkId, DownloadError, DownloadStatus, Library, Manifest, ReadChunkError,
    StoreError, TrackId,
};
use libp2p::PeerId;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance};
use libp2p::request_response::{
    self, InboundFailure, Message, OutboundFailure, OutboundRequestId, ResponseChannel,
};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

mod cover;
mod download;
mod exchange;
mod serve;
mod sync;

use exchange::Exchange;

use sync::library_body;

/// Chunk requests of one peer this node works on at once; more are refused
/// as busy. With responses of at most [`MAX_RESPONSE_PAYLOAD`] bytes this
/// bounds what one peer can make this node hold in memory.
pub const MAX_INBOUND_PER_PEER: usize = 8;
/// Capacity of the channel that brings blocking library work back to the loop.
const DONE_CAPACITY: usize = 256;

/// A misbehaviour a node can be told to show when serving chunks, so tests
/// and benchmarks can check how the others cope. Never set in normal use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Flip a byte in every chunk sent.
    CorruptChunks,
    /// Never answer chunk requests (hold them until the requester gives up).
    StallChunks,
}

/// How a node takes part in chunk transfer.
#[derive(Debug, Clone, Default)]
pub struct TransferConfig {
    max_upload: Option<u64>,
    scheduler: SchedulerConfig,
    fault: Option<Fault>,
}

impl TransferConfig {
    /// Caps the chunk bytes this node sends per second (`--max-upload`).
    /// Default: no cap.
    pub fn max_upload(&mut self, bytes_per_sec: Option<u64>) -> &mut Self {
        self.max_upload = bytes_per_sec;
        self
    }

    /// Tunables of every download. Default: [`SchedulerConfig::default`].
    pub fn scheduler(&mut self, config: SchedulerConfig) -> &mut Self {
        self.scheduler = config;
        self
    }

    /// Makes this node misbehave when serving chunks (tests and benchmarks
    /// only). Default: none.
    pub fn fault(&mut self, fault: Option<Fault>) -> &mut Self {
        self.fault = fault;
        self
    }
}

/// Most chunk requests a [`Fault::StallChunks`] node holds unanswered.
const MAX_STALLED: usize = 1024;

/// The behaviours [`Transfer`] sends through, borrowed from the node's
/// behaviour for one call.
pub(crate) struct TransferIo<'a> {
    pub(crate) chunks: &'a mut ChunksBehaviour,
    pub(crate) manifests: &'a mut ManifestBehaviour,
    pub(crate) library: &'a mut LibraryBehaviour,
    pub(crate) gossipsub: &'a mut gossipsub::Behaviour,
    pub(crate) covers: &'a mut crate::transfer::cover::CoverBehaviour,
}

/// Why a download or a transfer command failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// This node runs without a library.
    #[error("this node has no library")]
    NoLibrary,
    /// No peer in the catalog holds the track.
    #[error("no peer holds track {0}")]
    NoHolder(TrackId),
    /// No holder answered with a valid manifest.
    #[error("no holder sent a valid manifest for track {0}")]
    NoManifest(TrackId),
    /// The library refused or failed the download (shared by every
    /// waiter of the download, hence the `Arc`).
    #[error("library: {0}")]
    Library(#[source] Arc<DownloadError>),
    /// The library lists the track as held but names no file of it.
    #[error("the library lists track {0} without a file")]
    NoFile(TrackId),
    /// Chunks are missing that no known peer can provide now; what arrived
    /// is kept and a later download resumes from there.
    #[error("download of {track} stalled with {missing} chunks nobody can provide")]
    Stalled {
        /// The track.
        track: TrackId,
        /// Distinct chunks still missing.
        missing: usize,
    },
}

/// A request from the node to the transfer part of the loop.
#[derive(Debug)]
pub(crate) enum TransferCommand {
    /// Download a track from the swarm into the library.
    Download {
        track: TrackId,
        reply: oneshot::Sender<Result<PathBuf, TransferError>>,
    },
    /// The swarm catalog.
    Catalog {
        reply: oneshot::Sender<Vec<CatalogEntry>>,
    },
    /// Progress of the downloads under way.
    Downloads {
        reply: oneshot::Sender<Vec<(TrackId, Progress)>>,
    },
    /// The local library changed (a scan): publish the delta.
    LibraryChanged,
    /// Counters.
    Stats {
        reply: oneshot::Sender<TransferStats>,
    },
    /// Chunks moved with each member.
    Traffic {
        reply: oneshot::Sender<Vec<(PeerId, PeerTraffic)>>,
    },
    /// The cover picture a track of the catalog shows, as its metadata says.
    CoverOf {
        track: TrackId,
        reply: oneshot::Sender<Option<firefly_library::CoverId>>,
    },
    /// Fetch a cover picture from the members holding a track that shows it.
    Cover {
        cover: firefly_library::CoverId,
        reply: oneshot::Sender<Option<firefly_library::Cover>>,
    },
}

/// Chunks moved between this node and one member since it joined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PeerTraffic {
    /// Chunks this node sent to the member.
    pub chunks_served: u64,
    /// Chunk bytes this node sent to the member.
    pub bytes_served: u64,
    /// Chunks received from the member and verified.
    pub chunks_received: u64,
}

/// Something the transfer protocols tell the node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransferEvent {
    /// A peer's library was applied to the catalog up to `version`.
    LibrarySynced {
        /// The peer.
        peer: PeerId,
        /// The version of its library now known.
        version: u64,
    },
    /// This node published a change of its own library.
    LibraryPublished {
        /// The new version.
        version: u64,
    },
    /// A download finished; the track is in the library at `path`.
    DownloadCompleted {
        /// The track.
        track: TrackId,
        /// Its file.
        path: PathBuf,
    },
    /// A peer was barred from chunk requests for a while.
    PeerPenalized {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: PenaltyReason,
    },
}

/// Counters of the transfer protocols, for status, diagnosis and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TransferStats {
    /// Chunks this node sent to peers.
    pub chunks_served: u64,
    /// Chunk bytes this node sent to peers.
    pub bytes_served: u64,
    /// Chunks this node received and verified.
    pub chunks_received: u64,
    /// Chunks received whose bytes did not match their id.
    pub chunks_corrupt: u64,
    /// Requests from peers refused (busy, invalid, unknown version).
    pub requests_refused: u64,
    /// Messages from peers rejected as malformed, oversized or of an unknown
    /// version (requests, responses and gossip).
    pub messages_rejected: u64,
    /// Requests to peers that failed or timed out.
    pub requests_failed: u64,
    /// Times a peer was penalized for wrong bytes or a malformed response.
    pub peers_penalized: u64,
    /// Library gossip ignored because its author is not a member.
    pub gossip_ignored: u64,
}

/// Blocking work finished off the loop.
pub(crate) enum Done {
    ChunksRead {
        peer: PeerId,
        channel: ResponseChannel<ChunksResponse>,
        response: ChunksResponse,
        chunks: u64,
        payload: u64,
    },
    ManifestRead {
        channel: ResponseChannel<ManifestResponse>,
        response: ManifestResponse,
    },
    LibraryRead {
        channel: ResponseChannel<LibraryResponse>,
        response: LibraryResponse,
    },
    CoverRead {
        channel: ResponseChannel<crate::transfer::cover::CoverResponse>,
        response: crate::transfer::cover::CoverResponse,
    },
    DownloadStarted {
        manifest: Box<Manifest>,
        result: Result<Started, TransferError>,
    },
    ChunksStored {
        track: TrackId,
        peer: PeerId,
        token: RequestToken,
        outcomes: Vec<(ChunkId, ChunkOutcome)>,
        completed: Option<PathBuf>,
    },
    LocalChanges {
        result: Result<Changes, StoreError>,
    },
    Unfinished {
        result: Result<Vec<TrackId>, StoreError>,
    },
}

/// What starting a download found in the library.
pub(crate) enum Started {
    /// Already there (or completed from chunks the library had).
    Done(PathBuf),
    /// These distinct chunks are still missing.
    Missing(Vec<ChunkId>),
}

struct ActiveDownload {
    scheduler: DownloadScheduler,
    waiters: Vec<oneshot::Sender<Result<PathBuf, TransferError>>>,
}

/// A download waiting for its manifest.
struct ManifestFetch {
    /// Holders not asked yet.
    candidates: Vec<PeerId>,
    waiters: Vec<oneshot::Sender<Result<PathBuf, TransferError>>>,
}

struct HeldResponse {
    peer: PeerId,
    channel: ResponseChannel<ChunksResponse>,
    response: ChunksResponse,
}

struct OutboundChunks {
    track: TrackId,
    token: RequestToken,
    ids: Vec<ChunkId>,
}

/// Transfer-protocol state of a node's event loop. See the module docs.
pub(crate) struct Transfer {
    local: PeerId,
    library: Option<Library>,
    catalog: SwarmCatalog,
    limiter: UploadLimiter,
    scheduler_config: SchedulerConfig,
    fault: Option<Fault>,
    /// Requests held unanswered under [`Fault::StallChunks`] (at most [`MAX_STALLED`]).
    stalled: Vec<ResponseChannel<ChunksResponse>>,
    /// The last version of the local library published (and put in the catalog).
    published: u64,
    /// A read of local changes is under way; another change asks again after it.
    publishing: bool,
    republish: bool,
    fetches: HashMap<TrackId, ManifestFetch>,
    downloads: HashMap<TrackId, ActiveDownload>,
    /// Downloads whose library start is under way, with their waiters.
    starting: HashMap<TrackId, Vec<oneshot::Sender<Result<PathBuf, TransferError>>>>,
    /// Unfinished downloads of a previous run, waiting for a holder.
    resume: HashSet<TrackId>,
    /// The swarm's members (from the membership table): only their gossip,
    /// requests and answers are taken.
    members: HashSet<PeerId>,
    outbound_chunks: HashMap<OutboundRequestId, OutboundChunks>,
    outbound_manifests: HashMap<OutboundRequestId, (TrackId, PeerId)>,
    outbound_library: HashMap<OutboundRequestId, PeerId>,
    /// Cover fetches waiting for a holder's answer (at most
    /// [`cover::MAX_COVER_FETCHES`]).
    outbound_covers: HashMap<OutboundRequestId, cover::CoverFetch>,
    /// Chunk requests of each peer being worked on. Invariant: an entry is
    /// removed when it reaches zero.
    inbound: HashMap<PeerId, usize>,
    /// Responses held back by the upload cap, by release instant.
    held: BTreeMap<(LocalMicros, u64), HeldResponse>,
    held_seq: u64,
    stats: TransferStats,
    /// Chunks moved with each member. Invariant: keys are members (an entry
    /// goes when its member leaves), so it is bounded like the table.
    traffic: HashMap<PeerId, PeerTraffic>,
    events: Vec<TransferEvent>,
    /// Peers that sent bad input since the last drain, with why: the event
    /// loop turns each into a strike (and repeated strikes into a ban).
    strikes: Vec<(PeerId, &'static str)>,
    done_tx: mpsc::Sender<Done>,
    done_rx: mpsc::Receiver<Done>,
}

impl Transfer {
    /// Transfer state for the node `local`, serving and storing through
    /// `library` (none: the node only keeps a catalog).
    pub(crate) fn new(
        local: PeerId,
        library: Option<Library>,
        config: &TransferConfig,
        now: LocalMicros,
    ) -> Self {
        let limiter = match config.max_upload {
            // A burst of one full response lets the first answer go at once.
            Some(rate) => UploadLimiter::new(rate, MAX_RESPONSE_PAYLOAD.min(rate), now),
            None => UploadLimiter::unlimited(),
        };
        let (done_tx, done_rx) = mpsc::channel(DONE_CAPACITY);
        Self {
            local,
            library,
            catalog: SwarmCatalog::new(),
            limiter,
            scheduler_config: config.scheduler.clone(),
            fault: config.fault,
            stalled: Vec::new(),
            published: 0,
            publishing: false,
            republish: false,
            fetches: HashMap::new(),
            downloads: HashMap::new(),
            starting: HashMap::new(),
            resume: HashSet::new(),
            members: HashSet::new(),
            outbound_chunks: HashMap::new(),
            outbound_manifests: HashMap::new(),
            outbound_library: HashMap::new(),
            outbound_covers: HashMap::new(),
            inbound: HashMap::new(),
            held: BTreeMap::new(),
            held_seq: 0,
            stats: TransferStats::default(),
            traffic: HashMap::new(),
            events: Vec::new(),
            strikes: Vec::new(),
            done_tx,
            done_rx,
        }
    }

    /// Subscribes to the library topic and reads the local library into the
    /// catalog. Call once when the loop starts.
    pub(crate) fn start(&mut self, io: &mut TransferIo<'_>) {
        if let Err(err) = io.gossipsub.subscribe(&IdentTopic::new(LIBRARY_TOPIC)) {
            tracing::warn!(%err, "cannot subscribe to the library topic");
        }
        self.publish_local_changes();
        // Downloads a previous run left unfinished resume once a holder is known.
        if let Some(library) = self.library.clone() {
            let done = self.done_tx.clone();
            tokio::task::spawn_blocking(move || {
                let result = library.downloads();
                let _ = done.blocking_send(Done::Unfinished { result });
            });
        }
    }

    /// Starts the downloads left to resume whose track now has a holder.
    fn resume_unfinished(&mut self, io: &mut TransferIo<'_>, now: LocalMicros) {
        let ready: Vec<TrackId> = self
            .resume
            .iter()
            .filter(|track| {
                self.catalog
                    .get(track)
                    .is_some_and(|e| e.holders.iter().any(|p| *p != self.local))
            })
            .copied()
            .collect();
        for track in ready {
            self.resume.remove(&track);
            tracing::info!(?track, "resuming an unfinished download");
            // Nobody waits for this one; the event reports its end.
            let (reply, _) = oneshot::channel();
            self.download(io, now, track, reply);
        }
    }

    /// `status` with what transfer knows filled in: the version of the
    /// local library last published and the transfer load. A node without a
    /// library keeps what the node set.
    pub(crate) fn stamp_status(&self, mut status: NodeStatus) -> NodeStatus {
        if self.library.is_some() {
            status.library_version = self.published;
            status.load = Load {
                uploads: u32::try_from(self.inbound.values().sum::<usize>()).unwrap_or(u32::MAX),
                downloads: u32::try_from(self.outbound_chunks.len()).unwrap_or(u32::MAX),
            };
        }
        status
    }

    /// Events for the node, oldest first.
    pub(crate) fn drain_events(&mut self) -> impl Iterator<Item = TransferEvent> + '_ {
        self.events.drain(..)
    }

    /// Peers that sent bad input, with why, oldest first.
    pub(crate) fn drain_strikes(&mut self) -> impl Iterator<Item = (PeerId, &'static str)> + '_ {
        self.strikes.drain(..)
    }

    /// The next piece of finished blocking work. Never ends: the state keeps
    /// a sender of its own.
    pub(crate) async fn next_done(&mut self) -> Option<Done> {
        self.done_rx.recv().await
    }

    /// The earliest instant [`handle_timeout`](Self::handle_timeout) has work.
    pub(crate) fn poll_timeout(&self) -> Option<LocalMicros> {
        let held = self.held.keys().next().map(|(at, _)| *at);
        let downloads = self
            .downloads
            .values()
            .filter_map(|d| d.scheduler.poll_timeout());
        held.into_iter().chain(downloads).min()
    }

    /// Releases responses the upload cap held back and lets downloads expire
    /// stalled requests.
    pub(crate) fn handle_timeout(&mut self, io: &mut TransferIo<'_>, now: LocalMicros) {
        while let Some(entry) = self.held.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let held = entry.remove();
            self.send_chunks_response(io, held.peer, held.channel, held.response);
        }
        let tracks: Vec<TrackId> = self.downloads.keys().copied().collect();
        for track in tracks {
            if let Some(download) = self.downloads.get_mut(&track) {
                download.scheduler.handle_timeout(now);
            }
            self.pump(io, now, track);
        }
    }

    /// Handles a command from the node.
    pub(crate) fn handle_command(
        &mut self,
        io: &mut TransferIo<'_>,
        now: LocalMicros,
        command: TransferCommand,
    ) {
        match command {
            TransferCommand::Download { track, reply } => self.download(io, now, track, reply),
            TransferCommand::Catalog { reply } => {
                let _ = reply.send(self.catalog.tracks().cloned().collect());
            }
            TransferCommand::Downloads { reply } => {
                let progress = self
                    .downloads
                    .iter()
                    .map(|(track, d)| (*track, d.scheduler.progress()))
                    .collect();
                let _ = reply.send(progress);
            }
            TransferCommand::LibraryChanged => self.publish_local_changes(),
            TransferCommand::Stats { reply } => {
                let _ = reply.send(self.stats);
            }
            TransferCommand::Traffic { reply } => {
                let _ = reply.send(self.traffic.iter().map(|(p, t)| (*p, *t)).collect());
            }
            TransferCommand::CoverOf { track, reply } => {
                let _ = reply.send(self.catalog.get(&track).and_then(|e| e.summary.meta.cover));
            }
            TransferCommand::Cover { cover, reply } => self.fetch_cover(io, cover, reply),
        }
    }

    /// A member's heartbeat says its library is at `version`.
    pub(crate) fn handle_peer_version(
        &mut self,
        io: &mut TransferIo<'_>,
        peer: PeerId,
        version: u64,
    ) {
        if peer == self.local {
            return;
        }
        if let SyncNeed::Fetch { since } = self.catalog.handle_version(peer, version) {
            self.fetch_library(io, peer, since);
        }
    }

    /// A peer joined the swarm (its first heartbeat).
    pub(crate) fn handle_peer_joined(&mut self, peer: PeerId) {
        self.members.insert(peer);
    }

    /// Whether input from `peer` is taken: a member's, or this node's own.
    fn is_member(&self, peer: &PeerId) -> bool {
        *peer == self.local || self.members.contains(peer)
    }

    /// A malformed request: counted, its sender struck, its stream dropped.
    fn malformed_request(&mut self, peer: PeerId, reason: &str) {
        tracing::debug!(%peer, reason, "malformed transfer request");
        self.stats.messages_rejected += 1;
        self.strikes.push((peer, "malformed transfer request"));
    }

    /// A member left the swarm: it holds nothing any more.
    pub(crate) fn handle_peer_left(
        &mut self,
        io: &mut TransferIo<'_>,
        now: LocalMicros,
        peer: PeerId,
    ) {
        self.members.remove(&peer);
        self.traffic.remove(&peer);
        self.catalog.remove_peer(&peer);
        self.inbound.remove(&peer);
        let tracks: Vec<TrackId> = self.downloads.keys().copied().collect();
        for track in tracks {
            if let Some(download) = self.downloads.get_mut(&track) {
                download.scheduler.remove_peer(&peer);
            }
            self.pump(io, now, track);
        }
    }

    /// A message on the library topic from `source`.
    pub(crate) fn handle_gossip(
        &mut self,
        io: &mut TransferIo<'_>,
        now: LocalMicros,
        source: PeerId,
        data: &[u8],
    ) -> MessageAcceptance {
        let announce = match LibraryAnnounce::decode(data) {
            Ok(announce) => announce,
            Err(err) => {
                tracing::debug!(peer = %source, %err, "library gossip rejected");
                self.stats.messages_rejected += 1;
                // Struck once, by the loop, against the peer that passed
                // it on (a rejected message; see `event_loop::gossip`).
                return MessageAcceptance::Reject;
            }
        };
        if source == self.local {
            return MessageAcceptance::Accept;
        }
        if !self.is_member(&source) {
            // Nothing is kept for a peer that is not a member (it would
            // stay in the catalog as a ghost); its heartbeat comes first.
            self.stats.gossip_ignored += 1;
            return MessageAcceptance::Ignore;
        }
        match self
            .catalog
            .handle_announce(source, &announce.delta, announce.elided)
        {
            SyncNeed::Fetch { since } => self.fetch_library(io, source, since),
            SyncNeed::None => {
                if self.catalog.peer_version(&source) == announce.delta.to {
                    self.events.push(TransferEvent::LibrarySynced {
                        peer: source,
                        version: announce.delta.to,
                    });
                    self.resume_unfinished(io, now);
                }
            }
        }
        MessageAcceptance::Accept
    }

    /// An event of `/firefly/chunks/1`.
    pub(crate) fn handle_chunks_event(
        &mut self,
        io: &mut TransferIo<'_>,
        now: LocalMicros,
        event: request_response::Event<Inbound<ChunksRequest>, ChunksResponse>,
    ) {
        let unavailable = || ChunksResponse::refused(Refusal::Unavailable);
        match self.triage("chunks", io.chunks, event, unavailable) {
            Some(Exchange::Request {
                peer,
                request,
                channel,
            }) => self.serve_chunks(io, peer, request, channel),
            Some(Exchange::Response {
                peer,
                request_id,
                response,
            }) => self.on_chunks_response(io, now, peer, request_id, response),
            Some(Exchange::Failed {
                request_id, error, ..
            }) => {
                let failure = match error {
                    OutboundFailure::Timeout => Failure::Timeout,
                    // A response that does not decode (or is cut off at the
                    // size limit) arrives as an I/O error.
                    OutboundFailure::Io(_) => Failure::Malformed,
                    _ => Failure::Connection,
                };
                if matches!(failure, Failure::Malformed) {
                    self.stats.messages_rejected += 1;
                }
                if let Some(out) = self.outbound_chunks.remove(&request_id) {
                    if let Some(download) = self.downloads.get_mut(&out.track) {
                        download.scheduler.handle_failure(now, out.token, failure);
                    }
                    self.pump(io, now, out.track);
                }
            }
            None => {}
        }
    }

    /// An event of `/firefly/manifest/1`.
    pub(crate) fn handle_manifest_event(
        &mut self,
        io: &mut TransferIo<'_>,
        event: request_response::Event<Inbound<ManifestRequest>, ManifestResponse>,
    ) {
        let unavailable = || ManifestResponse::new(ManifestBody::Refused(Refusal::Unavailable));
        match self.triage("manifest", io.manifests, event, unavailable) {
            Some(Exchange::Request {
                peer,
                request,
                channel,
            }) => self.serve_manifest(io, peer, request, channel),
            Some(Exchange::Response {
                peer,
                request_id,
                response,
            }) => {
                if let Some((track, _)) = self.outbound_manifests.remove(&request_id) {
                    self.on_manifest(io, peer, track, response);
                }
            }
            Some(Exchange::Failed { request_id, .. }) => {
                if let Some((track, _)) = self.outbound_manifests.remove(&request_id) {
                    self.ask_next_manifest(io, track);
                }
            }
            None => {}
        }
    }

    /// An event of `/firefly/library/1`.
    pub(crate) fn handle_library_event(
        &mut self,
        io: &mut TransferIo<'_>,
        now: LocalMicros,
        event: request_response::Event<Inbound<LibraryRequest>, LibraryResponse>,
    ) {
        let unavailable = || LibraryResponse::new(LibraryBody::Refused(Refusal::Unavailable));
        match self.triage("library", io.library, event, unavailable) {
            Some(Exchange::Request {
                peer,
                request,
                channel,
            }) => self.serve_library(io, peer, request, channel),
            Some(Exchange::Response {
                peer,
                request_id,
                response,
            }) => {
                let asked = self.outbound_library.remove(&request_id).is_some();
                if asked {
                    self.on_library_response(io, peer, response);
                    self.resume_unfinished(io, now);
                }
            }
            Some(Exchange::Failed {
                peer, request_id, ..
            }) => {
                let asked = self.outbound_library.remove(&request_id).is_some();
                if asked {
                    self.catalog.handle_fetch_failed(&peer);
                }
            }
            None => {}
        }
    }

    /// Blocking work came back.
    pub(crate) fn handle_done(&mut self, io: &mut TransferIo<'_>, now: LocalMicros, done: Done) {
        match done {
            Done::ChunksRead {
                peer,
                channel,
                response,
                chunks,
                payload,
            } => {
                self.stats.chunks_served += chunks;
                self.stats.bytes_served += payload;
                if self.members.contains(&peer) {
                    let traffic = self.traffic.entry(peer).or_default();
                    traffic.chunks_served += chunks;
                    traffic.bytes_served += payload;
                }
                let at = self.limiter.reserve(now, payload);
                if at <= now {
                    self.send_chunks_response(io, peer, channel, response);
                } else {
                    self.held_seq += 1;
                    self.held.insert(
                        (at, self.held_seq),
                        HeldResponse {
                            peer,
                            channel,
                            response,
                        },
                    );
                }
            }
            Done::ManifestRead { channel, response } => {
                if io.manifests.send_response(channel, response).is_err() {
                    tracing::debug!("manifest requester went away");
                }
            }
            Done::LibraryRead { channel, response } => {
                if io.library.send_response(channel, response).is_err() {
                    tracing::debug!("library requester went away");
                }
            }
            Done::CoverRead { channel, response } => {
                if io.covers.send_response(channel, response).is_err() {
                    tracing::debug!("cover requester went away");
                }
            }
            Done::DownloadStarted { manifest, result } => {
                self.on_download_started(io, now, *manifest, result);
            }
            Done::ChunksStored {
                track,
                peer,
                token,
                outcomes,
                completed,
            } => self.on_chunks_stored(io, now, track, peer, token, &outcomes, completed),
            Done::LocalChanges { result } => self.on_local_changes(io, result),
            Done::Unfinished { result } => match result {
                Ok(tracks) => {
                    self.resume.extend(tracks);
                    self.resume_unfinished(io, now);
                }
                Err(err) => tracing::warn!(%err, "listing unfinished downloads failed"),
            },
        }
    }
}
