//! HTTP Digest (RFC 2617, MD5, qop=auth) for Atlas programmatic API keys: challenge parsing and
//! the `Authorization` header, with a cached nonce reused under an increasing `nc`.

use std::sync::atomic::{AtomicU32, Ordering};

use md5::{Digest, Md5};

/// The parts of a `WWW-Authenticate: Digest ...` challenge this client uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub(crate) realm: String,
    pub(crate) nonce: String,
    pub(crate) opaque: Option<String>,
    pub(crate) stale: bool,
}

/// Parses a Digest challenge; `None` for other schemes or when `nonce` is missing.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let mut realm = None;
    let mut nonce = None;
    let mut opaque = None;
    let mut stale = false;
    for (key, value) in params(rest) {
        match key.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value),
            "nonce" => nonce = Some(value),
            "opaque" => opaque = Some(value),
            "stale" => stale = value.eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    Some(Challenge {
        realm: realm.unwrap_or_default(),
        nonce: nonce.filter(|n| !n.is_empty())?,
        opaque,
        stale,
    })
}

/// `key=value` pairs, values optionally quoted (with `\` escapes), separated by commas.
fn params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() && chars.peek().is_none() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                value.push(n);
                            }
                        }
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
        }
        out.push((key.trim().to_owned(), value.trim().to_owned()));
        if chars.peek().is_none() {
            break;
        }
    }
    out
}

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A nonce in use: every request takes the next `nc`.
pub(crate) struct Session {
    pub(crate) challenge: Challenge,
    nc: AtomicU32,
}

impl Session {
    pub(crate) fn new(challenge: Challenge) -> Session {
        Session {
            challenge,
            nc: AtomicU32::new(0),
        }
    }

    /// The `Authorization` header value for one request (`uri` is the request target: path and query).
    pub(crate) fn authorize(
        &self,
        username: &str,
        password: &str,
        method: &str,
        uri: &str,
    ) -> String {
        let nc = self.nc.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let cnonce = hex::encode(rand::random::<[u8; 8]>());
        authorization(
            &self.challenge,
            username,
            password,
            method,
            uri,
            nc,
            &cnonce,
        )
    }
}

pub(crate) fn authorization(
    ch: &Challenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> String {
    let ha1 = md5_hex(&format!("{username}:{}:{password}", ch.realm));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let nc = format!("{nc:08x}");
    let response = md5_hex(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", ch.nonce));
    let mut header = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\", response=\"{response}\"",
        quote(username),
        quote(&ch.realm),
        quote(&ch.nonce),
        quote(uri),
    );
    if let Some(opaque) = &ch.opaque {
        header.push_str(&format!(", opaque=\"{}\"", quote(opaque)));
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_example() {
        let ch = parse_challenge(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        assert_eq!(ch.realm, "testrealm@host.com");
        assert_eq!(
            ch.opaque.as_deref(),
            Some("5ccc069c403ebaf9f0171e9517f40e41")
        );
        let h = authorization(
            &ch,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            1,
            "0a4f113b",
        );
        assert!(
            h.contains(r#"response="6629fae49393a05397450978507c4ef1""#),
            "{h}"
        );
        assert!(h.contains("nc=00000001"));
    }

    #[test]
    fn atlas_challenge_with_stale() {
        let ch = parse_challenge(
            r#"Digest realm="MMS Public API", domain="", nonce="abc+/=", algorithm=MD5, qop="auth", stale=true"#,
        )
        .unwrap();
        assert_eq!(ch.realm, "MMS Public API");
        assert_eq!(ch.nonce, "abc+/=");
        assert!(ch.stale);
        assert!(parse_challenge(r#"Basic realm="x""#).is_none());
        assert!(parse_challenge(r#"Digest realm="x""#).is_none());
    }

    #[test]
    fn nc_increases_per_request() {
        let s = Session::new(Challenge {
            realm: "r".into(),
            nonce: "n".into(),
            opaque: None,
            stale: false,
        });
        let a = s.authorize("u", "p", "GET", "/x");
        let b = s.authorize("u", "p", "GET", "/x");
        assert!(a.contains("nc=00000001") && b.contains("nc=00000002"));
    }
}
