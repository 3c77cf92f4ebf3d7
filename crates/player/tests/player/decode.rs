//! Every fixture format decodes to the reference signal.

use crate::util::*;
use firefly_player::{DecodeError, Decoder};

fn reference() -> Vec<f32> {
    decode_all(&fixture("reference.wav"), 2).1
}

/// Decodes `name`, checks rate, length (within `frame_slack`) and correlation
/// with the reference after the best alignment within `max_lag` frames.
fn check(name: &str, codec: &str, frame_slack: usize, max_lag: i64, min_corr: f64) {
    let (decoder, samples) = decode_all(&fixture(name), 2);
    assert_eq!(decoder.info().sample_rate, 44_100, "{name}");
    assert_eq!(decoder.info().codec, codec, "{name}");
    assert_eq!(
        decoder.corrupt_packets(),
        0,
        "{name}: intact file reported corrupt"
    );
    let reference = reference();
    let (frames, ref_frames) = (samples.len() / 2, reference.len() / 2);
    assert!(
        frames.abs_diff(ref_frames) <= frame_slack,
        "{name}: {frames} frames, reference {ref_frames}"
    );
    for c in 0..2 {
        let (a, b) = (channel(&reference, 2, c), channel(&samples, 2, c));
        let (lag, corr) = best_lag(&a[..40_000], &b, -max_lag..=max_lag);
        eprintln!("{name} ch{c}: lag {lag}, correlation {corr:.5}");
        assert!(
            corr >= min_corr,
            "{name} channel {c}: correlation {corr} at lag {lag}"
        );
    }
}

#[test]
fn wav_matches_reference_exactly() {
    check("reference.wav", "pcm_s16le", 0, 0, 0.999_999);
}

#[test]
fn flac_is_lossless() {
    check("tone.flac", "flac", 0, 0, 0.999_999);
}

#[test]
fn mp3_matches_after_codec_delay() {
    // One MP3 frame is 1152 samples; gapless info trims the encoder delay.
    check("tone.mp3", "mp3", 1152, 1200, 0.98);
}

#[test]
fn vorbis_matches_after_codec_delay() {
    check("tone.ogg", "vorbis", 2048, 2100, 0.98);
}

#[test]
fn aac_in_m4a_matches_after_codec_delay() {
    check("tone.m4a", "aac", 2048, 2100, 0.98);
}

#[test]
fn mono_22k_is_copied_to_both_channels() {
    let (decoder, samples) = decode_all(&fixture("untagged-mono-22k.wav"), 2);
    assert_eq!(decoder.info().sample_rate, 22_050);
    assert_eq!(decoder.info().channels, Some(1));
    assert_eq!(samples.len() / 2, 44_100);
    assert!(samples.chunks_exact(2).all(|f| f[0] == f[1]));
    // Against the reference's mono mix, every other frame.
    let reference = reference();
    let mix: Vec<f32> = reference
        .chunks_exact(4)
        .map(|f| (f[0] + f[1]) / 2.0)
        .collect();
    let (lag, corr) = best_lag(&mix[..20_000], &channel(&samples, 2, 0), -4..=4);
    assert!(corr > 0.98, "correlation {corr} at lag {lag}");
}

#[test]
fn stereo_to_mono_output_mixes_down() {
    let (_, mono) = decode_all(&fixture("tone.flac"), 1);
    let (_, stereo) = decode_all(&fixture("tone.flac"), 2);
    assert_eq!(mono.len() * 2, stereo.len());
    let expected = (stereo[2000] + stereo[2001]) / 2.0;
    assert!((mono[1000] - expected).abs() < 1e-6);
}

#[test]
fn seek_lands_on_the_exact_frame() {
    for name in ["reference.wav", "tone.flac", "tone.mp3"] {
        let (_, all) = decode_all(&fixture(name), 2);
        let mut d = Decoder::open_file(&fixture(name), 2).unwrap();
        d.seek(30_000).unwrap();
        let mut out = Vec::new();
        let block = d.next_block(&mut out).unwrap().unwrap();
        assert_eq!(block.first_frame, 30_000, "{name}");
        while out.len() < 2 * 4000 {
            d.next_block(&mut out).unwrap().unwrap();
        }
        // Past the decoder's warm-up after a seek, samples must line up with a straight decode.
        let (left, whole) = (channel(&out, 2, 0), channel(&all, 2, 0));
        let error_at = |lag: i64| -> f64 {
            (2000..3000)
                .map(|i| f64::from(left[i] - whole[(30_000 + i as i64 + lag) as usize]).powi(2))
                .sum()
        };
        let best = (-3..=3)
            .min_by(|a, b| error_at(*a).total_cmp(&error_at(*b)))
            .unwrap();
        assert_eq!(best, 0, "{name}: seek landed {best} frames off");
    }
}

#[test]
fn corrupt_mp3_frames_are_skipped_and_reported() {
    let mut bytes = std::fs::read(fixture("tone.mp3")).unwrap();
    // Smash a stretch in the middle: headers and data of a few frames.
    let mid = bytes.len() / 2;
    for (i, b) in bytes[mid..mid + 1500].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37) ^ 0x5a;
    }
    let mut d = Decoder::open(Box::new(std::io::Cursor::new(bytes)), Some("mp3"), 2).unwrap();
    let mut out = Vec::new();
    while d.next_block(&mut out).unwrap().is_some() {}
    let frames = out.len() / 2;
    eprintln!("corrupt packets {}, frames {frames}", d.corrupt_packets());
    assert!(d.corrupt_packets() > 0, "corruption went unreported");
    // Most of the track survives, and later frames keep their place within a few frames.
    assert!(frames > 80_000, "only {frames} frames decoded");
    assert!(out.iter().all(|s| s.is_finite()));
}

/// Damages 600 bytes in the middle of a fixture and decodes it all.
fn decode_damaged(name: &str) -> (Decoder, Vec<f32>) {
    let mut bytes = std::fs::read(fixture(name)).unwrap();
    let mid = bytes.len() / 2;
    for (i, b) in bytes[mid..mid + 600].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37) ^ 0x5a;
    }
    let mut d = Decoder::open(Box::new(std::io::Cursor::new(bytes)), None, 2).unwrap();
    let mut out = Vec::new();
    while d.next_block(&mut out).unwrap().is_some() {}
    (d, out)
}

#[test]
fn corrupt_flac_frame_is_concealed_and_later_frames_keep_their_place() {
    let (d, out) = decode_damaged("tone.flac");
    assert!(d.corrupt_packets() > 0);
    assert_eq!(out.len() / 2, 88_200);
    let reference = reference();
    let tail = 70_000..80_000;
    let (lag, corr) = best_lag(
        &channel(&reference, 2, 0)[tail.clone()],
        &channel(&out, 2, 0)[tail.start - 10..tail.end + 10],
        0..=20,
    );
    assert_eq!(
        (lag, corr > 0.9999),
        (10, true),
        "after the damage: lag {lag}, corr {corr}"
    );
}

#[test]
fn corrupt_aac_packets_are_skipped_not_fatal() {
    let (d, out) = decode_damaged("tone.m4a");
    assert!(d.corrupt_packets() > 0);
    assert!(out.len() / 2 >= 88_200);
}

#[test]
fn text_is_not_audio_and_truncated_files_fail_cleanly() {
    let err = Decoder::open(
        Box::new(std::io::Cursor::new(b"hello world".repeat(50))),
        None,
        2,
    )
    .unwrap_err();
    assert!(matches!(err, DecodeError::NotAudio(_)), "{err}");
    // A FLAC cut after its header: opens, then ends early without panicking.
    let bytes = std::fs::read(fixture("tone.flac")).unwrap();
    let cut = bytes[..bytes.len() / 3].to_vec();
    if let Ok(mut d) = Decoder::open(Box::new(std::io::Cursor::new(cut)), Some("flac"), 2) {
        let mut out = Vec::new();
        while let Ok(Some(_)) = d.next_block(&mut out) {}
        // The missing end is reported and stands in as silence.
        assert!(d.corrupt_packets() > 0);
        assert!(out[2 * 60_000..].iter().all(|&s| s == 0.0));
    }
    let missing = Decoder::open_file(std::path::Path::new("/nonexistent/x.mp3"), 2).unwrap_err();
    assert!(
        missing.to_string().contains("/nonexistent/x.mp3"),
        "{missing}"
    );
}

#[test]
fn unsupported_codec_gets_a_clear_error() {
    // A WAV header declaring WMA (format tag 0x161), which this build cannot decode.
    let mut wav = Vec::new();
    let data = vec![0u8; 2048];
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + 16 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&0x0161u16.to_le_bytes()); // WMA
    wav.extend_from_slice(&2u16.to_le_bytes()); // channels
    wav.extend_from_slice(&44_100u32.to_le_bytes());
    wav.extend_from_slice(&16_000u32.to_le_bytes());
    wav.extend_from_slice(&2_230u16.to_le_bytes()); // block align
    wav.extend_from_slice(&16u16.to_le_bytes()); // bits
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    let err = Decoder::open(Box::new(std::io::Cursor::new(wav)), Some("wav"), 2).unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, DecodeError::UnsupportedCodec(_)), "{err}");
    assert!(err.to_string().starts_with("unsupported codec"), "{err}");
}

#[test]
fn damaged_files_of_every_format_never_panic() {
    // A seeded generator: the same damage on every run.
    let mut seed: u64 = 0x5eed_f1ef;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        seed >> 33
    };
    for name in [
        "tone.mp3",
        "tone.flac",
        "tone.ogg",
        "tone.m4a",
        "reference.wav",
    ] {
        let original = std::fs::read(fixture(name)).unwrap();
        for round in 0..12 {
            let mut bytes = original.clone();
            // Damage more as rounds go on; keep the first bytes intact half of the time,
            // so some damage reaches past the headers.
            let hits = 4 << (round % 6);
            let from = if round % 2 == 0 { 64 } else { 0 };
            for _ in 0..hits {
                let at = from + next() as usize % (bytes.len() - from);
                bytes[at] ^= (next() % 255 + 1) as u8;
            }
            if round == 11 {
                bytes.truncate(bytes.len() / 7);
            }
            let Ok(mut d) = Decoder::open(Box::new(std::io::Cursor::new(bytes)), None, 2) else {
                continue;
            };
            let mut out = Vec::new();
            let mut blocks = 0;
            // Bounded: damage cannot make a 2 s file produce minutes of audio.
            while let Ok(Some(_)) = d.next_block(&mut out) {
                blocks += 1;
                assert!(blocks < 10_000, "{name} round {round}: endless decoding");
            }
            assert!(
                out.len() / 2 < 10 * 88_200,
                "{name} round {round}: {} frames",
                out.len() / 2
            );
            assert!(
                out.iter().all(|s| s.is_finite()),
                "{name} round {round}: non-finite samples"
            );
        }
    }
}
