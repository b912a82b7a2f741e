//! Fuzz targets over arbitrary bytes, one test each: the manifest loader, the config loader, and the
//! decoders of Atlas's answers (a listing page, an error body, a token answer, `Retry-After`).
//!
//! A binary of its own because the engine sets process-wide limits (`RLIMIT_AS`, a counting global
//! allocator, a panic hook) that must not touch the other tests. Each test replays its seeds and
//! `tests/fuzz-regressions/<target>/`, then fuzzes for `ATLAS_LINKD_FUZZ_SECS` seconds (default 3, so
//! `scripts/test` runs every target briefly); `scripts/fuzz` runs them longer.
#![allow(clippy::unwrap_used)]

mod engine;

use atlas_linkd::fuzzing::{self, ConfigTarget, ManifestTarget, TokenTarget};
use engine::{Target, fuzz};

/// Bytes YAML parsers trip on: structure, anchors and aliases, tags, scalars at the edges of their
/// types, encodings.
#[rustfmt::skip]
const YAML: &[&[u8]] = &[
    b"\n", b": ", b"- ", b"---\n", b"...\n", b"  ", b"    ", b"\t", b"#", b"&a ", b"*a",
    b"<<: *a\n", b"!!binary ", b"!!str ", b"!!map ", b"!custom ", b"? ", b"|\n", b">-\n", b"{",
    b"}", b"[", b"]", b", ", b"\"", b"'", b"\\", b"~", b"null", b"true", b"0x1F", b"0o17", b".inf",
    b"-.nan", b"1e999", b"-1", b"0", b"18446744073709551615", b"18446744073709551616",
    b"340282366920938463463374607431768211456", b"%YAML 1.2\n", b"%TAG ! tag:x,2000:\n", b"\0",
    b"\r\n", b"\r", b"\xef\xbb\xbf", b"\xff", b"\xc3\xa9", b"\xe2\x80\xa8", b"\\u0000", b"\\x00",
];

#[rustfmt::skip]
const MANIFEST: &[&[u8]] = &[
    b"projects:\n", b"- groupId: ", b"0123456789abcdef01234567", b"'0123456789abcdef01234567'",
    b"012345678901234567890123", b"name: ", b"links:\n", b"defaults:\n", b"provider: ", b"vendor: ",
    b"region: ", b"arn: ", b"serviceEndpointId: ", b"dnsDomain: ", b"dnsSubDomain: ",
    b"azureResourceIds: ", b"gcpConnectionIds: ", b"gcpServiceAttachmentUris: ",
    b"authenticationScheme: ", b"label: ", b"AWS", b"AZURE", b"GCP", b"MSK", b"CONFLUENT",
    b"KINESIS", b"S3", b"LAMBDA", b"EVENTHUB", b"AZURE_BLOB_STORAGE", b"PUBSUB", b"GENERIC",
    b"SASL_SCRAM", b"IAM", b"TLS", b"us-east-1", b"US_EAST_1",
    b"arn:aws:kafka:us-east-1:123456789012:cluster/x/y", b"_id: ", b"state: ", b"[]", b"{}",
];

#[rustfmt::skip]
const CONFIG: &[&[u8]] = &[
    b"atlas:\n", b"base_url: ", b"auth: ", b"timeout_secs: ", b"manifests: ", b"ledger: ",
    b"reconcile:\n", b"resync_interval_secs: ", b"concurrency: ", b"per_project_concurrency: ",
    b"settle_secs: ", b"retry:\n", b"max_backoff_secs: ", b"max_attempts: ", b"rate_limit:\n",
    b"metrics:\n", b"listen: ", b"log:\n", b"level: ", b"format: ", b"service_account", b"api_key",
    b"https://cloud.mongodb.com", b"http://127.0.0.1:1", b"http://[::1]:8080",
    b"https://user:pw@host", b"https://h/p?q=1#f", b"0.0.0.0:9464", b"127.0.0.1:0", b"json",
    b"text", b"/var/lib/x.db", b"manifests/", b"../", b"4294967296", b"0",
];

/// JSON: structure, strings with escapes, numbers at the edges of the types serde reads.
#[rustfmt::skip]
const JSON: &[&[u8]] = &[
    b"{", b"}", b"[", b"]", b":", b",", b"\"", b"\"\"", b"null", b"true", b"false", b"0", b"-0",
    b"-1", b"1.5", b"1e400", b"-1e400", b"65536", b"4294967296", b"18446744073709551615",
    b"18446744073709551616", b"9223372036854775807", b"\"\\u0000\"", b"\"\\ud800\"", b"\"\\\"\"",
    b"\\", b"\xff", b" ", b"\n", b"[[[[[[[[[[[[[[[[", b"{\"a\":{\"a\":{\"a\":",
];

#[rustfmt::skip]
const ATLAS: &[&[u8]] = &[
    b"\"links\"", b"\"rel\"", b"\"next\"", b"\"NEXT\"", b"\"self\"", b"\"href\"", b"\"results\"",
    b"\"totalCount\"", b"\"_id\"", b"\"provider\"", b"\"vendor\"", b"\"region\"", b"\"state\"",
    b"\"dnsSubDomain\"", b"\"errorMessage\"", b"\"error\"", b"\"errorCode\"", b"\"detail\"",
    b"\"reason\"", b"\"parameters\"", b"\"badRequestDetail\"", b"\"fields\"", b"\"field\"",
    b"\"description\"", b"\"error_description\"", b"\"access_token\"", b"\"expires_in\"",
    b"\"token_type\"", b"\"Bearer\"", b"\"65a1b2c3d4e5f60718293a4b\"", b"\"WORKING\"",
    b"\"FAILED\"",
];

#[rustfmt::skip]
const RETRY_AFTER: &[&[u8]] = &[
    b"0", b"1", b"55", b"3600", b"3601", b"999999999", b"18446744073709551615",
    b"18446744073709551616", b"-", b"+", b".", b" ", b"\t", b"GMT", b"UTC", b"Sun, ", b"Sunday, ",
    b"06 Nov 1994 ", b"06-Nov-94 ", b"Sun Nov  6 08:49:37 1994", b"08:49:37 ",
    b"Thu, 01 Jan 1970 00:00:00 GMT", b"Fri, 31 Dec 9999 23:59:59 GMT",
    b"Mon, 29 Feb 2100 00:00:00 GMT", b"Sat, 01 Jan 2000 00:00:30 GMT", b"25:61:61", b"\xff",
    b"\x7f",
];

fn concat(parts: &[&'static [&'static [u8]]]) -> &'static [&'static [u8]] {
    Box::leak(parts.concat().into_boxed_slice())
}

#[test]
fn manifest() {
    fuzz(&Target {
        name: "manifest",
        seeds: &[
            "config/manifests",
            "tests/data",
            "tests/fuzz/seeds/manifest",
        ],
        dictionary: concat(&[YAML, MANIFEST]),
        make: || {
            let mut t = ManifestTarget::new().expect("a temporary folder");
            Box::new(move |b| t.run(b))
        },
    });
}

#[test]
fn config() {
    fuzz(&Target {
        name: "config",
        seeds: &["config/config.yaml", "tests/fuzz/seeds/config"],
        dictionary: concat(&[YAML, CONFIG]),
        make: || {
            let mut t = ConfigTarget::new().expect("a temporary folder");
            Box::new(move |b| t.run(b))
        },
    });
}

#[test]
fn listing() {
    fuzz(&Target {
        name: "listing",
        seeds: &["tests/fuzz/seeds/listing"],
        dictionary: concat(&[JSON, ATLAS]),
        make: || Box::new(fuzzing::listing),
    });
}

#[test]
fn error_body() {
    fuzz(&Target {
        name: "error_body",
        seeds: &["tests/fuzz/seeds/error_body"],
        dictionary: concat(&[JSON, ATLAS]),
        make: || Box::new(fuzzing::error_body),
    });
}

#[test]
fn token() {
    fuzz(&Target {
        name: "token",
        seeds: &["tests/fuzz/seeds/token"],
        dictionary: concat(&[JSON, ATLAS]),
        make: || {
            let mut t = TokenTarget::new().expect("a tokio runtime");
            Box::new(move |b| t.run(b))
        },
    });
}

#[test]
fn retry_after() {
    fuzz(&Target {
        name: "retry_after",
        seeds: &["tests/fuzz/seeds/retry_after"],
        dictionary: RETRY_AFTER,
        make: || Box::new(fuzzing::retry_after),
    });
}
