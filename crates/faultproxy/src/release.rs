//! Releases delayed datagrams at their due instant, to the microsecond.
//!
//! The runtime's timers fire on a 1 ms grid: a datagram held with
//! `tokio::time::sleep_until` leaves at the first grid tick after its due
//! instant. Every datagram of every direction then leaves on the same grid,
//! and a node that answers at once sends its answer at a fixed phase of it,
//! so each direction's *smallest* delay settles at the drawn floor plus a
//! fixed fraction of a millisecond that differs per direction: a steady
//! path asymmetry of up to ±1 ms that no real network has, and that a clock
//! estimator which trusts each direction's minimum delay (Firefly's) turns
//! into a steady offset of up to half of it. One thread per proxy releases
//! datagrams instead, sleeping on a condition variable (high-resolution
//! timers, tens of microseconds late at most on an idle core) until the
//! earliest is due.

use crate::{Direction, Shared, index, lock};
use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// One datagram waiting for its release.
struct Pending {
    due: Instant,
    /// Arrival order among equal due instants.
    seq: u64,
    bytes: Vec<u8>,
    socket: Arc<UdpSocket>,
    to: SocketAddr,
    dir: Direction,
    /// The proxy's partition epoch when it arrived: a partition since drops it.
    epoch: u64,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

#[derive(Default)]
struct Queue {
    waiting: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    closed: bool,
}

/// The datagrams in flight of one proxy and the thread that releases them.
#[derive(Default)]
pub(crate) struct Releaser {
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl std::fmt::Debug for Releaser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Releaser")
            .field("waiting", &lock(&self.queue).waiting.len())
            .finish()
    }
}

impl Releaser {
    /// Starts the release thread of `shared` (whose `releaser` this is).
    pub(crate) fn start(shared: &Arc<Shared>) -> std::io::Result<()> {
        let shared = Arc::clone(shared);
        std::thread::Builder::new()
            .name("faultproxy-udp".into())
            .spawn(move || shared.releaser.run(&shared))?;
        Ok(())
    }

    /// Queues `bytes` to leave `socket` for `to` at `due`.
    pub(crate) fn hold(
        &self,
        due: Instant,
        bytes: Vec<u8>,
        socket: Arc<UdpSocket>,
        to: SocketAddr,
        dir: Direction,
        epoch: u64,
    ) {
        let mut q = lock(&self.queue);
        q.seq += 1;
        let seq = q.seq;
        let earliest = q.waiting.peek().is_none_or(|Reverse(p)| due < p.due);
        q.waiting.push(Reverse(Pending {
            due,
            seq,
            bytes,
            socket,
            to,
            dir,
            epoch,
        }));
        drop(q);
        if earliest {
            self.changed.notify_one();
        }
    }

    /// Ends the thread; what is still waiting is dropped.
    pub(crate) fn close(&self) {
        let mut q = lock(&self.queue);
        q.closed = true;
        q.waiting.clear();
        drop(q);
        self.changed.notify_one();
    }

    fn run(&self, shared: &Shared) {
        loop {
            let next = {
                let mut q = lock(&self.queue);
                loop {
                    if q.closed {
                        return;
                    }
                    let now = Instant::now();
                    match q.waiting.peek().map(|Reverse(p)| p.due) {
                        None => q = wait(&self.changed, q),
                        Some(due) if due > now => {
                            q = self
                                .changed
                                .wait_timeout(q, due - now)
                                .map_or_else(|poisoned| poisoned.into_inner().0, |(q, _)| q);
                        }
                        Some(_) => break,
                    }
                }
                q.waiting.pop()
            };
            let Some(Reverse(p)) = next else {
                continue;
            };
            let current = *shared.epoch.borrow();
            // A partition drops what is on the wire; a full socket buffer
            // drops too, as a real queue would.
            let sent = p.epoch == current && p.socket.send_to(&p.bytes, p.to).is_ok();
            shared.udp_in_flight.fetch_sub(1, Ordering::Relaxed);
            if sent {
                shared.udp_datagrams[index(p.dir)].fetch_add(1, Ordering::Relaxed);
            } else {
                shared.udp_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn wait<'a>(
    changed: &Condvar,
    q: std::sync::MutexGuard<'a, Queue>,
) -> std::sync::MutexGuard<'a, Queue> {
    changed
        .wait(q)
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A blocking-use handle on `socket` for the release thread (the same
/// socket, a second descriptor; sends do not block on a UDP socket with
/// room in its buffer, and a full one drops).
pub(crate) fn sender(socket: &tokio::net::UdpSocket) -> std::io::Result<Arc<UdpSocket>> {
    use std::os::fd::AsFd;
    let fd = socket.as_fd().try_clone_to_owned()?;
    Ok(Arc::new(UdpSocket::from(fd)))
}
