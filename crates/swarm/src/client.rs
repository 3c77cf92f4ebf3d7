//! The [`Client`]: the handle the rest of the node uses to talk to the event
//! loop. Each method sends a [`Command`] carrying a `oneshot` sender and
//! awaits the answer; the loop parks the senders until the answer is known.

use crate::error::ClientError;
use crate::event::Stats;
use crate::membership::Member;
use crate::status::{NodeStatus, Playout};
use crate::time_exchange::{ClockStatus, TimeSample};
use crate::transfer::catalog::CatalogEntry;
use crate::transfer::scheduler::Progress;
use crate::transfer::service::TransferCommand;
use crate::transfer::{PeerTraffic, TransferStats};
use firefly_library::TrackId;
use libp2p::{Multiaddr, PeerId};
use std::path::PathBuf;
use tokio::sync::{mpsc, oneshot};

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
    SetPlayout {
        playout: Playout,
    },
    SetLive {
        sources: Vec<crate::live::LiveSourceInfo>,
    },
    Links {
        reply: Reply<Vec<Link>>,
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
    Control(crate::control::ControlCommand),
    Transfer(TransferCommand),
    Penalize {
        peer: PeerId,
        reason: &'static str,
    },
    Leave {
        reply: Reply<()>,
    },
}

/// One open connection to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// The peer at the other end.
    pub peer: PeerId,
    /// Whether it goes through a relay (its address has `/p2p-circuit`).
    pub relayed: bool,
}

/// A cheap, cloneable handle to a running node's swarm.
///
/// Dropping every `Client` stops the event loop.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) sender: mpsc::Sender<Command>,
    pub(crate) peer_id: PeerId,
    pub(crate) mapping: crate::ClockMapping,
    pub(crate) live: crate::live::LiveControl,
}

impl Client {
    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The handle on `/firefly/live/1` streams ([`crate::live`]).
    pub fn live(&self) -> crate::live::LiveControl {
        self.live.clone()
    }

    /// The swarm clock's local → swarm mapping, republished by the event loop
    /// after every turn (for the player, which maps instants every period).
    pub fn mapping(&self) -> crate::ClockMapping {
        self.mapping.clone()
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

    /// Says goodbye: a heartbeat goes out at once, and every one after it,
    /// telling members to drop this node now rather than after the member
    /// timeout (so a coordinator's role moves on at once). For a clean stop:
    /// keep the loop running a moment after this returns so it is sent.
    pub async fn leave(&self) -> Result<(), ClientError> {
        self.ask(|reply| Command::Leave { reply }).await
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

    /// Sets the live sources the following heartbeats offer, whatever
    /// [`Client::set_status`] says (at most [`crate::live::MAX_SOURCES`]; more are cut).
    pub async fn set_live_sources(
        &self,
        mut sources: Vec<crate::live::LiveSourceInfo>,
    ) -> Result<(), ClientError> {
        sources.truncate(crate::live::MAX_SOURCES);
        self.sender
            .send(Command::SetLive { sources })
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Sets the player's report (latest flashes, volume) that the following
    /// heartbeats carry, whatever [`Client::set_status`] says.
    pub async fn set_playout(&self, playout: Playout) -> Result<(), ClientError> {
        self.sender
            .send(Command::SetPlayout { playout })
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Every open connection (a peer may have several), and whether each is relayed.
    pub async fn links(&self) -> Result<Vec<Link>, ClientError> {
        self.ask(|reply| Command::Links { reply }).await
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

    /// Sends a `/firefly/control/1` request to `peer` (connected) and waits for the answer.
    pub async fn control(
        &self,
        peer: PeerId,
        request: crate::ControlRequest,
    ) -> Result<crate::ControlResponse, ClientError> {
        self.ask(|reply| {
            Command::Control(crate::control::ControlCommand::Send {
                peer,
                request,
                reply,
            })
        })
        .await?
    }

    /// Answers the inbound control request `key` (see [`crate::Event::ControlRequest`]).
    pub async fn respond_control(
        &self,
        key: crate::RequestKey,
        response: crate::ControlResponse,
    ) -> Result<(), ClientError> {
        self.send(crate::control::ControlCommand::Respond { key, response })
            .await
    }

    /// Gossips `session` on `firefly/playback/1` (the coordinator's job).
    pub async fn publish_session(&self, session: crate::Session) -> Result<(), ClientError> {
        self.send(crate::control::ControlCommand::Publish {
            session: Box::new(session),
        })
        .await
    }

    async fn send(&self, command: crate::control::ControlCommand) -> Result<(), ClientError> {
        self.sender
            .send(Command::Control(command))
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Counters of refused input and lost events.
    pub async fn stats(&self) -> Result<Stats, ClientError> {
        self.ask(|reply| Command::Stats { reply }).await
    }

    /// Downloads `track` from the peers that hold it into this node's
    /// library; returns the path of the file. A download interrupted earlier
    /// (also by a restart) resumes with the chunks still missing.
    pub async fn download(&self, track: TrackId) -> Result<PathBuf, ClientError> {
        self.ask(|reply| Command::Transfer(TransferCommand::Download { track, reply }))
            .await?
            .map_err(ClientError::Transfer)
    }

    /// The swarm catalog: every track any member holds, with its holders.
    pub async fn catalog(&self) -> Result<Vec<CatalogEntry>, ClientError> {
        self.ask(|reply| Command::Transfer(TransferCommand::Catalog { reply }))
            .await
    }

    /// The cover picture `track` shows, as the catalog's metadata for it
    /// says (`None`: not in the catalog, or no picture).
    pub async fn cover_of(
        &self,
        track: TrackId,
    ) -> Result<Option<firefly_library::CoverId>, ClientError> {
        self.ask(|reply| Command::Transfer(TransferCommand::CoverOf { track, reply }))
            .await
    }

    /// The cover picture `cover` from a member holding a track that shows
    /// it, checked against the id (see [`crate::cover`]); `None` when no
    /// member answered with it. Asks one holder after another, each for up
    /// to [`crate::cover::COVER_TIMEOUT`]: callers put their own bound on it.
    pub async fn fetch_cover(
        &self,
        cover: firefly_library::CoverId,
    ) -> Result<Option<firefly_library::Cover>, ClientError> {
        self.ask(|reply| Command::Transfer(TransferCommand::Cover { cover, reply }))
            .await
    }

    /// Progress of the downloads under way.
    pub async fn downloads(&self) -> Result<Vec<(TrackId, Progress)>, ClientError> {
        self.ask(|reply| Command::Transfer(TransferCommand::Downloads { reply }))
            .await
    }

    /// Tells the swarm the local library changed (after a scan), so the
    /// change is gossiped to every member.
    pub async fn library_changed(&self) -> Result<(), ClientError> {
        self.sender
            .send(Command::Transfer(TransferCommand::LibraryChanged))
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Gives `peer` a strike for input the node found against the rules
    /// (e.g. a claimed role the role rule contradicts); enough strikes ban
    /// it ([`crate::penalty`]).
    pub async fn penalize(&self, peer: PeerId, reason: &'static str) -> Result<(), ClientError> {
        self.sender
            .send(Command::Penalize { peer, reason })
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Counters of library sync and chunk transfer.
    pub async fn transfer_stats(&self) -> Result<TransferStats, ClientError> {
        self.ask(|reply| Command::Transfer(TransferCommand::Stats { reply }))
            .await
    }

    /// Chunks moved with each member since it joined (for `/metrics`).
    pub async fn transfer_traffic(&self) -> Result<Vec<(PeerId, PeerTraffic)>, ClientError> {
        self.ask(|reply| Command::Transfer(TransferCommand::Traffic { reply }))
            .await
    }
}
