//! The web UI in a real browser: Debian's headless Chromium loads the page
//! from real `firefly up` processes on 127.0.0.1 and the test reads the DOM
//! it rendered and the console lines it logged.
//!
//! Without a `chromium` binary the test says so and passes, unless `CI` is
//! set (CI installs it through `.ci/setup`), where a missing browser fails.

use crate::ui_cdp::Browser;
use crate::util::{Running, copy_fixtures, firefly, firefly_bin};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The browser binary, or `None` (after saying why) when the test cannot run.
pub(crate) fn chromium() -> Option<&'static str> {
    let found = Command::new("chromium")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("chromium");
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "chromium is not installed: run .ci/setup"
    );
    eprintln!("skipping the browser test: chromium is not installed (run .ci/setup)");
    None
}

/// One `firefly up` on loopback with its API address and peer id.
struct Node {
    proc: Running,
    api: String,
    peer_id: String,
}

fn start_node(root: &Path, name: &str, fixture: &str, peer: Option<&str>) -> Node {
    start_node_with(root, name, fixture, peer, quiet_output())
}

/// Whether this build's `firefly up` plays audio (has `--output`).
fn node_plays() -> bool {
    static PLAYS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PLAYS.get_or_init(|| {
        String::from_utf8_lossy(&firefly(&["up", "--help"]).stdout).contains("--output")
    })
}

/// The arguments that keep a node off the sound card (none where it has no player).
fn quiet_output() -> &'static [&'static str] {
    if node_plays() {
        &["--output", "null"]
    } else {
        &[]
    }
}

fn start_node_with(
    root: &Path,
    name: &str,
    fixture: &str,
    peer: Option<&str>,
    extra: &[&str],
) -> Node {
    let data = root.join(format!("node-{fixture}"));
    let music = data.join("music");
    copy_fixtures(&music, &[fixture]);
    if let Some(song) = extra.iter().find_map(|a| a.strip_prefix("song:")) {
        write_song(&music.join(format!("{song}.wav")), 30);
    }
    let mut command = Command::new(firefly_bin());
    command
        .args(["up", "--no-mdns", "--events", "json", "--name", name])
        .args(extra.iter().filter(|a| !a.starts_with("song:")))
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
        .arg("--data-dir")
        .arg(&data)
        .arg("--music")
        .arg(&music)
        .env("RUST_LOG", "error");
    if let Some(peer) = peer {
        command.args(["--peer", peer]);
    }
    if !extra.contains(&"--http") {
        command.args(["--http", "127.0.0.1:0"]);
    }
    let proc = Running::spawn(name, command);
    let limit = Duration::from_secs(30);
    let api = proc
        .wait_event("api", limit)
        .unwrap_or_else(|| panic!("{name} never served its API: {:?}", proc.lines()))["url"]
        .as_str()
        .unwrap()
        .to_string();
    let peer_id = proc.wait_event("started", limit).unwrap()["peer_id"]
        .as_str()
        .unwrap()
        .to_string();
    proc.wait_event("library", limit)
        .unwrap_or_else(|| panic!("{name} never scanned: {:?}", proc.lines()));
    Node { proc, api, peer_id }
}

/// What the browser made of a page: the DOM and its console lines.
struct Page {
    dom: String,
    console: Vec<String>,
}

fn load(browser: &str, url: &str) -> Page {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--virtual-time-budget=4000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", url])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed on {url}: {stderr}");
    Page {
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        // Every console message (log, error, uncaught exception) is a
        // `:CONSOLE` line; the UI logs nothing when all is well.
        console: stderr
            .lines()
            .filter(|l| l.contains(":CONSOLE"))
            .map(str::to_string)
            .collect(),
    }
}

/// The text of the element with `id`, up to its closing tag (flat elements only).
fn element_text<'a>(dom: &'a str, id: &str) -> &'a str {
    let open = format!("id=\"{id}\"");
    let start = dom
        .find(&open)
        .unwrap_or_else(|| panic!("no #{id} in {dom}"));
    let rest = &dom[start..];
    let body = &rest[rest.find('>').unwrap() + 1..];
    &body[..body.find("</").unwrap()]
}

#[test]
fn the_page_shows_both_peers_and_the_library_and_renders_a_hostile_name_as_text() {
    let _swarm = crate::playback::one_swarm_at_a_time();
    let Some(browser) = chromium() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let hostile = "<script>alert(1)</script>";
    // A track whose title (from its file name) is markup, quotes and length.
    let long = "x".repeat(120);
    let song = format!("song:<img src=x onerror=alert(2)> \"q\" '{long}");
    let mut extra = vec![song.as_str()];
    extra.extend_from_slice(quiet_output());
    let a = start_node_with(tmp.path(), hostile, "tone.flac", None, &extra);
    let listen = a
        .proc
        .wait_event("listening", Duration::from_secs(30))
        .unwrap()["addr"]
        .as_str()
        .unwrap()
        .to_string();
    let dial = format!("{listen}/p2p/{}", a.peer_id);
    let b = start_node(tmp.path(), "kitchen \"&\" den", "tone.mp3", Some(&dial));
    b.proc
        .wait_event("joined", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the nodes never met: {:?}", b.proc.lines()));

    let page = load(browser, &a.api);
    assert!(
        page.console.is_empty(),
        "console output: {:#?}",
        page.console
    );
    let dom = &page.dom;

    // Both peers are in the swarm list and have a firefly.
    for peer in [&a.peer_id, &b.peer_id] {
        let shown = dom.matches(&format!("data-peer=\"{peer}\"")).count();
        assert!(shown >= 2, "peer {peer} shown {shown} times in {dom}");
    }
    assert!(dom.contains("kitchen \"&amp;\" den"), "{dom}");
    assert!(
        element_text(dom, "swarm-count").contains("2 nodes"),
        "{dom}"
    );

    // The hostile name is text everywhere: escaped, and no element came of it.
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{dom}"
    );
    assert_eq!(
        element_text(dom, "me-name"),
        "&lt;script&gt;alert(1)&lt;/script&gt;"
    );
    assert!(!dom.contains(hostile), "the name became markup: {dom}");
    assert_eq!(
        dom.matches("<script").count(),
        1,
        "only the page's own module script: {dom}"
    );

    // The hostile track title is text too.
    assert!(
        dom.contains(&format!("&lt;img src=x onerror=alert(2)&gt; \"q\" '{long}")),
        "{dom}"
    );
    assert!(!dom.contains("<img"), "the title became markup: {dom}");

    // The library lists this node's track, held by this node.
    assert!(
        element_text(dom, "library-count").contains("track"),
        "{dom}"
    );
    assert!(dom.contains("data-track=\""), "no track in {dom}");
    assert!(
        dom.contains("id=\"library-empty\" class=\"empty\" hidden"),
        "{dom}"
    );
    assert!(element_text(dom, "link").contains("connected") || dom.contains("data-state=\"live\""));

    // The swarm's figures say what they mean: on hover, and in the glossary.
    assert!(
        dom.contains("title=\"how far this node's estimate of the swarm timeline may be off\""),
        "{dom}"
    );
    assert!(
        dom.contains("<summary>What the figures mean</summary>"),
        "{dom}"
    );

    // On the other node's page the hostile name is a peer's: text there too.
    let other = load(browser, &b.api);
    assert!(
        other.console.is_empty(),
        "console output: {:#?}",
        other.console
    );
    assert!(
        other.dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        other.dom
    );
    assert!(
        !other.dom.contains(hostile),
        "the name became markup: {}",
        other.dom
    );
    assert_eq!(other.dom.matches("<script").count(), 1, "{}", other.dom);
}

#[test]
fn an_empty_library_says_what_to_do() {
    let _swarm = crate::playback::one_swarm_at_a_time();
    let Some(browser) = chromium() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("empty");
    let music = data.join("music");
    std::fs::create_dir_all(&music).unwrap();
    let mut command = Command::new(firefly_bin());
    command
        .args([
            "up",
            "--no-mdns",
            "--events",
            "json",
            "--http",
            "127.0.0.1:0",
            "--name",
            "lonely",
        ])
        .args(quiet_output())
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
        .arg("--data-dir")
        .arg(&data)
        .arg("--music")
        .arg(&music)
        .env("RUST_LOG", "error");
    let node = Running::spawn("lonely", command);
    let api = node.wait_event("api", Duration::from_secs(30)).unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    node.wait_event("library", Duration::from_secs(30)).unwrap();

    let page = load(browser, &api);
    assert!(
        page.console.is_empty(),
        "console output: {:#?}",
        page.console
    );
    assert!(
        page.dom.contains("id=\"library-empty\" class=\"empty\">"),
        "{}",
        page.dom
    );
    assert!(page.dom.contains("firefly up --music DIR"));
    assert!(!page.dom.contains("data-track="));
}

/// Writes a mono 22.05 kHz WAV of `secs` seconds (a tone pulsing twice a
/// second), long enough that playback is still on while the test looks.
fn write_song(path: &Path, secs: u32) {
    let rate = 22_050u32;
    let frames = rate * secs;
    let mut bytes = Vec::with_capacity(44 + 2 * frames as usize);
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + 2 * frames).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes()); // PCM
    bytes.extend_from_slice(&1u16.to_le_bytes()); // mono
    bytes.extend_from_slice(&rate.to_le_bytes());
    bytes.extend_from_slice(&(2 * rate).to_le_bytes());
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(&16u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&(2 * frames).to_le_bytes());
    for i in 0..frames {
        let t = f64::from(i) / f64::from(rate);
        let pulse = (-(t % 0.5) / 0.08).exp();
        let v = (0.2 + 0.4 * pulse) * (2.0 * std::f64::consts::PI * 330.0 * t).sin();
        bytes.extend_from_slice(&((v * 30_000.0) as i16).to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn clicking_play_starts_playback_on_every_nodes_page_and_flashes_arrive() {
    let _swarm = crate::playback::one_swarm_at_a_time();
    let Some(binary) = chromium() else { return };
    if !node_plays() {
        // This build's node has no player yet: nothing to click.
        eprintln!("skipping the playback click test: `firefly up` has no --output");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // Porch serves its chunks slowly (the 1.3 MB song takes about 16 s), so
    // attic's page can show the download under way.
    let virtual_out = [
        "--output",
        "virtual",
        "--max-upload",
        "80000",
        "song:Meadow Pulse",
    ];
    let a = start_node_with(tmp.path(), "porch", "tone.flac", None, &virtual_out);
    let listen = a
        .proc
        .wait_event("listening", Duration::from_secs(30))
        .unwrap()["addr"]
        .as_str()
        .unwrap()
        .to_string();
    let dial = format!("{listen}/p2p/{}", a.peer_id);
    let b = start_node_with(
        tmp.path(),
        "attic",
        "tone.mp3",
        Some(&dial),
        &["--output", "virtual"],
    );
    b.proc
        .wait_event("joined", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the nodes never met: {:?}", b.proc.lines()));

    let mut browser = Browser::start(binary, 1280, 900);
    let page_a = browser.open(&a.api);
    let page_b = browser.open(&b.api);
    let limit = Duration::from_secs(20);
    let find = "(() => { const li = [...document.querySelectorAll('#tracks .track')].find(l => \
         l.querySelector('.title').textContent === 'Meadow Pulse'); if (!li) return null; \
         return li.dataset.track; })()";
    let track = browser.wait(&page_a, find, limit);
    assert!(
        track.is_string(),
        "the track never appeared on porch's page"
    );
    let track = track.as_str().unwrap().to_string();
    // Attic knows porch holds it (the library gossip arrived) before the click.
    assert_eq!(
        browser.wait(&page_b, find, limit),
        serde_json::json!(track),
        "the track never appeared on attic's page"
    );
    // Select the button by the track id, which survives the list being re-rendered.
    let button = format!("#tracks .track[data-track=\"{track}\"] .play");
    browser.click(&page_a, &button);

    // Attic lacks the track: its library shows the download under way.
    let downloading = format!(
        "(() => {{ const p = document.querySelector('#tracks .track[data-track=\"{track}\"] progress'); \
         return p ? Number(p.value) < 1 : null; }})()"
    );
    assert_eq!(
        browser.wait(&page_b, &downloading, limit),
        json_true(),
        "attic's page never showed the download's progress: {:?} {} {}",
        b.proc.lines(),
        get_json(&b.api, "/api/library"),
        browser.eval(&page_b, "document.getElementById('tracks').outerHTML")
    );

    // The API says the same: the track, with how much of it is here.
    let library = get_json(&b.api, "/api/library");
    let entry = library
        .as_array()
        .and_then(|all| all.iter().find(|t| t["track"] == track.as_str()))
        .cloned()
        .unwrap_or_default();
    let download = &entry["download"];
    if !download.is_null() {
        let (have, total) = (
            download["chunks_have"].as_u64().unwrap(),
            download["chunks_total"].as_u64().unwrap(),
        );
        assert!(total > 0 && have < total, "{library}");
        assert!(download["bytes_total"].as_u64().unwrap() > 0, "{library}");
    } else {
        // Finished in between: then attic holds it.
        assert!(entry.is_object(), "{library}");
    }

    // The now-playing view updates on both nodes' pages.
    let playing = "document.getElementById('now').dataset.state === 'playing'";
    assert_eq!(
        browser.wait(&page_a, playing, limit),
        json_true(),
        "porch's page"
    );
    assert_eq!(
        browser.wait(&page_b, playing, limit),
        json_true(),
        "attic's page"
    );
    let title = browser.eval(&page_a, "document.getElementById('now-title').textContent");
    assert_eq!(title, serde_json::json!("Meadow Pulse"));
    let toggle = browser.eval(&page_b, "document.getElementById('toggle').textContent");
    assert_eq!(toggle, serde_json::json!("Pause"));

    // Each light follows its own node's flashes: porch's own player's on
    // porch's page, and attic's (once it has the track and plays) from
    // attic's heartbeats, forwarded with attic's id — on both pages.
    let flashes = |peer: &str| {
        format!(
            "document.querySelector('#lights [data-peer=\"{peer}\"]')?.dataset.flashes === 'yes'"
        )
    };
    let long = Duration::from_secs(45);
    for (page, peer, what) in [
        (&page_a, &a.peer_id, "porch's own light on porch's page"),
        (&page_a, &b.peer_id, "attic's light on porch's page"),
        (&page_b, &a.peer_id, "porch's light on attic's page"),
        (&page_b, &b.peer_id, "attic's own light on attic's page"),
    ] {
        assert_eq!(
            browser.wait(page, &flashes(peer), long),
            json_true(),
            "no flashes for {what}"
        );
    }
    // Attic's own playback error (from its flashes) is shown in porch's swarm view.
    let figure = |peer: &str, label: &str| {
        format!(
            "(() => {{ const d = [...document.querySelectorAll('#nodes .node[data-peer=\"{peer}\"] .figures div')]\
             .find(d => d.querySelector('dt').textContent === '{label}'); return d ? d.querySelector('dd').textContent : null; }})()"
        )
    };
    let error = figure(&b.peer_id, "playback error");
    assert_eq!(
        browser.wait(&page_a, &format!("/s$/.test({error})"), limit),
        json_true(),
        "attic's playback error shown as {}",
        browser.eval(&page_a, &error)
    );

    // The download finished: no progress bar any more.
    let done =
        format!("!document.querySelector('#tracks .track[data-track=\"{track}\"] progress')");
    assert_eq!(browser.wait(&page_b, &done, limit), json_true());

    // The swarm view shows how porch reaches attic: directly.
    let link = figure(&b.peer_id, "link");
    assert_eq!(
        browser.wait(&page_a, &format!("{link} === 'direct'"), limit),
        json_true(),
        "link shown: {}",
        browser.eval(&page_a, &link)
    );

    // Attic's volume, set from porch's page, takes effect on attic, and
    // porch's slider follows the volume attic reports.
    let slider = format!("#volumes [data-peer=\"{}\"]", b.peer_id);
    let ready = format!(
        "(() => {{ const i = document.querySelector('{slider} input'); return !!i && !i.disabled; }})()"
    );
    assert_eq!(browser.wait(&page_a, &ready, limit), json_true());
    browser.eval(
        &page_a,
        &format!(
            "(() => {{ const i = document.querySelector('{slider} input'); i.value = '40'; \
             i.dispatchEvent(new Event('input')); i.dispatchEvent(new Event('change')); return true; }})()"
        ),
    );
    let attic_volume = || get_json(&b.api, "/api/state")["volume"].as_f64();
    let deadline = std::time::Instant::now() + limit;
    while attic_volume() != Some(0.4) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(attic_volume(), Some(0.4), "attic's volume");
    let follows = format!("document.querySelector('{slider}').dataset.volume === '0.4'");
    assert_eq!(
        browser.wait(&page_a, &follows, limit),
        json_true(),
        "porch's page never showed attic's new volume"
    );
    // Attic's own page starts its own slider at the real value.
    let own = format!(
        "document.querySelector('#volumes [data-peer=\"{}\"] input')?.value === '40'",
        b.peer_id
    );
    assert_eq!(browser.wait(&page_b, &own, limit), json_true());

    let console = browser.console();
    assert!(console.is_empty(), "console output: {console:#?}");
}

/// `GET path` on a node's API (`api` is `http://host:port`); its JSON body.
fn get_json(api: &str, path: &str) -> serde_json::Value {
    crate::util::http(api, "GET", path, None).1
}

pub(crate) fn json_true() -> serde_json::Value {
    serde_json::Value::Bool(true)
}

/// A loopback port nothing listens on (bound once and let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_page_notes_a_peer_leaving_and_reconnects_when_its_node_restarts() {
    let _swarm = crate::playback::one_swarm_at_a_time();
    let Some(binary) = chromium() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let mut extra = vec!["--http", http.as_str()];
    extra.extend_from_slice(quiet_output());
    let a = start_node_with(tmp.path(), "hall", "tone.flac", None, &extra);
    let listen = a
        .proc
        .wait_event("listening", Duration::from_secs(30))
        .unwrap()["addr"]
        .as_str()
        .unwrap()
        .to_string();
    let dial = format!("{listen}/p2p/{}", a.peer_id);
    let b = start_node(tmp.path(), "shed", "tone.mp3", Some(&dial));
    b.proc
        .wait_event("joined", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the nodes never met: {:?}", b.proc.lines()));

    let mut browser = Browser::start(binary, 1280, 900);
    let page = browser.open(&a.api);
    let limit = Duration::from_secs(30);
    let count = |n: &str| format!("document.getElementById('swarm-count').textContent === '{n}'");
    assert_eq!(browser.wait(&page, &count("2 nodes"), limit), json_true());

    // The peer vanishes: the page drops it and says so.
    drop(b);
    assert_eq!(
        browser.wait(&page, &count("1 node"), limit),
        json_true(),
        "shed never left the page"
    );
    let left = browser.eval(&page, "document.getElementById('events').textContent");
    assert!(
        left.as_str().unwrap().contains("left: shed"),
        "no leave noted: {left}"
    );

    // The node itself stops: the page says it is unreachable, then comes
    // back by itself once the node is up again on the same address.
    let peer_id = a.peer_id.clone();
    drop(a);
    let offline = "document.getElementById('link').dataset.state === 'offline'";
    assert_eq!(browser.wait(&page, offline, limit), json_true());
    let again = start_node_with(tmp.path(), "hall", "tone.flac", None, &extra);
    assert_eq!(
        again.peer_id, peer_id,
        "the restarted node has another identity"
    );
    let back = "['live', 'polling'].includes(document.getElementById('link').dataset.state)";
    assert_eq!(
        browser.wait(&page, back, limit),
        json_true(),
        "never reconnected"
    );
    assert_eq!(browser.wait(&page, &count("1 node"), limit), json_true());

    // Failed requests while the node was down may be logged by the browser
    // itself; the page's own code never throws.
    let console = browser.console();
    assert!(
        !console.iter().any(|l| l.contains("Uncaught")),
        "uncaught errors: {console:#?}"
    );
}
