//! `firefly scan` and `firefly library`.

use crate::util::{arg, copy_fixtures, firefly, firefly_json};

const ALL: [&str; 6] = [
    "tone.mp3",
    "tone.flac",
    "tone.ogg",
    "tone.m4a",
    "reference.wav",
    "untagged-mono-22k.wav",
];

#[test]
fn scan_json_counts_tracks_and_lists_bad_files_with_reasons() {
    let tmp = tempfile::tempdir().unwrap();
    let music = tmp.path().join("music");
    let data = tmp.path().join("data");
    copy_fixtures(&music, &ALL);
    std::fs::write(music.join("empty.mp3"), b"").unwrap();
    std::fs::write(music.join("noise.flac"), [0x5au8; 70_000].map(|b| b ^ 0x33)).unwrap();
    std::fs::write(music.join("notes.txt"), b"not music").unwrap();

    let report = firefly_json(&["scan", arg(&music), "--data-dir", arg(&data), "--json"]);
    assert_eq!(report["files_seen"], 9);
    assert_eq!(report["tracks"], 6);
    let skipped = report["skipped"].as_array().unwrap();
    let reasons: Vec<(String, String)> = skipped
        .iter()
        .map(|s| {
            (
                s["path"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_owned(),
                s["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons.contains(&("empty.mp3".to_owned(), "empty file".to_owned())),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(p, r)| p == "noise.flac" && !r.is_empty()),
        "{reasons:?}"
    );
    let fixture_bytes: u64 = ALL
        .iter()
        .map(|f| std::fs::metadata(music.join(f)).unwrap().len())
        .sum();
    assert_eq!(report["bytes"], fixture_bytes);
    let chunks = report["chunks"].as_u64().unwrap();
    let unique = report["unique_chunks"].as_u64().unwrap();
    assert!(chunks >= 6 && unique <= chunks && unique >= 6);
    assert!(report["seconds"].as_f64().unwrap() >= 0.0);

    // A second scan reads nothing and finds the same.
    let again = firefly_json(&["scan", arg(&music), "--data-dir", arg(&data), "--json"]);
    assert_eq!(again["tracks"], 6);
    assert_eq!(again["files_read"], 0);
    assert_eq!(again["chunks"], chunks);
}

#[test]
fn library_json_lists_every_track_with_its_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let music = tmp.path().join("music");
    let data = tmp.path().join("data");
    copy_fixtures(&music, &ALL);
    let empty = firefly_json(&["library", "--data-dir", arg(&data), "--json"]);
    assert_eq!(empty, serde_json::json!([]));
    firefly_json(&["scan", arg(&music), "--data-dir", arg(&data), "--json"]);
    let list = firefly_json(&["library", "--data-dir", arg(&data), "--json"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 6);
    let ember = list.iter().find(|t| t["title"] == "Ember").unwrap();
    assert_eq!(ember["artist"], "Marsh Band");
    assert_eq!(ember["album"], "Reeds");
    assert_eq!(ember["track"], 2);
    assert_eq!(ember["codec"], "aac");
    assert_eq!(ember["sample_rate"], 44100);
    assert_eq!(ember["channels"], 2);
    let bytes = std::fs::read(music.join("tone.m4a")).unwrap();
    assert_eq!(ember["bytes"], bytes.len());
    assert_eq!(ember["id"], blake3::hash(&bytes).to_hex().as_str());
    assert!(ember["chunks"].as_u64().unwrap() >= 1);
    assert!(ember["path"].as_str().unwrap().ends_with("tone.m4a"));
    let ms = ember["duration_ms"].as_u64().unwrap();
    assert!((1990..=2060).contains(&ms));
    let untagged = list.iter().find(|t| t["sample_rate"] == 22050).unwrap();
    assert_eq!(untagged["title"], "untagged-mono-22k");
    assert_eq!(untagged["artist"], serde_json::Value::Null);

    let table = firefly(&["library", "--data-dir", arg(&data)]);
    assert!(table.status.success());
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.contains("The Lanterns - Signal Fire"), "{text}");
    assert!(text.contains("6 tracks"), "{text}");
}

#[test]
fn a_data_dir_that_cannot_be_created_is_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let out = firefly(&["library", "--data-dir", arg(&file.join("data"))]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("firefly: cannot create"), "{err}");
}

#[test]
fn a_database_held_by_another_process_is_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let held = firefly_library::Library::open_in(&data).unwrap();
    let out = firefly(&["library", "--data-dir", arg(&data)]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("in use by another firefly process"), "{err}");
    drop(held);
    assert!(
        firefly(&["library", "--data-dir", arg(&data)])
            .status
            .success()
    );
}

#[test]
fn scanning_a_missing_folder_is_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = firefly(&[
        "scan",
        arg(&tmp.path().join("nope")),
        "--data-dir",
        arg(&data),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot scan") && err.contains("nope"), "{err}");
}

#[test]
fn bench_scan_reports_throughput_against_raw_hashing() {
    let tmp = tempfile::tempdir().unwrap();
    let music = tmp.path().join("music");
    copy_fixtures(&music, &ALL);
    let figures = firefly_json(&["bench", "scan", arg(&music), "--json", "--runs", "1"]);
    assert_eq!(figures["files"], 6);
    assert_eq!(figures["tracks"], 6);
    for key in [
        "raw_blake3_mb_s",
        "first_scan_mb_s",
        "scan_to_raw_ratio",
        "rescan_files_s",
    ] {
        assert!(figures[key].as_f64().unwrap() > 0.0, "{key}: {figures}");
    }
}
