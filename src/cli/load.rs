//! Loading what every command needs first: the config, then every manifest, each problem printed.

use crate::config::Config;
use crate::exit::refuse;
use crate::manifest;
use crate::model::DesiredState;
use std::path::{Path, PathBuf};

/// The process environment, as `Config` and the credentials read it.
pub(crate) fn env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

pub(crate) fn config_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .unwrap_or_else(|| Config::default_path(&env))
}

/// Loads the config and every manifest, printing every problem. `None` means exit 2.
pub(crate) fn load(flag: Option<&Path>) -> Option<(Config, DesiredState)> {
    let (config, parsed) = parse(flag)?;
    Some((config, merge(parsed)))
}

/// `load` up to the merge of the manifests (`merge`), which can wait: every problem is found.
pub(crate) fn parse(flag: Option<&Path>) -> Option<(Config, manifest::Parsed)> {
    let config = load_config(flag)?;
    let limits = manifest::ReadLimits::new(config.limits.manifest_file_max_bytes);
    match manifest::parse_with(&config.manifests, &limits) {
        Ok(parsed) => Some((config, parsed)),
        Err(problems) => {
            for p in &problems.0 {
                eprintln!("{p}");
            }
            eprintln!(
                "atlas-linkd: {} problem(s) in the manifests; nothing was changed",
                problems.0.len()
            );
            None
        }
    }
}

/// The manifests merged, and the heap the parse and the merge freed handed back.
pub(crate) fn merge(parsed: manifest::Parsed) -> DesiredState {
    let desired = parsed.into_desired();
    // The YAML trees and parsed files freed lie between the links kept (see `release_free_memory`).
    crate::memory::release_free_memory();
    desired
}

pub(crate) fn load_config(flag: Option<&Path>) -> Option<Config> {
    let path = config_path(flag);
    match Config::load(&path, &env) {
        Ok(c) => Some(c),
        Err(e) => {
            refuse(&e);
            None
        }
    }
}
