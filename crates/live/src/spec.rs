//! How a source is named: `pipe:PATH[?format=s16le&rate=48000&channels=2]`,
//! `url:http://…`, `cmd:PROGRAM ARGS`.

use crate::format::{FormatError, PcmFormat, clip};
use crate::source::RunningSource;
use std::fmt;
use std::path::PathBuf;

/// Longest source spec accepted, in bytes.
pub const MAX_SPEC_LEN: usize = 1024;

/// Why a source spec is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// Not `pipe:`, `url:` or `cmd:`.
    #[error("source {0:?} must start with pipe:, url: or cmd:")]
    Kind(String),
    /// Nothing after the kind.
    #[error("source {0:?} names nothing")]
    Empty(String),
    /// Longer than [`MAX_SPEC_LEN`] or has control characters.
    #[error("source spec must be at most {MAX_SPEC_LEN} bytes without control characters")]
    Shape,
    /// The PCM format options are wrong.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A URL that is not plain `http://` (no TLS in this build).
    #[error("url {0:?} must start with http://")]
    Scheme(String),
}

/// A source: where its audio comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// Raw PCM read from a FIFO or a file.
    Pipe {
        /// The FIFO or file.
        path: PathBuf,
        /// What it carries.
        format: PcmFormat,
    },
    /// An Icecast/Shoutcast stream (MP3, AAC, Ogg, FLAC), decoded.
    Url {
        /// `http://…`.
        url: String,
    },
    /// A program whose standard output is raw PCM (s16le, 48 kHz, stereo).
    Cmd {
        /// The program.
        program: String,
        /// Its arguments (split at whitespace; no quoting).
        args: Vec<String>,
    },
}

impl std::str::FromStr for SourceSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        if s.len() > MAX_SPEC_LEN || s.chars().any(char::is_control) {
            return Err(SpecError::Shape);
        }
        let (kind, rest) = s.split_once(':').ok_or_else(|| SpecError::Kind(clip(s)))?;
        if rest.trim().is_empty() {
            return Err(SpecError::Empty(clip(s)));
        }
        match kind {
            "pipe" => {
                let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
                Ok(Self::Pipe {
                    path: PathBuf::from(path),
                    format: PcmFormat::parse_query(query)?,
                })
            }
            "url" => {
                if !rest.starts_with("http://") {
                    return Err(SpecError::Scheme(clip(rest)));
                }
                Ok(Self::Url {
                    url: rest.to_owned(),
                })
            }
            "cmd" => {
                let mut words = rest.split_whitespace().map(str::to_owned);
                let program = words.next().ok_or_else(|| SpecError::Empty(clip(s)))?;
                Ok(Self::Cmd {
                    program,
                    args: words.collect(),
                })
            }
            _ => Err(SpecError::Kind(clip(s))),
        }
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pipe { path, format } => {
                write!(f, "pipe:{}", path.display())?;
                if *format != PcmFormat::default() {
                    let enc = match format.encoding {
                        crate::SampleEncoding::S16le => "s16le",
                        crate::SampleEncoding::S24le => "s24le",
                        crate::SampleEncoding::S32le => "s32le",
                        crate::SampleEncoding::F32le => "f32le",
                    };
                    write!(
                        f,
                        "?format={enc}&rate={}&channels={}",
                        format.rate, format.channels
                    )?;
                }
                Ok(())
            }
            Self::Url { url } => write!(f, "url:{url}"),
            Self::Cmd { program, args } => {
                write!(f, "cmd:{program}")?;
                for arg in args {
                    write!(f, " {arg}")?;
                }
                Ok(())
            }
        }
    }
}

impl SourceSpec {
    /// The kind: `pipe`, `url` or `cmd`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Pipe { .. } => "pipe",
            Self::Url { .. } => "url",
            Self::Cmd { .. } => "cmd",
        }
    }

    /// The stream's format: the pipe's declared one; 48 kHz stereo for a
    /// program's output and for a decoded URL (resampled to it).
    pub fn stream_format(&self) -> PcmFormat {
        match self {
            Self::Pipe { format, .. } => *format,
            _ => PcmFormat::default(),
        }
    }

    /// Starts reading the source on its own thread.
    pub fn open(&self) -> std::io::Result<RunningSource> {
        match self {
            Self::Pipe { path, format } => crate::pipe::open(path.clone(), *format),
            Self::Url { url } => crate::url::open(url.clone()),
            Self::Cmd { program, args } => crate::cmd::open(program.clone(), args.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        for text in [
            "pipe:/tmp/snapfifo",
            "pipe:/tmp/f?format=s24le&rate=44100&channels=1",
            "url:http://127.0.0.1:8000/stream.mp3",
            "cmd:librespot --backend pipe",
        ] {
            let spec: SourceSpec = text.parse().expect("valid");
            assert_eq!(spec.to_string(), text);
        }
        let pipe: SourceSpec = "pipe:/tmp/f?rate=44100".parse().expect("valid");
        assert_eq!(pipe.stream_format().rate, 44_100);
    }

    #[test]
    fn bad_specs_say_why() {
        assert!(matches!(
            "file:/x".parse::<SourceSpec>(),
            Err(SpecError::Kind(_))
        ));
        assert!(matches!(
            "pipe:".parse::<SourceSpec>(),
            Err(SpecError::Empty(_))
        ));
        assert!(matches!(
            "cmd:   ".parse::<SourceSpec>(),
            Err(SpecError::Empty(_))
        ));
        assert!(matches!(
            "url:https://x".parse::<SourceSpec>(),
            Err(SpecError::Scheme(_))
        ));
        assert!(matches!(
            "pipe:/x?rate=5".parse::<SourceSpec>(),
            Err(SpecError::Format(_))
        ));
        assert!(matches!(
            "pipe:/x\n".parse::<SourceSpec>(),
            Err(SpecError::Shape)
        ));
    }
}
