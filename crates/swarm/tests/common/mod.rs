//! Shared helpers for the swarm's in-process tests: start nodes on
//! 127.0.0.1 with mDNS off, wait for predicates with a deadline.

#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use firefly_swarm::{Client, Config, Event, Multiaddr, PeerId};
use libp2p::identity::Keypair;
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A node running in this process.
pub struct Node {
    pub client: Client,
    pub events: mpsc::Receiver<Event>,
    pub task: JoinHandle<()>,
    pub addr: Multiaddr,
}

impl Node {
    pub fn peer_id(&self) -> PeerId {
        self.client.peer_id()
    }

    /// This node's address with its `/p2p/<id>` suffix.
    pub fn dial_addr(&self) -> Multiaddr {
        self.addr
            .clone()
            .with(libp2p::multiaddr::Protocol::P2p(self.peer_id()))
    }

    /// Stops the node the hard way: its loop is aborted and its sockets close.
    pub fn kill(self) {
        self.task.abort();
    }
}

pub fn loopback_config(name: &str) -> Config {
    let mut config = Config::new(Keypair::generate_ed25519(), name);
    config
        .mdns(false)
        .listen("/ip4/127.0.0.1/tcp/0".parse().unwrap());
    config
}

/// Starts a node and waits until it listens.
pub async fn start(config: Config) -> Node {
    let (client, mut events, event_loop) = firefly_swarm::new(config).unwrap();
    let task = tokio::spawn(event_loop.run());
    let addr = within(Duration::from_secs(5), async {
        loop {
            match events.recv().await {
                Some(Event::Listening { addr }) => return addr,
                Some(_) => continue,
                None => panic!("event loop ended before listening"),
            }
        }
    })
    .await;
    Node {
        client,
        events,
        task,
        addr,
    }
}

pub async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .expect("timed out waiting")
}

/// Polls `check` every 50 ms until it is true or `limit` passes.
pub async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Waits until `client` lists exactly `peers` as members.
pub async fn wait_members(client: &Client, peers: &[PeerId], limit: Duration) -> bool {
    let mut want: Vec<PeerId> = peers.to_vec();
    want.sort();
    wait_until(limit, || {
        let want = want.clone();
        async move {
            let mut have: Vec<PeerId> = client
                .members()
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.peer)
                .collect();
            have.sort();
            have == want
        }
    })
    .await
}

/// Waits for the first event matching `pick`.
pub async fn next_matching<T>(
    events: &mut mpsc::Receiver<Event>,
    limit: Duration,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> Option<T> {
    tokio::time::timeout(limit, async {
        while let Some(event) = events.recv().await {
            if let Some(found) = pick(&event) {
                return Some(found);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}
