//! How to build a node's swarm: identity, addresses, discovery, timings.
//!
//! [`Config`] is plain data handed to [`crate::new`]. Setters take `&mut self`,
//! return `&mut Self` and document their default. The defaults are the
//! values the design asks for (1 s heartbeats, 5 s member timeout, mDNS on);
//! tests change them only where they need to.

use firefly_clock::{LocalMicros, SwarmMicros};
use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::pnet::PreSharedKey;
use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Reads the local monotonic clock. The event loop takes every timestamp from
/// this one hook, so a test can run a node on a skewed or offset clock.
pub type Now = Arc<dyn Fn() -> LocalMicros + Send + Sync>;

/// The default clock: microseconds of [`Instant`] since the first call in
/// this process (monotonic, so it never goes backwards).
pub fn monotonic_now() -> LocalMicros {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    LocalMicros(i64::try_from(epoch.elapsed().as_micros()).unwrap_or(i64::MAX))
}

/// Everything [`crate::new`] needs to start a node's swarm.
#[derive(Clone)]
pub struct Config {
    pub(crate) keypair: Keypair,
    pub(crate) name: String,
    pub(crate) listen: Vec<Multiaddr>,
    pub(crate) peers: Vec<Multiaddr>,
    pub(crate) relay: Option<Multiaddr>,
    pub(crate) swarm_key: Option<PreSharedKey>,
    pub(crate) mdns: bool,
    pub(crate) mdns_query_interval: Duration,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) member_timeout: Duration,
    pub(crate) idle_connection_timeout: Duration,
    pub(crate) now: Now,
    pub(crate) clock_config: firefly_clock::Config,
    pub(crate) initial_swarm_time: Option<SwarmMicros>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("peer_id", &self.keypair.public().to_peer_id())
            .field("name", &self.name)
            .field("listen", &self.listen)
            .field("peers", &self.peers)
            .field("relay", &self.relay)
            .field("private", &self.swarm_key.is_some())
            .field("mdns", &self.mdns)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// A config for the node with this identity and human name, with every
    /// other setting at its default.
    pub fn new(keypair: Keypair, name: impl Into<String>) -> Self {
        Self {
            keypair,
            name: name.into(),
            listen: Vec::new(),
            peers: Vec::new(),
            relay: None,
            swarm_key: None,
            mdns: true,
            mdns_query_interval: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(1),
            member_timeout: Duration::from_secs(5),
            idle_connection_timeout: Duration::from_secs(60),
            now: Arc::new(monotonic_now),
            clock_config: firefly_clock::Config::default(),
            initial_swarm_time: None,
        }
    }

    /// Adds an address to listen on. Default: none given means
    /// `/ip4/0.0.0.0/tcp/0` and `/ip4/0.0.0.0/udp/0/quic-v1` (TCP only with a
    /// swarm key).
    pub fn listen(&mut self, addr: Multiaddr) -> &mut Self {
        self.listen.push(addr);
        self
    }

    /// Adds a peer to dial at start (`--peer`). Default: none.
    pub fn peer(&mut self, addr: Multiaddr) -> &mut Self {
        self.peers.push(addr);
        self
    }

    /// Reserves a slot on this relay (must end in `/p2p/<relay peer id>`) so
    /// the node is reachable through `/p2p-circuit` (`--relay`). Default: none.
    pub fn relay(&mut self, addr: Multiaddr) -> &mut Self {
        self.relay = Some(addr);
        self
    }

    /// Makes the swarm private: only nodes with the same pre-shared key can
    /// connect. Switches QUIC off, since pnet can only wrap TCP. Default: none.
    pub fn swarm_key(&mut self, key: PreSharedKey) -> &mut Self {
        self.swarm_key = Some(key);
        self
    }

    /// Turns mDNS discovery on or off. Default: on. Tests on one host turn it
    /// off so that they do not find each other's nodes.
    pub fn mdns(&mut self, enabled: bool) -> &mut Self {
        self.mdns = enabled;
        self
    }

    /// How often mDNS re-queries the LAN. Default: 1 s, so that a new node
    /// sees its LAN peers within 2 s even if the first query is lost.
    pub fn mdns_query_interval(&mut self, interval: Duration) -> &mut Self {
        self.mdns_query_interval = interval;
        self
    }

    /// How often this node gossips its heartbeat. Default: 1 s.
    pub fn heartbeat_interval(&mut self, interval: Duration) -> &mut Self {
        self.heartbeat_interval = interval;
        self
    }

    /// How long a member may stay silent before it is removed. Default: 5 s.
    pub fn member_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.member_timeout = timeout;
        self
    }

    /// How long a connection with no open streams is kept. Default: 60 s.
    pub fn idle_connection_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.idle_connection_timeout = timeout;
        self
    }

    /// Replaces the clock the event loop reads. Default: [`monotonic_now`].
    pub fn clock(&mut self, now: Now) -> &mut Self {
        self.now = now;
        self
    }

    /// Tuning of the swarm clock the event loop keeps. Default:
    /// [`firefly_clock::Config::default`].
    pub fn clock_config(&mut self, config: firefly_clock::Config) -> &mut Self {
        self.clock_config = config;
        self
    }

    /// What the swarm clock reads when the loop starts, until it syncs with
    /// peers. Default: wall-clock microseconds since the UNIX epoch, so that
    /// independent nodes start near each other (the clock crate's advice).
    pub fn initial_swarm_time(&mut self, at: SwarmMicros) -> &mut Self {
        self.initial_swarm_time = Some(at);
        self
    }

    /// The initial swarm reading: the configured one or the wall clock.
    pub(crate) fn initial_swarm(&self) -> SwarmMicros {
        self.initial_swarm_time.unwrap_or_else(|| {
            let since_epoch = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            SwarmMicros(i64::try_from(since_epoch.as_micros()).unwrap_or(0))
        })
    }

    /// The listen addresses actually used: the configured ones, or the
    /// defaults for this transport set.
    pub(crate) fn listen_addrs(&self) -> Vec<Multiaddr> {
        if !self.listen.is_empty() {
            return self.listen.clone();
        }
        let any = Multiaddr::empty().with(Protocol::Ip4(Ipv4Addr::UNSPECIFIED));
        let mut addrs = vec![any.clone().with(Protocol::Tcp(0))];
        if self.swarm_key.is_none() {
            addrs.push(any.with(Protocol::Udp(0)).with(Protocol::QuicV1));
        }
        addrs
    }
}
