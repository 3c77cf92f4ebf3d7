//! Where the event loop hands the transfer protocols their inputs: the loop
//! side of [`crate::transfer`].
//!
//! Each method here borrows the behaviours [`Transfer`] sends through (a
//! [`TransferIo`]), calls the matching [`Transfer`] handler, and forwards
//! the [`TransferEvent`]s it produced to the node's event stream and the
//! peers that sent bad input to the loop's strike table. The event
//! loop calls these from its dispatch, gossip, membership, command and timer
//! paths; it knows nothing else about transfer.

use super::EventLoop;
use crate::behaviour::Behaviour;
use crate::event::Event;
use crate::inbound::Inbound;
use crate::transfer::service::{Done, Transfer, TransferCommand, TransferIo};
use firefly_clock::LocalMicros;
use libp2p::gossipsub::MessageAcceptance;
use libp2p::{PeerId, Swarm, request_response};

use crate::transfer::wire::{
    ChunksRequest, ChunksResponse, LibraryRequest, LibraryResponse, ManifestRequest,
    ManifestResponse,
};

/// Calls `f` with the transfer state and the behaviours it sends through.
fn with_io<R>(
    swarm: &mut Swarm<Behaviour>,
    transfer: &mut Transfer,
    f: impl FnOnce(&mut Transfer, &mut TransferIo<'_>) -> R,
) -> R {
    let behaviour = swarm.behaviour_mut();
    let mut io = TransferIo {
        chunks: &mut behaviour.chunks,
        manifests: &mut behaviour.manifests,
        library: &mut behaviour.library,
        gossipsub: &mut behaviour.gossipsub,
        covers: &mut behaviour.covers,
    };
    f(transfer, &mut io)
}

impl EventLoop {
    fn transfer_with<R>(&mut self, f: impl FnOnce(&mut Transfer, &mut TransferIo<'_>) -> R) -> R {
        let out = with_io(&mut self.swarm, &mut self.transfer, f);
        let events: Vec<_> = self.transfer.drain_events().collect();
        for event in events {
            self.emit(Event::Transfer(event));
        }
        let strikes: Vec<_> = self.transfer.drain_strikes().collect();
        if !strikes.is_empty() {
            let now = (self.now)();
            for (peer, reason) in strikes {
                self.penalize(now, peer, reason);
            }
        }
        out
    }

    /// Subscribes to the library topic and publishes the local library.
    pub(crate) fn start_transfer(&mut self) {
        self.transfer_with(|t, io| t.start(io));
    }

    /// An event of `/firefly/chunks/1`.
    pub(crate) fn on_chunks_event(
        &mut self,
        arrived: LocalMicros,
        event: request_response::Event<Inbound<ChunksRequest>, ChunksResponse>,
    ) {
        self.transfer_with(|t, io| t.handle_chunks_event(io, arrived, event));
    }

    /// An event of `/firefly/manifest/1`.
    pub(crate) fn on_manifest_event(
        &mut self,
        event: request_response::Event<Inbound<ManifestRequest>, ManifestResponse>,
    ) {
        self.transfer_with(|t, io| t.handle_manifest_event(io, event));
    }

    /// An event of `/firefly/cover/1`.
    pub(crate) fn on_cover_event(
        &mut self,
        event: request_response::Event<
            Inbound<crate::transfer::cover::CoverRequest>,
            crate::transfer::cover::CoverResponse,
        >,
    ) {
        self.transfer_with(|t, io| t.handle_cover_event(io, event));
    }

    /// An event of `/firefly/library/1`.
    pub(crate) fn on_library_event(
        &mut self,
        event: request_response::Event<Inbound<LibraryRequest>, LibraryResponse>,
    ) {
        let now = (self.now)();
        self.transfer_with(|t, io| t.handle_library_event(io, now, event));
    }

    /// A message on `firefly/library/1` authored by `source`.
    pub(crate) fn on_library_gossip(&mut self, source: PeerId, data: &[u8]) -> MessageAcceptance {
        let now = (self.now)();
        self.transfer_with(|t, io| t.handle_gossip(io, now, source, data))
    }

    /// A member's heartbeat reported its library version.
    pub(crate) fn on_peer_library_version(&mut self, peer: PeerId, version: u64) {
        self.transfer_with(|t, io| t.handle_peer_version(io, peer, version));
    }

    /// A peer joined: its library gossip and requests are taken from now on.
    pub(crate) fn on_member_joined_transfer(&mut self, peer: PeerId) {
        self.transfer.handle_peer_joined(peer);
    }

    /// A member left: it holds nothing any more.
    pub(crate) fn on_member_left_transfer(&mut self, now: LocalMicros, peer: PeerId) {
        self.transfer_with(|t, io| t.handle_peer_left(io, now, peer));
    }

    /// Blocking library work finished.
    pub(crate) fn on_transfer_done(&mut self, done: Done) {
        let now = (self.now)();
        self.transfer_with(|t, io| t.handle_done(io, now, done));
    }

    /// A transfer command from a client.
    pub(crate) fn on_transfer_command(&mut self, command: TransferCommand) {
        let now = (self.now)();
        self.transfer_with(|t, io| t.handle_command(io, now, command));
    }

    /// The transfer part of the loop's timer.
    pub(crate) fn transfer_timeout(&mut self, now: LocalMicros) {
        if self.transfer.poll_timeout().is_some_and(|at| at <= now) {
            self.transfer_with(|t, io| t.handle_timeout(io, now));
        }
    }
}
