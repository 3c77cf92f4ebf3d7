//! The web UI's static files, embedded in the binary and served at `/` and
//! `/ui/…`.
//!
//! The files live in the repository's `ui/` folder (plain HTML, CSS and
//! JavaScript modules, no build step) and are compiled in with
//! `include_str!`, so `cargo run` alone serves the UI and a node needs no
//! files beside its binary. This module serves them only; the data comes
//! from the JSON API in [`super::http`]. Every answer says
//! `Cache-Control: no-cache` so a browser picks up a new binary's UI at once.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file: its name under `/ui/`, content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the UI. `index.html` is also served at `/`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: HTML,
        body: include_str!("../../ui/index.html"),
    },
    Asset {
        name: "style.css",
        content_type: CSS,
        body: include_str!("../../ui/style.css"),
    },
    Asset {
        name: "app.js",
        content_type: JS,
        body: include_str!("../../ui/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: JS,
        body: include_str!("../../ui/api.js"),
    },
    Asset {
        name: "dom.js",
        content_type: JS,
        body: include_str!("../../ui/dom.js"),
    },
    Asset {
        name: "browse.js",
        content_type: JS,
        body: include_str!("../../ui/browse.js"),
    },
    Asset {
        name: "covers.js",
        content_type: JS,
        body: include_str!("../../ui/covers.js"),
    },
    Asset {
        name: "live.js",
        content_type: JS,
        body: include_str!("../../ui/live.js"),
    },
    Asset {
        name: "fireflies.js",
        content_type: JS,
        body: include_str!("../../ui/fireflies.js"),
    },
    Asset {
        name: "zones.js",
        content_type: JS,
        body: include_str!("../../ui/zones.js"),
    },
];

/// The UI's routes: `/` (the page) and `/ui/{file}` (its files).
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { serve("index.html") }))
        .route(
            "/ui/{file}",
            get(|Path(file): Path<String>| async move { serve(&file) }),
        )
}

/// The named file with its content type, or 404.
fn serve(name: &str) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        let body = serde_json::json!({ "message": format!("no UI file named {name:?}") });
        return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
        ],
        asset.body,
    )
        .into_response()
}

/// The page may load only its own files and talk only to its own node: no
/// inline scripts, no other hosts (the nodes may have no internet, and a
/// name that slipped into markup still could not run). Cover pictures are
/// fetched with the token and shown from `blob:` URLs.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     frame-ancestors 'none'";

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_path(path: &str) -> (StatusCode, Option<String>, Option<String>, String) {
        let response = routes::<()>()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let header = |name| {
            response
                .headers()
                .get(name)
                .map(|v: &HeaderValue| v.to_str().unwrap().to_string())
        };
        let content_type = header(header::CONTENT_TYPE);
        let cache = header(header::CACHE_CONTROL);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            content_type,
            cache,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn the_root_serves_the_page_uncached() {
        let (status, content_type, cache, body) = get_path("/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type.as_deref(), Some(HTML));
        assert_eq!(cache.as_deref(), Some("no-cache"));
        assert!(body.contains("<script type=\"module\" src=\"/ui/app.js\">"));
    }

    #[tokio::test]
    async fn every_file_the_page_names_is_served_with_its_type() {
        for asset in ASSETS {
            let (status, content_type, _, body) = get_path(&format!("/ui/{}", asset.name)).await;
            assert_eq!(status, StatusCode::OK, "{}", asset.name);
            assert_eq!(content_type.as_deref(), Some(asset.content_type));
            assert_eq!(body, asset.body);
        }
        // Every module the scripts import is one of the embedded files.
        for asset in ASSETS.iter().filter(|a| a.content_type == JS) {
            for line in asset.body.lines().filter(|l| l.starts_with("import ")) {
                let file = line.rsplit("\"./").next().unwrap().trim_end_matches("\";");
                assert!(
                    ASSETS.iter().any(|a| a.name == file),
                    "{} imports {file}, which is not embedded",
                    asset.name
                );
            }
        }
    }

    #[tokio::test]
    async fn unknown_and_traversing_names_are_not_found() {
        for path in [
            "/ui/nothing.js",
            "/ui/..%2FCargo.toml",
            "/ui/",
            "/ui/%2e%2e",
        ] {
            let (status, _, _, _) = get_path(path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        }
    }
}
