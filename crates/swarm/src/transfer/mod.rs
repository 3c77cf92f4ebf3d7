//! Library sync and verified chunk transfer between Firefly nodes.
//!
//! This module tree is the sans-IO part of Firefly's transfer protocols plus
//! (once wired) their glue to the libp2p event loop:
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
//!
//! None of these read a clock or touch a socket; time is a parameter.

pub mod catalog;
pub mod codec;
pub mod limiter;
pub mod scheduler;
pub mod wire;

pub use catalog::{CatalogEntry, CatalogError, SwarmCatalog, SyncNeed};
pub use limiter::UploadLimiter;
pub use scheduler::{
    ChunkOutcome, ChunkRequest, DownloadEvent, DownloadScheduler, DownloadStats, Failure, Holding,
    PenaltyReason, Progress, RequestToken, SchedulerConfig,
};
mod glue;
pub(crate) mod service;

pub use service::{
    Fault, MAX_INBOUND_PER_PEER, PeerTraffic, TransferConfig, TransferError, TransferEvent,
    TransferStats,
};
