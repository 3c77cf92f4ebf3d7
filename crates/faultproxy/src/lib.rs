//! A userspace TCP fault proxy for tests and benchmarks.
//!
//! `tc netem` needs root and a kernel module; Firefly's tests need neither.
//! [`FaultProxy`] listens on `127.0.0.1`, forwards every accepted connection
//! to one target address, and makes the link behave like a bad network, each
//! direction on its own ([`LinkFaults`]):
//!
//! - a one-way **delay** with uniform **jitter** around it, drawn per segment
//!   read from the socket;
//! - random **stalls** that hold the link for a while (a Wi-Fi outage), and
//!   stalls on demand ([`FaultProxy::stall`]);
//! - **loss as a stall**: TCP never loses bytes, it retransmits, so a "lost"
//!   segment arrives one retransmission timeout late;
//! - a **bandwidth** cap;
//! - **partitions** on demand ([`FaultProxy::partition`] cuts every live
//!   connection and refuses new ones until [`FaultProxy::heal`]).
//!
//! The proxy also forwards **UDP** on the same port number to the target's
//! same port number (Firefly's time datagrams live at the node's TCP port
//! number): per-datagram delay and jitter, the link's stalls, real loss, and
//! partitions, with no order kept between datagrams (see `udp`).
//!
//! Bytes are never reordered, as on a real TCP path: a segment is released
//! no earlier than the one before it, so everything behind a slow segment or a
//! stall queues and arrives in a burst when it clears. That queueing is part of
//! what the proxy models, and what a simulator has to reproduce.
//!
//! What it is not: a packet-level emulator (it sees a byte stream, so it cannot
//! drop or duplicate packets), or anything to run outside tests: it binds to
//! loopback only. Timers come from tokio and are good to about a millisecond.
//!
//! ```no_run
//! # async fn demo(target: std::net::SocketAddr) -> Result<(), firefly_faultproxy::Error> {
//! use firefly_faultproxy::{FaultProxy, Faults, LinkFaults};
//! use std::time::Duration;
//!
//! let wifi = LinkFaults::default().delay(Duration::from_millis(20)).jitter(Duration::from_millis(10));
//! let proxy = FaultProxy::start(target, Faults::both(wifi), 1).await?;
//! // dial proxy.local_addr() instead of target
//! proxy.partition();
//! proxy.heal();
//! # Ok(()) }
//! ```

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Binding the listening sockets on 127.0.0.1 failed.
    #[error("cannot listen on 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
    /// No port number was free for both TCP and UDP.
    #[error("no 127.0.0.1 port free for both TCP and UDP after {0} tries")]
    NoTwinPort(usize),
    /// The thread that releases datagrams could not be started.
    #[error("cannot start the datagram release thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Largest segment read and released at once.
const SEGMENT: usize = 64 * 1024;
/// Segments queued per direction before the reader waits (bounds memory).
const QUEUE: usize = 256;

/// What one direction of a link does to the bytes crossing it. Start from
/// [`LinkFaults::default`] (a clean link) and chain the setters.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LinkFaults {
    /// Mean one-way delay added to every segment.
    pub delay: Duration,
    /// Each segment's delay is uniform in `delay ± jitter` (never below zero).
    pub jitter: Duration,
    /// Mean time between random stalls (exponential gaps); `None`: no random stalls.
    pub stall_every: Option<Duration>,
    /// How long each random stall holds the link.
    pub stall_for: Duration,
    /// Probability that a segment is "lost" and arrives `retransmit` late.
    pub loss: f64,
    /// The retransmission timeout a lost segment costs.
    pub retransmit: Duration,
    /// Bytes per second the link carries; `None`: unlimited.
    pub bandwidth: Option<u64>,
}

impl LinkFaults {
    /// Sets the mean one-way delay. Default zero.
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }

    /// Sets the jitter: delays are uniform in `delay ± jitter`. Default zero.
    pub fn jitter(mut self, d: Duration) -> Self {
        self.jitter = d;
        self
    }

    /// Random stalls of `length`, on average every `every`. Default none.
    pub fn stalls(mut self, every: Duration, length: Duration) -> Self {
        self.stall_every = Some(every);
        self.stall_for = length;
        self
    }

    /// Segments lost with probability `p` arrive `retransmit` late. Default none.
    pub fn loss(mut self, p: f64, retransmit: Duration) -> Self {
        self.loss = if p.is_finite() {
            p.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.retransmit = retransmit;
        self
    }

    /// Caps the link at `bytes_per_second`. Default unlimited.
    pub fn bandwidth(mut self, bytes_per_second: u64) -> Self {
        self.bandwidth = Some(bytes_per_second.max(1));
        self
    }
}

/// A direction through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the dialer (the client of the proxy) to the target.
    Upstream,
    /// From the target back to the dialer.
    Downstream,
}

/// The faults of both directions.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Faults {
    /// Dialer → target.
    pub upstream: LinkFaults,
    /// Target → dialer.
    pub downstream: LinkFaults,
}

impl Faults {
    /// The same faults each way (drawn independently per direction).
    pub fn both(link: LinkFaults) -> Self {
        Self {
            upstream: link,
            downstream: link,
        }
    }

    fn get(&self, dir: Direction) -> LinkFaults {
        match dir {
            Direction::Upstream => self.upstream,
            Direction::Downstream => self.downstream,
        }
    }
}

/// Counters since the proxy started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Connections accepted and forwarded.
    pub connections: u64,
    /// Connections refused or cut by a partition.
    pub refused: u64,
    /// Bytes delivered dialer → target.
    pub bytes_upstream: u64,
    /// Bytes delivered target → dialer.
    pub bytes_downstream: u64,
    /// Stalls that held a direction (random, on demand, or a lost segment).
    pub stalls: u64,
    /// Datagrams delivered client → target.
    pub datagrams_upstream: u64,
    /// Datagrams delivered target → client.
    pub datagrams_downstream: u64,
    /// Datagrams dropped: lost, partitioned, or too many in flight.
    pub datagrams_dropped: u64,
}

/// When one direction of the link is held.
#[derive(Debug)]
struct StallSchedule {
    /// Held intervals `[start, end)`, by start; old ones are dropped.
    windows: VecDeque<(Instant, Instant)>,
    /// Start of the next random stall (`None` without random stalls).
    next_random: Option<Instant>,
    rng: ChaCha8Rng,
}

impl StallSchedule {
    fn new(seed: u64) -> Self {
        Self {
            windows: VecDeque::new(),
            next_random: None,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Plans random stalls up to `until` and forgets those over before `since`.
    fn plan(&mut self, link: &LinkFaults, since: Instant, until: Instant, stalls: &AtomicU64) {
        while self.windows.front().is_some_and(|w| w.1 < since) {
            self.windows.pop_front();
        }
        let Some(every) = link.stall_every.filter(|e| !e.is_zero()) else {
            self.next_random = None;
            return;
        };
        let mean = every.as_secs_f64();
        let rng = &mut self.rng;
        let mut draw = || Duration::from_secs_f64(-mean * (1.0 - rng.random::<f64>()).ln());
        let next = self.next_random.get_or_insert_with(|| since + draw());
        while *next <= until {
            let start = *next;
            let end = start + link.stall_for;
            if end >= since {
                self.windows.push_back((start, end));
                stalls.fetch_add(1, Ordering::Relaxed);
            }
            *next = end + draw();
        }
    }

    /// The earliest instant at or after `t` outside every held window.
    fn release(&self, mut t: Instant) -> Instant {
        // Windows may overlap (on-demand stalls); loop until none holds `t`.
        loop {
            match self.windows.iter().find(|w| w.0 <= t && t < w.1) {
                Some(w) => t = w.1,
                None => return t,
            }
        }
    }
}

/// State shared by the proxy handle, its accept loop and every connection.
#[derive(Debug)]
struct Shared {
    target: SocketAddr,
    faults: Mutex<Faults>,
    /// One stall schedule per direction (the link is shared by its connections).
    schedules: [Mutex<StallSchedule>; 2],
    /// Bumped by every partition; connections opened in an older epoch end.
    epoch: watch::Sender<u64>,
    partitioned: Mutex<bool>,
    seed: u64,
    connections: AtomicU64,
    refused: AtomicU64,
    bytes: [AtomicU64; 2],
    stalls: AtomicU64,
    /// UDP: each client's upstream socket.
    mappings: Mutex<udp::Mappings>,
    /// UDP: the draws of every datagram.
    udp_rng: Mutex<ChaCha8Rng>,
    udp_in_flight: AtomicU64,
    udp_datagrams: [AtomicU64; 2],
    udp_dropped: AtomicU64,
    /// UDP: the thread that releases held datagrams on time.
    releaser: release::Releaser,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing holding these locks can panic half-way through an update.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn index(dir: Direction) -> usize {
    match dir {
        Direction::Upstream => 0,
        Direction::Downstream => 1,
    }
}

/// A running proxy. Dropping it stops accepting and ends every connection.
#[derive(Debug)]
pub struct FaultProxy {
    shared: Arc<Shared>,
    local: SocketAddr,
    accept: JoinHandle<()>,
    udp: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on an ephemeral port of 127.0.0.1, TCP and UDP on the same
    /// number, and forwards every connection and datagram to `target` with
    /// `faults`. `seed` makes the draws repeatable.
    pub async fn start(target: SocketAddr, faults: Faults, seed: u64) -> Result<Self, Error> {
        const TRIES: usize = 32;
        let mut bound = None;
        for _ in 0..TRIES {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .map_err(Error::Bind)?;
            let local = listener.local_addr().map_err(Error::Bind)?;
            if let Ok(udp) = UdpSocket::bind(local).await {
                bound = Some((listener, udp, local));
                break;
            }
        }
        let (listener, udp_socket, local) = bound.ok_or(Error::NoTwinPort(TRIES))?;
        let (epoch, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            target,
            faults: Mutex::new(faults),
            schedules: [
                Mutex::new(StallSchedule::new(seed ^ 0x5354_414c_4c55)),
                Mutex::new(StallSchedule::new(seed ^ 0x5354_414c_4c44)),
            ],
            epoch,
            partitioned: Mutex::new(false),
            seed,
            connections: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            bytes: [AtomicU64::new(0), AtomicU64::new(0)],
            stalls: AtomicU64::new(0),
            mappings: Mutex::default(),
            udp_rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed ^ 0x5544_5044_4752)),
            udp_in_flight: AtomicU64::new(0),
            udp_datagrams: [AtomicU64::new(0), AtomicU64::new(0)],
            udp_dropped: AtomicU64::new(0),
            releaser: release::Releaser::default(),
        });
        release::Releaser::start(&shared).map_err(Error::Thread)?;
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        let udp = tokio::spawn(udp::serve(udp_socket, Arc::clone(&shared)));
        Ok(Self {
            shared,
            local,
            accept,
            udp,
        })
    }

    /// The address to dial instead of the target (TCP), and to send
    /// datagrams to instead of the target's (UDP).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The address connections are forwarded to.
    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        *lock(&self.shared.faults)
    }

    /// Changes the faults; segments read from now on get the new ones.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.shared.faults) = faults;
    }

    /// Holds `dir` (both directions for `None`) from now for `length`:
    /// nothing crosses, and what queued behind arrives in one burst after.
    pub fn stall(&self, dir: Option<Direction>, length: Duration) {
        let now = Instant::now();
        let dirs: &[Direction] = match dir {
            Some(Direction::Upstream) => &[Direction::Upstream],
            Some(Direction::Downstream) => &[Direction::Downstream],
            None => &[Direction::Upstream, Direction::Downstream],
        };
        for &d in dirs {
            let mut schedule = lock(&self.shared.schedules[index(d)]);
            schedule.windows.push_back((now, now + length));
            self.shared.stalls.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Cuts every live connection and refuses new ones until
    /// [`FaultProxy::heal`]; datagrams are dropped meanwhile.
    pub fn partition(&self) {
        *lock(&self.shared.partitioned) = true;
        self.shared.epoch.send_modify(|e| *e += 1);
    }

    /// Ends a partition: new connections are forwarded again.
    pub fn heal(&self) {
        *lock(&self.shared.partitioned) = false;
    }

    /// Whether a partition is in force.
    pub fn is_partitioned(&self) -> bool {
        *lock(&self.shared.partitioned)
    }

    /// Counters since the start.
    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        Stats {
            connections: s.connections.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
            bytes_upstream: s.bytes[0].load(Ordering::Relaxed),
            bytes_downstream: s.bytes[1].load(Ordering::Relaxed),
            stalls: s.stalls.load(Ordering::Relaxed),
            datagrams_upstream: s.udp_datagrams[0].load(Ordering::Relaxed),
            datagrams_downstream: s.udp_datagrams[1].load(Ordering::Relaxed),
            datagrams_dropped: s.udp_dropped.load(Ordering::Relaxed),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.udp.abort();
        lock(&self.shared.mappings).abort_all();
        self.shared.releaser.close();
        // Ends every connection task (they watch the epoch).
        self.shared.epoch.send_modify(|e| *e += 1);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut count: u64 = 0;
    loop {
        let (inbound, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::debug!(%err, "fault proxy: accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if *lock(&shared.partitioned) {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            drop(inbound);
            continue;
        }
        count += 1;
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            if let Err(err) = forward(inbound, count, &shared).await {
                tracing::debug!(%err, %peer, "fault proxy: connection ended");
            }
        });
    }
}

/// Forwards one connection until both directions end or a partition cuts it.
async fn forward(inbound: TcpStream, n: u64, shared: &Arc<Shared>) -> std::io::Result<()> {
    let mut epoch = shared.epoch.subscribe();
    let outbound = tokio::select! {
        o = TcpStream::connect(shared.target) => o?,
        _ = epoch.changed() => return Ok(()),
    };
    inbound.set_nodelay(true)?;
    outbound.set_nodelay(true)?;
    shared.connections.fetch_add(1, Ordering::Relaxed);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let seed = shared.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let up = pipe(in_read, out_write, Direction::Upstream, seed, shared);
    let down = pipe(out_read, in_write, Direction::Downstream, seed ^ 1, shared);
    tokio::select! {
        r = async { tokio::try_join!(up, down) } => r.map(|_| ()),
        _ = epoch.changed() => {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }
}

/// A segment and when it may leave; `None` bytes: the sender closed its side.
type Segment = (Instant, Option<Vec<u8>>);

/// One direction: read segments, stamp their release instants, write them
/// out in order when due.
async fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    dir: Direction,
    seed: u64,
    shared: &Shared,
) -> std::io::Result<()> {
    let (tx, mut rx) = mpsc::channel::<Segment>(QUEUE);
    let read = async move {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut last = Instant::now();
        let mut buf = vec![0u8; SEGMENT];
        loop {
            let n = from.read(&mut buf).await?;
            let now = Instant::now();
            let release = if n == 0 {
                last
            } else {
                let faults = lock(&shared.faults).get(dir);
                last = release_at(&faults, now, last, n, &mut rng, shared, dir);
                last
            };
            let bytes = (n > 0).then(|| buf[..n].to_vec());
            if tx.send((release, bytes)).await.is_err() || n == 0 {
                return Ok::<(), std::io::Error>(());
            }
        }
    };
    let write = async move {
        while let Some((release, bytes)) = rx.recv().await {
            tokio::time::sleep_until(release).await;
            match bytes {
                Some(bytes) => {
                    to.write_all(&bytes).await?;
                    shared.bytes[index(dir)].fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
                None => {
                    to.shutdown().await?;
                    break;
                }
            }
        }
        Ok::<(), std::io::Error>(())
    };
    tokio::try_join!(read, write).map(|_| ())
}

impl LinkFaults {
    /// One segment's or datagram's delay, s: uniform in `delay ± jitter`,
    /// never below zero.
    fn drawn_delay(&self, rng: &mut ChaCha8Rng) -> f64 {
        let delay = self.delay.as_secs_f64();
        let jitter = self.jitter.as_secs_f64();
        if jitter > 0.0 {
            (delay + jitter * (2.0 * rng.random::<f64>() - 1.0)).max(0.0)
        } else {
            delay
        }
    }
}

/// When a segment of `len` bytes read at `now` may leave, given the
/// previous segment's release `last` (never earlier: order is kept).
fn release_at(
    faults: &LinkFaults,
    now: Instant,
    last: Instant,
    len: usize,
    rng: &mut ChaCha8Rng,
    shared: &Shared,
    dir: Direction,
) -> Instant {
    let drawn = faults.drawn_delay(rng);
    let mut release = (now + Duration::from_secs_f64(drawn)).max(last);
    if faults.loss > 0.0 && rng.random::<f64>() < faults.loss {
        release += faults.retransmit;
        shared.stalls.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(bw) = faults.bandwidth {
        // The link carries one segment at a time: this one starts when the
        // previous one has left and takes len / bandwidth.
        release = release.max(last) + Duration::from_secs_f64(len as f64 / bw as f64);
    }
    let mut schedule = lock(&shared.schedules[index(dir)]);
    schedule.plan(faults, now, release, &shared.stalls);
    schedule.release(release)
}

mod release;
#[cfg(test)]
mod tests;
mod udp;
