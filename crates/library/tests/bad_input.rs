//! Bad files in a scanned folder: each is skipped with a reason (or left out
//! silently when it is not named like audio), the scan goes on, nothing
//! panics.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Scratch, copy_fixtures, fixtures};
use rand::{RngCore, SeedableRng};
use std::collections::HashMap;
use std::path::Path;

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).unwrap()
}

/// Scans `dir` and returns the skip reasons by file name, checking the good
/// fixtures `good` were all indexed.
fn scan_skips(s: &Scratch, dir: &Path, good: usize) -> HashMap<String, String> {
    let lib = s.open();
    let report = lib.scan(&[dir.to_path_buf()], &mut ()).unwrap();
    assert_eq!(report.tracks as usize, good, "{:#?}", report.skipped);
    assert_eq!(lib.tracks().unwrap().len(), good);
    report
        .skipped
        .into_iter()
        .map(|s| {
            (
                s.path.file_name().unwrap().to_string_lossy().into_owned(),
                s.reason,
            )
        })
        .collect()
}

#[test]
fn empty_random_and_truncated_files_are_skipped_with_reasons() {
    let s = Scratch::new();
    let dir = s.songs();
    copy_fixtures(&dir, &["tone.mp3", "tone.flac"]);
    let mut expect_skipped = Vec::new();
    for ext in ["mp3", "flac", "ogg", "wav", "m4a"] {
        let empty = format!("empty.{ext}");
        std::fs::write(dir.join(&empty), b"").unwrap();
        expect_skipped.push(empty);
        let random = format!("random.{ext}");
        std::fs::write(dir.join(&random), random_bytes(200_000, ext.len() as u64)).unwrap();
        expect_skipped.push(random);
    }
    for name in [
        "tone.mp3",
        "tone.flac",
        "tone.ogg",
        "reference.wav",
        "tone.m4a",
    ] {
        let bytes = fixture(name);
        let head = format!("head-{name}");
        std::fs::write(dir.join(&head), &bytes[..60]).unwrap();
        expect_skipped.push(head);
    }
    // Cut in the middle: the header promises more than the file holds.
    for name in ["tone.flac", "reference.wav", "tone.m4a", "tone.mp3"] {
        let bytes = fixture(name);
        let half = format!("half-{name}");
        std::fs::write(dir.join(&half), &bytes[..bytes.len() / 2]).unwrap();
        expect_skipped.push(half);
    }
    std::fs::write(dir.join("notes.txt"), b"shopping list").unwrap();
    std::fs::write(dir.join("cover.jpg"), random_bytes(5000, 9)).unwrap();

    let skips = scan_skips(&s, &dir, 2);
    for name in &expect_skipped {
        let reason = skips
            .get(name)
            .unwrap_or_else(|| panic!("{name} not skipped: {skips:#?}"));
        assert!(!reason.is_empty());
    }
    assert_eq!(skips["empty.mp3"], "empty file");
    assert!(
        skips["half-reference.wav"].starts_with("truncated"),
        "{skips:#?}"
    );
    assert!(
        !skips.contains_key("notes.txt"),
        "non-audio is left out silently"
    );
    assert!(!skips.contains_key("cover.jpg"));
    assert_eq!(skips.len(), expect_skipped.len(), "{skips:#?}");
}

#[test]
fn files_whose_header_lies_are_skipped() {
    let s = Scratch::new();
    let dir = s.songs();
    copy_fixtures(&dir, &["reference.wav"]);
    let wav = fixture("reference.wav");
    // Find the chunks of the RIFF file to corrupt them.
    let fmt_at = wav.windows(4).position(|w| w == b"fmt ").unwrap();
    let data_at = wav.windows(4).position(|w| w == b"data").unwrap();

    let mut zero_channels = wav.clone();
    zero_channels[fmt_at + 10..fmt_at + 12].copy_from_slice(&0u16.to_le_bytes());
    std::fs::write(dir.join("zero-channels.wav"), &zero_channels).unwrap();

    let mut zero_rate = wav.clone();
    zero_rate[fmt_at + 12..fmt_at + 16].copy_from_slice(&0u32.to_le_bytes());
    std::fs::write(dir.join("zero-rate.wav"), &zero_rate).unwrap();

    let mut huge_data = wav.clone();
    huge_data[data_at + 4..data_at + 8].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
    std::fs::write(dir.join("huge-data.wav"), &huge_data).unwrap();

    let mut bad_format = wav.clone();
    bad_format[fmt_at + 8..fmt_at + 10].copy_from_slice(&0x7777u16.to_le_bytes());
    std::fs::write(dir.join("unknown-codec.wav"), &bad_format).unwrap();

    // FLAC whose STREAMINFO block is garbage.
    let mut flac = fixture("tone.flac");
    for b in &mut flac[8..42] {
        *b = 0xff;
    }
    std::fs::write(dir.join("bad-streaminfo.flac"), &flac).unwrap();

    // An MP3 extension on an Ogg file is fine: the content decides.
    std::fs::write(dir.join("really-ogg.mp3"), fixture("tone.ogg")).unwrap();

    let lib = s.open();
    let report = lib.scan(std::slice::from_ref(&dir), &mut ()).unwrap();
    let skipped: Vec<String> = report
        .skipped
        .iter()
        .map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for name in [
        "zero-channels.wav",
        "zero-rate.wav",
        "huge-data.wav",
        "unknown-codec.wav",
        "bad-streaminfo.flac",
    ] {
        assert!(
            skipped.iter().any(|s| s == name),
            "{name}: {:#?}",
            report.skipped
        );
    }
    let tracks = lib.tracks().unwrap();
    let ogg = tracks
        .iter()
        .find(|t| t.paths[0].ends_with("really-ogg.mp3"))
        .expect("content decides, not the extension");
    assert_eq!(ogg.manifest.meta.codec, "vorbis");
    assert_eq!(ogg.manifest.meta.extension, "ogg");
    assert_eq!(report.tracks, 2, "{:#?}", report.skipped);
}

#[test]
fn symlink_loops_and_unreadable_entries_do_not_stop_the_scan() {
    let s = Scratch::new();
    let dir = s.songs();
    copy_fixtures(&dir.join("album"), &["tone.ogg"]);
    std::os::unix::fs::symlink(&dir, dir.join("album/loop")).unwrap();
    std::os::unix::fs::symlink(dir.join("nowhere"), dir.join("dangling.mp3")).unwrap();
    let locked = dir.join("locked");
    copy_fixtures(&locked, &["tone.flac"]);
    let locked_file = dir.join("locked.mp3");
    std::fs::copy(fixtures().join("tone.mp3"), &locked_file).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::set_permissions(&locked_file, std::fs::Permissions::from_mode(0o000)).unwrap();
    // Root reads everything regardless of permissions.
    let can_lock = std::fs::read_dir(&locked).is_err();

    let lib = s.open();
    let report = lib.scan(std::slice::from_ref(&dir), &mut ()).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    let reasons: Vec<(String, String)> = report
        .skipped
        .iter()
        .map(|s| (s.path.to_string_lossy().into_owned(), s.reason.clone()))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|(p, r)| p.ends_with("loop") && r == "symlink loop"),
        "{reasons:#?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(p, r)| p.ends_with("dangling.mp3") && r.starts_with("unreadable")),
        "{reasons:#?}"
    );
    if can_lock {
        assert!(
            reasons.iter().any(|(p, _)| p.ends_with("locked")),
            "{reasons:#?}"
        );
        assert!(
            reasons.iter().any(|(p, _)| p.ends_with("locked.mp3")),
            "{reasons:#?}"
        );
        assert_eq!(report.tracks, 1);
    } else {
        assert_eq!(report.tracks, 3);
    }
}

#[test]
fn a_huge_tag_value_is_cut_not_kept_whole() {
    let s = Scratch::new();
    let dir = s.songs();
    std::fs::create_dir_all(&dir).unwrap();
    let title = "t".repeat(100_000);
    let mut bytes = common::id3_tag(&title, "A", "B", 1, 0);
    bytes.extend(common::long_mp3_stream(300_000, 3));
    std::fs::write(dir.join("big-tag.mp3"), &bytes).unwrap();
    let lib = s.open();
    lib.scan(&[dir], &mut ()).unwrap();
    let m = lib.manifests().unwrap().remove(0);
    assert!(m.meta.title.len() <= firefly_library::MAX_TEXT_LEN);
    assert_eq!(m.validate(), Ok(()));
}

#[test]
fn the_content_decides_for_files_without_an_extension_and_others_are_left_out() {
    let s = Scratch::new();
    let dir = s.songs();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("no-extension"), fixture("tone.flac")).unwrap();
    std::fs::write(dir.join("audio.dat"), fixture("tone.ogg")).unwrap();
    std::fs::write(dir.join("blob"), random_bytes(300_000, 77)).unwrap();
    let lib = s.open();
    let report = lib.scan(std::slice::from_ref(&dir), &mut ()).unwrap();
    assert_eq!(report.files_seen, 3);
    assert!(report.skipped.is_empty(), "{:#?}", report.skipped);
    let tracks = lib.tracks().unwrap();
    assert_eq!(tracks.len(), 1);
    assert!(tracks[0].paths[0].ends_with("no-extension"));
    assert_eq!(tracks[0].manifest.meta.extension, "flac");
}
