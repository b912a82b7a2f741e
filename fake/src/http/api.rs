//! One call, with Atlas's checks in Atlas's order (auth, version, project id, rate limit), then
//! the faults that answer in its place or spoil its answer; the OAuth endpoints likewise.

use super::answer::{duplicate, error, gateway, json_response, ok, rate_limited, set_header};
use super::backend::{Executed, execute};
use super::request::{V_PATCH, V1, check_accept, form_pairs, header};
use super::{InFlight, Outcome, Shared};
use crate::auth;
use crate::config::{FakeOp, Fault};
use crate::state::{Committed, RateHeaders, Take};
use crate::validate;
use axum::body::Body;
use http::header::WWW_AUTHENTICATE;
use http::header::{HeaderName, RETRY_AFTER};
use http::{HeaderMap, Response, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

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

pub(super) async fn oauth(
    shared: &Shared,
    op: FakeOp,
    headers: &HeaderMap,
    body: &[u8],
) -> Outcome {
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

pub(super) async fn api(
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
