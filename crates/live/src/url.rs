//! `url:http://…`: an Icecast/Shoutcast stream (MP3, AAC, Ogg Vorbis, FLAC,
//! WAV: what the workspace's symphonia decodes), through the project's one
//! HTTP client (ureq), on its own thread.
//!
//! Redirects are followed (at most 5). A connection that fails, a server
//! that answers nothing for 10 s or stops sending for 10 s, or a stream that
//! stops decoding (the codec changed) is reported and retried with back-off
//! (1 s doubling to 30 s, back to 1 s after a minute of audio). A response
//! that is not audio (an HTML page, an error status) is retried the same way
//! with the reason said. Decoded audio is mapped to stereo and resampled to
//! 48 kHz (rubato), rebuilt when the decoder reports another sample rate or
//! channel count mid-stream. symphonia 0.5's MP3 decoder does not report
//! one (an MP3 stream that switches from 44.1 to 32 kHz keeps being decoded
//! as if at the first rate, at the wrong speed), so every MP3 frame's own
//! header is read too: a frame at another rate is reported and the stream
//! reconnected, which probes it afresh at the new rate.

use crate::source::{RunningSource, SourceEvent, SourceThread};
use rubato::{FftFixedIn, Resampler};
use std::time::{Duration, Instant};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::DecoderOptions;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::{MediaSourceStream, ReadOnlySource};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// The stream's rate and channels.
const RATE: u32 = 48_000;
const CHANNELS: u16 = 2;
/// Waiting for a response, or for the next bytes of one.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Audio for this long resets the back-off.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// Resampler input per call, frames.
const RESAMPLE_CHUNK: usize = 1024;

/// Starts playing `url` (an `http://` address).
pub fn open(url: String) -> std::io::Result<RunningSource> {
    let (source, thread) = RunningSource::new(RATE, CHANNELS);
    std::thread::Builder::new()
        .name("firefly-live-url".into())
        .spawn(move || run(&url, &thread))?;
    Ok(source)
}

fn run(url: &str, thread: &SourceThread) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .max_redirects(5)
        .timeout_connect(Some(IDLE_TIMEOUT))
        .timeout_recv_response(Some(IDLE_TIMEOUT))
        .timeout_per_read(Some(IDLE_TIMEOUT))
        .user_agent("firefly")
        .build()
        .into();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = Instant::now();
        let outcome = play_once(&agent, url, thread);
        if thread.stopped() {
            return;
        }
        if started.elapsed() >= HEALTHY_AFTER {
            backoff = FIRST_BACKOFF;
        }
        let reason = match outcome {
            Ok(()) => "the stream ended".to_owned(),
            Err(reason) => reason,
        };
        if !thread.send(SourceEvent::Problem(format!(
            "{url}: {reason}; reconnecting in {} s",
            backoff.as_secs()
        ))) || !thread.sleep(backoff)
        {
            return;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection: plays until the stream ends or fails.
fn play_once(agent: &ureq::Agent, url: &str, thread: &SourceThread) -> Result<(), String> {
    let response = agent.get(url).call().map_err(|e| e.to_string())?;
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut hint = Hint::new();
    match content_type.split(';').next().unwrap_or("").trim() {
        "audio/mpeg" | "audio/mp3" => {
            hint.with_extension("mp3");
        }
        "audio/aac" | "audio/aacp" => {
            hint.with_extension("aac");
        }
        "audio/ogg" | "application/ogg" | "audio/vorbis" => {
            hint.with_extension("ogg");
        }
        "audio/flac" | "audio/x-flac" => {
            hint.with_extension("flac");
        }
        "audio/wav" | "audio/x-wav" | "audio/wave" => {
            hint.with_extension("wav");
        }
        t if t.starts_with("text/") || t.starts_with("image/") || t == "application/json" => {
            return Err(format!(
                "not audio (content type {})",
                crate::format::clip(t)
            ));
        }
        _ => {}
    }
    let reader = response
        .into_body()
        .into_with_config()
        .limit(u64::MAX)
        .reader();
    let stream = MediaSourceStream::new(Box::new(ReadOnlySource::new(reader)), Default::default());
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            stream,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| format!("not audio Firefly can decode ({e})"))?;
    let mut format = probed.format;
    let track = format
        .default_track()
        .ok_or("no audio track in the stream")?
        .clone();
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| format!("codec not supported ({e})"))?;
    let mut converter: Option<Converter> = None;
    let mut bad_packets = 0u32;
    let mpeg = track.codec_params.codec == symphonia::core::codecs::CODEC_TYPE_MP3;
    let mut mpeg_rate: Option<u32> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(packet) => packet,
            Err(symphonia::core::errors::Error::IoError(e))
                if e.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                return Ok(());
            }
            Err(e) => return Err(format!("stream failed: {e}")),
        };
        if packet.track_id() != track.id {
            continue;
        }
        if mpeg && let Some(rate) = mpeg_frame_rate(&packet.data) {
            match mpeg_rate {
                Some(first) if first != rate => {
                    return Err(format!(
                        "the MP3 stream changed its sample rate from {first} to {rate} Hz"
                    ));
                }
                _ => mpeg_rate = Some(rate),
            }
        }
        let audio = match decoder.decode(&packet) {
            Ok(audio) => audio,
            Err(symphonia::core::errors::Error::DecodeError(e)) => {
                bad_packets += 1;
                if bad_packets > 50 {
                    return Err(format!("the stream stopped decoding (codec changed?): {e}"));
                }
                continue;
            }
            Err(e) => return Err(format!("the stream stopped decoding: {e}")),
        };
        bad_packets = 0;
        let spec = *audio.spec();
        let channels = spec.channels.count();
        if channels == 0 || !(8_000..=192_000).contains(&spec.rate) {
            return Err(format!(
                "unplayable format ({} Hz, {channels} channels)",
                spec.rate
            ));
        }
        let conv = match converter.as_mut() {
            Some(c) if c.rate == spec.rate && c.channels == channels => c,
            _ => {
                if converter.is_some() {
                    let _ = thread.send(SourceEvent::Problem(format!(
                        "{url}: format changed to {} Hz, {channels} channels",
                        spec.rate
                    )));
                }
                converter.insert(Converter::new(spec.rate, channels)?)
            }
        };
        let mut buffer = SampleBuffer::<f32>::new(audio.capacity() as u64, spec);
        buffer.copy_interleaved_ref(audio);
        let out = conv.push(buffer.samples())?;
        if !out.is_empty() && !thread.send(SourceEvent::Audio(out)) {
            return Ok(());
        }
    }
}

/// The sample rate an MPEG audio frame's header names (`data` starting with
/// the frame sync), or `None` when it is not such a header.
fn mpeg_frame_rate(data: &[u8]) -> Option<u32> {
    let [0xff, b1, b2, ..] = *data else {
        return None;
    };
    if b1 & 0xe0 != 0xe0 {
        return None;
    }
    let rates: [u32; 3] = match (b1 >> 3) & 0b11 {
        0b11 => [44_100, 48_000, 32_000],
        0b10 => [22_050, 24_000, 16_000],
        0b00 => [11_025, 12_000, 8_000],
        _ => return None,
    };
    rates.get(usize::from((b2 >> 2) & 0b11)).copied()
}

/// Decoded audio → stereo at [`RATE`].
struct Converter {
    rate: u32,
    channels: usize,
    resampler: Option<FftFixedIn<f32>>,
    /// Stereo frames waiting for a whole resampler chunk.
    left: Vec<f32>,
    right: Vec<f32>,
}

impl Converter {
    fn new(rate: u32, channels: usize) -> Result<Self, String> {
        let resampler = if rate == RATE {
            None
        } else {
            Some(
                FftFixedIn::new(rate as usize, RATE as usize, RESAMPLE_CHUNK, 2, 2)
                    .map_err(|e| format!("cannot resample {rate} Hz: {e}"))?,
            )
        };
        Ok(Self {
            rate,
            channels,
            resampler,
            left: Vec::new(),
            right: Vec::new(),
        })
    }

    fn push(&mut self, interleaved: &[f32]) -> Result<Vec<f32>, String> {
        for frame in interleaved.chunks_exact(self.channels) {
            let l = frame[0];
            let r = if self.channels > 1 { frame[1] } else { l };
            self.left.push(l);
            self.right.push(r);
        }
        let mut out = Vec::new();
        let Some(resampler) = self.resampler.as_mut() else {
            for (l, r) in self.left.drain(..).zip(self.right.drain(..)) {
                out.extend([l, r]);
            }
            return Ok(out);
        };
        while self.left.len() >= resampler.input_frames_next() {
            let n = resampler.input_frames_next();
            let input = [&self.left[..n], &self.right[..n]];
            let produced = resampler
                .process(&input, None)
                .map_err(|e| format!("resampling failed: {e}"))?;
            self.left.drain(..n);
            self.right.drain(..n);
            if let [l, r] = produced.as_slice() {
                for (a, b) in l.iter().zip(r) {
                    out.extend([*a, *b]);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A WAV header for an endless stream (the length fields at their maximum).
    fn wav_header(rate: u32, channels: u16) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend(b"RIFF");
        h.extend(u32::MAX.to_le_bytes());
        h.extend(b"WAVEfmt ");
        h.extend(16u32.to_le_bytes());
        h.extend(1u16.to_le_bytes());
        h.extend(channels.to_le_bytes());
        h.extend(rate.to_le_bytes());
        h.extend((rate * u32::from(channels) * 2).to_le_bytes());
        h.extend((channels * 2).to_le_bytes());
        h.extend(16u16.to_le_bytes());
        h.extend(b"data");
        h.extend((u32::MAX - 36).to_le_bytes());
        h
    }

    /// Serves one connection on 127.0.0.1 with `respond`, returns the URL.
    fn serve(respond: impl FnOnce(std::net::TcpStream) + Send + 'static) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                // Read the request first, and close by a FIN after the
                // answer: a socket closed with unread bytes sends a reset,
                // which can discard the answer before the client reads it.
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                while !request.ends_with(b"\r\n\r\n")
                    && stream.read(&mut byte).is_ok_and(|n| n == 1)
                {
                    request.push(byte[0]);
                }
                if let Ok(answer) = stream.try_clone() {
                    respond(answer);
                }
                let _ = stream.shutdown(std::net::Shutdown::Write);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = std::io::copy(&mut stream, &mut std::io::sink());
            }
        });
        format!("http://{addr}/stream")
    }

    fn events_until(
        source: &RunningSource,
        timeout: Duration,
        done: impl Fn(&[SourceEvent]) -> bool,
    ) -> Vec<SourceEvent> {
        let until = Instant::now() + timeout;
        let mut events = Vec::new();
        while Instant::now() < until && !done(&events) {
            match source.try_next() {
                Some(e) => events.push(e),
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        events
    }

    #[test]
    fn a_mono_44k_stream_becomes_stereo_48k_through_a_redirect() {
        let target = serve(|mut s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: audio/wav\r\n\r\n");
            let _ = s.write_all(&wav_header(44_100, 1));
            let second: Vec<u8> = (0..44_100).flat_map(|_| 8_192i16.to_le_bytes()).collect();
            let _ = s.write_all(&second);
        });
        let url = serve(move |mut s| {
            let _ = s.write_all(
                format!("HTTP/1.1 302 Found\r\nlocation: {target}\r\ncontent-length: 0\r\n\r\n")
                    .as_bytes(),
            );
        });
        let source = open(url).expect("starts");
        let events = events_until(&source, Duration::from_secs(10), |e| {
            e.iter().any(|e| matches!(e, SourceEvent::Problem(_)))
        });
        let samples: Vec<f32> = events
            .iter()
            .filter_map(|e| match e {
                SourceEvent::Audio(s) => Some(s.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        // About a second at 48 kHz stereo (the resampler keeps a chunk back).
        assert!(samples.len() > 2 * 40_000, "{}", samples.len());
        let mid = samples[samples.len() / 2];
        assert!((mid - 0.25).abs() < 0.02, "{mid}");
        // The stream's end is reported, to be reconnected.
        assert!(
            matches!(events.last(), Some(SourceEvent::Problem(p)) if p.contains("reconnecting"))
        );
    }

    #[test]
    fn mpeg_headers_name_their_rate() {
        // MPEG-1 layer III at 44.1, 48 and 32 kHz; MPEG-2 at 22.05 kHz.
        assert_eq!(mpeg_frame_rate(&[0xff, 0xfb, 0x90, 0x64]), Some(44_100));
        assert_eq!(mpeg_frame_rate(&[0xff, 0xfb, 0x94, 0x64]), Some(48_000));
        assert_eq!(mpeg_frame_rate(&[0xff, 0xfb, 0x98, 0x64]), Some(32_000));
        assert_eq!(mpeg_frame_rate(&[0xff, 0xf3, 0x90, 0x64]), Some(22_050));
        // Reserved rate, reserved version, no sync, too short.
        assert_eq!(mpeg_frame_rate(&[0xff, 0xfb, 0x9c, 0x64]), None);
        assert_eq!(mpeg_frame_rate(&[0xff, 0xeb, 0x90, 0x64]), None);
        assert_eq!(mpeg_frame_rate(&[0x49, 0x44, 0x33, 0x04]), None);
        assert_eq!(mpeg_frame_rate(&[0xff]), None);
    }

    /// One second of a 440 Hz tone at `rate`, encoded by `lame` (mono, no
    /// tag frame, so that two can be joined into one stream); `None` when
    /// `lame` is missing outside CI.
    fn lame_mp3(dir: &std::path::Path, rate: u32) -> Option<Vec<u8>> {
        let raw = dir.join(format!("tone{rate}.raw"));
        let pcm: Vec<u8> = (0..rate)
            .flat_map(|n| {
                let t = f64::from(n) / f64::from(rate);
                (((t * 440.0 * std::f64::consts::TAU).sin() * 8_000.0) as i16).to_le_bytes()
            })
            .collect();
        std::fs::write(&raw, pcm).expect("write the tone");
        let mp3 = dir.join(format!("tone{rate}.mp3"));
        let khz = format!("{}", f64::from(rate) / 1000.0);
        let ran = std::process::Command::new("lame")
            .args(["--quiet", "-r", "-s", &khz, "--bitwidth", "16", "--signed"])
            .args(["--little-endian", "-m", "m", "-t", "--resample", &khz])
            .arg(&raw)
            .arg(&mp3)
            .status();
        match ran {
            Ok(status) if status.success() => Some(std::fs::read(&mp3).expect("read the mp3")),
            other if std::env::var_os("CI").is_some() => {
                panic!("lame is needed (.ci/setup installs it): {other:?}")
            }
            other => {
                eprintln!("skipped: install lame to run this test ({other:?})");
                None
            }
        }
    }

    #[test]
    fn an_mp3_stream_that_changes_its_rate_says_so_and_reconnects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (Some(first), Some(second)) =
            (lame_mp3(dir.path(), 44_100), lame_mp3(dir.path(), 32_000))
        else {
            return;
        };
        assert_eq!(mpeg_frame_rate(&second[..4]), Some(32_000));
        let url = serve(move |mut s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: audio/mpeg\r\n\r\n");
            let _ = s.write_all(&first);
            let _ = s.write_all(&second);
        });
        let source = open(url).expect("starts");
        let events = events_until(&source, Duration::from_secs(10), |e| {
            e.iter().any(|e| matches!(e, SourceEvent::Problem(_)))
        });
        let heard: usize = events
            .iter()
            .map(|e| match e {
                SourceEvent::Audio(s) => s.len(),
                _ => 0,
            })
            .sum();
        // The first second played (less the decoder's and resampler's delay)…
        assert!(heard > 2 * 40_000, "{heard} samples before the change");
        // …then the change is reported, not played at the wrong speed.
        let problems: Vec<&String> = events
            .iter()
            .filter_map(|e| match e {
                SourceEvent::Problem(p) => Some(p),
                _ => None,
            })
            .collect();
        assert!(
            matches!(events.last(), Some(SourceEvent::Problem(p))
                if p.contains("changed its sample rate from 44100 to 32000 Hz")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_page_that_is_not_audio_says_so() {
        let url = serve(|mut s| {
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 5\r\n\r\nhello",
            );
        });
        let source = open(url).expect("starts");
        let events = events_until(&source, Duration::from_secs(10), |e| !e.is_empty());
        assert!(
            matches!(events.first(), Some(SourceEvent::Problem(p)) if p.contains("not audio")),
            "{events:?}"
        );
    }

    #[test]
    fn bytes_that_are_not_audio_say_so() {
        let url = serve(|mut s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2000\r\n\r\n");
            let _ = s.write_all(&[0x5au8; 2000]);
        });
        let source = open(url).expect("starts");
        let events = events_until(&source, Duration::from_secs(10), |e| !e.is_empty());
        assert!(
            matches!(events.first(), Some(SourceEvent::Problem(p)) if p.contains("not audio")),
            "{events:?}"
        );
    }
}
