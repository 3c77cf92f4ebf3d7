//! What a node keeps across restarts, in the library's `SETTINGS` table:
//! the playback session (queue, track, position, paused or playing,
//! shuffle, repeat, history), this node's volume and its latency trim.
//!
//! The session is stored as a *snapshot*: paused at the position it had
//! reached, with no term or change counter, so that after the whole swarm
//! restarts, whichever node coordinates carries it on under its new term
//! and `resume` continues where the music stopped. The driver saves one
//! every half second while playing (so a kill loses at most that much) and
//! on every change. It is stored in the session's own wire encoding and
//! checked like a peer's on the way back in (a damaged setting is ignored).

use firefly_library::Library;
use firefly_swarm::{Placement, PlaybackState, Session};
use tokio::sync::watch;

const SESSION: &str = "playback/session";
const VOLUME: &str = "playback/volume-permille";
const LATENCY: &str = "playback/latency-ms";
const PLACEMENT: &str = "zones/placement";

/// `session` as it should come back after a restart at swarm instant `now`:
/// paused where it is then, with no term or change counter.
pub(crate) fn snapshot(session: &Session, now: i64) -> Session {
    let mut saved = session.clone();
    saved.position_micros = session.position_at(now);
    if saved.state == PlaybackState::Playing {
        saved.state = PlaybackState::Paused;
    }
    if saved.live.take().is_some() {
        // A live stream cannot be resumed later: it is over.
        saved.state = PlaybackState::Stopped;
        saved.position_micros = 0;
    }
    saved.start = 0;
    saved.term = 0;
    saved.seq = 0;
    saved
}

/// Stores session snapshots off the playback path. A durable redb commit
/// waits for the disk (an fsync: tens of ms, more on a busy disk), and the
/// driver carries out its actions in order, so a save awaited there held
/// back the pause or play that followed it past its instant. The saver's
/// own task stores them one at a time; when several arrive meanwhile, only
/// the latest is stored.
#[derive(Debug, Clone)]
pub(crate) struct SessionSaver(watch::Sender<Option<Session>>);

impl SessionSaver {
    /// Starts the saving task (on the current tokio runtime).
    pub(crate) fn spawn(library: Library) -> Self {
        let (tx, mut rx) = watch::channel(None::<Session>);
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let Some(snapshot) = rx.borrow_and_update().clone() else {
                    continue;
                };
                let library = library.clone();
                let _ =
                    tokio::task::spawn_blocking(move || save_session(&library, &snapshot)).await;
            }
        });
        Self(tx)
    }

    /// Queues `snapshot` to be stored; returns at once.
    pub(crate) fn save(&self, snapshot: Session) {
        self.0.send_replace(Some(snapshot));
    }
}

/// Stores a snapshot (blocking: a durable redb commit).
pub(crate) fn save_session(library: &Library, snapshot: &Session) {
    let stored = snapshot
        .encode()
        .map_err(|err| err.to_string())
        .and_then(|bytes| {
            library
                .put_setting(SESSION, &bytes)
                .map_err(|err| err.to_string())
        });
    if let Err(err) = stored {
        tracing::warn!(%err, "cannot store the playback session");
    }
}

/// The snapshot stored last, if any and readable (blocking).
pub(crate) fn saved_session(library: &Library) -> Option<Session> {
    let bytes = library.get_setting(SESSION).ok()??;
    match Session::decode(&bytes) {
        Ok(session) => Some(session),
        Err(err) => {
            tracing::warn!(%err, "the stored playback session is unreadable; starting without it");
            None
        }
    }
}

/// Stores this node's volume, in thousandths (blocking).
pub(crate) fn save_volume(library: &Library, permille: u16) {
    if let Err(err) = library.put_setting(VOLUME, &permille.to_le_bytes()) {
        tracing::warn!(%err, "cannot store the volume");
    }
}

/// The volume stored last, in thousandths (blocking).
pub(crate) fn saved_volume(library: &Library) -> Option<u16> {
    let bytes = library.get_setting(VOLUME).ok()??;
    Some(u16::from_le_bytes(bytes.try_into().ok()?))
        .filter(|v| *v <= firefly_swarm::MAX_VOLUME_PERMILLE)
}

/// Stores this node's latency trim, ms (blocking).
pub(crate) fn save_latency(library: &Library, ms: i64) {
    if let Err(err) = library.put_setting(LATENCY, &ms.to_le_bytes()) {
        tracing::warn!(%err, "cannot store the latency");
    }
}

/// The latency trim stored last, ms (blocking).
pub(crate) fn saved_latency(library: &Library) -> Option<i64> {
    let bytes = library.get_setting(LATENCY).ok()??;
    Some(i64::from_le_bytes(bytes.try_into().ok()?)).filter(|ms| ms.abs() <= 10_000)
}

/// Stores this node's placement (zone, zone settings, channel map; its
/// delay is the latency trim, stored by [`save_latency`]) (blocking).
pub(crate) fn save_placement(library: &Library, placement: &Placement) {
    let stored = firefly_swarm::wire::encode(placement)
        .map_err(|err| err.to_string())
        .and_then(|bytes| {
            library
                .put_setting(PLACEMENT, &bytes)
                .map_err(|err| err.to_string())
        });
    if let Err(err) = stored {
        tracing::warn!(%err, "cannot store the zone placement");
    }
}

/// The placement stored last, if any and readable (blocking).
pub(crate) fn saved_placement(library: &Library) -> Option<Placement> {
    let bytes = library.get_setting(PLACEMENT).ok()??;
    let decoded: Result<Placement, String> =
        firefly_swarm::wire::decode(&bytes, 64 * 1024).map_err(|err| err.to_string());
    match decoded.and_then(|p| p.check().map(|()| p)) {
        Ok(placement) => Some(placement),
        Err(err) => {
            tracing::warn!(%err, "the stored zone placement is unreadable; starting in the default zone");
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use firefly_library::{LibraryConfig, TrackId};

    #[test]
    fn a_session_volume_and_latency_survive_a_reopen_and_damage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let playing = Session {
            version: firefly_swarm::playback::SESSION_VERSION,
            term: 4,
            seq: 9,
            queue: vec![TrackId([2; 32])],
            track: Some(TrackId([1; 32])),
            state: PlaybackState::Playing,
            start: 1_000_000,
            position_micros: 2_000_000,
            duration_micros: Some(30_000_000),
            shuffle: true,
            ..Session::default()
        };
        {
            let library = Library::open(&LibraryConfig::new(dir.path())).unwrap();
            save_session(&library, &snapshot(&playing, 4_500_000));
            save_volume(&library, 400);
            save_latency(&library, -25);
        }
        let library = Library::open(&LibraryConfig::new(dir.path())).unwrap();
        let back = saved_session(&library).unwrap();
        assert_eq!(back.state, PlaybackState::Paused);
        assert_eq!(back.position_micros, 5_500_000);
        assert_eq!((back.term, back.seq), (0, 0));
        assert_eq!(
            (back.queue, back.track, back.shuffle),
            (playing.queue, playing.track, true)
        );
        assert_eq!(saved_volume(&library), Some(400));
        assert_eq!(saved_latency(&library), Some(-25));
        library.put_setting(SESSION, b"\xffnot a session").unwrap();
        library.put_setting(VOLUME, b"\x01").unwrap();
        assert_eq!(saved_session(&library), None);
        assert_eq!(saved_volume(&library), None);
    }

    #[test]
    fn a_placement_survives_a_reopen_and_damage_means_the_default_zone() {
        let dir = tempfile::tempdir().unwrap();
        let placement = Placement {
            zone: "kitchen".parse().unwrap(),
            channel: firefly_swarm::ChannelMap::Right,
            counter: 3,
            ..Placement::default()
        };
        {
            let library = Library::open(&LibraryConfig::new(dir.path())).unwrap();
            assert_eq!(saved_placement(&library), None);
            save_placement(&library, &placement);
        }
        let library = Library::open(&LibraryConfig::new(dir.path())).unwrap();
        assert_eq!(saved_placement(&library), Some(placement));
        library.put_setting(PLACEMENT, b"\xffnope").unwrap();
        assert_eq!(saved_placement(&library), None);
    }
}
