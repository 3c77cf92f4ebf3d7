//! The web UI's library and transport in a real browser: headless Chromium
//! clicks every control on the page of a real `firefly up` (virtual output)
//! holding real tagged audio files, and the test checks through the API
//! that the node's state changed accordingly.
//!
//! Tags are untrusted: one title is markup, and must stay text.

use crate::playback::{NodeSpec, RATE, http, spawn_node, wait_until};
use crate::ui::{chromium, json_true};
use crate::ui_cdp::{Browser, Page};
use crate::util::fixtures;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

/// A title that is markup.
const HOSTILE: &str = "<img src=x onerror=alert(3)> Second Light";

/// An ID3v2.3 tag (title, artist, album, track number) with an `APIC`
/// front cover holding `picture`.
fn id3_tag(title: &str, artist: &str, album: &str, number: u32, picture: &[u8]) -> Vec<u8> {
    fn frame(id: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut f = id.to_vec();
        f.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(body);
        f
    }
    let text = |s: &str| [&[3u8][..], s.as_bytes()].concat(); // UTF-8
    let mut body = Vec::new();
    body.extend(frame(b"TIT2", &text(title)));
    body.extend(frame(b"TPE1", &text(artist)));
    body.extend(frame(b"TALB", &text(album)));
    body.extend(frame(b"TRCK", &text(&number.to_string())));
    let mut apic = b"\0image/png\0\x03\0".to_vec();
    apic.extend_from_slice(picture);
    body.extend(frame(b"APIC", &apic));
    let mut tag = b"ID3\x03\x00\x00".to_vec();
    for shift in [21, 14, 7, 0] {
        tag.push(((body.len() >> shift) & 0x7f) as u8);
    }
    tag.extend(body);
    tag
}

/// `tone.mp3`'s audio (2 s) under a new tag with `picture` as its cover.
pub(crate) fn tagged_mp3(title: &str, number: u32, picture: &[u8]) -> Vec<u8> {
    let mp3 = std::fs::read(fixtures().join("tone.mp3")).unwrap();
    // Skip the fixture's own ID3v2 tag.
    let size = mp3[6..10]
        .iter()
        .fold(0usize, |acc, b| (acc << 7) | usize::from(b & 0x7f));
    let mut out = id3_tag(title, "The Lanterns", "Night Meadow", number, picture);
    out.extend_from_slice(&mp3[10 + size..]);
    out
}

/// A valid 1×1 PNG (real CRCs and zlib stream).
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
        let typed = [&kind[..], data].concat();
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

/// A stereo 44.1 kHz WAV of `secs` seconds (a tone at `hz`) whose RIFF
/// `INFO` list tags its title, artist, album and track number.
fn tagged_wav(path: &Path, secs: u32, hz: f64, tags: [&str; 4]) {
    let mut pcm = Vec::with_capacity((secs * RATE * 4) as usize);
    for n in 0..secs * RATE {
        let t = f64::from(n) / f64::from(RATE);
        let v = ((t * hz * std::f64::consts::TAU).sin() * 0.2 * f64::from(i16::MAX)) as i16;
        pcm.extend_from_slice(&v.to_le_bytes());
        pcm.extend_from_slice(&v.to_le_bytes());
    }
    let mut info = b"INFO".to_vec();
    for (id, value) in [b"INAM", b"IART", b"IPRD", b"IPRT"].iter().zip(tags) {
        let mut text = value.as_bytes().to_vec();
        text.push(0);
        if text.len() % 2 == 1 {
            text.push(0);
        }
        info.extend_from_slice(*id);
        info.extend_from_slice(&u32::try_from(text.len()).unwrap().to_le_bytes());
        info.extend_from_slice(&text);
    }
    let u32_of = |n: usize| u32::try_from(n).unwrap().to_le_bytes();
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&u32_of(4 + 24 + 8 + pcm.len() + 8 + info.len()));
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&RATE.to_le_bytes());
    out.extend_from_slice(&(RATE * 4).to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    // Before the data: the reader stops at the data chunk.
    out.extend_from_slice(b"LIST");
    out.extend_from_slice(&u32_of(info.len()));
    out.extend_from_slice(&info);
    out.extend_from_slice(b"data");
    out.extend_from_slice(&u32_of(pcm.len()));
    out.extend_from_slice(&pcm);
    std::fs::write(path, out).unwrap();
}

/// `GET path` raw, through the project's one HTTP client: (status, the
/// response head's headers in lower case, body bytes).
pub(crate) fn fetch(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut response = agent.get(format!("http://{addr}{path}")).call().unwrap();
    let head = response
        .headers()
        .iter()
        .map(|(name, value)| format!("{name}: {}\r\n", value.to_str().unwrap_or("")))
        .collect::<String>()
        .to_lowercase();
    let body = response.body_mut().read_to_vec().unwrap();
    (response.status().as_u16(), head, body)
}

/// The library a test node starts with: two 2 s MP3s of one album with a
/// cover (one titled with markup), and three 20 s WAVs of another album
/// without one. Returns the cover's bytes.
fn write_music(music: &Path) -> Vec<u8> {
    std::fs::create_dir_all(music).unwrap();
    let png = tiny_png([230, 150, 30]);
    std::fs::write(music.join("signal.mp3"), tagged_mp3("Signal Fire", 1, &png)).unwrap();
    std::fs::write(music.join("second.mp3"), tagged_mp3(HOSTILE, 2, &png)).unwrap();
    for (n, (title, hz)) in [
        ("Hour One", 330.0),
        ("Hour Two", 440.0),
        ("Hour Three", 550.0),
    ]
    .into_iter()
    .enumerate()
    {
        let number = (n + 1).to_string();
        tagged_wav(
            &music.join(format!("hour{}.wav", n + 1)),
            20,
            hz,
            [title, "Lamplighters", "Long Evenings", number.as_str()],
        );
    }
    png
}

/// The node's catalog: title → track id.
pub(crate) fn ids(addr: SocketAddr) -> std::collections::HashMap<String, String> {
    let (_, catalog) = http(addr, "GET", "/api/catalog", None);
    catalog
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["title"].as_str().unwrap().to_string(),
                e["track"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn playback(addr: SocketAddr) -> Value {
    http(addr, "GET", "/api/state", None).1["playback"].clone()
}

/// Waits until the node's playback satisfies `ok`; fails with `what`.
fn wait_playback(addr: SocketAddr, what: &str, ok: impl Fn(&Value) -> bool) {
    assert!(
        wait_until(LIMIT, || ok(&playback(addr))),
        "{what}: playback is {}",
        playback(addr)
    );
}

/// Starts the node and opens its page once the browse view lists both artists.
fn open(tmp: &Path) -> (crate::playback::Node, Browser, Page, Vec<u8>) {
    let png = write_music(&tmp.join("n0").join("music"));
    let node = spawn_node(
        tmp,
        &NodeSpec {
            index: 0,
            tracks: &[],
            bootstrap: &[],
            reuse: None,
            extra: &[],
        },
    );
    let binary = chromium().unwrap();
    let mut browser = Browser::start(binary, 1280, 1000);
    let page = browser.open(&format!("http://{}", node.http));
    let artists = "document.querySelectorAll('#artists .artist').length === 2";
    assert_eq!(
        browser.wait(&page, artists, LIMIT),
        json_true(),
        "{}",
        browser.eval(&page, "document.getElementById('artists').outerHTML")
    );
    (node, browser, page, png)
}

/// The selector of a browse row's button.
fn row_button(track: &str, class: &str) -> String {
    format!("#artists li[data-track=\"{track}\"] .{class}")
}

#[test]
fn browsing_by_artist_and_album_shows_covers_as_text_safe_markup_and_plays_and_queues() {
    let _swarm = crate::playback::one_swarm_at_a_time();
    if chromium().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (node, mut browser, page, png) = open(tmp.path());
    let ids = ids(node.http);

    // Grouped: artist → album → tracks in track-number order.
    let order = "[...document.querySelectorAll('.album[data-album=\"Long Evenings\"] li .title')].map(e => e.textContent)";
    assert_eq!(
        browser.eval(&page, order),
        json!(["Hour One", "Hour Two", "Hour Three"]),
        "{}",
        http(node.http, "GET", "/api/catalog", None).1
    );
    let lanterns = "[...document.querySelectorAll('.artist[data-artist=\"The Lanterns\"] li .title')].map(e => e.textContent)";
    assert_eq!(
        browser.eval(&page, lanterns),
        json!(["Signal Fire", HOSTILE])
    );
    // The markup title is text: no element came of it.
    assert_eq!(
        browser.eval(
            &page,
            "document.querySelectorAll('img:not([src^=\"blob:\"])').length"
        ),
        json!(0)
    );

    // The album's cover is the picture from the tags, decoded by the browser;
    // the other album keeps its placeholder.
    let cover = ".album[data-album=\"Night Meadow\"] .cover img";
    assert_eq!(
        browser.wait(
            &page,
            &format!("document.querySelector('{cover}')?.naturalWidth === 1"),
            LIMIT
        ),
        json_true()
    );
    assert_eq!(
        browser.eval(
            &page,
            "document.querySelector('.album[data-album=\"Long Evenings\"] .cover').classList.contains('placeholder')"
        ),
        json_true()
    );
    let (status, head, body) = fetch(node.http, &format!("/api/cover/{}", ids["Signal Fire"]));
    assert_eq!(status, 200);
    assert!(head.contains("content-type: image/png"), "{head}");
    assert_eq!(body, png);
    let (status, _, _) = fetch(node.http, &format!("/api/cover/{}", ids["Hour One"]));
    assert_eq!(status, 404);

    // Play a track from the browse view: the node plays it.
    browser.click(&page, &row_button(&ids["Hour One"], "play"));
    wait_playback(node.http, "play from browse", |p| {
        p["state"] == "playing" && p["track"] == ids["Hour One"].as_str()
    });
    // Queue a track: the queue panel shows it by title.
    browser.click(&page, &row_button(&ids["Hour Three"], "queue-add"));
    wait_playback(node.http, "queue from browse", |p| {
        p["queue"]
            .as_array()
            .is_some_and(|q| q.contains(&json!(ids["Hour Three"])))
    });
    let queued = format!(
        "document.querySelector('#queue li[data-track=\"{}\"] .title')?.textContent === 'Hour Three'",
        ids["Hour Three"]
    );
    assert_eq!(browser.wait(&page, &queued, LIMIT), json_true());
    // Queue a whole album.
    browser.click(&page, ".album[data-album=\"Night Meadow\"] .queue-album");
    wait_playback(node.http, "queue an album", |p| {
        p["queue"].as_array().is_some_and(|q| {
            q.contains(&json!(ids["Signal Fire"])) && q.contains(&json!(ids[HOSTILE]))
        })
    });
    // The now-playing view shows the playing track's cover: a placeholder here.
    assert_eq!(
        browser.eval(
            &page,
            "document.getElementById('now-art').classList.contains('placeholder')"
        ),
        json_true()
    );
    let console = browser.console();
    assert!(console.is_empty(), "console output: {console:#?}");
}

/// The playing track's position in ms as the node reports it.
fn position(addr: SocketAddr) -> u64 {
    playback(addr)["position_ms"].as_u64().unwrap_or(0)
}

#[test]
fn every_transport_and_queue_control_changes_the_nodes_state() {
    let _swarm = crate::playback::one_swarm_at_a_time();
    if chromium().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (node, mut browser, page, _) = open(tmp.path());
    let ids = ids(node.http);
    let hours: Vec<&str> = ["Hour One", "Hour Two", "Hour Three"]
        .iter()
        .map(|t| ids[*t].as_str())
        .collect();
    let addr = node.http;

    // Play an album: its first track, the rest queued in album order.
    browser.click(&page, ".album[data-album=\"Long Evenings\"] .play-album");
    wait_playback(addr, "play album", |p| {
        p["state"] == "playing" && p["track"] == hours[0] && p["queue"] == json!(hours[1..])
    });
    let ui_state = "document.getElementById('now').dataset.state";
    assert_eq!(
        browser.wait(&page, &format!("{ui_state} === 'playing'"), LIMIT),
        json_true()
    );

    // Pause and resume with the one toggle, which follows the state.
    browser.click(&page, "#toggle");
    wait_playback(addr, "pause", |p| p["state"] == "paused");
    let says = |text: &str| format!("document.getElementById('toggle').textContent === '{text}'");
    assert_eq!(browser.wait(&page, &says("Resume"), LIMIT), json_true());
    browser.click(&page, "#toggle");
    wait_playback(addr, "resume", |p| p["state"] == "playing");
    assert_eq!(browser.wait(&page, &says("Pause"), LIMIT), json_true());

    // Next, then previous (within 3 s of the start: the track before).
    browser.click(&page, "#next");
    wait_playback(addr, "next", |p| p["track"] == hours[1]);
    browser.click(&page, "#prev");
    wait_playback(addr, "prev", |p| p["track"] == hours[0]);

    // Seek: a click in the middle of the position bar, half of the 20 s.
    let ready = "!document.getElementById('seek').disabled";
    assert_eq!(browser.wait(&page, ready, LIMIT), json_true());
    browser.click(&page, "#seek");
    assert!(
        wait_until(LIMIT, || (9_000..13_000).contains(&position(addr))),
        "seek: position {} ms",
        position(addr)
    );

    // Shuffle on and off; repeat off → all → one → off.
    browser.click(&page, "#shuffle");
    wait_playback(addr, "shuffle on", |p| p["shuffle"] == true);
    let pressed = "document.getElementById('shuffle').getAttribute('aria-pressed') === 'true'";
    assert_eq!(browser.wait(&page, pressed, LIMIT), json_true());
    browser.click(&page, "#shuffle");
    wait_playback(addr, "shuffle off", |p| p["shuffle"] == false);
    for mode in ["all", "one", "off"] {
        browser.click(&page, "#repeat");
        wait_playback(addr, &format!("repeat {mode}"), |p| p["repeat"] == mode);
        let shown = format!("document.getElementById('repeat').dataset.mode === '{mode}'");
        assert_eq!(browser.wait(&page, &shown, LIMIT), json_true(), "{mode}");
    }

    // The queue panel: move down, remove, clear.
    let queue = |addr| -> Vec<Value> {
        playback(addr)["queue"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let before = queue(addr);
    assert_eq!(before.len(), 2, "{before:?}");
    let rows = format!(
        "document.querySelectorAll('#queue li').length === {}",
        before.len()
    );
    assert_eq!(browser.wait(&page, &rows, LIMIT), json_true());
    browser.click(&page, "#queue li[data-index=\"0\"] .down");
    let swapped = vec![before[1].clone(), before[0].clone()];
    assert!(
        wait_until(LIMIT, || queue(addr) == swapped),
        "move: {:?}",
        queue(addr)
    );
    let first = format!(
        "document.querySelector('#queue li[data-index=\"0\"]')?.dataset.track === {}",
        swapped[0]
    );
    assert_eq!(browser.wait(&page, &first, LIMIT), json_true());
    browser.click(&page, "#queue li[data-index=\"0\"] .remove");
    assert!(
        wait_until(LIMIT, || queue(addr) == vec![swapped[1].clone()]),
        "remove: {:?}",
        queue(addr)
    );
    browser.click(&page, "#tracks .track .queue-add");
    assert!(wait_until(LIMIT, || queue(addr).len() == 2), "queue add");
    browser.click(&page, "#queue-clear");
    assert!(
        wait_until(LIMIT, || queue(addr).is_empty()),
        "clear: {:?}",
        queue(addr)
    );
    assert_eq!(
        browser.wait(
            &page,
            "!document.getElementById('queue-empty').hidden",
            LIMIT
        ),
        json_true()
    );

    // Play an artist: one of its tracks plays, with the tags' cover shown.
    browser.click(&page, ".artist[data-artist=\"The Lanterns\"] .play-artist");
    let lanterns = [ids["Signal Fire"].clone(), ids[HOSTILE].clone()];
    wait_playback(addr, "play artist", |p| {
        p["state"] == "playing" && lanterns.iter().any(|t| p["track"] == t.as_str())
    });
    assert_eq!(
        browser.wait(
            &page,
            "document.querySelector('#now-art img')?.naturalWidth === 1",
            LIMIT
        ),
        json_true(),
        "the playing track's cover"
    );

    // Stop.
    browser.click(&page, "#stop");
    wait_playback(addr, "stop", |p| p["state"] == "stopped");
    assert_eq!(
        browser.wait(&page, &format!("{ui_state} === 'stopped'"), LIMIT),
        json_true()
    );
    let console = browser.console();
    assert!(console.is_empty(), "console output: {console:#?}");
}
