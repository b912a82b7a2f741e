//! Measurement helpers shared by the benchmarks: CPU time and memory from /proc (this process's or a
//! child's), timing, credentials, and the generated manifests and ledgers of the large scenarios.
#![allow(dead_code)]

pub(crate) mod daemon;

use atlas_linkd::ledger::{Change, Ledger};
use atlas_linkd::model::{DesiredLink, DesiredState, RemoteState};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// A field of /proc/self/status in KiB, e.g. `VmRSS:` or `VmHWM:` (the peak).
pub(crate) fn status_kib(field: &str) -> Option<u64> {
    status_kib_of("self", field)
}

/// A field of /proc/PID/status in KiB; `None` once the process has exited (a zombie has no `Vm*`).
pub(crate) fn pid_status_kib(pid: u32, field: &str) -> Option<u64> {
    status_kib_of(&pid.to_string(), field)
}

fn status_kib_of(proc_dir: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{proc_dir}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// KiB as MB, NaN when unknown.
pub(crate) fn mb(kib: Option<u64>) -> f64 {
    kib.map_or(f64::NAN, |k| k as f64 / 1024.0)
}

/// A field of /proc/self/status in MB.
pub(crate) fn status_mb(field: &str) -> f64 {
    mb(status_kib(field))
}

/// User + system CPU time from a /proc stat file, in clock ticks (`getconf CLK_TCK`, 100 on Linux:
/// 10 ms each); 0 when the file cannot be read.
fn ticks_from(stat_path: &str) -> u64 {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 of stat(5).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

fn cpu_from(stat_path: &str) -> Duration {
    tick() * u32::try_from(ticks_from(stat_path)).unwrap_or(u32::MAX)
}

/// One clock tick: the resolution of every CPU time read from /proc.
pub(crate) fn tick() -> Duration {
    static TICK: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *TICK.get_or_init(|| {
        let hz = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|&hz| hz > 0)
            .unwrap_or(100);
        Duration::from_nanos(1_000_000_000 / hz)
    })
}

/// User + system CPU ticks of process `pid`, all its threads.
pub(crate) fn pid_cpu_ticks(pid: u32) -> u64 {
    ticks_from(&format!("/proc/{pid}/stat"))
}

/// This process's CPU time, all threads (exited ones included).
pub(crate) fn process_cpu() -> Duration {
    cpu_from("/proc/self/stat")
}

/// This thread's CPU time.
pub(crate) fn thread_cpu() -> Duration {
    cpu_from("/proc/thread-self/stat")
}

/// Runs `f`, returning its result, its wall time and the CPU time `cpu` measured across it.
pub(crate) fn timed<T>(cpu: fn() -> Duration, f: impl FnOnce() -> T) -> (T, Duration, Duration) {
    let (wall, before) = (Instant::now(), cpu());
    let out = f();
    (out, wall.elapsed(), cpu().saturating_sub(before))
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Credentials the fake accepts, and `RUST_LOG` (for the phase lines) and `MALLOC_ARENA_MAX` (glibc)
/// from the real environment; nothing else of it.
pub(crate) fn env(key: &str) -> Option<String> {
    match key {
        "MONGODB_ATLAS_CLIENT_ID" => Some("mdb_sa_id_0123456789abcdef01234567".into()),
        "MONGODB_ATLAS_CLIENT_SECRET" => Some("bench-secret".into()),
        "RUST_LOG" | "MALLOC_ARENA_MAX" => std::env::var(key).ok(),
        _ => None,
    }
}

/// The 24-hex id of project `p` of a benchmark whose ids start at `base` (pick a base whose hex
/// digits do not read as a YAML number, e.g. no lone `e`).
pub(crate) fn project_id(base: u64, p: usize) -> String {
    format!("{:024x}", base + p as u64)
}

/// Writes `dir/manifests/links.yaml`: `projects` × `links` AWS S3 links, each with its own endpoint.
pub(crate) fn write_s3_manifest(dir: &std::path::Path, base: u64, projects: usize, links: usize) {
    let mut yaml = String::from("projects:\n");
    for p in 0..projects {
        yaml.push_str(&format!(
            "  - groupId: {}\n    defaults: {{provider: AWS, vendor: S3, region: us-east-1}}\n    links:\n",
            project_id(base, p)
        ));
        for l in 0..links {
            yaml.push_str(&format!(
                "      - name: link-{l}\n        serviceEndpointId: com.amazonaws.vpce.us-east-1.vpce-svc-{p:04}{l:05}\n"
            ));
        }
    }
    std::fs::create_dir_all(dir.join("manifests")).expect("mkdir");
    std::fs::write(dir.join("manifests/links.yaml"), yaml).expect("write manifest");
}

/// One link of the large scenarios, in one of five shapes (MSK, Confluent, S3, Kinesis, Lambda in
/// flow style) so that parsing sees what real manifests hold.
fn scale_link(out: &mut String, p: usize, l: usize) {
    let name = format!("link-{p:04}-{l:03}");
    match l % 5 {
        0 => write!(
            out,
            "      - name: {name}\n        vendor: MSK\n        region: null\n        arn: arn:aws:kafka:us-east-1:123456789012:cluster/c{p}/{l}\n        authenticationScheme: IAM\n"
        ),
        1 => write!(
            out,
            "      - name: {name}\n        vendor: CONFLUENT\n        serviceEndpointId: com.amazonaws.vpce.us-east-1.vpce-svc-{p:08x}{l:04x}\n        dnsDomain: use1.p{p}l{l}.confluent.cloud\n        dnsSubDomain: [use1-az1, use1-az2, use1-az4]\n"
        ),
        2 => write!(
            out,
            "      - name: {name}\n        vendor: S3\n        region: us-west-{}\n        serviceEndpointId: com.amazonaws.us-east-1.s3-{p}-{l}\n",
            l % 3 + 1
        ),
        3 => write!(
            out,
            "      - name: {name}\n        vendor: kinesis\n        serviceEndpointId: com.amazonaws.us-east-1.kinesis-{p}-{l}\n"
        ),
        _ => writeln!(
            out,
            "      - {{name: {name}, vendor: LAMBDA, serviceEndpointId: com.amazonaws.us-east-1.lambda-{p}-{l}}}"
        ),
    }
    .unwrap_or_default();
}

/// The shape of a large manifest tree: `projects` × `links` spread over `files` files.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scale {
    pub(crate) files: usize,
    pub(crate) projects: usize,
    pub(crate) links: usize,
}

impl Scale {
    pub(crate) fn link_count(self) -> usize {
        self.projects * self.links
    }

    /// Project `p` goes to file `p % files`. The 24-hex id of project `p` is `p` itself, quoted.
    pub(crate) fn project_id(p: usize) -> String {
        format!("{p:024x}")
    }

    /// The text of file `f`, with `extra` more links at the end of its last project (for edits).
    pub(crate) fn file_text(self, f: usize, extra: usize) -> String {
        let per_file = self.projects / self.files;
        let mut text = String::with_capacity(per_file * self.links * 160);
        let last = (f..self.projects).step_by(self.files).next_back();
        for p in (f..self.projects).step_by(self.files) {
            // Two documents per file, to exercise the multi-document path.
            if p == f + self.files * (per_file / 2) {
                text.push_str("---\n");
            }
            if p < f + self.files || p == f + self.files * (per_file / 2) {
                text.push_str("projects:\n");
            }
            let _ = write!(
                text,
                "  - groupId: \"{}\"\n    name: project-{p}\n    defaults: {{provider: AWS, region: us-east-1}}\n    links:\n",
                Scale::project_id(p)
            );
            for l in 0..self.links {
                scale_link(&mut text, p, l);
            }
            if Some(p) == last {
                for e in 0..extra {
                    let _ = write!(
                        text,
                        "      - name: edit-{e}\n        vendor: S3\n        serviceEndpointId: com.amazonaws.us-east-1.s3-edit-{p}-{e}\n"
                    );
                }
            }
        }
        text
    }

    /// The file name of file `f`.
    pub(crate) fn file_name(f: usize) -> String {
        format!("m{f:03}.yaml")
    }

    /// Writes every file into `dir`; returns the bytes written.
    pub(crate) fn write(self, dir: &Path) -> std::io::Result<usize> {
        let mut bytes = 0;
        for f in 0..self.files {
            let text = self.file_text(f, 0);
            bytes += text.len();
            std::fs::write(dir.join(Scale::file_name(f)), text)?;
        }
        Ok(bytes)
    }
}

/// Rows written per ledger transaction by [`write_adopted_ledger`].
const LEDGER_BATCH: usize = 10_000;

/// Records every declared link as adopted with the id `atlas_id` gives it and Atlas state DONE, as a
/// finished first pass would.
pub(crate) fn write_adopted_ledger(
    path: &Path,
    desired: &DesiredState,
    at_unix: i64,
    mut atlas_id: impl FnMut(usize, &DesiredLink) -> String,
) -> Result<(), atlas_linkd::ledger::LedgerError> {
    let mut ledger = Ledger::open(path)?;
    let mut batch = Vec::with_capacity(LEDGER_BATCH);
    for (i, link) in desired.links().enumerate() {
        batch.push(Change::Adopted {
            key: link.key.clone(),
            spec: link.spec.clone(),
            fingerprint: link.fingerprint,
            atlas_id: atlas_id(i, link),
            remote_state: Some(RemoteState::Done),
            remote_error: None,
            outputs: Default::default(),
            at_unix,
        });
        if batch.len() == LEDGER_BATCH {
            ledger.apply(&batch)?;
            batch.clear();
        }
    }
    ledger.apply(&batch)?;
    ledger.close()
}
