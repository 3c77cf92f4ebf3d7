//! The download scheduler: which chunks to ask which peer for, and when.
//!
//! [`DownloadScheduler`] is the sans-IO heart of one track's download. It
//! knows the manifest, which chunks are already here (so a download resumes
//! after a restart), which peers hold which chunks, and every request in
//! flight. It never touches a socket, a file or a clock: the caller feeds it
//! inputs and drains its outputs, passing the current [`LocalMicros`] each
//! time, like `quinn-proto`'s `Connection`.
//!
//! - Commands: [`add_peer`](DownloadScheduler::add_peer),
//!   [`remove_peer`](DownloadScheduler::remove_peer).
//! - Inputs: [`handle_response`](DownloadScheduler::handle_response) (with the
//!   verdict of hashing each returned chunk),
//!   [`handle_failure`](DownloadScheduler::handle_failure),
//!   [`handle_timeout`](DownloadScheduler::handle_timeout).
//! - Outputs: [`poll_request`](DownloadScheduler::poll_request) (drain until
//!   `None` after every input), [`poll_event`](DownloadScheduler::poll_event),
//!   [`poll_timeout`](DownloadScheduler::poll_timeout).
//!
//! `now` must never go backwards between calls.
//!
//! Policy: requests are batched (several chunks per request) and pipelined
//! (several requests per peer in flight). The next request goes to the
//! eligible peer with the fewest outstanding requests; it asks for that peer's
//! rarest missing chunks first, earliest in the file among equals. A peer that
//! sends bytes that do not hash to their id is penalized (no requests until the
//! penalty ends) and the chunk goes back to the pool for another holder; a
//! peer that fails or stalls backs off for a time that doubles with every
//! consecutive failure. What this is not: it does not verify bytes itself (the
//! caller hashes them, off the event loop) and it keeps no per-chunk bytes.

use firefly_clock::LocalMicros;
use firefly_library::{ChunkId, Manifest};
use libp2p::PeerId;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use super::wire::{MAX_CHUNKS_PER_REQUEST, MAX_RESPONSE_PAYLOAD};

const MICROS_PER_SEC: i64 = 1_000_000;

/// Tunables of a [`DownloadScheduler`].
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    max_batch_chunks: usize,
    max_batch_bytes: u64,
    max_requests_per_peer: usize,
    request_timeout_micros: i64,
    corrupt_penalty_micros: i64,
    failure_backoff_micros: i64,
    max_failure_backoff_micros: i64,
    max_consecutive_failures: u32,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_batch_chunks: 16,
            max_batch_bytes: 1024 * 1024,
            max_requests_per_peer: 8,
            request_timeout_micros: 20 * MICROS_PER_SEC,
            corrupt_penalty_micros: 60 * MICROS_PER_SEC,
            failure_backoff_micros: MICROS_PER_SEC,
            max_failure_backoff_micros: 30 * MICROS_PER_SEC,
            max_consecutive_failures: 8,
        }
    }
}

impl SchedulerConfig {
    /// Most chunks in one request. Default 16; clamped to
    /// 1..=[`MAX_CHUNKS_PER_REQUEST`].
    pub fn max_batch_chunks(&mut self, n: usize) -> &mut Self {
        self.max_batch_chunks = n.clamp(1, MAX_CHUNKS_PER_REQUEST);
        self
    }

    /// Most chunk bytes asked for in one request (a single larger chunk is
    /// still asked for alone). Default 1 MiB; clamped to
    /// [`MAX_RESPONSE_PAYLOAD`] so a responder can always answer in full.
    pub fn max_batch_bytes(&mut self, bytes: u64) -> &mut Self {
        self.max_batch_bytes = bytes.clamp(1, MAX_RESPONSE_PAYLOAD);
        self
    }

    /// Requests kept in flight to one peer (pipelining depth). Default 8; at least 1.
    pub fn max_requests_per_peer(&mut self, n: usize) -> &mut Self {
        self.max_requests_per_peer = n.max(1);
        self
    }

    /// How long a request may go unanswered before it counts as stalled.
    /// Default 20 s.
    pub fn request_timeout_micros(&mut self, micros: i64) -> &mut Self {
        self.request_timeout_micros = micros.max(1);
        self
    }

    /// How long a peer that sent wrong bytes gets no requests. Default 60 s.
    pub fn corrupt_penalty_micros(&mut self, micros: i64) -> &mut Self {
        self.corrupt_penalty_micros = micros.max(0);
        self
    }

    /// Consecutive failed or stalled requests after which a peer is dropped
    /// from this download (as if it had left). Default 8; at least 1.
    pub fn max_consecutive_failures(&mut self, n: u32) -> &mut Self {
        self.max_consecutive_failures = n.max(1);
        self
    }

    /// Backoff after a peer's first failed or stalled request; it doubles
    /// with each consecutive failure up to the maximum. Defaults 1 s and 30 s.
    pub fn failure_backoff_micros(&mut self, first: i64, max: i64) -> &mut Self {
        self.failure_backoff_micros = first.max(0);
        self.max_failure_backoff_micros = max.max(self.failure_backoff_micros);
        self
    }
}

/// Which chunks of the track a peer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    /// The whole track (it is in the peer's library).
    All,
    /// Only these chunks (the peer is itself downloading the track).
    Some(HashSet<ChunkId>),
}

/// Names one request this scheduler issued; unique within the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestToken(u64);

impl RequestToken {
    /// The raw number, for logs.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// A request the caller should send on `/firefly/chunks/1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRequest {
    /// Hand this back with the response or failure.
    pub token: RequestToken,
    /// Whom to ask.
    pub peer: PeerId,
    /// The chunks to ask for, in order.
    pub ids: Vec<ChunkId>,
}

/// What the caller found for one chunk of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// The bytes hash to the id and were stored.
    Verified,
    /// The bytes do not hash to the id (or have the wrong length).
    Corrupt,
    /// The peer said it does not hold the chunk.
    Missing,
}

/// Why a request produced no usable response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The transport gave up waiting (libp2p's request timeout).
    Timeout,
    /// The connection closed, the dial failed or the stream broke.
    Connection,
    /// The peer declined the request (busy, or its store failed).
    Refused,
    /// The response did not decode or broke the protocol's limits.
    Malformed,
}

/// Why a peer gets no requests for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PenaltyReason {
    /// It sent bytes that do not hash to the chunk id.
    CorruptChunk,
    /// It sent a response that broke the protocol.
    Malformed,
    /// A request failed or went unanswered (backoff, not blame).
    Backoff,
}

/// Something the caller may want to log or act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadEvent {
    /// A peer will get no requests until `until`.
    PeerPenalized {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: PenaltyReason,
        /// When it becomes eligible again.
        until: LocalMicros,
    },
    /// A request went unanswered past the request timeout.
    RequestTimedOut {
        /// The peer that stalled.
        peer: PeerId,
        /// The request.
        token: RequestToken,
    },
    /// A peer failed too many requests in a row and was dropped from this
    /// download.
    PeerDropped {
        /// The peer.
        peer: PeerId,
    },
    /// Missing chunks have no holder left among the known peers; the
    /// download waits until [`DownloadScheduler::add_peer`] brings one.
    Stalled {
        /// Distinct chunks nobody can provide.
        unavailable: usize,
    },
    /// Every chunk is here.
    Completed,
}

/// How far a download is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Bytes of the file whose chunks are here.
    pub bytes_have: u64,
    /// File size.
    pub bytes_total: u64,
    /// Distinct chunks here.
    pub chunks_have: usize,
    /// Distinct chunks in the manifest.
    pub chunks_total: usize,
}

/// Counters of what happened, for logs, status and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DownloadStats {
    /// Requests issued.
    pub requests: u64,
    /// Chunks verified.
    pub verified: u64,
    /// Chunks that failed verification.
    pub corrupt: u64,
    /// Chunks a holder said it lacked.
    pub missing: u64,
    /// Requests that timed out in the scheduler.
    pub timeouts: u64,
    /// Requests that failed (any [`Failure`]).
    pub failures: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Missing,
    InFlight(RequestToken),
    Have,
}

#[derive(Debug)]
struct ChunkState {
    /// Position of the chunk's first occurrence in the file: the tie-break
    /// that makes downloads proceed roughly in playback order.
    first_index: usize,
    len: u32,
    /// How often the chunk occurs in the file (identical content repeats).
    occurrences: u32,
    status: Status,
    /// How many known peers hold it (kept current by `refresh_rarity`).
    rarity: usize,
}

#[derive(Debug)]
struct PeerState {
    holding: Holding,
    /// Chunks this peer said it lacks despite `holding`; never asked again.
    lacks: HashSet<ChunkId>,
    /// Requests in flight to this peer. Invariant: equals the number of
    /// entries in `DownloadScheduler::requests` whose `peer` is this peer.
    outstanding: usize,
    outstanding_bytes: u64,
    /// No requests before this instant.
    blocked_until: Option<LocalMicros>,
    consecutive_failures: u32,
}

impl PeerState {
    fn holds(&self, id: &ChunkId) -> bool {
        let held = match &self.holding {
            Holding::All => true,
            Holding::Some(set) => set.contains(id),
        };
        held && !self.lacks.contains(id)
    }

    fn is_blocked(&self, now: LocalMicros) -> bool {
        self.blocked_until.is_some_and(|until| until > now)
    }
}

#[derive(Debug)]
struct Request {
    peer: PeerId,
    ids: Vec<ChunkId>,
    bytes: u64,
    deadline: LocalMicros,
}

/// One track's download: a pure state machine. See the module docs for the
/// call pattern.
#[derive(Debug)]
pub struct DownloadScheduler {
    config: SchedulerConfig,
    chunks: HashMap<ChunkId, ChunkState>,
    /// Distinct chunk ids in order of first occurrence.
    order: Vec<ChunkId>,
    /// The chunks whose status is `Missing`, in the order they are asked
    /// for: rarest first, then earliest in the file. Picking a batch walks
    /// this from the front instead of scanning and sorting every chunk of
    /// the track for every request (65,536 chunks for a 4 GiB track).
    missing: BTreeSet<(usize, usize, ChunkId)>,
    /// Bytes of the chunks in `missing`.
    missing_bytes: u64,
    bytes_total: u64,
    bytes_have: u64,
    chunks_have: usize,
    peers: HashMap<PeerId, PeerState>,
    requests: HashMap<RequestToken, Request>,
    next_token: u64,
    events: VecDeque<DownloadEvent>,
    stats: DownloadStats,
    completed_reported: bool,
    stalled_reported: bool,
}

impl DownloadScheduler {
    /// A download of `manifest`, where the chunks in `have` are already
    /// stored (empty for a fresh download, the stored set when resuming).
    /// The manifest must have been validated.
    pub fn new(
        manifest: &Manifest,
        have: impl IntoIterator<Item = ChunkId>,
        config: SchedulerConfig,
    ) -> Self {
        let mut chunks: HashMap<ChunkId, ChunkState> = HashMap::new();
        let mut order = Vec::new();
        for (index, chunk) in manifest.chunks.iter().enumerate() {
            chunks
                .entry(chunk.id)
                .and_modify(|state| state.occurrences += 1)
                .or_insert_with(|| {
                    order.push(chunk.id);
                    ChunkState {
                        first_index: index,
                        len: chunk.len,
                        occurrences: 1,
                        status: Status::Missing,
                        rarity: 0,
                    }
                });
        }
        let mut scheduler = Self {
            config,
            chunks,
            order,
            missing: BTreeSet::new(),
            missing_bytes: 0,
            bytes_total: manifest.size,
            bytes_have: 0,
            chunks_have: 0,
            peers: HashMap::new(),
            requests: HashMap::new(),
            next_token: 0,
            events: VecDeque::new(),
            stats: DownloadStats::default(),
            completed_reported: false,
            stalled_reported: false,
        };
        for id in have {
            scheduler.mark_have(&id);
        }
        scheduler.refresh_rarity();
        scheduler.check_completed();
        scheduler
    }

    /// How far the download is.
    pub fn progress(&self) -> Progress {
        Progress {
            bytes_have: self.bytes_have,
            bytes_total: self.bytes_total,
            chunks_have: self.chunks_have,
            chunks_total: self.order.len(),
        }
    }

    /// Whether every chunk is here.
    pub fn is_complete(&self) -> bool {
        self.chunks_have == self.order.len()
    }

    /// Counters of what happened so far.
    pub fn stats(&self) -> DownloadStats {
        self.stats
    }

    /// Requests in flight right now.
    pub fn in_flight(&self) -> usize {
        self.requests.len()
    }

    /// Whether `peer` is barred from requests at `now`.
    pub fn is_penalized(&self, peer: &PeerId, now: LocalMicros) -> bool {
        self.peers.get(peer).is_some_and(|p| p.is_blocked(now))
    }

    /// Distinct chunks still missing, in file order.
    pub fn missing(&self) -> impl Iterator<Item = ChunkId> + '_ {
        self.order
            .iter()
            .filter(|id| {
                self.chunks
                    .get(*id)
                    .is_some_and(|c| c.status != Status::Have)
            })
            .copied()
    }

    /// Adds `peer` as a holder (or replaces what it holds). A peer that was
    /// penalized stays penalized.
    pub fn add_peer(&mut self, peer: PeerId, holding: Holding) {
        match self.peers.get_mut(&peer) {
            Some(state) => state.holding = holding,
            None => {
                self.peers.insert(
                    peer,
                    PeerState {
                        holding,
                        lacks: HashSet::new(),
                        outstanding: 0,
                        outstanding_bytes: 0,
                        blocked_until: None,
                        consecutive_failures: 0,
                    },
                );
            }
        }
        self.refresh_rarity();
        self.stalled_reported = false;
    }

    /// Forgets `peer` (it left or disconnected). Its requests in flight are
    /// dropped and their chunks go back to the pool; a response that still
    /// arrives for them is used if its chunks verify.
    pub fn remove_peer(&mut self, peer: &PeerId) {
        if self.peers.remove(peer).is_none() {
            return;
        }
        self.refresh_rarity();
        let tokens: Vec<RequestToken> = self
            .requests
            .iter()
            .filter(|(_, r)| r.peer == *peer)
            .map(|(t, _)| *t)
            .collect();
        for token in tokens {
            self.drop_request(token);
        }
    }

    /// The next request to send, if any peer can take one now. Call until it
    /// returns `None` after every input.
    pub fn poll_request(&mut self, now: LocalMicros) -> Option<ChunkRequest> {
        if self.is_complete() {
            return None;
        }
        let mut candidates: Vec<(&PeerId, &PeerState)> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                !p.is_blocked(now) && p.outstanding < self.config.max_requests_per_peer
            })
            .collect();
        // Fewest outstanding requests first, then fewest bytes owed, then a
        // stable order so that runs are reproducible.
        candidates.sort_by(|(a_id, a), (b_id, b)| {
            (a.outstanding, a.outstanding_bytes, *a_id).cmp(&(
                b.outstanding,
                b.outstanding_bytes,
                *b_id,
            ))
        });
        let eligible = candidates.len() as u64;
        let candidates: Vec<PeerId> = candidates.into_iter().map(|(id, _)| *id).collect();
        for peer in candidates {
            let ids = self.pick_batch(&peer, eligible);
            if ids.is_empty() {
                continue;
            }
            return Some(self.issue(now, peer, ids));
        }
        self.check_stalled();
        None
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<DownloadEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called:
    /// the earliest request deadline or end of a penalty, if any.
    pub fn poll_timeout(&self) -> Option<LocalMicros> {
        if self.is_complete() {
            return None;
        }
        let deadlines = self.requests.values().map(|r| r.deadline);
        let unblocks = self.peers.values().filter_map(|p| p.blocked_until);
        deadlines.chain(unblocks).min()
    }

    /// Expires requests past their deadline: their peer backs off and their
    /// chunks go back to the pool. Penalties that ended need no action.
    pub fn handle_timeout(&mut self, now: LocalMicros) {
        let expired: Vec<RequestToken> = self
            .requests
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for token in expired {
            if let Some(request) = self.drop_request(token) {
                self.stats.timeouts += 1;
                self.events.push_back(DownloadEvent::RequestTimedOut {
                    peer: request.peer,
                    token,
                });
                self.back_off(now, request.peer);
            }
        }
        for peer in self.peers.values_mut() {
            if peer.blocked_until.is_some_and(|until| until <= now) {
                peer.blocked_until = None;
            }
        }
    }

    /// Feeds the verdicts on a response from `peer` to request `token`:
    /// one outcome per chunk the response answered. Requested chunks the
    /// response did not answer go back to the pool. A late response (the
    /// request timed out or its peer was removed) still counts its verified
    /// chunks, and wrong bytes are still penalized.
    pub fn handle_response(
        &mut self,
        now: LocalMicros,
        peer: PeerId,
        token: RequestToken,
        outcomes: &[(ChunkId, ChunkOutcome)],
    ) {
        let request = self.drop_request(token);
        // The request knows whom it went to; `peer` matters for late responses.
        let peer = request.as_ref().map_or(peer, |r| r.peer);
        let mut corrupt = false;
        for (id, outcome) in outcomes {
            // Only chunks of this request count (or of this track, when late).
            let asked = match &request {
                Some(r) => r.ids.contains(id),
                None => self.chunks.contains_key(id),
            };
            if !asked {
                continue;
            }
            match outcome {
                ChunkOutcome::Verified => {
                    self.stats.verified += 1;
                    self.mark_have(id);
                }
                ChunkOutcome::Corrupt => {
                    self.stats.corrupt += 1;
                    corrupt = true;
                }
                ChunkOutcome::Missing => {
                    self.stats.missing += 1;
                    if let Some(state) = self.peers.get_mut(&peer)
                        && state.lacks.insert(*id)
                    {
                        self.refresh_rarity_of(id);
                    }
                }
            }
        }
        if corrupt {
            self.penalize(now, peer, PenaltyReason::CorruptChunk);
        } else if request.is_some()
            && let Some(state) = self.peers.get_mut(&peer)
        {
            state.consecutive_failures = 0;
        }
        self.check_completed();
    }

    /// Feeds a request that produced no usable response. Its chunks go back
    /// to the pool; the peer backs off, or is penalized for a malformed
    /// response.
    pub fn handle_failure(&mut self, now: LocalMicros, token: RequestToken, failure: Failure) {
        let Some(request) = self.drop_request(token) else {
            return;
        };
        self.stats.failures += 1;
        match failure {
            Failure::Malformed => self.penalize(now, request.peer, PenaltyReason::Malformed),
            Failure::Timeout | Failure::Connection | Failure::Refused => {
                self.back_off(now, request.peer);
            }
        }
    }

    fn issue(&mut self, now: LocalMicros, peer: PeerId, ids: Vec<ChunkId>) -> ChunkRequest {
        let token = RequestToken(self.next_token);
        self.next_token += 1;
        let mut bytes = 0u64;
        for id in &ids {
            self.leave_missing(id);
            if let Some(state) = self.chunks.get_mut(id) {
                state.status = Status::InFlight(token);
                bytes += u64::from(state.len);
            }
        }
        if let Some(state) = self.peers.get_mut(&peer) {
            state.outstanding += 1;
            state.outstanding_bytes += bytes;
        }
        self.requests.insert(
            token,
            Request {
                peer,
                ids: ids.clone(),
                bytes,
                deadline: now + self.config.request_timeout_micros,
            },
        );
        self.stats.requests += 1;
        ChunkRequest { token, peer, ids }
    }

    /// The chunks to ask `peer` for next: missing ones it holds, rarest
    /// first, then earliest in the file. The batch shrinks near the end so
    /// the remaining bytes spread over every eligible peer's pipeline.
    fn pick_batch(&self, peer: &PeerId, eligible_peers: u64) -> Vec<ChunkId> {
        let Some(state) = self.peers.get(peer) else {
            return Vec::new();
        };
        let slots = eligible_peers.max(1) * self.config.max_requests_per_peer as u64;
        let budget = (self.missing_bytes / slots).clamp(1, self.config.max_batch_bytes);
        let mut batch = Vec::new();
        let mut bytes = 0u64;
        // `missing` is already in the order chunks are asked for; a peer
        // that holds everything takes the front of it.
        for &(_, _, id) in &self.missing {
            if !state.holds(&id) {
                continue;
            }
            let len = self.chunks.get(&id).map_or(0, |c| u64::from(c.len));
            if !batch.is_empty()
                && (bytes + len > budget || batch.len() >= self.config.max_batch_chunks)
            {
                break;
            }
            batch.push(id);
            bytes += len;
        }
        batch
    }

    /// Removes a request, returning its chunks still in flight under it to
    /// the pool and keeping the peer's `outstanding` invariant.
    fn drop_request(&mut self, token: RequestToken) -> Option<Request> {
        let request = self.requests.remove(&token)?;
        for id in &request.ids {
            if let Some(chunk) = self.chunks.get_mut(id)
                && chunk.status == Status::InFlight(token)
            {
                chunk.status = Status::Missing;
                self.enter_missing(id);
            }
        }
        if let Some(peer) = self.peers.get_mut(&request.peer) {
            peer.outstanding = peer.outstanding.saturating_sub(1);
            peer.outstanding_bytes = peer.outstanding_bytes.saturating_sub(request.bytes);
        }
        Some(request)
    }

    fn mark_have(&mut self, id: &ChunkId) {
        self.leave_missing(id);
        if let Some(chunk) = self.chunks.get_mut(id)
            && chunk.status != Status::Have
        {
            chunk.status = Status::Have;
            self.chunks_have += 1;
            self.bytes_have += u64::from(chunk.len) * u64::from(chunk.occurrences);
        }
    }

    /// Files `id` (whose status is now `Missing`) under its place in the
    /// asking order.
    fn enter_missing(&mut self, id: &ChunkId) {
        if let Some(chunk) = self.chunks.get(id)
            && self.missing.insert((chunk.rarity, chunk.first_index, *id))
        {
            self.missing_bytes += u64::from(chunk.len);
        }
    }

    /// Takes `id` out of the asking order (its status leaves `Missing`).
    fn leave_missing(&mut self, id: &ChunkId) {
        if let Some(chunk) = self.chunks.get(id)
            && chunk.status == Status::Missing
            && self.missing.remove(&(chunk.rarity, chunk.first_index, *id))
        {
            self.missing_bytes -= u64::from(chunk.len);
        }
    }

    /// Recounts every chunk's holders and rebuilds the asking order. Runs
    /// when peers come, go or change what they hold, not per request.
    fn refresh_rarity(&mut self) {
        let peers = &self.peers;
        self.missing.clear();
        self.missing_bytes = 0;
        for (id, chunk) in &mut self.chunks {
            chunk.rarity = peers.values().filter(|p| p.holds(id)).count();
            if chunk.status == Status::Missing {
                self.missing.insert((chunk.rarity, chunk.first_index, *id));
                self.missing_bytes += u64::from(chunk.len);
            }
        }
    }

    /// Recounts one chunk's holders (a peer turned out to lack it).
    fn refresh_rarity_of(&mut self, id: &ChunkId) {
        let rarity = self.peers.values().filter(|p| p.holds(id)).count();
        let Some(chunk) = self.chunks.get_mut(id) else {
            return;
        };
        if chunk.status == Status::Missing
            && self.missing.remove(&(chunk.rarity, chunk.first_index, *id))
        {
            self.missing.insert((rarity, chunk.first_index, *id));
        }
        chunk.rarity = rarity;
    }

    fn penalize(&mut self, now: LocalMicros, peer: PeerId, reason: PenaltyReason) {
        let until = now + self.config.corrupt_penalty_micros;
        self.block(peer, reason, until);
    }

    fn back_off(&mut self, now: LocalMicros, peer: PeerId) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        let shift = state.consecutive_failures.min(20);
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        if state.consecutive_failures >= self.config.max_consecutive_failures {
            // It keeps failing: stop waiting for it. Its chunks go to others,
            // or the download reports itself stalled.
            self.events.push_back(DownloadEvent::PeerDropped { peer });
            self.remove_peer(&peer);
            return;
        }
        let backoff = self
            .config
            .failure_backoff_micros
            .saturating_mul(1i64 << shift)
            .min(self.config.max_failure_backoff_micros);
        self.block(peer, PenaltyReason::Backoff, now + backoff);
    }

    fn block(&mut self, peer: PeerId, reason: PenaltyReason, until: LocalMicros) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        // A shorter backoff never shortens a longer penalty.
        let until = state.blocked_until.map_or(until, |old| old.max(until));
        state.blocked_until = Some(until);
        self.events.push_back(DownloadEvent::PeerPenalized {
            peer,
            reason,
            until,
        });
    }

    fn check_completed(&mut self) {
        if self.is_complete() && !self.completed_reported {
            self.completed_reported = true;
            self.events.push_back(DownloadEvent::Completed);
        }
    }

    /// Reports, once per change of peers, missing chunks that no known peer
    /// holds while nothing is in flight that could still bring them.
    fn check_stalled(&mut self) {
        if self.stalled_reported || self.is_complete() {
            return;
        }
        // No holder: rarity 0, at the front of the asking order.
        let unavailable = self
            .missing
            .iter()
            .take_while(|(rarity, _, _)| *rarity == 0)
            .count();
        if unavailable > 0 {
            self.stalled_reported = true;
            self.events
                .push_back(DownloadEvent::Stalled { unavailable });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use firefly_library::{ChunkRef, TrackId, TrackMeta};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const SEC: i64 = MICROS_PER_SEC;

    fn manifest_of(lens: &[u32]) -> Manifest {
        let chunks: Vec<ChunkRef> = lens
            .iter()
            .enumerate()
            .map(|(i, &len)| ChunkRef {
                id: ChunkId::of(&(i as u64).to_le_bytes()),
                len,
            })
            .collect();
        Manifest {
            track: TrackId::of(b"t"),
            size: lens.iter().map(|&l| u64::from(l)).sum(),
            chunks,
            meta: TrackMeta::default(),
        }
    }

    fn ids(m: &Manifest) -> Vec<ChunkId> {
        m.chunks.iter().map(|c| c.id).collect()
    }

    /// One request per peer at a time, so a small track goes in one batch.
    fn one_deep() -> SchedulerConfig {
        let mut config = SchedulerConfig::default();
        config.max_requests_per_peer(1);
        config
    }

    fn verified(ids: &[ChunkId]) -> Vec<(ChunkId, ChunkOutcome)> {
        ids.iter().map(|id| (*id, ChunkOutcome::Verified)).collect()
    }

    fn drain(s: &mut DownloadScheduler, now: LocalMicros) -> Vec<ChunkRequest> {
        std::iter::from_fn(|| s.poll_request(now)).collect()
    }

    fn events(s: &mut DownloadScheduler) -> Vec<DownloadEvent> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    #[test]
    fn first_requests_spread_over_every_holder() {
        let m = manifest_of(&[64 * 1024; 30]);
        let mut config = SchedulerConfig::default();
        config.max_requests_per_peer(4);
        let mut s = DownloadScheduler::new(&m, [], config);
        let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        for p in &peers {
            s.add_peer(*p, Holding::All);
        }
        let requests = drain(&mut s, LocalMicros(0));
        // Fewest outstanding first: the first three go to three peers.
        let first: HashSet<PeerId> = requests[..3].iter().map(|r| r.peer).collect();
        assert_eq!(first.len(), 3);
        // Pipelined: every peer has the full depth in flight.
        assert_eq!(requests.len(), 3 * 4);
        // Batched (the 30 chunks spread over the 12 slots) and no chunk is
        // asked for twice.
        assert!(requests[0].ids.len() >= 2);
        let mut asked: Vec<ChunkId> = requests.iter().flat_map(|r| r.ids.clone()).collect();
        assert!(requests.iter().all(|r| !r.ids.is_empty()));
        let total = asked.len();
        asked.sort();
        asked.dedup();
        assert_eq!(asked.len(), total);
        assert!(total <= 30);
    }

    #[test]
    fn rarest_chunks_are_asked_for_first() {
        let m = manifest_of(&[1000; 6]);
        let all = ids(&m);
        let mut config = SchedulerConfig::default();
        config.max_batch_chunks(1).max_requests_per_peer(1);
        let mut s = DownloadScheduler::new(&m, [], config);
        let (a, b) = (PeerId::random(), PeerId::random());
        s.add_peer(a, Holding::All);
        s.add_peer(b, Holding::Some(all[..2].iter().copied().collect()));
        let requests = drain(&mut s, LocalMicros(0));
        let to_a = requests.iter().find(|r| r.peer == a).unwrap();
        let to_b = requests.iter().find(|r| r.peer == b).unwrap();
        // Chunk 2 is the first that only `a` holds; `b` gets its earliest.
        assert_eq!(to_a.ids, vec![all[2]]);
        assert_eq!(to_b.ids, vec![all[0]]);
    }

    #[test]
    fn a_peer_sending_wrong_bytes_is_penalized_and_the_chunk_comes_from_elsewhere() {
        let m = manifest_of(&[1000; 4]);
        let mut config = one_deep();
        config.corrupt_penalty_micros(60 * SEC);
        let mut s = DownloadScheduler::new(&m, [], config);
        let (bad, good) = (PeerId::random(), PeerId::random());
        s.add_peer(bad, Holding::All);
        let now = LocalMicros(0);
        let r = drain(&mut s, now);
        assert_eq!(
            r.len(),
            1,
            "one slot: the batch covers the whole small track"
        );
        let outcomes: Vec<_> = r[0]
            .ids
            .iter()
            .map(|id| (*id, ChunkOutcome::Corrupt))
            .collect();
        s.handle_response(now, bad, r[0].token, &outcomes);
        assert!(s.is_penalized(&bad, now + SEC));
        assert!(events(&mut s).iter().any(|e| matches!(
            e,
            DownloadEvent::PeerPenalized { peer, reason: PenaltyReason::CorruptChunk, .. } if *peer == bad
        )));
        assert!(
            drain(&mut s, now + SEC).is_empty(),
            "no request to a penalized peer"
        );
        s.add_peer(good, Holding::All);
        let r = drain(&mut s, now + SEC);
        assert!(r.iter().all(|r| r.peer == good));
        for req in &r {
            s.handle_response(now + SEC, good, req.token, &verified(&req.ids));
        }
        assert!(s.is_complete());
        assert_eq!(s.stats().corrupt, 4);
        assert!(events(&mut s).contains(&DownloadEvent::Completed));
        // The penalty ends on time.
        assert!(!s.is_penalized(&bad, now + 60 * SEC));
    }

    #[test]
    fn a_stalled_request_times_out_and_the_peer_backs_off_longer_each_time() {
        let m = manifest_of(&[1000; 2]);
        let mut config = SchedulerConfig::default();
        config
            .request_timeout_micros(5 * SEC)
            .failure_backoff_micros(SEC, 8 * SEC)
            .max_requests_per_peer(1);
        let mut s = DownloadScheduler::new(&m, [], config);
        let staller = PeerId::random();
        s.add_peer(staller, Holding::All);
        let mut now = LocalMicros(0);
        let mut backoffs = Vec::new();
        for _ in 0..5 {
            let r = drain(&mut s, now);
            assert_eq!(r.len(), 1);
            let deadline = s.poll_timeout().unwrap();
            assert_eq!(deadline, now + 5 * SEC);
            now = deadline;
            s.handle_timeout(now);
            let evs = events(&mut s);
            assert!(
                evs.iter()
                    .any(|e| matches!(e, DownloadEvent::RequestTimedOut { .. }))
            );
            let until = evs
                .iter()
                .find_map(|e| match e {
                    DownloadEvent::PeerPenalized { until, .. } => Some(*until),
                    _ => None,
                })
                .unwrap();
            backoffs.push(until - now);
            assert!(drain(&mut s, now).is_empty());
            now = s.poll_timeout().unwrap();
            s.handle_timeout(now);
        }
        assert_eq!(backoffs, vec![SEC, 2 * SEC, 4 * SEC, 8 * SEC, 8 * SEC]);
        assert_eq!(s.stats().timeouts, 5);
    }

    #[test]
    fn a_peer_that_keeps_failing_is_dropped_and_the_download_stalls() {
        let m = manifest_of(&[1000; 2]);
        let mut config = one_deep();
        config
            .request_timeout_micros(SEC)
            .failure_backoff_micros(SEC, SEC)
            .max_consecutive_failures(3);
        let mut s = DownloadScheduler::new(&m, [], config);
        let staller = PeerId::random();
        s.add_peer(staller, Holding::All);
        let mut now = LocalMicros(0);
        let mut stalled = false;
        for _ in 0..20 {
            drain(&mut s, now);
            let evs = events(&mut s);
            if evs
                .iter()
                .any(|e| matches!(e, DownloadEvent::Stalled { .. }))
            {
                stalled = true;
                assert!(
                    evs.contains(&DownloadEvent::PeerDropped { peer: staller })
                        || s.stats().timeouts == 3
                );
                break;
            }
            let Some(next) = s.poll_timeout() else { break };
            now = next;
            s.handle_timeout(now);
        }
        assert!(stalled);
        assert_eq!(s.stats().timeouts, 3);
        assert_eq!(s.in_flight(), 0);
    }

    #[test]
    fn a_late_response_still_counts_its_verified_chunks() {
        let m = manifest_of(&[1000; 2]);
        let mut config = one_deep();
        config.request_timeout_micros(SEC);
        let mut s = DownloadScheduler::new(&m, [], config);
        let p = PeerId::random();
        s.add_peer(p, Holding::All);
        let r = drain(&mut s, LocalMicros(0));
        s.handle_timeout(LocalMicros(SEC));
        s.handle_response(LocalMicros(2 * SEC), p, r[0].token, &verified(&r[0].ids));
        assert!(s.is_complete());
        assert_eq!(s.in_flight(), 0);
    }

    #[test]
    fn resuming_asks_only_for_what_is_missing() {
        let m = manifest_of(&[1000; 5]);
        let all = ids(&m);
        let mut s =
            DownloadScheduler::new(&m, all[..3].iter().copied(), SchedulerConfig::default());
        assert_eq!(s.progress().chunks_have, 3);
        assert_eq!(s.progress().bytes_have, 3000);
        s.add_peer(PeerId::random(), Holding::All);
        let asked: Vec<ChunkId> = drain(&mut s, LocalMicros(0))
            .into_iter()
            .flat_map(|r| r.ids)
            .collect();
        assert_eq!(asked, all[3..].to_vec());

        let mut done = DownloadScheduler::new(&m, all.clone(), SchedulerConfig::default());
        assert!(done.is_complete());
        assert_eq!(events(&mut done), vec![DownloadEvent::Completed]);
        done.add_peer(PeerId::random(), Holding::All);
        assert!(drain(&mut done, LocalMicros(0)).is_empty());
    }

    #[test]
    fn a_chunk_a_peer_lacks_is_not_asked_again_and_its_absence_is_reported() {
        let m = manifest_of(&[1000; 2]);
        let all = ids(&m);
        let mut s = DownloadScheduler::new(&m, [], one_deep());
        let p = PeerId::random();
        s.add_peer(p, Holding::All);
        let r = drain(&mut s, LocalMicros(0));
        s.handle_response(
            LocalMicros(1),
            p,
            r[0].token,
            &[
                (all[0], ChunkOutcome::Verified),
                (all[1], ChunkOutcome::Missing),
            ],
        );
        assert!(drain(&mut s, LocalMicros(2)).is_empty());
        assert!(events(&mut s).contains(&DownloadEvent::Stalled { unavailable: 1 }));
        let q = PeerId::random();
        s.add_peer(q, Holding::All);
        let r = drain(&mut s, LocalMicros(3));
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].peer, r[0].ids.clone()), (q, vec![all[1]]));
    }

    #[test]
    fn chunks_the_response_left_out_go_back_to_the_pool_without_blame() {
        let m = manifest_of(&[1000; 3]);
        let mut s = DownloadScheduler::new(&m, [], one_deep());
        let p = PeerId::random();
        s.add_peer(p, Holding::All);
        let r = drain(&mut s, LocalMicros(0));
        assert_eq!(r[0].ids.len(), 3);
        s.handle_response(LocalMicros(1), p, r[0].token, &verified(&r[0].ids[..1]));
        assert!(!s.is_penalized(&p, LocalMicros(1)));
        let again: Vec<ChunkId> = drain(&mut s, LocalMicros(1))
            .into_iter()
            .flat_map(|r| r.ids)
            .collect();
        assert_eq!(again, r[0].ids[1..].to_vec());
    }

    #[test]
    fn repeated_chunks_are_fetched_once_and_counted_per_occurrence() {
        let mut m = manifest_of(&[1000, 500]);
        m.chunks.push(m.chunks[0]);
        m.size += 1000;
        let mut s = DownloadScheduler::new(&m, [], SchedulerConfig::default());
        assert_eq!(s.progress().chunks_total, 2);
        let p = PeerId::random();
        s.add_peer(p, Holding::All);
        let r = drain(&mut s, LocalMicros(0));
        assert_eq!(r.iter().map(|r| r.ids.len()).sum::<usize>(), 2);
        for req in r {
            s.handle_response(LocalMicros(1), p, req.token, &verified(&req.ids));
        }
        assert_eq!(s.progress().bytes_have, 2500);
        assert_eq!(s.progress().bytes_have, s.progress().bytes_total);
    }

    #[test]
    fn a_removed_peer_gets_no_more_requests_and_its_chunks_go_elsewhere() {
        let m = manifest_of(&[1000; 8]);
        let mut s = DownloadScheduler::new(&m, [], SchedulerConfig::default());
        let (a, b) = (PeerId::random(), PeerId::random());
        s.add_peer(a, Holding::All);
        s.add_peer(b, Holding::All);
        let first = drain(&mut s, LocalMicros(0));
        s.remove_peer(&a);
        let b_ids: HashSet<ChunkId> = first
            .iter()
            .filter(|r| r.peer == b)
            .flat_map(|r| r.ids.clone())
            .collect();
        for req in first.iter().filter(|r| r.peer == b) {
            s.handle_response(LocalMicros(1), b, req.token, &verified(&req.ids));
        }
        let rest = drain(&mut s, LocalMicros(1));
        assert!(rest.iter().all(|r| r.peer == b));
        let rest_ids: HashSet<ChunkId> = rest.iter().flat_map(|r| r.ids.clone()).collect();
        assert_eq!(rest_ids.len() + b_ids.len(), 8);
    }

    #[derive(Debug, Clone, Copy)]
    enum Behaviour {
        Honest,
        Corrupt,
        Stall,
        Flaky,
        Lacking,
    }

    fn behaviour() -> impl Strategy<Value = Behaviour> {
        prop_oneof![
            Just(Behaviour::Honest),
            Just(Behaviour::Corrupt),
            Just(Behaviour::Stall),
            Just(Behaviour::Flaky),
            Just(Behaviour::Lacking),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// A simulated swarm of honest, corrupting, stalling, flaky and
        /// lacking peers: the scheduler keeps its invariants at every step,
        /// and completes whenever one honest holder exists.
        #[test]
        fn downloads_complete_despite_bad_peers(
            lens in proptest::collection::vec(1u32..300_000, 1..60),
            have in proptest::collection::vec(any::<bool>(), 60),
            behaviours in proptest::collection::vec((behaviour(), 1i64..200_000), 1..6),
            honest_latency in 1i64..200_000,
            flaky_seed in any::<u64>(),
        ) {
            let m = manifest_of(&lens);
            let all = ids(&m);
            let present: Vec<ChunkId> = all.iter().zip(&have).filter(|(_, h)| **h).map(|(id, _)| *id).collect();
            let config = SchedulerConfig::default();
            let mut s = DownloadScheduler::new(&m, present.iter().copied(), config.clone());
            let mut peers: Vec<(PeerId, Behaviour, i64)> = behaviours
                .iter()
                .map(|(b, latency)| (PeerId::random(), *b, *latency))
                .collect();
            peers.push((PeerId::random(), Behaviour::Honest, honest_latency));
            for (p, _, _) in &peers {
                s.add_peer(*p, Holding::All);
            }
            let kind: HashMap<PeerId, (Behaviour, i64)> = peers.iter().map(|(p, b, l)| (*p, (*b, *l))).collect();
            let mut have_set: HashSet<ChunkId> = present.into_iter().collect();
            let mut deliveries: BTreeMap<(LocalMicros, u64), ChunkRequest> = BTreeMap::new();
            let mut penalized_until: HashMap<PeerId, LocalMicros> = HashMap::new();
            let mut rng = flaky_seed;
            let mut now = LocalMicros(0);
            for _ in 0..20_000 {
                while let Some(req) = s.poll_request(now) {
                    prop_assert!(!req.ids.is_empty());
                    prop_assert!(req.ids.len() <= MAX_CHUNKS_PER_REQUEST);
                    if let Some(until) = penalized_until.get(&req.peer) {
                        prop_assert!(*until <= now, "asked a penalized peer");
                    }
                    for id in &req.ids {
                        prop_assert!(!have_set.contains(id), "asked for a chunk already here");
                    }
                    let (b, latency) = kind[&req.peer];
                    if !matches!(b, Behaviour::Stall) {
                        deliveries.insert((now + latency, req.token.get()), req);
                    }
                }
                prop_assert!(s.in_flight() <= peers.len() * config.max_requests_per_peer);
                while let Some(ev) = s.poll_event() {
                    if let DownloadEvent::PeerPenalized { peer, until, .. } = ev {
                        penalized_until.insert(peer, until);
                    }
                }
                if s.is_complete() {
                    break;
                }
                let next_delivery = deliveries.keys().next().map(|(t, _)| *t);
                let next = match (next_delivery, s.poll_timeout()) {
                    (Some(a), Some(b)) => a.min(b),
                    (a, b) => a.or(b).unwrap(),
                };
                prop_assert!(next >= now);
                now = next;
                s.handle_timeout(now);
                while let Some(entry) = deliveries.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    let req = entry.remove();
                    let (b, _) = kind[&req.peer];
                    rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    match b {
                        Behaviour::Flaky if rng >> 63 == 1 => {
                            s.handle_failure(now, req.token, Failure::Connection);
                        }
                        Behaviour::Corrupt => {
                            let outcomes: Vec<_> = req.ids.iter().map(|id| (*id, ChunkOutcome::Corrupt)).collect();
                            s.handle_response(now, req.peer, req.token, &outcomes);
                        }
                        Behaviour::Lacking => {
                            let outcomes: Vec<_> = req.ids.iter().map(|id| (*id, ChunkOutcome::Missing)).collect();
                            s.handle_response(now, req.peer, req.token, &outcomes);
                        }
                        _ => {
                            have_set.extend(req.ids.iter().copied());
                            s.handle_response(now, req.peer, req.token, &verified(&req.ids));
                        }
                    }
                }
            }
            prop_assert!(s.is_complete(), "download did not complete: {:?}", s.progress());
            prop_assert_eq!(s.progress().bytes_have, m.size);
            for (p, b, _) in &peers {
                if matches!(b, Behaviour::Corrupt) && s.stats().corrupt > 0 {
                    // Every corrupting peer that was asked got penalized.
                    let asked = penalized_until.contains_key(p);
                    prop_assert!(asked || s.stats().requests > 0);
                }
            }
        }
    }
}

/// The scheduler's cost at the largest track size.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod scale {
    use super::*;
    use firefly_library::{ChunkRef, TrackId, TrackMeta};

    /// The scheduler's own cost for the largest track a manifest allows:
    /// 4 GiB in 65,536 chunks of 64 KiB, `holders` peers holding all of it,
    /// every request answered at once: the time from the first request to
    /// completion.
    fn drive(holders: usize) -> std::time::Duration {
        const CHUNKS: usize = 65_536;
        let chunks: Vec<ChunkRef> = (0..CHUNKS)
            .map(|i| ChunkRef {
                id: ChunkId::of(&(i as u64).to_le_bytes()),
                len: 64 * 1024,
            })
            .collect();
        let manifest = Manifest {
            track: TrackId::of(b"big"),
            size: CHUNKS as u64 * 64 * 1024,
            chunks,
            meta: TrackMeta::default(),
        };
        let mut s = DownloadScheduler::new(&manifest, [], SchedulerConfig::default());
        for _ in 0..holders {
            s.add_peer(PeerId::random(), Holding::All);
        }
        let started = std::time::Instant::now();
        let now = LocalMicros(0);
        let mut in_flight = std::collections::VecDeque::new();
        while !s.is_complete() {
            while let Some(request) = s.poll_request(now) {
                in_flight.push_back(request);
            }
            let request = in_flight.pop_front().unwrap();
            let outcomes: Vec<(ChunkId, ChunkOutcome)> = request
                .ids
                .iter()
                .map(|id| (*id, ChunkOutcome::Verified))
                .collect();
            s.handle_response(now, request.peer, request.token, &outcomes);
        }
        started.elapsed()
    }

    /// Before the asking order was kept, every request scanned and sorted
    /// all chunks: 29–31 s of event-loop time for this track (release
    /// build), long enough to starve heartbeats and time exchanges. Now
    /// ~35 ms in release; the bound leaves room for a debug build on a
    /// busy machine.
    #[test]
    fn scheduling_the_largest_track_takes_well_under_a_second_per_gigabyte() {
        for holders in [1, 3] {
            let took = drive(holders);
            println!("65,536 chunks, {holders} holder(s): {took:?}");
            assert!(
                took < std::time::Duration::from_secs(4),
                "{holders} holder(s): {took:?}"
            );
        }
    }
}
