//! Loads 100,000 links across 1,000 projects in 20 files and reports wall time and peak RSS.
//! Run with `cargo bench --bench load`. Targets: ≤ 1 s and ≤ 150 MB on a 2-core machine.

use std::fmt::Write as _;
use std::time::Instant;

const FILES: usize = 20;
const PROJECTS: usize = 1_000;
const LINKS_PER_PROJECT: usize = 100;

fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn link(out: &mut String, p: usize, l: usize) {
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

fn main() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot create a temp dir: {e}");
            std::process::exit(1);
        }
    };
    let mut bytes = 0;
    for f in 0..FILES {
        let mut text = String::with_capacity(1 << 20);
        for p in (f..PROJECTS).step_by(FILES) {
            // Two documents per file, to exercise the multi-document path.
            if p == f + FILES * (PROJECTS / FILES / 2) {
                text.push_str("---\n");
            }
            if p < f + FILES || p == f + FILES * (PROJECTS / FILES / 2) {
                text.push_str("projects:\n");
            }
            let _ = write!(
                text,
                "  - groupId: \"{p:024x}\"\n    name: project-{p}\n    defaults: {{provider: AWS, region: us-east-1}}\n    links:\n"
            );
            for l in 0..LINKS_PER_PROJECT {
                link(&mut text, p, l);
            }
        }
        bytes += text.len();
        if let Err(e) = std::fs::write(dir.path().join(format!("m{f:02}.yaml")), text) {
            eprintln!("cannot write a manifest: {e}");
            std::process::exit(1);
        }
    }
    let before = vm_hwm_kib();
    let start = Instant::now();
    let result = atlas_linkd::manifest::load(&[dir.path().to_path_buf()]);
    let elapsed = start.elapsed();
    let after = vm_hwm_kib();
    match result {
        Ok(state) => {
            assert_eq!(state.link_count(), PROJECTS * LINKS_PER_PROJECT);
            println!(
                "load: {} links, {} projects, {FILES} files, {:.1} MB of YAML",
                state.link_count(),
                state.projects.len(),
                bytes as f64 / 1e6
            );
        }
        Err(p) => {
            eprintln!(
                "unexpected problems:\n{}",
                p.0.iter()
                    .take(5)
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::process::exit(1);
        }
    }
    println!("wall time: {:.3} s", elapsed.as_secs_f64());
    match (before, after) {
        (Some(b), Some(a)) => println!(
            "peak RSS (VmHWM): {:.1} MB (before load: {:.1} MB)",
            a as f64 / 1024.0,
            b as f64 / 1024.0
        ),
        _ => println!("peak RSS: unavailable (/proc/self/status not readable)"),
    }
}
