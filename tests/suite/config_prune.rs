//! The `prune` section of the config: off by default, its ranges, and every problem reported at once.

use atlas_linkd::config::{Config, ConfigError, ranges};
use std::path::Path;

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(text, Path::new("/etc/atlas-linkd/config.yaml"), &no_env)
}

#[test]
fn prune_is_off_by_default_with_an_hour_of_grace_and_ten_per_pass() {
    let c = load("manifests: [m/]\n").unwrap();
    assert!(!c.prune.enabled);
    assert_eq!((c.prune.grace_secs, c.prune.max_per_pass), (3600, 10));
    let c = load("prune:\n  enabled: true\n  grace_secs: 0\n  max_per_pass: 10000\n").unwrap();
    assert!(c.prune.enabled);
    assert_eq!((c.prune.grace_secs, c.prune.max_per_pass), (0, 10_000));
}

#[test]
fn prune_ranges_unknown_keys_and_wrong_types_are_reported_together() {
    let yaml = "\
prune:
  enabled: yes please
  grace_secs: 2592001
  max_per_pass: 0
  max_per_day: 3
";
    let err = load(yaml).unwrap_err();
    let text = err.to_string();
    for key in [
        "prune.enabled",
        "prune.grace_secs",
        "prune.max_per_pass",
        "prune.max_per_day",
    ] {
        assert!(
            text.contains(&format!("`{key}`")),
            "{key} missing from:\n{text}"
        );
    }
    let err = load("prune:\n  max_per_pass: 10001\n").unwrap_err();
    assert_eq!(err.problems().len(), 1);
    assert_eq!(err.problems()[0].key, "prune.max_per_pass");
    assert_eq!(*ranges::PRUNE_MAX_PER_PASS.end(), 10_000);
    assert_eq!(*ranges::PRUNE_GRACE_SECS.end(), 2_592_000);
}
