//! Error classes of Atlas calls, decided once and here: what failed, whether it may have changed
//! something in Atlas, and what the operator should do.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::scrub::Scrubber;
use super::{MAX_RETRY_AFTER, Operation, RateLimitInfo};
use crate::model::GroupId;

/// Atlas's error code for a delete refused because a stream connection uses the link.
pub(crate) const IN_USE_CODE: &str = "STREAM_PRIVATE_LINK_IN_USE";

/// What the caller may do about a failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorClass {
    /// 409: Atlas says something conflicts (likely an equivalent connection exists).
    Conflict,
    /// 429; `Retry-After` (seconds or HTTP date) when present.
    RateLimited { retry_after: Option<Duration> },
    /// Safe to repeat: 5xx on list/get/delete, timeouts of reads, and connect errors (request never sent).
    Retryable,
    /// The request may have reached Atlas and changed something: any 5xx on create, a timeout or a
    /// dropped connection after a create or delete was (or may have been) sent, or a create answer
    /// that cannot be read. List the project before creating again.
    Ambiguous,
    /// 401 (after the one token refresh / digest retry) or 403.
    Auth,
    /// Other 4xx (400, 404, 406, 410, ...) and answers this client cannot use.
    Permanent,
}

impl ErrorClass {
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            ErrorClass::Conflict => "conflict",
            ErrorClass::RateLimited { .. } => "rate_limited",
            ErrorClass::Retryable => "retryable",
            ErrorClass::Ambiguous => "ambiguous",
            ErrorClass::Auth => "auth",
            ErrorClass::Permanent => "permanent",
        }
    }
}

/// One problem with one field of a request, as Atlas's `badRequestDetail.fields` lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldProblem {
    pub(crate) field: String,
    pub(crate) description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct BadRequestDetail {
    pub(crate) fields: Vec<FieldProblem>,
}

/// Atlas's error body (validated form of the wire shape).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AtlasErrorBody {
    /// The HTTP status Atlas repeats in the body.
    pub(crate) error: Option<u16>,
    pub(crate) error_code: Option<String>,
    pub(crate) detail: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) parameters: Vec<serde_json::Value>,
    pub(crate) bad_request_detail: Option<BadRequestDetail>,
}

/// A failed Atlas call. `Display` says the operation, the project, the status, what Atlas said and
/// what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.render())]
pub struct ApiError {
    pub operation: Operation,
    pub(crate) group_id: Option<GroupId>,
    pub status: Option<u16>,
    pub class: ErrorClass,
    /// Atlas's error body, when the answer carried one.
    pub atlas: Option<Box<AtlasErrorBody>>,
    pub rate_limit: RateLimitInfo,
    pub(crate) notes: Box<Notes>,
    #[source]
    pub(crate) source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

/// Wording kept for `Display` (boxed: errors travel in `Result`s and should stay small).
#[derive(Debug, Clone, Default)]
pub(crate) struct Notes {
    /// What happened, when there is no status (timeout, connection, unreadable answer).
    pub(crate) what: Option<String>,
    /// The start of a body that was not Atlas's JSON error shape (a proxy page, say).
    pub(crate) body_snippet: Option<String>,
    pub(crate) advice: Option<String>,
}

const SNIPPET_CHARS: usize = 200;

/// The first `SNIPPET_CHARS` characters of a body, whitespace collapsed.
pub(crate) fn snippet(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let collapsed: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        return None;
    }
    let mut out: String = collapsed.chars().take(SNIPPET_CHARS).collect();
    if collapsed.chars().count() > SNIPPET_CHARS {
        out.push('…');
    }
    Some(out)
}

impl ApiError {
    pub(crate) fn new(operation: Operation, group_id: Option<&GroupId>, class: ErrorClass) -> Self {
        ApiError {
            operation,
            group_id: group_id.cloned(),
            status: None,
            class,
            atlas: None,
            rate_limit: RateLimitInfo::default(),
            notes: Box::default(),
            source: None,
        }
    }

    pub(crate) fn what(mut self, what: impl Into<String>) -> Self {
        self.notes.what = Some(what.into());
        self
    }

    pub(crate) fn advice(mut self, advice: impl Into<String>) -> Self {
        self.notes.advice = Some(advice.into());
        self
    }

    pub(crate) fn source(mut self, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(e));
        self
    }

    /// `Retry-After` of a 429, if Atlas gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.class {
            ErrorClass::RateLimited { retry_after } => retry_after,
            _ => None,
        }
    }

    /// Why the answer was refused for its size, when it was.
    pub fn too_large(&self) -> Option<&AnswerTooLarge> {
        self.source.as_ref()?.downcast_ref::<AnswerTooLarge>()
    }

    /// Whether Atlas refused a delete because a stream connection still uses the link (400
    /// `STREAM_PRIVATE_LINK_IN_USE`): not a failure, the link waits until it is free.
    pub fn is_in_use(&self) -> bool {
        self.operation == Operation::Delete
            && self.status == Some(400)
            && self.error_code() == Some(IN_USE_CODE)
    }

    /// Atlas's `errorCode`, if the body carried one.
    pub fn error_code(&self) -> Option<&str> {
        self.atlas.as_ref()?.error_code.as_deref()
    }

    fn render(&self) -> String {
        let mut s = format!("could not {}", self.operation.describe());
        if let Some(g) = &self.group_id {
            s.push_str(&format!(" in project {g}"));
        }
        s.push_str(": ");
        match self.status {
            Some(status) => s.push_str(&format!("HTTP {status}")),
            None => s.push_str(self.notes.what.as_deref().unwrap_or("request failed")),
        }
        if self.status.is_some()
            && let Some(what) = &self.notes.what
        {
            s.push_str(&format!(" ({what})"));
        }
        if let Some(body) = &self.atlas {
            if let Some(code) = &body.error_code {
                s.push_str(&format!(" {code}"));
            }
            if let Some(detail) = &body.detail {
                s.push_str(&format!(": {detail}"));
            }
            if let Some(reason) = &body.reason {
                s.push_str(&format!(" (reason: {reason})"));
            }
            if let Some(brd) = &body.bad_request_detail
                && !brd.fields.is_empty()
            {
                let fields: Vec<String> = brd
                    .fields
                    .iter()
                    .map(|f| format!("`{}`: {}", f.field, f.description))
                    .collect();
                s.push_str(&format!("; field problems: {}", fields.join("; ")));
            }
        } else if let Some(snippet) = &self.notes.body_snippet {
            s.push_str(&format!(": unexpected answer: {snippet}"));
        }
        if let ErrorClass::RateLimited {
            retry_after: Some(d),
        } = self.class
        {
            s.push_str(&format!(" (retry after {} s)", d.as_secs()));
        }
        if let Some(advice) = &self.notes.advice {
            s.push_str(". ");
            s.push_str(advice);
        }
        s
    }
}

/// An answer's body passed [`super::MAX_ANSWER_BYTES`]: declared so by its `Content-Length` (and then
/// not read at all), or found so while it was read (and the rest not read).
#[derive(Debug, Clone, thiserror::Error)]
pub enum AnswerTooLarge {
    #[error(
        "the answer declares {declared} bytes (Content-Length), over the {limit}-byte limit on an answer; it was not read"
    )]
    Declared { declared: u64, limit: u64 },
    #[error(
        "the answer passed the {limit}-byte limit on an answer while it was read; the rest was not read"
    )]
    Streamed { limit: u64 },
}

impl AtlasErrorBody {
    /// Every text field, with the secrets `scrubber` knows removed (a server may echo our request).
    pub(crate) fn scrub(&mut self, scrubber: &Scrubber) {
        for text in [&mut self.error_code, &mut self.detail, &mut self.reason]
            .into_iter()
            .flatten()
        {
            *text = scrubber.scrub(text);
        }
        for p in &mut self.parameters {
            scrubber.scrub_json(p);
        }
        if let Some(brd) = &mut self.bad_request_detail {
            for f in &mut brd.fields {
                f.field = scrubber.scrub(&f.field);
                f.description = scrubber.scrub(&f.description);
            }
        }
    }
}

/// Text a server sent that explains why its answer could not be decoded (a decoder's message, which
/// may quote the answer), already scrubbed. It stands in for the decoder's own error as the source.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UndecodableAnswer(pub(crate) String);

/// The client could not be built (TLS backend, a header value, the base URL).
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    #[error("cannot build the Atlas HTTP client: {0}")]
    Http(#[source] reqwest::Error),
    #[error("the user agent `{0}` is not a valid HTTP header value")]
    UserAgent(String),
    #[error(
        "the Atlas base URL `{0}` cannot carry a path; give it as scheme://host[:port][/prefix]"
    )]
    BaseUrl(String),
}

/// Parses `Retry-After`: whole seconds, or an HTTP date (relative to `now`), clamped to
/// [`MAX_RETRY_AFTER`]. A date in the past means now (zero). Anything else (negative, a fraction,
/// garbage) is `None`: the caller then backs off as it would without the header.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    // delta-seconds is digits only (RFC 9110 §10.2.3), so `u64::from_str`'s leading `+` is refused.
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Digits that do not fit a u64 are a very long wait, not a missing one: saturate, then clamp.
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs.min(MAX_RETRY_AFTER.as_secs())));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// Class of a non-success HTTP status for `op`. 401s reaching here are final (the one refresh or
/// digest retry already happened).
pub(crate) fn class_of_status(
    op: Operation,
    status: u16,
    retry_after: Option<Duration>,
) -> ErrorClass {
    match status {
        401 | 403 => ErrorClass::Auth,
        409 => ErrorClass::Conflict,
        429 => ErrorClass::RateLimited { retry_after },
        // A 5xx on create may come after the connection was committed; a repeated delete is
        // harmless (202 again or 404), so it stays retryable.
        500..=599 if op == Operation::Create => ErrorClass::Ambiguous,
        500..=599 => ErrorClass::Retryable,
        _ => ErrorClass::Permanent,
    }
}

/// Class of a transport failure for `op`, and the observer's status word.
///
/// Only `is_connect` proves the request was never sent; any other failure of a create or delete
/// may have happened after Atlas acted on it.
pub(crate) fn class_of_transport(op: Operation, e: &reqwest::Error) -> (ErrorClass, &'static str) {
    let word = if e.is_connect() {
        "connect"
    } else if e.is_timeout() {
        "timeout"
    } else {
        "error"
    };
    let class = if e.is_builder() {
        ErrorClass::Permanent
    } else if e.is_connect() {
        ErrorClass::Retryable
    } else {
        match op {
            Operation::Create => ErrorClass::Ambiguous,
            _ => ErrorClass::Retryable,
        }
    };
    (class, word)
}

/// What to tell the operator, by status.
pub(crate) fn advice_for_status(
    op: Operation,
    status: u16,
    group_id: Option<&GroupId>,
    auth_hint: &str,
) -> Option<String> {
    match op {
        // Revoking is a courtesy at shutdown: no advice about connections or projects fits it.
        Operation::Revoke => {
            return Some(match status {
                401 | 403 => format!(
                    "Atlas did not accept the service account to revoke its token ({auth_hint}); the token stays valid until it expires, at most its lifetime (an hour at Atlas), and nothing else is affected"
                ),
                _ => "the token stays valid until it expires, at most its lifetime (an hour at Atlas), and nothing else is affected; if every shutdown says this, check that atlas.base_url reaches Atlas's /api/oauth/revoke".to_owned(),
            });
        }
        Operation::Token if matches!(status, 404 | 405) => {
            return Some(
                "Atlas's token endpoint /api/oauth/token was not found: check atlas.base_url (scheme://host[:port], no /api path)".to_owned(),
            );
        }
        _ => {}
    }
    let project = group_id
        .map(|g| format!("project {g}"))
        .unwrap_or_else(|| "the project".to_owned());
    let role = match op {
        Operation::List | Operation::Get => "Project Read Only (or higher)",
        _ => "Project Stream Processing Owner (or Project Owner)",
    };
    Some(match status {
        401 => format!("Atlas did not accept the credentials: {auth_hint}"),
        403 => format!(
            "check that the service account or API key has {role} on {project}, and that its IP \
             access list lets this host in"
        ),
        404 if op == Operation::List => format!("check that {project} exists"),
        404 if op == Operation::Update => {
            "the connection no longer exists in Atlas: the next pass that lists the project creates it again".to_owned()
        }
        404 => "the connection does not exist (or its deletion has completed)".to_owned(),
        406 | 410 => "Atlas no longer accepts the API version this build speaks; upgrade atlas-linkd".to_owned(),
        409 => format!(
            "Atlas reports a conflict, likely an equivalent connection already exists: list {project} and adopt the match"
        ),
        429 => "Atlas's per-project rate limit is exhausted; wait at least Retry-After before calling again".to_owned(),
        400 if op == Operation::Delete => format!(
            "if the code is {IN_USE_CODE}, a stream connection in {project} still uses this link: \
             remove or repoint that stream connection first (atlas-linkd tries the delete again \
             after retry.failure_delay_secs); otherwise declare the link again or set prune.enabled: false"
        ),
        400 if op == Operation::Create => {
            "Atlas refused the request body: fix the link in its manifest (or the project's setup)".to_owned()
        }
        400 if op == Operation::Update => {
            "Atlas refused the dnsDomain update: it takes one only while the connection is IDLE or has no domain yet, and the domain must be valid; check the connection's state and the link's dnsDomain in its manifest (to change a domain once the connection is past IDLE, delete the connection in Atlas to have it recreated)".to_owned()
        }
        500..=599 if op == Operation::Create => format!(
            "Atlas failed; the connection may or may not have been created: list {project} before creating again"
        ),
        500..=599 => "Atlas failed; retry later".to_owned(),
        _ => return None,
    })
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_retry_after("55", now), Some(Duration::from_secs(55)));
        // 784111777 = Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    fn now() -> SystemTime {
        // Sat, 01 Jan 2000 00:00:00 GMT.
        SystemTime::UNIX_EPOCH + Duration::from_secs(946_684_800)
    }

    #[test]
    fn retry_after_u64_max_is_clamped() {
        assert_eq!(
            parse_retry_after("18446744073709551615", now()),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn retry_after_too_many_digits_saturates_then_clamps() {
        let thirty = "9".repeat(30);
        assert_eq!(parse_retry_after(&thirty, now()), Some(MAX_RETRY_AFTER));
        // Leading zeros are still a small number.
        assert_eq!(
            parse_retry_after(&format!("{}7", "0".repeat(40)), now()),
            Some(Duration::from_secs(7))
        );
    }

    #[test]
    fn retry_after_just_over_and_at_the_cap() {
        let cap = MAX_RETRY_AFTER.as_secs();
        assert_eq!(
            parse_retry_after(&cap.to_string(), now()),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            parse_retry_after(&(cap + 1).to_string(), now()),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            parse_retry_after(" 0 ", now()),
            Some(Duration::ZERO),
            "surrounding spaces are allowed"
        );
    }

    #[test]
    fn retry_after_negative_fractional_or_garbage_is_ignored() {
        for bad in [
            "-1",
            "-18446744073709551615",
            "+5",
            "1.5",
            "",
            "   ",
            "10 s",
            "0x10",
            "Tomorrow",
            "Sun, 06 Nov 1994 25:61:61 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now()), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_far_future_date_is_clamped() {
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2099 00:00:00 GMT", now()),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now()),
            Some(MAX_RETRY_AFTER)
        );
        // Far ahead of an odd `now` too (the clock at the epoch).
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2099 00:00:00 GMT", SystemTime::UNIX_EPOCH),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn retry_after_date_in_the_past_is_zero() {
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now()),
            Some(Duration::ZERO)
        );
        // And a date a little ahead is the difference, under the cap.
        assert_eq!(
            parse_retry_after("Sat, 01 Jan 2000 00:00:30 GMT", now()),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn a_delete_refused_as_in_use_is_told_apart_and_advised() {
        let g = GroupId::parse("32b6e34b3d91647abb20e7b8").unwrap();
        assert_eq!(
            class_of_status(Operation::Delete, 400, None),
            ErrorClass::Permanent
        );
        assert_eq!(
            class_of_status(Operation::Delete, 502, None),
            ErrorClass::Retryable
        );
        let advice = advice_for_status(Operation::Delete, 400, Some(&g), "").unwrap();
        assert!(advice.contains(IN_USE_CODE), "{advice}");
        let mut e = ApiError::new(Operation::Delete, Some(&g), ErrorClass::Permanent);
        e.status = Some(400);
        assert!(!e.is_in_use(), "no body, no code: a plain failure");
        e.atlas = Some(Box::new(AtlasErrorBody {
            error_code: Some(IN_USE_CODE.to_owned()),
            ..AtlasErrorBody::default()
        }));
        assert!(e.is_in_use());
        e.operation = Operation::Create;
        assert!(!e.is_in_use(), "only a delete can be refused as in use");
    }

    #[test]
    fn status_classes() {
        assert_eq!(
            class_of_status(Operation::Create, 500, None),
            ErrorClass::Ambiguous
        );
        assert_eq!(
            class_of_status(Operation::List, 503, None),
            ErrorClass::Retryable
        );
        assert_eq!(
            class_of_status(Operation::Create, 409, None),
            ErrorClass::Conflict
        );
        assert_eq!(class_of_status(Operation::Get, 403, None), ErrorClass::Auth);
        assert_eq!(
            class_of_status(Operation::Get, 404, None),
            ErrorClass::Permanent
        );
        assert_eq!(
            class_of_status(Operation::Get, 406, None),
            ErrorClass::Permanent
        );
    }

    #[test]
    fn revoke_and_token_have_their_own_advice() {
        for status in [400, 401, 404, 500] {
            let advice = advice_for_status(Operation::Revoke, status, None, "hint").unwrap();
            assert!(!advice.contains("connection"), "{status}: {advice}");
            assert!(advice.contains("token stays valid"), "{status}: {advice}");
        }
        let advice = advice_for_status(Operation::Token, 404, None, "hint").unwrap();
        assert!(advice.contains("atlas.base_url"), "{advice}");
        assert!(!advice.contains("connection"), "{advice}");
    }

    #[test]
    fn snippet_is_bounded_and_collapsed() {
        let body = format!("<html>\n  <b>{}</b></html>", "x".repeat(500));
        let s = snippet(body.as_bytes()).unwrap();
        assert!(s.starts_with("<html> <b>"));
        assert!(s.chars().count() <= SNIPPET_CHARS + 1);
        assert_eq!(snippet(b"  \n"), None);
    }

    #[test]
    fn an_update_is_idempotent_so_only_its_wrong_state_400_is_final() {
        let op = Operation::Update;
        assert_eq!(class_of_status(op, 400, None), ErrorClass::Permanent);
        // A PATCH that reached Atlas and is sent again sets the same domain: never ambiguous.
        assert_eq!(class_of_status(op, 500, None), ErrorClass::Retryable);
        assert_eq!(class_of_status(op, 503, None), ErrorClass::Retryable);
        let advice = advice_for_status(op, 400, None, "").unwrap();
        assert!(advice.contains("IDLE"), "{advice}");
        assert!(advice.contains("no domain"), "{advice}");
    }
}
