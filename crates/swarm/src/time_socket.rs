//! The time socket: the UDP edge of [`crate::time_datagram`].
//!
//! One UDP socket per node, bound on its TCP listen port number (so that a
//! peer that dialed the TCP port finds it at the same number). A task reads
//! datagrams and stamps each with the local clock at the moment it arrived,
//! so the event loop's own latency never enters a sample's `t2` or `t4`; the
//! loop sends with a non-blocking `try_send_to` right after stamping `t1` or
//! `t3`. The socket only moves bytes; every check is `time_datagram`'s.
//!
//! On Linux the arrival is the kernel's (`SO_TIMESTAMPNS`): the reading
//! task's wakeup, tens to hundreds of µs on a loaded machine and different
//! on every node, would otherwise sit in one direction of each exchange and
//! read as an offset. The kernel's stamp is on the system clock; the local
//! stamp is the local clock now, less the datagram's age on the system
//! clock (µs, so the clocks' different rates do not matter).

use crate::config::Now;
use crate::time_datagram::MAX_DATAGRAM_BYTES;
use firefly_clock::LocalMicros;
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// Datagrams read and not yet taken by the event loop; more are dropped.
const QUEUED_DATAGRAMS: usize = 64;

/// A datagram as it arrived.
#[derive(Debug)]
pub(crate) struct Datagram {
    pub(crate) bytes: Vec<u8>,
    pub(crate) from: SocketAddr,
    /// When it was read, on the local clock.
    pub(crate) at: LocalMicros,
}

/// The node's time socket, bound once a TCP listen port is known.
pub(crate) struct TimeSocket {
    socket: Option<Arc<UdpSocket>>,
    reader: Option<AbortHandle>,
    tx: mpsc::Sender<Datagram>,
    rx: mpsc::Receiver<Datagram>,
    /// Datagrams dropped because the loop was behind.
    overflow: Arc<AtomicU64>,
    now: Now,
}

impl TimeSocket {
    pub(crate) fn new(now: Now) -> Self {
        let (tx, rx) = mpsc::channel(QUEUED_DATAGRAMS);
        Self {
            socket: None,
            reader: None,
            tx,
            rx,
            overflow: Arc::default(),
            now,
        }
    }

    /// Whether the socket is bound.
    pub(crate) fn is_bound(&self) -> bool {
        self.socket.is_some()
    }

    /// The UDP port it is bound on.
    pub(crate) fn local_port(&self) -> Option<u16> {
        self.socket
            .as_ref()
            .and_then(|socket| socket.local_addr().ok())
            .map(|addr| addr.port())
    }

    /// Binds `addr` and starts reading. Must run inside a tokio runtime.
    pub(crate) fn bind(&mut self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let std_socket = std::net::UdpSocket::bind(addr)?;
        std_socket.set_nonblocking(true)?;
        let socket = Arc::new(UdpSocket::from_std(std_socket)?);
        let local = socket.local_addr()?;
        // Before anything can arrive: a datagram queued before the option
        // is set carries no stamp.
        let kernel_stamps = arrival::enable(&socket);
        tracing::debug!(kernel_stamps, "time socket reading");
        let task = tokio::spawn(read(
            Arc::clone(&socket),
            kernel_stamps,
            self.tx.clone(),
            self.now.clone(),
            Arc::clone(&self.overflow),
        ));
        self.reader = Some(task.abort_handle());
        self.socket = Some(socket);
        Ok(local)
    }

    /// The next datagram (never, while unbound).
    pub(crate) async fn next(&mut self) -> Datagram {
        match self.rx.recv().await {
            Some(datagram) => datagram,
            // Unreachable while `self.tx` lives; wait forever rather than spin.
            None => std::future::pending().await,
        }
    }

    /// Sends `bytes` to `to` without waiting.
    pub(crate) fn send(&self, bytes: &[u8], to: SocketAddr) -> std::io::Result<()> {
        let socket = self
            .socket
            .as_ref()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotConnected))?;
        socket.try_send_to(bytes, to).map(|_| ())
    }

    /// Datagrams dropped because the loop was behind, since the last call.
    pub(crate) fn take_overflow(&self) -> u64 {
        self.overflow.swap(0, Ordering::Relaxed)
    }
}

impl Drop for TimeSocket {
    fn drop(&mut self) {
        if let Some(reader) = &self.reader {
            reader.abort();
        }
    }
}

/// Reads datagrams, stamps them, hands them on; drops them when the loop is
/// behind (a time sample is worth nothing late).
async fn read(
    socket: Arc<UdpSocket>,
    kernel_stamps: bool,
    tx: mpsc::Sender<Datagram>,
    now: Now,
    overflow: Arc<AtomicU64>,
) {
    // One byte more than the largest datagram: a longer one shows as too long.
    let mut buf = vec![0u8; MAX_DATAGRAM_BYTES + 1];
    loop {
        let received = if kernel_stamps {
            arrival::recv(&socket, &mut buf).await
        } else {
            socket
                .recv_from(&mut buf)
                .await
                .map(|(len, from)| (len, from, None))
        };
        match received {
            Ok((len, from, arrived)) => {
                let at = arrival::local_stamp(now(), arrived, SystemTime::now());
                let datagram = Datagram {
                    bytes: buf[..len].to_vec(),
                    from,
                    at,
                };
                match tx.try_send(datagram) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        overflow.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
            Err(err) => {
                // E.g. an ICMP error reported on the socket: not fatal.
                tracing::trace!(%err, "time socket read failed");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

/// When a datagram arrived: the kernel's receive timestamp where there is
/// one (see the module doc).
mod arrival {
    use firefly_clock::LocalMicros;
    use std::net::SocketAddr;
    use std::time::{Duration, SystemTime};
    use tokio::net::UdpSocket;

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
        setsockopt(socket, sockopt::ReceiveTimestampns, &true).is_ok()
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn enable(_socket: &UdpSocket) -> bool {
        false
    }

    /// The next datagram: its length, its source, and when the kernel
    /// received it.
    #[cfg(target_os = "linux")]
    pub(super) async fn recv(
        socket: &UdpSocket,
        buf: &mut [u8],
    ) -> std::io::Result<(usize, SocketAddr, Option<SystemTime>)> {
        loop {
            socket.readable().await?;
            match socket.try_io(tokio::io::Interest::READABLE, || recv_now(socket, buf)) {
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) async fn recv(
        socket: &UdpSocket,
        buf: &mut [u8],
    ) -> std::io::Result<(usize, SocketAddr, Option<SystemTime>)> {
        let (len, from) = socket.recv_from(buf).await?;
        Ok((len, from, None))
    }

    /// One `recvmsg` with room for the `SCM_TIMESTAMPNS` message.
    #[cfg(target_os = "linux")]
    fn recv_now(
        socket: &UdpSocket,
        buf: &mut [u8],
    ) -> std::io::Result<(usize, SocketAddr, Option<SystemTime>)> {
        use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};
        use std::os::fd::AsRawFd;
        let mut iov = [std::io::IoSliceMut::new(buf)];
        let mut space = nix::cmsg_space!(nix::sys::time::TimeSpec);
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
        Ok((message.bytes, from, arrived))
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

    /// The reading task cannot run while the test holds the only thread:
    /// a datagram read 40 ms after it arrived is still stamped at its
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
