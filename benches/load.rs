//! The issue-2 scenario in one process: load and validate 100,000 links across 1,000 projects in 20
//! files, then plan them against a ledger holding all of them. Prints each step's wall and CPU time
//! and the peak RSS. Run with `cargo bench --bench load`.
//! Targets on a 2-core machine: load <= 1 s, plan <= 200 ms, peak RSS <= 150 MB.
//!
//! The ledger is written by a child process (this binary re-run with `--write-ledger DIR`), so the
//! set-up's memory is not counted: the peak RSS printed covers generating the YAML (strings of about
//! 1 MB, freed file by file), `manifest::load`, `Ledger::open`, `Ledger::records()` and `plan()`,
//! with the desired state, the records and the plan all alive at the end.
// Benchmarks may unwrap: a failure to set one up ends it, which is what should happen.
#![allow(clippy::unwrap_used)]

use atlas_linkd::ledger::Ledger;
use atlas_linkd::plan::{Listings, PlanSettings, plan};
use std::path::{Path, PathBuf};
use std::time::Instant;

mod support;
use support::{Scale, mb, ms, process_cpu, status_kib, write_adopted_ledger};

fn timed<T>(f: impl FnOnce() -> T) -> (T, std::time::Duration, std::time::Duration) {
    support::timed(process_cpu, f)
}

const SCALE: Scale = Scale {
    files: 20,
    projects: 1_000,
    links: 100,
};
const NOW: i64 = 1_700_000_000;
const SETTINGS: PlanSettings = PlanSettings {
    settle_secs: 30,
    prune: atlas_linkd::plan::PruneSettings::OFF,
};

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("{what}: {e}");
    std::process::exit(1);
}

/// The child's job: record every declared link as adopted, as a finished first pass would.
fn write_ledger(manifests: &Path, ledger: &Path) {
    let desired = atlas_linkd::manifest::load(&[manifests.to_path_buf()])
        .unwrap_or_else(|p| fail("unexpected problems", p));
    if let Err(e) = write_adopted_ledger(ledger, &desired, NOW, |i, _| format!("{i:024x}")) {
        fail("cannot write the ledger", e);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--write-ledger") {
        let dir = PathBuf::from(args.get(i + 1).map_or("", String::as_str));
        write_ledger(&dir.join("manifests"), &dir.join("ledger.db"));
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail("cannot create a temp dir", e));
    let manifests = dir.path().join("manifests");
    let ledger_path = dir.path().join("ledger.db");
    if let Err(e) = std::fs::create_dir(&manifests) {
        fail("cannot create the manifest dir", e);
    }
    let bytes = SCALE
        .write(&manifests)
        .unwrap_or_else(|e| fail("cannot write a manifest", e));
    let exe = std::env::current_exe().unwrap_or_else(|e| fail("cannot find this benchmark", e));
    let set_up = Instant::now();
    match std::process::Command::new(exe)
        .arg("--write-ledger")
        .arg(dir.path())
        .status()
    {
        Ok(s) if s.success() => {}
        Ok(s) => fail("the ledger writer failed", s),
        Err(e) => fail("cannot run the ledger writer", e),
    }
    println!(
        "set-up: {} files, {:.1} MB of YAML; ledger written by a child process in {:.1} s",
        SCALE.files,
        bytes as f64 / 1e6,
        set_up.elapsed().as_secs_f64()
    );
    let before = status_kib("VmHWM:");

    let (desired, load_wall, load_cpu) =
        timed(|| atlas_linkd::manifest::load(std::slice::from_ref(&manifests)));
    let desired = desired.unwrap_or_else(|p| fail("unexpected problems", p));
    assert_eq!(desired.link_count(), SCALE.link_count());
    let after_load = status_kib("VmRSS:");
    let peak_load = status_kib("VmHWM:");

    let ledger = Ledger::open(&ledger_path).unwrap_or_else(|e| fail("cannot open the ledger", e));
    let (records, rec_wall, rec_cpu) = timed(|| ledger.records());
    let records = records.unwrap_or_else(|e| fail("cannot read the ledger", e));
    assert_eq!(records.len(), SCALE.link_count());
    let after_records = status_kib("VmRSS:");

    let (result, plan_wall, plan_cpu) =
        timed(|| plan(&desired, &records, &Listings::new(), NOW, &SETTINGS));
    let counts = result.counts();
    assert_eq!(counts.unchanged, SCALE.link_count(), "{counts:?}");
    let after_plan = status_kib("VmRSS:");
    let peak = status_kib("VmHWM:");

    println!(
        "links: {}, projects: {}, ledger rows: {}",
        desired.link_count(),
        desired.projects.len(),
        records.len()
    );
    println!(
        "manifest::load      {:>8.1} ms wall {:>6.0} ms cpu   (target <= 1000 ms)",
        ms(load_wall),
        ms(load_cpu)
    );
    println!(
        "Ledger::records()   {:>8.1} ms wall {:>6.0} ms cpu",
        ms(rec_wall),
        ms(rec_cpu)
    );
    println!(
        "plan()              {:>8.1} ms wall {:>6.0} ms cpu   (target <= 200 ms)  {counts:?}",
        ms(plan_wall),
        ms(plan_cpu)
    );
    println!(
        "records() + plan()  {:>8.1} ms wall",
        ms(rec_wall + plan_wall)
    );
    println!(
        "RSS: before load {:.1} MB (peak), after load {:.1} MB (peak during load {:.1} MB), +records {:.1} MB, +plan {:.1} MB",
        mb(before),
        mb(after_load),
        mb(peak_load),
        mb(after_records),
        mb(after_plan)
    );
    println!(
        "peak RSS (VmHWM)    {:>8.1} MB   (target <= 150 MB)",
        mb(peak)
    );
    drop((result, records, desired));
}
