//! A throwaway PostgreSQL server for a test: `initdb` into a temporary folder, the `postgres` process
//! spawned and owned by the test (and killed if the test process dies), databases made to order,
//! `psql` for SQL, and an immediate stop and restart for crash tests. It needs the server programs
//! of Debian's `postgresql` package (`/usr/lib/postgresql/<version>/bin`).

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take to accept connections (a start, or the crash recovery after an
/// immediate stop) on a loaded 2-core machine before the test fails.
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// How long a server may take to end after SIGQUIT before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// Starts on a fresh port when another process took the one we picked before the server bound it.
const PORT_ATTEMPTS: u32 = 5;
/// Between two polls of a server that is starting or stopping.
const POLL: Duration = Duration::from_millis(25);
/// Lines of the server log a failure message shows.
const LOG_TAIL_LINES: usize = 40;

/// A PostgreSQL server of its own in a temporary folder, listening on 127.0.0.1 at a free port and
/// on a Unix socket in that folder; superuser `postgres`, trust authentication. Dropping it stops
/// the server at once and removes the folder.
///
/// The server process dies with the *thread* that spawned it (see `die_with_parent`): call `start`
/// and `start_again` from the test's own thread (also the body of a `#[tokio::test]`), not from
/// `spawn_blocking` (tokio ends idle blocking threads) nor for a server kept in a `static`.
pub(crate) struct TestPostgres {
    /// Removed when the value drops, after `Drop::drop` has stopped the server.
    dir: tempfile::TempDir,
    data: PathBuf,
    socket: PathBuf,
    /// The server's stdout and stderr, appended to by every start.
    log: PathBuf,
    port: u16,
    /// `None` once stopped (or found to have ended).
    child: Option<Child>,
    /// Numbers the databases `new_database` creates.
    databases: AtomicU32,
    /// Whether commits reach the disk (`start_durable`), as on a real server; tests need not.
    durable: bool,
}

/// Why a start did not reach "accepting connections".
enum StartError {
    /// Another process had the port: worth another port.
    PortTaken,
    Failed(String),
}

impl TestPostgres {
    /// Runs `initdb` (trust authentication, superuser `postgres`, UTF-8, C locale, no fsync) into a
    /// fresh temporary folder and starts the server; returns once it accepts connections.
    pub(crate) fn start() -> TestPostgres {
        TestPostgres::start_with(false)
    }

    /// `start`, with fsync and full-page writes on and a larger buffer pool, as a production
    /// server runs: for benchmarks that compare it with SQLite, which syncs every commit.
    pub(crate) fn start_durable() -> TestPostgres {
        TestPostgres::start_with(true)
    }

    fn start_with(durable: bool) -> TestPostgres {
        let dir = tempfile::Builder::new()
            .prefix("atlas-linkd-pg-")
            .tempdir()
            .expect("a temporary folder for PostgreSQL");
        if let Some(user) = server_user() {
            // tempfile makes the folder 0700 for root; the server's user must own it to create
            // its data folder in it (initdb does) and its socket and lock files.
            assert_reachable(dir.path(), user);
            chown(dir.path(), Some(user.uid), Some(user.gid))
                .expect("hand the temporary folder to user postgres");
        }
        let socket = dir.path().join("socket");
        std::fs::create_dir(&socket).expect("create the socket folder");
        if let Some(user) = server_user() {
            chown(&socket, Some(user.uid), Some(user.gid))
                .expect("hand the socket folder to user postgres");
        }
        let data = dir.path().join("data");
        initdb(&data, dir.path());
        let mut pg = TestPostgres {
            log: dir.path().join("postgres.log"),
            dir,
            data,
            socket,
            port: 0,
            child: None,
            databases: AtomicU32::new(0),
            durable,
        };
        for attempt in 1..=PORT_ATTEMPTS {
            pg.port = free_port();
            match pg.launch() {
                Ok(()) => return pg,
                Err(StartError::PortTaken) if attempt < PORT_ATTEMPTS => {}
                Err(StartError::PortTaken) => panic!(
                    "PostgreSQL could not start: {PORT_ATTEMPTS} free ports in a row were taken \
                     before it bound them\n{}",
                    pg.log_tail()
                ),
                Err(StartError::Failed(why)) => panic!("{why}\n{}", pg.log_tail()),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Makes role `user` log in with `password` over TCP (SCRAM), as a production server would;
    /// every other role keeps trust authentication.
    pub(crate) fn require_password(&self, user: &str, password: &str) {
        self.sql(
            "postgres",
            &format!("CREATE ROLE {user} LOGIN SUPERUSER PASSWORD '{password}'"),
        );
        let hba = self.data.join("pg_hba.conf");
        let rest = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
        // The first matching line wins: this one before initdb's trust lines.
        std::fs::write(
            &hba,
            format!("host all {user} 127.0.0.1/32 scram-sha-256\n{rest}"),
        )
        .expect("write pg_hba.conf");
        self.sql("postgres", "SELECT pg_reload_conf()");
    }

    /// Turns TLS on with the PEM certificate `cert` and key `key`, copied into the server's folder
    /// (owned by its user, the key 0600, as PostgreSQL demands), and returns once the server says
    /// `ssl` is on. Plain connections are still accepted.
    pub(crate) fn enable_tls(&self, cert: &Path, key: &Path) {
        let (c, k) = (
            self.dir.path().join("server.pem"),
            self.dir.path().join("server.key"),
        );
        std::fs::copy(cert, &c).expect("copy the server certificate");
        std::fs::copy(key, &k).expect("copy the server key");
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600))
            .expect("make the key owner-only");
        if let Some(user) = server_user() {
            for f in [&c, &k] {
                chown(f, Some(user.uid), Some(user.gid)).expect("hand the TLS files to postgres");
            }
        }
        // ALTER SYSTEM may not run in a transaction block: one statement per call.
        for setting in [
            format!("ALTER SYSTEM SET ssl_cert_file = '{}'", c.display()),
            format!("ALTER SYSTEM SET ssl_key_file = '{}'", k.display()),
            "ALTER SYSTEM SET ssl = on".to_owned(),
            "SELECT pg_reload_conf()".to_owned(),
        ] {
            self.sql("postgres", &setting);
        }
        let deadline = Instant::now() + READY_DEADLINE;
        while self.sql("postgres", "SHOW ssl") != "on" {
            assert!(
                Instant::now() < deadline,
                "TLS did not come on\n{}",
                self.log_tail()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Its TCP port on 127.0.0.1 (the same after `start_again`).
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Creates a new, empty database (`db_1`, `db_2`, ...: tests sharing a server do not see each
    /// other's tables) and returns its URL, as `url` gives it.
    pub(crate) fn new_database(&self) -> String {
        let name = format!("db_{}", self.databases.fetch_add(1, Ordering::Relaxed) + 1);
        self.sql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB?sslmode=disable` for database `db` of this server.
    pub(crate) fn url(&self, db: &str) -> String {
        self.url_via(self.port, db)
    }

    /// The URL of database `db` through another port on 127.0.0.1 (a `Proxy` in front of this
    /// server).
    pub(crate) fn url_via(&self, port: u16, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/{db}?sslmode=disable")
    }

    /// Runs `sql` (one statement, or several separated by `;`) with psql in database `db` and
    /// returns its output trimmed: unaligned, tuples only (`a|b` per row, rows on lines). Panics
    /// with psql's stderr and the server log's tail when it fails.
    pub(crate) fn sql(&self, db: &str, sql: &str) -> String {
        self.try_sql_via(self.port, db, sql)
            .unwrap_or_else(|stderr| {
                panic!(
                    "psql failed on database {db}: {sql}\n{stderr}\n{}",
                    self.log_tail()
                )
            })
    }

    /// `sql` through port `port` on 127.0.0.1 (this server's, or a proxy's in front of it), with
    /// psql's stderr as the error: for a test that expects it to fail.
    pub(crate) fn try_sql_via(&self, port: u16, db: &str, sql: &str) -> Result<String, String> {
        let out = self
            .psql(port, db, sql)
            .output()
            .expect("run psql (PostgreSQL client)");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(format!(
                "psql {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// The psql command line `try_sql_via` runs, not yet spawned: for a session a test keeps open
    /// (run it with `tokio::process::Command::from(..)` and `kill_on_drop`). It gives up on a
    /// connection after 10 s.
    pub(crate) fn psql(&self, port: u16, db: &str, sql: &str) -> Command {
        let mut cmd = pg_command("psql", self.dir.path());
        // -X: no ~/.psqlrc; -q -At: values only; ON_ERROR_STOP: a failed statement is a failed run.
        cmd.args([
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
        ])
        .args([
            "-U",
            "postgres",
            "-p",
            &port.to_string(),
            "-d",
            db,
            "-c",
            sql,
        ])
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGCLIENTENCODING", "UTF8")
        .stdin(Stdio::null());
        cmd
    }

    /// Stops the server at once, as a crash would (SIGQUIT: PostgreSQL's immediate shutdown, no
    /// checkpoint, crash recovery at the next start), and waits for it to end. Does nothing if it
    /// is not running.
    pub(crate) fn stop_immediately(&mut self) {
        if let Some(mut child) = self.child.take() {
            quit(&mut child);
        }
    }

    /// Starts the server again on the same data folder and port; returns once it accepts
    /// connections, crash recovery done.
    pub(crate) fn start_again(&mut self) {
        assert!(
            !self.is_running(),
            "start_again: the server is still running"
        );
        match self.launch() {
            Ok(()) => {}
            Err(StartError::PortTaken) => panic!(
                "PostgreSQL could not start again: another process has taken port {}\n{}",
                self.port,
                self.log_tail()
            ),
            Err(StartError::Failed(why)) => panic!("{why}\n{}", self.log_tail()),
        }
    }

    /// Whether the server process is running.
    pub(crate) fn is_running(&mut self) -> bool {
        let Some(child) = &mut self.child else {
            return false;
        };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(_)) | Err(_) => {
                self.child = None;
                false
            }
        }
    }

    /// The last lines of the server's log, headed with its path.
    pub(crate) fn log_tail(&self) -> String {
        let log = std::fs::read(&self.log).unwrap_or_default();
        let log = String::from_utf8_lossy(&log);
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
        format!("--- end of {} ---\n{}", self.log.display(), tail.join("\n"))
    }

    /// Spawns the server on `self.port` and waits until it accepts connections, or ends.
    fn launch(&mut self) -> Result<(), StartError> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the PostgreSQL log");
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut cmd = pg_command("postgres", self.dir.path());
        cmd.arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(&self.socket);
        let (fsync, full_page_writes, shared_buffers) = if self.durable {
            ("fsync=on", "full_page_writes=on", "shared_buffers=128MB")
        } else {
            ("fsync=off", "full_page_writes=off", "shared_buffers=16MB")
        };
        for setting in [
            "listen_addresses=127.0.0.1",
            fsync,
            "synchronous_commit=on",
            full_page_writes,
            shared_buffers,
            "max_connections=100",
            "log_min_messages=warning",
        ] {
            cmd.args(["-c", setting]);
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("share the PostgreSQL log"))
            .stderr(log);
        run_as_server_user(&mut cmd);
        let child = cmd.spawn().expect("spawn postgres");
        self.child = Some(child);

        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if !self.is_running() {
                let log = read_from(&self.log, log_start);
                return Err(if log.contains("Address already in use") {
                    StartError::PortTaken
                } else {
                    StartError::Failed(format!(
                        "PostgreSQL ended before it accepted connections on port {}",
                        self.port
                    ))
                });
            }
            if self.accepting() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.stop_immediately();
                return Err(StartError::Failed(format!(
                    "PostgreSQL did not accept connections on port {} within {READY_DEADLINE:?}",
                    self.port
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Whether the server accepts connections, asked through its Unix socket: only this server
    /// makes a socket in this folder, whereas on 127.0.0.1:PORT another process that took the port
    /// could answer while ours is still failing to bind it. The server binds its TCP port before it
    /// makes the socket and ends if it cannot, so an answer here means TCP is up too.
    fn accepting(&self) -> bool {
        pg_command("pg_isready", self.dir.path())
            .arg("-h")
            .arg(&self.socket)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-t", "5"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run pg_isready")
            .success()
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.stop_immediately();
    }
}

/// The database name in a URL from `url` or `new_database`.
pub(crate) fn database_of(url: &str) -> &str {
    let path = url.rsplit_once('/').map_or(url, |(_, path)| path);
    path.split_once('?').map_or(path, |(db, _)| db)
}

/// SIGQUIT, then a wait of `STOP_DEADLINE`, then SIGKILL; errors are ignored (this also runs in
/// `Drop`). The pid cannot have been reused: the child is ours and not yet reaped.
fn quit(child: &mut Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) only sends a signal; it touches no memory of ours.
        unsafe { libc::kill(pid, libc::SIGQUIT) };
    }
    let deadline = Instant::now() + STOP_DEADLINE;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(None) => std::thread::sleep(POLL),
            Ok(Some(_)) | Err(_) => return,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `initdb` into `data`, which must not exist yet, in a folder the server's user owns.
fn initdb(data: &Path, cwd: &Path) {
    let mut cmd = pg_command("initdb", cwd);
    cmd.arg("-D").arg(data).args([
        "-U",
        "postgres",
        "-A",
        "trust",
        "--no-sync",
        "-E",
        "UTF8",
        "--locale=C",
    ]);
    run_as_server_user(&mut cmd);
    let out = cmd.output().expect("run initdb");
    assert!(
        out.status.success(),
        "initdb into {} failed ({}):\n{}{}",
        data.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `program` from the newest installed PostgreSQL, run in `cwd` (the server's user may not be
/// able to enter the test's working folder), with no `PG*` variables from the environment (a
/// PGHOST, PGDATABASE or PGOPTIONS of the developer's would change what it connects to or how) and
/// with untranslated messages (a start's log is searched for "Address already in use").
fn pg_command(program: &str, cwd: &Path) -> Command {
    let mut cmd = Command::new(bin_dir().join(program));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    cmd.env("LC_ALL", "C").current_dir(cwd);
    cmd
}

/// The `bin` folder of the newest PostgreSQL under /usr/lib/postgresql (Debian's layout).
fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new("/usr/lib/postgresql");
        std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|entry| {
                // "15", or "9.6" for the old numbering: compared as numbers, not strings.
                let version: Vec<u32> = entry
                    .file_name()
                    .to_str()?
                    .split('.')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .ok()?;
                let bin = entry.path().join("bin");
                bin.join("postgres").is_file().then_some((version, bin))
            })
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, bin)| bin)
            .unwrap_or_else(|| {
                panic!(
                    "no PostgreSQL server: no {}/<version>/bin/postgres. Install Debian's \
                     `postgresql` package (apt-get install postgresql; scripts/test does)",
                    root.display()
                )
            })
    })
}

/// A 127.0.0.1 port nobody listens on now. Another process may take it before the server binds
/// it: `start` then tries another.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0 for a free port")
        .port()
}

/// The text `path` has gained since it was `from` bytes long.
fn read_from(path: &Path, from: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path)
        && file.seek(SeekFrom::Start(from)).is_ok()
    {
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    text
}

/// Who runs `initdb` and `postgres`.
#[derive(Clone, Copy)]
struct ServerUser {
    uid: libc::uid_t,
    gid: libc::gid_t,
}

/// `None` when we are not root: the server runs as we do. As root (CI, containers) it is user
/// `postgres`, since initdb and postgres refuse to run as root.
fn server_user() -> Option<ServerUser> {
    static USER: OnceLock<Option<ServerUser>> = OnceLock::new();
    *USER.get_or_init(|| {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        Some(user_named("postgres").unwrap_or_else(|| {
            panic!(
                "running as root, the PostgreSQL server must run as user `postgres` (initdb and \
                 postgres refuse root), but there is no such user: install Debian's `postgresql` \
                 package, which makes it"
            )
        }))
    })
}

/// The ids of user `name`, looked up with getpwnam_r: getpwnam's static buffer is not safe with
/// tests running on many threads.
fn user_named(name: &str) -> Option<ServerUser> {
    let name = CString::new(name).expect("a user name has no NUL");
    // SAFETY: `passwd` is a C struct of integers and pointers, for which all zeroes is valid.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf: Vec<libc::c_char> = vec![0; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to a live value of ours, `buf.len()` is the buffer's true length,
    // and we read `entry` only if `found` says it was filled in.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut entry,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    (rc == 0 && !found.is_null()).then_some(ServerUser {
        uid: entry.pw_uid,
        gid: entry.pw_gid,
    })
}

/// As root, the server's user must be able to walk down to its temporary folder: with TMPDIR
/// inside root's 0700 home, initdb would fail with a bare "Permission denied".
fn assert_reachable(dir: &Path, user: ServerUser) {
    for folder in dir.ancestors().skip(1) {
        let meta = std::fs::metadata(folder).expect("stat a parent of the temporary folder");
        let mode = meta.permissions().mode();
        let enters = mode & 0o001 != 0
            || (meta.uid() == user.uid && mode & 0o100 != 0)
            || (meta.gid() == user.gid && mode & 0o010 != 0);
        assert!(
            enters,
            "the PostgreSQL server runs as user `postgres`, which cannot enter {} (mode {mode:o}); \
             set TMPDIR to a folder it can reach, such as /tmp",
            folder.display()
        );
    }
}

/// Makes `cmd` (initdb, postgres) run as the server's user, and die with the thread that spawns it.
fn run_as_server_user(cmd: &mut Command) {
    if let Some(user) = server_user() {
        // std sets the gid before the uid, and when it sets a uid without explicit groups it drops
        // root's supplementary groups too (setgroups(0)): what `CommandExt::groups`, unstable,
        // would do.
        cmd.gid(user.gid).uid(user.uid);
    }
    die_with_parent(cmd);
}

/// Has the kernel SIGKILL the child when the test dies, so a crashed or killed test run leaves no
/// server behind (its backends end when they see the postmaster gone).
///
/// PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process. That is
/// fine here: each test owns its server for its duration, on its own thread, and drops it before
/// that thread ends. A server started on a thread that ends first (`spawn_blocking`, or one test's
/// thread for a server kept in a `static`) would be killed with it.
fn die_with_parent(cmd: &mut Command) {
    let parent = libc::pid_t::try_from(std::process::id()).expect("a pid fits pid_t");
    // SAFETY: the closure runs in the forked child before exec and makes only async-signal-safe
    // system calls (prctl, getppid), with no allocation or lock.
    unsafe {
        cmd.pre_exec(move || {
            // std runs this after its setgid/setuid, which matters: a change of effective uid or
            // gid clears the death signal.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // If the test died between the fork and the prctl, nobody will signal us: give up.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}
