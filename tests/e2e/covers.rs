//! Covers travel: a node that does not hold a track serves its cover
//! picture, fetched from the member that does over `/firefly/cover/1`
//! and byte-identical to the picture in the holder's file tags; its web
//! page shows that picture on the album.

use crate::playback::{NodeSpec, http, one_swarm_at_a_time, spawn_node, wait_until};
use crate::ui::{chromium, json_true};
use crate::ui_cdp::Browser;
use crate::ui_library::{fetch, ids, tagged_mp3, tiny_png};
use std::time::Duration;

#[test]
fn a_node_without_the_track_serves_its_cover_from_a_holder() {
    let _one = one_swarm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let music = tmp.path().join("n0").join("music");
    std::fs::create_dir_all(&music).unwrap();
    let png = tiny_png([40, 90, 200]);
    std::fs::write(music.join("signal.mp3"), tagged_mp3("Signal Fire", 1, &png)).unwrap();
    crate::playback::write_track(&music.join("plain.wav"), 2);
    let spec = |index, bootstrap| NodeSpec {
        index,
        tracks: &[],
        bootstrap,
        reuse: None,
        extra: &[],
    };
    let holder = spawn_node(tmp.path(), &spec(0, &[]));
    let other = spawn_node(tmp.path(), &spec(1, std::slice::from_ref(&holder.addr)));

    // The other node learns both tracks, and that one has a picture.
    let catalog_lists_both = || {
        let (_, catalog) = http(other.http, "GET", "/api/catalog", None);
        catalog.as_array().is_some_and(|c| c.len() == 2)
    };
    assert!(
        wait_until(Duration::from_secs(20), catalog_lists_both),
        "node 1 never listed node 0's tracks: {}",
        http(other.http, "GET", "/api/catalog", None).1
    );
    let ids = ids(other.http);
    let (_, catalog) = http(other.http, "GET", "/api/catalog", None);
    let cover_flag = |id: &str| {
        catalog
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["track"] == id)
            .map(|e| e["cover"].clone())
    };
    assert_eq!(cover_flag(&ids["Signal Fire"]), Some(true.into()));
    assert_eq!(cover_flag(&ids["plain"]), Some(false.into()));
    let (_, library) = http(other.http, "GET", "/api/library", None);
    assert_eq!(library, serde_json::json!([]), "node 1 holds no track");

    // Its cover comes from the holder, byte for byte, with its real type.
    let (status, head, body) = fetch(other.http, &format!("/api/cover/{}", ids["Signal Fire"]));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(head.contains("content-type: image/png"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert_eq!(body, png);
    // A track without a picture, and one no member has, are 404s.
    let (status, _, _) = fetch(other.http, &format!("/api/cover/{}", ids["plain"]));
    assert_eq!(status, 404);
    let (status, _, _) = fetch(other.http, &format!("/api/cover/{}", "ab".repeat(32)));
    assert_eq!(status, 404);

    // The other node's page shows the album's picture, decoded by the browser.
    let Some(binary) = chromium() else {
        return;
    };
    let mut browser = Browser::start(binary, 1280, 900);
    let page = browser.open(&format!("http://{}", other.http));
    let shown = "document.querySelector('.album[data-album=\"Night Meadow\"] .cover img')?.naturalWidth === 1";
    assert_eq!(
        browser.wait(&page, shown, Duration::from_secs(20)),
        json_true(),
        "{}",
        browser.eval(&page, "document.getElementById('artists')?.outerHTML")
    );
}
