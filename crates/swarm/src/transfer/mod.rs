//! Library sync and verified chunk transfer between Firefly nodes.
//!
//! This module tree is the sans-IO part of Firefly's transfer protocols and
//! the state that drives them:
//!
//! - [`wire`]: the messages of `/firefly/library/1`, `/firefly/manifest/1`,
//!   `/firefly/chunks/1` and the `firefly/library/1` gossip topic, their
//!   byte limits and validation.
//! - [`scheduler`]: [`DownloadScheduler`], which decides which chunks to ask
//!   which peer for, penalizes peers that send wrong bytes, and times out
//!   stalled requests.
//! - [`codec`]: the libp2p request-response codecs and configs with their limits.
//! - [`limiter`]: [`UploadLimiter`], the token bucket behind `--max-upload`.
//! - [`catalog`]: [`SwarmCatalog`], the union of all nodes' tracks with
//!   their holders, kept current from deltas.
//! - [`cover`]: `/firefly/cover/1`, cover pictures by their BLAKE3 id.
//!
//! `service` puts them to work: its `Transfer` owns the transfer
//! protocols' tables and answers the event loop's calls; the loop side is
//! `event_loop::transfer`.
//!
//! None of the sans-IO pieces read a clock or touch a socket; time is a
//! parameter.

pub mod catalog;
pub mod codec;
pub mod cover;
pub mod limiter;
pub mod scheduler;
pub mod wire;

pub use catalog::{CatalogEntry, CatalogError, SwarmCatalog, SyncNeed};
pub use limiter::UploadLimiter;
pub use scheduler::{
    ChunkOutcome, ChunkRequest, DownloadEvent, DownloadScheduler, DownloadStats, Failure, Holding,
    PenaltyReason, Progress, RequestToken, SchedulerConfig,
};
pub(crate) mod service;

pub use service::{
    Fault, MAX_INBOUND_PER_PEER, PeerTraffic, TransferConfig, TransferError, TransferEvent,
    TransferStats,
};
