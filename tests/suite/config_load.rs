//! Config file: defaults, unknown keys, relative paths, the base URL override and its http rule.

use atlas_linkd::config::{Config, ConfigError, LogFormat, ranges};
use atlas_linkd::model::AuthKind;
use std::path::{Path, PathBuf};

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(text, Path::new("/etc/atlas-linkd/config.yaml"), &no_env)
}

#[test]
fn minimal_config_gets_every_default() {
    let c = load("manifests: [m/]\nledger: state/ledger.db\n").unwrap();
    assert_eq!(c.atlas.base_url.as_str(), "https://cloud.mongodb.com/");
    assert_eq!(c.atlas.auth, AuthKind::ServiceAccount);
    assert_eq!(c.atlas.timeout_secs, 30);
    assert_eq!(c.reconcile.resync_interval_secs, 300);
    assert_eq!(c.reconcile.concurrency, 32);
    assert_eq!(c.reconcile.per_project_concurrency, 4);
    assert_eq!(
        (
            c.rate_limit.capacity,
            c.rate_limit.refill,
            c.rate_limit.period_secs
        ),
        (1200, 500, 60)
    );
    assert_eq!(
        (
            c.retry.max_attempts,
            c.retry.initial_backoff_ms,
            c.retry.max_backoff_secs
        ),
        (6, 1000, 60)
    );
    assert_eq!(
        (c.retry.failure_delay_secs, c.retry.max_failure_delay_secs),
        (300, 21600)
    );
    assert_eq!(
        c.reconcile.settle_secs, 30,
        "settle defaults to the timeout"
    );
    assert_eq!(c.rate_limit.reserve, 60);
    assert_eq!(c.metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(c.log.format, LogFormat::Auto);
    assert_eq!(c.source, PathBuf::from("/etc/atlas-linkd/config.yaml"));
}

#[test]
fn relative_paths_resolve_against_the_config_folder() {
    let c = Config::from_yaml(
        "manifests: [manifests/, /abs/m.yaml]\nledger: ledger.db\n",
        Path::new("/srv/linkd/config.yaml"),
        &no_env,
    )
    .unwrap();
    assert_eq!(
        c.manifests,
        vec![
            PathBuf::from("/srv/linkd/manifests/"),
            PathBuf::from("/abs/m.yaml")
        ]
    );
    assert_eq!(c.ledger.file(), Some(Path::new("/srv/linkd/ledger.db")));
}

#[test]
fn documented_default_config_loads_as_is() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/config.yaml");
    let c = Config::load(&path, &no_env).unwrap();
    assert_eq!(c.manifests, vec![path.parent().unwrap().join("manifests/")]);
    assert_eq!(
        c.ledger.file(),
        Some(Path::new("/var/lib/atlas-linkd/ledger.db"))
    );
    let defaults = load("").unwrap();
    assert_eq!(c.reconcile, defaults.reconcile);
    assert_eq!(c.rate_limit, defaults.rate_limit);
    assert_eq!(c.retry, defaults.retry);
    assert_eq!(c.metrics, defaults.metrics);
}

#[test]
fn unknown_key_names_file_key_line_and_suggestion() {
    let err = load("manifests: [m/]\nreconcile:\n  concurency: 8\n").unwrap_err();
    let text = err.to_string();
    match &err {
        ConfigError::UnknownKey {
            key,
            suggestion,
            line,
            ..
        } => {
            assert_eq!(key, "reconcile.concurency");
            assert_eq!(suggestion.as_deref(), Some("concurrency"));
            assert_eq!(*line, Some(3));
        }
        other => panic!("expected an unknown key error, got {other:?}"),
    }
    assert!(text.contains("/etc/atlas-linkd/config.yaml:3"), "{text}");
    assert!(text.contains("did you mean `concurrency`?"), "{text}");
}

#[test]
fn top_level_unknown_key_is_refused() {
    let err = load("manifest: [m/]\n").unwrap_err();
    assert!(
        err.to_string().contains("did you mean `manifests`?"),
        "{err}"
    );
}

#[test]
fn yaml_errors_carry_line_and_column() {
    let err = load("reconcile:\n  concurrency: lots\n").unwrap_err();
    match &err {
        ConfigError::Yaml { line, column, .. } => {
            assert_eq!(*line, Some(2));
            assert!(column.is_some());
        }
        other => panic!("expected a YAML error, got {other:?}"),
    }
}

#[test]
fn env_overrides_base_url() {
    let env = |k: &str| (k == "MONGODB_ATLAS_BASE_URL").then(|| "http://127.0.0.1:8080".to_owned());
    let c = Config::from_yaml(
        "atlas: {base_url: https://cloud.mongodb.com}\n",
        Path::new("c.yaml"),
        &env,
    )
    .unwrap();
    assert_eq!(c.atlas.base_url.as_str(), "http://127.0.0.1:8080/");
}

#[test]
fn plain_http_only_for_loopback() {
    for ok in [
        "http://127.0.0.1:1",
        "http://127.3.4.5",
        "http://[::1]:9000",
        "http://localhost:8080",
    ] {
        assert!(
            load(&format!("atlas: {{base_url: \"{ok}\"}}\n")).is_ok(),
            "{ok} should be accepted"
        );
    }
    for bad in [
        "http://cloud.mongodb.com",
        "http://10.0.0.1",
        "ftp://127.0.0.1",
        "not a url",
    ] {
        let err = load(&format!("atlas: {{base_url: \"{bad}\"}}\n")).unwrap_err();
        assert!(err.to_string().contains("atlas.base_url"), "{err}");
    }
    let env =
        |k: &str| (k == "MONGODB_ATLAS_BASE_URL").then(|| "http://atlas.example.com".to_owned());
    let err = Config::from_yaml("", Path::new("c.yaml"), &env).unwrap_err();
    assert!(err.to_string().contains("MONGODB_ATLAS_BASE_URL"), "{err}");
}

#[test]
fn positive_numbers_are_checked() {
    for (yaml, key) in [
        ("reconcile: {concurrency: 0}", "reconcile.concurrency"),
        (
            "reconcile: {concurrency: 2, per_project_concurrency: 3}",
            "reconcile.per_project_concurrency",
        ),
        ("rate_limit: {capacity: 0}", "rate_limit.capacity"),
        ("rate_limit: {refill: 0}", "rate_limit.refill"),
        ("rate_limit: {period_secs: 0}", "rate_limit.period_secs"),
        ("retry: {max_attempts: 0}", "retry.max_attempts"),
        ("atlas: {timeout_secs: 0}", "atlas.timeout_secs"),
    ] {
        let err = load(yaml).unwrap_err();
        assert!(err.to_string().contains(key), "{yaml}: {err}");
    }
}

#[test]
fn metrics_null_turns_endpoint_off_and_auth_parses() {
    let c = load("metrics: {listen: null}\natlas: {auth: api_key}\nlog: {format: json}\n").unwrap();
    assert_eq!(c.metrics.listen, None);
    assert_eq!(c.atlas.auth, AuthKind::ApiKey);
    assert_eq!(c.log.format, LogFormat::Json);
    assert!(load("metrics: {listen: nowhere}").is_err());
}

#[test]
fn default_path_prefers_env() {
    let env = |k: &str| (k == "ATLAS_LINKD_CONFIG").then(|| "/tmp/x.yaml".to_owned());
    assert_eq!(Config::default_path(&env), PathBuf::from("/tmp/x.yaml"));
    assert_eq!(
        Config::default_path(&no_env),
        PathBuf::from("/etc/atlas-linkd/config.yaml")
    );
}

#[test]
fn missing_file_says_what_to_do() {
    let err = Config::load(Path::new("/nonexistent/atlas-linkd.yaml"), &no_env).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("/nonexistent/atlas-linkd.yaml") && text.contains("--config"),
        "{text}"
    );
}

/// The one problem of a config that should have exactly one.
fn single_problem(yaml: &str) -> (String, String, String) {
    let err = load(yaml).unwrap_err();
    let text = err.to_string();
    let problems = err.problems();
    assert_eq!(problems.len(), 1, "{yaml}: expected one problem: {text}");
    (problems[0].key.clone(), problems[0].message.clone(), text)
}

#[test]
fn every_number_has_a_range_and_both_ends_are_checked() {
    // (section, key, range, a value below, a value above). Neighbours are left at their defaults,
    // which stay valid, so each line is one problem.
    let cases: &[(&str, &str, &std::ops::RangeInclusive<u64>)] = &[
        ("atlas", "timeout_secs", &ranges::TIMEOUT_SECS),
        (
            "reconcile",
            "resync_interval_secs",
            &ranges::RESYNC_INTERVAL_SECS,
        ),
        ("reconcile", "concurrency", &ranges::CONCURRENCY),
        (
            "reconcile",
            "per_project_concurrency",
            &ranges::PER_PROJECT_CONCURRENCY,
        ),
        ("reconcile", "settle_secs", &ranges::SETTLE_SECS),
        ("rate_limit", "capacity", &ranges::CAPACITY),
        ("rate_limit", "refill", &ranges::REFILL),
        ("rate_limit", "period_secs", &ranges::PERIOD_SECS),
        ("retry", "max_attempts", &ranges::MAX_ATTEMPTS),
        ("retry", "initial_backoff_ms", &ranges::INITIAL_BACKOFF_MS),
        ("retry", "max_backoff_secs", &ranges::MAX_BACKOFF_SECS),
        ("retry", "failure_delay_secs", &ranges::FAILURE_DELAY_SECS),
        (
            "retry",
            "max_failure_delay_secs",
            &ranges::MAX_FAILURE_DELAY_SECS,
        ),
        ("leadership", "lease_secs", &ranges::LEASE_SECS),
        ("leadership", "renew_secs", &ranges::RENEW_SECS),
    ];
    for (section, key, range) in cases {
        let full = format!("{section}.{key}");
        let (lo, hi) = (*range.start(), *range.end());
        let range_text = format!("{lo}..={hi}");
        for (value, advice) in [(lo - 1, "raise it"), (hi + 1, "lower it")] {
            let yaml = format!("{section}: {{{key}: {value}}}\n");
            let (k, message, text) = single_problem(&yaml);
            assert_eq!(k, full, "{yaml}");
            assert!(
                message.contains(&format!("is {value}")) && message.contains(&range_text),
                "{yaml}: {message}"
            );
            assert!(message.contains(advice), "{yaml}: {message}");
            assert!(
                text.starts_with("/etc/atlas-linkd/config.yaml: ") && text.contains(&full),
                "{yaml}: {text}"
            );
        }
        // Both ends themselves are accepted (the relations to neighbours are met by the defaults
        // or set alongside).
        for value in [lo, hi] {
            let extra = match (*section, *key) {
                ("reconcile", "concurrency") => "\n  per_project_concurrency: 1",
                ("reconcile", "per_project_concurrency") => "\n  concurrency: 1024",
                ("retry", "initial_backoff_ms") => "\n  max_backoff_secs: 86400",
                ("retry", "failure_delay_secs") => "\n  max_failure_delay_secs: 2592000",
                ("retry", "max_failure_delay_secs") => "\n  failure_delay_secs: 1",
                ("reconcile", "settle_secs") => "\natlas:\n  timeout_secs: 1",
                ("leadership", "lease_secs") => "\n  renew_secs: 1",
                ("leadership", "renew_secs") => "\n  lease_secs: 3600",
                _ => "",
            };
            let yaml = format!("{section}:\n  {key}: {value}{extra}\n");
            assert!(load(&yaml).is_ok(), "{yaml}: {:?}", load(&yaml).err());
        }
    }
}

#[test]
fn range_message_reads_in_the_units_of_the_key() {
    let (_, message, text) = single_problem("atlas: {timeout_secs: 0}");
    assert_eq!(
        text,
        "/etc/atlas-linkd/config.yaml: `atlas.timeout_secs` is 0 s, outside the allowed range \
         1..=3600 s (1 hour): raise it to at least 1 s"
    );
    assert!(message.starts_with("is 0 s"), "{message}");
    let (_, message, _) = single_problem("reconcile: {resync_interval_secs: 604801}");
    assert!(
        message.contains("1..=604800 s (7 days): lower it to at most 604800 s"),
        "{message}"
    );
    let (_, message, _) = single_problem("retry: {initial_backoff_ms: 0}");
    assert!(message.contains("1..=86400000 ms (1 day)"), "{message}");
    let (_, message, _) = single_problem("reconcile: {concurrency: 5000}");
    assert!(
        message.contains("is 5000, outside the allowed range 1..=1024:"),
        "{message}"
    );
}

#[test]
fn a_huge_resync_interval_is_refused_at_load() {
    let (key, message, _) =
        single_problem("reconcile: {resync_interval_secs: 18446744073709551615}");
    assert_eq!(key, "reconcile.resync_interval_secs");
    assert!(message.contains("18446744073709551615"), "{message}");
    // Beyond u64 the YAML number does not even fit the field: refused as a YAML error, no panic.
    let err = load("reconcile: {resync_interval_secs: 99999999999999999999999999999}").unwrap_err();
    assert!(matches!(err, ConfigError::Yaml { .. }), "{err:?}");
    // Likewise the other durations that reach the timer code.
    for yaml in [
        "atlas: {timeout_secs: 18446744073709551615}",
        "reconcile: {settle_secs: 18446744073709551615}",
        "retry: {max_backoff_secs: 18446744073709551615}",
        "retry: {initial_backoff_ms: 18446744073709551615}",
        "retry: {max_failure_delay_secs: 18446744073709551615}",
        "rate_limit: {period_secs: 18446744073709551615}",
    ] {
        assert!(!load(yaml).unwrap_err().problems().is_empty(), "{yaml}");
    }
}

#[test]
fn several_bad_values_are_all_reported_in_one_error() {
    let yaml = "\
atlas:
  base_url: http://atlas.example.com
  timeout_secs: 0
manifests: []
reconcile:
  resync_interval_secs: 18446744073709551615
  concurrency: 2
  per_project_concurrency: 3
rate_limit:
  capacity: 100
  reserve: 100
retry:
  max_attempts: 1000
  initial_backoff_ms: 5000
  max_backoff_secs: 2
  failure_delay_secs: 600
  max_failure_delay_secs: 60
metrics:
  listen: nowhere
";
    let err = load(yaml).unwrap_err();
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "atlas.base_url",
            "atlas.timeout_secs",
            "reconcile.resync_interval_secs",
            "reconcile.per_project_concurrency",
            "rate_limit.reserve",
            "retry.max_attempts",
            "retry.initial_backoff_ms",
            "retry.max_failure_delay_secs",
            "manifests",
            "metrics.listen",
        ]
    );
    // One line per problem, each naming the file and its key.
    let text = err.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), keys.len(), "{text}");
    for (line, key) in lines.iter().zip(&keys) {
        assert!(
            line.starts_with(&format!("/etc/atlas-linkd/config.yaml: `{key}` ")),
            "{line}"
        );
    }
}

#[test]
fn a_value_out_of_range_is_not_reported_again_through_its_relations() {
    // concurrency 0 is one problem, not also "per_project_concurrency exceeds concurrency".
    let (key, _, _) = single_problem("reconcile: {concurrency: 0}");
    assert_eq!(key, "reconcile.concurrency");
    let (key, _, _) = single_problem("retry: {max_backoff_secs: 0}");
    assert_eq!(key, "retry.max_backoff_secs");
    let (key, _, _) = single_problem("retry: {failure_delay_secs: 0}");
    assert_eq!(key, "retry.failure_delay_secs");
}

#[test]
fn relations_between_keys_are_checked() {
    let (key, message, _) =
        single_problem("retry: {failure_delay_secs: 600, max_failure_delay_secs: 599}");
    assert_eq!(key, "retry.max_failure_delay_secs");
    assert!(
        message.contains("retry.failure_delay_secs (600 s)"),
        "{message}"
    );
    assert!(load("retry: {failure_delay_secs: 600, max_failure_delay_secs: 600}").is_ok());
    let (key, message, _) =
        single_problem("retry: {initial_backoff_ms: 2001, max_backoff_secs: 2}");
    assert_eq!(key, "retry.initial_backoff_ms");
    assert!(
        message.contains("retry.max_backoff_secs (2 s)"),
        "{message}"
    );
    assert!(load("retry: {initial_backoff_ms: 2000, max_backoff_secs: 2}").is_ok());
}

#[test]
fn settle_defaults_to_the_timeout_and_may_be_set() {
    let c = load("atlas: {timeout_secs: 7}").unwrap();
    assert_eq!(c.reconcile.settle_secs, 7);
    let c = load("atlas: {timeout_secs: 7}\nreconcile: {settle_secs: 90}").unwrap();
    assert_eq!((c.atlas.timeout_secs, c.reconcile.settle_secs), (7, 90));
}

#[test]
fn reserve_defaults_to_60_and_must_stay_below_capacity() {
    assert_eq!(load("").unwrap().rate_limit.reserve, 60);
    assert_eq!(
        load("rate_limit: {capacity: 5000}")
            .unwrap()
            .rate_limit
            .reserve,
        60
    );
    // A small bucket left without a reserve keeps most of it: a twentieth at most.
    assert_eq!(
        load("rate_limit: {capacity: 20}")
            .unwrap()
            .rate_limit
            .reserve,
        1
    );
    assert_eq!(
        load("rate_limit: {capacity: 10}")
            .unwrap()
            .rate_limit
            .reserve,
        0
    );
    // 0 is allowed, and so is capacity - 1.
    assert_eq!(
        load("rate_limit: {reserve: 0}").unwrap().rate_limit.reserve,
        0
    );
    assert_eq!(
        load("rate_limit: {reserve: 1199}")
            .unwrap()
            .rate_limit
            .reserve,
        1199
    );
    for yaml in [
        "rate_limit: {reserve: 1200}",
        "rate_limit: {reserve: 4294967295}",
        "rate_limit: {capacity: 50, reserve: 60}",
    ] {
        let (key, message, _) = single_problem(yaml);
        assert_eq!(key, "rate_limit.reserve", "{yaml}");
        assert!(
            message.contains("below rate_limit.capacity") && message.contains("0..="),
            "{yaml}: {message}"
        );
    }
    let (_, message, _) = single_problem("rate_limit: {capacity: 50, reserve: 60}");
    assert!(message.contains("0..=49"), "{message}");
}

#[test]
fn a_settle_window_shorter_than_the_timeout_is_refused() {
    let (key, message, _) =
        single_problem("atlas: {timeout_secs: 30}\nreconcile: {settle_secs: 10}\n");
    assert_eq!(key, "reconcile.settle_secs");
    assert!(
        message.contains("shorter than atlas.timeout_secs"),
        "{message}"
    );
    let ok = load("atlas: {timeout_secs: 30}\nreconcile: {settle_secs: 30}\n").unwrap();
    assert_eq!(ok.reconcile.settle_secs, 30);
    let default = load("atlas: {timeout_secs: 12}\n").unwrap();
    assert_eq!(default.reconcile.settle_secs, 12);
}

#[test]
fn unknown_keys_wrong_types_and_bad_values_are_reported_together() {
    let yaml = "\
atlas:
  timeout_secs: lots
reconcile:
  concurency: 8
retry:
  max_attempts: 0
metrics:
  listen: nowhere
";
    let err = load(yaml).unwrap_err();
    let problems = err.problems();
    let found: Vec<(&str, Option<usize>)> =
        problems.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert_eq!(
        found,
        [
            ("atlas.timeout_secs", Some(2)),
            ("reconcile.concurency", Some(4)),
            ("retry.max_attempts", None),
            ("metrics.listen", None),
        ],
        "{err}"
    );
    let text = err.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with(
            "/etc/atlas-linkd/config.yaml:2:3: `atlas.timeout_secs` cannot be read: invalid type"
        ),
        "{text}"
    );
    assert!(
        lines[1].starts_with(
            "/etc/atlas-linkd/config.yaml:4:3: `reconcile.concurency` is an unknown key"
        ) && lines[1].contains("did you mean `concurrency`?"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("/etc/atlas-linkd/config.yaml: `retry.max_attempts` is 0"),
        "{text}"
    );
}

#[test]
fn a_top_level_unknown_key_does_not_hide_a_wrong_type_or_a_range_error() {
    let err = load("manifest: [m/]\nreconcile: {concurrency: many, settle_secs: 0}\n").unwrap_err();
    let found: Vec<(&str, Option<usize>, Option<usize>)> = err
        .problems()
        .iter()
        .map(|p| (p.key.as_str(), p.line, p.column))
        .collect();
    assert_eq!(
        found,
        [
            ("manifest", Some(1), Some(1)),
            ("reconcile.concurrency", Some(2), Some(13)),
            ("reconcile.settle_secs", None, None),
        ],
        "{err}"
    );
    assert!(
        err.to_string().contains("did you mean `manifests`?"),
        "{err}"
    );
    // A key that could not be read is not compared with others: the wrong `timeout_secs` leaves
    // the default in its place, and `settle_secs` is not called shorter than it.
    let err = load(
        "atlas: {timeout_secs: [1]}\nreconcile: {settle_secs: 10}\nretry: {max_attempts: 0}\n",
    )
    .unwrap_err();
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["atlas.timeout_secs", "retry.max_attempts"], "{err}");
}

#[test]
fn user_info_query_and_fragment_in_the_base_url_are_refused_without_echoing_the_password() {
    for (url, what) in [
        ("https://alice:hunter2-s3cret@cloud.mongodb.com", "password"),
        ("https://alice@cloud.mongodb.com", "user name"),
        ("https://cloud.mongodb.com/?envelope=true", "query"),
        ("https://cloud.mongodb.com/#frag", "fragment"),
        ("https://cloud.mongodb.com/?", "query"),
    ] {
        let err = load(&format!("atlas: {{base_url: \"{url}\"}}\n")).unwrap_err();
        let problems = err.problems();
        assert_eq!(problems.len(), 1, "{url}: {err}");
        assert_eq!(problems[0].key, "atlas.base_url", "{url}");
        assert!(problems[0].message.contains(what), "{url}: {err}");
        let text = err.to_string();
        assert!(
            text.starts_with("/etc/atlas-linkd/config.yaml: `atlas.base_url` "),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "the password is echoed: {text}");
    }
}

#[test]
fn every_problem_of_the_base_url_is_reported_at_once_with_the_others() {
    let yaml = "atlas:\n  base_url: \"http://bob:hunter2-s3cret@atlas.example.com/api?x=1#y\"\n  timeout_secs: 0\n";
    let err = load(yaml).unwrap_err();
    let text = err.to_string();
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    // Plain http off loopback, the user info, the query and the fragment; then the next key.
    assert_eq!(
        keys,
        [
            "atlas.base_url",
            "atlas.base_url",
            "atlas.base_url",
            "atlas.base_url",
            "atlas.timeout_secs"
        ],
        "{text}"
    );
    assert!(!text.contains("hunter2"), "the password is echoed: {text}");
    assert!(text.contains("http://***@atlas.example.com"), "{text}");
}

#[test]
fn the_base_url_from_the_environment_is_held_to_the_same_rules() {
    let env = |k: &str| {
        (k == "MONGODB_ATLAS_BASE_URL")
            .then(|| "https://carol:hunter2-s3cret@cloud.mongodb.com".to_owned())
    };
    let err = Config::from_yaml("", Path::new("c.yaml"), &env).unwrap_err();
    let text = err.to_string();
    assert_eq!(err.problems().len(), 1, "{text}");
    assert_eq!(err.problems()[0].key, "MONGODB_ATLAS_BASE_URL");
    assert!(!text.contains("hunter2"), "the password is echoed: {text}");
    // Not a URL at all, with something like a password in it: not echoed either.
    let env = |k: &str| {
        (k == "MONGODB_ATLAS_BASE_URL").then(|| "https://dave:hunter2-s3cret@[bad".to_owned())
    };
    let err = Config::from_yaml("", Path::new("c.yaml"), &env).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("is not a URL"), "{text}");
    assert!(!text.contains("hunter2"), "the password is echoed: {text}");
}

#[test]
fn a_base_url_with_a_path_and_a_port_is_still_accepted() {
    let c = load("atlas: {base_url: \"https://atlas.example.com:8443/proxy\"}\n").unwrap();
    assert_eq!(
        c.atlas.base_url.as_str(),
        "https://atlas.example.com:8443/proxy"
    );
}

#[test]
fn a_lease_must_outlast_three_renewals() {
    let (key, message, _) = single_problem("leadership: {lease_secs: 10, renew_secs: 4}\n");
    assert_eq!(key, "leadership.renew_secs");
    assert!(
        message.contains("a third of leadership.lease_secs"),
        "{message}"
    );
    let ok = load("leadership: {lease_secs: 12, renew_secs: 4}\n").unwrap();
    assert_eq!(
        (ok.leadership.lease_secs, ok.leadership.renew_secs),
        (12, 4)
    );
    let default = load("").unwrap();
    assert_eq!(
        (default.leadership.lease_secs, default.leadership.renew_secs),
        (15, 5)
    );
}

#[test]
fn a_postgres_ledger_takes_a_url_and_widens_the_settle_window_by_the_send_margin() {
    let c =
        load("ledger: postgresql://linkd@db.example.net:6543/atlas\natlas: {timeout_secs: 12}\n")
            .unwrap();
    assert_eq!(
        c.ledger.to_string(),
        "postgresql://linkd@db.example.net:6543/atlas"
    );
    assert!(c.ledger.file().is_none());
    assert_eq!(c.reconcile.settle_secs, 14, "timeout + the 2 s send margin");
    // A window that does not cover the margin is refused on PostgreSQL, taken on SQLite.
    let (key, message, _) = single_problem(
        "ledger: postgres://linkd@db/atlas\natlas: {timeout_secs: 12}\nreconcile: {settle_secs: 13}\n",
    );
    assert_eq!(key, "reconcile.settle_secs");
    assert!(message.contains("at least 14 s"), "{message}");
    assert!(load("atlas: {timeout_secs: 12}\nreconcile: {settle_secs: 13}\n").is_ok());
}

#[test]
fn a_postgres_url_with_a_password_or_a_weak_sslmode_is_refused_without_echoing_it() {
    for yaml in [
        "ledger: postgres://linkd:hunter2@db/atlas\n",
        "ledger: postgres://linkd@db/atlas?password=hunter2\n",
    ] {
        let (key, message, text) = single_problem(yaml);
        assert_eq!(key, "ledger");
        assert!(message.contains("holds a password"), "{message}");
        assert!(!text.contains("hunter2"), "{text}");
    }
    let (key, message, _) = single_problem("ledger: postgres://db/atlas?sslmode=verify-ca\n");
    assert_eq!(key, "ledger");
    assert!(message.contains("verify-full"), "{message}");
}
