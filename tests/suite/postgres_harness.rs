//! The test PostgreSQL server (`support::postgres`) and the cuttable proxy (`support::proxy`): what
//! the tests built on them rely on.

use crate::support::eventually;
use crate::support::postgres::{TestPostgres, database_of};
use crate::support::proxy::Proxy;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

#[test]
fn databases_are_separate() {
    let pg = TestPostgres::start();
    let first = pg.new_database();
    let second = pg.new_database();
    let (a, b) = (database_of(&first), database_of(&second));
    assert_ne!(a, b);
    assert_eq!(
        first,
        format!(
            "postgres://postgres@127.0.0.1:{}/{a}?sslmode=disable",
            pg.port()
        )
    );
    assert_eq!(pg.url(b), second);
    assert_eq!(pg.sql(a, "SHOW server_encoding"), "UTF8");

    pg.sql(a, "CREATE TABLE links (name text PRIMARY KEY)");
    pg.sql(a, "INSERT INTO links VALUES ('beta'), ('alpha')");
    assert_eq!(
        pg.sql(a, "SELECT name FROM links ORDER BY name"),
        "alpha\nbeta"
    );
    assert_eq!(pg.sql(b, "SELECT to_regclass('links') IS NULL"), "t");
    // The same name in the other database is another table.
    pg.sql(b, "CREATE TABLE links (name text PRIMARY KEY)");
    assert_eq!(pg.sql(b, "SELECT count(*) FROM links"), "0");

    let err = pg
        .try_sql_via(pg.port(), b, "SELECT * FROM missing")
        .expect_err("a query of a missing table fails");
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn committed_rows_survive_an_immediate_stop() {
    let mut pg = TestPostgres::start();
    let url = pg.new_database();
    let db = database_of(&url).to_owned();
    let port = pg.port();
    pg.sql(&db, "CREATE TABLE t (v int)");
    pg.sql(&db, "INSERT INTO t SELECT generate_series(1, 100)");

    pg.stop_immediately();
    assert!(!pg.is_running());
    pg.try_sql_via(port, &db, "SELECT 1")
        .expect_err("a stopped server answers nothing");

    pg.start_again();
    assert!(pg.is_running());
    assert_eq!(pg.port(), port);
    assert_eq!(pg.url(&db), url);
    assert_eq!(pg.sql(&db, "SELECT count(*), sum(v) FROM t"), "100|5050");
}

// psql blocks this thread; the runtime's workers run the proxy meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_proxy_closes_connections_until_restored() {
    let pg = TestPostgres::start();
    let db = database_of(&pg.new_database()).to_owned();
    let proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], pg.port()))).await;
    let port = proxy.port();
    assert_eq!(pg.try_sql_via(port, &db, "SELECT 1"), Ok("1".to_owned()));

    // A session open through the proxy, busy for longer than the test.
    let sleeper = "SELECT pg_sleep(60)";
    let mut session = tokio::process::Command::from(pg.psql(port, &db, sleeper));
    let mut session = session
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn psql");
    let active = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND query = '{sleeper}'"
    );
    eventually(
        "the session through the proxy to start its query",
        Duration::from_secs(10),
        async || (pg.sql("postgres", &active) == "1").then_some(()),
    )
    .await;

    proxy.cut();
    let ended = tokio::time::timeout(Duration::from_secs(10), session.wait())
        .await
        .expect("the session ends when the proxy is cut")
        .expect("wait for psql");
    assert!(!ended.success(), "{ended}");
    let err = pg
        .try_sql_via(port, &db, "SELECT 1")
        .expect_err("a cut proxy lets no new session through");
    assert!(err.contains("closed the connection"), "{err}");

    proxy.restore();
    assert_eq!(proxy.port(), port);
    assert_eq!(pg.try_sql_via(port, &db, "SELECT 1"), Ok("1".to_owned()));
}
