//! The fuzzing engine on stable Rust: proptest generates and shrinks mutations of a seed corpus;
//! each input runs on a worker thread under a CPU-time limit, a per-input memory limit (a counting
//! allocator), and the process's address-space limit (`RLIMIT_AS`); a failing input is shrunk and
//! saved under `tests/fuzz-regressions/<target>/`, where every later run replays it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::os::unix::fs::FileExt;
use std::os::unix::thread::JoinHandleExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use sha2::{Digest, Sha256};

/// The longest input made; a mutation that would grow past it is cut.
pub(crate) const MAX_LEN: usize = 64 * 1024;
/// CPU time one input may take on its worker thread before it counts as a hang. CPU time rather
/// than wall time, so a loaded machine does not turn a slow run into a false hang.
const CPU_LIMIT: Duration = Duration::from_secs(2);
/// Wall time one input may take, for a hang that does not spin (a blocking read, a lock).
const WALL_LIMIT: Duration = Duration::from_secs(60);
/// Heap one input may hold at its peak beyond what the target held before it: an input of at most
/// `MAX_LEN` bytes needing more is a blow-up (an alias bomb, a size taken from the input).
const INPUT_HEAP_LIMIT: usize = 256 << 20;
/// Heap a worker thread may hold at all: an allocation past it fails, which aborts the process, so
/// runaway growth inside one input stops here instead of growing until the input ends.
const WORKER_HEAP_LIMIT: isize = 1 << 30;
/// The whole process's address space (`RLIMIT_AS`): growth the allocator's count misses (memory
/// mapped outside it) fails too, instead of swapping. Room for the test threads' stacks and malloc
/// arenas (64 MiB of address space each) beside the worker's heap.
const ADDRESS_SPACE_LIMIT: u64 = 3 << 30;
/// Inputs per proptest run; a run that finds nothing is followed by another with the next seed.
const CASES_PER_RUN: u32 = 512;

/// The per-thread heap count behind `INPUT_HEAP_LIMIT`.
struct Counting;

thread_local! {
    // Const-initialised and without a destructor, so the allocator may use them: no lazy set-up.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static IN_WORKER: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn count(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().wrapping_add(delta);
        live.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now);
            }
        });
    });
}

const OOM_NOTE: &[u8] =
    b"\nfuzz: an allocation failed (over the worker's heap or the address-space limit); the input each \
target was running is in target/tmp/fuzz/<target>.input (scripts/fuzz saves it as a regression)\n";

// SAFETY: every call is forwarded to `System` unchanged; the count only reads and writes
// thread-local cells.
/// Whether `grow` more bytes would take a worker thread past `WORKER_HEAP_LIMIT`.
fn over_limit(grow: usize) -> bool {
    IN_WORKER.try_with(Cell::get).unwrap_or(false)
        && LIVE
            .try_with(|live| live.get().saturating_add(grow as isize) > WORKER_HEAP_LIMIT)
            .unwrap_or(false)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = if over_limit(layout.size()) {
            std::ptr::null_mut()
        } else {
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc(layout) }
        };
        if p.is_null() {
            // SAFETY: writing a static buffer to stderr; no allocation.
            unsafe { libc::write(2, OOM_NOTE.as_ptr().cast(), OOM_NOTE.len()) };
        } else {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = if over_limit(new_size.saturating_sub(layout.size())) {
            std::ptr::null_mut()
        } else {
            // SAFETY: the caller's contract, passed on.
            unsafe { System.realloc(ptr, layout, new_size) }
        };
        if p.is_null() {
            // SAFETY: as in `alloc`.
            unsafe { libc::write(2, OOM_NOTE.as_ptr().cast(), OOM_NOTE.len()) };
        } else {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The address-space limit and the panic hook, once per process.
fn set_up() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let limit = libc::rlimit {
            rlim_cur: ADDRESS_SPACE_LIMIT,
            rlim_max: ADDRESS_SPACE_LIMIT,
        };
        // SAFETY: a plain system call with a valid pointer.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
        assert_eq!(
            rc,
            0,
            "cannot set RLIMIT_AS: {}",
            std::io::Error::last_os_error()
        );
        // A worker's panic is the finding: it is reported once, with its input, not once per shrink.
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_WORKER.with(Cell::get) {
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
            } else {
                default(info);
            }
        }));
    });
}

/// Builds a target's runner, which takes one input.
pub(crate) type MakeRunner = fn() -> Box<dyn FnMut(&[u8])>;

/// One fuzz target: where its seeds are, the tokens its mutations insert, and how to build its
/// runner (on the worker thread).
pub(crate) struct Target {
    pub(crate) name: &'static str,
    /// Files or folders (read recursively), relative to the package root.
    pub(crate) seeds: &'static [&'static str],
    pub(crate) dictionary: &'static [&'static [u8]],
    pub(crate) make: MakeRunner,
}

/// Why an input failed.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    Panic(String),
    Hang { cpu: Duration, wall: Duration },
    Memory(usize),
    WorkerGone,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Panic(m) => write!(f, "panic: {m}"),
            Failure::Hang { cpu, wall } => write!(
                f,
                "hang: no answer after {:.1} s of CPU ({:.1} s wall; limits {} s CPU, {} s wall)",
                cpu.as_secs_f64(),
                wall.as_secs_f64(),
                CPU_LIMIT.as_secs(),
                WALL_LIMIT.as_secs()
            ),
            Failure::Memory(bytes) => write!(
                f,
                "memory: one input held {} MiB of heap at its peak (limit {} MiB)",
                bytes >> 20,
                INPUT_HEAP_LIMIT >> 20
            ),
            Failure::WorkerGone => write!(f, "the worker thread is gone"),
        }
    }
}

enum Outcome {
    Done { peak: usize },
    Panicked(String),
}

/// The thread that runs a target's inputs, one at a time, and its supervision.
struct Worker {
    tx: SyncSender<Vec<u8>>,
    rx: Receiver<Outcome>,
    clock: libc::clockid_t,
    // Keeps the thread's CPU clock valid; joined by `finish`, never after a failure (a hung worker is
    // left behind).
    thread: std::thread::JoinHandle<()>,
}

fn pending_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("fuzz")
        .join(format!("{name}.input"))
}

impl Worker {
    fn start(target: &Target) -> Worker {
        let (tx, inputs) = sync_channel::<Vec<u8>>(1);
        let (done, rx) = sync_channel::<Outcome>(1);
        let make = target.make;
        let pending = pending_path(target.name);
        std::fs::create_dir_all(pending.parent().expect("the path has a folder"))
            .expect("target/tmp is writable");
        let thread = std::thread::Builder::new()
            .name(format!("fuzz-{}", target.name))
            .spawn(move || {
                IN_WORKER.with(|w| w.set(true));
                let mut run = make();
                // The input in hand, on disk: if the process dies (the address-space limit aborts
                // it), scripts/fuzz finds the input here.
                let file = std::fs::File::create(&pending).expect("target/tmp is writable");
                for input in inputs {
                    file.set_len(0).expect("the pending file is writable");
                    file.write_all_at(&input, 0)
                        .expect("the pending file is writable");
                    let base = LIVE.with(Cell::get);
                    PEAK.with(|p| p.set(base));
                    let result = catch_unwind(AssertUnwindSafe(|| run(&input)));
                    let peak = PEAK.with(Cell::get).saturating_sub(base).max(0) as usize;
                    let outcome = match result {
                        Ok(()) => Outcome::Done { peak },
                        Err(payload) => Outcome::Panicked(
                            LAST_PANIC
                                .with(|p| p.borrow_mut().take())
                                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                                .or_else(|| payload.downcast_ref::<String>().cloned())
                                .unwrap_or_else(|| "(no message)".to_owned()),
                        ),
                    };
                    if done.send(outcome).is_err() {
                        break;
                    }
                }
                let _ = std::fs::remove_file(&pending);
            })
            .expect("a thread can be started");
        let mut clock: libc::clockid_t = 0;
        // SAFETY: the thread is alive (it only ends when `tx` is dropped); valid out-pointer.
        let rc = unsafe { libc::pthread_getcpuclockid(thread.as_pthread_t(), &mut clock) };
        assert_eq!(rc, 0, "no CPU clock for the worker thread");
        Worker {
            tx,
            rx,
            clock,
            thread,
        }
    }

    /// Ends the worker and waits for it, so the target's files are gone before the process is.
    fn finish(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }

    fn cpu(&self) -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid clock id of a live thread and a valid out-pointer.
        unsafe { libc::clock_gettime(self.clock, &mut ts) };
        Duration::new(
            u64::try_from(ts.tv_sec).unwrap_or(0),
            u32::try_from(ts.tv_nsec).unwrap_or(0),
        )
    }

    fn run(&self, input: &[u8]) -> Result<(), Failure> {
        let cpu0 = self.cpu();
        let start = Instant::now();
        self.tx
            .send(input.to_vec())
            .map_err(|_| Failure::WorkerGone)?;
        loop {
            match self.rx.recv_timeout(Duration::from_millis(20)) {
                Ok(Outcome::Done { peak }) if peak > INPUT_HEAP_LIMIT => {
                    return Err(Failure::Memory(peak));
                }
                Ok(Outcome::Done { .. }) => return Ok(()),
                Ok(Outcome::Panicked(m)) => return Err(Failure::Panic(m)),
                Err(RecvTimeoutError::Timeout) => {
                    let cpu = self.cpu().saturating_sub(cpu0);
                    let wall = start.elapsed();
                    if cpu > CPU_LIMIT || wall > WALL_LIMIT {
                        return Err(Failure::Hang { cpu, wall });
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return Err(Failure::WorkerGone),
            }
        }
    }
}

/// Every file under `paths` (relative to the package root), sorted; hidden files and notes (`.md`)
/// are skipped.
fn files_under(paths: &[&str]) -> Vec<PathBuf> {
    fn walk(path: &Path, out: &mut Vec<PathBuf>) {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.') || n.ends_with(".md"));
        if hidden {
            return;
        }
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", path.display()))
                .map(|e| e.expect("a readable folder entry").path())
                .collect();
            entries.sort();
            for e in entries {
                walk(&e, out);
            }
        } else if path.is_file() {
            out.push(path.to_path_buf());
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for p in paths {
        walk(&root.join(p), &mut out);
    }
    out
}

/// Where a target's failing inputs are kept and replayed from.
pub(crate) fn regressions_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-regressions")
        .join(name)
}

/// Saves a failing input as a regression, named by its content, and returns its path.
fn save(name: &str, input: &[u8]) -> PathBuf {
    let dir = regressions_dir(name);
    std::fs::create_dir_all(&dir).expect("tests/fuzz-regressions is writable");
    let digest = hex::encode(Sha256::digest(input));
    let path = dir.join(format!("crash-{}", &digest[..16]));
    std::fs::write(&path, input).expect("tests/fuzz-regressions is writable");
    path
}

/// One mutation of the input, with positions taken modulo the input's length (so any value is
/// valid, and shrinking toward 0 moves toward the start).
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    SetByte {
        at: usize,
        byte: u8,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Duplicate {
        from: usize,
        len: usize,
        to: usize,
    },
    Token {
        at: usize,
        token: usize,
        replace: usize,
    },
    Splice {
        at: usize,
        seed: usize,
        from: usize,
        len: usize,
    },
    /// Replaces the `nth` run of ASCII digits with one of `NUMBERS` (libFuzzer's "change ASCII
    /// integer"): numbers at the edges of the integer types are where arithmetic breaks.
    Number {
        nth: usize,
        pick: usize,
    },
}

/// Numbers at the edges of the types a decoder reads them into, and of clocks and durations.
const NUMBERS: &[&[u8]] = &[
    b"0",
    b"1",
    b"-1",
    b"2",
    b"255",
    b"256",
    b"65535",
    b"65536",
    b"2147483647",
    b"2147483648",
    b"4294967295",
    b"4294967296",
    b"9007199254740993",
    b"9223372036854775807",
    b"9223372036854775808",
    b"18446744073709551615",
    b"18446744073709551616",
    b"1e308",
    b"1e309",
    b"-9223372036854775808",
    b"00000000000000000000001",
    b"0.5",
    b"1E2",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        2 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::SetByte { at, byte }),
        2 => (any::<usize>(), vec(any::<u8>(), 1..16)).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        2 => (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => (any::<usize>(), 1usize..4096, any::<usize>())
            .prop_map(|(from, len, to)| Mutation::Duplicate { from, len, to }),
        5 => (any::<usize>(), any::<usize>(), 0usize..8)
            .prop_map(|(at, token, replace)| Mutation::Token { at, token, replace }),
        1 => (any::<usize>(), any::<usize>(), any::<usize>(), 1usize..512)
            .prop_map(|(at, seed, from, len)| Mutation::Splice { at, seed, from, len }),
        3 => (any::<usize>(), any::<usize>()).prop_map(|(nth, pick)| Mutation::Number { nth, pick }),
    ]
}

fn apply(input: &mut Vec<u8>, m: &Mutation, seeds: &[Vec<u8>], dictionary: &[&[u8]]) {
    let pos = |at: usize, len: usize| at % (len + 1);
    match m {
        Mutation::FlipBit { at, bit } => {
            if !input.is_empty() {
                let i = at % input.len();
                input[i] ^= 1 << bit;
            }
        }
        Mutation::SetByte { at, byte } => {
            if !input.is_empty() {
                let i = at % input.len();
                input[i] = *byte;
            }
        }
        Mutation::Insert { at, bytes } => {
            let i = pos(*at, input.len());
            input.splice(i..i, bytes.iter().copied());
        }
        Mutation::Delete { at, len } => {
            let i = pos(*at, input.len());
            let end = (i + len).min(input.len());
            input.drain(i..end);
        }
        Mutation::Duplicate { from, len, to } => {
            let i = pos(*from, input.len());
            let end = (i + len).min(input.len());
            let chunk = input[i..end].to_vec();
            let j = pos(*to, input.len());
            input.splice(j..j, chunk);
        }
        Mutation::Token { at, token, replace } => {
            if dictionary.is_empty() {
                return;
            }
            let t = dictionary[token % dictionary.len()];
            let i = pos(*at, input.len());
            let end = (i + replace).min(input.len());
            input.splice(i..end, t.iter().copied());
        }
        Mutation::Splice {
            at,
            seed,
            from,
            len,
        } => {
            if seeds.is_empty() {
                return;
            }
            let other = &seeds[seed % seeds.len()];
            let i = pos(*from, other.len());
            let end = (i + len).min(other.len());
            let j = pos(*at, input.len());
            input.splice(j..j, other[i..end].iter().copied());
        }
        Mutation::Number { nth, pick } => {
            let mut runs = Vec::new();
            let mut i = 0;
            while i < input.len() {
                if input[i].is_ascii_digit() {
                    let start = i;
                    while i < input.len() && input[i].is_ascii_digit() {
                        i += 1;
                    }
                    runs.push(start..i);
                } else {
                    i += 1;
                }
            }
            if !runs.is_empty() {
                let run = runs[nth % runs.len()].clone();
                input.splice(run, NUMBERS[pick % NUMBERS.len()].iter().copied());
            }
        }
    }
    input.truncate(MAX_LEN);
}

/// Inputs: a seed (or nothing) with up to 12 mutations.
fn inputs(seeds: Vec<Vec<u8>>, dictionary: &'static [&'static [u8]]) -> BoxedStrategy<Vec<u8>> {
    let seeds = std::sync::Arc::new(seeds);
    (any::<usize>(), vec(mutation(), 0..12))
        .prop_map(move |(pick, mutations)| {
            // Index 0 is the empty input, so shrinking the pick leads to the smallest start.
            let mut input = match pick % (seeds.len() + 1) {
                0 => Vec::new(),
                i => seeds[i - 1].clone(),
            };
            for m in &mutations {
                apply(&mut input, m, &seeds, dictionary);
            }
            input
        })
        .boxed()
}

fn budget() -> Duration {
    let secs = std::env::var("ATLAS_LINKD_FUZZ_SECS")
        .ok()
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("ATLAS_LINKD_FUZZ_SECS={v:?} is not whole seconds"))
        })
        .unwrap_or(3);
    Duration::from_secs(secs)
}

fn run_seed() -> u64 {
    match std::env::var("ATLAS_LINKD_FUZZ_SEED") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("ATLAS_LINKD_FUZZ_SEED={v:?} is not a u64")),
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            nanos ^ u64::from(std::process::id()).rotate_left(32)
        }
    }
}

/// Replays the target's seeds and its saved regressions, then fuzzes it for `ATLAS_LINKD_FUZZ_SECS`
/// (default 3). Panics naming the saved input on the first failure.
pub(crate) fn fuzz(target: &Target) {
    set_up();
    let name = target.name;
    let worker = Worker::start(target);

    let seed_files = files_under(target.seeds);
    assert!(!seed_files.is_empty(), "{name}: no seed found");
    let mut seeds = Vec::new();
    for path in &seed_files {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Err(f) = worker.run(&bytes) {
            panic!(
                "fuzz target `{name}`: the seed {} fails: {f}",
                path.display()
            );
        }
        seeds.push(bytes);
    }
    let regression_dir = regressions_dir(name);
    let regression_dir = regression_dir
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .expect("under the package")
        .to_str()
        .expect("a UTF-8 path")
        .to_owned();
    for path in files_under(&[regression_dir.as_str()]) {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Err(f) = worker.run(&bytes) {
            panic!(
                "fuzz target `{name}`: the saved regression {} fails: {f}",
                path.display()
            );
        }
    }

    let budget = budget();
    if budget.is_zero() {
        worker.finish();
        return;
    }
    let run_seed = run_seed();
    eprintln!(
        "fuzz `{name}`: {} seeds, {} s, seed {run_seed} (ATLAS_LINKD_FUZZ_SEED={run_seed} repeats it)",
        seeds.len(),
        budget.as_secs()
    );
    let strategy = inputs(seeds, target.dictionary);
    let deadline = Instant::now() + budget;
    let ran = Cell::new(0u64);
    // Set at the first failure: shrinking then runs past the deadline.
    let failed = Cell::new(false);
    // A hung worker cannot run anything else: the input is kept and every later case passes, so
    // proptest's shrinking ends at once with that input.
    let hung: RefCell<Option<(Vec<u8>, Failure)>> = RefCell::new(None);
    let mut run = 0u64;
    while Instant::now() < deadline {
        let config = Config {
            cases: CASES_PER_RUN,
            failure_persistence: None,
            max_shrink_iters: 4096,
            max_shrink_time: 60_000,
            rng_seed: RngSeed::Fixed(run_seed.wrapping_add(run)),
            ..Config::default()
        };
        run += 1;
        let mut runner = TestRunner::new(config);
        let result = runner.run(&strategy, |input| {
            if hung.borrow().is_some() || (!failed.get() && Instant::now() >= deadline) {
                return Ok(());
            }
            ran.set(ran.get() + 1);
            match worker.run(&input) {
                Ok(()) => Ok(()),
                Err(f) => {
                    failed.set(true);
                    if matches!(f, Failure::Hang { .. } | Failure::WorkerGone) {
                        *hung.borrow_mut() = Some((input, f.clone()));
                    }
                    Err(TestCaseError::fail(f.to_string()))
                }
            }
        });
        let (input, reason) = match (result, hung.borrow_mut().take()) {
            (_, Some((input, f))) => (input, f.to_string()),
            (Ok(()), None) => continue,
            (Err(TestError::Fail(reason, input)), None) => (input, reason.to_string()),
            (Err(TestError::Abort(reason)), None) => {
                panic!("fuzz `{name}`: proptest gave up: {reason}")
            }
        };
        let path = save(name, &input);
        // The bytes too, escaped: a CI log outlives the clone the file was saved in.
        let shown = &input[..input.len().min(2048)];
        panic!(
            "fuzz target `{name}` failed after {} inputs (seed {run_seed}): {reason}\n\
             the input ({} bytes) is saved as {}; `cargo test --test fuzz -- {name}` replays it \
             until it is fixed: commit it with the fix. Its bytes{}:\n{}",
            ran.get(),
            input.len(),
            path.display(),
            if shown.len() < input.len() {
                " (the first 2048)"
            } else {
                ""
            },
            shown.escape_ascii()
        );
    }
    eprintln!(
        "fuzz `{name}`: {} inputs in {} s, no failure",
        ran.get(),
        budget.as_secs()
    );
    worker.finish();
}
