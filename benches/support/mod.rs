//! Measurement helpers shared by the benchmarks: CPU time and memory from /proc, and timing.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// A field of /proc/self/status in KiB, e.g. `VmRSS:` or `VmHWM:` (the peak).
pub fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// KiB as MB, NaN when unknown.
pub fn mb(kib: Option<u64>) -> f64 {
    kib.map_or(f64::NAN, |k| k as f64 / 1024.0)
}

/// A field of /proc/self/status in MB.
pub fn status_mb(field: &str) -> f64 {
    mb(status_kib(field))
}

/// User + system CPU time from a /proc stat file, in 10 ms clock ticks.
fn cpu_from(stat_path: &str) -> Duration {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 of stat(5).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// This process's CPU time, all threads (exited ones included).
pub fn process_cpu() -> Duration {
    cpu_from("/proc/self/stat")
}

/// This thread's CPU time.
pub fn thread_cpu() -> Duration {
    cpu_from("/proc/thread-self/stat")
}

/// Runs `f`, returning its result, its wall time and the CPU time `cpu` measured across it.
pub fn timed<T>(cpu: fn() -> Duration, f: impl FnOnce() -> T) -> (T, Duration, Duration) {
    let (wall, before) = (Instant::now(), cpu());
    let out = f();
    (out, wall.elapsed(), cpu().saturating_sub(before))
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Credentials the fake accepts; nothing from the real environment.
pub fn env(key: &str) -> Option<String> {
    match key {
        "MONGODB_ATLAS_CLIENT_ID" => Some("mdb_sa_id_0123456789abcdef01234567".into()),
        "MONGODB_ATLAS_CLIENT_SECRET" => Some("bench-secret".into()),
        _ => None,
    }
}

/// The 24-hex id of project `p` of a benchmark whose ids start at `base` (pick a base whose hex
/// digits do not read as a YAML number, e.g. no lone `e`).
pub fn project_id(base: u64, p: usize) -> String {
    format!("{:024x}", base + p as u64)
}

/// Writes `dir/manifests/links.yaml`: `projects` × `links` AWS S3 links, each with its own endpoint.
pub fn write_s3_manifest(dir: &std::path::Path, base: u64, projects: usize, links: usize) {
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
