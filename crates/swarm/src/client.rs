//! The [`Client`]: the handle the rest of the node uses to talk to the event
//! loop. Each method sends a [`Command`] carrying a `oneshot` sender and
//! awaits the answer; the loop parks the senders until the answer is known.

use crate::event::Stats;
use crate::membership::Member;
use crate::status::NodeStatus;
use crate::time_exchange::{ClockStatus, TimeSample};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

/// Why a client call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
}

type Reply<T> = oneshot::Sender<T>;

/// A request from a [`Client`] to the event loop.
#[derive(Debug)]
pub(crate) enum Command {
    Dial {
        addr: Multiaddr,
        reply: Reply<Result<PeerId, ClientError>>,
    },
    Members {
        reply: Reply<Vec<Member>>,
    },
    ConnectedPeers {
        reply: Reply<Vec<PeerId>>,
    },
    ListenAddrs {
        reply: Reply<Vec<Multiaddr>>,
    },
    SetStatus {
        status: NodeStatus,
    },
    TimeSample {
        peer: PeerId,
        reply: Reply<Result<TimeSample, ClientError>>,
    },
    Stats {
        reply: Reply<Stats>,
    },
    Clock {
        reply: Reply<ClockStatus>,
    },
}

/// A cheap, cloneable handle to a running node's swarm.
///
/// Dropping every `Client` stops the event loop.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) sender: mpsc::Sender<Command>,
    pub(crate) peer_id: PeerId,
}

impl Client {
    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(make(reply))
            .await
            .map_err(|_| ClientError::Closed)?;
        answer.await.map_err(|_| ClientError::Closed)
    }

    /// Dials `addr` and waits until the connection is established; returns the
    /// peer reached.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, ClientError> {
        self.ask(|reply| Command::Dial { addr, reply }).await?
    }

    /// The current members (peers whose heartbeats arrive), by peer id.
    pub async fn members(&self) -> Result<Vec<Member>, ClientError> {
        self.ask(|reply| Command::Members { reply }).await
    }

    /// The peers this node has a connection to.
    pub async fn connected_peers(&self) -> Result<Vec<PeerId>, ClientError> {
        self.ask(|reply| Command::ConnectedPeers { reply }).await
    }

    /// The addresses this node listens on (including relay circuits).
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, ClientError> {
        self.ask(|reply| Command::ListenAddrs { reply }).await
    }

    /// Sets what the following heartbeats report about this node.
    pub async fn set_status(&self, status: NodeStatus) -> Result<(), ClientError> {
        self.sender
            .send(Command::SetStatus { status })
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Runs one time exchange with `peer` (connected) and returns the sample.
    pub async fn time_sample(&self, peer: PeerId) -> Result<TimeSample, ClientError> {
        self.ask(|reply| Command::TimeSample { peer, reply })
            .await?
    }

    /// The swarm clock's current reading and state.
    pub async fn clock(&self) -> Result<ClockStatus, ClientError> {
        self.ask(|reply| Command::Clock { reply }).await
    }

    /// Counters of refused input and lost events.
    pub async fn stats(&self) -> Result<Stats, ClientError> {
        self.ask(|reply| Command::Stats { reply }).await
    }
}
