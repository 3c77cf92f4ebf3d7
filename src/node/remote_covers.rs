//! Cover pictures of tracks this node does not hold, fetched from the
//! members that do (`/firefly/cover/1`) and kept in a bounded cache.
//!
//! The library's `covers` table keeps a picture exactly as long as a track
//! this node holds shows it, so a picture seen only on other nodes lives
//! here instead: in memory, at most [`CACHE_BYTES`] in all, the least used
//! going first. Pictures are checked against their id before they get here.

use firefly_library::{Cover, CoverId, TrackId};
use firefly_swarm::Client;
use std::sync::Arc;
use std::time::Duration;

/// Most picture bytes kept (each picture is at most 1 MiB).
pub(crate) const CACHE_BYTES: u64 = 16 * 1024 * 1024;
/// How long a request for a picture not cached waits for the swarm.
pub(crate) const FETCH_PATIENCE: Duration = Duration::from_secs(5);

/// The cache of pictures fetched from other members; clones share it.
#[derive(Clone)]
pub(crate) struct RemoteCovers {
    cache: moka::sync::Cache<CoverId, Arc<Cover>>,
}

impl Default for RemoteCovers {
    fn default() -> Self {
        let cache = moka::sync::Cache::builder()
            .weigher(|_: &CoverId, cover: &Arc<Cover>| {
                u32::try_from(cover.bytes.len()).unwrap_or(u32::MAX)
            })
            .max_capacity(CACHE_BYTES)
            .build();
        Self { cache }
    }
}

impl std::fmt::Debug for RemoteCovers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCovers")
            .field("pictures", &self.cache.entry_count())
            .finish()
    }
}

impl RemoteCovers {
    /// The picture the catalog says `track` shows: from the cache, or
    /// fetched from a member holding it (waiting at most [`FETCH_PATIENCE`]).
    /// `None` when the track has no picture or no member gave it in time.
    pub(crate) async fn of_track(&self, swarm: &Client, track: TrackId) -> Option<Arc<Cover>> {
        let id = swarm.cover_of(track).await.ok()??;
        if let Some(cover) = self.cache.get(&id) {
            return Some(cover);
        }
        let fetched = tokio::time::timeout(FETCH_PATIENCE, swarm.fetch_cover(id))
            .await
            .ok()?
            .ok()??;
        let cover = Arc::new(fetched);
        self.cache.insert(id, cover.clone());
        Some(cover)
    }
}
