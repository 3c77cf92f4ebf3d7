//! File names for downloaded tracks, made from untrusted tags.
//!
//! Tags come from peers, so a title may be `../../x`, `/etc/passwd`, hold NUL
//! or control characters, be 300 characters long, be a Windows device name or
//! be nothing but dots. [`FileName::for_track`] turns any of them into one
//! plain file name (`Artist - Title.ext`) that stays inside the folder it is
//! joined to; [`FileName::candidate`] numbers it (`Title (2).ext`) so an
//! existing file is never clobbered. [`display_text`] is the same care for
//! text that is only shown (titles, artists, node names): it drops control
//! and bidirectional-override characters, which could rewrite a terminal or
//! make a name read backwards (`U+202E`). Sans-IO: no file system access here.

/// Longest stem (name without extension) kept, in bytes.
pub const MAX_STEM_LEN: usize = 150;
/// Longest extension kept, in bytes.
const MAX_EXT_LEN: usize = 8;

/// Device names Windows reserves in any folder, with any extension.
const RESERVED: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// A sanitized file name, split so it can be numbered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName {
    /// The name without extension: no separators, no control characters, no
    /// leading or trailing dots or spaces, at most [`MAX_STEM_LEN`] bytes, not
    /// a reserved device name, never empty.
    stem: String,
    /// ASCII letters and digits only, 1..=8 of them.
    ext: String,
}

impl FileName {
    /// `Artist - Title.ext` (or `Title.ext` without an artist), sanitized.
    pub fn for_track(artist: Option<&str>, title: &str, ext: &str) -> Self {
        let artist = artist.map(clean).filter(|a| !a.is_empty());
        let title = clean(title);
        let title = if title.is_empty() {
            "Untitled".to_owned()
        } else {
            title
        };
        let raw = match artist {
            Some(a) => format!("{a} - {title}"),
            None => title,
        };
        Self {
            stem: finish_stem(&raw),
            ext: clean_ext(ext),
        }
    }

    /// The `n`th name to try: `n == 1` is the plain name, later ones are
    /// `stem (n).ext`.
    pub fn candidate(&self, n: u32) -> String {
        if n <= 1 {
            format!("{}.{}", self.stem, self.ext)
        } else {
            format!("{} ({n}).{}", self.stem, self.ext)
        }
    }
}

/// Whether `c` changes the direction text is shown in (the explicit
/// embeddings, overrides and isolates, and the invisible direction marks).
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// `text` without control characters (ESC, BEL, newlines…) and without
/// bidirectional controls ([`is_bidi_control`]): safe to store, to show in a
/// terminal or a page, and to start a file name from.
pub fn display_text(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() && !is_bidi_control(*c))
        .collect()
}

/// Replaces everything that could make a name a path or unprintable.
fn clean(text: &str) -> String {
    let replaced: String = text
        .chars()
        .filter(|c| !is_bidi_control(*c))
        .map(|c| match c {
            '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect();
    replaced
        .trim_matches(|c: char| c == '.' || c.is_whitespace())
        .to_owned()
}

/// Bounds the length, strips edge dots and spaces again after cutting, and
/// defuses device names.
fn finish_stem(raw: &str) -> String {
    let mut cut = raw.len().min(MAX_STEM_LEN);
    while !raw.is_char_boundary(cut) {
        cut -= 1;
    }
    let stem = raw[..cut]
        .trim_matches(|c: char| c == '.' || c.is_whitespace())
        .to_owned();
    if stem.is_empty() {
        return "Untitled".to_owned();
    }
    let device = stem.split('.').next().unwrap_or("").trim_end();
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(device)) {
        return format!("_{stem}");
    }
    stem
}

fn clean_ext(ext: &str) -> String {
    let ext: String = ext
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(MAX_EXT_LEN)
        .collect::<String>()
        .to_ascii_lowercase();
    if ext.is_empty() {
        "audio".to_owned()
    } else {
        ext
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn plain(name: &str) -> bool {
        !name.is_empty()
            && !name.contains(['/', '\\', '\0'])
            && !name.chars().any(|c| c.is_control() || is_bidi_control(c))
            && !name.starts_with('.')
            && name != ".."
            && name.len() <= MAX_STEM_LEN + 1 + MAX_EXT_LEN + 12
    }

    #[test]
    fn hostile_titles_become_plain_names() {
        let long = "x".repeat(300);
        for title in [
            "../../x",
            "/etc/passwd",
            "a\0b",
            &long,
            "CON",
            "",
            "...",
            ". . .",
        ] {
            let name = FileName::for_track(None, title, "mp3").candidate(1);
            assert!(plain(&name), "{title:?} -> {name:?}");
            assert!(name.ends_with(".mp3"));
        }
        assert_eq!(
            FileName::for_track(None, "CON", "mp3").candidate(1),
            "_CON.mp3"
        );
        assert_eq!(
            FileName::for_track(None, "../../x", "mp3").candidate(1),
            "_.._x.mp3"
        );
        assert_eq!(
            FileName::for_track(None, "...", "mp3").candidate(1),
            "Untitled.mp3"
        );
    }

    #[test]
    fn display_text_drops_controls_and_bidi_overrides() {
        assert_eq!(display_text("a\u{1b}[31mb\u{7}\nc"), "a[31mbc");
        assert_eq!(display_text("evil\u{202E}3pm.exe"), "evil3pm.exe");
        assert_eq!(display_text("Zoë \u{2066}x\u{2069}"), "Zoë x");
        let name = FileName::for_track(None, "song\u{202E}gpj", "mp3").candidate(1);
        assert_eq!(name, "songgpj.mp3");
    }

    #[test]
    fn artist_and_title_and_numbering() {
        let n = FileName::for_track(Some("The Lanterns"), "Signal Fire", "MP3");
        assert_eq!(n.candidate(1), "The Lanterns - Signal Fire.mp3");
        assert_eq!(n.candidate(2), "The Lanterns - Signal Fire (2).mp3");
        assert_eq!(
            FileName::for_track(Some("  "), "T", "../x").candidate(1),
            "T.x"
        );
        assert_eq!(FileName::for_track(None, "T", "").candidate(1), "T.audio");
    }

    #[test]
    fn long_multibyte_titles_are_cut_on_a_char_boundary() {
        let name = FileName::for_track(None, &"é".repeat(300), "flac").candidate(1);
        assert!(name.len() <= MAX_STEM_LEN + 5);
        assert!(name.trim_end_matches(".flac").chars().all(|c| c == 'é'));
    }

    proptest! {
        #[test]
        fn display_text_keeps_no_control(text in any::<String>()) {
            let shown = display_text(&text);
            prop_assert!(!shown.chars().any(|c| c.is_control() || is_bidi_control(c)));
        }

        #[test]
        fn any_tags_give_a_plain_name(artist in any::<Option<String>>(), title in any::<String>(), ext in any::<String>(), n in 1u32..1000) {
            let name = FileName::for_track(artist.as_deref(), &title, &ext).candidate(n);
            prop_assert!(plain(&name), "{:?}", name);
            let path = std::path::Path::new(&name);
            prop_assert_eq!(path.components().count(), 1);
            prop_assert!(matches!(path.components().next(), Some(std::path::Component::Normal(_))));
        }
    }
}
