#![allow(clippy::unwrap_used)]

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An echo server on 127.0.0.1; returns its address.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                s.set_nodelay(true).unwrap();
                let mut buf = vec![0u8; 65536];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn connect(proxy: &FaultProxy) -> TcpStream {
    let s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Sends one byte and times its echo.
async fn ping(s: &mut TcpStream) -> Duration {
    let start = Instant::now();
    s.write_all(&[7]).await.unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.unwrap();
    start.elapsed()
}

#[tokio::test]
async fn a_clean_proxy_forwards_both_ways_in_order() {
    let proxy = FaultProxy::start(echo_server().await, Faults::default(), 1)
        .await
        .unwrap();
    let mut s = connect(&proxy).await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let (mut r, mut w) = s.split();
    let send = async {
        w.write_all(&data).await.unwrap();
    };
    let mut back = vec![0u8; data.len()];
    let recv = async {
        r.read_exact(&mut back).await.unwrap();
    };
    tokio::join!(send, recv);
    assert_eq!(back, data);
    let stats = proxy.stats();
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.bytes_upstream, data.len() as u64);
    assert_eq!(stats.bytes_downstream, data.len() as u64);
}

#[tokio::test]
async fn delay_and_jitter_stay_in_their_range_and_keep_order() {
    let link = LinkFaults::default()
        .delay(Duration::from_millis(20))
        .jitter(Duration::from_millis(10));
    let proxy = FaultProxy::start(echo_server().await, Faults::both(link), 2)
        .await
        .unwrap();
    let mut s = connect(&proxy).await;
    let mut rtts = Vec::new();
    for _ in 0..30 {
        rtts.push(ping(&mut s).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    rtts.sort();
    // Each way 10–30 ms: a round trip 20–60 ms plus scheduling.
    assert!(rtts[0] >= Duration::from_millis(19), "{rtts:?}");
    assert!(rtts[29] <= Duration::from_millis(200), "{rtts:?}");
    assert!(
        rtts[25] - rtts[4] >= Duration::from_millis(5),
        "jitter spreads the round trips: {rtts:?}"
    );

    // Many small writes under jitter still arrive in order.
    let (mut r, mut w) = s.split();
    let send = async {
        for i in 0..200u8 {
            w.write_all(&[i]).await.unwrap();
            tokio::time::sleep(Duration::from_micros(300)).await;
        }
    };
    let mut back = vec![0u8; 200];
    let recv = async {
        r.read_exact(&mut back).await.unwrap();
    };
    tokio::join!(send, recv);
    assert!(back.iter().enumerate().all(|(i, &b)| b as usize == i));
}

#[tokio::test]
async fn a_stall_holds_the_link_and_releases_a_burst() {
    let proxy = FaultProxy::start(echo_server().await, Faults::default(), 3)
        .await
        .unwrap();
    let mut s = connect(&proxy).await;
    assert!(ping(&mut s).await < Duration::from_millis(150));
    proxy.stall(Some(Direction::Upstream), Duration::from_millis(200));
    let start = Instant::now();
    // Three messages sent during the stall arrive together after it.
    for i in 0..3u8 {
        s.write_all(&[i]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut b = [0u8; 3];
    s.read_exact(&mut b).await.unwrap();
    let waited = start.elapsed();
    assert_eq!(b, [0, 1, 2]);
    assert!(waited >= Duration::from_millis(195), "{waited:?}");
    assert!(waited < Duration::from_millis(1_000), "{waited:?}");
    assert!(ping(&mut s).await < Duration::from_millis(150));
    assert!(proxy.stats().stalls >= 1);
}

#[tokio::test]
async fn random_stalls_and_loss_delay_some_round_trips() {
    let link = LinkFaults::default()
        .stalls(Duration::from_millis(150), Duration::from_millis(100))
        .loss(0.05, Duration::from_millis(200));
    let proxy = FaultProxy::start(echo_server().await, Faults::both(link), 4)
        .await
        .unwrap();
    let mut s = connect(&proxy).await;
    let mut slow = 0;
    for _ in 0..60 {
        if ping(&mut s).await >= Duration::from_millis(40) {
            slow += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // About 6 losses and 8 stalls expected over the run.
    assert!(slow >= 4, "only {slow} slow round trips");
    assert!(proxy.stats().stalls >= 3);
}

#[tokio::test]
async fn bandwidth_cap_paces_a_transfer() {
    let link = LinkFaults::default().bandwidth(200_000);
    let proxy = FaultProxy::start(
        echo_server().await,
        Faults {
            upstream: link,
            downstream: LinkFaults::default(),
        },
        5,
    )
    .await
    .unwrap();
    let mut s = connect(&proxy).await;
    let data = vec![1u8; 60_000];
    let start = Instant::now();
    let (mut r, mut w) = s.split();
    let mut back = vec![0u8; data.len()];
    tokio::join!(async { w.write_all(&data).await.unwrap() }, async {
        r.read_exact(&mut back).await.unwrap()
    });
    // 60 kB at 200 kB/s: 300 ms.
    assert!(
        start.elapsed() >= Duration::from_millis(280),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_partition_cuts_connections_and_refuses_new_ones_until_healed() {
    let proxy = FaultProxy::start(echo_server().await, Faults::default(), 6)
        .await
        .unwrap();
    let mut s = connect(&proxy).await;
    ping(&mut s).await;
    proxy.partition();
    assert!(proxy.is_partitioned());
    let mut b = [0u8; 1];
    let cut = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = s.write_all(&[1]).await;
        s.read(&mut b).await
    })
    .await
    .unwrap();
    assert!(matches!(cut, Ok(0) | Err(_)), "{cut:?}");
    let mut refused = connect(&proxy).await;
    let r = tokio::time::timeout(Duration::from_secs(2), refused.read(&mut b))
        .await
        .unwrap();
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    proxy.heal();
    let mut again = connect(&proxy).await;
    assert!(ping(&mut again).await < Duration::from_millis(300));
    assert!(proxy.stats().refused >= 2);
}

/// A UDP echo server on 127.0.0.1; returns its address.
async fn udp_echo_server() -> SocketAddr {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    addr
}

/// Sends `count` numbered datagrams through `proxy`, `gap` apart, and
/// collects the echoes for `wait`: (number, round trip, source).
async fn udp_round_trips(
    proxy: &FaultProxy,
    count: u32,
    gap: Duration,
    wait: Duration,
) -> Vec<(u32, Duration, SocketAddr)> {
    let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let start = Instant::now();
    let sent_at = std::sync::Mutex::new(vec![start; count as usize]);
    let send = async {
        for i in 0..count {
            sent_at.lock().unwrap()[i as usize] = Instant::now();
            client
                .send_to(&i.to_be_bytes(), proxy.local_addr())
                .await
                .unwrap();
            tokio::time::sleep(gap).await;
        }
    };
    let receive = async {
        let mut back = Vec::new();
        let mut buf = [0u8; 64];
        let deadline = start + gap * count * 3 + wait;
        while let Ok(Ok((n, from))) =
            tokio::time::timeout_at(deadline, client.recv_from(&mut buf)).await
        {
            let at = Instant::now();
            let i = u32::from_be_bytes(buf[..n].try_into().unwrap());
            back.push((i, at - sent_at.lock().unwrap()[i as usize], from));
        }
        back
    };
    tokio::join!(send, receive).1
}

#[tokio::test]
async fn datagrams_cross_on_the_same_port_each_with_its_own_delay() {
    let wifi = LinkFaults::default()
        .delay(Duration::from_millis(20))
        .jitter(Duration::from_millis(10));
    let proxy = FaultProxy::start(udp_echo_server().await, Faults::both(wifi), 3)
        .await
        .unwrap();
    let back = udp_round_trips(
        &proxy,
        40,
        Duration::from_millis(2),
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(back.len(), 40, "every datagram came back: {back:?}");
    // Answers come from the proxy's port: the client's mapping works both ways.
    assert!(back.iter().all(|(_, _, from)| *from == proxy.local_addr()));
    let rtts: Vec<f64> = back.iter().map(|b| b.1.as_secs_f64() * 1e3).collect();
    let min = rtts.iter().copied().fold(f64::INFINITY, f64::min);
    let max = rtts.iter().copied().fold(0.0, f64::max);
    // Two ways of 20 ± 10 ms: 20–60 ms, spread over the range.
    assert!(
        min >= 19.0 && max <= 90.0,
        "round trips {min:.1}–{max:.1} ms"
    );
    assert!(min < 35.0 && max > 45.0, "no jitter: {min:.1}–{max:.1} ms");
    let stats = proxy.stats();
    assert_eq!(
        (stats.datagrams_upstream, stats.datagrams_downstream),
        (40, 40)
    );
    assert_eq!(stats.datagrams_dropped, 0);
}

#[tokio::test]
async fn datagrams_are_lost_and_partitioned_for_real() {
    let lossy = LinkFaults::default().loss(0.5, Duration::from_millis(200));
    let proxy = FaultProxy::start(udp_echo_server().await, Faults::both(lossy), 5)
        .await
        .unwrap();
    let back = udp_round_trips(
        &proxy,
        200,
        Duration::from_micros(500),
        Duration::from_millis(200),
    )
    .await;
    // Each way half lost, never late: about a quarter come back, promptly.
    assert!(
        (20..=90).contains(&back.len()),
        "{} of 200 came back",
        back.len()
    );
    assert!(
        back.iter()
            .all(|(_, rtt, _)| *rtt < Duration::from_millis(150))
    );
    assert!(proxy.stats().datagrams_dropped >= 100);
    // A partition drops them all; a heal lets them through again.
    proxy.set_faults(Faults::default());
    proxy.partition();
    let back = udp_round_trips(
        &proxy,
        10,
        Duration::from_millis(1),
        Duration::from_millis(100),
    )
    .await;
    assert!(back.is_empty(), "{back:?}");
    proxy.heal();
    let back = udp_round_trips(
        &proxy,
        10,
        Duration::from_millis(1),
        Duration::from_millis(100),
    )
    .await;
    assert_eq!(back.len(), 10);
}

#[tokio::test]
async fn a_stall_holds_datagrams_until_it_clears() {
    let proxy = FaultProxy::start(udp_echo_server().await, Faults::default(), 7)
        .await
        .unwrap();
    proxy.stall(Some(Direction::Upstream), Duration::from_millis(150));
    let back = udp_round_trips(
        &proxy,
        5,
        Duration::from_millis(1),
        Duration::from_millis(400),
    )
    .await;
    assert_eq!(back.len(), 5);
    assert!(
        back.iter()
            .all(|(_, rtt, _)| *rtt >= Duration::from_millis(140)),
        "{back:?}"
    );
}

/// The proxy releases each datagram at its own due instant, not on the
/// runtime's 1 ms timer grid: held there, every direction's smallest delay
/// settled a fixed fraction of a millisecond above its floor, a steady path
/// asymmetry that moved the real nodes' clocks by hundreds of µs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_leave_on_time_not_on_a_millisecond_grid() {
    const COUNT: usize = 120;
    let delay = Duration::from_millis(5);
    let target = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    target
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let proxy = FaultProxy::start(
        target.local_addr().unwrap(),
        Faults::both(LinkFaults::default().delay(delay)),
        9,
    )
    .await
    .unwrap();
    let to = proxy.local_addr();
    let excess = tokio::task::spawn_blocking(move || {
        let receiver = std::thread::spawn(move || {
            let mut arrived = vec![None; COUNT];
            let mut buf = [0u8; 16];
            while let Ok(n) = target.recv(&mut buf) {
                let at = std::time::Instant::now();
                if let Ok(bytes) = <[u8; 8]>::try_from(&buf[..n]) {
                    let i = u64::from_be_bytes(bytes) as usize;
                    if let Some(slot) = arrived.get_mut(i) {
                        *slot = Some(at);
                    }
                }
                if arrived.iter().all(Option::is_some) {
                    break;
                }
            }
            arrived
        });
        let client = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let mut sent = Vec::with_capacity(COUNT);
        for i in 0..COUNT as u64 {
            sent.push(std::time::Instant::now());
            client.send_to(&i.to_be_bytes(), to).unwrap();
            // Not a whole number of milliseconds: sends meet every phase.
            std::thread::sleep(Duration::from_micros(1_370));
        }
        let arrived = receiver.join().unwrap();
        let mut excess: Vec<f64> = sent
            .iter()
            .zip(&arrived)
            .filter_map(|(s, a)| Some((a.as_ref()?.duration_since(*s) - delay).as_secs_f64() * 1e6))
            .collect();
        excess.sort_by(f64::total_cmp);
        excess
    })
    .await
    .unwrap();
    assert!(excess.len() >= COUNT * 9 / 10, "{} arrived", excess.len());
    // On a 1 ms grid the excess is uniform over 0–1,000 µs (its first
    // quartile 250 µs and more); released on time, it is the wake-up
    // latency of a thread.
    let quartile = excess[excess.len() / 4];
    assert!(
        quartile < 250.0,
        "a quarter of the datagrams came {quartile:.0} µs or more late: {:?}",
        &excess[..10]
    );
}
