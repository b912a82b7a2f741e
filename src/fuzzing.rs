//! Fuzz targets: each takes arbitrary bytes along one path where untrusted input enters the product (a
//! manifest file, the config file, and Atlas's answers: a listing page, an error body, a token answer,
//! `Retry-After`), the way the product takes them. Only `tests/fuzz/` uses this module; it is public
//! (and hidden) so that nothing else widens its visibility for the fuzzer.
//!
//! A target returns normally for every input the product handles (accepted or refused), and panics
//! on a bug: a panic inside the product, or a broken property of what it made of the input.

use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use std::sync::OnceLock;

use crate::atlas::{
    ApiError, AtlasClient, ClientSettings, Credentials, DecodeAs, Decoded, MAX_RETRY_AFTER,
    Operation, TokenCache, WireToken, base64, class_of_status, parse_retry_after,
};
use crate::config::Config;
use crate::manifest::{self, ManifestSet, ReadLimits, Settling};
use crate::model::{GroupId, LinkKey};

/// The project named in the errors the Atlas targets build.
const GROUP: &str = "0123456789abcdef01234567";

/// A folder for a target's files: in `/dev/shm` when there is one, since rewriting a file in place on
/// ext4 costs about a millisecond (it flushes a file truncated and written again), which would be most
/// of an input's time.
fn scratch_dir() -> io::Result<tempfile::TempDir> {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new()
            .prefix("atlas-linkd-fuzz")
            .tempdir_in(shm)
    {
        return Ok(dir);
    }
    tempfile::tempdir()
}

fn group() -> GroupId {
    GroupId::parse(GROUP).expect("the constant is a valid group id")
}

/// Formats an error and every cause, as `exit::refuse` and the logs do.
fn render_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The project of the daemon-path files, the same as a seed's (`tests/data/valid/kinesis-region-only.yaml`)
/// so that mutations of it clash with them.
const DAEMON_GROUP: &str = "32b6e34b3d91647abb20e7b8";
/// The fuzzed file's last good version, in the daemon's folder.
const DAEMON_BASE: &str = "projects:\n  - groupId: 32b6e34b3d91647abb20e7b8\n    links:\n      - name: fuzz-base\n        provider: AWS\n        vendor: KINESIS\n        region: ap-south-1\n";
/// Another file of the daemon's folder, which no version of the fuzzed file may take away.
const DAEMON_OTHER: &str = "projects:\n  - groupId: 32b6e34b3d91647abb20e7b8\n    links:\n      - name: other-file\n        provider: GCP\n        vendor: PUBSUB\n        region: us-central1\n";

/// One manifest file, the way each reader takes it:
/// - `validate` and `--once`: the bytes are written as `manifest.yaml` alone in a folder, parsed and
///   validated (`parse_str`), and loaded through `ManifestSet` (discovery, the read, the UTF-8 check);
/// - the daemon: a folder holds a good version of the file and another file; the bytes replace the good
///   version and the set is refreshed, which must keep the good version if the new one is refused, and
///   never lose the other file's link.
pub struct ManifestTarget {
    dir: tempfile::TempDir,
    file: PathBuf,
    daemon_dir: tempfile::TempDir,
    daemon_file: PathBuf,
}

impl ManifestTarget {
    pub fn new() -> io::Result<ManifestTarget> {
        let dir = scratch_dir()?;
        let file = dir.path().join("manifest.yaml");
        let daemon_dir = scratch_dir()?;
        let daemon_file = daemon_dir.path().join("fuzz.yaml");
        std::fs::write(daemon_dir.path().join("other.yaml"), DAEMON_OTHER)?;
        Ok(ManifestTarget {
            dir,
            file,
            daemon_dir,
            daemon_file,
        })
    }

    pub fn run(&mut self, bytes: &[u8]) {
        // `ManifestSet` catches a parser panic (the daemon keeps the file's last good version), so
        // the parse is run bare first, where a panic is seen.
        let text = std::str::from_utf8(bytes).ok();
        if let Some(text) = text {
            assert!(
                manifest::agrees_with_serde_yaml(text),
                "the quick YAML tree differs from serde_yaml's"
            );
        }
        let parsed = text.map(|text| manifest::parse_str(&self.file, text));
        if let Some(Err(problems)) = &parsed {
            assert!(
                !problems.0.is_empty(),
                "a refused manifest names no problem"
            );
            let _ = problems.to_string();
        }
        std::fs::write(&self.file, bytes).expect("the fuzz folder is writable");
        let loaded =
            ManifestSet::load_with(&[self.dir.path().to_path_buf()], ReadLimits::default());
        match &loaded {
            Ok(set) => {
                let _ = set.desired().link_count();
            }
            Err(problems) => {
                assert!(
                    !problems.0.is_empty(),
                    "a refused manifest names no problem"
                );
                no_caught_panic(&problems.0);
            }
        }
        // `validate` (parse_str) and the loader must agree; bytes that are not UTF-8 are refused.
        let parsed_ok = parsed.as_ref().is_some_and(Result::is_ok);
        assert_eq!(
            parsed_ok,
            loaded.is_ok(),
            "the parser and the loader disagree on this file"
        );
        self.daemon(bytes);
    }

    /// The daemon's refresh, from a fresh set each time so that an input alone decides the outcome.
    fn daemon(&mut self, bytes: &[u8]) {
        let folder = [self.daemon_dir.path().to_path_buf()];
        std::fs::write(&self.daemon_file, DAEMON_BASE).expect("the fuzz folder is writable");
        let mut set = match ManifestSet::load_with(&folder, ReadLimits::default()) {
            Ok(set) => set,
            Err(p) => panic!("the daemon's base files are refused: {p}"),
        };
        std::fs::write(&self.daemon_file, bytes).expect("the fuzz folder is writable");
        // As the daemon refreshes, with no window: the fuzzed content is used at once.
        let settling = Settling {
            window: Duration::ZERO,
            now: std::time::Instant::now(),
        };
        let refresh = set.refresh_settled(&folder, settling);
        no_caught_panic(&refresh.problems);
        let desired = set.desired();
        let group = GroupId::parse(DAEMON_GROUP).expect("the constant is a valid group id");
        assert!(
            desired
                .get(&LinkKey::new(group.clone(), "other-file"))
                .is_some(),
            "a refresh lost another file's link"
        );
        if refresh.invalid_files > 0 {
            assert!(
                !refresh.problems.is_empty(),
                "a file refused without a problem"
            );
            assert!(
                desired.get(&LinkKey::new(group, "fuzz-base")).is_some(),
                "a refused file's last good version was dropped"
            );
        }
    }
}

/// `ManifestSet` turns a parser panic into this problem; the fuzzer must see it as the panic it is.
fn no_caught_panic(problems: &[manifest::Problem]) {
    for p in problems {
        let text = p.to_string();
        assert!(
            !text.contains("internal error while parsing"),
            "the loader caught a parser panic: {text}"
        );
    }
}

/// The config file: the bytes are written as `config.yaml` and loaded as every command loads it
/// (`Config::load`: the read, the YAML, every key's check), with no environment variable set.
pub struct ConfigTarget {
    _dir: tempfile::TempDir,
    file: PathBuf,
}

impl ConfigTarget {
    pub fn new() -> io::Result<ConfigTarget> {
        let dir = scratch_dir()?;
        let file = dir.path().join("config.yaml");
        Ok(ConfigTarget { _dir: dir, file })
    }

    pub fn run(&mut self, bytes: &[u8]) {
        std::fs::write(&self.file, bytes).expect("the fuzz folder is writable");
        match Config::load(&self.file, &|_| None) {
            Ok(config) => {
                let _ = format!("{config:?}");
            }
            Err(e) => {
                let text = render_chain(&e);
                assert!(!text.is_empty(), "a refused config says nothing");
            }
        }
    }
}

/// The credentials of the client the Atlas targets decode with. The seeds of `error_body` echo them,
/// as a hostile token endpoint does, so the mutations test that no form of them survives scrubbing.
const CLIENT_ID: &str = "fuzz-client-id";
const CLIENT_SECRET: &str = "fuzz-client-secret-0123456789";

/// A real client (never calling anything: its base is a closed loopback port), so the targets run
/// the decoders the calls run, scrubber included.
fn client() -> &'static AtlasClient {
    static CLIENT: OnceLock<AtlasClient> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let base = Url::parse("http://127.0.0.1:9/").expect("a constant URL");
        let credentials = Credentials::ServiceAccount {
            client_id: CLIENT_ID.to_owned(),
            client_secret: SecretString::from(CLIENT_SECRET.to_owned()),
        };
        AtlasClient::new(
            ClientSettings::new(base, Duration::from_secs(1)),
            credentials,
            None,
        )
        .expect("a client with constant settings builds")
    })
}

/// An error as the logs and `refuse` show it, checked: it says what failed and shows no secret.
fn check_error(e: &ApiError) {
    let text = render_chain(e);
    assert!(
        text.starts_with("could not "),
        "an error that does not say what failed: {text}"
    );
    let basic = base64(format!("{CLIENT_ID}:{CLIENT_SECRET}").as_bytes());
    for secret in [CLIENT_SECRET, basic.as_str()] {
        assert!(!text.contains(secret), "a secret survived in: {text}");
    }
}

/// A page of `GET .../privateLinkConnections`, decoded by the client's own decoder.
pub fn listing(bytes: &[u8]) {
    let group = group();
    match client().decode_answer(
        DecodeAs::Page(&group),
        200,
        HeaderMap::new(),
        bytes.to_vec(),
    ) {
        Ok(Decoded::Page(page)) => {
            for remote in &page.items {
                assert!(!remote.id.is_empty(), "a listed connection without an id");
                let _ = format!("{remote:?}");
            }
        }
        Ok(Decoded::Token(..)) => panic!("a page decoded as a token"),
        Err(e) => check_error(&e),
    }
}

/// An error answer's body, decoded by the client's own decoder, for a create refused with 400, a
/// listing with 429 (with a `Retry-After`), and the token endpoint's 401.
pub fn error_body(bytes: &[u8]) {
    let group = group();
    for (op, status) in [
        (Operation::Create, 400),
        (Operation::List, 429),
        (Operation::Token, 401),
    ] {
        let group = (op != Operation::Token).then_some(&group);
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        let Err(e) =
            client().decode_answer(DecodeAs::Error(op, group), status, headers, bytes.to_vec())
        else {
            panic!("an error answer decoded as a success");
        };
        let _ = e.error_code();
        check_error(&e);
    }
}

/// The token endpoint's answer, decoded by the client's own decoder and stored in a token cache the
/// way a fetched token is; then the `Authorization` header it becomes.
pub struct TokenTarget {
    runtime: tokio::runtime::Runtime,
}

impl TokenTarget {
    pub fn new() -> io::Result<TokenTarget> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        Ok(TokenTarget { runtime })
    }

    pub fn run(&mut self, bytes: &[u8]) {
        // `Debug` of the wire type never shows the token.
        if let Ok(token) = serde_json::from_slice::<WireToken>(bytes) {
            let blank = WireToken {
                access_token: String::new(),
                expires_in: token.expires_in,
            };
            assert_eq!(
                format!("{token:?}"),
                format!("{blank:?}"),
                "the token shows in Debug"
            );
        }
        let (secret, ttl) =
            match client().decode_answer(DecodeAs::Token, 200, HeaderMap::new(), bytes.to_vec()) {
                Ok(Decoded::Token(secret, ttl)) => (secret, ttl),
                Ok(Decoded::Page(_)) => panic!("a token answer decoded as a page"),
                Err(e) => {
                    check_error(&e);
                    return;
                }
            };
        let cache = TokenCache::new();
        let got = self
            .runtime
            .block_on(cache.get(|| async { Ok((secret, ttl)) }));
        let got = match got {
            Ok(t) => t,
            Err(e) => panic!("the cache refused a token it was handed: {e}"),
        };
        if let Ok(mut header) =
            HeaderValue::from_str(&format!("Bearer {}", got.secret.expose_secret()))
        {
            header.set_sensitive(true);
            assert_eq!(
                format!("{header:?}"),
                "Sensitive",
                "a sensitive header shows its value"
            );
        }
    }
}

/// A `Retry-After` header value as it arrives (bytes the HTTP layer accepted), read as
/// `AtlasClient::status_error` reads it, at three clocks: now, the epoch, and the last second of 9999.
pub fn retry_after(bytes: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(bytes) else {
        return;
    };
    let Ok(text) = value.to_str() else {
        return;
    };
    let clocks = [
        SystemTime::now(),
        SystemTime::UNIX_EPOCH,
        SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799),
    ];
    for now in clocks {
        let Some(wait) = parse_retry_after(text, now) else {
            continue;
        };
        assert!(
            wait <= MAX_RETRY_AFTER,
            "Retry-After {text:?} read as {wait:?}, over the cap"
        );
        let err = ApiError::new(
            Operation::List,
            Some(&group()),
            class_of_status(Operation::List, 429, Some(wait)),
        );
        assert_eq!(err.retry_after(), Some(wait));
        let _ = err.to_string();
    }
}
