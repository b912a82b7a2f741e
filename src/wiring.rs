//! Start-up wiring: from a loaded config to an Atlas client, a locked ledger and a `Reconciler`, for
//! `--once`, the daemon, `plan` and `demo`.

use crate::atlas::{
    AtlasClient, ClientBuildError, ClientSettings, Credentials, CredentialsError, Observer,
};
use crate::config::Config;
use crate::ledger::{LedgerError, Take};
use crate::metrics::Metrics;
use crate::reconcile::{MetricsObserver, Policy, Reconciler};
use std::sync::Arc;
use std::time::Duration;

/// Why the executor could not be set up. Nothing was attempted: exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Client(#[from] ClientBuildError),
}

/// The Atlas client the config describes, with credentials from the environment (or `$CREDENTIALS_DIRECTORY`).
pub(crate) fn client_from_config(
    config: &Config,
    observer: Option<Arc<dyn Observer>>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AtlasClient, StartError> {
    let credentials = Credentials::from_env(config.atlas.auth, env)?;
    let settings = ClientSettings {
        base_url: config.atlas.base_url.clone(),
        timeout: Duration::from_secs(config.atlas.timeout_secs),
        user_agent: format!("atlas-linkd/{}", env!("CARGO_PKG_VERSION")),
    };
    Ok(AtlasClient::new(settings, credentials, observer)?)
}

/// Everything a pass needs, from the config: credentials, client, the ledger (locked, or its lease
/// taken at once), the metrics hook.
pub fn start(
    config: &Config,
    metrics: Metrics,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Reconciler, StartError> {
    start_taking(config, metrics, env, Take::Now)
}

/// `start`, with a shared ledger's lease taken as `take` says: the daemon takes it in the
/// background and stands by until then; `--once --wait-for-lease` waits for it.
pub fn start_taking(
    config: &Config,
    metrics: Metrics,
    env: &dyn Fn(&str) -> Option<String>,
    take: Take,
) -> Result<Reconciler, StartError> {
    let (observer, counters) = MetricsObserver::new(metrics.clone());
    let client = client_from_config(config, Some(observer), env)?;
    let ledger = config.ledger.open(env, config.leadership.lease(), take)?;
    Ok(Reconciler::new(
        client,
        ledger,
        metrics,
        Policy::from_config(config),
        counters,
    ))
}
