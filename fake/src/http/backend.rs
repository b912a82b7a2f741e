//! The backend behind the API: validated creates committed after `commit_delay_ms` whether or not
//! their client is still there, and lists (paged), gets, deletes and updates answered at once.

use super::Shared;
use super::answer::{error, not_found, ok, ok_text};
use super::request::{V1, check_content_type, form_pairs, header, parse_object};
use super::route::PREFIX;
use crate::config::FakeOp;
use crate::state::{Committed, Inner};
use crate::validate::{self, FieldError};
use axum::body::Body;
use http::header::CONTENT_TYPE;
use http::{Response, StatusCode};
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// What the backend made of a call.
pub(super) enum Executed {
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

pub(super) fn execute(
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
                // Atlas checks for stream connections first; one already being deleted has
                // passed that check.
                Some(c) if c.in_use && c.deleted.is_none() => error(
                    StatusCode::BAD_REQUEST,
                    "STREAM_PRIVATE_LINK_IN_USE",
                    &format!("Private Link with connection ID ({id}) is in use."),
                    &[],
                ),
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
            // The body changed: a view made from the old one must not be listed again.
            c.forget_view();
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
    let conns = inner.projects.get(group).map_or(&[][..], |p| &p.conns[..]);
    let total = conns.len() as u64;
    let start = (page_num - 1).saturating_mul(items_per_page);
    let results: Vec<std::sync::Arc<str>> = conns
        .iter()
        .skip(usize::try_from(start).unwrap_or(usize::MAX))
        .take(usize::try_from(items_per_page).unwrap_or(usize::MAX))
        .map(|c| inner.view_json(c, now))
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
    // The keys in the order `json!` gives them (sorted), around the views' own text.
    let mut body = String::with_capacity(results.iter().map(|r| r.len() + 1).sum::<usize>() + 512);
    body.push_str("{\"links\":");
    body.push_str(&Value::Array(links).to_string());
    body.push_str(",\"results\":[");
    for (i, r) in results.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(r);
    }
    body.push_str("],\"totalCount\":");
    body.push_str(&total.to_string());
    body.push('}');
    ok_text(StatusCode::OK, V1, body)
}
