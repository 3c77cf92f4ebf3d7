//! The node's JSON API, served with axum (documented in `docs/API.md`).
//!
//! `GET /api/status`, `GET /api/state`, `GET /api/library`, and the playback
//! commands `POST /api/play|pause|resume|seek|next|queue|volume`, which go
//! through the playback driver to the coordinator.
//!
//! [`router`] is separate from [`serve`] so tests drive it with `oneshot` and
//! no socket. Errors come back as `{ "message": … }` with a 4xx for bad input
//! (malformed JSON included, through [`ApiJson`]) and a generic 500 for
//! internal failures (details go to the log). Requests a browser sends from
//! another origin are refused; when the node has a token (it is bound to a
//! non-loopback address) every request must carry `Authorization: Bearer …`.

use super::NodeState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What `GET /api/status` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StatusReport {
    pub(crate) peer_id: String,
    pub(crate) name: String,
    pub(crate) listen_addrs: Vec<String>,
    pub(crate) connected_peers: Vec<String>,
    pub(crate) members: Vec<MemberReport>,
    pub(crate) library_version: u64,
    pub(crate) clock: ClockReport,
    pub(crate) catalog: Vec<CatalogEntry>,
}

/// The swarm clock in the status report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ClockReport {
    /// Swarm time when the report was made, µs.
    pub(crate) swarm_time_us: i64,
    pub(crate) synced: bool,
    pub(crate) skew_ppm: f64,
    pub(crate) sync_error_us: Option<f64>,
}

/// One member in the status report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MemberReport {
    pub(crate) peer_id: String,
    pub(crate) name: String,
    pub(crate) library_version: u64,
    pub(crate) uptime_ms: u64,
}

/// One track of the swarm catalog and the peers that hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CatalogEntry {
    pub(crate) track: String,
    pub(crate) title: String,
    pub(crate) artist: Option<String>,
    pub(crate) size: u64,
    pub(crate) holders: Vec<String>,
}

/// The API's one error type.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// The request is malformed or out of range (400).
    BadRequest(String),
    /// No or a wrong token (401).
    Unauthorized,
    /// A cross-origin browser request (403).
    CrossOrigin,
    /// A `Host` that does not name this node: DNS rebinding (403).
    ForbiddenHost,
    /// The command is not valid now (409).
    Refused(String),
    /// No coordinator answered (503).
    Unavailable(String),
    /// Something on the node failed; the details are logged, not returned.
    Internal(anyhow::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let plain = |status: StatusCode, message: String| {
            (status, Json(serde_json::json!({ "message": message }))).into_response()
        };
        match self {
            ApiError::BadRequest(message) => plain(StatusCode::BAD_REQUEST, message),
            ApiError::Unauthorized => plain(
                StatusCode::UNAUTHORIZED,
                "this node requires `Authorization: Bearer <token>` (printed by `firefly up`)"
                    .into(),
            ),
            ApiError::CrossOrigin => plain(
                StatusCode::FORBIDDEN,
                "cross-origin requests are refused".into(),
            ),
            ApiError::ForbiddenHost => plain(
                StatusCode::FORBIDDEN,
                "this node does not answer to that host name (see `firefly up --http-host`)".into(),
            ),
            ApiError::Refused(message) => plain(StatusCode::CONFLICT, message),
            ApiError::Unavailable(message) => plain(StatusCode::SERVICE_UNAVAILABLE, message),
            ApiError::Internal(err) => {
                tracing::error!(err = %format!("{err:#}"), "api request failed");
                let body = serde_json::json!({ "message": "internal error" });
                (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
            }
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for ApiError {
    fn from(err: E) -> Self {
        ApiError::Internal(err.into())
    }
}

/// The API's routes.
pub(crate) fn router(state: NodeState) -> Router {
    Router::new()
        .route("/api/status", get(status))
        .merge(super::api::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::api::guard,
        ))
        .merge(super::ui::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::api::host_guard,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(10),
        ))
        .with_state(state)
}

/// Serves the API on `listener` until the task is dropped.
pub(crate) async fn serve(listener: tokio::net::TcpListener, state: NodeState) {
    if let Err(err) = axum::serve(listener, router(state)).await {
        tracing::error!(%err, "the API server stopped");
    }
}

async fn status(State(state): State<NodeState>) -> Result<Json<StatusReport>, ApiError> {
    let members = state.swarm.members().await?;
    let connected = state.swarm.connected_peers().await?;
    let listen = state.swarm.listen_addrs().await?;
    let clock = state.swarm.clock().await?;
    let library = state.library.clone();
    let version = tokio::task::spawn_blocking(move || library.version()).await??;
    let me = state.swarm.peer_id().to_string();
    // The union of every member's library, this node's included.
    let catalog = state
        .swarm
        .catalog()
        .await?
        .into_iter()
        .map(|entry| CatalogEntry {
            track: entry.summary.track.to_hex(),
            title: firefly_library::display_text(&entry.summary.meta.title),
            artist: entry
                .summary
                .meta
                .artist
                .as_deref()
                .map(firefly_library::display_text),
            size: entry.summary.size,
            holders: entry.holders.iter().map(ToString::to_string).collect(),
        })
        .collect();
    Ok(Json(StatusReport {
        peer_id: me.clone(),
        name: state.name.clone(),
        listen_addrs: listen.iter().map(ToString::to_string).collect(),
        connected_peers: connected.iter().map(ToString::to_string).collect(),
        members: members
            .iter()
            .zip(super::api::shown_names(
                (state.swarm.peer_id(), &state.name),
                &members,
            ))
            .map(|(m, name)| MemberReport {
                peer_id: m.peer.to_string(),
                name,
                library_version: m.status.library_version,
                uptime_ms: m.uptime_ms,
            })
            .collect(),
        library_version: version,
        clock: ClockReport {
            swarm_time_us: clock.now.as_micros(),
            synced: clock.synced,
            skew_ppm: clock.skew_ppm,
            sync_error_us: clock.sync_error_micros,
        },
        catalog,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use firefly_library::{Library, LibraryConfig};
    use tower::ServiceExt;

    async fn state(dir: &std::path::Path) -> NodeState {
        state_with(dir, None).await
    }

    async fn state_with(dir: &std::path::Path, token: Option<String>) -> NodeState {
        node(dir, "test-node", &super::super::OutputArg::Null, token).await
    }

    /// A node on 127.0.0.1 with `output` that answers peers' volume requests
    /// and reports its playout in heartbeats, as `firefly up` does.
    async fn node(
        dir: &std::path::Path,
        name: &str,
        output: &super::super::OutputArg,
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
        let timeline = std::sync::Arc::new(super::super::timeline::NodeTimeline::new(
            now.clone(),
            client.mapping(),
        ));
        let audio = super::super::audio::Audio::start(output, timeline, 0).unwrap();
        let control =
            super::super::driver::spawn(client.clone(), library.clone(), audio.clone(), now);
        let volume = super::super::events::Volume::default();
        let volumes = super::super::events::VolumeService {
            client: client.clone(),
            audio: audio.clone(),
            volume: volume.clone(),
        };
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let Some(other) = volumes.intercept(event).await {
                    tracing::trace!(?other, "event the test does not handle");
                }
            }
        });
        tokio::spawn(super::super::events::report_playout(
            client.clone(),
            audio.clone(),
            volume.clone(),
        ));
        NodeState {
            swarm: client,
            library,
            name: name.into(),
            audio,
            control,
            volume,
            token,
            http_hosts: Default::default(),
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
        let null = super::super::OutputArg::Null;
        let virtual_out = super::super::OutputArg::Play(firefly_player::OutputChoice::Virtual);
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
        let (status, reply) = send(state, post("/api/volume", r#"{"volume": 0.5}"#)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{reply}");
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
        use super::super::api::{host_allowed, token_matches};
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
        let shown = super::super::api::shown_names((me, "me"), &members);
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

    #[tokio::test]
    async fn unknown_paths_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let response = router(state(dir.path()).await)
            .oneshot(Request::get("/api/nothing").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
}
