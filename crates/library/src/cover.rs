//! Cover art: the picture embedded in a track's tags (ID3 `APIC`, FLAC
//! `PICTURE`, MP4 `covr`, …), as symphonia reports it while probing.
//!
//! Only pictures Firefly can vouch for are kept: at most
//! [`MAX_COVER_BYTES`], in a format recognized by its first bytes (JPEG,
//! PNG, GIF, WebP) — the tag's own media type is not trusted, so what the
//! API serves under `image/png` really starts like a PNG. The front cover
//! wins over other pictures. The store keeps each picture once, by its
//! BLAKE3 hash (see `tables`).
//!
//! What it isn't: an image decoder or resizer; the bytes are kept as found.

use symphonia::core::meta::{MetadataRevision, StandardVisualKey};

/// Largest picture kept, in bytes (1 MiB); larger ones are left out.
pub const MAX_COVER_BYTES: usize = 1024 * 1024;

/// An embedded picture, checked to be a small image of a known format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cover {
    /// The media type its first bytes show (`image/jpeg`, `image/png`,
    /// `image/gif`, `image/webp`).
    pub media_type: &'static str,
    /// The picture as stored in the tags.
    pub bytes: Vec<u8>,
}

impl Cover {
    /// `bytes` as a cover, when they are at most [`MAX_COVER_BYTES`] long
    /// and start like an image format browsers show.
    pub fn from_bytes(bytes: Vec<u8>) -> Option<Cover> {
        if bytes.is_empty() || bytes.len() > MAX_COVER_BYTES {
            return None;
        }
        let media_type = sniff(&bytes)?;
        Some(Cover { media_type, bytes })
    }

    /// The BLAKE3 hash the store keeps the picture under.
    pub fn hash(&self) -> [u8; 32] {
        *blake3::hash(&self.bytes).as_bytes()
    }
}

/// The image format `bytes` start with, as a media type.
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// Keeps the best picture seen across metadata revisions: a front cover
/// beats any other picture; among equals the first one stays.
#[derive(Debug, Default)]
pub(crate) struct CoverPick {
    best: Option<(bool, Cover)>,
}

impl CoverPick {
    /// Looks at the pictures of one revision.
    pub(crate) fn absorb(&mut self, rev: &MetadataRevision) {
        for visual in rev.visuals() {
            let front = visual.usage == Some(StandardVisualKey::FrontCover);
            if self.best.as_ref().is_some_and(|(f, _)| *f || !front) {
                continue;
            }
            if visual.data.len() > MAX_COVER_BYTES {
                continue;
            }
            if let Some(cover) = Cover::from_bytes(visual.data.to_vec()) {
                self.best = Some((front, cover));
            }
        }
    }

    /// The picture chosen, if any.
    pub(crate) fn into_cover(self) -> Option<Cover> {
        self.best.map(|(_, cover)| cover)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_small_pictures_of_known_formats_are_kept() {
        let png = b"\x89PNG\r\n\x1a\n rest".to_vec();
        assert_eq!(Cover::from_bytes(png).unwrap().media_type, "image/png");
        let jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 1, 2];
        assert_eq!(Cover::from_bytes(jpeg).unwrap().media_type, "image/jpeg");
        let webp = b"RIFF\0\0\0\0WEBPVP8 ".to_vec();
        assert_eq!(Cover::from_bytes(webp).unwrap().media_type, "image/webp");
        assert!(Cover::from_bytes(b"<svg onload=alert(1)>".to_vec()).is_none());
        assert!(Cover::from_bytes(Vec::new()).is_none());
        let mut huge = b"GIF89a".to_vec();
        huge.resize(MAX_COVER_BYTES + 1, 0);
        assert!(Cover::from_bytes(huge).is_none());
    }
}
