//! The HTTP side driven through `router` with `oneshot`, against real
//! swarm nodes on 127.0.0.1.

#![allow(clippy::unwrap_used)]

use super::*;
use axum::body::Body;
use axum::http::Request;
use firefly_library::{Library, LibraryConfig};
use tower::ServiceExt;

async fn state(dir: &std::path::Path) -> NodeState {
    state_with(dir, None).await
}

async fn state_with(dir: &std::path::Path, token: Option<String>) -> NodeState {
    node(dir, "test-node", &crate::node::OutputArg::Null, token).await
}

/// A node on 127.0.0.1 with `output` that answers peers' volume requests
/// and reports its playout in heartbeats, as `firefly up` does.
async fn node(
    dir: &std::path::Path,
    name: &str,
    output: &crate::node::OutputArg,
    token: Option<String>,
) -> NodeState {
    let keypair = firefly_swarm::identity::load_or_create(dir).unwrap();
    let mut config = firefly_swarm::Config::new(keypair, name);
    config
        .mdns(false)
        .listen("/ip4/127.0.0.1/tcp/0".parse().unwrap());
    let (client, mut events, event_loop) = firefly_swarm::new(config).unwrap();
    tokio::spawn(event_loop.run());
    let library = Library::open(&LibraryConfig::new(dir)).unwrap();
    let now: firefly_swarm::Now = std::sync::Arc::new(firefly_swarm::monotonic_now);
    let timeline = std::sync::Arc::new(crate::node::timeline::NodeTimeline::new(
        now.clone(),
        client.mapping(),
    ));
    let audio = crate::node::audio::Audio::start(output, timeline, 0).unwrap();
    let volume = crate::node::events::Volume::default();
    let placements =
        crate::node::placement::Placements::open(library.clone(), audio.clone(), volume.clone(), 0)
            .await;
    let control = crate::node::driver::spawn(
        client.clone(),
        library.clone(),
        audio.clone(),
        now,
        placements.subscribe(),
    );
    let volumes = crate::node::events::VolumeService {
        client: client.clone(),
        audio: audio.clone(),
        volume: volume.clone(),
    };
    let (placing, placer) = (placements.clone(), client.clone());
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let Some(event) = volumes.intercept(event).await else {
                continue;
            };
            if let Some(other) = placing.intercept(&placer, event).await {
                tracing::trace!(?other, "event the test does not handle");
            }
        }
    });
    tokio::spawn(crate::node::events::report_playout(
        client.clone(),
        audio.clone(),
        volume.clone(),
    ));
    let music = library.music_dir().canonicalize().unwrap();
    let indexer = crate::node::indexer::Indexer::new(library.clone(), music, client.clone());
    let live = crate::node::live::Live::start(client.clone(), audio.clone(), 400_000);
    live.follow(control.clone());
    NodeState {
        live,
        indexer,
        swarm: client,
        library,
        name: name.into(),
        audio,
        control,
        volume,
        placements,
        token,
        http_hosts: Default::default(),
        api_requests: Default::default(),
        remote_covers: Default::default(),
    }
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

/// Polls `state`'s `GET /api/state` until `check` holds (10 s at most).
async fn wait_state(
    state: &NodeState,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, reply) = send(state.clone(), get("/api/state")).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        if check(&reply) || std::time::Instant::now() > deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_volume_is_set_through_this_node_and_reported_with_its_link() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let null = crate::node::OutputArg::Null;
    let virtual_out = crate::node::OutputArg::Play(firefly_player::OutputChoice::Virtual);
    let a = node(dir_a.path(), "hall", &null, None).await;
    let b = node(dir_b.path(), "porch", &virtual_out, None).await;
    let b_id = b.swarm.peer_id().to_string();
    let listen = loop {
        if let Some(addr) = a.swarm.listen_addrs().await.unwrap().into_iter().next() {
            break addr;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let dial = format!("{listen}/p2p/{}", a.swarm.peer_id());
    b.swarm.dial(dial.parse().unwrap()).await.unwrap();

    // A sees B with a direct link and B's volume (from its heartbeats).
    let peer_b = |s: &serde_json::Value| {
        s["peers"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["peer_id"] == b_id.as_str()).cloned())
    };
    let state = wait_state(&a, |s| peer_b(s).is_some_and(|p| p["volume"] == 1.0)).await;
    let seen = peer_b(&state).unwrap();
    assert_eq!(seen["connection"], "direct", "{state}");
    assert_eq!(seen["volume"], 1.0, "{state}");
    // A has no output: no volume of its own.
    assert!(state["volume"].is_null(), "{state}");

    // A sets B's volume: B's player takes it, and A's view follows.
    let body = format!(r#"{{"node": "{b_id}", "volume": 0.5}}"#);
    let (status, reply) = send(a.clone(), post("/api/volume", &body)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["node"], b_id.as_str());
    assert_eq!(reply["volume"], 0.5);
    let (_, state_b) = send(b.clone(), get("/api/state")).await;
    assert_eq!(state_b["volume"], 0.5, "{state_b}");
    let state = wait_state(&a, |s| peer_b(s).is_some_and(|p| p["volume"] == 0.5)).await;
    assert_eq!(peer_b(&state).unwrap()["volume"], 0.5, "{state}");

    // By name as well; a node without output refuses clearly.
    let (status, reply) = send(
        b.clone(),
        post("/api/volume", r#"{"node": "hall", "volume": 0.7}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");
    assert!(
        reply["message"].as_str().unwrap().contains("no output"),
        "{reply}"
    );
    let (status, reply) = send(
        a,
        post("/api/volume", r#"{"node": "porch", "volume": 1.2}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (_, state_b) = send(b, get("/api/state")).await;
    assert!(
        (state_b["volume"].as_f64().unwrap() - 1.2).abs() < 1e-6,
        "{state_b}"
    );
}

async fn send(state: NodeState, request: Request<Body>) -> (StatusCode, serde_json::Value) {
    let response = router(state).oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

fn post(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn bad_input_gets_a_4xx_with_a_json_message() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path()).await;
    let long = format!("{{\"tracks\": [{}]}}", vec!["\"00\""; 600].join(","));
    for (path, body) in [
        ("/api/play", "{not json"),
        ("/api/play", r#"{"track": "abc"}"#),
        ("/api/play", r#"{"trak": "abc"}"#),
        ("/api/seek", r#"{"position_ms": "soon"}"#),
        ("/api/seek", r#"{"position_ms": 999999999999}"#),
        ("/api/volume", r#"{"volume": -1}"#),
        ("/api/volume", r#"{"volume": 1, "node": "someone-else"}"#),
        ("/api/queue", long.as_str()),
    ] {
        let (status, reply) = send(state.clone(), post(path, body)).await;
        assert!(status.is_client_error(), "{path} {body}: {status}");
        assert!(reply["message"].is_string(), "{path} {body}: {reply}");
    }
    // No output: a valid volume is refused, clearly.
    let (status, reply) = send(state.clone(), post("/api/volume", r#"{"volume": 0.5}"#)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");
    // A zone no node plays in (control characters, thousands of them): 404,
    // its name shown escaped and cut short; query and body at odds: 400.
    let long_zone = "%07x".repeat(3000);
    for (path, body, expected) in [
        ("/api/pause?zone=Nowhere", "{}", StatusCode::NOT_FOUND),
        ("/api/next?zone=%00%1b[2J", "{}", StatusCode::NOT_FOUND),
        (
            &format!("/api/stop?zone={long_zone}"),
            "{}",
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/seek",
            r#"{"position_ms": 1, "zone": "Nowhere"}"#,
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/seek?zone=default",
            r#"{"position_ms": 1, "zone": "Kitchen"}"#,
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, reply) = send(state.clone(), post(path, body)).await;
        assert_eq!(status, expected, "{path} {body}: {reply}");
        let message = reply["message"].as_str().unwrap_or_default();
        assert!(
            message.len() < 300,
            "{path}: a message of {} bytes",
            message.len()
        );
        assert!(
            !message.chars().any(char::is_control),
            "{path}: {message:?}"
        );
    }
}

#[tokio::test]
async fn cross_origin_requests_and_missing_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let open = state(dir.path()).await;
    let request = |origin: &str| {
        Request::get("/api/state")
            .header("host", "127.0.0.1:8081")
            .header("origin", origin)
            .body(Body::empty())
            .unwrap()
    };
    let (status, _) = send(open.clone(), request("http://evil.example")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, reply) = send(open, request("http://127.0.0.1:8081")).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["playback"]["state"], "stopped");

    let dir = tempfile::tempdir().unwrap();
    let guarded = state_with(dir.path(), Some("s3cret".into())).await;
    let (status, _) = send(
        guarded.clone(),
        Request::get("/api/library").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, reply) = send(
        guarded,
        Request::get("/api/library")
            .header("authorization", "Bearer s3cret")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply, serde_json::json!([]));
}

#[tokio::test]
async fn a_rebinding_host_is_refused_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let mut open = state(dir.path()).await;
    open.http_hosts = std::sync::Arc::new(vec!["speakers.lan".into()]);
    let request = |method: &str, path: &str, host: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header("host", host)
            .header("origin", format!("http://{host}"))
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap()
    };
    for (method, path) in [
        ("GET", "/api/state"),
        ("POST", "/api/pause"),
        ("GET", "/api/events"),
        ("GET", "/"),
    ] {
        let (status, reply) = send(open.clone(), request(method, path, "evil.example")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {reply}");
        assert!(reply["message"].is_string());
    }
    for host in [
        "127.0.0.1:8081",
        "localhost:8081",
        "[::1]:8081",
        "192.168.1.20:8081",
        "speakers.lan:8081",
    ] {
        let (status, reply) = send(open.clone(), request("GET", "/api/state", host)).await;
        assert_eq!(status, StatusCode::OK, "{host}: {reply}");
    }
}

#[test]
fn hosts_and_tokens_are_checked_strictly() {
    use crate::node::http::guard::{host_allowed, token_matches};
    let names = ["speakers.lan".to_string()];
    assert!(host_allowed("LOCALHOST", &names));
    assert!(host_allowed("10.0.0.1", &names));
    assert!(!host_allowed("localhost.evil.example", &names));
    assert!(!host_allowed("127.0.0.1.nip.io:80", &names));
    assert!(!host_allowed("[::1", &names));
    assert!(!host_allowed("evil.example:8081:1", &names));
    assert!(token_matches("s3cret-token-0001", "s3cret-token-0001"));
    assert!(!token_matches("s3cret-token-0002", "s3cret-token-0001"));
    assert!(!token_matches("s3cret", "s3cret-token-0001"));
}

#[tokio::test]
async fn the_event_stream_takes_the_token_in_its_query_and_nothing_else_does() {
    let dir = tempfile::tempdir().unwrap();
    let guarded = state_with(dir.path(), Some("s3cret-token-0001".into())).await;
    let upgrade = |uri: &str| {
        Request::get(uri)
            .header("host", "127.0.0.1:8081")
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .body(Body::empty())
            .unwrap()
    };
    let (status, _) = send(guarded.clone(), upgrade("/api/events")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(guarded.clone(), upgrade("/api/events?token=wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Past the guard: without a real connection to upgrade, axum refuses
    // the upgrade itself, with another status than 401.
    let (status, _) = send(
        guarded.clone(),
        upgrade("/api/events?token=s3cret%2Dtoken-0001"),
    )
    .await;
    assert_ne!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(guarded, get("/api/state?token=s3cret-token-0001")).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "only the event stream reads a query token"
    );
}

#[test]
fn members_with_the_same_name_are_told_apart() {
    let member = |name: &str| firefly_swarm::Member {
        peer: firefly_swarm::PeerId::random(),
        name: name.into(),
        uptime_ms: 0,
        status: Default::default(),
        joined_at: firefly_clock::LocalMicros(0),
        last_seen: firefly_clock::LocalMicros(0),
    };
    let members = [
        member("alpha"),
        member("alpha"),
        member("me"),
        member("beta\u{202E}"),
    ];
    let me = firefly_swarm::PeerId::random();
    let shown = crate::node::http::status::shown_names((me, "me"), &members);
    assert!(shown[0].starts_with("alpha (…") && shown[1].starts_with("alpha (…"));
    assert_ne!(shown[0], shown[1]);
    assert!(shown[2].starts_with("me (…"), "{shown:?}");
    assert_eq!(shown[3], "beta");
    let unique: std::collections::HashSet<_> = shown.iter().collect();
    assert_eq!(unique.len(), shown.len());
}

#[tokio::test]
async fn status_reports_the_node_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path()).await;
    let me = state.swarm.peer_id().to_string();
    let response = router(state)
        .oneshot(Request::get("/api/status").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let report: StatusReport = serde_json::from_slice(&body).unwrap();
    assert_eq!(report.peer_id, me);
    assert_eq!(report.name, "test-node");
    assert!(report.members.is_empty());
    assert!(report.catalog.is_empty());
    assert!(report.clock.swarm_time_us > 0);
}

/// `GET /metrics` as text, parsed by a Prometheus text-format parser.
async fn scrape_metrics(state: &NodeState) -> prometheus_parse::Scrape {
    let response = router(state.clone())
        .oneshot(get("/metrics"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let kind = response.headers()[axum::http::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The value of `name` (with `label = value`, when given) in `scrape`.
fn sample(
    scrape: &prometheus_parse::Scrape,
    name: &str,
    label: Option<(&str, &str)>,
) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_agree_with_the_state() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let null = crate::node::OutputArg::Null;
    let virtual_out = crate::node::OutputArg::Play(firefly_player::OutputChoice::Virtual);
    let a = node(dir_a.path(), "hall", &virtual_out, None).await;
    let b = node(dir_b.path(), "porch", &null, None).await;
    let listen = loop {
        if let Some(addr) = a.swarm.listen_addrs().await.unwrap().into_iter().next() {
            break addr;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    b.swarm
        .dial(
            format!("{listen}/p2p/{}", a.swarm.peer_id())
                .parse()
                .unwrap(),
        )
        .await
        .unwrap();
    let b_id = b.swarm.peer_id().to_string();
    // Both members, a coordinator, and B's clock known to A.
    wait_state(&a, |s| {
        s["coordinator"].is_string()
            && s["peers"].as_array().is_some_and(|p| {
                p.len() == 1 && p[0]["clock_offset_us"].is_number() && p[0]["rtt_us"].is_number()
            })
    })
    .await;
    let scrape = scrape_metrics(&a).await;
    let (_, state) = send(a.clone(), get("/api/state")).await;

    assert_eq!(
        sample(&scrape, "firefly_members", None),
        Some(1.0),
        "{state}"
    );
    assert_eq!(
        sample(&scrape, "firefly_term", None),
        state["term"].as_f64()
    );
    let me_coordinating = state["role"] == "coordinator";
    assert_eq!(
        sample(&scrape, "firefly_coordinator", None),
        Some(if me_coordinating { 1.0 } else { 0.0 })
    );
    assert_eq!(
        sample(&scrape, "firefly_clock_synced", None),
        Some(if state["clock_synced"] == true {
            1.0
        } else {
            0.0
        })
    );
    // The offset moves between the two reads; it is the same estimate to
    // within a few ms, and its sign and size match.
    let offset = sample(
        &scrape,
        "firefly_peer_clock_offset_seconds",
        Some(("peer", &b_id)),
    )
    .expect("no clock offset for the peer");
    let state_offset = state["peers"][0]["clock_offset_us"].as_f64().unwrap() / 1e6;
    assert!(
        (offset - state_offset).abs() < 0.005,
        "{offset} vs {state_offset}"
    );
    assert!(sample(&scrape, "firefly_peer_rtt_seconds", Some(("peer", &b_id))).is_some());
    // The clock read against the wall clock: the pair is read together,
    // the swarm time is the wall-clock based one the node started from, and
    // its parts add up to the skew.
    let clock = &state["clock"];
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    assert!(clock["read_us"].as_i64().unwrap() >= 0, "{clock}");
    assert!(
        (wall - clock["wall_us"].as_i64().unwrap()).abs() < 60_000_000,
        "{clock}"
    );
    assert!(clock["swarm_us"].as_i64().unwrap() > 0, "{clock}");
    let parts = clock["drift_ppm"].as_f64().unwrap() + clock["slew_ppm"].as_f64().unwrap();
    assert!(
        (parts - state["skew_ppm"].as_f64().unwrap()).abs() < 0.01,
        "{clock}"
    );
    assert!(clock["stats"]["accepted"].as_u64().unwrap() > 0, "{clock}");
    // A has a (virtual) output: its timing is there.
    assert_eq!(sample(&scrape, "firefly_output_present", None), Some(1.0));
    assert_eq!(
        sample(&scrape, "firefly_output_underruns_total", None),
        state["output"]["underruns"].as_f64()
    );
    assert_eq!(
        sample(&scrape, "firefly_downloads_in_flight", None),
        Some(0.0)
    );
    assert_eq!(sample(&scrape, "firefly_bans_total", None), Some(0.0));
    // The time exchange's counters: nothing forged between two honest nodes.
    assert_eq!(
        sample(&scrape, "firefly_time_datagrams_refused_total", None),
        Some(0.0)
    );
    assert!(sample(&scrape, "firefly_time_datagram_samples_total", None).is_some());
    assert!(sample(&scrape, "firefly_time_failures_total", None).is_some());
    // Requests are counted by route and status (these scrapes' own
    // /api/state reads among them), and only by route template.
    let served = sample(
        &scrape,
        "firefly_api_requests_total",
        Some(("route", "/api/state")),
    )
    .unwrap_or(0.0);
    assert!(served >= 1.0, "{served}");
    let _ = send(a.clone(), get("/api/no/such/route")).await;
    let later = scrape_metrics(&a).await;
    assert_eq!(
        sample(
            &later,
            "firefly_api_requests_total",
            Some(("route", "unmatched"))
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn metrics_need_the_token_like_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let token = "0123456789abcdef0123".to_string();
    let state = state_with(dir.path(), Some(token.clone())).await;
    let (status, _) = send(state.clone(), get("/metrics")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let with_token = Request::get("/metrics")
        .header("Authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let response = router(state.clone()).oneshot(with_token).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let rebound = Request::get("/metrics")
        .header("Host", "evil.example")
        .body(Body::empty())
        .unwrap();
    let (status, _) = send(state, rebound).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn unknown_paths_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let response = router(state(dir.path()).await)
        .oneshot(Request::get("/api/nothing").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn scan_reads_the_music_folder_and_refuses_paths_outside_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path()).await;
    let music = state.indexer.music().to_path_buf();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    std::fs::copy(fixtures.join("tone.flac"), music.join("tone.flac")).unwrap();
    std::fs::write(music.join("noise.mp3"), [0x33u8; 5000]).unwrap();

    let (status, report) = send(state.clone(), post("/api/scan", "")).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["tracks"], 1, "{report}");
    assert_eq!(report["files_seen"], 2, "{report}");
    assert_eq!(report["skipped"].as_array().unwrap().len(), 1, "{report}");

    // The catalog entry carries what browsing needs.
    let (_, catalog) = send(state.clone(), get("/api/catalog")).await;
    let entry = &catalog[0];
    assert!(entry["album"].is_string(), "{catalog}");
    assert!(entry["duration_ms"].as_u64().unwrap() > 0, "{catalog}");
    assert_eq!(entry["cover"], false, "{catalog}");
    let track = entry["track"].as_str().unwrap().to_string();

    // Removed: named by path, it leaves the library.
    std::fs::remove_file(music.join("tone.flac")).unwrap();
    let body = serde_json::json!({ "paths": [music.join("tone.flac")] }).to_string();
    let (status, report) = send(state.clone(), post("/api/scan", &body)).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["files_removed"], 1, "{report}");
    let (_, catalog) = send(state.clone(), get("/api/catalog")).await;
    assert_eq!(catalog, serde_json::json!([]));

    for body in [
        r#"{"paths": ["/etc"]}"#.to_string(),
        serde_json::json!({ "paths": [music.join("../../etc")] }).to_string(),
        r#"{"paths": ["relative"]}"#.to_string(),
        r#"{"path": []}"#.to_string(),
        "[1, 2".to_string(),
    ] {
        let (status, reply) = send(state.clone(), post("/api/scan", &body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
        assert!(reply["message"].is_string(), "{body}: {reply}");
    }

    // Covers: a malformed id is a 400, a track without one a 404.
    let (status, _) = send(state.clone(), get("/api/cover/xyz")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, reply) = send(state, get(&format!("/api/cover/{track}"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{reply}");
    assert!(reply["message"].is_string());
}

/// The API routes (method, path) `router`'s source declares.
fn routes_in_source() -> std::collections::BTreeSet<(String, String)> {
    let source = include_str!("mod.rs");
    let mut routes = std::collections::BTreeSet::new();
    for call in source.split(".route(").skip(1) {
        let Some(path) = call.split('"').nth(1) else {
            continue;
        };
        if !path.starts_with("/api/") {
            continue;
        }
        // The handlers: up to the next builder call that is not a route.
        let handlers = call.split(".layer(").next().unwrap_or(call);
        for method in ["get", "post", "delete", "put", "patch"] {
            let called = handlers
                .match_indices(&format!("{method}("))
                .any(|(i, _)| i == 0 || !handlers.as_bytes()[i - 1].is_ascii_alphanumeric());
            if called {
                routes.insert((method.to_uppercase(), path.to_string()));
            }
        }
    }
    routes
}

/// The routes docs/API.md's headings name (`` ## `POST /api/x`, … ``).
fn routes_in_docs() -> std::collections::BTreeSet<(String, String)> {
    let docs = include_str!("../../../docs/API.md");
    let mut routes = std::collections::BTreeSet::new();
    for heading in docs.lines().filter(|l| l.starts_with("## ")) {
        for (i, span) in heading.split('`').enumerate() {
            if i % 2 == 0 {
                continue;
            }
            if let Some((method, path)) = span.split_once(' ')
                && path.starts_with("/api/")
                && method.chars().all(|c| c.is_ascii_uppercase())
            {
                routes.insert((method.to_string(), path.to_string()));
            }
        }
    }
    routes
}

/// docs/API.md lists exactly the routes the router serves, and the router
/// really answers each (and refuses the methods it does not list).
#[tokio::test]
async fn the_api_doc_lists_exactly_the_routes_served() {
    let source = routes_in_source();
    let docs = routes_in_docs();
    assert!(
        source.len() >= 15,
        "too few routes found in the source: {source:?}"
    );
    let undocumented: Vec<_> = source.difference(&docs).collect();
    let unserved: Vec<_> = docs.difference(&source).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "routes not in docs/API.md: {undocumented:?}; documented but not served: {unserved:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let node = state(dir.path()).await;
    // Commands answer at once on a coordinator (elsewhere they wait for one).
    wait_state(&node, |s| s["role"] == "coordinator").await;
    let app = router(node);
    let paths: std::collections::BTreeSet<&String> = source.iter().map(|(_, p)| p).collect();
    for path in paths {
        let concrete = path.replace("{index}", "0");
        for method in ["GET", "POST", "DELETE", "PUT"] {
            let listed = source.contains(&(method.to_string(), path.clone()));
            // A WebSocket route answers a plain GET with a 4xx, not a 404/405.
            let request = Request::builder()
                .method(method)
                .uri(&concrete)
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap();
            let status = app.clone().oneshot(request).await.unwrap().status();
            let routed = status != axum::http::StatusCode::NOT_FOUND
                && status != axum::http::StatusCode::METHOD_NOT_ALLOWED;
            assert_eq!(routed, listed, "{method} {concrete}: {status}");
        }
    }
}

/// The queue is bounded with a clear error past the bound; queue edits with
/// indices past the end, unknown albums and unknown repeat modes get a 4xx
/// with a message; the playback JSON carries shuffle, repeat and the queue.
#[tokio::test]
async fn queue_commands_are_bounded_and_bad_ones_get_a_clear_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path()).await;
    wait_state(&state, |s| s["role"] == "coordinator").await;
    let ids = |from: usize, n: usize| {
        let tracks: Vec<String> = (from..from + n).map(|i| format!("\"{i:064x}\"")).collect();
        format!("{{\"tracks\": [{}]}}", tracks.join(","))
    };
    let (status, reply) = send(state.clone(), post("/api/queue", &ids(0, 300))).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (status, reply) = send(state.clone(), post("/api/queue", &ids(300, 212))).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["queue"].as_array().unwrap().len(), 512);
    assert_eq!(
        (reply["shuffle"].clone(), reply["repeat"].clone()),
        (false.into(), "off".into())
    );
    assert!(reply["duration_ms"].is_null(), "{reply}");
    let (status, reply) = send(state.clone(), post("/api/queue", &ids(900, 1))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(
        reply["message"].as_str().unwrap().contains("512"),
        "{reply}"
    );
    // Insert at the front, move, remove.
    let (status, reply) = send(
        state.clone(),
        post("/api/queue/move", r#"{"from": 511, "to": 0}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["queue"][0], format!("{:064x}", 511));
    let delete = |path: &str| Request::delete(path).body(Body::empty()).unwrap();
    let (status, reply) = send(state.clone(), delete("/api/queue/0")).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["queue"].as_array().unwrap().len(), 511);
    for request in [
        post("/api/queue/move", r#"{"from": 600, "to": 0}"#),
        delete("/api/queue/511"),
        delete("/api/queue/first"),
        post("/api/repeat", r#"{"mode": "sometimes"}"#),
        post("/api/shuffle", r#"{"on": "yes"}"#),
        post("/api/play", r#"{"album": "No Such Album"}"#),
        post("/api/play", r#"{"track": "00", "album": "Both"}"#),
    ] {
        let what = format!("{} {}", request.method(), request.uri());
        let (status, reply) = send(state.clone(), request).await;
        assert!(status.is_client_error(), "{what}: {status} {reply}");
        assert!(reply["message"].is_string(), "{what}: {reply}");
    }
    let (status, reply) = send(state.clone(), post("/api/repeat", r#"{"mode": "all"}"#)).await;
    assert_eq!(
        (status, reply["repeat"].clone()),
        (StatusCode::OK, "all".into())
    );
    let (status, reply) = send(state.clone(), post("/api/shuffle", r#"{"on": true}"#)).await;
    assert_eq!(
        (status, reply["shuffle"].clone()),
        (StatusCode::OK, true.into())
    );
    let (status, reply) = send(state.clone(), delete("/api/queue")).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["queue"], serde_json::json!([]));
    // With nothing playing, the transport commands are refused (409).
    for path in ["/api/next", "/api/prev", "/api/stop", "/api/pause"] {
        let request = Request::post(path).body(Body::empty()).unwrap();
        let (status, reply) = send(state.clone(), request).await;
        assert_eq!(status, StatusCode::CONFLICT, "{path}: {reply}");
    }
}

/// Live sources through the API: a bad name, spec or path gets a 400 with a
/// message; a pipe is added, listed, refused twice, removed, and a second
/// removal is a 400; playing an unknown source is a 404.
#[tokio::test]
async fn live_sources_are_added_listed_and_removed_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let node = state(dir.path()).await;
    let pcm = dir.path().join("pcm");
    std::fs::write(&pcm, [0u8; 4096]).unwrap();
    let add = |name: &str, spec: &str| {
        post(
            "/api/sources",
            &serde_json::json!({ "name": name, "spec": spec }).to_string(),
        )
    };
    for (name, spec, needle) in [
        ("bad name!", "pipe:/tmp/x", "source name"),
        ("radio", "ftp://x", "must start with pipe:"),
        ("radio", "url:https://x", "http://"),
        ("radio", "pipe:/x?rate=5", "rate"),
        ("radio", "pipe:/nonexistent/fifo", "cannot open the source"),
        (
            "radio",
            "cmd:/nonexistent/program",
            "cannot open the source",
        ),
    ] {
        let (status, body) = send(node.clone(), add(name, spec)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{spec}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains(needle),
            "{spec}: {body}"
        );
    }
    let spec = format!("pipe:{}?rate=44100&channels=1", pcm.display());
    let (status, body) = send(node.clone(), add("file", &spec)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["kind"], "pipe");
    assert_eq!(body["format"], "44100 Hz 1 ch flac");
    let (status, _) = send(node.clone(), add("file", &spec)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, list) = send(node.clone(), get("/api/sources")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["sources"][0]["name"], "file");
    assert_eq!(list["sources"][0]["local"], true);
    let (status, body) = send(
        node.clone(),
        post("/api/sources/play", r#"{"name": "nothing"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let delete = || {
        Request::builder()
            .method("DELETE")
            .uri("/api/sources/file")
            .body(Body::empty())
            .unwrap()
    };
    let (status, _) = send(node.clone(), delete()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send(node.clone(), delete()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

/// Zones through the API of one node: a zone made of a peer, its channel
/// map and trim set from here, bad requests refused clearly, concurrent
/// moves of one node serialized there, a merge back into one zone.
#[tokio::test]
async fn zones_are_made_moved_and_merged_through_any_node() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let null = crate::node::OutputArg::Null;
    let virtual_out = crate::node::OutputArg::Play(firefly_player::OutputChoice::Virtual);
    let a = node(dir_a.path(), "hall", &null, None).await;
    let b = node(dir_b.path(), "porch", &virtual_out, None).await;
    let listen = loop {
        if let Some(addr) = a.swarm.listen_addrs().await.unwrap().into_iter().next() {
            break addr;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let dial = format!("{listen}/p2p/{}", a.swarm.peer_id());
    b.swarm.dial(dial.parse().unwrap()).await.unwrap();
    let zones_of =
        |zones: &serde_json::Value| zones["zones"].as_array().cloned().unwrap_or_default();
    let wait_zones = |state: NodeState, check: Box<dyn Fn(&serde_json::Value) -> bool + Send>| async move {
        for _ in 0..100 {
            let (_, zones) = send(state.clone(), get("/api/zones")).await;
            if check(&zones) {
                return zones;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("zones never matched");
    };
    // One zone of both, the default.
    let zones = wait_zones(
        a.clone(),
        Box::new(move |z| {
            z["zones"][0]["members"]
                .as_array()
                .is_some_and(|m| m.len() == 2)
        }),
    )
    .await;
    assert_eq!(zones["zone"], "default", "{zones}");
    assert_eq!(zones_of(&zones).len(), 1, "{zones}");
    assert_eq!(zones["zones"][0]["name"], "Everywhere");
    // B must count A a member too before it takes A's placements (a
    // non-member's control requests are refused): a loaded CI run had B
    // answer "not a member of this swarm" while A already listed both.
    wait_zones(
        b.clone(),
        Box::new(move |z| {
            z["zones"][0]["members"]
                .as_array()
                .is_some_and(|m| m.len() == 2)
        }),
    )
    .await;

    // A makes a zone of B (its name cleaned of control characters).
    let (status, reply) = send(
        a.clone(),
        post(
            "/api/zones",
            r#"{"name": " Kitchen\u001b ", "nodes": ["porch"]}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let kitchen = reply["zone"].as_str().unwrap().to_string();
    assert_eq!(
        reply["placed"][0]["placement"]["name"], "Kitchen",
        "{reply}"
    );
    let (_, state_b) = send(b.clone(), get("/api/state")).await;
    assert_eq!(state_b["zone"]["id"], kitchen.as_str(), "{state_b}");
    let zones = wait_zones(
        a.clone(),
        Box::new(|z| z["zones"].as_array().is_some_and(|z| z.len() == 2)),
    )
    .await;
    assert!(
        zones_of(&zones).iter().any(|z| z["name"] == "Kitchen"),
        "{zones}"
    );

    // Its channel map and trim, its zone's name and volume, from A.
    for (path, body) in [
        ("/api/channel", r#"{"node": "porch", "channel": "left"}"#),
        ("/api/trim", r#"{"node": "porch", "delay_ms": 12}"#),
        (
            "/api/zones/rename",
            r#"{"zone": "Kitchen", "name": "Cuisine"}"#,
        ),
    ] {
        let (status, reply) = send(a.clone(), post(path, body)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {reply}");
    }
    // A names zones as the members' heartbeats show them.
    let named = |z: &serde_json::Value| {
        z["zones"]
            .as_array()
            .is_some_and(|z| z.iter().any(|z| z["name"] == "Cuisine"))
    };
    wait_zones(a.clone(), Box::new(named)).await;
    let (status, reply) = send(
        a.clone(),
        post("/api/zones/volume", r#"{"zone": "Cuisine", "volume": 0.5}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (_, state_b) = send(b.clone(), get("/api/state")).await;
    let zone = &state_b["zone"];
    assert_eq!(
        (
            &zone["channel"],
            &zone["delay_ms"],
            &zone["name"],
            &zone["volume"]
        ),
        (&"left".into(), &12.into(), &"Cuisine".into(), &0.5.into()),
        "{state_b}"
    );

    // Bad input: a clear 4xx each, nothing changed.
    for (path, body, want) in [
        (
            "/api/zones/merge",
            r#"{"from": "Cuisine", "into": "Cuisine"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/zones/move",
            r#"{"node": "porch", "zone": "attic"}"#,
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/zones/move",
            r#"{"node": "nobody", "zone": "Cuisine"}"#,
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/zones",
            r#"{"name": "\u0007\n", "nodes": ["hall"]}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/zones",
            r#"{"name": "Den", "nodes": []}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/zones/split",
            r#"{"zone": "Cuisine", "name": "Den", "nodes": ["porch"]}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/channel",
            r#"{"channel": "up"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/trim",
            r#"{"delay_ms": 20000}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/zones/volume",
            r#"{"zone": "Cuisine", "volume": 9}"#,
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, reply) = send(a.clone(), post(path, body)).await;
        assert_eq!(status, want, "{path} {body}: {reply}");
        assert!(reply["message"].is_string(), "{reply}");
    }
    let huge = format!(r#"{{"zone": "Cuisine", "name": "{}"}}"#, "x".repeat(5000));
    let (status, reply) = send(a.clone(), post("/api/zones/rename", &huge)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");

    // Two moves of B at once, from A and from B: both applied there, one
    // after the other; B ends where the later one put it.
    let to_default = post("/api/zones/move", r#"{"node": "porch", "zone": "default"}"#);
    let to_kitchen = post("/api/zones/move", r#"{"node": "porch", "zone": "Cuisine"}"#);
    let ((s1, r1), (s2, r2)) =
        tokio::join!(send(a.clone(), to_default), send(b.clone(), to_kitchen));
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK), "{r1} {r2}");
    let (_, state_b) = send(b.clone(), get("/api/state")).await;
    let last = if r1["placed"][0]["placement"]["id"] == state_b["zone"]["id"] {
        &r1
    } else {
        &r2
    };
    assert_eq!(
        last["placed"][0]["placement"], state_b["zone"],
        "{r1} {r2} {state_b}"
    );

    // Make sure B is in its own zone, then merge it back: one zone.
    let (status, reply) = send(
        a.clone(),
        post("/api/zones/move", r#"{"node": "porch", "zone": "Cuisine"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    wait_zones(
        a.clone(),
        Box::new(|z| z["zones"].as_array().is_some_and(|z| z.len() == 2)),
    )
    .await;
    let (status, reply) = send(
        a.clone(),
        post(
            "/api/zones/merge",
            r#"{"from": "Cuisine", "into": "Everywhere"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let zones = wait_zones(
        a.clone(),
        Box::new(|z| z["zones"].as_array().is_some_and(|z| z.len() == 1)),
    )
    .await;
    assert_eq!(
        zones["zones"][0]["members"].as_array().unwrap().len(),
        2,
        "{zones}"
    );
}
