//! The answers Atlas sends (JSON in its versioned content types, its error shape with
//! `X-Error-Code`, 429 with `Retry-After`) and the pages of a load balancer in front of it.

use super::request::V_PATCH;
use crate::validate::FieldError;
use axum::body::Body;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};
use serde_json::{Value, json};

pub(super) fn set_header(resp: &mut Response<Body>, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

pub(super) fn json_response(
    status: StatusCode,
    content_type: &'static str,
    body: &Value,
) -> Response<Body> {
    json_text_response(status, content_type, body.to_string())
}

/// A JSON answer whose text is already made (a listing put together from cached views).
pub(super) fn json_text_response(
    status: StatusCode,
    content_type: &'static str,
    body: String,
) -> Response<Body> {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

pub(super) fn ok(status: StatusCode, version: &str, body: &Value) -> Response<Body> {
    json_response(status, content_type_of(version), body)
}

/// `ok` for an answer whose JSON text is already made.
pub(super) fn ok_text(status: StatusCode, version: &str, body: String) -> Response<Body> {
    json_text_response(status, content_type_of(version), body)
}

fn content_type_of(version: &str) -> &'static str {
    if version == V_PATCH {
        "application/vnd.atlas.2025-03-12+json;charset=utf-8"
    } else {
        "application/vnd.atlas.2023-02-01+json;charset=utf-8"
    }
}

/// Atlas's error shape, with `X-Error-Code`.
pub(super) fn error(
    status: StatusCode,
    code: &str,
    detail: &str,
    fields: &[FieldError],
) -> Response<Body> {
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

pub(super) fn rate_limited(retry_after_secs: u64) -> Response<Body> {
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

/// What a load balancer in front of Atlas sends when the backend did not answer in time: its own
/// page, not Atlas's JSON error shape.
pub(super) fn gateway(status: u16) -> Response<Body> {
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

pub(super) fn duplicate(existing: &str) -> Response<Body> {
    error(
        StatusCode::CONFLICT,
        "STREAM_PRIVATE_LINK_ALREADY_EXISTS",
        &format!(
            "A private link connection with the same configuration already exists: {existing}."
        ),
        &[],
    )
}

pub(super) fn not_found(id: &str, group: &str) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        "RESOURCE_NOT_FOUND",
        &format!("Cannot find resource private link connection {id} in project {group}."),
        &[],
    )
}
