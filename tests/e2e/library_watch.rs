//! A live library: real `firefly up` processes watch their music folders.
//! A file copied in is in every node's catalog within 2 s and plays; a
//! removed file leaves every catalog; a file written slowly in pieces is
//! indexed once, complete; a music folder removed and restored is
//! followed; `firefly scan` asks the running node.

use crate::playback::{
    NodeSpec, http, one_swarm_at_a_time, spawn_node, start_swarm, wait_until, write_track,
};
use crate::util::{firefly, fixtures};
use serde_json::{Value, json};
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The goal: a new file in every node's catalog within this.
const CATALOG_LIMIT: Duration = Duration::from_secs(2);

/// The catalog entry of `track` on the node at `addr`, if listed.
fn entry(addr: SocketAddr, track: &str) -> Option<Value> {
    let (_, catalog) = http(addr, "GET", "/api/catalog", None);
    catalog
        .as_array()?
        .iter()
        .find(|e| e["track"] == track)
        .cloned()
}

/// Waits until `ok` holds on every node; how long that took.
fn time_until(addrs: &[SocketAddr], limit: Duration, ok: impl Fn(SocketAddr) -> bool) -> Duration {
    let started = Instant::now();
    assert!(
        wait_until(limit + Duration::from_secs(5), || addrs
            .iter()
            .all(|a| ok(*a))),
        "never held on every node"
    );
    started.elapsed()
}

/// The track id of a file: the hex BLAKE3 of its bytes.
fn id_of(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

#[test]
fn a_file_copied_in_reaches_every_catalog_within_2s_plays_and_leaves_when_removed() {
    let _one = one_swarm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let nodes = start_swarm(tmp.path(), 2, &[], 0);
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.http).collect();
    let music = nodes[0].dir.join("music");

    // Copied in (create, write, close), as `cp` does.
    let source = fixtures().join("tone.flac");
    let track = id_of(&std::fs::read(&source).unwrap());
    std::fs::copy(&source, music.join("tone.flac")).unwrap();
    let took = time_until(&addrs, CATALOG_LIMIT, |a| entry(a, &track).is_some());
    println!("a copied file reached every catalog in {took:?}");
    assert!(took <= CATALOG_LIMIT, "took {took:?}");
    let listed = entry(addrs[1], &track).unwrap();
    assert_eq!(listed["holders"], json!([nodes[0].peer_id]), "{listed}");

    // Removed: it leaves both catalogs, as fast.
    std::fs::remove_file(music.join("tone.flac")).unwrap();
    let took = time_until(&addrs, CATALOG_LIMIT, |a| entry(a, &track).is_none());
    println!("a removed file left every catalog in {took:?}");
    assert!(took <= CATALOG_LIMIT, "took {took:?}");
    assert!(
        nodes[0]
            .process
            .events()
            .iter()
            .any(|e| e["event"] == "track_removed" && e["track"] == track.as_str()),
        "{:?}",
        nodes[0].process.lines()
    );

    // A new file is playable from the other node at once: it downloads it.
    write_track(&tmp.path().join("song.wav"), 8);
    let bytes = std::fs::read(tmp.path().join("song.wav")).unwrap();
    let song = id_of(&bytes);
    std::fs::copy(tmp.path().join("song.wav"), music.join("song.wav")).unwrap();
    time_until(&addrs, CATALOG_LIMIT, |a| entry(a, &song).is_some());
    let (status, answer) = http(
        addrs[1],
        "POST",
        "/api/play",
        Some(json!({ "track": song })),
    );
    assert_eq!(status, 200, "{answer}");
    let playing = wait_until(Duration::from_secs(15), || {
        addrs.iter().all(|a| {
            let state = http(*a, "GET", "/api/state", None).1;
            state["playback"]["state"] == "playing" && state["playback"]["track"] == song
        }) && entry(addrs[1], &song)
            .is_some_and(|e| e["holders"].as_array().is_some_and(|h| h.len() == 2))
    });
    assert!(
        playing,
        "the new track never played on both nodes: {}",
        http(addrs[1], "GET", "/api/library", None).1
    );
}

#[test]
fn a_file_written_slowly_in_pieces_is_indexed_once_and_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let node = spawn_node(
        tmp.path(),
        &NodeSpec {
            index: 0,
            tracks: &[],
            bootstrap: &[],
            reuse: None,
            extra: &[],
        },
    );
    let music = node.dir.join("music");
    let version = |n: &crate::playback::Node| {
        http(n.http, "GET", "/api/status", None).1["library_version"]
            .as_u64()
            .unwrap()
    };
    let before = version(&node);
    write_track(&tmp.path().join("whole.wav"), 4);
    let bytes = std::fs::read(tmp.path().join("whole.wav")).unwrap();
    let track = id_of(&bytes);

    // Written in 8 pieces over 2 s, the file held open all along.
    let mut file = std::fs::File::create(music.join("slow.wav")).unwrap();
    for piece in bytes.chunks(bytes.len().div_ceil(8)) {
        file.write_all(piece).unwrap();
        file.flush().unwrap();
        std::thread::sleep(Duration::from_millis(250));
    }
    let (_, library) = http(node.http, "GET", "/api/library", None);
    assert_eq!(library, json!([]), "indexed while still being written");
    drop(file);

    let took = time_until(&[node.http], CATALOG_LIMIT, |a| entry(a, &track).is_some());
    assert!(took <= CATALOG_LIMIT, "took {took:?}");
    // Once: one change to the library, the complete file's.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(version(&node), before + 1);
    let (_, library) = http(node.http, "GET", "/api/library", None);
    assert_eq!(library.as_array().unwrap().len(), 1, "{library}");
    assert_eq!(library[0]["track"], track.as_str());
    let added: Vec<serde_json::Value> = node
        .process
        .events()
        .into_iter()
        .filter(|e| e["event"] == "track_added")
        .collect();
    assert_eq!(added.len(), 1, "{added:?}");
}

#[test]
fn bad_files_and_a_removed_music_folder_are_survived_and_scan_asks_the_node() {
    let tmp = tempfile::tempdir().unwrap();
    let node = spawn_node(
        tmp.path(),
        &NodeSpec {
            index: 0,
            tracks: &[("first.wav", 2)],
            bootstrap: &[],
            reuse: None,
            extra: &[],
        },
    );
    let music = node.dir.join("music");
    // Not audio, broken audio, an unreadable file: left out, no crash.
    std::fs::write(music.join("notes.txt"), "not music").unwrap();
    std::fs::write(music.join("noise.mp3"), [0x33u8; 20_000]).unwrap();
    std::fs::write(music.join("locked.flac"), [0u8; 100]).unwrap();
    std::fs::set_permissions(
        music.join("locked.flac"),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    let first = id_of(&std::fs::read(music.join("first.wav")).unwrap());

    // `firefly scan` while the node runs: the node scans and answers.
    let http_arg = node.http.to_string();
    let out = firefly(&["scan", "--http", &http_arg, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["tracks"], 1, "{report}");
    assert_eq!(report["files_seen"], 4, "{report}");
    let skipped: Vec<&str> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    assert!(skipped.contains(&"noise.mp3"), "{report}");
    // A path outside the node's music folder is refused, clearly.
    let out = firefly(&["scan", "--http", &http_arg, arg_str(tmp.path())]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("music folder"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without --http, the database is the node's: the command says so.
    let data = node.dir.join("data");
    let out = firefly(&[
        "scan",
        "--data-dir",
        arg_str(&data),
        arg_str(&music),
        "--json",
    ]);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("give its --http address"), "{stderr}");
    }

    // The whole music folder removed: its tracks leave; restored, they come back.
    std::fs::remove_dir_all(&music).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || entry(node.http, &first)
            .is_none()),
        "the removed folder's track stayed"
    );
    std::fs::create_dir_all(&music).unwrap();
    write_track(&music.join("first.wav"), 2);
    assert!(
        wait_until(Duration::from_secs(10), || entry(node.http, &first)
            .is_some()),
        "the restored folder was not followed: {:?}",
        node.process.lines()
    );
    // Alive and answering throughout.
    assert_eq!(http(node.http, "GET", "/api/status", None).0, 200);
}

fn arg_str(path: &std::path::Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn a_playing_track_whose_file_is_deleted_gives_way_to_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let node = spawn_node(
        tmp.path(),
        &NodeSpec {
            index: 0,
            tracks: &[("a.wav", 20), ("b.wav", 21)],
            bootstrap: &[],
            reuse: None,
            extra: &[],
        },
    );
    let music = node.dir.join("music");
    let a = id_of(&std::fs::read(music.join("a.wav")).unwrap());
    let b = id_of(&std::fs::read(music.join("b.wav")).unwrap());
    let (status, answer) = http(node.http, "POST", "/api/play", Some(json!({ "track": a })));
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = http(
        node.http,
        "POST",
        "/api/queue",
        Some(json!({ "tracks": [b] })),
    );
    assert_eq!(status, 200, "{answer}");
    let playback = || http(node.http, "GET", "/api/state", None).1["playback"].clone();
    assert!(wait_until(Duration::from_secs(10), || {
        let p = playback();
        p["state"] == "playing" && p["track"] == a.as_str()
    }));

    // The file goes while it plays: the session moves on to the next track.
    std::fs::remove_file(music.join("a.wav")).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let p = playback();
            p["state"] == "playing" && p["track"] == b.as_str() && p["queue"] == json!([])
        }),
        "playback after the file went: {}",
        playback()
    );
}
