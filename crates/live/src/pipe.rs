//! `pipe:PATH`: raw PCM from a FIFO (librespot's `--backend pipe`,
//! shairport-sync's `pipe` backend, MPD's `fifo` output) or a file.
//!
//! A FIFO is opened for reading *and* writing: the open does not wait for a
//! writer, and a writer that closes is not an end of file, so the next
//! writer (the player restarting) is read as if the FIFO had been reopened,
//! and a FIFO with no writer is silence, never a stall or a busy loop. The
//! handle kept for writing also wakes the reader when the source is
//! stopped. A regular file is read once, paced by the origin, and its end
//! ends the source. A partial frame at the end of a read waits for the rest
//! ([`PcmDecoder`]); a read error is reported and the path reopened a
//! second later.

use crate::format::{PcmDecoder, PcmFormat};
use crate::source::{RunningSource, SourceEvent, SourceThread};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Starts reading `path` as `format`. Fails at once if the path does not exist.
pub fn open(path: PathBuf, format: PcmFormat) -> std::io::Result<RunningSource> {
    let fifo = std::fs::metadata(&path)?.file_type().is_fifo();
    let file = open_path(&path, fifo)?;
    let (mut source, thread) = RunningSource::new(format.rate, format.channels);
    if fifo {
        let mut waker = file.try_clone()?;
        let frame = vec![0u8; format.frame_bytes()];
        source.set_waker(Box::new(move || {
            let _ = waker.write_all(&frame);
        }));
    }
    std::thread::Builder::new()
        .name("firefly-live-pipe".into())
        .spawn(move || read_loop(&path, fifo, file, format, &thread))?;
    Ok(source)
}

fn open_path(path: &Path, fifo: bool) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(fifo).open(path)
}

fn read_loop(path: &Path, fifo: bool, mut file: File, format: PcmFormat, thread: &SourceThread) {
    let mut decoder = PcmDecoder::new(format);
    // About 20 ms a read: small enough that audio goes on at once.
    let chunk = (format.frame_bytes() * format.rate as usize / 50).max(format.frame_bytes());
    let mut bytes = vec![0u8; chunk];
    loop {
        if thread.stopped() {
            return;
        }
        match file.read(&mut bytes) {
            Ok(0) => {
                if decoder.carried() > 0 {
                    let _ = thread.send(SourceEvent::Problem(format!(
                        "{}: ended in the middle of a frame ({} bytes dropped)",
                        path.display(),
                        decoder.carried()
                    )));
                }
                let _ = thread.send(SourceEvent::Ended(format!(
                    "{}: end of file",
                    path.display()
                )));
                return;
            }
            Ok(n) => {
                let mut samples = Vec::with_capacity(n / format.encoding.bytes());
                decoder.push(&bytes[..n], &mut samples);
                if !samples.is_empty() && !thread.send(SourceEvent::Audio(samples)) {
                    return;
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => {
                if !thread.send(SourceEvent::Problem(format!(
                    "{}: {err}; reopening",
                    path.display()
                ))) || !thread.sleep(Duration::from_secs(1))
                {
                    return;
                }
                decoder.reset();
                match open_path(path, fifo) {
                    Ok(f) => file = f,
                    Err(err) => {
                        let _ = thread.send(SourceEvent::Ended(format!(
                            "{}: cannot reopen: {err}",
                            path.display()
                        )));
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn next(source: &RunningSource, timeout: Duration) -> Option<SourceEvent> {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if let Some(event) = source.try_next() {
                return Some(event);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    #[test]
    fn a_file_is_read_with_its_partial_frame_reported_then_ends() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pcm");
        // Two stereo s16 frames and half of a third.
        std::fs::write(&path, [0, 0x40, 0, 0xc0, 0, 0x20, 0, 0x20, 1, 2]).expect("write");
        let source = open(path, PcmFormat::default()).expect("opens");
        let mut samples = Vec::new();
        let mut ended = None;
        while let Some(event) = next(&source, Duration::from_secs(5)) {
            match event {
                SourceEvent::Audio(s) => samples.extend(s),
                SourceEvent::Problem(p) => assert!(p.contains("middle of a frame"), "{p}"),
                SourceEvent::Ended(why) => {
                    ended = Some(why);
                    break;
                }
            }
        }
        assert_eq!(samples, vec![0.5, -0.5, 0.25, 0.25]);
        assert!(ended.expect("ends").contains("end of file"));
    }

    #[test]
    fn a_missing_path_is_an_error_at_once() {
        assert!(
            open(
                PathBuf::from("/nonexistent/firefly-fifo"),
                PcmFormat::default()
            )
            .is_err()
        );
    }

    #[test]
    fn a_fifo_survives_its_writer_closing_and_stops_when_asked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .expect("mkfifo runs");
        assert!(status.success());
        let mut source = open(path.clone(), PcmFormat::default()).expect("opens with no writer");
        for round in 0..2 {
            let mut writer = OpenOptions::new().write(true).open(&path).expect("writer");
            writer.write_all(&[0, 0x40, 0, 0x40]).expect("write");
            drop(writer);
            match next(&source, Duration::from_secs(5)) {
                Some(SourceEvent::Audio(s)) => assert_eq!(s, vec![0.5, 0.5], "round {round}"),
                other => panic!("round {round}: {other:?}"),
            }
        }
        // No writer: nothing, and no end.
        assert_eq!(next(&source, Duration::from_millis(200)), None);
        source.stop();
    }
}
