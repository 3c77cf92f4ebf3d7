//! Bounded request-response streams, in both directions: this node's per peer,
//! the peer's per connection.
//!
//! libp2p's request-response behaviour keeps one pool of stream slots per
//! connection for inbound and outbound streams together. When it is full it
//! drops a new inbound stream with a WARN line and tells nobody, and fails a
//! new outbound request. So an honest node that queued 64 requests to one
//! peer saw 48 of them dropped, and a peer flooding a node with streams was
//! never counted nor penalized, while each dropped stream wrote a log line.
//!
//! [`Gate`] wraps a request-response behaviour and its connection handler:
//!
//! - **Outbound:** at most [`OUTBOUND_PER_PEER`] of this node's requests
//!   run at once to one peer, over all its connections; the rest wait in
//!   order on their connection (up to [`QUEUED_PER_CONNECTION`]) and start as
//!   earlier ones finish. Request ids and events are the wrapped behaviour's
//!   own, so callers see nothing but a request that takes a little longer.
//!   The peer's connections share the count ([`PeerSlots`]), and one whose
//!   requests wait is woken when another frees a slot.
//! - **Inbound:** at most [`INBOUND_PER_CONNECTION`] of the peer's requests
//!   are served at once on a connection. One more is refused here (its stream
//!   reset) and reported as [`Gated::Refused`], so the event loop strikes the
//!   peer. An honest peer keeps at most [`OUTBOUND_PER_PEER`] in flight,
//!   half the limit, so it is never refused.
//!
//! The wrapped behaviour's pool has room for both limits together
//! ([`STREAMS_PER_CONNECTION`]), so its own cap is never reached and it never
//! drops a stream silently. The handler knows exactly when a stream ends: it
//! sees every event of the wrapped handler, in the same poll that frees the
//! slot.

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::request_response::{self, Codec};
use libp2p::swarm::handler::ConnectionEvent;
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};
use std::collections::{HashMap, VecDeque};
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, Waker};

/// This node's requests running at once to one peer, per protocol.
pub const OUTBOUND_PER_PEER: usize = 8;
/// The peer's requests served at once on one connection, per protocol:
/// twice what an honest peer sends.
pub const INBOUND_PER_CONNECTION: usize = 2 * OUTBOUND_PER_PEER;
/// The wrapped behaviour's stream pool per connection: room for both.
pub const STREAMS_PER_CONNECTION: usize = INBOUND_PER_CONNECTION + OUTBOUND_PER_PEER;
/// This node's requests waiting for a slot on one connection, per protocol.
/// Callers bound their own requests well below this (a download keeps 8
/// chunk requests per peer, covers 64 fetches); past it a request starts at
/// once and fails if the pool is full.
pub const QUEUED_PER_CONNECTION: usize = 1024;

type Inner<C> = request_response::Behaviour<C>;
type InnerHandler<C> = <Inner<C> as NetworkBehaviour>::ConnectionHandler;
type InnerMessage<C> = <InnerHandler<C> as ConnectionHandler>::FromBehaviour;
type InnerHandlerEvent<C> = <InnerHandler<C> as ConnectionHandler>::ToBehaviour;

/// What a [`Gate`] reports: the wrapped behaviour's event, or refused streams.
#[derive(Debug)]
pub enum Gated<E> {
    /// An event of the wrapped request-response behaviour.
    Event(E),
    /// A peer opened more streams than [`INBOUND_PER_CONNECTION`].
    Refused(Refused),
}

/// Inbound streams refused on one connection because the peer already had
/// [`INBOUND_PER_CONNECTION`] requests open there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Who opened them.
    pub peer: PeerId,
    /// How many since the last report (at least one).
    pub streams: u64,
}

/// A request-response behaviour with bounded streams per connection; see the
/// module doc. Dereferences to the wrapped behaviour for sending requests and
/// responses.
pub struct Gate<C>
where
    C: Codec + Send + Clone + 'static,
{
    inner: Inner<C>,
    refused: VecDeque<Refused>,
    /// Per peer, the slots its connections' handlers share (dropped with
    /// the last of them).
    slots: HashMap<PeerId, Weak<Mutex<PeerSlots>>>,
}

/// This node's requests running to one peer on one protocol, over all its
/// connections, and the connections waiting for a slot.
#[derive(Debug, Default)]
struct PeerSlots {
    running: usize,
    waiting: Vec<Waker>,
}

fn lock(slots: &Mutex<PeerSlots>) -> std::sync::MutexGuard<'_, PeerSlots> {
    // The table stays consistent whatever panicked: counts only.
    slots.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<C> Gate<C>
where
    C: Codec + Send + Clone + 'static,
{
    /// Wraps `inner`, which must have been built with a stream pool of
    /// [`STREAMS_PER_CONNECTION`] (see [`config`]).
    pub fn new(inner: Inner<C>) -> Self {
        Self {
            inner,
            refused: VecDeque::new(),
            slots: HashMap::new(),
        }
    }

    /// The slots `peer`'s connections share.
    fn slots_of(&mut self, peer: PeerId) -> Arc<Mutex<PeerSlots>> {
        if let Some(slots) = self.slots.get(&peer).and_then(Weak::upgrade) {
            return slots;
        }
        // Forget peers whose connections are all gone (bounded by the
        // connection limits).
        self.slots.retain(|_, slots| slots.strong_count() > 0);
        let slots = Arc::new(Mutex::new(PeerSlots::default()));
        self.slots.insert(peer, Arc::downgrade(&slots));
        slots
    }
}

/// A request-response configuration with `timeout` and the pool a [`Gate`]
/// needs.
pub fn config(timeout: std::time::Duration) -> request_response::Config {
    request_response::Config::default()
        .with_request_timeout(timeout)
        .with_max_concurrent_streams(STREAMS_PER_CONNECTION)
}

impl<C> Deref for Gate<C>
where
    C: Codec + Send + Clone + 'static,
{
    type Target = Inner<C>;
    fn deref(&self) -> &Inner<C> {
        &self.inner
    }
}

impl<C> DerefMut for Gate<C>
where
    C: Codec + Send + Clone + 'static,
{
    fn deref_mut(&mut self) -> &mut Inner<C> {
        &mut self.inner
    }
}

/// What the gate's connection handler tells its behaviour.
#[derive(Debug)]
pub enum HandlerEvent<E> {
    /// An event of the wrapped handler.
    Inner(E),
    /// Inbound streams refused since the last report.
    Refused(u64),
}

impl<C> NetworkBehaviour for Gate<C>
where
    C: Codec + Send + Clone + 'static,
{
    type ConnectionHandler = GateHandler<C>;
    type ToSwarm = Gated<<Inner<C> as NetworkBehaviour>::ToSwarm>;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let handler = self.inner.handle_established_inbound_connection(
            connection_id,
            peer,
            local_addr,
            remote_addr,
        )?;
        Ok(GateHandler::new(handler, self.slots_of(peer)))
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let handler = self.inner.handle_established_outbound_connection(
            connection_id,
            peer,
            addr,
            role_override,
            port_use,
        )?;
        Ok(GateHandler::new(handler, self.slots_of(peer)))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {
            HandlerEvent::Inner(event) => {
                self.inner
                    .on_connection_handler_event(peer, connection_id, event);
            }
            HandlerEvent::Refused(streams) => self.refused.push_back(Refused { peer, streams }),
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        if let Some(refused) = self.refused.pop_front() {
            return Poll::Ready(ToSwarm::GenerateEvent(Gated::Refused(refused)));
        }
        self.inner.poll(cx).map(|event| event.map_out(Gated::Event))
    }
}

/// Which of this connection's streams an event of the wrapped handler ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ends {
    Inbound,
    Outbound,
    Nothing,
}

/// The wrapped handler's events name their stream's end: every inbound
/// stream it accepts ends in exactly one of the first group, every request
/// it is given in exactly one of the second.
fn ends<C>(event: &InnerHandlerEvent<C>) -> Ends
where
    C: Codec + Send + Clone + 'static,
{
    match event {
        InnerHandlerEvent::<C>::ResponseSent(_)
        | InnerHandlerEvent::<C>::ResponseOmission(_)
        | InnerHandlerEvent::<C>::InboundTimeout(_)
        | InnerHandlerEvent::<C>::InboundStreamFailed { .. } => Ends::Inbound,
        InnerHandlerEvent::<C>::Response { .. }
        | InnerHandlerEvent::<C>::OutboundTimeout(_)
        | InnerHandlerEvent::<C>::OutboundUnsupportedProtocols(_)
        | InnerHandlerEvent::<C>::OutboundStreamFailed { .. } => Ends::Outbound,
        InnerHandlerEvent::<C>::Request { .. } => Ends::Nothing,
    }
}

/// The connection side of [`Gate`]: counts, queues and refuses streams.
pub struct GateHandler<C>
where
    C: Codec + Send + Clone + 'static,
{
    inner: InnerHandler<C>,
    /// The peer's streams handed to `inner` and not ended yet.
    inbound_open: usize,
    /// This node's requests handed to `inner` and not ended yet (each holds
    /// one of the peer's `slots`).
    outbound_open: usize,
    /// The slots shared by the peer's connections.
    slots: Arc<Mutex<PeerSlots>>,
    /// This node's requests waiting for a slot.
    queued: VecDeque<InnerMessage<C>>,
    /// Inbound streams refused and not reported yet.
    refused: u64,
}

impl<C> GateHandler<C>
where
    C: Codec + Send + Clone + 'static,
{
    fn new(inner: InnerHandler<C>, slots: Arc<Mutex<PeerSlots>>) -> Self {
        Self {
            inner,
            inbound_open: 0,
            outbound_open: 0,
            slots,
            queued: VecDeque::new(),
            refused: 0,
        }
    }

    /// Whether one more inbound stream fits: within the peer's limit, and
    /// within the wrapped pool whatever this node has running.
    fn inbound_fits(&self) -> bool {
        self.inbound_open < INBOUND_PER_CONNECTION
            && self.inbound_open + self.outbound_open < STREAMS_PER_CONNECTION
    }

    fn start(&mut self, message: InnerMessage<C>) {
        self.outbound_open += 1;
        self.inner.on_behaviour_event(message);
    }

    /// Starts waiting requests while the peer has free slots; with a
    /// `waker`, asks to be woken when one frees up.
    fn start_queued(&mut self, waker: Option<&Waker>) {
        while !self.queued.is_empty() {
            {
                let mut slots = lock(&self.slots);
                if slots.running >= OUTBOUND_PER_PEER {
                    if let Some(waker) = waker
                        && !slots.waiting.iter().any(|w| w.will_wake(waker))
                    {
                        slots.waiting.push(waker.clone());
                    }
                    return;
                }
                slots.running += 1;
            }
            if let Some(message) = self.queued.pop_front() {
                self.start(message);
            }
        }
    }

    /// Gives back `n` of the peer's slots and wakes the connections waiting.
    fn release(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.outbound_open = self.outbound_open.saturating_sub(n);
        let waiting = {
            let mut slots = lock(&self.slots);
            slots.running = slots.running.saturating_sub(n);
            std::mem::take(&mut slots.waiting)
        };
        for waker in waiting {
            waker.wake();
        }
    }
}

impl<C> Drop for GateHandler<C>
where
    C: Codec + Send + Clone + 'static,
{
    /// A closed connection's running requests free their slots.
    fn drop(&mut self) {
        self.release(self.outbound_open);
    }
}

impl<C> ConnectionHandler for GateHandler<C>
where
    C: Codec + Send + Clone + 'static,
{
    type FromBehaviour = InnerMessage<C>;
    type ToBehaviour = HandlerEvent<InnerHandlerEvent<C>>;
    type InboundProtocol = <InnerHandler<C> as ConnectionHandler>::InboundProtocol;
    type OutboundProtocol = <InnerHandler<C> as ConnectionHandler>::OutboundProtocol;
    type InboundOpenInfo = <InnerHandler<C> as ConnectionHandler>::InboundOpenInfo;
    type OutboundOpenInfo = <InnerHandler<C> as ConnectionHandler>::OutboundOpenInfo;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, Self::InboundOpenInfo> {
        self.inner.listen_protocol()
    }

    fn connection_keep_alive(&self) -> bool {
        self.inner.connection_keep_alive() || !self.queued.is_empty()
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<
        ConnectionHandlerEvent<Self::OutboundProtocol, Self::OutboundOpenInfo, Self::ToBehaviour>,
    > {
        if self.refused > 0 {
            let streams = std::mem::take(&mut self.refused);
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(
                HandlerEvent::Refused(streams),
            ));
        }
        self.start_queued(Some(cx.waker()));
        let event = match self.inner.poll(cx) {
            Poll::Ready(event) => event,
            Poll::Pending => return Poll::Pending,
        };
        if let ConnectionHandlerEvent::NotifyBehaviour(inner) = &event {
            match ends::<C>(inner) {
                Ends::Inbound => self.inbound_open = self.inbound_open.saturating_sub(1),
                Ends::Outbound => {
                    self.release(1);
                    // The connection polls again after an event, so a
                    // started request is picked up at once.
                    self.start_queued(None);
                }
                Ends::Nothing => {}
            }
        }
        Poll::Ready(event.map_custom(HandlerEvent::Inner))
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Option<Self::ToBehaviour>> {
        self.inner
            .poll_close(cx)
            .map(|event| event.map(HandlerEvent::Inner))
    }

    fn on_behaviour_event(&mut self, message: Self::FromBehaviour) {
        if self.queued.len() < QUEUED_PER_CONNECTION {
            self.queued.push_back(message);
            // Starts now if the peer has a free slot; the connection polls
            // the handler next, which waits for one otherwise.
            self.start_queued(None);
        } else {
            // Past the queue's bound: started now, holding a slot beyond
            // the limit; the wrapped pool refuses it (a failed request) if
            // it is full.
            tracing::debug!("request queue full: a request starts past its limit");
            lock(&self.slots).running += 1;
            self.start(message);
        }
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<
            Self::InboundProtocol,
            Self::OutboundProtocol,
            Self::InboundOpenInfo,
            Self::OutboundOpenInfo,
        >,
    ) {
        if let ConnectionEvent::FullyNegotiatedInbound(_) = &event {
            if !self.inbound_fits() {
                // Dropping the event drops (resets) the stream.
                self.refused = self.refused.saturating_add(1);
                return;
            }
            self.inbound_open += 1;
        }
        self.inner.on_connection_event(event);
    }
}
