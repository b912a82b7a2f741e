//! What the loader reads and what its messages quote (issue 12, cases 6, 9 and 12): symbolic links
//! only within the manifest paths (a Kubernetes ConfigMap mount included), never
//! `$CREDENTIALS_DIRECTORY`, only small regular files, at most a short prefix of any value, explicit
//! tags refused, a control character placed where it is, and the "quote it" hint for a 24-digit
//! project id. The same cases through the binary are in `tests/binary/hostile_manifests.rs`.

use atlas_linkd::config::Config;
use atlas_linkd::manifest::{self, DEFAULT_MANIFEST_FILE_MAX_BYTES, Problems, ReadLimits};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const GROUP: &str = "32b6e34b3d91647abb20e7b8";
const MARKER: &str = "MARKER-0f9e8d7c6b5a-never-print-me";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn manifest(link: &str) -> String {
    format!(
        "projects:\n  - groupId: {GROUP}\n    links:\n      - name: {link}\n        provider: AWS\n        vendor: S3\n        region: us-east-1\n        serviceEndpointId: com.amazonaws.vpce.us-east-1.vpce-svc-{link}\n"
    )
}

/// Limits with no credentials folder, whatever the test process's environment holds.
fn limits(max: u64) -> ReadLimits {
    ReadLimits::new(max).with_credentials_dir(None)
}

fn load(paths: &[PathBuf], limits: &ReadLimits) -> Result<usize, Problems> {
    manifest::load_with(paths, limits).map(|d| d.link_count())
}

fn only_problem(p: &Problems) -> &manifest::Problem {
    assert_eq!(p.len(), 1, "{p}");
    &p.0[0]
}

/// A secret outside the manifest folder, as `$CREDENTIALS_DIRECTORY/client-secret` or `/etc/shadow`.
fn secret_outside(dir: &Path) -> PathBuf {
    let outside = dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let secret = outside.join("client-secret");
    std::fs::write(&secret, format!("{MARKER}\n")).unwrap();
    secret
}

#[test]
fn a_link_to_a_file_outside_the_manifest_folder_is_refused_by_name_and_its_content_never_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_outside(dir.path());
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::write(manifests.join("good.yaml"), manifest("good")).unwrap();
    let link = manifests.join("leak.yaml");
    symlink(&secret, &link).unwrap();

    let problems = load(&[manifests], &limits(DEFAULT_MANIFEST_FILE_MAX_BYTES)).unwrap_err();
    let p = only_problem(&problems);
    assert_eq!(p.file, link);
    assert!(
        p.message.contains("outside every configured manifest path"),
        "{p}"
    );
    assert!(!problems.to_string().contains(MARKER), "{problems}");
}

#[test]
fn a_link_to_a_folder_outside_is_refused_and_a_link_back_up_the_tree_does_not_loop() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_outside(dir.path());
    std::fs::rename(&secret, secret.with_extension("yaml")).unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(manifests.join("sub")).unwrap();
    std::fs::write(manifests.join("sub/a.yaml"), manifest("a")).unwrap();
    // Inside the folder: a loop back to the top, walked once.
    symlink(&manifests, manifests.join("sub/again")).unwrap();
    assert_eq!(
        load(std::slice::from_ref(&manifests), &limits(1 << 20)).unwrap(),
        1
    );

    let out = manifests.join("elsewhere");
    symlink(dir.path().join("outside"), &out).unwrap();
    let problems = load(&[manifests], &limits(1 << 20)).unwrap_err();
    let p = only_problem(&problems);
    assert_eq!(p.file, out);
    assert!(p.message.contains("folder outside"), "{p}");
    assert!(!problems.to_string().contains(MARKER), "{problems}");
}

#[test]
fn a_kubernetes_configmap_mount_loads_through_its_data_links() {
    // The layout the kubelet writes: real files in a hidden timestamped folder, `..data` linking to
    // it, and one visible link per key through `..data`.
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("mount");
    let stamp = mount.join("..2026_12_01_10_00_00.123");
    std::fs::create_dir_all(&stamp).unwrap();
    std::fs::write(stamp.join("x.yaml"), manifest("x")).unwrap();
    std::fs::write(stamp.join("y.yml"), manifest("y")).unwrap();
    symlink("..2026_12_01_10_00_00.123", mount.join("..data")).unwrap();
    symlink("..data/x.yaml", mount.join("x.yaml")).unwrap();
    symlink("..data/y.yml", mount.join("y.yml")).unwrap();
    let files = manifest::discover(std::slice::from_ref(&mount)).unwrap();
    assert_eq!(files, vec![mount.join("x.yaml"), mount.join("y.yml")]);
    assert_eq!(
        load(std::slice::from_ref(&mount), &limits(1 << 20)).unwrap(),
        2
    );
    // The mount reached through a link of its own (a symlink-swap deploy) loads the same.
    let current = dir.path().join("current");
    symlink(&mount, &current).unwrap();
    assert_eq!(load(&[current], &limits(1 << 20)).unwrap(), 2);
}

#[test]
fn nothing_under_the_credentials_directory_is_read_even_inside_the_manifest_folder() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    let creds = manifests.join("credentials");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("client-secret.yaml"), format!("{MARKER}\n")).unwrap();
    // A link to it from inside the folder is refused the same way.
    symlink(
        creds.join("client-secret.yaml"),
        manifests.join("link.yaml"),
    )
    .unwrap();
    let limits = limits(1 << 20).with_credentials_dir(Some(creds.clone()));
    let problems = load(std::slice::from_ref(&manifests), &limits).unwrap_err();
    assert_eq!(problems.len(), 2, "{problems}");
    for p in &problems.0 {
        assert!(p.message.contains("$CREDENTIALS_DIRECTORY"), "{p}");
    }
    assert!(!problems.to_string().contains(MARKER), "{problems}");
    // The configured folder being the credentials folder changes nothing.
    let problems = manifest::load_with(std::slice::from_ref(&creds), &limits).unwrap_err();
    assert!(!problems.to_string().contains(MARKER), "{problems}");
}

#[test]
fn values_are_quoted_by_a_short_prefix_only() {
    // Not a valid link name (a space): a valid one is the link's identity and is shown whole.
    let long = format!("{} {MARKER}", "x".repeat(40));
    let yaml = format!(
        "projects:\n  - groupId: \"{long}\"\n    links:\n      - name: \"{long}\"\n        provider: \"{long}\"\n  - \"{long}\"\n\"{long}\": 1\n"
    );
    let problems = manifest::parse_str(Path::new("m.yaml"), &yaml).unwrap_err();
    let shown = problems.to_string();
    assert!(problems.len() >= 4, "{shown}");
    assert!(!shown.contains(MARKER), "{shown}");
    assert!(shown.contains(&format!("`{}…`", "x".repeat(32))), "{shown}");
    // A whole document that is one line of some other file.
    let line = format!("root:$6$salt${MARKER}:19000:0:99999:7:::");
    let problems = manifest::parse_str(Path::new("m.yaml"), &line).unwrap_err();
    assert!(!problems.to_string().contains(MARKER), "{problems}");
    // A key the parser quotes itself (a repeated one).
    let problems =
        manifest::parse_str(Path::new("m.yaml"), &format!("{long}: 1\n{long}: 2\n")).unwrap_err();
    assert!(!problems.to_string().contains(MARKER), "{problems}");
}

#[test]
fn a_sparse_file_over_the_limit_is_refused_unread_and_the_limit_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    // Sparse: no disk, and no memory unless it is read.
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(DEFAULT_MANIFEST_FILE_MAX_BYTES + 1).unwrap();
    drop(f);
    let started = Instant::now();
    let problems = manifest::load(std::slice::from_ref(&big)).unwrap_err();
    let p = only_problem(&problems);
    assert_eq!(p.file, big);
    assert!(
        p.message.contains("too large") && p.message.contains("limits.manifest_file_max_bytes"),
        "{p}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "it was read");

    let small = dir.path().join("small.yaml");
    std::fs::write(&small, manifest("a")).unwrap();
    let size = std::fs::metadata(&small).unwrap().len();
    assert_eq!(
        load(std::slice::from_ref(&small), &limits(size)).unwrap(),
        1
    );
    let problems = load(std::slice::from_ref(&small), &limits(size - 1)).unwrap_err();
    assert!(only_problem(&problems).message.contains("too large"));
}

/// `manifest::load` of `path` on a thread of its own, failing the test (rather than hanging it) if
/// the load blocks.
fn within_deadline(path: PathBuf) -> Problems {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(manifest::load(&[path])));
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the load blocked")
        .unwrap_err()
}

#[test]
fn a_fifo_a_device_and_a_socket_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.yaml");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    let socket = dir.path().join("sock.yaml");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    // `/dev/null` is only stat'ed: a device is refused before it is opened.
    let null = PathBuf::from("/dev/null");
    for (path, what) in [
        (&fifo, "a FIFO"),
        (&socket, "a socket"),
        (&null, "a character device"),
    ] {
        let problems = within_deadline(path.clone());
        let p = only_problem(&problems);
        assert_eq!(&p.file, path);
        assert!(p.message.contains(what), "{p}");
    }
    // In a folder too: a FIFO named like a manifest is refused by name, not silently skipped.
    std::fs::write(dir.path().join("good.yaml"), manifest("good")).unwrap();
    let problems = within_deadline(dir.path().to_path_buf());
    assert_eq!(problems.len(), 2, "{problems}");
    assert!(problems.0.iter().any(|p| p.file == fifo));
}

#[test]
fn a_nul_byte_is_placed_at_its_line_and_column() {
    let file = root().join("tests/data/invalid/control-character-nul.yaml");
    let p = manifest::parse_file(&file).unwrap_err();
    let p = only_problem(&p);
    assert_eq!((p.line, p.column), (Some(4), Some(14)), "{p}");
    assert!(p.message.contains("U+0000"), "{p}");
    // Beyond the first line and after multi-byte characters, columns count characters.
    let p = manifest::parse_str(Path::new("m.yaml"), "a: é\nb:\n  c: dé\u{1}\n").unwrap_err();
    assert_eq!((p.0[0].line, p.0[0].column), (Some(3), Some(8)), "{p}");
}

#[test]
fn explicit_tags_are_refused_at_their_place() {
    let file = root().join("tests/data/invalid/tag-binary.yaml");
    let problems = manifest::parse_file(&file).unwrap_err();
    let p = only_problem(&problems);
    assert_eq!((p.line, p.column), (Some(9), Some(28)), "{p}");
    for tag in ["!!str", "!!int", "!!map", "!local", "!"] {
        let yaml = format!("projects:\n  - groupId: {tag} {GROUP}\n");
        let problems = manifest::parse_str(Path::new("m.yaml"), &yaml).unwrap_err();
        let p = problems
            .0
            .iter()
            .find(|p| p.message.contains("explicit YAML tag"))
            .unwrap_or_else(|| panic!("{tag}: {problems}"));
        assert_eq!((p.line, p.column), (Some(2), Some(14)), "{tag}: {p}");
    }
    // An exclamation mark in a value or a comment is no tag.
    let yaml =
        format!("# hello!\n{}", manifest("bang")).replace("us-east-1\n", "\"us-east-1\" # !!\n");
    manifest::parse_str(Path::new("m.yaml"), &yaml).unwrap_or_else(|p| panic!("{p}"));
}

#[test]
fn a_24_digit_numeric_group_id_gets_the_quote_it_hint_like_a_shorter_number() {
    let short = manifest::parse_str(
        Path::new("m.yaml"),
        "projects:\n  - groupId: 12345678901234567890\n",
    )
    .unwrap_err();
    let long = manifest::parse_file(&root().join("tests/data/invalid/group-id-24-digits.yaml"))
        .unwrap_err();
    let (short, long) = (only_problem(&short), only_problem(&long));
    assert_eq!(long.path, "projects[0].groupId");
    assert_eq!(long.line, Some(3));
    assert!(
        short.message.contains("quote it if you mean it as text")
            && long.message.contains("quote it if you mean it as text"),
        "{short}\n{long}"
    );
    assert!(long.message.contains("123456789012345678901234"), "{long}");
}

#[test]
fn limits_manifest_file_max_bytes_defaults_to_64_mib_and_has_a_range() {
    let no_env = |_: &str| -> Option<String> { None };
    let at = Path::new("/etc/atlas-linkd/config.yaml");
    let c = Config::from_yaml("", at, &no_env).unwrap();
    assert_eq!(c.limits.manifest_file_max_bytes, 67_108_864);
    assert_eq!(DEFAULT_MANIFEST_FILE_MAX_BYTES, 67_108_864);
    let c = Config::load(&root().join("config/config.yaml"), &no_env).unwrap();
    assert_eq!(c.limits.manifest_file_max_bytes, 67_108_864);
    for (value, ok) in [
        (1_023, false),
        (1_024, true),
        (1_073_741_824, true),
        (1_073_741_825, false),
    ] {
        let yaml = format!("limits:\n  manifest_file_max_bytes: {value}\n");
        match Config::from_yaml(&yaml, at, &no_env) {
            Ok(c) => {
                assert!(ok, "{value} was accepted");
                assert_eq!(c.limits.manifest_file_max_bytes, value);
            }
            Err(e) => {
                assert!(!ok, "{value} was refused: {e}");
                let text = e.to_string();
                assert!(
                    text.contains("limits.manifest_file_max_bytes")
                        && text.contains("1024..=1073741824"),
                    "{text}"
                );
            }
        }
    }
}
