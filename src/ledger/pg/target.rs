//! `PgTarget`: a PostgreSQL ledger's URL, parsed by libpq's conventions, its password found outside
//! the config, and a connection made from both (TLS through rustls).

use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where Debian's (and most distributions') PostgreSQL puts its Unix socket: libpq's default host.
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";
/// How long a connection attempt may take when the URL does not say (`connect_timeout`).
const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 10;
/// The file in `$CREDENTIALS_DIRECTORY` (systemd's `LoadCredential=`) that holds the password.
pub const PASSWORD_CREDENTIAL: &str = "ledger-password";

/// libpq's `sslmode`, the modes atlas-linkd takes. `allow` and `verify-ca` are refused rather than
/// approximated: `allow` falls back to cleartext first, and `verify-ca` trusts any host a CA signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// libpq's default: TLS when the server offers it, without checking its certificate.
    Prefer,
    /// TLS always, without checking the certificate (libpq's meaning, without a root file).
    Require,
    /// TLS always; the certificate chains to a trusted root and names the host.
    VerifyFull,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Tcp(String),
    Socket(PathBuf),
}

/// A PostgreSQL ledger, as `ledger:` names it: `postgres://` or `postgresql://`, with host, port,
/// database, user and the query parameters `sslmode`, `sslrootcert`, `connect_timeout`,
/// `application_name` and `host` (a Unix socket folder). Never a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTarget {
    host: Host,
    port: u16,
    dbname: String,
    user: String,
    ssl: SslMode,
    root_cert: Option<PathBuf>,
    connect_timeout_secs: u64,
    application_name: String,
}

/// What is wrong with a `ledger:` URL. Never quotes a password.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("is not a URL: {0}")]
    Syntax(String),
    #[error(
        "holds a password: keep it out of the config, in PGPASSWORD, a PGPASSFILE, or the `ledger-password` credential"
    )]
    Password,
    #[error("has sslmode `{0}`: use disable, prefer, require or verify-full")]
    SslMode(String),
    #[error("has an unknown parameter `{0}`")]
    Parameter(String),
    #[error("has a bad `{0}`: {1}")]
    Value(&'static str, String),
}

/// Whether `text` names a PostgreSQL ledger rather than a SQLite file.
pub fn is_postgres_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// A URL part with its percent escapes undone (`%2F` in a host: a Unix socket folder).
fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

impl PgTarget {
    /// Parses a `ledger:` URL. `user` defaults to the user the process runs as (`$USER`, as
    /// libpq), the database to the user's name, the host to the Unix socket folder
    /// `/var/run/postgresql`, the port to 5432.
    pub fn parse(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<PgTarget, TargetError> {
        let url = reqwest::Url::parse(text).map_err(|e| TargetError::Syntax(e.to_string()))?;
        if url.password().is_some() {
            return Err(TargetError::Password);
        }
        let mut target = PgTarget {
            host: match url.host_str() {
                Some(h) if !h.is_empty() => {
                    let h = decode(h);
                    if h.starts_with('/') {
                        Host::Socket(PathBuf::from(h))
                    } else {
                        Host::Tcp(h.trim_start_matches('[').trim_end_matches(']').to_owned())
                    }
                }
                _ => Host::Socket(PathBuf::from(DEFAULT_SOCKET_DIR)),
            },
            port: url.port().unwrap_or(5432),
            dbname: decode(url.path().trim_start_matches('/')),
            user: decode(url.username()),
            ssl: SslMode::Prefer,
            root_cert: None,
            connect_timeout_secs: DEFAULT_CONNECT_TIMEOUT_SECS,
            application_name: "atlas-linkd".to_owned(),
        };
        for (key, value) in url.query_pairs() {
            let value = value.into_owned();
            match key.as_ref() {
                "sslmode" => {
                    target.ssl = match value.as_str() {
                        "disable" => SslMode::Disable,
                        "prefer" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        "verify-full" => SslMode::VerifyFull,
                        _ => return Err(TargetError::SslMode(value)),
                    }
                }
                "sslrootcert" => target.root_cert = Some(PathBuf::from(value)),
                "connect_timeout" => {
                    target.connect_timeout_secs = value
                        .parse()
                        .ok()
                        .filter(|s| *s > 0)
                        .ok_or(TargetError::Value("connect_timeout", value))?
                }
                "application_name" => target.application_name = value,
                "host" if value.starts_with('/') => target.host = Host::Socket(value.into()),
                "host" => target.host = Host::Tcp(value),
                "port" => {
                    target.port = value
                        .parse()
                        .map_err(|_| TargetError::Value("port", value))?
                }
                "user" => target.user = value,
                "dbname" => target.dbname = value,
                "password" => return Err(TargetError::Password),
                other => return Err(TargetError::Parameter(other.to_owned())),
            }
        }
        if target.user.is_empty() {
            target.user = env("USER")
                .or_else(|| env("LOGNAME"))
                .unwrap_or_else(|| "atlas-linkd".to_owned());
        }
        if target.dbname.is_empty() {
            target.dbname = target.user.clone();
        }
        if target.ssl == SslMode::VerifyFull && matches!(target.host, Host::Socket(_)) {
            return Err(TargetError::Value(
                "sslmode",
                "verify-full needs a host name, not a Unix socket".into(),
            ));
        }
        Ok(target)
    }

    /// The password, from (first found) the `ledger-password` credential, `PGPASSWORD`, or the
    /// password file (`PGPASSFILE`, else `~/.pgpass`), as libpq reads it.
    fn password(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<SecretString>, std::io::Error> {
        if let Some(dir) = env("CREDENTIALS_DIRECTORY") {
            let path = Path::new(&dir).join(PASSWORD_CREDENTIAL);
            match std::fs::read_to_string(&path) {
                Ok(text) => return Ok(Some(SecretString::from(text.trim_end().to_owned()))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(p) = env("PGPASSWORD") {
            return Ok(Some(SecretString::from(p)));
        }
        let file = match env("PGPASSFILE") {
            Some(f) => PathBuf::from(f),
            None => match env("HOME") {
                Some(home) => Path::new(&home).join(".pgpass"),
                None => return Ok(None),
            },
        };
        match std::fs::read_to_string(&file) {
            Ok(text) => Ok(self.password_in(&text).map(SecretString::from)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The password a `.pgpass` text gives this target: the first line
    /// `host:port:database:user:password` whose fields match (`*` matches anything; `\:` and
    /// `\\` escape).
    fn password_in(&self, text: &str) -> Option<String> {
        let host = match &self.host {
            Host::Tcp(h) => h.clone(),
            // libpq matches a socket connection against `localhost`.
            Host::Socket(_) => "localhost".to_owned(),
        };
        let port = self.port.to_string();
        let wanted = [host.as_str(), &port, &self.dbname, &self.user];
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .find_map(|line| {
                let fields = split_pgpass(line)?;
                let matches = fields[..4]
                    .iter()
                    .zip(wanted)
                    .all(|(f, w)| f == "*" || f == w);
                matches.then(|| fields[4].clone())
            })
    }

    /// The connection's settings (the password found outside the config, the session's
    /// `search_path` set to the `atlas_linkd` schema) and its TLS, as `sslmode` says (`None`: in
    /// clear).
    fn settings(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        purpose: &str,
    ) -> Result<(tokio_postgres::Config, Option<rustls::ClientConfig>), ConnectError> {
        let password = self
            .password(env)
            .map_err(|source| ConnectError::Password {
                target: self.to_string(),
                source,
            })?;
        let mut config = tokio_postgres::Config::new();
        match &self.host {
            Host::Tcp(h) => config.host(h),
            Host::Socket(dir) => config.host_path(dir),
        };
        config
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name(format!("{} ({purpose})", self.application_name))
            .connect_timeout(Duration::from_secs(self.connect_timeout_secs))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            // Notices ("already exists, skipping") are not worth a log line each start.
            .options("-c search_path=atlas_linkd -c client_min_messages=warning");
        if let Some(p) = &password {
            config.password(p.expose_secret());
        }
        let tls = match self.ssl {
            SslMode::Disable => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                None
            }
            mode => {
                config.ssl_mode(if mode == SslMode::Prefer {
                    tokio_postgres::config::SslMode::Prefer
                } else {
                    tokio_postgres::config::SslMode::Require
                });
                Some(self.tls(mode)?)
            }
        };
        Ok((config, tls))
    }

    fn connect_err(&self) -> impl Fn(postgres::Error) -> ConnectError + '_ {
        move |source| ConnectError::Connect {
            target: self.to_string(),
            source,
        }
    }

    /// A blocking connection (the lease thread's, a reader's).
    pub(crate) fn connect(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        purpose: &str,
    ) -> Result<postgres::Client, ConnectError> {
        let (config, tls) = self.settings(env, purpose)?;
        let config = postgres::Config::from(config);
        match tls {
            None => config.connect(postgres::NoTls),
            Some(tls) => config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls)),
        }
        .map_err(self.connect_err())
    }

    /// An asynchronous connection driven by `rt` (the ledger writer's own runtime), whose
    /// statements a caller may send pipelined, many in one round trip.
    pub(crate) fn connect_on(
        &self,
        rt: &tokio::runtime::Runtime,
        env: &dyn Fn(&str) -> Option<String>,
        purpose: &str,
    ) -> Result<tokio_postgres::Client, ConnectError> {
        let (config, tls) = self.settings(env, purpose)?;
        let client = match tls {
            None => {
                let (client, connection) = rt
                    .block_on(config.connect(tokio_postgres::NoTls))
                    .map_err(self.connect_err())?;
                rt.spawn(drive(connection));
                client
            }
            Some(tls) => {
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
                let (client, connection) = rt
                    .block_on(config.connect(tls))
                    .map_err(self.connect_err())?;
                rt.spawn(drive(connection));
                client
            }
        };
        Ok(client)
    }

    fn tls(&self, mode: SslMode) -> Result<rustls::ClientConfig, ConnectError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| ConnectError::Tls {
                target: self.to_string(),
                problem: e.to_string(),
            })?;
        if mode != SslMode::VerifyFull {
            return Ok(builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
                .with_no_client_auth());
        }
        let tls_err = |problem: String| ConnectError::Tls {
            target: self.to_string(),
            problem,
        };
        let mut roots = rustls::RootCertStore::empty();
        match &self.root_cert {
            Some(path) => {
                use rustls::pki_types::{CertificateDer, pem::PemObject};
                for cert in CertificateDer::pem_file_iter(path).map_err(|e| {
                    tls_err(format!("cannot read sslrootcert {}: {e}", path.display()))
                })? {
                    let cert = cert.map_err(|e| {
                        tls_err(format!("cannot read sslrootcert {}: {e}", path.display()))
                    })?;
                    roots
                        .add(cert)
                        .map_err(|e| tls_err(format!("sslrootcert {}: {e}", path.display())))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
            }
        }
        if roots.is_empty() {
            return Err(tls_err(
                "no trusted root certificate: give `sslrootcert=` in the URL, or install the system's CA certificates".into(),
            ));
        }
        Ok(builder.with_root_certificates(roots).with_no_client_auth())
    }
}

/// Runs a connection's I/O until it ends; the client sees the end as a closed connection.
async fn drive(connection: impl std::future::Future<Output = Result<(), tokio_postgres::Error>>) {
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "a connection to the ledger's database ended");
    }
}

/// Splits one `.pgpass` line into its five fields, undoing `\:` and `\\`; `None` if it has fewer.
fn split_pgpass(line: &str) -> Option<Vec<String>> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut()?.extend(chars.next()),
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut()?.push(c),
        }
    }
    (fields.len() == 5).then_some(fields)
}

impl fmt::Display for PgTarget {
    /// The URL without secrets: `postgresql://user@host:port/dbname`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Tcp(h) if h.contains(':') => {
                write!(
                    f,
                    "postgresql://{}@[{h}]:{}/{}",
                    self.user, self.port, self.dbname
                )
            }
            Host::Tcp(h) => write!(
                f,
                "postgresql://{}@{h}:{}/{}",
                self.user, self.port, self.dbname
            ),
            Host::Socket(dir) => write!(
                f,
                "postgresql://{}@:{}/{}?host={}",
                self.user,
                self.port,
                self.dbname,
                dir.display()
            ),
        }
    }
}

/// Why a connection to a PostgreSQL ledger could not be made. Names the server and database,
/// never the password.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot read the password for the ledger {target}: {source}")]
    Password {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot connect to the ledger {target}: {source}; check that the server runs and takes connections from this host, and the user and password"
    )]
    Connect {
        target: String,
        #[source]
        source: postgres::Error,
    },
    #[error("cannot set up TLS for the ledger {target}: {problem}")]
    Tls { target: String, problem: String },
}

/// `sslmode=prefer` and `require`: encrypted, the server not authenticated (libpq's meaning).
/// Signatures are still checked, so the handshake itself is sound.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(key: &str) -> Option<String> {
        (key == "USER").then(|| "ops".to_owned())
    }

    #[test]
    fn parses_libpq_urls() {
        let t = PgTarget::parse(
            "postgres://linkd@db.example.net:6543/ledger?sslmode=verify-full",
            &env,
        )
        .expect("valid");
        assert_eq!(
            t.to_string(),
            "postgresql://linkd@db.example.net:6543/ledger"
        );
        assert_eq!(t.ssl, SslMode::VerifyFull);
        let t = PgTarget::parse("postgresql://", &env).expect("valid");
        assert_eq!(
            t.to_string(),
            "postgresql://ops@:5432/ops?host=/var/run/postgresql"
        );
        assert_eq!(t.ssl, SslMode::Prefer);
        let t = PgTarget::parse("postgresql://u@%2Ftmp%2Fpg/d", &env).expect("valid");
        assert_eq!(t.host, Host::Socket("/tmp/pg".into()));
        let t =
            PgTarget::parse("postgresql:///d?host=/run/pg&port=7000&user=x", &env).expect("valid");
        assert_eq!(t.to_string(), "postgresql://x@:7000/d?host=/run/pg");
    }

    #[test]
    fn refuses_passwords_and_unknown_modes_without_echoing_them() {
        for url in [
            "postgres://u:hunter2@h/d",
            "postgres://u@h/d?password=hunter2",
        ] {
            let e = PgTarget::parse(url, &env).expect_err("a password");
            assert_eq!(e, TargetError::Password);
            assert!(!e.to_string().contains("hunter2"));
        }
        for mode in ["allow", "verify-ca", "bogus"] {
            let e = PgTarget::parse(&format!("postgres://h/d?sslmode={mode}"), &env)
                .expect_err("refused");
            assert_eq!(e, TargetError::SslMode(mode.into()));
        }
        assert!(matches!(
            PgTarget::parse("postgres://h/d?sslcert=x", &env),
            Err(TargetError::Parameter(_))
        ));
        assert!(matches!(
            PgTarget::parse("postgres:///d?sslmode=verify-full", &env),
            Err(TargetError::Value("sslmode", _))
        ));
    }

    #[test]
    fn reads_the_password_as_libpq_does() {
        let t = PgTarget::parse("postgres://linkd@db:5432/ledger", &env).expect("valid");
        let pgpass =
            "# comment\nother:*:*:*:no\ndb:5432:ledger:linkd:s\\:ecret\\\\x\n*:*:*:*:fallback\n";
        assert_eq!(t.password_in(pgpass).as_deref(), Some("s:ecret\\x"));
        assert_eq!(t.password_in("*:*:*:*:any").as_deref(), Some("any"));
        assert_eq!(t.password_in("db:5432:ledger:someone:x"), None);

        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(PASSWORD_CREDENTIAL), "from-credential\n").expect("write");
        let creds = dir.path().to_str().expect("utf-8").to_owned();
        let with_creds = move |k: &str| match k {
            "CREDENTIALS_DIRECTORY" => Some(creds.clone()),
            "PGPASSWORD" => Some("from-env".into()),
            _ => None,
        };
        let p = t.password(&with_creds).expect("read").expect("found");
        assert_eq!(p.expose_secret(), "from-credential");
        let only_env = |k: &str| (k == "PGPASSWORD").then(|| "from-env".to_owned());
        let p = t.password(&only_env).expect("read").expect("found");
        assert_eq!(p.expose_secret(), "from-env");
    }
}
