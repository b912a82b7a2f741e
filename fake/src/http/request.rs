//! Reading a request as Atlas does: the API version it asks for (406, 410), its content type (415),
//! form and query pairs, and a JSON object body (400).

use super::answer::error;
use crate::validate::FieldError;
use axum::body::Body;
use http::header::HeaderName;
use http::{HeaderMap, Response, StatusCode};
use serde_json::{Map, Value};

pub(super) const V1: &str = "2023-02-01";
/// The only version of the update call.
pub(super) const V_PATCH: &str = "2025-03-12";
/// Versions before this one are retired (410), later unknown ones are refused (406).
const OLDEST_LIVE: &str = "2023-01-01";

pub(super) fn header(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
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

pub(super) fn check_accept(accept: Option<&str>, wanted: &str) -> Result<(), Box<Response<Body>>> {
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

pub(super) fn check_content_type(
    value: Option<&str>,
    wanted: &str,
) -> Result<(), Box<Response<Body>>> {
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
pub(super) fn form_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub(super) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Box<Response<Body>>> {
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
