//! Atlas credentials: where they come from (systemd credential files, then environment variables)
//! and how they are held (secrets in `SecretString`, never in `Debug`).

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use crate::model::AuthKind;

/// A service account (OAuth 2.0 client credentials) or a programmatic API key (HTTP Digest).
#[derive(Clone)]
pub enum Credentials {
    ServiceAccount {
        client_id: String,
        client_secret: SecretString,
    },
    ApiKey {
        public_key: String,
        private_key: SecretString,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::ServiceAccount { client_id, .. } => f
                .debug_struct("ServiceAccount")
                .field("client_id", client_id)
                .field("client_secret", &"[redacted]")
                .finish(),
            Credentials::ApiKey { public_key, .. } => f
                .debug_struct("ApiKey")
                .field("public_key", public_key)
                .field("private_key", &"[redacted]")
                .finish(),
        }
    }
}

/// Credentials could not be found or read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "missing Atlas {what}: set {vars} (or put the file `{file}` in $CREDENTIALS_DIRECTORY with systemd's LoadCredential=)"
    )]
    Missing {
        what: &'static str,
        vars: String,
        file: &'static str,
    },
    #[error("the Atlas {what} is empty in {origin}: put the value there or remove it")]
    Empty { what: &'static str, origin: String },
    #[error("cannot read the Atlas credential file {}: {source}; check its permissions", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

struct Item {
    what: &'static str,
    file: &'static str,
    vars: &'static [&'static str],
}

const CLIENT_ID: Item = Item {
    what: "service account client id",
    file: "client-id",
    vars: &["MONGODB_ATLAS_CLIENT_ID"],
};
const CLIENT_SECRET: Item = Item {
    what: "service account client secret",
    file: "client-secret",
    vars: &["MONGODB_ATLAS_CLIENT_SECRET"],
};
const PUBLIC_KEY: Item = Item {
    what: "API public key",
    file: "public-key",
    vars: &["MONGODB_ATLAS_PUBLIC_API_KEY", "MONGODB_ATLAS_PUBLIC_KEY"],
};
const PRIVATE_KEY: Item = Item {
    what: "API private key",
    file: "private-key",
    vars: &["MONGODB_ATLAS_PRIVATE_API_KEY", "MONGODB_ATLAS_PRIVATE_KEY"],
};

fn trim_newline(s: String) -> String {
    s.trim_end_matches(['\n', '\r']).to_owned()
}

fn lookup(item: &Item, env: &dyn Fn(&str) -> Option<String>) -> Result<String, CredentialsError> {
    if let Some(dir) = env("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) {
        let path = Path::new(&dir).join(item.file);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let value = trim_newline(text);
                if value.is_empty() {
                    return Err(CredentialsError::Empty {
                        what: item.what,
                        origin: path.display().to_string(),
                    });
                }
                return Ok(value);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(CredentialsError::Unreadable { path, source }),
        }
    }
    for var in item.vars {
        if let Some(value) = env(var) {
            if value.is_empty() {
                return Err(CredentialsError::Empty {
                    what: item.what,
                    origin: format!("${var}"),
                });
            }
            return Ok(value);
        }
    }
    Err(CredentialsError::Missing {
        what: item.what,
        vars: item.vars.join(" (or ") + if item.vars.len() > 1 { ")" } else { "" },
        file: item.file,
    })
}

impl Credentials {
    /// Reads credentials for `kind`. Files `client-id`, `client-secret`, `public-key`, `private-key`
    /// in `$CREDENTIALS_DIRECTORY` win over `MONGODB_ATLAS_CLIENT_ID` / `_CLIENT_SECRET`,
    /// `MONGODB_ATLAS_PUBLIC_API_KEY` / `_PRIVATE_API_KEY` (or `MONGODB_ATLAS_PUBLIC_KEY` /
    /// `_PRIVATE_KEY`). A trailing newline in a file is dropped.
    pub(crate) fn from_env(
        kind: AuthKind,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Credentials, CredentialsError> {
        match kind {
            AuthKind::ServiceAccount => Ok(Credentials::ServiceAccount {
                client_id: lookup(&CLIENT_ID, env)?,
                client_secret: SecretString::from(lookup(&CLIENT_SECRET, env)?),
            }),
            AuthKind::ApiKey => Ok(Credentials::ApiKey {
                public_key: lookup(&PUBLIC_KEY, env)?,
                private_key: SecretString::from(lookup(&PRIVATE_KEY, env)?),
            }),
        }
    }

    /// The non-secret half: the client id or the public key.
    pub(crate) fn identity(&self) -> &str {
        match self {
            Credentials::ServiceAccount { client_id, .. } => client_id,
            Credentials::ApiKey { public_key, .. } => public_key,
        }
    }

    pub(crate) fn secret(&self) -> &str {
        match self {
            Credentials::ServiceAccount { client_secret, .. } => client_secret.expose_secret(),
            Credentials::ApiKey { private_key, .. } => private_key.expose_secret(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn service_account_from_env_vars() {
        let env = env_of(&[
            ("MONGODB_ATLAS_CLIENT_ID", "mdb_sa_id_1"),
            ("MONGODB_ATLAS_CLIENT_SECRET", "s3cr3t"),
        ]);
        let c = Credentials::from_env(AuthKind::ServiceAccount, &env).unwrap();
        assert_eq!(c.identity(), "mdb_sa_id_1");
        assert_eq!(c.secret(), "s3cr3t");
        let dbg = format!("{c:?}");
        assert!(dbg.contains("mdb_sa_id_1") && !dbg.contains("s3cr3t"));
    }

    #[test]
    fn api_key_accepts_the_short_variable_names() {
        let env = env_of(&[
            ("MONGODB_ATLAS_PUBLIC_KEY", "pub"),
            ("MONGODB_ATLAS_PRIVATE_KEY", "priv-key-value"),
        ]);
        let c = Credentials::from_env(AuthKind::ApiKey, &env).unwrap();
        assert_eq!(c.identity(), "pub");
        assert!(!format!("{c:?}").contains("priv-key-value"));
    }

    #[test]
    fn credential_files_win_and_lose_their_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("client-id"), "from-file\n").unwrap();
        std::fs::write(dir.path().join("client-secret"), "file-secret\r\n").unwrap();
        let d = dir.path().to_string_lossy().to_string();
        let env = env_of(&[
            ("CREDENTIALS_DIRECTORY", &d),
            ("MONGODB_ATLAS_CLIENT_ID", "from-env"),
            ("MONGODB_ATLAS_CLIENT_SECRET", "env-secret"),
        ]);
        let c = Credentials::from_env(AuthKind::ServiceAccount, &env).unwrap();
        assert_eq!(c.identity(), "from-file");
        assert_eq!(c.secret(), "file-secret");
    }

    #[test]
    fn missing_names_exactly_what_to_set() {
        let env = env_of(&[("MONGODB_ATLAS_CLIENT_ID", "id")]);
        let e = Credentials::from_env(AuthKind::ServiceAccount, &env).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("MONGODB_ATLAS_CLIENT_SECRET"), "{msg}");
        assert!(msg.contains("client-secret"), "{msg}");
        assert!(!msg.contains("MONGODB_ATLAS_CLIENT_ID"), "{msg}");

        let e = Credentials::from_env(AuthKind::ApiKey, &env_of(&[])).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("MONGODB_ATLAS_PUBLIC_API_KEY (or MONGODB_ATLAS_PUBLIC_KEY)"),
            "{msg}"
        );
    }

    #[test]
    fn empty_value_is_an_error() {
        let env = env_of(&[
            ("MONGODB_ATLAS_CLIENT_ID", "id"),
            ("MONGODB_ATLAS_CLIENT_SECRET", ""),
        ]);
        let e = Credentials::from_env(AuthKind::ServiceAccount, &env).unwrap_err();
        assert!(e.to_string().contains("empty"));
    }
}
