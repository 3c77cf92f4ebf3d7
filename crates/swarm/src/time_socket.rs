//! The time socket: the UDP edge of [`crate::time_datagram`].
//!
//! One UDP socket per node, bound on its TCP listen port number (so that a
//! peer that dialed the TCP port finds it at the same number). A task reads
//! datagrams and stamps each with the local clock the moment it arrives, so
//! the event loop's own latency never enters a sample's `t2` or `t4`; the
//! loop sends with a non-blocking `try_send_to` right after stamping `t1` or
//! `t3`. The socket only moves bytes; every check is `time_datagram`'s.

use crate::config::Now;
use crate::time_datagram::MAX_DATAGRAM_BYTES;
use firefly_clock::LocalMicros;
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
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

    /// Binds `addr` and starts reading. Must run inside a tokio runtime.
    pub(crate) fn bind(&mut self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let std_socket = std::net::UdpSocket::bind(addr)?;
        std_socket.set_nonblocking(true)?;
        let socket = Arc::new(UdpSocket::from_std(std_socket)?);
        let local = socket.local_addr()?;
        let task = tokio::spawn(read(
            Arc::clone(&socket),
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
    tx: mpsc::Sender<Datagram>,
    now: Now,
    overflow: Arc<AtomicU64>,
) {
    // One byte more than the largest datagram: a longer one shows as too long.
    let mut buf = vec![0u8; MAX_DATAGRAM_BYTES + 1];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((len, from)) => {
                let at = now();
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
