//! Issue 14: an honest burst of requests is neither dropped nor penalized.
//! Two real nodes on 127.0.0.1: one holds 64 tracks with 64 different cover
//! pictures, the other asks for all 64 covers at once (the node allows 64
//! fetches at once, all to the one holder). Each picture arrives, byte for
//! byte, and neither node strikes the other. Before the stream gate, the
//! holder's stream pool dropped all but a few of them. Likewise a whole
//! library of eight tracks downloaded at once from one holder: without the
//! gate's per-peer bound the downloads together kept more than 8 chunk
//! requests in flight to the holder, which refuses that as a flood, and
//! they stalled.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../library/tests/common/mod.rs"]
mod library_common;

use common::{loopback_config, start, wait_until};
use firefly_library::{CoverId, Library, LibraryConfig, TrackId};
use std::path::Path;
use std::time::Duration;

const COVERS: usize = 64;

/// A library in `root` with the given files in its `music` folder, scanned.
async fn library(root: &Path, files: &[(String, Vec<u8>)]) -> Library {
    let music = root.join("music");
    std::fs::create_dir_all(&music).unwrap();
    for (name, bytes) in files {
        std::fs::write(music.join(name), bytes).unwrap();
    }
    let mut config = LibraryConfig::new(root.join("data"));
    config.music_dir(music.clone());
    let library = Library::open(&config).unwrap();
    let scanning = library.clone();
    tokio::task::spawn_blocking(move || scanning.scan(&[music], &mut ()).unwrap())
        .await
        .unwrap();
    library
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_covers_asked_at_once_from_one_holder_all_arrive_unpenalized() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut covers = Vec::new();
    for i in 0..COVERS {
        let png = library_common::tiny_png([i as u8, 255 - i as u8, 7]);
        let mp3 =
            library_common::tagged_mp3(&format!("Song {i}"), &format!("Album {i}"), Some(&png));
        files.push((format!("song-{i:02}.mp3"), mp3.clone()));
        covers.push((TrackId::of(&mp3), CoverId::of(&png), png));
    }
    let mut config = loopback_config("holder");
    config.library(library(&tmp.path().join("a"), &files).await);
    let a = start(config).await;
    let mut config = loopback_config("asker");
    config.library(library(&tmp.path().join("b"), &[]).await);
    let b = start(config).await;
    b.client.dial(a.dial_addr()).await.unwrap();
    let (last_track, last_cover, _) = covers[COVERS - 1].clone();
    assert!(
        wait_until(Duration::from_secs(30), || async {
            b.client.cover_of(last_track).await.unwrap() == Some(last_cover)
        })
        .await,
        "b never learned a's tracks and their covers"
    );

    let fetched =
        futures::future::join_all(covers.iter().map(|(_, id, _)| b.client.fetch_cover(*id)));
    let fetched = tokio::time::timeout(Duration::from_secs(30), fetched)
        .await
        .expect("the covers took more than 30 s");
    let mut missing = Vec::new();
    for ((_, id, png), got) in covers.iter().zip(fetched) {
        match got.unwrap() {
            Some(cover) => assert_eq!(&cover.bytes, png, "cover {id:?}"),
            None => missing.push(*id),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {COVERS} covers never came",
        missing.len()
    );
    let (stats_a, stats_b) = (
        a.client.stats().await.unwrap(),
        b.client.stats().await.unwrap(),
    );
    assert_eq!(
        (stats_a.strikes, stats_b.strikes),
        (0, 0),
        "an honest burst was struck"
    );
}

/// A node downloads a whole library from one holder at once: eight tracks
/// of about 1.5 MB, each its own download with up to 8 chunk requests in
/// flight, all to the same peer. Every file arrives byte for byte, and the
/// holder (which refuses more than 8 chunk requests in flight from one
/// peer as a flood) strikes nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_library_downloaded_at_once_from_one_holder_is_not_struck() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for i in 0..8u64 {
        let mut mp3 = library_common::id3_tag(&format!("Long {i}"), "The Lanterns", "Whole", 1, 0);
        mp3.extend(library_common::long_mp3_stream(1_500_000, i + 1));
        files.push((format!("long-{i}.mp3"), mp3));
    }
    let mut config = loopback_config("holder");
    config.library(library(&tmp.path().join("a"), &files).await);
    let a = start(config).await;
    let mut config = loopback_config("downloader");
    config.library(library(&tmp.path().join("b"), &[]).await);
    let b = start(config).await;
    b.client.dial(a.dial_addr()).await.unwrap();
    let tracks: Vec<TrackId> = files.iter().map(|(_, bytes)| TrackId::of(bytes)).collect();
    assert!(
        wait_until(Duration::from_secs(30), || async {
            let catalog = b.client.catalog().await.unwrap();
            tracks
                .iter()
                .all(|t| catalog.iter().any(|entry| entry.summary.track == *t))
        })
        .await,
        "b never learned a's tracks"
    );
    let downloads = futures::future::join_all(tracks.iter().map(|t| b.client.download(*t)));
    let paths = tokio::time::timeout(Duration::from_secs(120), downloads)
        .await
        .expect("the downloads took more than 120 s");
    for ((name, bytes), path) in files.iter().zip(paths) {
        let path = path.unwrap_or_else(|err| panic!("{name}: {err}"));
        assert!(std::fs::read(&path).unwrap() == *bytes, "{name} differs");
    }
    let (stats_a, stats_b) = (
        a.client.stats().await.unwrap(),
        b.client.stats().await.unwrap(),
    );
    assert_eq!(
        (stats_a.strikes, stats_b.strikes),
        (0, 0),
        "an honest download was struck"
    );
}
