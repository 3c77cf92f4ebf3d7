//! Helpers shared by the library's integration tests: fixtures, scratch
//! folders, derived audio files.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

/// The repository's `fixtures/` folder.
pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// The five tagged fixtures and the untagged WAV.
pub(crate) const FIXTURES: [&str; 6] = [
    "tone.mp3",
    "tone.flac",
    "tone.ogg",
    "reference.wav",
    "tone.m4a",
    "untagged-mono-22k.wav",
];

/// Copies the named fixtures into `dir`.
pub(crate) fn copy_fixtures(dir: &Path, names: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    for name in names {
        std::fs::copy(fixtures().join(name), dir.join(name)).unwrap();
    }
}

/// A data dir and a music folder in one temp dir.
pub(crate) struct Scratch {
    pub(crate) tmp: tempfile::TempDir,
}

impl Scratch {
    pub(crate) fn new() -> Self {
        Self {
            tmp: tempfile::tempdir().unwrap(),
        }
    }
    pub(crate) fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }
    pub(crate) fn songs(&self) -> PathBuf {
        self.tmp.path().join("songs")
    }
    pub(crate) fn open(&self) -> firefly_library::Library {
        firefly_library::Library::open_in(self.data()).unwrap()
    }
}

/// Length of the ID3v2 tag at the front of `mp3` (0 if none).
pub(crate) fn id3_len(mp3: &[u8]) -> usize {
    if mp3.len() < 10 || &mp3[..3] != b"ID3" {
        return 0;
    }
    let size = mp3[6..10]
        .iter()
        .fold(0usize, |acc, b| (acc << 7) | usize::from(b & 0x7f));
    let footer = if mp3[5] & 0x10 != 0 { 10 } else { 0 };
    10 + size + footer
}

/// Byte ranges of the MPEG-1 Layer III frames in `stream` (which starts at a frame).
pub(crate) fn mp3_frames(stream: &[u8]) -> Vec<std::ops::Range<usize>> {
    const KBPS: [usize; 16] = [
        0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0,
    ];
    const RATES: [usize; 4] = [44100, 48000, 32000, 0];
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= stream.len() {
        let h = &stream[at..at + 4];
        assert!(
            h[0] == 0xff && h[1] & 0xfe == 0xfa,
            "not an MPEG-1 Layer III frame at {at}"
        );
        let kbps = KBPS[usize::from(h[2] >> 4)];
        let rate = RATES[usize::from((h[2] >> 2) & 3)];
        let pad = usize::from((h[2] >> 1) & 1);
        let len = 144_000 * kbps / rate + pad;
        if at + len > stream.len() {
            break;
        }
        out.push(at..at + len);
        at += len;
    }
    out
}

/// An ID3v2.3 tag with title, artist, album, track and a comment of
/// `comment_len` bytes.
pub(crate) fn id3_tag(
    title: &str,
    artist: &str,
    album: &str,
    track: u32,
    comment_len: usize,
) -> Vec<u8> {
    id3_tag_with_picture(title, artist, album, track, comment_len, None)
}

/// [`id3_tag`] with an `APIC` front-cover frame holding `picture`
/// (declared as `image/png`, whatever it is).
pub(crate) fn id3_tag_with_picture(
    title: &str,
    artist: &str,
    album: &str,
    track: u32,
    comment_len: usize,
    picture: Option<&[u8]>,
) -> Vec<u8> {
    fn frame(id: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut f = id.to_vec();
        f.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(body);
        f
    }
    fn text(s: &str) -> Vec<u8> {
        let mut b = vec![0u8]; // ISO-8859-1
        b.extend_from_slice(s.as_bytes());
        b
    }
    let mut body = Vec::new();
    body.extend(frame(b"TIT2", &text(title)));
    body.extend(frame(b"TPE1", &text(artist)));
    body.extend(frame(b"TALB", &text(album)));
    body.extend(frame(b"TRCK", &text(&track.to_string())));
    if comment_len > 0 {
        let mut comm = vec![0u8, b'e', b'n', b'g', 0];
        comm.extend(std::iter::repeat_n(b'x', comment_len));
        body.extend(frame(b"COMM", &comm));
    }
    if let Some(picture) = picture {
        let mut apic = vec![0u8];
        apic.extend_from_slice(b"image/png\0");
        apic.push(3); // front cover
        apic.push(0); // empty description
        apic.extend_from_slice(picture);
        body.extend(frame(b"APIC", &apic));
    }
    let size = body.len();
    let mut tag = b"ID3\x03\x00\x00".to_vec();
    for shift in [21, 14, 7, 0] {
        tag.push(((size >> shift) & 0x7f) as u8);
    }
    tag.extend(body);
    tag
}

/// A long MP3 stream (about `target` bytes) made of runs of consecutive
/// frames of `tone.mp3`, picked pseudo-randomly so the content does not
/// repeat with a short period. The Xing/Info frame is left out.
pub(crate) fn long_mp3_stream(target: usize, seed: u64) -> Vec<u8> {
    let mp3 = std::fs::read(fixtures().join("tone.mp3")).unwrap();
    let stream = &mp3[id3_len(&mp3)..];
    let frames = mp3_frames(stream);
    let audio: Vec<_> = frames
        .into_iter()
        .filter(|r| {
            let f = &stream[r.clone()];
            !f.windows(4).take(64).any(|w| w == b"Xing" || w == b"Info")
        })
        .collect();
    let mut out = Vec::new();
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut start = 0usize;
    while out.len() < target {
        let run = 8.min(audio.len() - start);
        for r in &audio[start..start + run] {
            out.extend_from_slice(&stream[r.clone()]);
        }
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        start = ((state >> 33) as usize) % (audio.len() - 8);
    }
    out
}

/// `tone.mp3`'s audio under a new ID3 tag (with `picture` as its cover).
pub(crate) fn tagged_mp3(title: &str, album: &str, picture: Option<&[u8]>) -> Vec<u8> {
    let mp3 = std::fs::read(fixtures().join("tone.mp3")).unwrap();
    let mut out = id3_tag_with_picture(title, "The Lanterns", album, 1, 0, picture);
    out.extend_from_slice(&mp3[id3_len(&mp3)..]);
    out
}

/// A valid 1×1 PNG of the given colour (real CRCs and zlib stream).
pub(crate) fn tiny_png(rgb: [u8; 3]) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
        let mut typed = kind.to_vec();
        typed.extend_from_slice(data);
        out.extend_from_slice(&typed);
        out.extend_from_slice(&crc32(&typed).to_be_bytes());
    }
    let raw = [0u8, rgb[0], rgb[1], rgb[2]];
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    let mut zlib = vec![0x78, 0x01, 0x01, 4, 0, !4u8, 0xFF];
    zlib.extend_from_slice(&raw);
    zlib.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]);
    chunk(&mut out, b"IDAT", &zlib);
    chunk(&mut out, b"IEND", &[]);
    out
}
