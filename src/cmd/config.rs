//! `firefly config init`: write a commented default config file for
//! `firefly up` (every key, commented out, with its default).

use anyhow::{Context, anyhow};
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `firefly config`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Write a commented default config file (default: the per-user one,
    /// $XDG_CONFIG_HOME/firefly/config.toml); `--path -` prints it.
    Init {
        /// Where to write it.
        #[arg(long, value_name = "FILE")]
        path: Option<PathBuf>,
        /// Replace a file that is already there.
        #[arg(long)]
        force: bool,
    },
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let Action::Init { path, force } = args.action;
    let path = match path {
        Some(path) if path.as_os_str() == "-" => {
            let mut out = std::io::stdout().lock();
            out.write_all(crate::config::DEFAULT_FILE.as_bytes())
                .context("writing to stdout")?;
            return Ok(());
        }
        Some(path) => path,
        None => crate::config::user_path()
            .ok_or_else(|| anyhow!("no home directory for the config file: pass --path FILE"))?,
    };
    if path.exists() && !force {
        anyhow::bail!("{} already exists (--force replaces it)", path.display());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&path, crate::config::DEFAULT_FILE)
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
