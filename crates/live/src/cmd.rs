//! `cmd:PROGRAM ARGS`: a program's standard output as raw PCM (s16le,
//! 48 kHz, stereo). Its standard error goes to the log, a line at a time
//! (bounded). When it exits the source ends, with its exit status as the
//! reason; stopping the source kills it.

use crate::format::{PcmDecoder, PcmFormat};
use crate::source::{RunningSource, SourceEvent, SourceThread};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

/// Longest line of a program's standard error logged; the rest is cut.
const MAX_LOG_LINE: usize = 200;

/// Starts `program` with `args`. Fails at once if it cannot be started.
pub fn open(program: String, args: Vec<String>) -> std::io::Result<RunningSource> {
    let format = PcmFormat::default();
    let mut child = Command::new(&program)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("no standard output"))?;
    if let Some(stderr) = child.stderr.take() {
        let name = program.clone();
        std::thread::Builder::new()
            .name("firefly-live-stderr".into())
            .spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let line: String = line.chars().take(MAX_LOG_LINE).collect();
                    tracing::info!(program = %name, "{line}");
                }
            })?;
    }
    let child = Arc::new(Mutex::new(child));
    let (mut source, thread) = RunningSource::new(format.rate, format.channels);
    let killer = Arc::clone(&child);
    source.set_waker(Box::new(move || {
        let _ = lock(&killer).kill();
    }));
    std::thread::Builder::new()
        .name("firefly-live-cmd".into())
        .spawn(move || read_loop(&program, stdout, &child, format, &thread))?;
    Ok(source)
}

fn lock(child: &Mutex<Child>) -> std::sync::MutexGuard<'_, Child> {
    child
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read_loop(
    program: &str,
    mut stdout: ChildStdout,
    child: &Mutex<Child>,
    format: PcmFormat,
    thread: &SourceThread,
) {
    let mut decoder = PcmDecoder::new(format);
    let mut bytes = vec![0u8; format.frame_bytes() * format.rate as usize / 50];
    loop {
        match stdout.read(&mut bytes) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let mut samples = Vec::with_capacity(n / 2);
                decoder.push(&bytes[..n], &mut samples);
                if !samples.is_empty() && !thread.send(SourceEvent::Audio(samples)) {
                    let _ = lock(child).kill();
                    break;
                }
            }
        }
    }
    let status = lock(child).wait();
    let reason = match status {
        Ok(status) => format!("{program} exited ({status})"),
        Err(err) => format!("{program}: {err}"),
    };
    let _ = thread.send(SourceEvent::Ended(reason));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_programs_output_is_read_and_its_exit_ends_the_source() {
        // printf writes two stereo frames, then exits 3.
        let source = open(
            "sh".into(),
            vec![
                "-c".into(),
                r"printf '\000\100\000\100\000\040\000\040'; exit 3".into(),
            ],
        )
        .expect("sh starts");
        let until = Instant::now() + Duration::from_secs(10);
        let mut samples = Vec::new();
        let reason = loop {
            assert!(Instant::now() < until, "no end");
            match source.try_next() {
                Some(SourceEvent::Audio(s)) => samples.extend(s),
                Some(SourceEvent::Ended(why)) => break why,
                Some(SourceEvent::Problem(p)) => panic!("{p}"),
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        assert_eq!(samples, vec![0.5, 0.5, 0.25, 0.25]);
        assert!(
            reason.contains("sh exited") && reason.contains('3'),
            "{reason}"
        );
    }

    #[test]
    fn a_missing_program_is_an_error_at_once() {
        assert!(open("/nonexistent/firefly-program".into(), vec![]).is_err());
    }
}
