//! `firefly library`: list the tracks this node holds.

use anyhow::Context;
use firefly_library::TrackEntry;
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `firefly library`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where the node keeps its state (default: the platform data dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print a JSON list instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let library = super::scan::open_library(args.data_dir)?;
    let mut tracks = library.tracks()?;
    // Artist, album, track number, title: the order a person browses in.
    tracks.sort_by(|a, b| {
        let key = |t: &TrackEntry| {
            let m = &t.manifest.meta;
            (
                m.artist.clone().unwrap_or_default().to_lowercase(),
                m.album.clone().unwrap_or_default().to_lowercase(),
                m.track.unwrap_or(u32::MAX),
                m.title.to_lowercase(),
            )
        };
        key(a).cmp(&key(b))
    });
    let mut out = std::io::stdout().lock();
    if args.json {
        let list: Vec<serde_json::Value> = tracks.iter().map(track_json).collect();
        writeln!(out, "{}", serde_json::Value::Array(list)).context("writing to stdout")?;
        return Ok(());
    }
    if tracks.is_empty() {
        writeln!(
            out,
            "the library is empty: add music with `firefly scan DIR`"
        )
        .context("writing to stdout")?;
        return Ok(());
    }
    for t in &tracks {
        let m = &t.manifest.meta;
        let duration = m
            .duration_ms
            .map(|ms| format!("{}:{:02}", ms / 60_000, ms / 1000 % 60))
            .unwrap_or_else(|| "?:??".to_owned());
        writeln!(
            out,
            "{}  {:>6}  {:<6} {}{}{}",
            &t.manifest.track.to_hex()[..12],
            duration,
            m.codec,
            m.artist
                .as_deref()
                .map(|a| format!("{a} - "))
                .unwrap_or_default(),
            m.title,
            m.album
                .as_deref()
                .map(|a| format!("  [{a}]"))
                .unwrap_or_default(),
        )
        .context("writing to stdout")?;
    }
    writeln!(out, "{} tracks", tracks.len()).context("writing to stdout")?;
    Ok(())
}

/// One track as `firefly library --json` lists it.
fn track_json(t: &TrackEntry) -> serde_json::Value {
    let m = &t.manifest;
    serde_json::json!({
        "id": m.track.to_hex(),
        "title": m.meta.title,
        "artist": m.meta.artist,
        "album": m.meta.album,
        "track": m.meta.track,
        "duration_ms": m.meta.duration_ms,
        "codec": m.meta.codec,
        "sample_rate": m.meta.sample_rate,
        "channels": m.meta.channels,
        "bytes": m.size,
        "chunks": m.chunks.len(),
        "path": t.paths.first().map(|p| p.to_string_lossy().into_owned()),
    })
}
