//! `GET /api/library` (this node's tracks and its downloads) and
//! `GET /api/catalog` (every track in the swarm, with its holders).

use super::error::ApiError;
use crate::node::NodeState;
use axum::Json;
use axum::extract::State;
use firefly_library::{TrackId, display_text};
use serde::{Deserialize, Serialize};

/// One track in `GET /api/library`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LibraryTrack {
    pub(crate) track: String,
    pub(crate) title: String,
    pub(crate) artist: Option<String>,
    pub(crate) album: Option<String>,
    pub(crate) duration_ms: Option<u64>,
    /// While the track is being downloaded: how much is here.
    pub(crate) download: Option<super::stream::DownloadEvent>,
}

/// `GET /api/library`: this node's tracks, then the ones it is downloading
/// (with their progress).
pub(crate) async fn library(
    State(state): State<NodeState>,
) -> Result<Json<Vec<LibraryTrack>>, ApiError> {
    let library = state.library.clone();
    let tracks = tokio::task::spawn_blocking(move || library.tracks()).await??;
    let mut out: Vec<LibraryTrack> = tracks
        .into_iter()
        .map(|t| LibraryTrack {
            track: t.manifest.track.to_hex(),
            title: display_text(&t.manifest.meta.title),
            artist: t.manifest.meta.artist.as_deref().map(display_text),
            album: t.manifest.meta.album.as_deref().map(display_text),
            duration_ms: t.manifest.meta.duration_ms,
            download: None,
        })
        .collect();
    let downloads = state.swarm.downloads().await?;
    if !downloads.is_empty() {
        let catalog = state.swarm.catalog().await?;
        for (track, progress) in downloads {
            let hex = track.to_hex();
            if out.iter().any(|t| t.track == hex) {
                continue;
            }
            let meta = catalog
                .iter()
                .find(|e| e.summary.track == track)
                .map(|e| e.summary.meta.clone());
            out.push(LibraryTrack {
                track: hex,
                title: meta
                    .as_ref()
                    .map(|m| display_text(&m.title))
                    .unwrap_or_default(),
                artist: meta
                    .as_ref()
                    .and_then(|m| m.artist.as_deref().map(display_text)),
                album: meta
                    .as_ref()
                    .and_then(|m| m.album.as_deref().map(display_text)),
                duration_ms: meta.as_ref().and_then(|m| m.duration_ms),
                download: Some(super::stream::DownloadEvent::of(track, &progress)),
            });
        }
    }
    Ok(Json(out))
}

/// `GET /api/catalog`: every track in the swarm (this node's and its
/// peers'), with the peers that hold it.
pub(crate) async fn catalog(
    State(state): State<NodeState>,
) -> Result<Json<Vec<super::status::CatalogEntry>>, ApiError> {
    let me = state.swarm.peer_id();
    let library = state.library.clone();
    let local = tokio::task::spawn_blocking(move || library.tracks()).await??;
    let mut entries: std::collections::BTreeMap<TrackId, super::status::CatalogEntry> = local
        .into_iter()
        .map(|t| {
            let m = t.manifest;
            let entry = super::status::CatalogEntry {
                track: m.track.to_hex(),
                title: display_text(&m.meta.title),
                artist: m.meta.artist.as_deref().map(display_text),
                size: m.size,
                holders: vec![me.to_string()],
            };
            (m.track, entry)
        })
        .collect();
    for remote in state.swarm.catalog().await? {
        let s = &remote.summary;
        let entry = entries
            .entry(s.track)
            .or_insert_with(|| super::status::CatalogEntry {
                track: s.track.to_hex(),
                title: display_text(&s.meta.title),
                artist: s.meta.artist.as_deref().map(display_text),
                size: s.size,
                holders: Vec::new(),
            });
        // The swarm's catalog lists this node too: name each holder once.
        for holder in remote.holders.iter().map(ToString::to_string) {
            if !entry.holders.contains(&holder) {
                entry.holders.push(holder);
            }
        }
    }
    Ok(Json(entries.into_values().collect()))
}
