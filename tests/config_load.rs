//! Config file: defaults, unknown keys, relative paths, the base URL override and its http rule.

use atlas_linkd::config::{AuthKind, Config, ConfigError, LogFormat};
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
    assert_eq!(c.ledger, PathBuf::from("/srv/linkd/ledger.db"));
}

#[test]
fn documented_default_config_loads_as_is() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/config.yaml");
    let c = Config::load(&path, &no_env).unwrap();
    assert_eq!(c.manifests, vec![path.parent().unwrap().join("manifests/")]);
    assert_eq!(c.ledger, PathBuf::from("/var/lib/atlas-linkd/ledger.db"));
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
