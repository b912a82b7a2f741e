//! What a SIGHUP changes in a running daemon: every setting is classified here, by one exhaustive
//! destructuring of `Config`, as applied by a reload or applied only at start-up, so a new setting
//! cannot compile until it is classified.

use super::{AtlasSettings, Config};

/// A new config as a running daemon can take it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reloaded {
    /// The new config, with the running values of every restart-only setting that changed.
    pub config: Config,
    /// The restart-only settings that changed, by their keys in the file: named in a warning.
    pub restart_only: Vec<&'static str>,
}

/// The keys a reload applies, and those that need a restart, as README's reload table lists them.
pub const RELOADED_KEYS: &[&str] = &[
    "manifests",
    "reconcile.*",
    "rate_limit.*",
    "retry.*",
    "prune.*",
    "limits.*",
];
pub const RESTART_ONLY_KEYS: &[&str] = &[
    "atlas.base_url",
    "atlas.auth",
    "atlas.timeout_secs",
    "ledger",
    "leadership.*",
    "metrics.listen",
    "log.format",
];

impl Config {
    /// `new` as this running config can take it on reload: every setting a reload applies comes
    /// from `new`; every restart-only one keeps its running value, and is named if it changed.
    pub fn reloaded(&self, new: Config) -> Reloaded {
        let Config {
            source,
            atlas:
                AtlasSettings {
                    base_url,
                    auth,
                    timeout_secs,
                },
            manifests,
            ledger,
            leadership,
            reconcile,
            rate_limit,
            retry,
            metrics,
            log,
            limits,
            prune,
        } = new;
        let mut restart_only = Vec::new();
        let mut keep = |key: &'static str, changed: bool| {
            if changed {
                restart_only.push(key);
            }
        };
        // Start-up only: the client, the ledger's lock, the bound endpoint and the logger are
        // built once.
        keep("atlas.base_url", base_url != self.atlas.base_url);
        keep("atlas.auth", auth != self.atlas.auth);
        keep(
            "atlas.timeout_secs",
            timeout_secs != self.atlas.timeout_secs,
        );
        keep("ledger", ledger != self.ledger);
        // The lease thread runs with the settings it started with.
        keep("leadership.*", leadership != self.leadership);
        keep("metrics.listen", metrics != self.metrics);
        keep("log.format", log != self.log);
        let config = Config {
            source,
            atlas: self.atlas.clone(),
            ledger: self.ledger.clone(),
            leadership: self.leadership,
            metrics: self.metrics,
            log: self.log,
            // Applied: the watcher is set up again, the policy rebuilt, the resync timer restarted,
            // and the next read of the manifests uses the new limits.
            manifests,
            reconcile,
            rate_limit,
            retry,
            limits,
            prune,
        };
        Reloaded {
            config,
            restart_only,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogFormat;

    fn config(extra: &str) -> Config {
        let ledger = if extra.contains("ledger:") {
            ""
        } else {
            "ledger: l.db\n"
        };
        let yaml = format!("manifests: [m/]\n{ledger}{extra}");
        Config::from_yaml(&yaml, std::path::Path::new("/etc/x/config.yaml"), &|_| None)
            .expect("a valid config")
    }

    #[test]
    fn prune_and_the_other_policies_are_applied_by_a_reload() {
        let old = config("prune:\n  enabled: true\n  grace_secs: 5\n  max_per_pass: 10\n");
        let new = config(
            "prune:\n  enabled: false\n  grace_secs: 3600\n  max_per_pass: 1\nretry:\n  max_attempts: 2\nreconcile:\n  ready_poll_secs: 7\n",
        );
        let r = old.reloaded(new.clone());
        assert_eq!(r.restart_only, Vec::<&str>::new());
        assert_eq!(r.config, new);
        assert!(!r.config.prune.enabled);
        assert_eq!(r.config.prune.grace_secs, 3600);
        // And back on.
        let back = r.config.reloaded(old.clone());
        assert!(back.config.prune.enabled);
        assert_eq!(back.config, old);
    }

    #[test]
    fn restart_only_settings_keep_their_running_values_and_are_named() {
        let old = config("");
        let new = config(
            "ledger: other.db\natlas:\n  timeout_secs: 9\n  base_url: https://atlas.example.net\nmetrics:\n  listen: 127.0.0.1:9999\nlog:\n  format: text\nprune:\n  enabled: true\n",
        );
        let r = old.reloaded(new);
        assert_eq!(
            r.restart_only,
            [
                "atlas.base_url",
                "atlas.timeout_secs",
                "ledger",
                "metrics.listen",
                "log.format"
            ]
        );
        assert_eq!(r.config.ledger, old.ledger);
        assert_eq!(r.config.atlas, old.atlas);
        assert_eq!(r.config.metrics, old.metrics);
        assert_eq!(r.config.log.format, LogFormat::Auto);
        assert!(
            r.config.prune.enabled,
            "applied beside the restart-only ones"
        );
    }

    #[test]
    fn readme_lists_every_key_as_reloaded_or_restart_only() {
        let readme = include_str!("../../README.md");
        let table = readme
            .split("| key | on SIGHUP |")
            .nth(1)
            .expect("README has the reload table");
        for key in RELOADED_KEYS {
            let row = table
                .lines()
                .map(str::trim_start)
                .find(|l| l.starts_with(&format!("| `{key}`")))
                .unwrap_or_else(|| panic!("no row for {key}"));
            assert!(row.contains("| applied"), "{row}");
        }
        for key in RESTART_ONLY_KEYS {
            let row = table
                .lines()
                .map(str::trim_start)
                .find(|l| l.starts_with("| `") && l.contains(&format!("`{key}`")))
                .unwrap_or_else(|| panic!("no row for {key}"));
            assert!(row.contains("| restart"), "{row}");
        }
    }

    #[test]
    fn each_restart_only_key_is_named_when_it_changes() {
        let old = config("");
        for (key, extra) in [
            (
                "atlas.base_url",
                "atlas:\n  base_url: https://atlas.example.net\n",
            ),
            ("atlas.auth", "atlas:\n  auth: api_key\n"),
            ("atlas.timeout_secs", "atlas:\n  timeout_secs: 9\n"),
            ("ledger", "ledger: other.db\n"),
            ("metrics.listen", "metrics:\n  listen: 127.0.0.1:9999\n"),
            ("log.format", "log:\n  format: json\n"),
        ] {
            assert!(RESTART_ONLY_KEYS.contains(&key));
            assert_eq!(old.reloaded(config(extra)).restart_only, [key], "{extra}");
        }
    }
}
