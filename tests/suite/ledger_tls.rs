//! A PostgreSQL ledger over TLS (rustls): `verify-full` connects to a server whose certificate
//! chains to `sslrootcert` and names the host, and refuses one that does not; `require` encrypts
//! without checking; the connection really is encrypted.

use crate::ledger_memory::LEASE;
use crate::support::postgres::{TestPostgres, database_of};
use crate::support::test_env;
use atlas_linkd::ledger::{LedgerError, LedgerLocation, Take};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs openssl with `args` in `dir`; panics with its stderr on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate authority named `name` in `dir`: `<name>.pem` and its key.
fn authority(dir: &Path, name: &str) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    dir.join(format!("{name}.pem"))
}

/// A server certificate for `localhost` signed by authority `ca`: (certificate, key).
fn server_certificate(dir: &Path, ca: &str) -> (PathBuf, PathBuf) {
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\n").unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    (dir.join("server.pem"), dir.join("server.key"))
}

fn location(url: &str) -> LedgerLocation {
    LedgerLocation::parse(url, |p| p.to_path_buf(), &test_env).unwrap()
}

/// Opens the ledger at `url` (database `db`) for writing, which keeps its connections open, and
/// counts those the server sees encrypted meanwhile.
async fn encrypted_connections(pg: &TestPostgres, url: &str, db: &str) -> Result<u64, LedgerError> {
    let handle = location(url).open(&test_env, LEASE, Take::Now)?;
    let count = pg.sql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = '{db}' AND a.application_name LIKE 'atlas-linkd%' AND s.ssl"
        ),
    );
    handle.close().await?;
    Ok(count.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_checks_the_chain_and_the_name_and_require_encrypts() {
    let certs = tempfile::tempdir().unwrap();
    let ca = authority(certs.path(), "ca");
    let other_ca = authority(certs.path(), "other");
    let (cert, key) = server_certificate(certs.path(), "ca");
    let pg = TestPostgres::start();
    pg.enable_tls(&cert, &key);
    let url = pg.new_database();
    let db = database_of(&url).to_owned();
    let port = pg.port();
    let with = |host: &str, mode: &str, root: &Path| {
        format!(
            "postgresql://postgres@{host}:{port}/{db}?sslmode={mode}&sslrootcert={}",
            root.display()
        )
    };

    // The chain and the name check out: both connections (the writer's and the lease's) encrypted.
    let n = encrypted_connections(&pg, &with("localhost", "verify-full", &ca), &db)
        .await
        .unwrap();
    assert_eq!(n, 2);
    // Another authority, or a name the certificate does not carry: refused.
    for url in [
        with("localhost", "verify-full", &other_ca),
        with("127.0.0.1", "verify-full", &ca),
    ] {
        let e = encrypted_connections(&pg, &url, &db).await.unwrap_err();
        assert!(matches!(e, LedgerError::Connect(_)), "{url}: {e}");
        assert!(
            e.to_string().contains(&format!("/{db}")),
            "names the database: {e}"
        );
    }
    // `require`: encrypted, the certificate not checked (libpq's meaning without a root file).
    let require = format!("postgresql://postgres@127.0.0.1:{port}/{db}?sslmode=require");
    assert_eq!(encrypted_connections(&pg, &require, &db).await.unwrap(), 2);
    // `disable`: in clear, though the server offers TLS.
    let disable = format!("postgresql://postgres@127.0.0.1:{port}/{db}?sslmode=disable");
    assert_eq!(encrypted_connections(&pg, &disable, &db).await.unwrap(), 0);
}
