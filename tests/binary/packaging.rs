//! What the Debian package ships besides the binary: `completions SHELL` (each shell's script; bash's
//! passes `bash -n`) and `man` (renders with groff without a warning and documents every command,
//! exit status, environment variable the code reads, and file). Needs `groff` (Debian `groff-base`);
//! fails, not skips, without it.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn atlas_linkd(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_atlas-linkd"))
        .args(args)
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "atlas-linkd {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `program args` with `input` on stdin.
fn filter(program: &str, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {program} (Debian package groff-base for groff): {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn completions_exist_for_every_shell_and_bash_parses_them() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let script = String::from_utf8(atlas_linkd(&["completions", shell]).stdout).unwrap();
        for word in [
            "atlas-linkd",
            "validate",
            "plan",
            "ledger",
            "completions",
            "--once",
        ] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let bash = dir.path().join("atlas-linkd.bash");
    std::fs::write(&bash, atlas_linkd(&["completions", "bash"]).stdout).unwrap();
    let check = Command::new("bash").arg("-n").arg(&bash).output().unwrap();
    assert!(
        check.status.success() && check.stderr.is_empty(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn completions_refuse_an_unknown_shell_with_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_atlas-linkd"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

/// The page as plain text: no hyphenation and long lines, so names are never split.
fn rendered_man() -> String {
    let roff = atlas_linkd(&["man"]).stdout;
    assert!(
        roff.starts_with(b".ie") || roff.starts_with(b".TH"),
        "not roff"
    );
    for device in ["-Tutf8", "-Tascii"] {
        let out = filter("groff", &["-man", device, "-ww", "-z"], &roff);
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "groff -man {device}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = filter(
        "groff",
        &["-man", "-Tascii", "-P-cbu", "-rHY=0", "-rLL=400n"],
        &roff,
    );
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// The text of section `name`: the lines after its heading (alone, at the margin) up to the next one.
fn section(page: &str, name: &str) -> String {
    let mut lines = page.lines().skip_while(|l| *l != name);
    assert!(lines.next().is_some(), "no {name} section in:\n{page}");
    lines
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn man_page_renders_and_documents_commands_options_and_exit_statuses() {
    let page = rendered_man();
    assert!(page.contains("--once"), "{page}");
    assert!(page.contains("--metrics-file") && page.contains("--config"));
    let commands = section(&page, "COMMANDS");
    for command in [
        "validate",
        "plan",
        "ledger",
        "completions",
        "man",
        "fake-atlas",
        "demo",
    ] {
        assert!(
            commands.contains(&format!("atlas-linkd {command}\n")),
            "no subsection for {command}:\n{commands}"
        );
    }
    // Each command's own options, not only the top level's.
    for option in ["--output", "--offline", "--listen"] {
        assert!(commands.contains(option), "{option} missing:\n{commands}");
    }
    let exit = section(&page, "EXIT STATUS");
    for status in ["0", "1", "2"] {
        assert!(
            exit.lines()
                .any(|l| l.trim_start().starts_with(&format!("{status} "))),
            "exit status {status} missing:\n{exit}"
        );
    }
    assert!(exit.contains("Nothing was attempted"));
    let files = section(&page, "FILES");
    for file in [
        "/etc/atlas-linkd/config.yaml",
        "/etc/atlas-linkd/manifests/",
        "/var/lib/atlas-linkd/ledger.db",
        "$CREDENTIALS_DIRECTORY/client-id",
        "/etc/credstore/atlas-linkd/",
    ] {
        assert!(files.contains(file), "{file} missing:\n{files}");
    }
}

/// Every environment variable `src/` reads: the literals in `env("..")`, `var("..")`,
/// `var_os("..")`, `..._ENV: &str = ".."` and the credentials' `vars: &[..]`, outside tests.
fn environment_variables_read_by_the_code() -> BTreeSet<String> {
    fn walk(dir: &Path, found: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("tests.rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap();
                for line in code.lines() {
                    let marked = [
                        "env(\"",
                        "var(\"",
                        "var_os(\"",
                        "_ENV: &str = \"",
                        "vars: &[",
                    ]
                    .iter()
                    .any(|m| line.contains(m));
                    if !marked {
                        continue;
                    }
                    for literal in line.split('"').skip(1).step_by(2) {
                        let is_name = literal.len() > 3
                            && literal.starts_with(|c: char| c.is_ascii_uppercase())
                            && literal
                                .chars()
                                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                        if is_name {
                            found.insert(literal.to_owned());
                        }
                    }
                }
            }
        }
    }
    let mut found = BTreeSet::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut found,
    );
    found
}

#[test]
fn man_page_documents_every_environment_variable_the_code_reads() {
    let vars = environment_variables_read_by_the_code();
    for expected in [
        "ATLAS_LINKD_CONFIG",
        "MONGODB_ATLAS_BASE_URL",
        "MONGODB_ATLAS_CLIENT_ID",
        "MONGODB_ATLAS_CLIENT_SECRET",
        "MONGODB_ATLAS_PUBLIC_API_KEY",
        "MONGODB_ATLAS_PRIVATE_KEY",
        "CREDENTIALS_DIRECTORY",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
    ] {
        assert!(
            vars.contains(expected),
            "the scan missed {expected}: {vars:?}"
        );
    }
    let page = rendered_man();
    let environment = section(&page, "ENVIRONMENT");
    // RUST_LOG is read by tracing-subscriber's EnvFilter, not by a literal in src/.
    for var in vars.iter().map(String::as_str).chain(["RUST_LOG"]) {
        assert!(
            environment.contains(var),
            "{var} is read by the code but not in ENVIRONMENT:\n{environment}"
        );
    }
}
