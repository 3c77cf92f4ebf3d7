//! Issue 14: an honest burst of requests is neither dropped nor penalized.
//! Two real nodes on 127.0.0.1: one holds 64 tracks with 64 different cover
//! pictures, the other asks for all 64 covers at once (the node allows 64
//! fetches at once, all to the one holder). Each picture arrives, byte for
//! byte, and neither node strikes the other. Before the stream gate, the
//! holder's stream pool dropped all but a few of them.

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
