//! The scrubber: every form a secret of ours can take on the wire, removed from text a server sends
//! before that text reaches an error, a log line or `plan`'s output.
//!
//! A server (or a proxy in front of it) may echo the request back: an OAuth error that quotes the
//! `Authorization: Basic base64(id:secret)` header, a body that repeats the revoke form's token.
//! Whatever the server sends is untrusted text, so it is scrubbed where it enters our errors.

use std::sync::Mutex;

use secrecy::{ExposeSecret, SecretString};

use super::Credentials;
use crate::lock::LockExt;

/// What a secret is replaced by.
pub(crate) const REDACTED: &str = "[redacted]";

/// How many issued tokens are remembered: the current one and a few before it (a server may echo a
/// token it rejected), without growing for the life of a daemon that refreshes every hour.
const TOKENS_KEPT: usize = 4;

/// The shortest issued token the scrubber removes (see `add_token`).
pub(crate) const MIN_TOKEN_CHARS: usize = 8;

/// Removes every known secret form from server text. Built once per client from its credentials;
/// tokens are added as they are issued.
pub(crate) struct Scrubber {
    fixed: Vec<SecretString>,
    tokens: Mutex<Vec<Vec<SecretString>>>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber")
            .field("forms", &self.fixed.len())
            .finish_non_exhaustive()
    }
}

impl Scrubber {
    /// The secret (client secret or API private key) and, for a service account, the Basic
    /// credential `base64(id:secret)` that the token and revoke requests carry.
    pub(crate) fn new(credentials: &Credentials) -> Scrubber {
        let mut fixed = forms_of(credentials.secret());
        if let Credentials::ServiceAccount { .. } = credentials {
            let basic =
                base64(format!("{}:{}", credentials.identity(), credentials.secret()).as_bytes());
            fixed.extend(forms_of(&basic));
        }
        sort_longest_first(&mut fixed);
        Scrubber {
            fixed,
            tokens: Mutex::new(Vec::new()),
        }
    }

    /// Remembers an issued access token (it travels as `Bearer <token>` and in the revoke form).
    /// A token shorter than [`MIN_TOKEN_CHARS`] is not remembered: the server that chose it knows
    /// it, it guards nothing, and removing it would mangle every message (a token `t` would take
    /// every letter t). Atlas's tokens are hundreds of characters. The client's own secret is
    /// removed whatever its length.
    pub(crate) fn add_token(&self, token: &SecretString) {
        if token.expose_secret().chars().count() < MIN_TOKEN_CHARS {
            return;
        }
        let mut forms = forms_of(token.expose_secret());
        sort_longest_first(&mut forms);
        let mut tokens = self.tokens.lock_or_recover();
        if tokens.len() >= TOKENS_KEPT {
            tokens.remove(0);
        }
        tokens.push(forms);
    }

    /// `text` with every secret form replaced by [`REDACTED`].
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        let tokens = self.tokens.lock_or_recover();
        for form in self.fixed.iter().chain(tokens.iter().flatten()) {
            let form = form.expose_secret();
            if !form.is_empty() && out.contains(form) {
                out = out.replace(form, REDACTED);
            }
        }
        out
    }

    /// Every string inside a JSON value, scrubbed in place (Atlas's error `parameters`).
    pub(crate) fn scrub_json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) => *s = self.scrub(s),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_json(v)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| self.scrub_json(v)),
            _ => {}
        }
    }
}

/// A longer form is removed before a shorter one that it contains, so no tail of it survives.
fn sort_longest_first(forms: &mut [SecretString]) {
    forms.sort_by_key(|f| std::cmp::Reverse(f.expose_secret().len()));
}

/// The ways one secret can appear in text a server sends: as itself, escaped inside a JSON string
/// (with `/` escaped too, as some encoders do), and form-urlencoded (the revoke request's body).
fn forms_of(secret: &str) -> Vec<SecretString> {
    if secret.is_empty() {
        return Vec::new();
    }
    let mut forms: Vec<String> = vec![secret.to_owned()];
    let quoted = serde_json::to_string(secret).expect("a string always serialises to JSON");
    // Without the quotes around it.
    let json = quoted[1..quoted.len() - 1].to_owned();
    forms.push(json.replace('/', "\\/"));
    forms.push(json);
    forms.push(form_urlencoded(secret));
    forms.sort();
    forms.dedup();
    forms.retain(|f| !f.is_empty());
    forms.into_iter().map(SecretString::from).collect()
}

/// `application/x-www-form-urlencoded` of one value, as the revoke request sends its token.
fn form_urlencoded(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Standard base64 with padding, as HTTP Basic authentication encodes `id:secret`.
pub(crate) fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa() -> Credentials {
        Credentials::ServiceAccount {
            client_id: "mdb_sa_id_1".into(),
            client_secret: SecretString::from("s3cr/t+ \"x\""),
        }
    }

    #[test]
    fn base64_matches_rfc_4648() {
        assert_eq!(
            base64(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
    }

    #[test]
    fn every_form_of_the_secret_and_the_basic_credential_is_removed() {
        let s = Scrubber::new(&sa());
        let secret = "s3cr/t+ \"x\"";
        let basic = base64(format!("mdb_sa_id_1:{secret}").as_bytes());
        let json = r#"s3cr\/t+ \"x\""#;
        let text = format!(
            "Basic {basic} | {secret} | {json} | {} | {}",
            form_urlencoded(secret),
            r#"s3cr/t+ \"x\""#
        );
        let out = s.scrub(&text);
        assert!(!out.contains("s3cr"), "{out}");
        assert!(!out.contains(&basic), "{out}");
        assert!(out.contains("Basic [redacted]"), "{out}");
        // The identity is not a secret.
        assert_eq!(s.scrub("id mdb_sa_id_1"), "id mdb_sa_id_1");
    }

    #[test]
    fn tokens_are_removed_and_only_the_last_few_are_kept() {
        let s = Scrubber::new(&sa());
        for n in 0..10 {
            s.add_token(&SecretString::from(format!("tok-{n}-abcdef")));
        }
        let out = s.scrub("Bearer tok-9-abcdef and tok-6-abcdef");
        assert_eq!(out, "Bearer [redacted] and [redacted]");
        assert_eq!(s.tokens.lock_or_recover().len(), TOKENS_KEPT);
        // A token too short to guard anything is left alone rather than eating every `t`.
        s.add_token(&SecretString::from("t"));
        assert_eq!(s.scrub("<html>text</html>"), "<html>text</html>");
    }

    #[test]
    fn json_values_are_scrubbed_recursively() {
        let s = Scrubber::new(&sa());
        let mut v = serde_json::json!(["s3cr/t+ \"x\"", {"a": ["s3cr/t+ \"x\" tail"]}, 3]);
        s.scrub_json(&mut v);
        assert_eq!(
            v,
            serde_json::json!(["[redacted]", {"a": ["[redacted] tail"]}, 3])
        );
    }

    #[test]
    fn api_key_private_key_is_removed() {
        let s = Scrubber::new(&Credentials::ApiKey {
            public_key: "pub".into(),
            private_key: SecretString::from("priv-KEY-1"),
        });
        assert_eq!(s.scrub("key priv-KEY-1 for pub"), "key [redacted] for pub");
    }
}
