//! Downloading tracks chunk by chunk: order, verification, crash safety,
//! hostile names.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Scratch, copy_fixtures};
use firefly_library::{
    Accepted, ChunkId, DownloadError, DownloadStatus, Library, Manifest, TrackId,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A source library holding one long MP3 (about 3 MB, dozens of chunks).
fn source_with_long_mp3(s: &Scratch) -> (Library, Manifest, Vec<u8>) {
    std::fs::create_dir_all(s.songs()).unwrap();
    let mut bytes = common::id3_tag("Long Song", "The Lanterns", "Night Meadow", 5, 0);
    bytes.extend(common::long_mp3_stream(3 * 1024 * 1024, 11));
    std::fs::write(s.songs().join("long.mp3"), &bytes).unwrap();
    let lib = s.open();
    lib.scan(&[s.songs()], &mut ()).unwrap();
    let manifest = lib.manifests().unwrap().remove(0);
    assert!(manifest.chunks.len() > 20);
    (lib, manifest, bytes)
}

fn other_node(s: &Scratch) -> Library {
    Library::open_in(s.tmp.path().join("node-b")).unwrap()
}

fn feed(src: &Library, dst: &Library, track: TrackId, chunks: &[ChunkId]) -> Option<PathBuf> {
    let mut done = None;
    for &c in chunks {
        let bytes = src.read_chunk(c).unwrap();
        if let Accepted::Completed(path) = dst.accept_chunk(track, c, &bytes).unwrap() {
            done = Some(path);
        }
    }
    done
}

#[test]
fn a_track_assembles_from_chunks_in_any_order() {
    let s = Scratch::new();
    let (src, manifest, bytes) = source_with_long_mp3(&s);
    let dst = other_node(&s);
    let status = dst.start_download(&manifest).unwrap();
    let distinct: HashSet<ChunkId> = manifest.chunks.iter().map(|c| c.id).collect();
    assert_eq!(
        status,
        DownloadStatus::Pending {
            missing: distinct.len()
        }
    );
    let mut missing = dst.missing_chunks(manifest.track).unwrap();
    assert_eq!(missing.len(), distinct.len());
    missing.reverse();
    let (last, rest) = missing.split_last().unwrap();
    assert_eq!(feed(&src, &dst, manifest.track, rest), None);
    assert_eq!(dst.missing_chunks(manifest.track).unwrap(), vec![*last]);
    let path = feed(&src, &dst, manifest.track, &[*last]).unwrap();

    assert_eq!(path.parent().unwrap(), dst.music_dir());
    assert_eq!(
        path.file_name().unwrap().to_str().unwrap(),
        "The Lanterns - Long Song.mp3"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let got = dst.manifest(manifest.track).unwrap().unwrap();
    assert_eq!(got.chunks, manifest.chunks);
    assert_eq!(got.meta.title, "Long Song");
    for c in &manifest.chunks {
        assert!(dst.has_chunk(c.id).unwrap());
    }
    assert_eq!(dst.version().unwrap(), 1);
    assert!(dst.downloads().unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(dst.data_dir().join("staging"))
            .unwrap()
            .count(),
        0
    );
    assert!(dst.missing_chunks(manifest.track).unwrap().is_empty());
    assert_eq!(
        dst.start_download(&manifest).unwrap(),
        DownloadStatus::Have(vec![path])
    );
}

#[test]
fn a_chunk_with_wrong_bytes_is_refused() {
    let s = Scratch::new();
    let (src, manifest, _) = source_with_long_mp3(&s);
    let dst = other_node(&s);
    dst.start_download(&manifest).unwrap();
    let before = dst.missing_chunks(manifest.track).unwrap();
    let chunk = manifest.chunks[3].id;
    let mut bytes = src.read_chunk(chunk).unwrap();
    bytes[100] ^= 1;
    assert!(matches!(
        dst.accept_chunk(manifest.track, chunk, &bytes),
        Err(DownloadError::WrongBytes(id)) if id == chunk
    ));
    bytes.pop();
    assert!(matches!(
        dst.accept_chunk(manifest.track, chunk, &bytes),
        Err(DownloadError::WrongBytes(_))
    ));
    let stranger = ChunkId::of(b"not in this track");
    assert!(matches!(
        dst.accept_chunk(manifest.track, stranger, b"not in this track"),
        Err(DownloadError::NotInManifest { .. })
    ));
    assert!(matches!(
        dst.accept_chunk(TrackId::of(b"nothing"), chunk, &bytes),
        Err(DownloadError::NotStarted(_))
    ));
    assert_eq!(dst.missing_chunks(manifest.track).unwrap(), before);
}

#[test]
fn an_inconsistent_manifest_is_refused_before_anything_is_written() {
    let s = Scratch::new();
    let (_src, manifest, _) = source_with_long_mp3(&s);
    let dst = other_node(&s);
    let mut lie = manifest.clone();
    lie.size += 1;
    assert!(matches!(
        dst.start_download(&lie),
        Err(DownloadError::InvalidManifest(_))
    ));
    let mut huge = manifest.clone();
    huge.chunks[0].len = u32::MAX;
    assert!(matches!(
        dst.start_download(&huge),
        Err(DownloadError::InvalidManifest(_))
    ));
    assert!(dst.downloads().unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(dst.data_dir().join("staging"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn dropping_the_store_mid_download_resumes_with_exactly_the_missing_chunks() {
    let s = Scratch::new();
    let (src, manifest, bytes) = source_with_long_mp3(&s);
    let b_dir = s.tmp.path().join("node-b");
    let all = {
        let dst = Library::open_in(&b_dir).unwrap();
        dst.start_download(&manifest).unwrap();
        let all = dst.missing_chunks(manifest.track).unwrap();
        // Every other chunk, then "crash".
        let half: Vec<ChunkId> = all.iter().step_by(2).copied().collect();
        feed(&src, &dst, manifest.track, &half);
        all
    };
    let dst = Library::open_in(&b_dir).unwrap();
    let expected: Vec<ChunkId> = all.iter().skip(1).step_by(2).copied().collect();
    assert_eq!(dst.missing_chunks(manifest.track).unwrap(), expected);
    let path = feed(&src, &dst, manifest.track, &expected).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), bytes);
}

#[test]
fn a_lost_staging_file_restarts_the_download_and_orphans_are_removed() {
    let s = Scratch::new();
    let (src, manifest, bytes) = source_with_long_mp3(&s);
    let b_dir = s.tmp.path().join("node-b");
    {
        let dst = Library::open_in(&b_dir).unwrap();
        dst.start_download(&manifest).unwrap();
        let some: Vec<ChunkId> = dst.missing_chunks(manifest.track).unwrap()[..5].to_vec();
        feed(&src, &dst, manifest.track, &some);
    }
    let staging = b_dir.join("staging");
    std::fs::remove_file(staging.join(format!("{}.part", manifest.track.to_hex()))).unwrap();
    std::fs::write(staging.join("leftover.part"), b"junk").unwrap();
    let dst = Library::open_in(&b_dir).unwrap();
    assert!(!staging.join("leftover.part").exists());
    let missing = dst.missing_chunks(manifest.track).unwrap();
    let distinct: HashSet<ChunkId> = manifest.chunks.iter().map(|c| c.id).collect();
    assert_eq!(
        missing.len(),
        distinct.len(),
        "nothing counts as present any more"
    );
    let path = feed(&src, &dst, manifest.track, &missing).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), bytes);
}

#[test]
fn chunks_the_library_already_holds_are_not_downloaded_again() {
    let s = Scratch::new();
    let (src, original, _) = source_with_long_mp3(&s);
    // The same song with a tag grown by 6 KB, only on the source.
    let mut grown = common::id3_tag("Long Song", "The Lanterns", "Night Meadow", 5, 6000);
    grown.extend(common::long_mp3_stream(3 * 1024 * 1024, 11));
    let grown_dir = s.tmp.path().join("grown");
    std::fs::create_dir_all(&grown_dir).unwrap();
    std::fs::write(grown_dir.join("grown.mp3"), &grown).unwrap();
    src.scan(&[grown_dir], &mut ()).unwrap();
    let grown_manifest = src.manifest(TrackId::of(&grown)).unwrap().unwrap();

    let dst = other_node(&s);
    let have = dst.start_download(&original).unwrap();
    assert!(matches!(have, DownloadStatus::Pending { .. }));
    let missing = dst.missing_chunks(original.track).unwrap();
    feed(&src, &dst, original.track, &missing).unwrap();

    let DownloadStatus::Pending { missing } = dst.start_download(&grown_manifest).unwrap() else {
        panic!("should still need the changed chunks")
    };
    assert!(missing <= 3, "{missing} chunks missing");
    let rest = dst.missing_chunks(grown_manifest.track).unwrap();
    let path = feed(&src, &dst, grown_manifest.track, &rest).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), grown);
}

/// Untagged WAVs that differ in one sample, so each is its own track.
fn wav_variants(dir: &Path, n: usize) -> Vec<Vec<u8>> {
    std::fs::create_dir_all(dir).unwrap();
    let base = std::fs::read(common::fixtures().join("reference.wav")).unwrap();
    (0..n)
        .map(|i| {
            let mut v = base.clone();
            let at = v.len() - 2000 - i * 4;
            v[at] ^= 0x40;
            std::fs::write(dir.join(format!("v{i}.wav")), &v).unwrap();
            v
        })
        .collect()
}

#[test]
fn hostile_names_from_peers_land_inside_the_music_folder() {
    let s = Scratch::new();
    let long = "x".repeat(300);
    let hostile = [
        "../../x",
        "/etc/passwd",
        "a\0b",
        long.as_str(),
        "CON",
        "",
        "..",
        "....",
    ];
    let files = wav_variants(&s.songs(), hostile.len());
    let src = s.open();
    src.scan(&[s.songs()], &mut ()).unwrap();
    let dst = other_node(&s);
    // A file already there must not be clobbered.
    std::fs::write(dst.music_dir().join("Untitled.wav"), b"precious").unwrap();
    let mut names = HashSet::new();
    for (bytes, title) in files.iter().zip(hostile) {
        let mut m = src.manifest(TrackId::of(bytes)).unwrap().unwrap();
        // The peer lies about the tags; the file itself has none.
        m.meta.title = title.to_owned();
        m.meta.artist = Some(title.to_owned()).filter(|t| t.starts_with('/'));
        m.meta.extension = "../wav".to_owned();
        dst.start_download(&m).unwrap();
        let missing = dst.missing_chunks(m.track).unwrap();
        let path = feed(&src, &dst, m.track, &missing).unwrap();
        assert_eq!(
            path.parent().unwrap(),
            dst.music_dir(),
            "{title:?} -> {path:?}"
        );
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(
            !name.starts_with('.') && !name.contains(['/', '\0']),
            "{name:?}"
        );
        assert!(name.len() < 200, "{name:?}");
        assert!(name.ends_with(".wav"), "{name:?}");
        assert_eq!(&std::fs::read(&path).unwrap(), bytes);
        assert!(names.insert(name));
    }
    assert_eq!(
        std::fs::read(dst.music_dir().join("Untitled.wav")).unwrap(),
        b"precious"
    );
    assert!(names.contains("Untitled (2).wav"), "{names:?}");
    assert!(names.contains("_CON.wav"), "{names:?}");
    // Nothing escaped: the music folder holds exactly the downloads and the precious file.
    assert_eq!(
        std::fs::read_dir(dst.music_dir()).unwrap().count(),
        hostile.len() + 1
    );
    assert!(!s.tmp.path().join("x.wav").exists());
}

#[test]
fn a_download_that_is_not_audio_is_dropped() {
    let s = Scratch::new();
    let src = s.open();
    // A "track" a peer made up: valid manifest, but the bytes are no audio.
    let junk = vec![0x42u8; 40_000];
    let (lens, _) = firefly_library::plan_cuts(&junk, true);
    let mut at = 0usize;
    let chunks: Vec<_> = lens
        .iter()
        .map(|&len| {
            let c = firefly_library::ChunkRef {
                id: ChunkId::of(&junk[at..at + len as usize]),
                len,
            };
            at += len as usize;
            c
        })
        .collect();
    let m = Manifest {
        track: TrackId::of(&junk),
        size: junk.len() as u64,
        chunks: chunks.clone(),
        meta: firefly_library::TrackMeta {
            title: "fake".into(),
            extension: "mp3".into(),
            ..Default::default()
        },
    };
    src.start_download(&m).unwrap();
    let mut result = None;
    let mut at = 0usize;
    for c in &chunks {
        result = Some(src.accept_chunk(m.track, c.id, &junk[at..at + c.len as usize]));
        at += c.len as usize;
    }
    assert!(
        matches!(result, Some(Err(DownloadError::NotAudio { .. }))),
        "{result:?}"
    );
    assert!(src.downloads().unwrap().is_empty());
    assert_eq!(std::fs::read_dir(src.music_dir()).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(src.data_dir().join("staging"))
            .unwrap()
            .count(),
        0
    );
    let _ = copy_fixtures;
}

/// Environment variable that hands the child process its two data dirs.
const CHILD_DIRS: &str = "FIREFLY_LIBRARY_KILL_TEST_DIRS";

/// The child half of `a_killed_process_resumes_with_exactly_the_missing_chunks`:
/// downloads from the source library, printing `accepted:<chunk>` after each chunk
/// is accepted, until the parent kills it.
#[test]
#[ignore = "run as a child process by a_killed_process_resumes_with_exactly_the_missing_chunks"]
fn child_accepts_chunks_until_killed() {
    use std::io::Write;
    let Ok(dirs) = std::env::var(CHILD_DIRS) else {
        return;
    };
    let (src_dir, dst_dir) = dirs.split_once('\n').unwrap();
    let src = Library::open_in(src_dir).unwrap();
    let dst = Library::open_in(dst_dir).unwrap();
    let manifest = src.manifests().unwrap().remove(0);
    dst.start_download(&manifest).unwrap();
    let mut out = std::io::stdout().lock();
    for c in dst
        .missing_chunks(manifest.track)
        .unwrap()
        .into_iter()
        .rev()
    {
        let bytes = src.read_chunk(c).unwrap();
        dst.accept_chunk(manifest.track, c, &bytes).unwrap();
        // libtest may have printed "test … " without a newline before this.
        writeln!(out, "\naccepted:{}", c.to_hex()).unwrap();
        out.flush().unwrap();
    }
    // Wait to be killed rather than exit cleanly.
    std::thread::sleep(std::time::Duration::from_secs(60));
}

#[test]
fn a_killed_process_resumes_with_exactly_the_missing_chunks() {
    use std::io::BufRead;
    let s = Scratch::new();
    let (src, manifest, bytes) = source_with_long_mp3(&s);
    drop(src);
    let src_dir = s.data();
    let dst_dir = s.tmp.path().join("node-b");
    let distinct: HashSet<ChunkId> = manifest.chunks.iter().map(|c| c.id).collect();
    let mut confirmed: HashSet<ChunkId> = HashSet::new();
    for (kills, kill_after) in [3usize, 7, 12].into_iter().enumerate() {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_accepts_chunks_until_killed",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                CHILD_DIRS,
                format!("{}\n{}", src_dir.display(), dst_dir.display()),
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut seen = 0;
        let mut killed = false;
        // After the kill, keep reading: lines the child wrote before it died
        // are confirmations too.
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(hex) = line.split_once("accepted:").map(|(_, hex)| hex.trim()) {
                confirmed.insert(hex.parse().unwrap());
                seen += 1;
                if seen == kill_after && !killed {
                    child.kill().unwrap(); // SIGKILL mid-stream
                    killed = true;
                }
            }
        }
        child.wait().unwrap();
        assert!(killed, "the child stopped before {kill_after} chunks");

        let dst = Library::open_in(&dst_dir).unwrap();
        let missing: HashSet<ChunkId> = dst
            .missing_chunks(manifest.track)
            .unwrap()
            .into_iter()
            .collect();
        assert!(
            missing.is_disjoint(&confirmed),
            "a confirmed chunk counts as missing"
        );
        let unaccounted = distinct.len() - missing.len() - confirmed.len();
        // Each kill may land after a commit and before its line was written.
        assert!(
            unaccounted <= kills + 1,
            "{unaccounted} chunks present but never confirmed after {} kills",
            kills + 1
        );
    }
    // Finish in this process: the assembled file is exactly the original.
    let src = Library::open_in(&src_dir).unwrap();
    let dst = Library::open_in(&dst_dir).unwrap();
    let missing = dst.missing_chunks(manifest.track).unwrap();
    let path = feed(&src, &dst, manifest.track, &missing).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), bytes);
}

#[test]
fn chunks_of_a_download_in_progress_are_served() {
    let s = Scratch::new();
    let (src, manifest, _) = source_with_long_mp3(&s);
    let dst = other_node(&s);
    dst.start_download(&manifest).unwrap();
    let missing = dst.missing_chunks(manifest.track).unwrap();
    let (have, lack) = missing.split_at(missing.len() / 2);
    feed(&src, &dst, manifest.track, have);
    for &c in have {
        assert!(dst.has_chunk(c).unwrap());
        assert_eq!(dst.read_chunk(c).unwrap(), src.read_chunk(c).unwrap());
    }
    for &c in lack {
        assert!(!dst.has_chunk(c).unwrap());
        assert!(matches!(
            dst.read_chunk(c),
            Err(firefly_library::ReadChunkError::NotFound(_))
        ));
    }
}

/// The chunks `ids` with their bytes read from `src`.
fn batch_of(src: &Library, ids: &[ChunkId]) -> Vec<(ChunkId, Vec<u8>)> {
    ids.iter()
        .map(|&c| (c, src.read_chunk(c).unwrap()))
        .collect()
}

#[test]
fn a_batch_stores_its_good_chunks_and_refuses_each_bad_one() {
    let s = Scratch::new();
    let (src, manifest, _) = source_with_long_mp3(&s);
    let dst = other_node(&s);
    dst.start_download(&manifest).unwrap();
    let missing = dst.missing_chunks(manifest.track).unwrap();
    let good = &missing[..5];
    let mut batch = batch_of(&src, good);
    let corrupt = missing[6];
    let mut bad_bytes = src.read_chunk(corrupt).unwrap();
    bad_bytes[7] ^= 0x80;
    batch.insert(2, (corrupt, bad_bytes));
    let stranger = ChunkId::of(b"not in this track");
    batch.push((stranger, b"not in this track".to_vec()));
    // A repeat of a good chunk in the same batch counts once.
    batch.push(batch[0].clone());

    let stored = dst.accept_chunks(manifest.track, &batch).unwrap();
    assert_eq!(
        stored.accepted,
        Accepted::Pending {
            missing: missing.len() - good.len()
        }
    );
    let refused: Vec<ChunkId> = stored.refused.iter().map(|(c, _)| *c).collect();
    assert_eq!(refused, vec![corrupt, stranger]);
    assert!(matches!(stored.refused[0].1, DownloadError::WrongBytes(id) if id == corrupt));
    assert!(matches!(
        stored.refused[1].1,
        DownloadError::NotInManifest { .. }
    ));
    for &c in good {
        assert_eq!(dst.read_chunk(c).unwrap(), src.read_chunk(c).unwrap());
    }
    let now: Vec<ChunkId> = dst.missing_chunks(manifest.track).unwrap();
    let expected: Vec<ChunkId> = missing[5..].to_vec();
    assert_eq!(now, expected);
    assert!(now.contains(&corrupt));

    // Sending present chunks again changes nothing and is not refused.
    let again = dst
        .accept_chunks(manifest.track, &batch_of(&src, good))
        .unwrap();
    assert!(again.refused.is_empty());
    assert_eq!(
        again.accepted,
        Accepted::Pending {
            missing: expected.len()
        }
    );
    // A batch for a download that does not exist fails as a whole.
    assert!(matches!(
        dst.accept_chunks(TrackId::of(b"nothing"), &batch_of(&src, good)),
        Err(DownloadError::NotStarted(_))
    ));
}

#[test]
fn a_track_completes_through_batches() {
    let s = Scratch::new();
    let (src, manifest, bytes) = source_with_long_mp3(&s);
    let dst = other_node(&s);
    dst.start_download(&manifest).unwrap();
    let mut missing = dst.missing_chunks(manifest.track).unwrap();
    missing.reverse();
    let total = missing.len();
    let mut done = None;
    let mut left = total;
    for ids in missing.chunks(8) {
        let stored = dst
            .accept_chunks(manifest.track, &batch_of(&src, ids))
            .unwrap();
        assert!(stored.refused.is_empty());
        left -= ids.len();
        match stored.accepted {
            Accepted::Pending { missing } => {
                assert!(done.is_none());
                assert_eq!(missing, left);
                assert_eq!(dst.missing_chunks(manifest.track).unwrap().len(), left);
            }
            Accepted::Completed(path) => {
                assert_eq!(left, 0, "completed before the last batch");
                done = Some(path);
            }
        }
    }
    let path = done.expect("the last batch completes the track");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert!(dst.downloads().unwrap().is_empty());
    assert_eq!(
        dst.manifest(manifest.track).unwrap().unwrap().chunks,
        manifest.chunks
    );
    // A late batch for the finished track reports where it is.
    let late = dst
        .accept_chunks(manifest.track, &batch_of(&src, &missing[..2]))
        .unwrap();
    assert_eq!(late.accepted, Accepted::Completed(path));
}

#[test]
fn a_library_dropped_between_batches_resumes_with_the_same_missing_set() {
    let s = Scratch::new();
    let (src, manifest, bytes) = source_with_long_mp3(&s);
    let dst_dir = s.tmp.path().join("node-b");
    let missing = {
        let dst = other_node(&s);
        dst.start_download(&manifest).unwrap();
        let missing = dst.missing_chunks(manifest.track).unwrap();
        dst.accept_chunks(manifest.track, &batch_of(&src, &missing[..6]))
            .unwrap();
        dst.accept_chunks(manifest.track, &batch_of(&src, &missing[10..14]))
            .unwrap();
        missing
    };
    let expected: Vec<ChunkId> = missing[6..10]
        .iter()
        .chain(&missing[14..])
        .copied()
        .collect();
    let dst = Library::open_in(&dst_dir).unwrap();
    assert_eq!(dst.missing_chunks(manifest.track).unwrap(), expected);
    // The count kept per batch starts from what the database holds.
    let stored = dst
        .accept_chunks(manifest.track, &batch_of(&src, &expected[..3]))
        .unwrap();
    assert_eq!(
        stored.accepted,
        Accepted::Pending {
            missing: expected.len() - 3
        }
    );
    drop(dst);
    let dst = Library::open_in(&dst_dir).unwrap();
    assert_eq!(dst.missing_chunks(manifest.track).unwrap(), expected[3..]);
    let stored = dst
        .accept_chunks(manifest.track, &batch_of(&src, &expected[3..]))
        .unwrap();
    let Accepted::Completed(path) = stored.accepted else {
        panic!("the rest completes the track: {:?}", stored.accepted);
    };
    assert_eq!(std::fs::read(path).unwrap(), bytes);
}

#[test]
fn a_cancelled_download_restarts_its_count() {
    let s = Scratch::new();
    let (src, manifest, _) = source_with_long_mp3(&s);
    let dst = other_node(&s);
    dst.start_download(&manifest).unwrap();
    let missing = dst.missing_chunks(manifest.track).unwrap();
    dst.accept_chunks(manifest.track, &batch_of(&src, &missing[..4]))
        .unwrap();
    dst.cancel_download(manifest.track).unwrap();
    dst.start_download(&manifest).unwrap();
    let stored = dst
        .accept_chunks(manifest.track, &batch_of(&src, &missing[..2]))
        .unwrap();
    assert_eq!(
        stored.accepted,
        Accepted::Pending {
            missing: missing.len() - 2
        }
    );
}

#[test]
fn a_manifest_cut_elsewhere_than_fastcdc_completes_and_is_indexed_by_its_own_cuts() {
    let s = Scratch::new();
    let (_src, canonical, bytes) = source_with_long_mp3(&s);
    // A peer that cut the same file its own way: the first two chunks as one.
    let merged = (canonical.chunks[0].len + canonical.chunks[1].len) as usize;
    let mut odd = canonical.clone();
    odd.chunks.splice(
        0..2,
        [firefly_library::ChunkRef {
            id: ChunkId::of(&bytes[..merged]),
            len: merged as u32,
        }],
    );
    let dst = other_node(&s);
    dst.start_download(&odd).unwrap();
    let mut done = None;
    for (offset, chunk) in odd.offsets() {
        let at = offset as usize;
        let piece = &bytes[at..at + chunk.len as usize];
        if let Accepted::Completed(path) = dst.accept_chunk(odd.track, chunk.id, piece).unwrap() {
            done = Some(path);
        }
    }
    let path = done.expect("the last chunk completes the download");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    // The index holds FastCDC's chunks, as a scan of the file would.
    let indexed = dst.manifest(canonical.track).unwrap().unwrap();
    assert_eq!(indexed.chunks, canonical.chunks);
}

/// Chunks of `manifest` in file order, cut into batches of `sizes` (cycled).
fn in_order_batches(manifest: &Manifest, sizes: &[usize]) -> Vec<Vec<ChunkId>> {
    let mut distinct = HashSet::new();
    let order: Vec<ChunkId> = manifest
        .chunks
        .iter()
        .map(|c| c.id)
        .filter(|id| distinct.insert(*id))
        .collect();
    let mut out = Vec::new();
    let mut rest = &order[..];
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (batch, tail) = rest.split_at(size.min(rest.len()));
        out.push(batch.to_vec());
        rest = tail;
    }
    out
}

#[test]
fn batches_from_several_threads_in_any_order_complete_with_the_right_file_and_index() {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let s = Scratch::new();
    let (src, manifest, bytes) = source_with_long_mp3(&s);
    for seed in 0..3u64 {
        let dst = Library::open_in(s.tmp.path().join(format!("node-{seed}"))).unwrap();
        dst.start_download(&manifest).unwrap();
        let mut batches = in_order_batches(&manifest, &[1, 5, 3, 8, 2]);
        batches.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
        // Some chunks twice, as a retry after a slow peer would send them.
        batches.push(batches[0].clone());
        batches.rotate_right(1);
        let queue = std::sync::Mutex::new(batches);
        let done: Vec<Option<PathBuf>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = None;
                        loop {
                            let Some(ids) = queue.lock().unwrap().pop() else {
                                return done;
                            };
                            let stored = dst
                                .accept_chunks(manifest.track, &batch_of(&src, &ids))
                                .unwrap();
                            assert!(stored.refused.is_empty());
                            if let Accepted::Completed(path) = stored.accepted {
                                done = Some(path);
                            }
                        }
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let path = done
            .into_iter()
            .flatten()
            .next()
            .expect("the track completes");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "seed {seed}");
        assert_eq!(
            dst.manifest(manifest.track).unwrap().unwrap().chunks,
            manifest.chunks
        );
        assert!(dst.downloads().unwrap().is_empty());
        assert_eq!(dst.track_paths(manifest.track).unwrap(), vec![path]);
        // The call that stored the last chunk found the file checked.
        assert_eq!(dst.staged_rereads(), 0, "seed {seed}");
    }
}

#[test]
fn chunks_in_order_are_checked_as_they_arrive_not_read_back_at_the_end() {
    let s = Scratch::new();
    let (src, manifest, bytes) = source_with_long_mp3(&s);
    let dst = other_node(&s);
    dst.start_download(&manifest).unwrap();
    let mut done = None;
    for ids in in_order_batches(&manifest, &[4]) {
        let stored = dst
            .accept_chunks(manifest.track, &batch_of(&src, &ids))
            .unwrap();
        if let Accepted::Completed(path) = stored.accepted {
            done = Some(path);
        }
    }
    let path = done.expect("the last batch completes the track");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert_eq!(dst.staged_rereads(), 0);
}

#[test]
fn chunks_each_correct_in_a_file_that_is_not_the_track_end_in_a_mismatch() {
    let s = Scratch::new();
    let (src, manifest, _) = source_with_long_mp3(&s);
    let mut lie = manifest.clone();
    lie.track = TrackId::of(b"some other track");
    let dst = other_node(&s);
    dst.start_download(&lie).unwrap();
    let distinct = dst.missing_chunks(lie.track).unwrap().len();
    for _attempt in 0..2 {
        let batches = in_order_batches(&lie, &[6]);
        let (last, rest) = batches.split_last().unwrap();
        for ids in rest {
            let stored = dst.accept_chunks(lie.track, &batch_of(&src, ids)).unwrap();
            assert!(matches!(stored.accepted, Accepted::Pending { .. }));
        }
        assert!(matches!(
            dst.accept_chunks(lie.track, &batch_of(&src, last)),
            Err(DownloadError::TrackMismatch(t)) if t == lie.track
        ));
        // Nothing counts as present any more, and nothing was linked.
        assert_eq!(dst.missing_chunks(lie.track).unwrap().len(), distinct);
        assert_eq!(std::fs::read_dir(dst.music_dir()).unwrap().count(), 0);
        assert!(dst.manifest(lie.track).unwrap().is_none());
        assert!(dst.manifest(manifest.track).unwrap().is_none());
    }
    assert_eq!(dst.staged_rereads(), 0, "the verdict came from the prefix");
}

#[test]
fn a_download_resumed_after_reopening_finishes_checked_from_the_staging_file() {
    let s = Scratch::new();
    let (src, manifest, bytes) = source_with_long_mp3(&s);
    let dst_dir = s.tmp.path().join("node-b");
    let batches = in_order_batches(&manifest, &[3]);
    let half = batches.len() / 2;
    {
        let dst = Library::open_in(&dst_dir).unwrap();
        dst.start_download(&manifest).unwrap();
        // The first half in order (checked as it came), then a batch
        // further on.
        for ids in batches[..half].iter().chain([&batches[half + 2]]) {
            dst.accept_chunks(manifest.track, &batch_of(&src, ids))
                .unwrap();
        }
    }
    // Reopened: the check is gone with the old handle; the next batch
    // starts a new one that reads the present prefix back.
    let dst = Library::open_in(&dst_dir).unwrap();
    let mut rest: Vec<&Vec<ChunkId>> = batches[half..]
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != 2)
        .map(|(_, ids)| ids)
        .collect();
    rest.reverse();
    let mut done = None;
    for ids in rest {
        if let Accepted::Completed(path) = dst
            .accept_chunks(manifest.track, &batch_of(&src, ids))
            .unwrap()
            .accepted
        {
            done = Some(path);
        }
    }
    let path = done.expect("the last batch completes the track");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert_eq!(
        dst.manifest(manifest.track).unwrap().unwrap().chunks,
        manifest.chunks
    );
    assert_eq!(dst.staged_rereads(), 0);
}
