//! How long the call that completes a download takes: a 64 MiB track fed in
//! file order in batches of about 1 MiB, as `firefly bench transfer`'s
//! receiver stores one response per `accept_chunks` call. Ignored by
//! default; run it in release:
//!
//! ```sh
//! cargo test --release -p firefly-library --test finish_bench -- --ignored --nocapture
//! ```
//!
//! `FINISH_BENCH_DIR` picks where the libraries live (default: the system
//! temp folder; `/dev/shm` takes the disk out). Uses only the public API, so
//! the same file runs against older versions of the crate for a before /
//! after comparison.
#![allow(clippy::unwrap_used)]

mod common;

use common::Scratch;
use firefly_library::{Accepted, ChunkId, Library};
use std::time::{Duration, Instant};

/// Size of the track.
const TRACK_BYTES: usize = 64 * 1024 * 1024;
/// Bytes per batch (a batch is closed at the first chunk that reaches it).
const BATCH_BYTES: usize = 1024 * 1024;
/// Downloads timed.
const RUNS: usize = 7;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn final_accept_of_a_64_mib_download_fed_in_order() {
    let base = std::env::var_os("FINISH_BENCH_DIR");
    let s = match &base {
        Some(dir) => Scratch {
            tmp: tempfile::tempdir_in(dir).unwrap(),
        },
        None => Scratch::new(),
    };
    std::fs::create_dir_all(s.songs()).unwrap();
    let mut bytes = common::id3_tag("Big Song", "The Lanterns", "Night Meadow", 1, 0);
    bytes.extend(common::long_mp3_stream(TRACK_BYTES, 17));
    bytes.truncate(TRACK_BYTES);
    std::fs::write(s.songs().join("big.mp3"), &bytes).unwrap();
    let src = s.open();
    src.scan(&[s.songs()], &mut ()).unwrap();
    let manifest = src.manifests().unwrap().remove(0);

    // Every batch in memory before any timing, in file order.
    let mut batches: Vec<Vec<(ChunkId, Vec<u8>)>> = Vec::new();
    let mut current = Vec::new();
    let mut current_len = 0usize;
    let mut seen = std::collections::HashSet::new();
    for chunk in &manifest.chunks {
        if !seen.insert(chunk.id) {
            continue;
        }
        current.push((chunk.id, src.read_chunk(chunk.id).unwrap()));
        current_len += chunk.len as usize;
        if current_len >= BATCH_BYTES {
            batches.push(std::mem::take(&mut current));
            current_len = 0;
        }
    }
    if !current.is_empty() {
        batches.push(current);
    }

    let mut finals = Vec::new();
    let mut others = Vec::new();
    let mut totals = Vec::new();
    for run in 0..RUNS {
        let dst = Library::open_in(s.tmp.path().join(format!("node-{run}"))).unwrap();
        dst.start_download(&manifest).unwrap();
        let started = Instant::now();
        let mut last = Duration::ZERO;
        let mut path = None;
        for (i, batch) in batches.iter().enumerate() {
            let t = Instant::now();
            let stored = dst.accept_chunks(manifest.track, batch).unwrap();
            let took = t.elapsed();
            match stored.accepted {
                Accepted::Completed(done) => {
                    assert_eq!(i + 1, batches.len(), "completed early");
                    last = took;
                    path = Some(done);
                }
                Accepted::Pending { .. } => others.push(took),
            }
        }
        totals.push(started.elapsed());
        finals.push(last);
        let path = path.expect("the last batch completes the track");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), bytes.len() as u64);
    }
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    println!(
        "track {} bytes, {} chunks, {} batches, {RUNS} runs in {}",
        bytes.len(),
        manifest.chunks.len(),
        batches.len(),
        s.tmp.path().display()
    );
    println!(
        "final accept_chunks ms: {:?}",
        finals.iter().map(ms).collect::<Vec<_>>()
    );
    println!(
        "final accept_chunks median {:.1} ms; other batches median {:.2} ms; whole download median {:.1} ms",
        ms(&median(finals)),
        ms(&median(others)),
        ms(&median(totals))
    );
}
