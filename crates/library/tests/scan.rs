//! Scanning real audio files: metadata, chunking, incremental rescans,
//! serving chunks, versions.
#![allow(clippy::unwrap_used)]

mod common;

use common::{FIXTURES, Scratch, copy_fixtures};
use firefly_library::{
    Changes, ChunkId, Library, Manifest, OpenError, ReadChunkError, ScanReport, TrackEntry,
};
use std::collections::HashMap;
use std::path::Path;

fn by_file(tracks: &[TrackEntry]) -> HashMap<String, Manifest> {
    tracks
        .iter()
        .flat_map(|t| {
            t.paths.iter().map(move |p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    t.manifest.clone(),
                )
            })
        })
        .collect()
}

fn scan(lib: &Library, dir: &Path) -> ScanReport {
    lib.scan(&[dir.to_path_buf()], &mut ()).unwrap()
}

#[test]
fn fixtures_in_all_five_formats_have_their_tags_and_durations() {
    let s = Scratch::new();
    copy_fixtures(&s.songs(), &FIXTURES);
    let lib = s.open();
    let report = scan(&lib, &s.songs());
    assert_eq!(report.files_seen, 6);
    assert_eq!(report.tracks, 6);
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let total: u64 = FIXTURES
        .iter()
        .map(|f| std::fs::metadata(s.songs().join(f)).unwrap().len())
        .sum();
    assert_eq!(report.bytes, total);

    let tracks = by_file(&lib.tracks().unwrap());
    let expect = [
        (
            "tone.mp3",
            "Signal Fire",
            Some("The Lanterns"),
            Some("Night Meadow"),
            Some(3),
            "mp3",
            44100,
            2,
        ),
        (
            "tone.flac",
            "Glow",
            Some("The Lanterns"),
            Some("Night Meadow"),
            Some(4),
            "flac",
            44100,
            2,
        ),
        (
            "tone.ogg",
            "Dusk Chorus",
            Some("Marsh Band"),
            Some("Reeds"),
            Some(1),
            "vorbis",
            44100,
            2,
        ),
        (
            "tone.m4a",
            "Ember",
            Some("Marsh Band"),
            Some("Reeds"),
            Some(2),
            "aac",
            44100,
            2,
        ),
        (
            "reference.wav",
            "reference",
            None,
            None,
            None,
            "pcm",
            44100,
            2,
        ),
        (
            "untagged-mono-22k.wav",
            "untagged-mono-22k",
            None,
            None,
            None,
            "pcm",
            22050,
            1,
        ),
    ];
    for (file, title, artist, album, track, codec, rate, channels) in expect {
        let m = &tracks[file];
        assert_eq!(m.meta.title, title, "{file}");
        assert_eq!(m.meta.artist.as_deref(), artist, "{file}");
        assert_eq!(m.meta.album.as_deref(), album, "{file}");
        assert_eq!(m.meta.track, track, "{file}");
        assert_eq!(m.meta.codec, codec, "{file}");
        assert_eq!(m.meta.sample_rate, rate, "{file}");
        assert_eq!(m.meta.channels, channels, "{file}");
        let ms = m.meta.duration_ms.unwrap();
        assert!((1990..=2060).contains(&ms), "{file}: {ms} ms");
        // The manifest describes the file exactly.
        let bytes = std::fs::read(s.songs().join(file)).unwrap();
        assert_eq!(m.track, firefly_library::TrackId::of(&bytes));
        assert_eq!(m.size, bytes.len() as u64);
        assert_eq!(m.validate(), Ok(()));
        for (offset, chunk) in m.offsets() {
            let at = offset as usize;
            assert_eq!(chunk.id, ChunkId::of(&bytes[at..at + chunk.len as usize]));
        }
    }
}

#[test]
fn rescan_reads_only_changed_files_and_drops_deleted_ones() {
    let s = Scratch::new();
    copy_fixtures(
        &s.songs(),
        &["tone.mp3", "tone.flac", "tone.ogg", "reference.wav"],
    );
    let lib = s.open();
    let first = scan(&lib, &s.songs());
    assert_eq!((first.files_read, first.tracks), (4, 4));
    let v1 = lib.version().unwrap();
    assert_eq!(v1, 4);

    let again = scan(&lib, &s.songs());
    assert_eq!(
        (again.files_read, again.files_unchanged, again.tracks),
        (0, 4, 4)
    );
    assert_eq!(again.chunks, first.chunks);
    assert_eq!(again.unique_chunks, first.unique_chunks);
    assert_eq!(lib.version().unwrap(), v1, "nothing changed");

    // Change one file (same size, new bytes and mtime), delete another.
    let wav = s.songs().join("reference.wav");
    let old_wav = by_file(&lib.tracks().unwrap())["reference.wav"].clone();
    let mut bytes = std::fs::read(&wav).unwrap();
    let n = bytes.len();
    bytes[n - 1000..].fill(0x11);
    std::fs::write(&wav, &bytes).unwrap();
    std::fs::remove_file(s.songs().join("tone.ogg")).unwrap();
    let third = scan(&lib, &s.songs());
    assert_eq!(third.files_read, 1);
    assert_eq!(third.files_unchanged, 2);
    assert_eq!(third.files_removed, 1);
    assert_eq!(third.tracks, 3);
    let tracks = by_file(&lib.tracks().unwrap());
    assert_eq!(tracks.len(), 3);
    assert!(!tracks.contains_key("tone.ogg"));
    assert_eq!(
        tracks["reference.wav"].track,
        firefly_library::TrackId::of(&bytes)
    );
    assert!(lib.manifest(old_wav.track).unwrap().is_none());
    // The unchanged chunks of the WAV are still served from it.
    let first_chunk = tracks["reference.wav"].chunks[0].id;
    assert_eq!(first_chunk, old_wav.chunks[0].id);
    assert!(lib.read_chunk(first_chunk).is_ok());
    // old wav removed, new wav added, ogg removed
    assert_eq!(lib.version().unwrap(), v1 + 3);
}

#[test]
fn identical_files_are_one_track_with_several_locations() {
    let s = Scratch::new();
    copy_fixtures(&s.songs().join("a"), &["tone.flac"]);
    copy_fixtures(&s.songs().join("b"), &["tone.flac"]);
    let lib = s.open();
    let report = scan(&lib, &s.songs());
    assert_eq!(report.tracks, 2, "two files hold a track");
    assert_eq!(report.unique_chunks * 2, report.chunks);
    let tracks = lib.tracks().unwrap();
    assert_eq!(tracks.len(), 1);
    assert_eq!(tracks[0].paths.len(), 2);
    let chunk = tracks[0].manifest.chunks[0].id;
    // Break one copy: the chunk is still served from the other.
    std::fs::write(s.songs().join("a/tone.flac"), b"gone").unwrap();
    assert_eq!(ChunkId::of(&lib.read_chunk(chunk).unwrap()), chunk);
    assert_eq!(ChunkId::of(&lib.read_chunk(chunk).unwrap()), chunk);
    std::fs::remove_file(s.songs().join("a/tone.flac")).unwrap();
    scan(&lib, &s.songs());
    let tracks = lib.tracks().unwrap();
    assert_eq!(tracks.len(), 1);
    assert_eq!(tracks[0].paths.len(), 1);
    assert!(lib.has_chunk(chunk).unwrap());
}

#[test]
fn read_chunk_refuses_bytes_changed_underneath_and_drops_the_location() {
    let s = Scratch::new();
    copy_fixtures(&s.songs(), &["reference.wav"]);
    let lib = s.open();
    scan(&lib, &s.songs());
    let m = lib.manifests().unwrap().remove(0);
    assert!(m.chunks.len() >= 2);
    let (offset, chunk) = m.offsets().nth(1).map(|(o, c)| (o, *c)).unwrap();
    let path = s.songs().join("reference.wav");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = offset as usize;
    assert_eq!(
        lib.read_chunk(chunk.id).unwrap(),
        &bytes[at..at + chunk.len as usize]
    );

    // Same size, different bytes: the stored location now lies.
    bytes[at + 10] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        lib.read_chunk(chunk.id),
        Err(ReadChunkError::Unavailable(id)) if id == chunk.id
    ));
    assert!(
        !lib.has_chunk(chunk.id).unwrap(),
        "the location was dropped"
    );
    assert!(matches!(
        lib.read_chunk(chunk.id),
        Err(ReadChunkError::NotFound(_))
    ));
    // The next scan re-reads the file even if its mtime did not move.
    let report = scan(&lib, &s.songs());
    assert_eq!(report.files_read, 1);
    let m2 = lib.manifests().unwrap().remove(0);
    assert_eq!(m2.track, firefly_library::TrackId::of(&bytes));
    for c in &m2.chunks {
        assert_eq!(ChunkId::of(&lib.read_chunk(c.id).unwrap()), c.id);
    }
}

#[test]
fn an_mp3_whose_id3_tag_grew_shares_most_chunks() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.songs()).unwrap();
    let stream = common::long_mp3_stream(3 * 1024 * 1024, 7);
    let mut original = common::id3_tag("Long Song", "The Lanterns", "Night Meadow", 5, 0);
    original.extend_from_slice(&stream);
    let mut grown = common::id3_tag("Long Song", "The Lanterns", "Night Meadow", 5, 6000);
    assert!(
        grown.len()
            > common::id3_tag("Long Song", "The Lanterns", "Night Meadow", 5, 0).len() + 5000
    );
    grown.extend_from_slice(&stream);
    std::fs::write(s.songs().join("original.mp3"), &original).unwrap();
    std::fs::write(s.songs().join("grown.mp3"), &grown).unwrap();

    let lib = s.open();
    let report = scan(&lib, &s.songs());
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let tracks = by_file(&lib.tracks().unwrap());
    let (a, b) = (&tracks["original.mp3"], &tracks["grown.mp3"]);
    assert_eq!(a.meta.title, "Long Song");
    assert_eq!(b.meta.title, "Long Song");
    assert_eq!(b.meta.codec, "mp3");
    let shared = firefly_library::shared_bytes(&b.chunks, &a.chunks);
    assert!(
        shared * 10 >= a.size * 9,
        "only {shared} of {} bytes shared",
        a.size
    );
    // Shared chunks are one entry each with two locations.
    assert!(report.unique_chunks < report.chunks);
}

#[test]
fn versions_and_deltas_follow_changes() {
    let s = Scratch::new();
    copy_fixtures(&s.songs(), &["tone.mp3", "tone.flac"]);
    let lib = s.open();
    assert_eq!(lib.version().unwrap(), 0);
    scan(&lib, &s.songs());
    let v = lib.version().unwrap();
    assert_eq!(v, 2);
    let Changes::Delta {
        from,
        to,
        added,
        removed,
    } = lib.changes_since(0).unwrap()
    else {
        panic!("a delta from 0")
    };
    assert_eq!((from, to, added.len(), removed.len()), (0, 2, 2, 0));
    assert_eq!(
        lib.changes_since(v).unwrap(),
        Changes::Delta {
            from: v,
            to: v,
            added: vec![],
            removed: vec![]
        }
    );

    // Add the ogg, then remove it again, and remove the flac.
    let flac = lib
        .tracks()
        .unwrap()
        .into_iter()
        .find(|t| t.manifest.meta.codec == "flac")
        .unwrap();
    copy_fixtures(&s.songs(), &["tone.ogg"]);
    scan(&lib, &s.songs());
    std::fs::remove_file(s.songs().join("tone.ogg")).unwrap();
    std::fs::remove_file(s.songs().join("tone.flac")).unwrap();
    scan(&lib, &s.songs());
    assert_eq!(lib.version().unwrap(), v + 3);
    let Changes::Delta { added, removed, .. } = lib.changes_since(v).unwrap() else {
        panic!("a delta")
    };
    assert!(added.is_empty(), "ogg came and went: compacted away");
    assert_eq!(removed, vec![flac.manifest.track]);

    // A peer "ahead" of us gets the full list.
    let Changes::Full { version, manifests } = lib.changes_since(v + 100).unwrap() else {
        panic!("full list")
    };
    assert_eq!(version, v + 3);
    assert_eq!(manifests.len(), 1);
}

#[test]
fn a_database_held_elsewhere_is_one_clear_error() {
    let s = Scratch::new();
    let lib = s.open();
    let err = Library::open_in(s.data()).unwrap_err();
    assert!(matches!(err, OpenError::InUse { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("in use by another firefly process")
    );
    drop(lib);
    assert!(Library::open_in(s.data()).is_ok());
}

#[test]
fn a_data_dir_that_cannot_be_created_is_an_error() {
    let s = Scratch::new();
    let file = s.tmp.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let err = Library::open_in(file.join("data")).unwrap_err();
    assert!(matches!(err, OpenError::CreateDir { .. }), "{err:?}");
}

#[test]
fn settings_round_trip_and_survive_reopening() {
    let s = Scratch::new();
    let lib = s.open();
    assert_eq!(lib.get_setting("node-key").unwrap(), None);
    lib.put_setting("node-key", &[1, 2, 3]).unwrap();
    lib.put_setting("name", b"kitchen").unwrap();
    drop(lib);
    let lib = s.open();
    assert_eq!(lib.get_setting("node-key").unwrap(), Some(vec![1, 2, 3]));
    assert_eq!(lib.get_setting("name").unwrap(), Some(b"kitchen".to_vec()));
}

#[test]
fn library_handle_is_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<Library>();
    let s = Scratch::new();
    copy_fixtures(&s.songs(), &["tone.flac"]);
    let lib = s.open();
    scan(&lib, &s.songs());
    let chunk = lib.manifests().unwrap()[0].chunks[0].id;
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let lib = lib.clone();
            std::thread::spawn(move || ChunkId::of(&lib.read_chunk(chunk).unwrap()))
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), chunk);
    }
}

#[test]
fn a_location_dropped_while_a_file_was_away_comes_back_on_rescan() {
    let s = Scratch::new();
    copy_fixtures(&s.songs(), &["tone.flac"]);
    let lib = s.open();
    scan(&lib, &s.songs());
    let chunk = lib.manifests().unwrap()[0].chunks[0].id;
    let path = s.songs().join("tone.flac");
    let away = s.tmp.path().join("away.flac");
    std::fs::rename(&path, &away).unwrap();
    assert!(lib.read_chunk(chunk).is_err());
    assert!(!lib.has_chunk(chunk).unwrap());
    std::fs::rename(&away, &path).unwrap();
    let report = scan(&lib, &s.songs());
    assert_eq!(
        report.files_read, 1,
        "the file is re-read after the failure"
    );
    assert!(lib.has_chunk(chunk).unwrap());
    assert_eq!(ChunkId::of(&lib.read_chunk(chunk).unwrap()), chunk);
}

#[test]
fn scanning_one_folder_leaves_a_sibling_with_a_longer_name_alone() {
    let s = Scratch::new();
    copy_fixtures(&s.songs().join("a"), &["tone.mp3"]);
    copy_fixtures(&s.songs().join("ab"), &["tone.flac"]);
    let lib = s.open();
    scan(&lib, &s.songs().join("ab"));
    let report = scan(&lib, &s.songs().join("a"));
    assert_eq!(report.files_removed, 0);
    assert_eq!(lib.tracks().unwrap().len(), 2);
    // Deleting under "a" removes only "a"'s file.
    std::fs::remove_file(s.songs().join("a/tone.mp3")).unwrap();
    let report = scan(&lib, &s.songs().join("a"));
    assert_eq!(report.files_removed, 1);
    let left = lib.tracks().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].manifest.meta.codec, "flac");
}

#[test]
fn a_file_name_that_is_not_utf8_is_indexed_and_served() {
    use std::os::unix::ffi::OsStrExt;
    let s = Scratch::new();
    std::fs::create_dir_all(s.songs()).unwrap();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9 \xff.ogg");
    std::fs::copy(common::fixtures().join("tone.ogg"), s.songs().join(name)).unwrap();
    let lib = s.open();
    let report = scan(&lib, &s.songs());
    assert_eq!(report.tracks, 1);
    let tracks = lib.tracks().unwrap();
    assert_eq!(tracks[0].paths[0].file_name().unwrap(), name);
    let chunk = tracks[0].manifest.chunks[0].id;
    assert_eq!(ChunkId::of(&lib.read_chunk(chunk).unwrap()), chunk);
    assert_eq!(scan(&lib, &s.songs()).files_unchanged, 1);
}

#[test]
fn overlapping_roots_count_each_file_once() {
    let s = Scratch::new();
    copy_fixtures(&s.songs().join("inner"), &["tone.mp3", "tone.ogg"]);
    let lib = s.open();
    let report = lib
        .scan(&[s.songs(), s.songs().join("inner")], &mut ())
        .unwrap();
    assert_eq!(
        (report.files_seen, report.tracks, report.files_read),
        (2, 2, 2)
    );
    assert_eq!(lib.tracks().unwrap().len(), 2);
}

#[test]
fn scan_paths_follows_files_and_folders_added_changed_and_removed() {
    let s = Scratch::new();
    let songs = s.songs();
    copy_fixtures(&songs, &["tone.flac", "tone.ogg"]);
    let lib = s.open();
    scan(&lib, &songs);
    let songs = songs.canonicalize().unwrap();
    let version = lib.version().unwrap();

    // A new file: only it is read.
    copy_fixtures(&songs, &["tone.mp3"]);
    let report = lib.scan_paths(&[songs.join("tone.mp3")], &mut ()).unwrap();
    assert_eq!(
        (report.files_seen, report.files_read, report.tracks),
        (1, 1, 1)
    );
    assert_eq!(lib.tracks().unwrap().len(), 3);

    // A removed file leaves; the others stay.
    let ogg = lib.tracks().unwrap();
    let ogg = by_file(&ogg)["tone.ogg"].track;
    std::fs::remove_file(songs.join("tone.ogg")).unwrap();
    let report = lib.scan_paths(&[songs.join("tone.ogg")], &mut ()).unwrap();
    assert_eq!(report.files_removed, 1);
    assert_eq!(lib.tracks().unwrap().len(), 2);
    match lib.changes_since(version).unwrap() {
        Changes::Delta { added, removed, .. } => {
            assert_eq!(added.len(), 1);
            assert_eq!(removed, vec![ogg]);
        }
        full => panic!("expected a delta, got {full:?}"),
    }

    // A folder that appears is walked; when it goes, its tracks go.
    let album = songs.join("album");
    copy_fixtures(&album, &["reference.wav", "tone.m4a"]);
    let report = lib
        .scan_paths(std::slice::from_ref(&album), &mut ())
        .unwrap();
    assert_eq!(report.tracks, 2);
    assert_eq!(lib.tracks().unwrap().len(), 4);
    std::fs::remove_dir_all(&album).unwrap();
    let report = lib.scan_paths(&[album], &mut ()).unwrap();
    assert_eq!(report.files_removed, 2);
    assert_eq!(lib.tracks().unwrap().len(), 2);

    // A changed file is read again; an unchanged one is not.
    let report = lib.scan_paths(&[songs.join("tone.flac")], &mut ()).unwrap();
    assert_eq!((report.files_read, report.files_unchanged), (0, 1));
}

#[test]
fn an_embedded_cover_is_kept_once_and_leaves_with_its_last_track() {
    let s = Scratch::new();
    let songs = s.songs();
    std::fs::create_dir_all(&songs).unwrap();
    let png = common::tiny_png([200, 120, 20]);
    let one = common::tagged_mp3("One", "Night Meadow", Some(&png));
    let two = common::tagged_mp3("Two", "Night Meadow", Some(&png));
    // Markup declared as a PNG is not a picture.
    let fake = common::tagged_mp3("Three", "Night Meadow", Some(b"<svg onload=alert(1)>"));
    std::fs::write(songs.join("one.mp3"), &one).unwrap();
    std::fs::write(songs.join("two.mp3"), &two).unwrap();
    std::fs::write(songs.join("three.mp3"), &fake).unwrap();
    let lib = s.open();
    let report = scan(&lib, &songs);
    assert_eq!(report.tracks, 3, "{:?}", report.skipped);
    let tracks = by_file(&lib.tracks().unwrap());
    let (one, two, three) = (
        tracks["one.mp3"].track,
        tracks["two.mp3"].track,
        tracks["three.mp3"].track,
    );
    assert_eq!(
        tracks["one.mp3"].meta.album.as_deref(),
        Some("Night Meadow")
    );
    let cover = lib.cover(one).unwrap().expect("one.mp3 has a cover");
    assert_eq!(cover.media_type, "image/png");
    assert_eq!(cover.bytes, png);
    assert_eq!(lib.cover(two).unwrap(), Some(cover.clone()));
    assert_eq!(lib.cover(three).unwrap(), None);
    // The metadata names the picture by its hash, so nodes without the file
    // can ask for it; the library finds it by that id.
    let id = firefly_library::CoverId::of(&png);
    assert_eq!(tracks["one.mp3"].meta.cover, Some(id));
    assert_eq!(tracks["three.mp3"].meta.cover, None);
    let manifest = lib.manifest(one).unwrap().expect("one.mp3 has a manifest");
    assert_eq!(manifest.meta.cover, Some(id));
    assert_eq!(lib.cover_by_id(id).unwrap(), Some(cover.clone()));
    let with: std::collections::HashSet<_> = [one, two].into_iter().collect();
    assert_eq!(lib.tracks_with_cover().unwrap(), with);

    // The picture stays while a track shows it, and goes with the last one.
    let songs = songs.canonicalize().unwrap();
    std::fs::remove_file(songs.join("one.mp3")).unwrap();
    lib.scan_paths(&[songs.join("one.mp3")], &mut ()).unwrap();
    assert_eq!(lib.cover(one).unwrap(), None);
    assert_eq!(lib.cover(two).unwrap(), Some(cover));
    std::fs::remove_file(songs.join("two.mp3")).unwrap();
    lib.scan_paths(&[songs.join("two.mp3")], &mut ()).unwrap();
    assert!(lib.tracks_with_cover().unwrap().is_empty());
    assert_eq!(lib.cover_by_id(id).unwrap(), None);
}
