//! The time socket: the UDP edge of [`crate::time_datagram`].
//!
//! One UDP socket per node, bound on its TCP listen port number (so that a
//! peer that dialed the TCP port finds it at the same number). The event
//! loop reads it without blocking and sends with a non-blocking
//! `try_send_to` right after stamping `t1` or `t3`. The socket only moves
//! bytes; every check is `time_datagram`'s.
//!
//! On Linux each datagram's arrival is the kernel's (`SO_TIMESTAMPNS`): the
//! loop's wakeup, tens to hundreds of µs on a loaded machine and different
//! on every node, would otherwise sit in one direction of each exchange and
//! read as an offset. The kernel's stamp is on the system clock; the local
//! stamp is the local clock now, less the datagram's age on the system
//! clock (µs, so the clocks' different rates do not matter).
//!
//! **Datagrams wait for the loop.** Since a datagram keeps its arrival
//! stamp however late it is read, and an answer's `t3` is stamped when it
//! is sent, a datagram may wait in the kernel's queue for the loop's next
//! wake-up at no cost in accuracy. So a kernel-stamped socket is not
//! registered with the runtime at all: the loop reads it whenever it wakes,
//! and wakes at least every [`MAX_HOLD_MICROS`]. Under 20 ms of jitter a
//! node of three receives some 40 datagrams a second, and each woke a
//! runtime thread, a reading task and then the loop (a full poll of the
//! swarm); now they wait for the probe timer that wakes it anyway. Without
//! kernel stamps the socket is watched, and each datagram read as it
//! arrives.

use crate::config::Now;
use crate::time_datagram::MAX_DATAGRAM_BYTES;
use firefly_clock::LocalMicros;
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

/// Longest a datagram waits in the socket's queue for the loop's next
/// wake-up. It only delays when a sample reaches the clock (which ticks
/// every 250 ms) and when an answer leaves (stamped as it leaves).
pub(crate) const MAX_HOLD_MICROS: i64 = 100_000;

/// Read errors in a row (e.g. ICMP errors reported on the socket) after
/// which a read gives up until the next wake-up.
const ERRORS_PER_READ: usize = 8;

/// A datagram as it arrived.
#[derive(Debug)]
pub(crate) struct Datagram {
    pub(crate) bytes: Vec<u8>,
    pub(crate) from: SocketAddr,
    /// When it arrived, on the local clock.
    pub(crate) at: LocalMicros,
}

/// How the loop learns that datagrams arrived.
enum Io {
    /// Kernel-stamped, and left to wait: not registered with the runtime,
    /// read whenever the loop wakes.
    Polled(std::net::UdpSocket),
    /// Stamped when read: the loop watches it and reads each datagram as
    /// it arrives.
    Watched(tokio::net::UdpSocket),
}

/// The node's time socket, bound once a TCP listen port is known.
pub(crate) struct TimeSocket {
    io: Option<Io>,
    /// One byte more than the largest datagram: a longer one shows as too long.
    buf: Vec<u8>,
    /// The kernel's count of datagrams the socket dropped, as last read.
    drops_seen: u32,
    /// Drops read and not yet taken ([`TimeSocket::take_dropped`]).
    dropped: u64,
    now: Now,
}

impl TimeSocket {
    pub(crate) fn new(now: Now) -> Self {
        Self {
            io: None,
            buf: vec![0u8; MAX_DATAGRAM_BYTES + 1],
            drops_seen: 0,
            dropped: 0,
            now,
        }
    }

    /// Whether the socket is bound.
    pub(crate) fn is_bound(&self) -> bool {
        self.io.is_some()
    }

    /// The UDP port it is bound on.
    pub(crate) fn local_port(&self) -> Option<u16> {
        let addr = match self.io.as_ref()? {
            Io::Polled(socket) => socket.local_addr(),
            Io::Watched(socket) => socket.local_addr(),
        };
        addr.ok().map(|addr| addr.port())
    }

    /// Binds `addr`. Must run inside a tokio runtime.
    pub(crate) fn bind(&mut self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let socket = std::net::UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        // Before anything can arrive: a datagram queued before the option
        // is set carries no stamp.
        let kernel_stamps = arrival::enable(&socket);
        tracing::debug!(kernel_stamps, "time socket bound");
        self.io = Some(if kernel_stamps {
            Io::Polled(socket)
        } else {
            Io::Watched(tokio::net::UdpSocket::from_std(socket)?)
        });
        Ok(local)
    }

    /// The next datagram in the socket's queue, stamped with its arrival;
    /// `None` when the queue is empty. Never waits.
    pub(crate) fn try_next(&mut self) -> Option<Datagram> {
        let io = self.io.as_ref()?;
        for _ in 0..ERRORS_PER_READ {
            match arrival::try_recv(io, &mut self.buf) {
                Ok(received) => {
                    if let Some(drops) = received.drops {
                        self.dropped += u64::from(drops.wrapping_sub(self.drops_seen));
                        self.drops_seen = drops;
                    }
                    let at =
                        arrival::local_stamp((self.now)(), received.arrived, SystemTime::now());
                    return Some(Datagram {
                        bytes: self.buf[..received.len].to_vec(),
                        from: received.from,
                        at,
                    });
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return None,
                // E.g. an ICMP error reported on the socket: not fatal.
                Err(err) => tracing::trace!(%err, "time socket read failed"),
            }
        }
        None
    }

    /// The longest the loop may sleep: datagrams wait in the queue for it
    /// up to [`MAX_HOLD_MICROS`]. None while unbound, or when the socket
    /// is watched ([`TimeSocket::readable`]) instead.
    pub(crate) fn max_sleep(&self) -> Option<Duration> {
        match self.io {
            Some(Io::Polled(_)) => Some(Duration::from_micros(MAX_HOLD_MICROS.unsigned_abs())),
            _ => None,
        }
    }

    /// Resolves when a datagram may be waiting on a watched socket; never
    /// otherwise.
    pub(crate) async fn readable(&self) {
        match &self.io {
            Some(Io::Watched(socket)) if socket.readable().await.is_ok() => {}
            // Polled, unbound, or the runtime's driver is gone: wait
            // forever rather than spin.
            _ => std::future::pending().await,
        }
    }

    /// The next datagram, waiting for one.
    #[cfg(test)]
    pub(crate) async fn next(&mut self) -> Datagram {
        loop {
            if let Some(datagram) = self.try_next() {
                return datagram;
            }
            match self.max_sleep() {
                Some(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                None => self.readable().await,
            }
        }
    }

    /// Datagrams the kernel dropped because the socket's queue was full
    /// (a flood), since the last call; Linux only.
    pub(crate) fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    /// Sends `bytes` to `to` without waiting.
    pub(crate) fn send(&self, bytes: &[u8], to: SocketAddr) -> std::io::Result<()> {
        match &self.io {
            Some(Io::Polled(socket)) => socket.send_to(bytes, to).map(|_| ()),
            Some(Io::Watched(socket)) => socket.try_send_to(bytes, to).map(|_| ()),
            None => Err(std::io::Error::from(std::io::ErrorKind::NotConnected)),
        }
    }
}

/// When a datagram arrived: the kernel's receive timestamp where there is
/// one (see the module doc).
mod arrival {
    use super::Io;
    use firefly_clock::LocalMicros;
    use std::net::{SocketAddr, UdpSocket};
    use std::time::{Duration, SystemTime};

    /// What one read took from the socket's queue.
    pub(super) struct Received {
        pub(super) len: usize,
        pub(super) from: SocketAddr,
        /// When the kernel received it (system clock).
        pub(super) arrived: Option<SystemTime>,
        /// Datagrams the socket had dropped, all time, when it was queued
        /// (none: no drops yet, or no counter).
        pub(super) drops: Option<u32>,
    }

    /// A datagram older than this is stamped when read: its kernel stamp
    /// (or the system clock, set meanwhile) is not to be trusted.
    const MAX_AGE: Duration = Duration::from_secs(1);

    /// The local instant a datagram arrived, read at `read_at` (local) and
    /// `read_at_system`, given its kernel stamp `arrived`.
    pub(super) fn local_stamp(
        read_at: LocalMicros,
        arrived: Option<SystemTime>,
        read_at_system: SystemTime,
    ) -> LocalMicros {
        let Some(age) = arrived.and_then(|at| read_at_system.duration_since(at).ok()) else {
            return read_at;
        };
        if age > MAX_AGE {
            return read_at;
        }
        let age = i64::try_from(age.as_micros()).unwrap_or(0);
        LocalMicros(read_at.0.saturating_sub(age))
    }

    /// Asks the kernel to stamp every datagram's arrival; whether it will.
    #[cfg(target_os = "linux")]
    pub(super) fn enable(socket: &UdpSocket) -> bool {
        use nix::sys::socket::{setsockopt, sockopt};
        // The queue's drop counter too: datagrams left waiting are dropped
        // by the kernel when a flood fills it, and those count as refused.
        if let Err(err) = setsockopt(socket, sockopt::RxqOvfl, &1) {
            tracing::debug!(%err, "the time socket's drops will not be counted");
        }
        setsockopt(socket, sockopt::ReceiveTimestampns, &true).is_ok()
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn enable(_socket: &UdpSocket) -> bool {
        false
    }

    /// The next queued datagram: its length, its source, when the kernel
    /// received it, and how many datagrams the socket had dropped by then
    /// (all time); `WouldBlock` when there is none.
    pub(super) fn try_recv(io: &Io, buf: &mut [u8]) -> std::io::Result<Received> {
        match io {
            #[cfg(target_os = "linux")]
            Io::Polled(socket) => recv_now(socket, buf),
            #[cfg(not(target_os = "linux"))]
            Io::Polled(socket) => {
                let (len, from) = socket.recv_from(buf)?;
                Ok(Received {
                    len,
                    from,
                    arrived: None,
                    drops: None,
                })
            }
            Io::Watched(socket) => {
                let (len, from) = socket.try_recv_from(buf)?;
                Ok(Received {
                    len,
                    from,
                    arrived: None,
                    drops: None,
                })
            }
        }
    }

    /// One `recvmsg` with room for the `SCM_TIMESTAMPNS` and
    /// `SO_RXQ_OVFL` messages.
    #[cfg(target_os = "linux")]
    fn recv_now(socket: &UdpSocket, buf: &mut [u8]) -> std::io::Result<Received> {
        use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};
        use std::os::fd::AsRawFd;
        let mut iov = [std::io::IoSliceMut::new(buf)];
        let mut space = nix::cmsg_space!(nix::sys::time::TimeSpec, u32);
        let message = recvmsg::<SockaddrStorage>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space[..]),
            MsgFlags::empty(),
        )
        .map_err(std::io::Error::from)?;
        let arrived = message.cmsgs().ok().and_then(|mut all| {
            all.find_map(|control| match control {
                ControlMessageOwned::ScmTimestampns(at) => {
                    let secs = u64::try_from(at.tv_sec()).ok()?;
                    let nanos = u32::try_from(at.tv_nsec()).ok()?;
                    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
                }
                _ => None,
            })
        });
        let from = message
            .address
            .and_then(|address| {
                if let Some(v4) = address.as_sockaddr_in() {
                    return Some(SocketAddr::from(std::net::SocketAddrV4::from(*v4)));
                }
                address
                    .as_sockaddr_in6()
                    .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
            })
            .ok_or_else(|| std::io::Error::other("a datagram with no source address"))?;
        let drops = message.cmsgs().ok().and_then(|mut all| {
            all.find_map(|control| match control {
                ControlMessageOwned::RxqOvfl(drops) => Some(drops),
                _ => None,
            })
        });
        Ok(Received {
            len: message.bytes,
            from,
            arrived,
            drops,
        })
    }
}

/// The IP and TCP port of a direct TCP address (`/ip4|ip6/…/tcp/…`), none
/// for relayed, DNS or other transports.
pub(crate) fn tcp_socket_addr(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut ip: Option<IpAddr> = None;
    let mut port = None;
    for protocol in addr.iter() {
        match protocol {
            Protocol::Ip4(a) if ip.is_none() => ip = Some(a.into()),
            Protocol::Ip6(a) if ip.is_none() => ip = Some(a.into()),
            Protocol::Tcp(p) if port.is_none() && ip.is_some() => port = Some(p),
            Protocol::P2pCircuit => return None,
            _ => {}
        }
    }
    Some(SocketAddr::new(ip?, port?))
}

/// Where to bind the time socket for the TCP listen address `listening`
/// (`/ip4/X/tcp/P`, as the swarm reports it): the configured listen address
/// it came from (its IP, maybe unspecified) with the port `P`.
pub(crate) fn time_socket_addr(
    configured: &[Multiaddr],
    listening: &Multiaddr,
) -> Option<SocketAddr> {
    let actual = tcp_socket_addr(listening)?;
    configured
        .iter()
        .filter_map(tcp_socket_addr)
        .find(|c| {
            (c.ip() == actual.ip() || (c.ip().is_unspecified() && c.is_ipv4() == actual.is_ipv4()))
                && (c.port() == 0 || c.port() == actual.port())
        })
        .map(|c| SocketAddr::new(c.ip(), actual.port()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ma(s: &str) -> Multiaddr {
        s.parse().expect("a multiaddr")
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("a socket address")
    }

    #[test]
    fn a_datagram_is_stamped_back_to_its_arrival_unless_its_stamp_is_absurd() {
        let read_at = LocalMicros(5_000_000);
        let system = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let arrived = |ago: Duration| Some(system - ago);
        assert_eq!(
            arrival::local_stamp(read_at, arrived(Duration::from_micros(250)), system),
            LocalMicros(4_999_750)
        );
        assert_eq!(arrival::local_stamp(read_at, None, system), read_at);
        // From the future (the system clock set back) or too old: when read.
        let future = Some(system + Duration::from_millis(3));
        assert_eq!(arrival::local_stamp(read_at, future, system), read_at);
        assert_eq!(
            arrival::local_stamp(read_at, arrived(Duration::from_secs(2)), system),
            read_at
        );
    }

    /// A datagram left in the socket's queue (as the loop leaves it until
    /// its next wake-up) and read 40 ms after it arrived is still stamped at its
    /// arrival (on Linux, where the kernel stamps it). Linux turns receive
    /// stamping on for the whole stack some moments after the first socket
    /// asks (deferred work), and stamps what arrives before that when it is
    /// read: so a few tries, one of which must keep its arrival.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_datagram_read_late_keeps_its_arrival() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let origin = std::time::Instant::now();
            let now: Now = Arc::new(move || {
                LocalMicros(i64::try_from(origin.elapsed().as_micros()).unwrap_or(i64::MAX))
            });
            let mut socket = TimeSocket::new(now.clone());
            let bound = socket.bind(sa("127.0.0.1:0")).expect("bound");
            let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("a sender");
            let mut lateness = Vec::new();
            for _ in 0..10 {
                let sent_at = now();
                sender.send_to(b"probe", bound).expect("sent");
                std::thread::sleep(Duration::from_millis(40));
                let datagram = socket.next().await;
                assert_eq!(datagram.bytes, b"probe");
                let late = datagram.at.0 - sent_at.0;
                if (0..5_000).contains(&late) {
                    return;
                }
                lateness.push(late);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("stamped {lateness:?} µs after they were sent, not at their arrival");
        });
    }

    /// A kernel-stamped socket is left to wait for the loop, which then
    /// sleeps no longer than the hold; one stamped when read is watched.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_stamped_socket_waits_for_the_loop_and_bounds_its_sleep() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let now: Now = Arc::new(|| LocalMicros(0));
            let mut socket = TimeSocket::new(now);
            assert_eq!(socket.max_sleep(), None, "nothing waits while unbound");
            socket.bind(sa("127.0.0.1:0")).expect("bound");
            assert!(
                matches!(socket.io, Some(Io::Polled(_))),
                "Linux stamps arrivals"
            );
            assert_eq!(
                socket.max_sleep(),
                Some(Duration::from_micros(MAX_HOLD_MICROS.unsigned_abs()))
            );
            let never = tokio::time::timeout(Duration::from_millis(20), socket.readable()).await;
            assert!(never.is_err(), "a polled socket never wakes the loop");
        });
    }

    #[test]
    fn tcp_addresses_are_read_and_others_are_not() {
        let a: Multiaddr =
            ma("/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA");
        assert_eq!(tcp_socket_addr(&a), Some(sa("127.0.0.1:4001")));
        let quic: Multiaddr = ma("/ip4/127.0.0.1/udp/4001/quic-v1");
        assert_eq!(tcp_socket_addr(&quic), None);
        let relayed: Multiaddr = ma(
            "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA/p2p-circuit",
        );
        assert_eq!(tcp_socket_addr(&relayed), None);
        let dns: Multiaddr = ma("/dns4/example.org/tcp/4001");
        assert_eq!(tcp_socket_addr(&dns), None);
    }

    #[test]
    fn the_socket_binds_where_the_tcp_listener_was_configured() {
        let any: Vec<Multiaddr> = vec![ma("/ip4/0.0.0.0/tcp/0")];
        let on: Multiaddr = ma("/ip4/192.168.1.5/tcp/41234");
        assert_eq!(time_socket_addr(&any, &on), Some(sa("0.0.0.0:41234")));
        let lo: Vec<Multiaddr> = vec![
            ma("/ip4/127.0.0.1/udp/0/quic-v1"),
            ma("/ip4/127.0.0.1/tcp/5000"),
        ];
        let on: Multiaddr = ma("/ip4/127.0.0.1/tcp/5000");
        assert_eq!(time_socket_addr(&lo, &on), Some(sa("127.0.0.1:5000")));
        let quic: Multiaddr = ma("/ip4/127.0.0.1/udp/5000/quic-v1");
        assert_eq!(time_socket_addr(&lo, &quic), None);
    }
}
