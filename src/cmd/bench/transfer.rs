//! `firefly bench transfer`: chunk transfer and library sync between real
//! nodes on loopback, each against a baseline measured in the same run.
//!
//! 1. One holder → one downloader, chunks verified and written into the
//!    downloader's library, against a plain TCP socket copy of the same file
//!    (read, sent, received and written to a file, synced at the end), and
//!    against the same copy over one raw libp2p TCP + noise + yamux stream
//!    (the transport's ceiling on this machine). Each of the three runs
//!    `--rounds` times, interleaved; the report gives medians.
//! 2. With every holder capped at the same `--cap` bytes/s: one holder
//!    against three holders of the same track.
//! 3. A library change on one of five nodes: time until every node's
//!    catalog shows it.
//!
//! Every node runs in this process on 127.0.0.1 with its own library in a
//! scratch folder (`--dir`, default the system temp folder), deleted at the
//! end, over TCP + noise + yamux or, with `--transport quic`, QUIC.

use anyhow::{Context, bail, ensure};
use firefly_library::{Library, LibraryConfig, TrackId};
use firefly_swarm::transfer::TransferConfig;
use firefly_swarm::{Client, Config, Event, Multiaddr, PeerId};
use serde::Serialize;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const MIB: u64 = 1024 * 1024;

/// Arguments of `firefly bench transfer`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Size of the track moved one peer → one peer, in MiB.
    #[arg(long, default_value_t = 64)]
    mib: u64,
    /// One → one rounds (TCP copy, raw libp2p stream, Firefly each);
    /// the report gives each one's median.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Size of the track moved under the upload cap, in MiB.
    #[arg(long, default_value_t = 24)]
    capped_mib: u64,
    /// Upload cap of every holder in the capped runs, in bytes per second.
    #[arg(long, default_value_t = 8 * MIB)]
    cap: u64,
    /// Library changes timed for convergence across five nodes.
    #[arg(long, default_value_t = 5)]
    changes: u32,
    /// Scratch folder for the nodes' libraries (a tmpfs such as /dev/shm
    /// takes the disk out of the measurement). Default: the system temp folder.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Transport between the nodes: TCP + noise + yamux, or QUIC.
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    transport: Transport,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// The transports a node listens on in the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Transport {
    /// TCP + noise + yamux.
    Tcp,
    /// QUIC.
    Quic,
}

impl Transport {
    fn listen(self) -> &'static str {
        match self {
            Self::Tcp => "/ip4/127.0.0.1/tcp/0",
            Self::Quic => "/ip4/127.0.0.1/udp/0/quic-v1",
        }
    }
}

/// What one run measured.
#[derive(Debug, Serialize)]
struct Report {
    /// Bytes of the one → one track.
    bytes: u64,
    /// Plain TCP socket copy of the same file over loopback, MiB/s
    /// (median of the rounds).
    tcp_mib_s: f64,
    /// The same file over one raw stream of a libp2p connection of the same
    /// transport, no chunking or verification, MiB/s (median).
    libp2p_stream_mib_s: f64,
    /// Firefly download of the same file, verified and stored, MiB/s (median).
    firefly_mib_s: f64,
    /// `firefly_mib_s / tcp_mib_s` (goal ≥ 0.6).
    ratio: f64,
    /// `libp2p_stream_mib_s / tcp_mib_s`: the most any protocol on this
    /// transport could reach against the same baseline on this machine.
    stream_ratio: f64,
    /// Each round's three figures.
    rounds: Vec<Round>,
    /// The capped runs.
    capped: Capped,
    /// Library convergence on five nodes.
    convergence: Convergence,
    /// Where the libraries lived.
    dir: PathBuf,
    /// The transport between the nodes.
    transport: Transport,
}

/// One round of the one → one comparison.
#[derive(Debug, Serialize)]
struct Round {
    /// Plain TCP copy, MiB/s.
    tcp_mib_s: f64,
    /// Raw libp2p stream copy, MiB/s.
    libp2p_stream_mib_s: f64,
    /// Firefly download, MiB/s.
    firefly_mib_s: f64,
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

#[derive(Debug, Serialize)]
struct Capped {
    /// Upload cap of every holder, bytes/s.
    cap: u64,
    /// Bytes of the track.
    bytes: u64,
    /// Download time from one holder, seconds.
    one_holder_s: f64,
    /// Download time from three holders, seconds.
    three_holders_s: f64,
    /// `one_holder_s / three_holders_s` (goal ≥ 2.5).
    speedup: f64,
}

#[derive(Debug, Serialize)]
struct Convergence {
    /// Nodes in the swarm.
    nodes: usize,
    /// Each change's time until every node's catalog showed it, ms.
    samples_ms: Vec<f64>,
    /// The slowest (goal ≤ 2000 ms).
    max_ms: f64,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    ensure!(
        args.mib >= 1 && args.mib <= 4096,
        "--mib must be between 1 and 4096"
    );
    ensure!(
        args.capped_mib >= 1 && args.capped_mib <= 1024,
        "--capped-mib must be between 1 and 1024"
    );
    ensure!(
        args.cap >= 64 * 1024,
        "--cap must be at least 65536 bytes/s"
    );
    ensure!(
        (1..=20).contains(&args.rounds),
        "--rounds must be between 1 and 20"
    );
    ensure!(
        (1..=100).contains(&args.changes),
        "--changes must be between 1 and 100"
    );
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let scratch = Scratch::new(&base)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(measure(&args, &scratch.path))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "one → one (median of {} rounds): firefly {:.1} MiB/s, plain TCP {:.1} MiB/s, ratio {:.2} (goal ≥ 0.6)",
            report.rounds.len(),
            report.firefly_mib_s,
            report.tcp_mib_s,
            report.ratio
        )?;
        writeln!(
            out,
            "transport ceiling: one raw libp2p stream ({:?}) {:.1} MiB/s, ratio {:.2}",
            report.transport, report.libp2p_stream_mib_s, report.stream_ratio
        )?;
        writeln!(
            out,
            "capped at {} B/s: one holder {:.2} s, three holders {:.2} s, speedup {:.2} (goal ≥ 2.5)",
            report.capped.cap,
            report.capped.one_holder_s,
            report.capped.three_holders_s,
            report.capped.speedup
        )?;
        writeln!(
            out,
            "library change on {} nodes: converged in at most {:.0} ms (goal ≤ 2000 ms)",
            report.convergence.nodes, report.convergence.max_ms
        )?;
    }
    Ok(())
}

/// A scratch folder removed when dropped, also when the run fails.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn new(base: &Path) -> anyhow::Result<Self> {
        let path = base.join(format!("firefly-bench-transfer-{}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating the scratch folder {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), %err, "scratch folder not removed");
        }
    }
}

async fn measure(args: &Args, dir: &Path) -> anyhow::Result<Report> {
    // 1. One → one, against a TCP copy of the same file.
    let source = dir.join("holder/music/track.wav");
    write_wav(&source, 1, args.mib * MIB)?;
    let bytes = std::fs::metadata(&source)?.len();
    let holder = start_node(dir, "holder", args.transport, TransferConfig::default()).await?;
    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        // The three copies of a round run back to back, so a change in the
        // machine's load between rounds moves all three alike.
        let tcp_secs = {
            let source = source.clone();
            let copy = dir.join("tcp-copy.wav");
            tokio::task::spawn_blocking(move || tcp_copy(&source, &copy)).await??
        };
        let stream_secs =
            libp2p_stream_copy(&source, &dir.join("stream-copy.wav"), args.transport).await?;
        let downloader = start_node(
            dir,
            &format!("downloader-{round}"),
            args.transport,
            TransferConfig::default(),
        )
        .await?;
        let firefly_secs = timed_download(&[&holder], &downloader, &source).await?;
        drop(downloader);
        let mib = bytes as f64 / MIB as f64;
        rounds.push(Round {
            tcp_mib_s: mib / tcp_secs,
            libp2p_stream_mib_s: mib / stream_secs,
            firefly_mib_s: mib / firefly_secs,
        });
    }
    drop(holder);
    let tcp_mib_s = median(rounds.iter().map(|r| r.tcp_mib_s));
    let libp2p_stream_mib_s = median(rounds.iter().map(|r| r.libp2p_stream_mib_s));
    let firefly_mib_s = median(rounds.iter().map(|r| r.firefly_mib_s));

    // 2. Capped: one holder, then three.
    let mut capped = TransferConfig::default();
    capped.max_upload(Some(args.cap));
    let capped_bytes = args.capped_mib * MIB;
    let one = {
        let track = dir.join("c1/music/track.wav");
        write_wav(&track, 2, capped_bytes)?;
        let h = start_node(dir, "c1", args.transport, capped.clone()).await?;
        let d = start_node(
            dir,
            "c1-downloader",
            args.transport,
            TransferConfig::default(),
        )
        .await?;
        timed_download(&[&h], &d, &track).await?
    };
    let three = {
        let mut holders = Vec::new();
        let mut track = PathBuf::new();
        for name in ["c3a", "c3b", "c3c"] {
            track = dir.join(name).join("music/track.wav");
            write_wav(&track, 3, capped_bytes)?;
            holders.push(start_node(dir, name, args.transport, capped.clone()).await?);
        }
        let d = start_node(
            dir,
            "c3-downloader",
            args.transport,
            TransferConfig::default(),
        )
        .await?;
        let refs: Vec<&BenchNode> = holders.iter().collect();
        timed_download(&refs, &d, &track).await?
    };

    // 3. Convergence of a library change on five nodes.
    let mut nodes = Vec::new();
    for i in 0..5 {
        nodes.push(
            start_node(
                dir,
                &format!("sync{i}"),
                args.transport,
                TransferConfig::default(),
            )
            .await?,
        );
    }
    connect_all(&nodes.iter().collect::<Vec<_>>()).await?;
    let mut samples_ms = Vec::new();
    for change in 0..args.changes {
        let node = &nodes[change as usize % nodes.len()];
        let file = node.music().join(format!("new-{change}.wav"));
        write_wav(&file, 100 + u64::from(change), 256 * 1024)?;
        let track = track_of(&file)?;
        let library = node.library.clone();
        let music = node.music();
        tokio::task::spawn_blocking(move || library.scan(&[music], &mut ()))
            .await?
            .context("scanning the changed library")?;
        let started = Instant::now();
        node.client.library_changed().await?;
        wait_for(Duration::from_secs(30), || async {
            for n in &nodes {
                let catalog = n.client.catalog().await.unwrap_or_default();
                if !catalog.iter().any(|e| e.summary.track == track) {
                    return false;
                }
            }
            true
        })
        .await
        .context("a library change did not reach every node within 30 s")?;
        samples_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let max_ms = samples_ms.iter().copied().fold(0.0, f64::max);

    Ok(Report {
        bytes,
        tcp_mib_s,
        libp2p_stream_mib_s,
        firefly_mib_s,
        ratio: firefly_mib_s / tcp_mib_s,
        stream_ratio: libp2p_stream_mib_s / tcp_mib_s,
        rounds,
        capped: Capped {
            cap: args.cap,
            bytes: capped_bytes,
            one_holder_s: one,
            three_holders_s: three,
            speedup: one / three,
        },
        convergence: Convergence {
            nodes: nodes.len(),
            samples_ms,
            max_ms,
        },
        dir: dir.to_path_buf(),
        transport: args.transport,
    })
}

/// A node of the benchmark with its own library.
struct BenchNode {
    client: Client,
    peer: PeerId,
    addr: Multiaddr,
    library: Library,
    root: PathBuf,
    task: tokio::task::JoinHandle<()>,
    _events: mpsc::Receiver<Event>,
}

impl BenchNode {
    fn music(&self) -> PathBuf {
        self.root.join("music")
    }
}

impl Drop for BenchNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_node(
    dir: &Path,
    name: &str,
    transport: Transport,
    transfer: TransferConfig,
) -> anyhow::Result<BenchNode> {
    let root = dir.join(name);
    let music = root.join("music");
    std::fs::create_dir_all(&music)?;
    let mut library_config = LibraryConfig::new(root.join("data"));
    library_config.music_dir(music.clone());
    let library =
        Library::open(&library_config).with_context(|| format!("opening the library of {name}"))?;
    {
        let library = library.clone();
        tokio::task::spawn_blocking(move || library.scan(&[music], &mut ()))
            .await?
            .with_context(|| format!("scanning the music of {name}"))?;
    }
    let keypair = firefly_swarm::identity::load_or_create(&root.join("data"))?;
    let mut config = Config::new(keypair, name);
    config
        .mdns(false)
        .listen(transport.listen().parse()?)
        .library(library.clone())
        .transfer(transfer);
    let (client, mut events, event_loop) = firefly_swarm::new(config)?;
    let task = tokio::spawn(event_loop.run());
    let addr = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.recv().await {
            if let Event::Listening { addr } = event {
                return Some(addr);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .with_context(|| format!("node {name} did not start listening"))?;
    Ok(BenchNode {
        peer: client.peer_id(),
        client,
        addr,
        library,
        root,
        task,
        _events: events,
    })
}

async fn connect_all(nodes: &[&BenchNode]) -> anyhow::Result<()> {
    for (i, a) in nodes.iter().enumerate() {
        for b in &nodes[i + 1..] {
            let reached = a.client.dial(b.addr.clone()).await?;
            ensure!(reached == b.peer, "dialed {} but reached {reached}", b.peer);
        }
    }
    Ok(())
}

/// Connects `downloader` to `holders`, waits until it sees every holder of
/// the track in its catalog, then times the download and checks the bytes.
async fn timed_download(
    holders: &[&BenchNode],
    downloader: &BenchNode,
    file: &Path,
) -> anyhow::Result<f64> {
    let track = track_of(file)?;
    let mut all: Vec<&BenchNode> = holders.to_vec();
    all.push(downloader);
    connect_all(&all).await?;
    let want = holders.len();
    wait_for(Duration::from_secs(30), || async {
        downloader
            .client
            .catalog()
            .await
            .unwrap_or_default()
            .iter()
            .any(|e| e.summary.track == track && e.holders.len() == want)
    })
    .await
    .context("the downloader never saw every holder")?;
    let started = Instant::now();
    let path = downloader
        .client
        .download(track)
        .await
        .context("the download failed")?;
    let secs = started.elapsed().as_secs_f64();
    ensure!(
        track_of(&path)? == track,
        "the downloaded file does not match its track id"
    );
    Ok(secs)
}

async fn wait_for<F, Fut>(limit: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bail!("timed out after {limit:?}")
}

fn track_of(path: &Path) -> anyhow::Result<TrackId> {
    let mut hasher = blake3::Hasher::new();
    let mut file = std::fs::File::open(path)?;
    std::io::copy(&mut file, &mut hasher)?;
    Ok(TrackId::from(hasher.finalize()))
}

/// Copies `source` over a loopback TCP connection into `dest` and returns
/// the seconds from connecting to the synced end of the written copy.
fn tcp_copy(source: &Path, dest: &Path) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let source = source.to_path_buf();
    let started = Instant::now();
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let mut socket = TcpStream::connect(addr)?;
        let mut file = std::fs::File::open(source)?;
        // A read/write loop through this process, not `std::io::copy`,
        // which on Linux hands a file-to-socket copy to the kernel
        // (`sendfile`) and so skips a pass that no encrypted protocol can.
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            socket.write_all(&buf[..n])?;
        }
        Ok(())
    });
    let (mut socket, _) = listener.accept()?;
    let mut out = std::fs::File::create(dest)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = socket.read(&mut buf)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
    }
    out.sync_all()?;
    let secs = started.elapsed().as_secs_f64();
    match sender.join() {
        Ok(result) => result?,
        Err(_) => bail!("the TCP sender thread panicked"),
    }
    std::fs::remove_file(dest)?;
    Ok(secs)
}

/// Writes a 16-bit stereo 44.1 kHz WAV of about `bytes` bytes of
/// deterministic noise (distinct per `seed`).
fn write_wav(path: &Path, seed: u64, bytes: u64) -> anyhow::Result<()> {
    let frames = u32::try_from(bytes / 4).context("track too large for a WAV")?;
    let data_len = frames * 4;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    out.write_all(b"RIFF")?;
    out.write_all(&(36 + data_len).to_le_bytes())?;
    out.write_all(b"WAVEfmt ")?;
    out.write_all(&16u32.to_le_bytes())?;
    out.write_all(&1u16.to_le_bytes())?;
    out.write_all(&2u16.to_le_bytes())?;
    out.write_all(&44_100u32.to_le_bytes())?;
    out.write_all(&(44_100u32 * 4).to_le_bytes())?;
    out.write_all(&4u16.to_le_bytes())?;
    out.write_all(&16u16.to_le_bytes())?;
    out.write_all(b"data")?;
    out.write_all(&data_len.to_le_bytes())?;
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..frames * 2 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.write_all(&((x >> 48) as i16 / 4).to_le_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// Copies `source` into `dest` over one raw stream of a libp2p connection on
/// loopback (TCP + noise + yamux, or QUIC) — the transport Firefly's chunks
/// travel on, with no chunking, verification or index — and returns the
/// seconds from dialing to the synced end of the written copy. This is the
/// ceiling any protocol on this transport can reach on this machine.
async fn libp2p_stream_copy(source: &Path, dest: &Path, kind: Transport) -> anyhow::Result<f64> {
    use futures::future::poll_fn;
    use futures::{AsyncReadExt, AsyncWriteExt};
    use libp2p::core::muxing::{StreamMuxerBox, StreamMuxerExt};
    use libp2p::core::transport::{Boxed, DialOpts, ListenerId, PortUse, TransportEvent};
    use libp2p::core::{Endpoint, upgrade::Version};
    use libp2p::{Transport as _, identity::Keypair, noise, quic, tcp, yamux};
    use std::pin::Pin;

    let transport = || -> anyhow::Result<Boxed<(PeerId, StreamMuxerBox)>> {
        let key = Keypair::generate_ed25519();
        Ok(match kind {
            Transport::Tcp => tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                .upgrade(Version::V1)
                .authenticate(noise::Config::new(&key)?)
                .multiplex(yamux::Config::default())
                .boxed(),
            Transport::Quic => quic::tokio::Transport::new(quic::Config::new(&key))
                .map(|(peer, connection), _| (peer, StreamMuxerBox::new(connection)))
                .boxed(),
        })
    };
    /// Polls the muxer until the connection ends, so its streams move.
    async fn drive(mut muxer: StreamMuxerBox) {
        while poll_fn(|cx| muxer.poll_unpin(cx)).await.is_ok() {}
    }

    let mut listener = transport()?;
    listener.listen_on(ListenerId::next(), kind.listen().parse()?)?;
    let addr = loop {
        match poll_fn(|cx| Pin::new(&mut listener).poll(cx)).await {
            TransportEvent::NewAddress { listen_addr, .. } => break listen_addr,
            TransportEvent::ListenerError { error, .. } => bail!("listening: {error}"),
            _ => {}
        }
    };
    let mut dialer = transport()?;
    let started = Instant::now();
    let dial = dialer.dial(
        addr,
        DialOpts {
            role: Endpoint::Dialer,
            port_use: PortUse::New,
        },
    )?;
    let accept = async {
        loop {
            if let TransportEvent::Incoming { upgrade, .. } =
                poll_fn(|cx| Pin::new(&mut listener).poll(cx)).await
            {
                break upgrade.await;
            }
        }
    };
    let (dialed, accepted) = futures::join!(dial, accept);
    let (_, mut out_muxer) = dialed?;
    let (_, mut in_muxer) = accepted?;
    let mut outbound = poll_fn(|cx| out_muxer.poll_outbound_unpin(cx)).await?;
    tokio::spawn(drive(out_muxer));
    let source = source.to_path_buf();
    let sender = tokio::spawn(async move {
        let mut file = std::fs::File::open(source)?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            outbound.write_all(&buf[..n]).await?;
        }
        outbound.close().await?;
        anyhow::Ok(())
    });
    let mut inbound = poll_fn(|cx| in_muxer.poll_inbound_unpin(cx)).await?;
    tokio::spawn(drive(in_muxer));
    let mut out = std::fs::File::create(dest)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = inbound.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
    }
    out.sync_all()?;
    let secs = started.elapsed().as_secs_f64();
    sender.await??;
    std::fs::remove_file(dest)?;
    Ok(secs)
}
