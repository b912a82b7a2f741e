//! The fake's HTTP side: accepting loopback connections, routing, the Atlas checks in Atlas's order
//! (auth, version, project id, rate limit), fault injection, and dropping connections for real.

use super::auth;
use super::config::{FakeOp, Fault};
use super::state::{Committed, Inner, RateHeaders, Take};
use super::validate::{self, FieldError};
use axum::body::Body;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const V1: &str = "2023-02-01";
/// The only version of the update call.
const V_PATCH: &str = "2025-03-12";
/// Versions before this one are retired (410), later unknown ones are refused (406).
const OLDEST_LIVE: &str = "2023-01-01";
const PREFIX: &str = "/api/atlas/v2/groups/";
const MAX_BODY_BYTES: usize = 1 << 20;

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    pub addr: SocketAddr,
    /// The server's tasks: the backend's delayed commits run here, so shutdown waits for them.
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Shared {
    pub fn new(
        inner: Inner,
        addr: SocketAddr,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Shared {
        Shared {
            inner: Mutex::new(inner),
            addr,
            tracker,
            shutdown,
        }
    }

    /// A poisoned lock only means a panic elsewhere; the data is still the best we have.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the handler wants done with the request.
enum Outcome {
    Answer(Response<Body>),
    /// Close the TCP connection without a word.
    Drop,
}

/// What the backend made of a call.
enum Executed {
    Answer(Response<Body>),
    /// A valid create, handed to the backend; the answer waits for its commit.
    Commit {
        pending: oneshot::Receiver<Committed>,
        echo: Map<String, Value>,
    },
}

/// Hands a validated create to the backend, which commits it after `commit_delay_ms` in a task of
/// its own: dropping the handler (the client left) cannot cancel it. Only shutdown does.
fn schedule_commit(
    shared: &Arc<Shared>,
    inner: &mut Inner,
    group: &str,
    body: Map<String, Value>,
    now: Instant,
) -> oneshot::Receiver<Committed> {
    let (tx, rx) = oneshot::channel();
    let delay = Duration::from_millis(inner.config.commit_delay_ms);
    if delay.is_zero() {
        let _ = tx.send(inner.commit_create(group, body, now));
        return rx;
    }
    inner.pending_commits += 1;
    let due = now.checked_add(delay);
    let task_shared = shared.clone();
    let group = group.to_owned();
    shared.tracker.spawn(async move {
        let shared = task_shared;
        let reached = match due {
            Some(due) => tokio::select! {
                _ = shared.shutdown.cancelled() => false,
                _ = tokio::time::sleep_until(due) => true,
            },
            // A delay beyond the clock's range: the commit never comes.
            None => {
                shared.shutdown.cancelled().await;
                false
            }
        };
        let committed = {
            let mut inner = shared.lock();
            inner.pending_commits = inner.pending_commits.saturating_sub(1);
            reached.then(|| inner.commit_create(&group, body, Instant::now()))
        };
        if let Some(committed) = committed {
            // The client may be gone: then nobody hears, and the connection exists all the same.
            let _ = tx.send(committed);
        }
    });
    rx
}

/// What a load balancer in front of Atlas sends when the backend did not answer in time: its own
/// page, not Atlas's JSON error shape.
fn gateway(status: u16) -> Response<Body> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let reason = status.canonical_reason().unwrap_or("Gateway Error");
    let (content_type, body) = if status == StatusCode::BAD_GATEWAY {
        (
            "text/html",
            format!(
                "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1></center>\r\n</body>\r\n</html>\r\n",
                code = status.as_u16()
            ),
        )
    } else if status == StatusCode::GATEWAY_TIMEOUT {
        ("text/plain", "upstream request timeout".to_owned())
    } else {
        ("text/plain", format!("{} {reason}", status.as_u16()))
    };
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Serves until `shutdown` fires; each connection in its own task, so it can be dropped alone.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!(%error, "fake Atlas: accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let drop_now = CancellationToken::new();
            let signal = drop_now.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let shared = shared.clone();
                let signal = signal.clone();
                async move {
                    match handle(&shared, req).await {
                        Outcome::Answer(resp) => Ok::<_, Infallible>(resp),
                        Outcome::Drop => {
                            signal.cancel();
                            std::future::pending().await
                        }
                    }
                }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            // Returning drops `conn`, and with it the socket: the client sees the connection
            // close with no answer.
            tokio::select! {
                _ = conn => {}
                _ = drop_now.cancelled() => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

enum Route {
    Token,
    Revoke,
    Api {
        op: FakeOp,
        group: String,
        id: Option<String>,
    },
    MethodNotAllowed(&'static str),
    NotFound,
}

fn route(method: &Method, path: &str) -> Route {
    match path {
        "/api/oauth/token" => {
            return if method == Method::POST {
                Route::Token
            } else {
                Route::MethodNotAllowed("token")
            };
        }
        "/api/oauth/revoke" => {
            return if method == Method::POST {
                Route::Revoke
            } else {
                Route::MethodNotAllowed("revoke")
            };
        }
        _ => {}
    }
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return Route::NotFound;
    };
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        [group, "streams", "privateLinkConnections"] => {
            let op = match *method {
                Method::GET => FakeOp::List,
                Method::POST => FakeOp::Create,
                _ => return Route::MethodNotAllowed("other"),
            };
            Route::Api {
                op,
                group: (*group).to_owned(),
                id: None,
            }
        }
        [group, "streams", "privateLinkConnections", id] => {
            let op = match *method {
                Method::GET => FakeOp::Get,
                Method::DELETE => FakeOp::Delete,
                Method::PATCH => FakeOp::Update,
                _ => return Route::MethodNotAllowed("other"),
            };
            Route::Api {
                op,
                group: (*group).to_owned(),
                id: Some((*id).to_owned()),
            }
        }
        _ => Route::NotFound,
    }
}

fn set_header(resp: &mut Response<Body>, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

fn json_response(status: StatusCode, content_type: &'static str, body: &Value) -> Response<Body> {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn ok(status: StatusCode, version: &str, body: &Value) -> Response<Body> {
    let content_type = if version == V_PATCH {
        "application/vnd.atlas.2025-03-12+json;charset=utf-8"
    } else {
        "application/vnd.atlas.2023-02-01+json;charset=utf-8"
    };
    json_response(status, content_type, body)
}

/// Atlas's error shape, with `X-Error-Code`.
fn error(status: StatusCode, code: &str, detail: &str, fields: &[FieldError]) -> Response<Body> {
    let mut body = json!({
        "error": status.as_u16(),
        "errorCode": code,
        "detail": detail,
        "reason": status.canonical_reason().unwrap_or(""),
        "parameters": [],
    });
    if !fields.is_empty() {
        body["badRequestDetail"] = json!({
            "fields": fields.iter().map(|f| json!({"field": f.field, "description": f.description})).collect::<Vec<_>>()
        });
    }
    let mut resp = json_response(status, "application/json", &body);
    set_header(&mut resp, HeaderName::from_static("x-error-code"), code);
    resp
}

fn rate_limited(retry_after_secs: u64) -> Response<Body> {
    let mut resp = error(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED_TOKEN_BUCKET",
        &format!(
            "You have exceeded the rate limit for this endpoint set. Please retry after {retry_after_secs} seconds."
        ),
        &[],
    );
    set_header(&mut resp, RETRY_AFTER, &retry_after_secs.to_string());
    resp
}

fn header(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The Atlas versions named in an Accept or Content-Type value.
fn versions(value: &str) -> Vec<&str> {
    value
        .split(',')
        .filter_map(|media| {
            let media = media.split(';').next()?.trim();
            media
                .strip_prefix("application/vnd.atlas.")?
                .strip_suffix("+json")
        })
        .collect()
}

fn check_accept(accept: Option<&str>, wanted: &str) -> Result<(), Box<Response<Body>>> {
    let named = accept.map(versions).unwrap_or_default();
    if named.contains(&wanted) {
        return Ok(());
    }
    if let Some(old) = named.iter().find(|v| **v < OLDEST_LIVE) {
        return Err(Box::new(error(
            StatusCode::GONE,
            "VERSION_GONE",
            &format!(
                "API version {old} has been retired; use application/vnd.atlas.{wanted}+json."
            ),
            &[],
        )));
    }
    Err(Box::new(error(
        StatusCode::NOT_ACCEPTABLE,
        "INVALID_VERSION",
        &format!(
            "No supported API version was requested for this resource; send Accept: application/vnd.atlas.{wanted}+json."
        ),
        &[],
    )))
}

fn check_content_type(value: Option<&str>, wanted: &str) -> Result<(), Box<Response<Body>>> {
    let Some(value) = value else { return Ok(()) };
    let media = value.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/json") || versions(value).contains(&wanted) {
        return Ok(());
    }
    Err(Box::new(error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
        &format!("Content-Type {media} is not supported; send application/json."),
        &[],
    )))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], escaped) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=1&b=2` (query strings and form bodies).
fn form_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Decrements the in-flight gauges even when the connection is dropped mid-call.
struct InFlight<'a> {
    shared: &'a Shared,
    group: Option<String>,
}

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared, group: Option<String>) -> InFlight<'a> {
        shared.lock().enter(group.as_deref());
        InFlight { shared, group }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.shared.lock().leave(self.group.as_deref());
    }
}

async fn handle(shared: &Arc<Shared>, req: Request<Incoming>) -> Outcome {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(Body::new(body), MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            shared.lock().record("other", 413);
            return Outcome::Answer(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "The request body is too large or could not be read.",
                &[],
            ));
        }
    };
    match route(&parts.method, parts.uri.path()) {
        Route::Token => oauth(shared, FakeOp::Token, &parts.headers, &body).await,
        Route::Revoke => oauth(shared, FakeOp::Revoke, &parts.headers, &body).await,
        Route::Api { op, group, id } => api(shared, op, &group, id.as_deref(), &parts, &body).await,
        Route::MethodNotAllowed(op) => {
            shared.lock().record(op, 405);
            Outcome::Answer(error(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "This method is not allowed on this resource.",
                &[],
            ))
        }
        Route::NotFound => {
            shared.lock().record("other", 404);
            Outcome::Answer(error(
                StatusCode::NOT_FOUND,
                "RESOURCE_NOT_FOUND",
                &format!("Cannot find resource {}.", parts.uri.path()),
                &[],
            ))
        }
    }
}

/// Applies a fault that answers in place of the call; `Slow` waits and lets the call through.
async fn pre_fault(fault: Option<Fault>) -> Option<Outcome> {
    match fault? {
        Fault::RateLimited { retry_after_secs } => {
            Some(Outcome::Answer(rate_limited(retry_after_secs.max(1))))
        }
        Fault::ServerError => Some(Outcome::Answer(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNEXPECTED_ERROR",
            "Unexpected error.",
            &[],
        ))),
        Fault::Unavailable => {
            let mut resp = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "SERVICE_UNAVAILABLE",
                "Service unavailable; please retry.",
                &[],
            );
            set_header(&mut resp, RETRY_AFTER, "1");
            Some(Outcome::Answer(resp))
        }
        Fault::Slow { ms } => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            None
        }
        Fault::DropBeforeCommit => Some(Outcome::Drop),
        Fault::DropAfterCommit
        | Fault::ConcurrentCreate
        | Fault::ResetThenCommit
        | Fault::GatewayThenCommit { .. } => None,
    }
}

async fn oauth(shared: &Shared, op: FakeOp, headers: &HeaderMap, body: &[u8]) -> Outcome {
    let form = form_pairs(&String::from_utf8_lossy(body));
    let field = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let fault = shared.lock().fault_for(op, None);
    let after = matches!(fault, Some(Fault::DropAfterCommit | Fault::ResetThenCommit));
    if let Some(outcome) = pre_fault(fault).await {
        let status = match &outcome {
            Outcome::Answer(r) => r.status().as_u16(),
            Outcome::Drop => 0,
        };
        shared.lock().record(op.as_str(), status);
        return outcome;
    }
    let mut inner = shared.lock();
    let authorization = header(headers, http::header::AUTHORIZATION);
    let resp = if !auth::client_ok(&inner.config.auth, authorization) {
        json_response(
            StatusCode::UNAUTHORIZED,
            "application/json",
            &json!({"error": "invalid_client", "error_description": "Invalid credentials provided."}),
        )
    } else if op == FakeOp::Token {
        if field("grant_type") == Some("client_credentials") {
            let (token, ttl) = auth::issue_token(&mut inner, Instant::now());
            let mut resp = json_response(
                StatusCode::OK,
                "application/json",
                &json!({"access_token": token, "expires_in": ttl, "token_type": "Bearer"}),
            );
            set_header(&mut resp, http::header::CACHE_CONTROL, "no-store");
            resp
        } else {
            json_response(
                StatusCode::BAD_REQUEST,
                "application/json",
                &json!({"error": "unsupported_grant_type", "error_description": "grant_type must be client_credentials."}),
            )
        }
    } else {
        if let Some(token) = field("token") {
            auth::revoke_token(&mut inner, token);
        }
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::OK;
        resp
    };
    if after {
        inner.record(op.as_str(), 0);
        return Outcome::Drop;
    }
    let resp = match fault {
        Some(Fault::GatewayThenCommit { status }) => gateway(status),
        _ => resp,
    };
    inner.record(op.as_str(), resp.status().as_u16());
    Outcome::Answer(resp)
}

async fn api(
    shared: &Arc<Shared>,
    op: FakeOp,
    group: &str,
    id: Option<&str>,
    parts: &http::request::Parts,
    body: &[u8],
) -> Outcome {
    let group_ok = validate::is_group_id(group);
    let _flight = InFlight::enter(shared, group_ok.then(|| group.to_owned()));
    let (outcome, rate) = api_inner(shared, op, group, group_ok, id, parts, body).await;
    let latency = shared.lock().config.latency_ms;
    if latency > 0 && matches!(outcome, Outcome::Answer(_)) {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let mut inner = shared.lock();
    match outcome {
        Outcome::Drop => {
            inner.record(op.as_str(), 0);
            Outcome::Drop
        }
        Outcome::Answer(mut resp) => {
            // Captured when the call took its token: later refills (latency, a slow fault) do
            // not count, so successive answers show the bucket as each call left it.
            if let Some(rate) = rate {
                set_header(
                    &mut resp,
                    HeaderName::from_static("ratelimit-limit"),
                    &rate.limit.to_string(),
                );
                set_header(
                    &mut resp,
                    HeaderName::from_static("ratelimit-remaining"),
                    &rate.remaining.to_string(),
                );
            }
            inner.record(op.as_str(), resp.status().as_u16());
            Outcome::Answer(resp)
        }
    }
}

async fn api_inner(
    shared: &Arc<Shared>,
    op: FakeOp,
    group: &str,
    group_ok: bool,
    id: Option<&str>,
    parts: &http::request::Parts,
    body: &[u8],
) -> (Outcome, Option<RateHeaders>) {
    let version = if op == FakeOp::Update { V_PATCH } else { V1 };
    let (fault, rate) = {
        let now = Instant::now();
        let mut inner = shared.lock();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or_else(|| parts.uri.path());
        let authorization = header(&parts.headers, http::header::AUTHORIZATION);
        if let Err(refusal) = auth::check_api(
            &mut inner,
            parts.method.as_str(),
            path_and_query,
            authorization,
            now,
        ) {
            let mut resp = error(
                StatusCode::UNAUTHORIZED,
                "USER_UNAUTHORIZED",
                refusal.detail,
                &[],
            );
            if let Some(stale) = refusal.challenge {
                let challenge = auth::challenge(&mut inner, stale, now);
                set_header(&mut resp, WWW_AUTHENTICATE, &challenge);
            }
            let rate = group_ok.then(|| inner.rate_headers(group, now)).flatten();
            return (Outcome::Answer(resp), rate);
        }
        if let Err(resp) = check_accept(header(&parts.headers, http::header::ACCEPT), version) {
            let rate = group_ok.then(|| inner.rate_headers(group, now)).flatten();
            return (Outcome::Answer(*resp), rate);
        }
        if !group_ok {
            let resp = error(
                StatusCode::BAD_REQUEST,
                "INVALID_GROUP_ID",
                &format!("An invalid group ID {group} was specified."),
                &[],
            );
            return (Outcome::Answer(resp), None);
        }
        inner.check_retry_after(group, now);
        let rate = match inner.take_token(group, now) {
            Take::Ok(rate) => rate,
            Take::Empty {
                retry_after_secs,
                rate,
            } => {
                inner.note_rate_limited(group, now, retry_after_secs);
                return (Outcome::Answer(rate_limited(retry_after_secs)), Some(rate));
            }
        };
        let fault = inner.fault_for(op, Some(group));
        if let Some(Fault::RateLimited { retry_after_secs }) = fault {
            inner.note_rate_limited(group, now, retry_after_secs.max(1));
        }
        (fault, rate)
    };
    let drop_after = fault == Some(Fault::DropAfterCommit);
    if let Some(outcome) = pre_fault(fault).await {
        return (outcome, rate);
    }
    let executed = execute(shared, op, group, id, parts, body, version);
    // The gateway gives up on the client at once; the backend keeps the call (a pending commit
    // goes on without anyone waiting for it).
    match fault {
        Some(Fault::ResetThenCommit) => return (Outcome::Drop, rate),
        Some(Fault::GatewayThenCommit { status }) => {
            return (Outcome::Answer(gateway(status)), None);
        }
        _ => {}
    }
    let resp = match executed {
        Executed::Answer(resp) => resp,
        Executed::Commit { pending, mut echo } => match pending.await {
            Ok(Committed::Created(id)) => {
                echo.insert("_id".into(), Value::String(id));
                ok(StatusCode::OK, version, &Value::Object(echo))
            }
            Ok(Committed::Duplicate(existing)) => duplicate(&existing),
            // The fake is shutting down: the connection is about to close anyway.
            Err(_) => return (Outcome::Drop, rate),
        },
    };
    if drop_after {
        return (Outcome::Drop, rate);
    }
    if fault == Some(Fault::ConcurrentCreate)
        && op == FakeOp::Create
        && resp.status() == StatusCode::OK
    {
        let resp = error(
            StatusCode::CONFLICT,
            "STREAM_PRIVATE_LINK_ALREADY_EXISTS",
            "A private link connection with the same configuration already exists.",
            &[],
        );
        return (Outcome::Answer(resp), rate);
    }
    (Outcome::Answer(resp), rate)
}

fn duplicate(existing: &str) -> Response<Body> {
    error(
        StatusCode::CONFLICT,
        "STREAM_PRIVATE_LINK_ALREADY_EXISTS",
        &format!(
            "A private link connection with the same configuration already exists: {existing}."
        ),
        &[],
    )
}

fn not_found(id: &str, group: &str) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        "RESOURCE_NOT_FOUND",
        &format!("Cannot find resource private link connection {id} in project {group}."),
        &[],
    )
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Box<Response<Body>>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "The request body must be a JSON object.",
            &[FieldError {
                field: String::new(),
                description: "must be a JSON object".into(),
            }],
        ))),
        Err(e) => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            &format!("The request body is not valid JSON: {e}."),
            &[FieldError {
                field: String::new(),
                description: "is not valid JSON".into(),
            }],
        ))),
    }
}

fn execute(
    shared: &Arc<Shared>,
    op: FakeOp,
    group: &str,
    id: Option<&str>,
    parts: &http::request::Parts,
    body: &[u8],
    version: &str,
) -> Executed {
    let now = Instant::now();
    let mut inner = shared.lock();
    inner.purge(group, now);
    if op == FakeOp::Create {
        if let Err(resp) = check_content_type(header(&parts.headers, CONTENT_TYPE), version) {
            return Executed::Answer(*resp);
        }
        let map = match parse_object(body) {
            Ok(m) => m,
            Err(resp) => return Executed::Answer(*resp),
        };
        if let Err(resp) = check_create(&inner, &map, body) {
            return Executed::Answer(*resp);
        }
        let pending = schedule_commit(shared, &mut inner, group, map.clone(), now);
        return Executed::Commit { pending, echo: map };
    }
    Executed::Answer(execute_other(
        &mut inner,
        shared.addr,
        op,
        group,
        id,
        parts,
        body,
        version,
        now,
    ))
}

/// Atlas's checks of a create body, before the backend takes it.
fn check_create(
    inner: &Inner,
    map: &Map<String, Value>,
    body: &[u8],
) -> Result<(), Box<Response<Body>>> {
    let problems = validate::validate_create(map);
    if !problems.is_empty() {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "The request body is not a valid private link connection.",
            &problems,
        )));
    }
    if let Some(needle) = &inner.config.reject_when_contains
        && String::from_utf8_lossy(body).contains(needle.as_str())
    {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "This project cannot host the private link connection: it has no cluster or network peering with the provider and region.",
            &[],
        )));
    }
    Ok(())
}

/// Every call but create: the backend answers at once.
#[allow(clippy::too_many_arguments)]
fn execute_other(
    inner: &mut Inner,
    addr: SocketAddr,
    op: FakeOp,
    group: &str,
    id: Option<&str>,
    parts: &http::request::Parts,
    body: &[u8],
    version: &str,
    now: Instant,
) -> Response<Body> {
    match (op, id) {
        (FakeOp::List, _) => list(inner, addr, group, parts, now),
        (FakeOp::Get, Some(id)) => {
            let view = inner
                .projects
                .get(group)
                .and_then(|p| p.conns.iter().find(|c| c.id == id))
                .map(|c| inner.view(c, now));
            match view {
                Some(v) => ok(StatusCode::OK, version, &v),
                None => not_found(id, group),
            }
        }
        (FakeOp::Delete, Some(id)) => {
            let conn = inner
                .projects
                .get_mut(group)
                .and_then(|p| p.conns.iter_mut().find(|c| c.id == id));
            match conn {
                Some(c) => {
                    c.deleted.get_or_insert(now);
                    inner.purge(group, now);
                    ok(StatusCode::ACCEPTED, version, &json!({}))
                }
                None => not_found(id, group),
            }
        }
        (FakeOp::Update, Some(id)) => {
            if let Err(resp) = check_content_type(header(&parts.headers, CONTENT_TYPE), version) {
                return *resp;
            }
            let map = match parse_object(body) {
                Ok(m) => m,
                Err(resp) => return *resp,
            };
            let mut problems: Vec<FieldError> = map
                .keys()
                .filter(|k| *k != "dnsDomain")
                .map(|k| FieldError {
                    field: k.clone(),
                    description: "cannot be updated; only dnsDomain can".into(),
                })
                .collect();
            let domain = map.get("dnsDomain").and_then(Value::as_str);
            if domain.is_none() {
                problems.push(FieldError {
                    field: "dnsDomain".into(),
                    description: "is required and must be a string".into(),
                });
            }
            if !problems.is_empty() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "VALIDATION_ERROR",
                    "Only dnsDomain can be updated.",
                    &problems,
                );
            }
            let Some(pos) = inner.projects.get(group).and_then(|p| {
                p.conns
                    .iter()
                    .position(|c| c.id == id && c.deleted.is_none())
            }) else {
                return not_found(id, group);
            };
            let (has_domain, state) = {
                let Some(c) = inner.projects.get(group).and_then(|p| p.conns.get(pos)) else {
                    return not_found(id, group);
                };
                let view = inner.view(c, now);
                (
                    c.body.contains_key("dnsDomain"),
                    view.get("state")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                )
            };
            if has_domain && state != "IDLE" {
                return error(
                    StatusCode::BAD_REQUEST,
                    "VALIDATION_ERROR",
                    &format!(
                        "dnsDomain can only be changed while none is set or the connection is IDLE (it is {state})."
                    ),
                    &[FieldError {
                        field: "dnsDomain".into(),
                        description: "cannot be changed in this state".into(),
                    }],
                );
            }
            let Some(c) = inner
                .projects
                .get_mut(group)
                .and_then(|p| p.conns.get_mut(pos))
            else {
                return not_found(id, group);
            };
            if validate::awaits_domain(&c.body) {
                c.lifecycle_from = now;
            }
            c.body.insert(
                "dnsDomain".into(),
                Value::String(domain.unwrap_or("").to_owned()),
            );
            c.key = validate::duplicate_key(&c.body);
            let Some(c) = inner.projects.get(group).and_then(|p| p.conns.get(pos)) else {
                return not_found(id, group);
            };
            let view = inner.view(c, now);
            ok(StatusCode::OK, version, &view)
        }
        _ => not_found(id.unwrap_or(""), group),
    }
}

fn list(
    inner: &mut Inner,
    addr: SocketAddr,
    group: &str,
    parts: &http::request::Parts,
    now: Instant,
) -> Response<Body> {
    let query = form_pairs(parts.uri.query().unwrap_or(""));
    let mut items_per_page = 100u64;
    let mut page_num = 1u64;
    let mut problems = Vec::new();
    for (key, value) in &query {
        match key.as_str() {
            "itemsPerPage" => match value.parse::<u64>() {
                Ok(n) if (1..=500).contains(&n) => items_per_page = n,
                _ => problems.push(FieldError {
                    field: "itemsPerPage".into(),
                    description: "must be an integer from 1 to 500".into(),
                }),
            },
            "pageNum" => match value.parse::<u64>() {
                Ok(n) if n >= 1 => page_num = n,
                _ => problems.push(FieldError {
                    field: "pageNum".into(),
                    description: "must be an integer of at least 1".into(),
                }),
            },
            _ => {}
        }
    }
    if !problems.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY_PARAMETER",
            "A query parameter is invalid.",
            &problems,
        );
    }
    let all: Vec<Value> = inner
        .projects
        .get(group)
        .map(|p| p.conns.iter().map(|c| inner.view(c, now)).collect())
        .unwrap_or_default();
    let total = all.len() as u64;
    let start = (page_num - 1).saturating_mul(items_per_page);
    let results: Vec<Value> = all
        .into_iter()
        .skip(usize::try_from(start).unwrap_or(usize::MAX))
        .take(usize::try_from(items_per_page).unwrap_or(usize::MAX))
        .collect();
    let href = |page: u64| {
        format!(
            "http://{addr}{PREFIX}{group}/streams/privateLinkConnections?pageNum={page}&itemsPerPage={items_per_page}"
        )
    };
    let mut links = vec![json!({"rel": "self", "href": href(page_num)})];
    if page_num > 1 {
        links.push(json!({"rel": "previous", "href": href(page_num - 1)}));
    }
    if start.saturating_add(items_per_page) < total {
        links.push(json!({"rel": "next", "href": href(page_num + 1)}));
    }
    ok(
        StatusCode::OK,
        V1,
        &json!({"links": links, "results": results, "totalCount": total}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_accept() {
        assert_eq!(
            versions("application/vnd.atlas.2023-02-01+json;charset=utf-8, application/json"),
            vec!["2023-02-01"]
        );
        assert!(check_accept(Some("application/vnd.atlas.2023-02-01+json"), V1).is_ok());
        let gone = check_accept(Some("application/vnd.atlas.2022-06-01+json"), V1).err();
        assert_eq!(gone.map(|r| r.status()), Some(StatusCode::GONE));
        let missing = check_accept(None, V1).err();
        assert_eq!(
            missing.map(|r| r.status()),
            Some(StatusCode::NOT_ACCEPTABLE)
        );
    }

    #[test]
    fn form_decoding_handles_escapes() {
        assert_eq!(
            form_pairs("token=a%2Bb+c&x"),
            vec![
                ("token".into(), "a+b c".into()),
                ("x".into(), String::new())
            ]
        );
        assert_eq!(percent_decode("100%"), "100%");
    }
}
