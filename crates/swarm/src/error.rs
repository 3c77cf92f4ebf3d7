//! [`ClientError`]: why a [`crate::Client`] call failed.
//!
//! Its own module so that the protocol modules that park a client's reply
//! (control, the time exchange) name it without importing the client.

use crate::transfer::TransferError;

/// Why a client call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The event loop has stopped.
    #[error("the swarm event loop has stopped")]
    Closed,
    /// A dial failed.
    #[error("dial failed: {0}")]
    Dial(String),
    /// A request to a peer failed.
    #[error("request failed: {0}")]
    Request(String),
    /// A download failed.
    #[error(transparent)]
    Transfer(#[from] TransferError),
}
