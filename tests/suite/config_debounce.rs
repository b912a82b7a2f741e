//! `reconcile.debounce_ms` and `reconcile.debounce_max_wait_ms`: defaults, ranges, and their relation.

use atlas_linkd::config::{Config, ConfigError, ranges};
use std::path::Path;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(text, Path::new("/etc/atlas-linkd/config.yaml"), &|_| None)
}

fn refusal(text: &str) -> String {
    load(text).expect_err(text).to_string()
}

#[test]
fn the_debounce_defaults_to_250_ms_and_the_maximum_wait_to_2_s() {
    let c = load("manifests: [m/]\n").unwrap();
    assert_eq!(c.reconcile.debounce_ms, 250);
    assert_eq!(c.reconcile.debounce_max_wait_ms, 2_000);
    let c = load("reconcile: {debounce_ms: 1000, debounce_max_wait_ms: 5000}\n").unwrap();
    assert_eq!(
        (c.reconcile.debounce_ms, c.reconcile.debounce_max_wait_ms),
        (1_000, 5_000)
    );
}

#[test]
fn both_ends_of_both_ranges_are_checked() {
    for (key, range) in [
        ("debounce_ms", &ranges::DEBOUNCE_MS),
        ("debounce_max_wait_ms", &ranges::DEBOUNCE_MAX_WAIT_MS),
    ] {
        let (lo, hi) = (*range.start(), *range.end());
        // The other key set so that the relation between them holds at either end.
        let other = match key {
            "debounce_ms" => "debounce_max_wait_ms: 3600000",
            _ => "debounce_ms: 10",
        };
        for ok in [lo, hi] {
            let yaml = format!("reconcile: {{{key}: {ok}, {other}}}\n");
            assert!(load(&yaml).is_ok(), "{yaml}: {:?}", load(&yaml).err());
        }
        for (bad, advice) in [(lo - 1, "raise it"), (hi + 1, "lower it")] {
            let yaml = format!("reconcile: {{{key}: {bad}, {other}}}\n");
            let text = refusal(&yaml);
            assert!(
                text.contains(&format!("reconcile.{key}"))
                    && text.contains(&format!("{lo}..={hi} ms"))
                    && text.contains(advice),
                "{yaml}: {text}"
            );
        }
    }
}

#[test]
fn a_maximum_wait_below_the_debounce_is_refused_naming_both() {
    let text = refusal("reconcile: {debounce_ms: 500, debounce_max_wait_ms: 400}\n");
    assert!(
        text.contains("reconcile.debounce_max_wait_ms")
            && text.contains("400 ms")
            && text.contains("reconcile.debounce_ms (500 ms)"),
        "{text}"
    );
    // Equal is fine: every burst then waits for its quiet period or the maximum, whichever is first.
    assert!(load("reconcile: {debounce_ms: 500, debounce_max_wait_ms: 500}\n").is_ok());
}
