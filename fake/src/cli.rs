//! `atlas-linkd fake-atlas`: the fake's command-line flags and the serve-until-signalled loop.

use super::config::{BucketConfig, DuplicateMode, FakeAuth, FakeConfig, Faults};
use super::{FakeAtlas, FakeError};
use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::str::FromStr;

/// A secret given on the command line or in the environment; `Debug` never shows it.
#[derive(Clone)]
pub struct SecretArg(String);

impl FromStr for SecretArg {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SecretArg(s.to_owned()))
    }
}

impl fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The `--duplicates` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DuplicatesArg {
    Conflict,
    Create,
}

fn probability(s: &str) -> Result<f64, String> {
    let p: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{p} is not a probability from 0 to 1"))
    }
}

fn rate(s: &str) -> Result<f64, String> {
    let r: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if r.is_finite() && r >= 0.0 {
        Ok(r)
    } else {
        Err(format!("{r} is not a rate of 0 or more calls a second"))
    }
}

/// Flags of `atlas-linkd fake-atlas`.
#[derive(clap::Args, Debug, Clone)]
pub struct FakeArgs {
    /// Loopback address to listen on (port 0: the system picks one; the base URL is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Accept only this service account (with --client-secret).
    #[arg(long, requires = "client_secret", conflicts_with = "public_key")]
    pub client_id: Option<String>,
    #[arg(
        long,
        env = "FAKE_ATLAS_CLIENT_SECRET",
        hide_env_values = true,
        requires = "client_id"
    )]
    pub client_secret: Option<SecretArg>,
    /// Accept only this API key over HTTP Digest (with --private-key).
    #[arg(long, requires = "private_key")]
    pub public_key: Option<String>,
    #[arg(
        long,
        env = "FAKE_ATLAS_PRIVATE_KEY",
        hide_env_values = true,
        requires = "public_key"
    )]
    pub private_key: Option<SecretArg>,
    #[arg(long, default_value_t = 3600)]
    pub token_ttl_secs: u64,
    /// Digest nonces go stale after this many uses...
    #[arg(long, default_value_t = 100)]
    pub nonce_max_uses: u64,
    /// ...or after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub nonce_ttl_secs: u64,
    #[arg(long, default_value_t = 1200)]
    pub bucket_capacity: u32,
    #[arg(long, default_value_t = 500)]
    pub bucket_refill: u32,
    #[arg(long, default_value_t = 60.0)]
    pub bucket_period_secs: f64,
    /// No rate limit at all.
    #[arg(long)]
    pub no_bucket: bool,
    #[arg(long, value_enum, default_value_t = DuplicatesArg::Conflict)]
    pub duplicates: DuplicatesArg,
    /// Added to every API answer.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// How long the backend takes to commit a valid create; the 200 comes after the commit, and the
    /// commit happens even if the client has gone meanwhile.
    #[arg(long, default_value_t = 0)]
    pub commit_delay_ms: u64,
    #[arg(long, default_value_t = 0)]
    pub idle_ms: u64,
    #[arg(long, default_value_t = 0)]
    pub working_ms: u64,
    #[arg(long, default_value_t = 0)]
    pub delete_ms: u64,
    /// Connections whose create body contains this text end FAILED.
    #[arg(long)]
    pub fail_when_contains: Option<String>,
    /// The errorMessage of the connections --fail-when-contains fails.
    #[arg(long, requires = "fail_when_contains")]
    pub fail_message: Option<String>,
    /// Deletes of connections whose create body contains this text are refused with 400
    /// STREAM_PRIVATE_LINK_IN_USE, as if a stream connection still used them.
    #[arg(long)]
    pub in_use_when_contains: Option<String>,
    /// Creates whose body contains this text are refused with 400 VALIDATION_ERROR.
    #[arg(long)]
    pub reject_when_contains: Option<String>,
    /// Calls per second another tool (Terraform, the UI) makes to each project from its first call
    /// on, sharing its bucket; the ones that find it empty are counted as refused. 0: none.
    #[arg(long, value_parser = rate, default_value_t = 0.0)]
    pub other_client_per_sec: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long = "p-429", value_parser = probability, default_value_t = 0.0)]
    pub p_429: f64,
    #[arg(long = "p-500", value_parser = probability, default_value_t = 0.0)]
    pub p_500: f64,
    #[arg(long = "p-503", value_parser = probability, default_value_t = 0.0)]
    pub p_503: f64,
    #[arg(long, value_parser = probability, default_value_t = 0.0)]
    pub p_drop_before: f64,
    #[arg(long, value_parser = probability, default_value_t = 0.0)]
    pub p_drop_after: f64,
    #[arg(long, value_parser = probability, default_value_t = 0.0)]
    pub p_slow: f64,
    /// Creates only: the gateway resets the connection at once, with no answer, and the backend
    /// still commits the create after --commit-delay-ms.
    #[arg(long, value_parser = probability, default_value_t = 0.0)]
    pub p_reset_create: f64,
    /// Creates only: the gateway answers 502 Bad Gateway (an HTML page, not Atlas's JSON) at once,
    /// and the backend still commits the create after --commit-delay-ms.
    #[arg(long = "p-502-create", value_parser = probability, default_value_t = 0.0)]
    pub p_502_create: f64,
    /// Creates only: the gateway answers 504 Gateway Timeout (plain text) at once, and the backend
    /// still commits the create after --commit-delay-ms.
    #[arg(long = "p-504-create", value_parser = probability, default_value_t = 0.0)]
    pub p_504_create: f64,
    #[arg(long, default_value_t = 200)]
    pub slow_ms: u64,
    /// Retry-After on injected 429s.
    #[arg(long, default_value_t = 1)]
    pub retry_after_secs: u64,
}

impl FakeArgs {
    /// The configuration these flags describe.
    pub fn to_config(&self) -> Result<FakeConfig, FakeError> {
        let auth = match (
            &self.client_id,
            &self.client_secret,
            &self.public_key,
            &self.private_key,
        ) {
            (Some(id), Some(secret), None, None) => FakeAuth::ServiceAccount {
                client_id: id.clone(),
                client_secret: secret.0.clone(),
            },
            (None, None, Some(public), Some(private)) => FakeAuth::ApiKey {
                public_key: public.clone(),
                private_key: private.0.clone(),
            },
            (None, None, None, None) => FakeAuth::Any,
            _ => {
                return Err(FakeError::InvalidArgument {
                    option: "--client-id/--client-secret/--public-key/--private-key",
                    problem: "give one complete pair: a client id and secret, or a public and private key".into(),
                });
            }
        };
        let total = self.p_429
            + self.p_500
            + self.p_503
            + self.p_drop_before
            + self.p_drop_after
            + self.p_slow;
        // Creates can draw any fault, so theirs is the sum that must stay within 1.
        let total = total + self.p_reset_create + self.p_502_create + self.p_504_create;
        if total > 1.0 {
            return Err(FakeError::InvalidArgument {
                option: "--p-*",
                problem: format!("the fault probabilities add up to {total}, more than 1"),
            });
        }
        if !(self.bucket_period_secs.is_finite() && self.bucket_period_secs > 0.0) {
            return Err(FakeError::InvalidArgument {
                option: "--bucket-period-secs",
                problem: "must be a positive number of seconds".into(),
            });
        }
        Ok(FakeConfig {
            auth,
            token_ttl_secs: self.token_ttl_secs,
            digest_nonce_max_uses: self.nonce_max_uses,
            digest_nonce_ttl_secs: self.nonce_ttl_secs,
            bucket: (!self.no_bucket).then_some(BucketConfig {
                capacity: self.bucket_capacity,
                refill: self.bucket_refill,
                period_secs: self.bucket_period_secs,
            }),
            duplicates: match self.duplicates {
                DuplicatesArg::Conflict => DuplicateMode::Conflict,
                DuplicatesArg::Create => DuplicateMode::Create,
            },
            latency_ms: self.latency_ms,
            commit_delay_ms: self.commit_delay_ms,
            idle_ms: self.idle_ms,
            working_ms: self.working_ms,
            delete_ms: self.delete_ms,
            fail_when_contains: self.fail_when_contains.clone(),
            fail_message: self.fail_message.clone(),
            in_use_when_contains: self.in_use_when_contains.clone(),
            reject_when_contains: self.reject_when_contains.clone(),
            other_client_per_sec: self.other_client_per_sec,
            faults: Faults {
                seed: self.seed,
                p_429: self.p_429,
                p_500: self.p_500,
                p_503: self.p_503,
                p_drop_before: self.p_drop_before,
                p_drop_after: self.p_drop_after,
                p_slow: self.p_slow,
                p_reset_create: self.p_reset_create,
                p_502_create: self.p_502_create,
                p_504_create: self.p_504_create,
                slow_ms: self.slow_ms,
                retry_after_secs: self.retry_after_secs,
                script: Vec::new(),
            },
        })
    }
}

/// Serves until SIGINT or SIGTERM; prints the base URL on stdout once listening.
pub async fn serve(args: FakeArgs) -> Result<(), FakeError> {
    let config = args.to_config()?;
    let fake = FakeAtlas::start_on(args.listen, config).await?;
    let mut out = std::io::stdout();
    // A closed stdout must not stop the server: the URL is a courtesy for scripts.
    let _ = writeln!(out, "{}", fake.base_url());
    let _ = out.flush();
    tracing::info!(url = %fake.base_url(), "fake Atlas listening");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| FakeError::Signal { source })?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.map_err(|source| FakeError::Signal { source })?,
        _ = term.recv() => {}
    }
    fake.shutdown().await;
    Ok(())
}
