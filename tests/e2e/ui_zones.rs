//! The web UI's zones view in a real browser: headless Chromium shows two
//! real nodes grouped by zone with each zone's now playing, and real clicks
//! move a node between zones, set a node's channels and move a node into a
//! new zone; the test checks through the API that the nodes' placements
//! changed. The page records every press and click it gets, shown when a
//! click is lost.

use crate::playback::{Node, http, start_swarm, wait_until};
use crate::ui::{chromium, json_true};
use crate::ui_cdp::Browser;
use serde_json::json;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

fn zone_of(node: &Node) -> serde_json::Value {
    http(node.http, "GET", "/api/state", None).1["zone"].clone()
}

/// Installs a recorder of the page's presses and clicks (what they landed
/// on, where) and of its layout shifts (which element moved, from where to
/// where), read back by [`clicks`].
const RECORD_CLICKS: &str = "(() => { window.__clicks = []; window.__shifts = []; \
    for (const kind of ['pointerdown', 'pointerup', 'click']) document.addEventListener(kind, (e) => \
      window.__clicks.push(`${Math.round(performance.now())} ms ${kind} at ${e.clientX},${e.clientY} on \
        ${e.target.tagName}.${e.target.className} ${String(e.target.textContent).slice(0, 40)}`), true); \
    window.__lastShift = 0; \
    new PerformanceObserver((list) => { for (const shift of list.getEntries()) { \
      window.__lastShift = Math.max(window.__lastShift, shift.startTime); \
      for (const s of shift.sources ?? []) window.__shifts.push(`${Math.round(shift.startTime)} ms ${s.node?.id || s.node?.className || s.node?.nodeName} \
        y ${Math.round(s.previousRect.y)} -> ${Math.round(s.currentRect.y)}`); } }) \
      .observe({ type: 'layout-shift', buffered: true }); \
    return true; })()";

/// A real click on `selector` once the page's layout has held still for a
/// second. Cards above the zones view appear and grow as their first data
/// arrives (the now-playing card alone is 850 px): a shift between finding
/// the button and pressing it sends the press to whatever is there then,
/// and the click is lost. The page's recorded shifts put the now-playing
/// card's arrival 10–30 ms before the press in runs that passed; in the
/// full e2e run, under load, first renders come later, into the click: the
/// likely cause of the move click lost there (not caught in the act).
fn click_when_still(browser: &mut Browser, page: &crate::ui_cdp::Page, selector: &str) {
    let still = "performance.now() - window.__lastShift > 1000";
    assert_eq!(
        browser.wait(page, still, LIMIT),
        json_true(),
        "the page never held still: {}",
        clicks(browser, page)
    );
    browser.click(page, selector);
}

/// What the page recorded of presses and clicks, and where the zones card is.
fn clicks(browser: &mut Browser, page: &crate::ui_cdp::Page) -> serde_json::Value {
    browser.eval(
        page,
        "JSON.stringify({ clicks: window.__clicks, shifts: window.__shifts, \
           now: Math.round(performance.now()), \
           zones_top: document.getElementById('zones').getBoundingClientRect().top })",
    )
}

#[test]
fn the_zones_view_groups_nodes_and_moves_them_with_a_click() {
    if chromium().is_none() {
        return;
    }
    let _swarm = crate::playback::one_swarm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let nodes = start_swarm(tmp.path(), 2, &[("a.wav", 20)], 2);
    let (_, library) = http(nodes[0].http, "GET", "/api/library", None);
    let track = library[0]["track"].as_str().unwrap().to_string();
    // A kitchen of node 1 (made through the API), music in the default zone.
    let (status, reply) = http(
        nodes[0].http,
        "POST",
        "/api/zones",
        Some(json!({ "name": "Kitchen <b>", "nodes": ["n1"] })),
    );
    assert_eq!(status, 200, "{reply}");
    let kitchen = reply["zone"].as_str().unwrap().to_string();
    let (status, reply) = http(
        nodes[0].http,
        "POST",
        "/api/play",
        Some(json!({ "track": track })),
    );
    assert_eq!(status, 200, "{reply}");

    let mut browser = Browser::start(chromium().unwrap(), 1280, 1400);
    let page = browser.open(&format!("http://{}", nodes[0].http));
    // Two zones, one node each; the default zone shows what it plays; the
    // name that looks like markup is text.
    let grouped = "document.querySelectorAll('#zones .zone').length === 2 \
        && document.querySelectorAll('#zones .zone-member').length === 2 \
        && !document.getElementById('zones').hidden";
    assert_eq!(
        browser.wait(&page, grouped, LIMIT),
        json_true(),
        "{}",
        browser.eval(&page, "document.getElementById('zones').outerHTML")
    );
    // The recorder, once the page (not the blank one before it) is there.
    assert_eq!(browser.eval(&page, RECORD_CLICKS), json_true());
    let now_playing = "document.querySelector('#zones .zone[data-zone=\"default\"] .zone-now').textContent.startsWith('playing')";
    assert_eq!(browser.wait(&page, now_playing, LIMIT), json_true());
    let named = format!(
        "document.querySelector('#zones .zone[data-zone=\"{kitchen}\"] .zone-name').textContent === 'Kitchen <b>'"
    );
    assert_eq!(browser.wait(&page, &named, LIMIT), json_true());
    assert_eq!(
        browser.eval(&page, "document.querySelectorAll('#zones b').length"),
        json!(0)
    );

    // A click moves node 1 into the default zone: it plays there, and the
    // kitchen is gone.
    click_when_still(
        &mut browser,
        &page,
        &format!(
            ".zone-member[data-peer=\"{}\"] .move-to[data-zone=\"default\"]",
            nodes[1].peer_id
        ),
    );
    let moved = wait_until(LIMIT, || zone_of(&nodes[1])["id"] == "default");
    assert!(
        moved,
        "node 1 did not move: {}; the page's notice: {}; its presses and clicks: {}; its zones: {}",
        zone_of(&nodes[1]),
        browser.eval(&page, "document.getElementById('notice').textContent"),
        clicks(&mut browser, &page),
        browser.eval(&page, "document.getElementById('zones').outerHTML")
    );
    let joined = wait_until(LIMIT, || {
        http(nodes[1].http, "GET", "/api/state", None).1["playback"]["track"] == track.as_str()
    });
    assert!(
        joined,
        "node 1 moved but does not play the zone's track: {}",
        http(nodes[1].http, "GET", "/api/state", None).1
    );
    eprintln!(
        "presses, clicks and layout shifts around the move: {}",
        clicks(&mut browser, &page)
    );
    let one_zone = "document.querySelectorAll('#zones .zone').length === 1 \
        && document.querySelectorAll('#zones .zone-member').length === 2";
    assert_eq!(browser.wait(&page, one_zone, LIMIT), json_true());

    // A click sets node 1's channels to the left one.
    click_when_still(
        &mut browser,
        &page,
        &format!(
            ".zone-member[data-peer=\"{}\"] .channel[data-channel=\"left\"]",
            nodes[1].peer_id
        ),
    );
    assert!(wait_until(LIMIT, || zone_of(&nodes[1])["channel"] == "left"));
    let pressed = format!(
        "document.querySelector('.zone-member[data-peer=\"{}\"] .channel[data-channel=\"left\"]').getAttribute('aria-pressed') === 'true'",
        nodes[1].peer_id
    );
    assert_eq!(browser.wait(&page, &pressed, LIMIT), json_true());

    // The group volume slider sets the zone's volume on both nodes.
    browser.eval(
        &page,
        "(() => { const s = document.querySelector('#zones .zone-volume'); s.value = '0.5'; \
         s.dispatchEvent(new Event('change')); })()",
    );
    assert!(wait_until(LIMIT, || nodes
        .iter()
        .all(|n| zone_of(n)["volume"] == 0.5)));

    // A new zone: node 1 picked, a name typed, a click on "Create": node 1
    // plays in a zone of that name, alone, and the view shows two zones.
    browser.eval(
        &page,
        &format!(
            "(() => {{ const n = document.getElementById('zone-new-name'); n.focus(); n.value = 'Den'; \
              document.getElementById('zone-new-node').value = {:?}; return true; }})()",
            nodes[1].peer_id
        ),
    );
    click_when_still(&mut browser, &page, "#zone-new-create");
    let created = wait_until(LIMIT, || {
        let zone = zone_of(&nodes[1]);
        zone["name"] == "Den" && zone["id"] != "default" && zone_of(&nodes[0])["id"] == "default"
    });
    assert!(
        created,
        "node 1 is not in a new zone: {}; the page's notice: {}; its presses and clicks: {}",
        zone_of(&nodes[1]),
        browser.eval(&page, "document.getElementById('notice').textContent"),
        clicks(&mut browser, &page)
    );
    let two_zones = "document.querySelectorAll('#zones .zone').length === 2 \
        && [...document.querySelectorAll('#zones .zone-name')].some((h) => h.textContent === 'Den') \
        && document.getElementById('zone-new-name').value === ''";
    assert_eq!(browser.wait(&page, two_zones, LIMIT), json_true());
    let errors: Vec<String> = browser
        .console()
        .into_iter()
        .filter(|l| l.contains("rror"))
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}
