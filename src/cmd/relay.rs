//! `firefly relay`: run a circuit-relay v2 server so nodes on networks that
//! cannot reach each other can meet through it.

use crate::node::announce::{EventFormat, NodeEvent, announce};
use firefly_swarm::Multiaddr;
use firefly_swarm::relay_server::{RelayEvent, RelayServer};
use std::path::PathBuf;

/// Arguments of `firefly relay`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address to listen on (repeatable; default: TCP and QUIC port 4001 on every interface).
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<Multiaddr>,
    /// Where the relay keeps its identity, so its address stays the same.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Pre-shared key file: relay for this private swarm only (TCP only).
    #[arg(long, value_name = "FILE")]
    swarm_key: Option<PathBuf>,
    /// What to print on stdout: sentences for people, or one JSON object a
    /// line for programs (`docs/EVENTS.md`).
    #[arg(long, value_name = "FORMAT", default_value = "human")]
    events: EventFormat,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    crate::node::announce::set_format(args.events);
    let data_dir = crate::data_dir::resolve(args.data_dir)?;
    let keypair = firefly_swarm::identity::load_or_create(&data_dir)?;
    let swarm_key = args
        .swarm_key
        .as_deref()
        .map(firefly_swarm::swarm_key::load)
        .transpose()?;
    tokio::runtime::Runtime::new()?.block_on(async move {
        let relay = RelayServer::new(keypair, args.listen, swarm_key)?;
        announce(&NodeEvent::Started {
            peer_id: relay.peer_id().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        });
        let serve = relay.run(|event| match event {
            RelayEvent::Listening(addr) => announce(&NodeEvent::Listening {
                addr: addr.to_string(),
            }),
            RelayEvent::Reserved(peer) => announce(&NodeEvent::SlotReserved {
                peer: peer.to_string(),
            }),
            RelayEvent::CircuitOpened { src, dst } => announce(&NodeEvent::CircuitOpened {
                src: src.to_string(),
                dst: dst.to_string(),
            }),
            RelayEvent::CircuitClosed { src, dst } => announce(&NodeEvent::CircuitClosed {
                src: src.to_string(),
                dst: dst.to_string(),
            }),
            other => tracing::debug!(?other, "relay event"),
        });
        tokio::select! {
            () = serve => {}
            () = crate::node::shutdown_signal() => {}
        }
        anyhow::Ok(())
    })
}
