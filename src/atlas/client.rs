//! `AtlasClient`: one HTTP attempt per call against the private link connection endpoints, with
//! authentication, rate-limit headers and error classification. Paging over a listing is `pager`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, WWW_AUTHENTICATE,
};
use reqwest::{Method, RequestBuilder, Url};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use super::auth::{DigestState, TokenCache};
use super::digest::{Challenge, Session, parse_challenge};
use super::error::{
    AnswerTooLarge, UndecodableAnswer, advice_for_status, class_of_status, class_of_transport,
    parse_retry_after, snippet,
};
use super::scrub::Scrubber;
use super::wire::{WireConnection, WireError, WirePage, WireToken};
use super::{
    API_MEDIA_TYPE, API_MEDIA_TYPE_UPDATE, Answer, ApiError, ClientBuildError, Credentials,
    ErrorClass, MAX_ANSWER_BYTES, Observer, Operation, RateLimitInfo, default_user_agent,
};
use crate::model::{GroupId, LinkSpec, RemoteConnection};

/// How to reach Atlas.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub(crate) base_url: Url,
    /// Whole-request timeout, connection and body included.
    pub(crate) timeout: Duration,
    pub(crate) user_agent: String,
}

impl ClientSettings {
    pub fn new(base_url: Url, timeout: Duration) -> ClientSettings {
        ClientSettings {
            base_url,
            timeout,
            user_agent: default_user_agent(),
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub(crate) items: Vec<RemoteConnection>,
    pub(crate) total_count: Option<u64>,
    pub(crate) has_next: bool,
}

/// Which decoder `AtlasClient::decode_answer` runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DecodeAs<'a> {
    /// A page of a project's listing.
    Page(&'a GroupId),
    /// A non-success answer to `op` (for a project, or none for the token endpoints).
    Error(Operation, Option<&'a GroupId>),
    /// The token endpoint's success answer.
    Token,
}

/// What `AtlasClient::decode_answer` made of an answer.
pub(crate) enum Decoded {
    Page(Page),
    /// The token and its claimed lifetime.
    Token(SecretString, Duration),
}

enum AuthState {
    OAuth(TokenCache),
    Digest(DigestState),
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    timeout: Duration,
    credentials: Credentials,
    /// Applied to all text a server sends before it enters an error.
    scrubber: Scrubber,
    observer: Option<Arc<dyn Observer>>,
    auth: AuthState,
}

/// The Atlas API client. Cheap to clone; clones share the connection pool and the auth state.
#[derive(Clone)]
pub struct AtlasClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for AtlasClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtlasClient")
            .field("base_url", &self.inner.base.as_str())
            .field("timeout", &self.inner.timeout)
            .field("credentials", &self.inner.credentials)
            .finish_non_exhaustive()
    }
}

/// A finished HTTP exchange.
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why an exchange produced no `Reply`.
enum Failure {
    Transport(reqwest::Error),
    /// The status and headers arrived, the body was refused for its size.
    TooLarge {
        status: u16,
        headers: HeaderMap,
        why: AnswerTooLarge,
    },
}

fn rate_limit_of(headers: &HeaderMap) -> RateLimitInfo {
    let num = |name: &str| {
        let v = headers.get(name)?.to_str().ok()?;
        let digits: String = v.trim().chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    RateLimitInfo {
        limit: num("ratelimit-limit"),
        remaining: num("ratelimit-remaining"),
    }
}

fn challenge_of(reply: &Reply) -> Option<Challenge> {
    reply
        .headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(parse_challenge)
}

/// The request target as the digest `uri` needs it: path and query.
fn request_target(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

fn sensitive(value: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(value).ok()?;
    v.set_sensitive(true);
    Some(v)
}

impl AtlasClient {
    pub fn new(
        settings: ClientSettings,
        credentials: Credentials,
        observer: Option<Arc<dyn Observer>>,
    ) -> Result<AtlasClient, ClientBuildError> {
        if settings.base_url.cannot_be_a_base() {
            return Err(ClientBuildError::BaseUrl(settings.base_url.to_string()));
        }
        let user_agent = HeaderValue::from_str(&settings.user_agent)
            .map_err(|_| ClientBuildError::UserAgent(settings.user_agent.clone()))?;
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::USER_AGENT, user_agent);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            // A redirected POST would become a GET, and Atlas does not redirect API calls.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(ClientBuildError::Http)?;
        let auth = match credentials {
            Credentials::ServiceAccount { .. } => AuthState::OAuth(TokenCache::new()),
            Credentials::ApiKey { .. } => AuthState::Digest(DigestState::new()),
        };
        Ok(AtlasClient {
            inner: Arc::new(Inner {
                http,
                base: settings.base_url,
                timeout: settings.timeout,
                scrubber: Scrubber::new(&credentials),
                credentials,
                observer,
                auth,
            }),
        })
    }

    /// Creates one connection; the body is exactly `spec`'s serialisation.
    pub async fn create(
        &self,
        group: &GroupId,
        spec: &LinkSpec,
    ) -> Result<Answer<RemoteConnection>, ApiError> {
        let op = Operation::Create;
        let url = self.connections_url(group, None);
        let reply = self
            .call(op, Some(group), Method::POST, url, Some(spec.to_json()))
            .await?;
        let rate_limit = rate_limit_of(&reply.headers);
        let value = self.connection_of(op, group, &reply)?;
        Ok(Answer { value, rate_limit })
    }

    /// Sets connection `id`'s `dnsDomain` (PATCH, API version `2025-03-12`, the body holding only
    /// `dnsDomain`). Atlas takes it only while the connection is `IDLE` or has no domain; a 400
    /// otherwise is `Permanent`. Setting the same domain twice changes nothing, so a PATCH whose
    /// answer was lost is safe to send again (a 5xx or a reset is `Retryable`).
    pub async fn update_dns_domain(
        &self,
        group: &GroupId,
        id: &str,
        dns_domain: &str,
    ) -> Result<Answer<RemoteConnection>, ApiError> {
        let op = Operation::Update;
        let url = self.connections_url(group, Some(id));
        let body = serde_json::json!({ "dnsDomain": dns_domain }).to_string();
        let reply = self
            .call_as(
                op,
                Some(group),
                Method::PATCH,
                url,
                Some(body),
                API_MEDIA_TYPE_UPDATE,
            )
            .await?;
        let rate_limit = rate_limit_of(&reply.headers);
        let value = self.connection_of(op, group, &reply)?;
        Ok(Answer { value, rate_limit })
    }

    pub async fn get(
        &self,
        group: &GroupId,
        id: &str,
    ) -> Result<Answer<RemoteConnection>, ApiError> {
        let op = Operation::Get;
        let url = self.connections_url(group, Some(id));
        let reply = self.call(op, Some(group), Method::GET, url, None).await?;
        let rate_limit = rate_limit_of(&reply.headers);
        let value = self.connection_of(op, group, &reply)?;
        Ok(Answer { value, rate_limit })
    }

    /// Requests deletion of one connection: one attempt. Atlas answers 202 and the connection goes
    /// away later (`DELETE_REQUESTED`, `DELETING`, then absent from listings); a 400
    /// `STREAM_PRIVATE_LINK_IN_USE` (`ApiError::is_in_use`) means a stream connection still uses it.
    pub async fn delete(&self, group: &GroupId, id: &str) -> Result<Answer<()>, ApiError> {
        let url = self.connections_url(group, Some(id));
        let reply = self
            .call(Operation::Delete, Some(group), Method::DELETE, url, None)
            .await?;
        Ok(Answer {
            value: (),
            rate_limit: rate_limit_of(&reply.headers),
        })
    }

    /// One page (`page_num` from 1).
    pub async fn list_page(
        &self,
        group: &GroupId,
        page_num: u32,
        items_per_page: u32,
    ) -> Result<Answer<Page>, ApiError> {
        let op = Operation::List;
        let mut url = self.connections_url(group, None);
        url.query_pairs_mut()
            .append_pair("itemsPerPage", &items_per_page.to_string())
            .append_pair("pageNum", &page_num.to_string());
        let reply = self.call(op, Some(group), Method::GET, url, None).await?;
        Ok(Answer {
            value: self.page_of(group, &reply)?,
            rate_limit: rate_limit_of(&reply.headers),
        })
    }

    /// Revokes the OAuth token, if any. Errors are logged, not returned.
    pub async fn shutdown(&self) {
        let AuthState::OAuth(cache) = &self.inner.auth else {
            return;
        };
        let Some(token) = cache.take().await else {
            return;
        };
        let url = self.oauth_url("revoke");
        let form = [
            ("token", token.expose_secret()),
            ("token_type_hint", "access_token"),
        ];
        let rb = self
            .inner
            .http
            .post(url)
            .basic_auth(
                self.inner.credentials.identity(),
                Some(self.inner.credentials.secret()),
            )
            .header(ACCEPT, "application/json")
            .form(&form);
        match self.exchange(Operation::Revoke, None, rb).await {
            Ok(reply) if reply.is_success() => tracing::debug!("revoked the Atlas access token"),
            Ok(reply) => {
                let e = self.status_error(Operation::Revoke, None, &reply);
                tracing::warn!(error = %e, "could not revoke the Atlas access token");
            }
            Err(e) => tracing::warn!(error = %e, "could not revoke the Atlas access token"),
        }
    }

    fn connections_url(&self, group: &GroupId, id: Option<&str>) -> Url {
        let mut url = self.inner.base.clone();
        url.set_query(None);
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop_if_empty().extend([
                "api",
                "atlas",
                "v2",
                "groups",
                group.as_str(),
                "streams",
                "privateLinkConnections",
            ]);
            if let Some(id) = id {
                segs.push(id);
            }
        }
        url
    }

    fn oauth_url(&self, leaf: &str) -> Url {
        let mut url = self.inner.base.clone();
        url.set_query(None);
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop_if_empty().extend(["api", "oauth", leaf]);
        }
        url
    }

    fn observe(&self, op: Operation, group: Option<&GroupId>, status: &str, elapsed: Duration) {
        tracing::debug!(
            operation = op.as_str(),
            group_id = group.map(GroupId::as_str),
            status,
            elapsed_ms = elapsed.as_millis() as u64,
            "atlas exchange"
        );
        if let Some(o) = &self.inner.observer {
            o.on_response(op, group, status, elapsed);
        }
    }

    /// Sends one request and reads the whole answer. Transport failures are classified here.
    async fn exchange(
        &self,
        op: Operation,
        group: Option<&GroupId>,
        rb: RequestBuilder,
    ) -> Result<Reply, ApiError> {
        let start = Instant::now();
        let result = async {
            let mut resp = rb.send().await.map_err(Failure::Transport)?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let too_large = |why| Failure::TooLarge {
                status,
                headers: headers.clone(),
                why,
            };
            if let Some(declared) = resp.content_length()
                && declared > MAX_ANSWER_BYTES
            {
                return Err(too_large(AnswerTooLarge::Declared {
                    declared,
                    limit: MAX_ANSWER_BYTES,
                }));
            }
            // Read chunk by chunk, so an endless or oversized body costs at most the limit (plus
            // one chunk) before the connection is dropped.
            let mut body = BytesMut::new();
            if let Some(declared) = resp.content_length() {
                // At most the limit (checked above): no doubling copies on the way there.
                body.reserve(usize::try_from(declared).unwrap_or(0));
            }
            while let Some(chunk) = resp.chunk().await.map_err(Failure::Transport)? {
                if (body.len() + chunk.len()) as u64 > MAX_ANSWER_BYTES {
                    return Err(too_large(AnswerTooLarge::Streamed {
                        limit: MAX_ANSWER_BYTES,
                    }));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Reply {
                status,
                headers,
                body: body.freeze(),
            })
        }
        .await;
        let elapsed = start.elapsed();
        match result {
            Ok(reply) => {
                self.observe(op, group, &reply.status.to_string(), elapsed);
                Ok(reply)
            }
            Err(Failure::TooLarge {
                status,
                headers,
                why,
            }) => {
                self.observe(op, group, "error", elapsed);
                Err(self.too_large(op, group, status, &headers, why))
            }
            Err(Failure::Transport(e)) => {
                let (class, word) = class_of_transport(op, &e);
                self.observe(op, group, word, elapsed);
                let what = match word {
                    "connect" => format!(
                        "could not connect to {} (the request was not sent)",
                        self.inner.base
                    ),
                    "timeout" => format!(
                        "no complete answer within {} s",
                        self.inner.timeout.as_secs_f64()
                    ),
                    _ => "the connection failed before a complete answer".to_owned(),
                };
                let project = group
                    .map(|g| format!("project {g}"))
                    .unwrap_or_else(|| "the project".to_owned());
                let advice = match class {
                    ErrorClass::Ambiguous => format!(
                        "the request may have reached Atlas and taken effect: list {project} before creating again"
                    ),
                    _ => format!(
                        "retry later; check that {} is reachable from this host",
                        self.inner.base
                    ),
                };
                Err(ApiError::new(op, group, class)
                    .what(what)
                    .advice(advice)
                    .source(e))
            }
        }
    }

    fn auth_hint(&self) -> &'static str {
        match self.inner.credentials {
            Credentials::ServiceAccount { .. } => {
                "check MONGODB_ATLAS_CLIENT_ID and MONGODB_ATLAS_CLIENT_SECRET (or the client-id / client-secret credential files): the service account's id or secret is wrong, or the account or its secret was deleted or expired"
            }
            Credentials::ApiKey { .. } => {
                "check MONGODB_ATLAS_PUBLIC_API_KEY and MONGODB_ATLAS_PRIVATE_API_KEY (or the public-key / private-key credential files): the key pair is wrong or was deleted"
            }
        }
    }

    /// The error for a non-success answer.
    fn status_error(&self, op: Operation, group: Option<&GroupId>, reply: &Reply) -> ApiError {
        let retry_after = reply
            .headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let class = class_of_status(op, reply.status, retry_after);
        let mut err = ApiError::new(op, group, class);
        err.status = Some(reply.status);
        err.rate_limit = rate_limit_of(&reply.headers);
        let header_code = reply
            .headers
            .get("x-error-code")
            .and_then(|v| v.to_str().ok())
            .map(|v| self.inner.scrubber.scrub(v));
        match serde_json::from_slice::<WireError>(&reply.body) {
            Ok(wire) => {
                let mut body = wire.into_body();
                // A server may echo our request (its Authorization header, the revoke form).
                body.scrub(&self.inner.scrubber);
                if body.error_code.is_none() {
                    body.error_code = header_code;
                }
                err.atlas = Some(Box::new(body));
            }
            Err(_) => {
                // The token endpoints' bodies are never echoed: they could carry a token.
                if !matches!(op, Operation::Token | Operation::Revoke) {
                    err.notes.body_snippet = self.snippet(&reply.body);
                }
                if let Some(code) = header_code {
                    err.atlas = Some(Box::new(super::AtlasErrorBody {
                        error_code: Some(code),
                        ..Default::default()
                    }));
                }
            }
        }
        let advice = if op == Operation::Token && reply.status == 401 {
            Some(format!(
                "the client id or client secret is wrong: {}",
                self.auth_hint()
            ))
        } else {
            advice_for_status(op, reply.status, group, self.auth_hint())
        };
        if let Some(advice) = advice {
            err = err.advice(advice);
        }
        if (300..400).contains(&reply.status) {
            err = err.what("unexpected redirect; check atlas.base_url");
        }
        err
    }

    /// The start of a body for an error, scrubbed before it is cut short, so no part of a secret
    /// survives at the cut.
    fn snippet(&self, body: &[u8]) -> Option<String> {
        snippet(
            self.inner
                .scrubber
                .scrub(&String::from_utf8_lossy(body))
                .as_bytes(),
        )
    }

    /// A decoder's error as an error source: its message may quote the answer, so it is scrubbed.
    fn undecodable(&self, e: &serde_json::Error) -> UndecodableAnswer {
        UndecodableAnswer(self.inner.scrubber.scrub(&e.to_string()))
    }

    /// An answer whose body is over `MAX_ANSWER_BYTES`. Not retried (`Permanent`): the same server
    /// would most likely send the same thing, and each try costs the limit in memory and the
    /// bandwidth; a listing that fails so leaves the project's links unverified for this pass. On
    /// create it is `Ambiguous` like any unreadable create answer: Atlas may have made it.
    fn too_large(
        &self,
        op: Operation,
        group: Option<&GroupId>,
        status: u16,
        headers: &HeaderMap,
        why: AnswerTooLarge,
    ) -> ApiError {
        let class = if op == Operation::Create {
            ErrorClass::Ambiguous
        } else {
            ErrorClass::Permanent
        };
        let mut err = ApiError::new(op, group, class).what(format!(
            "the answer is over the {} MiB limit on answers",
            MAX_ANSWER_BYTES / (1024 * 1024)
        ));
        err.status = Some(status);
        err.rate_limit = rate_limit_of(headers);
        let advice = if op == Operation::Create {
            let project = group
                .map(|g| format!("project {g}"))
                .unwrap_or_else(|| "the project".to_owned());
            format!(
                "Atlas may have made the connection: list {project} before creating again; a page of 500 connections is well under 1 MB, so check that atlas.base_url ({}) reaches Atlas and not a proxy",
                self.inner.base
            )
        } else {
            format!(
                "a page of 500 connections is well under 1 MB: check that atlas.base_url ({}) reaches Atlas and not a proxy or another service",
                self.inner.base
            )
        };
        err.advice(advice).source(why)
    }

    /// An answer that arrived but cannot be used. On create the connection may exist.
    fn unreadable(
        &self,
        op: Operation,
        group: Option<&GroupId>,
        reply: &Reply,
        what: &str,
    ) -> ApiError {
        let class = if op == Operation::Create {
            ErrorClass::Ambiguous
        } else {
            ErrorClass::Permanent
        };
        let mut err = ApiError::new(op, group, class).what(what);
        err.status = Some(reply.status);
        err.rate_limit = rate_limit_of(&reply.headers);
        err.notes.body_snippet = self.snippet(&reply.body);
        if op == Operation::Create {
            let project = group
                .map(|g| format!("project {g}"))
                .unwrap_or_else(|| "the project".to_owned());
            err = err.advice(format!(
                "Atlas accepted the request, so the connection likely exists: list {project} before creating again"
            ));
        }
        err
    }

    fn connection_of(
        &self,
        op: Operation,
        group: &GroupId,
        reply: &Reply,
    ) -> Result<RemoteConnection, ApiError> {
        let wire: WireConnection = serde_json::from_slice(&reply.body).map_err(|e| {
            self.unreadable(
                op,
                Some(group),
                reply,
                "the answer is not the expected JSON",
            )
            .source(self.undecodable(&e))
        })?;
        wire.into_remote().ok_or_else(|| {
            self.unreadable(op, Some(group), reply, "the answer has no connection `_id`")
        })
    }

    /// A listing page as it arrived, decoded; a connection without `_id` fails the page, since
    /// dropping it would make the listing silently partial.
    fn page_of(&self, group: &GroupId, reply: &Reply) -> Result<Page, ApiError> {
        let op = Operation::List;
        let page: WirePage = serde_json::from_slice(&reply.body).map_err(|e| {
            self.unreadable(
                op,
                Some(group),
                reply,
                "the listing is not the expected JSON",
            )
            .source(self.undecodable(&e))
        })?;
        let has_next = page.has_next();
        let mut items = Vec::with_capacity(page.results.len());
        for wire in page.results {
            match wire.into_remote() {
                Some(c) => items.push(c),
                None => {
                    return Err(self.unreadable(
                        op,
                        Some(group),
                        reply,
                        "the listing holds a connection without `_id`",
                    ));
                }
            }
        }
        Ok(Page {
            items,
            total_count: page.total_count,
            has_next,
        })
    }

    /// The token endpoint's successful answer, decoded into the token and its claimed lifetime.
    fn token_of(&self, reply: &Reply) -> Result<(SecretString, Duration), ApiError> {
        let op = Operation::Token;
        let token: WireToken = serde_json::from_slice(&reply.body).map_err(|_| {
            // No snippet and no serde error text: both could quote the token.
            let mut e = ApiError::new(op, None, ErrorClass::Permanent)
                .what("the token answer is not the expected JSON");
            e.status = Some(reply.status);
            e
        })?;
        tracing::debug!(
            expires_in_secs = token.expires_in,
            "obtained an Atlas access token"
        );
        let ttl = Duration::from_secs(token.expires_in.unwrap_or(3600));
        let token = SecretString::from(token.access_token);
        self.inner.scrubber.add_token(&token);
        Ok((token, ttl))
    }

    /// The decoders above, on an answer given as parts, for the fuzz targets (src/fuzzing.rs): a
    /// listing page, an error answer, or a token answer becomes exactly what a call makes of it.
    pub(crate) fn decode_answer(
        &self,
        answer: DecodeAs<'_>,
        status: u16,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> Result<Decoded, ApiError> {
        let reply = Reply {
            status,
            headers,
            body: Bytes::from(body),
        };
        match answer {
            DecodeAs::Page(group) => self.page_of(group, &reply).map(Decoded::Page),
            DecodeAs::Error(op, group) => Err(self.status_error(op, group, &reply)),
            DecodeAs::Token => self
                .token_of(&reply)
                .map(|(token, ttl)| Decoded::Token(token, ttl)),
        }
    }

    /// One API call, authenticated; non-success answers become classified errors.
    async fn call(
        &self,
        op: Operation,
        group: Option<&GroupId>,
        method: Method,
        url: Url,
        body: Option<String>,
    ) -> Result<Reply, ApiError> {
        self.call_as(op, group, method, url, body, API_MEDIA_TYPE)
            .await
    }

    /// `call` in API version `media_type` (as `Accept`, and `Content-Type` with a body).
    async fn call_as(
        &self,
        op: Operation,
        group: Option<&GroupId>,
        method: Method,
        url: Url,
        body: Option<String>,
        media_type: &'static str,
    ) -> Result<Reply, ApiError> {
        let build = |auth: Option<HeaderValue>| {
            let mut rb = self
                .inner
                .http
                .request(method.clone(), url.clone())
                .header(ACCEPT, media_type);
            if let Some(body) = &body {
                rb = rb.header(CONTENT_TYPE, media_type).body(body.clone());
            }
            if let Some(auth) = auth {
                rb = rb.header(AUTHORIZATION, auth);
            }
            rb
        };
        let reply = match &self.inner.auth {
            AuthState::OAuth(cache) => {
                let token = cache.get(|| self.fetch_token()).await?;
                let reply = self
                    .exchange(op, group, build(Some(self.bearer(&token.secret)?)))
                    .await?;
                if reply.status == 401 {
                    // Revoked or expired early: one refresh, one retry.
                    let token = cache
                        .refresh_after_rejection(token.generation, || self.fetch_token())
                        .await?;
                    self.exchange(op, group, build(Some(self.bearer(&token.secret)?)))
                        .await?
                } else {
                    reply
                }
            }
            AuthState::Digest(state) => {
                self.digest_call(op, group, state, &method, &url, &build)
                    .await?
            }
        };
        if reply.is_success() {
            Ok(reply)
        } else {
            Err(self.status_error(op, group, &reply))
        }
    }

    fn bearer(&self, token: &SecretString) -> Result<HeaderValue, ApiError> {
        sensitive(&format!("Bearer {}", token.expose_secret())).ok_or_else(|| {
            ApiError::new(Operation::Token, None, ErrorClass::Permanent)
                .what("Atlas issued a token that is not a valid HTTP header value")
        })
    }

    async fn fetch_token(&self) -> Result<(SecretString, Duration), ApiError> {
        let op = Operation::Token;
        let rb = self
            .inner
            .http
            .post(self.oauth_url("token"))
            .basic_auth(
                self.inner.credentials.identity(),
                Some(self.inner.credentials.secret()),
            )
            .header(ACCEPT, "application/json")
            .form(&[("grant_type", "client_credentials")]);
        let reply = self.exchange(op, None, rb).await?;
        if !reply.is_success() {
            return Err(self.status_error(op, None, &reply));
        }
        self.token_of(&reply)
    }

    fn digest_header(
        &self,
        session: &Session,
        method: &Method,
        url: &Url,
    ) -> Result<HeaderValue, ApiError> {
        let value = session.authorize(
            self.inner.credentials.identity(),
            self.inner.credentials.secret(),
            method.as_str(),
            &request_target(url),
        );
        sensitive(&value).ok_or_else(|| {
            ApiError::new(Operation::Token, None, ErrorClass::Auth).what(
                "the API public key or Atlas's digest challenge holds characters that cannot go in a header",
            )
        })
    }

    /// A digest-authenticated call: reuse the cached nonce (one request); the first call pays a
    /// bare request for the challenge; a 401 with a new or stale nonce is retried once.
    async fn digest_call(
        &self,
        op: Operation,
        group: Option<&GroupId>,
        state: &DigestState,
        method: &Method,
        url: &Url,
        build: &(dyn Fn(Option<HeaderValue>) -> RequestBuilder + Sync),
    ) -> Result<Reply, ApiError> {
        let (session, fresh) = match state.current() {
            Some(s) => (s, false),
            None => {
                let guard = state.prime.lock().await;
                match state.current() {
                    Some(s) => (s, false),
                    None => {
                        let bare = self.exchange(op, group, build(None)).await?;
                        if bare.status != 401 {
                            return Ok(bare);
                        }
                        let Some(challenge) = challenge_of(&bare) else {
                            return Ok(bare);
                        };
                        let s = state.replace(None, challenge);
                        drop(guard);
                        (s, true)
                    }
                }
            }
        };
        let reply = self
            .exchange(
                op,
                group,
                build(Some(self.digest_header(&session, method, url)?)),
            )
            .await?;
        if reply.status != 401 {
            return Ok(reply);
        }
        match challenge_of(&reply) {
            // A nonce we just received and no `stale`: the credentials themselves are wrong.
            Some(challenge) if challenge.stale || !fresh => {
                let s = state.replace(Some(&session), challenge);
                self.exchange(op, group, build(Some(self.digest_header(&s, method, url)?)))
                    .await
            }
            _ => Ok(reply),
        }
    }
}
