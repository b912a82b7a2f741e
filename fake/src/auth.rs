//! Both Atlas authentication schemes as the fake checks them: OAuth client credentials with Bearer
//! tokens, and HTTP Digest (MD5, qop=auth) with nonces that go stale.

use super::config::FakeAuth;
use super::state::{Inner, NonceInfo, TokenInfo};
use base64::Engine;
use md5::{Digest, Md5};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;

pub(crate) const REALM: &str = "MMS Public API";
/// Beyond this many remembered nonces (or tokens), dead ones are forgotten; clients of a forgotten nonce get `stale=true`.
const MAX_REMEMBERED: usize = 10_000;

/// Why an API call was refused.
pub(crate) struct Refusal {
    pub detail: &'static str,
    /// `Some(stale)`: answer with a Digest challenge.
    pub challenge: Option<bool>,
}

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

/// Constant-time comparison, so the fake does not teach clients timing tricks.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// `Basic base64(id:secret)` split into its halves.
pub(crate) fn parse_basic(header: &str) -> Option<(String, String)> {
    let encoded = header.strip_prefix("Basic ")?.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// Whether Basic credentials may use the token and revoke endpoints.
pub(crate) fn client_ok(auth: &FakeAuth, header: Option<&str>) -> bool {
    let Some((id, secret)) = header.and_then(parse_basic) else {
        return false;
    };
    match auth {
        FakeAuth::Any => !id.is_empty() && !secret.is_empty(),
        FakeAuth::ServiceAccount {
            client_id,
            client_secret,
        } => same(&id, client_id) && same(&secret, client_secret),
        FakeAuth::ApiKey { .. } => false,
    }
}

pub(crate) fn issue_token(inner: &mut Inner, now: Instant) -> (String, u64) {
    let ttl = inner.config.token_ttl_secs;
    let token = format!("fake.{}", inner.random_hex(32));
    if inner.tokens.len() >= MAX_REMEMBERED {
        inner.tokens.retain(|_, t| !t.revoked && now < t.expires);
    }
    inner.tokens.insert(
        token.clone(),
        TokenInfo {
            expires: now + Duration::from_secs(ttl),
            revoked: false,
        },
    );
    inner.counters.tokens_issued += 1;
    (token, ttl)
}

pub(crate) fn revoke_token(inner: &mut Inner, token: &str) {
    if let Some(info) = inner.tokens.get_mut(token)
        && !info.revoked
    {
        info.revoked = true;
        inner.counters.tokens_revoked += 1;
    }
}

/// A fresh Digest challenge header value; the nonce is remembered.
pub(crate) fn challenge(inner: &mut Inner, stale: bool, now: Instant) -> String {
    let nonce = inner.random_hex(16);
    // Unanswered challenges would otherwise pile up in a long-running fake.
    if inner.nonces.len() >= MAX_REMEMBERED {
        let ttl = Duration::from_secs(inner.config.digest_nonce_ttl_secs);
        let max_uses = inner.config.digest_nonce_max_uses;
        inner
            .nonces
            .retain(|_, n| n.uses < max_uses && now.saturating_duration_since(n.issued) < ttl);
        if inner.nonces.len() >= MAX_REMEMBERED {
            inner.nonces.clear();
        }
    }
    inner.nonces.insert(
        nonce.clone(),
        NonceInfo {
            issued: now,
            uses: 0,
            seen_nc: HashSet::new(),
        },
    );
    inner.counters.digest_challenges += 1;
    format!(
        "Digest realm=\"{REALM}\", domain=\"\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\", stale={stale}"
    )
}

/// The `key=value` pairs of a Digest header, quotes removed.
fn parse_digest(header: &str) -> Option<HashMap<String, String>> {
    let rest = header.strip_prefix("Digest ")?;
    let mut out = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        chars.next()?; // '='
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => value.push(chars.next()?),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    Some(out)
}

fn refuse(detail: &'static str, challenge: Option<bool>) -> Result<(), Refusal> {
    Err(Refusal { detail, challenge })
}

/// Checks an API call's `Authorization` header.
pub(crate) fn check_api(
    inner: &mut Inner,
    method: &str,
    uri: &str,
    header: Option<&str>,
    now: Instant,
) -> Result<(), Refusal> {
    let auth = inner.config.auth.clone();
    let digest_mode = !matches!(auth, FakeAuth::ServiceAccount { .. });
    let no_creds = if digest_mode { Some(false) } else { None };
    let Some(header) = header else {
        return refuse(
            "Current user is not authorized to perform this action.",
            no_creds,
        );
    };
    if let Some(token) = header.strip_prefix("Bearer ") {
        if matches!(auth, FakeAuth::ApiKey { .. }) {
            return refuse("This project accepts API keys only.", no_creds);
        }
        return match inner.tokens.get(token.trim()) {
            Some(t) if t.revoked => refuse("The access token has been revoked.", no_creds),
            Some(t) if now >= t.expires => refuse("The access token has expired.", no_creds),
            Some(_) => Ok(()),
            None => refuse("The access token is not valid.", no_creds),
        };
    }
    if !header.starts_with("Digest ") || !digest_mode {
        return refuse(
            "Current user is not authorized to perform this action.",
            no_creds,
        );
    }
    let Some(fields) = parse_digest(header) else {
        return refuse("The Digest authorization header is malformed.", Some(false));
    };
    let get = |k: &str| fields.get(k).map(String::as_str);
    let (Some(user), Some(nonce), Some(d_uri), Some(response), Some(nc), Some(cnonce)) = (
        get("username"),
        get("nonce"),
        get("uri"),
        get("response"),
        get("nc"),
        get("cnonce"),
    ) else {
        return refuse(
            "The Digest authorization header is incomplete.",
            Some(false),
        );
    };
    if get("qop") != Some("auth")
        || get("realm") != Some(REALM)
        || get("algorithm").is_some_and(|a| !a.eq_ignore_ascii_case("MD5"))
        || d_uri != uri
    {
        return refuse(
            "The Digest authorization does not match this request.",
            Some(false),
        );
    }
    let Ok(nc_value) = u64::from_str_radix(nc, 16) else {
        return refuse("The Digest nonce count is malformed.", Some(false));
    };
    if let FakeAuth::ApiKey {
        public_key,
        private_key,
    } = &auth
    {
        let ha1 = md5_hex(&format!("{user}:{REALM}:{private_key}"));
        let ha2 = md5_hex(&format!("{method}:{d_uri}"));
        let expected = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
        if !same(user, public_key) || !same(&expected, &response.to_ascii_lowercase()) {
            return refuse("The API key or its digest is wrong.", Some(false));
        }
    }
    let max_uses = inner.config.digest_nonce_max_uses;
    let ttl = Duration::from_secs(inner.config.digest_nonce_ttl_secs);
    let Some(info) = inner.nonces.get_mut(nonce) else {
        // The digest is right (or cannot be checked) but the nonce is not ours: ask for a new one.
        return refuse("The nonce is unknown or has expired.", Some(true));
    };
    if info.uses >= max_uses || now.saturating_duration_since(info.issued) >= ttl {
        inner.nonces.remove(nonce);
        return refuse("The nonce has expired.", Some(true));
    }
    if !info.seen_nc.insert(nc_value) {
        return refuse("The nonce count was used before.", Some(false));
    }
    info.uses += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_header_parses_quoted_and_bare_values() {
        let h = r#"Digest username="pk", realm="MMS Public API", nonce="abc", uri="/x?a=1,2", qop=auth, nc=00000001, cnonce="c", response="r""#;
        let f = parse_digest(h).unwrap_or_default();
        assert_eq!(f.get("uri").map(String::as_str), Some("/x?a=1,2"));
        assert_eq!(f.get("qop").map(String::as_str), Some("auth"));
        assert_eq!(f.get("nc").map(String::as_str), Some("00000001"));
        assert_eq!(f.get("response").map(String::as_str), Some("r"));
    }

    #[test]
    fn basic_header_splits_at_first_colon() {
        let h = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("id:se:cret")
        );
        assert_eq!(parse_basic(&h), Some(("id".into(), "se:cret".into())));
        assert_eq!(parse_basic("Basic !!"), None);
    }
}
