//! The API's one error type and its JSON extractor.
//!
//! [`ApiError`] answers `{"message": …}` with a 4xx for bad input and a
//! generic 500 for internal failures (the details go to the log);
//! [`ApiJson`] is `Json` whose rejections come back in the same shape, so
//! the web UI has one error path.

use axum::Json;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

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
    /// The thing asked for does not exist here (404).
    NotFound(String),
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
                "this node requires its token (printed by `firefly up`): send `Authorization: Bearer <token>`, or give the firefly commands --token or FIREFLY_TOKEN"
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
            ApiError::NotFound(message) => plain(StatusCode::NOT_FOUND, message),
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

impl ApiError {
    /// The answer to a refused command: 503 when no coordinator could take
    /// it (try again), 400 when the request itself was out of bounds, else
    /// 409 (not valid now).
    pub(crate) fn from_refusal(refusal: firefly_swarm::Refusal) -> Self {
        use firefly_swarm::Refusal;
        match refusal {
            Refusal::NotCoordinator | Refusal::Busy | Refusal::TooMany => {
                ApiError::Unavailable(refusal.to_string())
            }
            Refusal::Invalid(_) | Refusal::QueueFull { .. } | Refusal::NoSuchEntry { .. } => {
                ApiError::BadRequest(refusal.to_string())
            }
            other => ApiError::Refused(other.to_string()),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for ApiError {
    fn from(err: E) -> Self {
        ApiError::Internal(err.into())
    }
}

/// `Json` with rejections as [`ApiError::BadRequest`].
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(value)| ApiJson(value))
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
    }
}
