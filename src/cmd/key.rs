//! `firefly key new`: make a pre-shared key for a private swarm.
//!
//! The key is printed in the format libp2p's pnet transport reads
//! (`/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex digits), so the output can be
//! saved as `swarm.key` and handed to every node with `--swarm-key`.

use anyhow::Context;
use rand::RngCore;
use std::io::Write;

/// Arguments of `firefly key`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Print a new random swarm key (save it: `firefly key new > swarm.key`).
    New,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    match args.action {
        Action::New => {
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            let mut out = std::io::stdout().lock();
            write!(out, "{}", format_swarm_key(&key)).context("writing the key to stdout")?;
            Ok(())
        }
    }
}

/// The pnet key file format: three lines, the last one 64 hex digits.
pub(crate) fn format_swarm_key(key: &[u8; 32]) -> String {
    format!("/key/swarm/psk/1.0.0/\n/base16/\n{}\n", hex::encode(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_has_the_pnet_layout() {
        let text = format_swarm_key(&[0xab; 32]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "/key/swarm/psk/1.0.0/");
        assert_eq!(lines[1], "/base16/");
        assert_eq!(lines[2], "ab".repeat(32));
    }
}
