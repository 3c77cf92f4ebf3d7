//! The proxy's UDP side: datagrams to the proxy's port number go to the
//! target's, through the same link.
//!
//! Each client source address gets its own upstream socket (a mapping, as a
//! NAT makes), so the target's answers, and datagrams it sends first to that
//! mapping, find their way back to the client. Every datagram is delayed on
//! its own: a one-way delay with uniform jitter drawn per datagram, the
//! link's stalls (the TCP side's schedule: one link, one outage), real loss
//! (dropped, not retransmitted), and partitions (dropped while in force).
//! Order between datagrams is **not** kept: each leaves when its own delay
//! is over, as on a jittery path, to the microsecond: a thread of the
//! proxy's own releases it (`release`), not the runtime's 1 ms timer grid.
//! The bandwidth cap is the TCP side's alone.

use crate::{Direction, Shared, index, lock};
use rand::Rng;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// Largest datagram forwarded.
const DATAGRAM: usize = 64 * 1024;
/// Client mappings kept at once; the oldest goes first.
const MAPPINGS: usize = 64;
/// Datagrams waiting for their release at once; more are dropped.
const IN_FLIGHT: u64 = 4_096;

/// One client's upstream socket.
struct Mapping {
    /// The mapping's socket, for the release thread (its reader task holds
    /// the runtime's handle on it).
    sender: Arc<std::net::UdpSocket>,
    reader: AbortHandle,
    created: Instant,
}

/// Client mappings, aborted with the proxy.
#[derive(Default)]
pub(crate) struct Mappings(HashMap<SocketAddr, Mapping>);

impl std::fmt::Debug for Mappings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Mappings {
    pub(crate) fn abort_all(&mut self) {
        for (_, m) in self.0.drain() {
            m.reader.abort();
        }
    }
}

/// Binds `listen` and forwards datagrams from clients to `shared.target`.
pub(crate) async fn serve(listen: UdpSocket, shared: Arc<Shared>) {
    let listen_sender = match crate::release::sender(&listen) {
        Ok(sender) => sender,
        Err(err) => {
            tracing::warn!(%err, "fault proxy: no UDP sender; datagrams are not forwarded");
            return;
        }
    };
    let mut buf = vec![0u8; DATAGRAM];
    loop {
        let (n, client) = match listen.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(err) => {
                tracing::debug!(%err, "fault proxy: UDP receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some(socket) = mapping(&listen_sender, client, &shared).await else {
            continue;
        };
        let target = shared.target;
        schedule(
            buf[..n].to_vec(),
            socket,
            target,
            Direction::Upstream,
            &shared,
        );
    }
}

/// The upstream socket of `client`, made (with its reader) on first use.
async fn mapping(
    listen_sender: &Arc<std::net::UdpSocket>,
    client: SocketAddr,
    shared: &Arc<Shared>,
) -> Option<Arc<std::net::UdpSocket>> {
    if let Some(m) = lock(&shared.mappings).0.get(&client) {
        return Some(Arc::clone(&m.sender));
    }
    let (socket, sender) = match UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .and_then(|socket| Ok((crate::release::sender(&socket)?, socket)))
    {
        Ok((sender, socket)) => (Arc::new(socket), sender),
        Err(err) => {
            tracing::debug!(%err, "fault proxy: no UDP mapping socket");
            return None;
        }
    };
    let reader = tokio::spawn(back(
        socket,
        Arc::clone(listen_sender),
        client,
        Arc::clone(shared),
    ))
    .abort_handle();
    let mut mappings = lock(&shared.mappings);
    if mappings.0.len() >= MAPPINGS
        && let Some(oldest) = mappings
            .0
            .iter()
            .min_by_key(|(_, m)| m.created)
            .map(|(addr, _)| *addr)
        && let Some(m) = mappings.0.remove(&oldest)
    {
        m.reader.abort();
    }
    mappings.0.insert(
        client,
        Mapping {
            sender: Arc::clone(&sender),
            reader,
            created: Instant::now(),
        },
    );
    Some(sender)
}

/// Forwards what the target sends to `client`'s mapping back to the client.
async fn back(
    socket: Arc<UdpSocket>,
    listen: Arc<std::net::UdpSocket>,
    client: SocketAddr,
    shared: Arc<Shared>,
) {
    let mut buf = vec![0u8; DATAGRAM];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(err) => {
                tracing::debug!(%err, "fault proxy: UDP mapping receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if from != shared.target {
            continue;
        }
        schedule(
            buf[..n].to_vec(),
            Arc::clone(&listen),
            client,
            Direction::Downstream,
            &shared,
        );
    }
}

/// Sends `bytes` from `socket` to `to` when the link lets it through, or
/// drops it (loss, partition, too many waiting).
fn schedule(
    bytes: Vec<u8>,
    socket: Arc<std::net::UdpSocket>,
    to: SocketAddr,
    dir: Direction,
    shared: &Arc<Shared>,
) {
    let now = Instant::now();
    let faults = lock(&shared.faults).get(dir);
    let (drawn, lost) = {
        let mut rng = lock(&shared.udp_rng);
        let drawn = faults.drawn_delay(&mut rng);
        let lost = faults.loss > 0.0 && rng.random::<f64>() < faults.loss;
        (drawn, lost)
    };
    let busy = shared.udp_in_flight.load(Ordering::Relaxed) >= IN_FLIGHT;
    if lost || busy || *lock(&shared.partitioned) {
        shared.udp_dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let release = {
        let due = now + Duration::from_secs_f64(drawn);
        let mut schedule = lock(&shared.schedules[index(dir)]);
        schedule.plan(&faults, now, due, &shared.stalls);
        schedule.release(due)
    };
    let epoch = *shared.epoch.borrow();
    shared.udp_in_flight.fetch_add(1, Ordering::Relaxed);
    // Released by the proxy's thread at the due instant itself, not on the
    // runtime's 1 ms timer grid (see `release`).
    shared
        .releaser
        .hold(release.into_std(), bytes, socket, to, dir, epoch);
}
