//! `firefly bench …`: measurements of the node's hot paths, each against a
//! baseline measured in the same run. One module per benchmark.

pub(crate) mod clock;
pub(crate) mod heard;
mod heard_split;
pub(crate) mod install;
pub(crate) mod library;
pub(crate) mod live;
pub(crate) mod scan;
pub(crate) mod sync;
mod sync_clock;
pub(crate) mod threads;
pub(crate) mod transfer;
pub(crate) mod transitions;
pub(crate) mod zones;

/// Arguments of `firefly bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    which: Which,
}

#[derive(Debug, clap::Subcommand)]
enum Which {
    /// Scan throughput against raw BLAKE3 hashing of the same files, and rescan speed.
    Scan(scan::Args),
    /// Swarm-clock simulator: firefly coupling against a Snapcast-like baseline, same seed.
    Clock(clock::Args),
    /// Synchronized playback of real nodes: offsets, command → sound, join, failover, cost.
    Sync(sync::Args),
    /// Sync as heard: three device-output nodes through a real sound server, clicks located in the recording.
    Heard(heard::Args),
    /// Chunk transfer against a plain TCP copy, capped multi-holder speedup, library convergence.
    Transfer(transfer::Args),
    /// The Debian package installed on a fresh system (a container) → a node the swarm sees.
    Install(install::Args),
    /// A file copied into a music folder → every node's catalog, watcher against an explicit scan.
    Library(library::Args),
    /// Every transport command → sound or silence on every node, and the spread of the switch.
    Transitions(transitions::Args),
    /// A live source (a FIFO fed in real time) on a local swarm: source → sound, spread, CPU, network.
    Live(live::Args),
    /// Zones: one zone's spread alone and with a second zone playing, move → in step, a stereo pair's offset.
    Zones(zones::Args),
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    match args.which {
        Which::Scan(args) => scan::run(args),
        Which::Clock(args) => clock::run(args),
        Which::Transfer(args) => transfer::run(args),
        Which::Sync(args) => sync::run(args),
        Which::Heard(args) => heard::run(args),
        Which::Library(args) => library::run(args),
        Which::Install(args) => install::run(args),
        Which::Transitions(args) => transitions::run(args),
        Which::Live(args) => live::run(args),
        Which::Zones(args) => zones::run(args),
    }
}
