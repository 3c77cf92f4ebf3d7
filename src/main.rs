//! The `firefly` command: runs and controls a Firefly node.
//!
//! `main` parses the command line, sets up logging and hands over to one
//! module per subcommand under `cmd/`. Errors come back as `anyhow` chains and
//! are printed on one line; nothing here panics on user input.

mod api_client;
mod cmd;
mod config;
mod data_dir;
mod node;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Firefly: synchronized multi-room music over a peer-to-peer swarm.
#[derive(Debug, Parser)]
#[command(name = "firefly", version, about, propagate_version = true, after_help = GLOSSARY)]
struct Cli {
    /// How to write logs on stderr (level from `RUST_LOG`).
    #[arg(long, global = true, value_name = "FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// What the figures in the demo, `status` and the web UI mean.
const GLOSSARY: &str = "\
Figures:
  inter-node offset  how far apart two nodes sound the same frame of music (the demo's p50/p99/max)
  offset             a peer's clock minus this node's, both read on the swarm timeline
  sync error         how far this node's estimate of the swarm timeline may be off
  playback error     how far this node's sound is from where the timeline says it should be
  ppm                the swarm timeline's rate against this node's clock, which the node corrects for";

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node: join the swarm, scan the music folder, serve the API.
    Up(Box<cmd::up::Args>),
    /// Run a local swarm of several nodes with synthesized music, playing in step.
    Demo(cmd::demo::Args),
    /// Play a track on every node, in step (QUERY: a title, an artist or a track id prefix).
    Play(cmd::play::PlayArgs),
    /// Pause playback on every node.
    Pause(cmd::zone::CommandArgs),
    /// Resume playback on every node, in step.
    Resume(cmd::zone::CommandArgs),
    /// Check the sound device, mDNS, the ports, the clock, the data dir and the music folder.
    Doctor(cmd::doctor::Args),
    /// Write a commented default config file for `firefly up`.
    Config(cmd::config::Args),
    /// Skip to the next track in the queue.
    Next(cmd::zone::CommandArgs),
    /// Go back to the previous track (or the start of this one).
    Prev(cmd::zone::CommandArgs),
    /// Stop playback on every node (the queue stays).
    Stop(cmd::zone::CommandArgs),
    /// Jump to a position in the current track (seconds, or minutes:seconds).
    Seek(cmd::transport::SeekArgs),
    /// Show or change the queue: add, rm, mv, clear, show.
    Queue(cmd::transport::QueueArgs),
    /// Live sources: list, add, rm, play.
    Source(cmd::source::SourceArgs),
    /// Set a node's volume.
    Volume(cmd::transport::VolumeArgs),
    /// Zones: list, create, move, merge, split, rename, volume.
    Zone(cmd::zone::ZoneArgs),
    /// Set which channels a node plays: stereo, left, right or mono.
    Channel(cmd::zone::ChannelArgs),
    /// Set a node's delay trim in ms (its latency trim).
    Trim(cmd::zone::TrimArgs),
    /// Shuffle the queue (on) or stop shuffling (off).
    Shuffle(cmd::transport::ShuffleArgs),
    /// Set the repeat mode: off, one or all.
    Repeat(cmd::transport::RepeatArgs),
    /// Show a running node's peers and the swarm catalog.
    Status(cmd::status::Args),
    /// Scan music folders into the library (recursively; unchanged files are not re-read).
    Scan(cmd::scan::Args),
    /// List the tracks in the library.
    Library(cmd::library::Args),
    /// Run a relay that bridges nodes on networks that cannot reach each other.
    Relay(cmd::relay::Args),
    /// Manage the swarm's pre-shared key (private swarms).
    Key(cmd::key::Args),
    /// Measure hot paths against baselines (`firefly bench scan DIR`).
    Bench(cmd::bench::Args),
}

/// How logs (stderr) are written.
#[derive(Debug, Clone, Copy, Default, clap::ValueEnum)]
enum LogFormat {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON object per line (for a log collector).
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("firefly: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // symphonia logs about every odd frame it meets while probing, and
        // an ERROR for every file it cannot read, which the scanner
        // already reports as skipped, with the reason;
        // libp2p's request-response and gossipsub warn once per dropped
        // stream or invalid message, which a flooding peer controls (the
        // swarm's own penalty log says it once a second, with a count).
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(
                "warn,symphonia=off,libp2p_request_response=error,libp2p_gossipsub=error",
            )
        });
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Scan(args) => cmd::scan::run(args),
        Command::Library(args) => cmd::library::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Key(args) => cmd::key::run(args),
        Command::Up(args) => cmd::up::run(*args),
        Command::Relay(args) => cmd::relay::run(args),
        Command::Status(args) => cmd::status::run(args),
        Command::Config(args) => cmd::config::run(args),
        Command::Doctor(args) => cmd::doctor::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Play(args) => cmd::play::play(args),
        Command::Pause(args) => cmd::play::simple(args.node, &args.zone.path("/api/pause")),
        Command::Resume(args) => cmd::play::simple(args.node, &args.zone.path("/api/resume")),
        Command::Next(args) => cmd::transport::simple(args.node, &args.zone.path("/api/next")),
        Command::Prev(args) => cmd::transport::simple(args.node, &args.zone.path("/api/prev")),
        Command::Stop(args) => cmd::transport::simple(args.node, &args.zone.path("/api/stop")),
        Command::Seek(args) => cmd::transport::seek(args),
        Command::Queue(args) => cmd::transport::queue(args),
        Command::Source(args) => cmd::source::run(args),
        Command::Volume(args) => cmd::transport::volume(args),
        Command::Zone(args) => cmd::zone::zone(args),
        Command::Channel(args) => cmd::zone::channel(args),
        Command::Trim(args) => cmd::zone::trim(args),
        Command::Shuffle(args) => cmd::transport::shuffle(args),
        Command::Repeat(args) => cmd::transport::repeat(args),
    }
}

/// A closed stdout (`firefly library | head`) is not an error worth reporting.
/// The error chain on one line, `: `-separated. A cause whose message the
/// previous one already ends with (errors that print their source and also
/// return it) is not repeated.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::one_line;

    /// An error that prints its source and also returns it, as many do.
    #[derive(Debug, thiserror::Error)]
    #[error("cannot scan /x: {source}")]
    struct Scan {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_its_parents_message_is_printed_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = anyhow::Error::new(Scan { source: io() }).context("scanning");
        assert_eq!(one_line(&err), "scanning: cannot scan /x: no such file");
        let err = anyhow::Error::new(io()).context("opening /y");
        assert_eq!(one_line(&err), "opening /y: no such file");
    }
}
