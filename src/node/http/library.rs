//! `GET /api/library` (this node's tracks and its downloads),
//! `GET /api/catalog` (every track in the swarm, with its holders),
//! `POST /api/scan` (rescan the music folder) and `GET /api/cover/{track}`
//! (a track's cover picture).

use super::error::ApiError;
use crate::node::NodeState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use firefly_library::{TrackId, display_text};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

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
    let (local, covers) = tokio::task::spawn_blocking(move || {
        anyhow::Ok((library.tracks()?, library.tracks_with_cover()?))
    })
    .await??;
    let mut entries: std::collections::BTreeMap<TrackId, super::status::CatalogEntry> = local
        .into_iter()
        .map(|t| {
            let m = t.manifest;
            let mut entry = super::status::CatalogEntry::of(m.track, m.size, &m.meta);
            entry.holders = vec![me.to_string()];
            entry.cover |= covers.contains(&m.track);
            (m.track, entry)
        })
        .collect();
    for remote in state.swarm.catalog().await? {
        let s = &remote.summary;
        let entry = entries
            .entry(s.track)
            .or_insert_with(|| super::status::CatalogEntry::of(s.track, s.size, &s.meta));
        // The swarm's catalog lists this node too: name each holder once.
        for holder in remote.holders.iter().map(ToString::to_string) {
            if !entry.holders.contains(&holder) {
                entry.holders.push(holder);
            }
        }
    }
    Ok(Json(entries.into_values().collect()))
}

/// How long `POST /api/scan` waits for the scan before answering that it
/// is still running (inside the API's 10 s request timeout).
const SCAN_PATIENCE: Duration = Duration::from_secs(8);

/// `POST /api/scan`: which part of the music folder to rescan.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScanBody {
    /// Files or folders inside the music folder; none: all of it.
    #[serde(default)]
    paths: Vec<PathBuf>,
}

/// Most paths one `POST /api/scan` may name.
const MAX_SCAN_PATHS: usize = 1024;

/// `POST /api/scan`: rescans the music folder (or the named paths in it)
/// and answers the scan's figures; a scan that takes longer than
/// [`SCAN_PATIENCE`] goes on, and the answer (202) says so.
pub(crate) async fn scan(
    State(state): State<NodeState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // No body (or an empty one) scans the whole folder.
    let body: ScanBody = if body.iter().all(u8::is_ascii_whitespace) {
        ScanBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|err| ApiError::BadRequest(format!("bad scan request: {err}")))?
    };
    if body.paths.len() > MAX_SCAN_PATHS {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_SCAN_PATHS} paths per scan"
        )));
    }
    let music = state.indexer.music().to_path_buf();
    let mut paths = Vec::with_capacity(body.paths.len());
    for path in body.paths {
        // Canonical where it exists (a removed file is named as it was).
        let canon = path.canonicalize().unwrap_or_else(|_| path.clone());
        if !canon.is_absolute()
            || !canon.starts_with(&music)
            || canon
                .components()
                .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(ApiError::BadRequest(format!(
                "{} is not inside this node's music folder {} (a running node scans only its \
                 music folder; stop it to scan other folders into its database)",
                path.display(),
                music.display()
            )));
        }
        paths.push(canon);
    }
    let indexer = state.indexer.clone();
    let scanning = tokio::spawn(async move {
        if paths.is_empty() {
            indexer.scan_all().await
        } else {
            indexer.scan_paths(paths).await
        }
    });
    match tokio::time::timeout(SCAN_PATIENCE, scanning).await {
        Ok(done) => {
            let report = done??;
            Ok(Json(crate::cmd::scan::report_json(&report)).into_response())
        }
        Err(_) => {
            let body = serde_json::json!({
                "running": true,
                "message": "the scan goes on in the node; its tracks join the library as it finds them",
            });
            Ok((StatusCode::ACCEPTED, Json(body)).into_response())
        }
    }
}

/// `GET /api/cover/{track}`: the picture in the track's tags, with its
/// media type: this node's own, or else fetched from a member holding the
/// track (see `remote_covers`); 404 when no member gave it in time or the
/// track has none.
pub(crate) async fn cover(
    State(state): State<NodeState>,
    Path(track): Path<String>,
) -> Result<Response, ApiError> {
    let track: TrackId = track.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "track must be a 64-digit hex track id, not {track:?}"
        ))
    })?;
    let library = state.library.clone();
    let cover = match tokio::task::spawn_blocking(move || library.cover(track)).await?? {
        Some(cover) => std::sync::Arc::new(cover),
        None => state
            .remote_covers
            .of_track(&state.swarm, track)
            .await
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "no cover for track {} on this node or its members",
                    track.to_hex()
                ))
            })?,
    };
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(cover.media_type),
            ),
            // The picture of a track id never changes: its bytes are the id's.
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=86400, immutable"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        cover.bytes.clone(),
    )
        .into_response())
}
