//! `man`: the manual page in roff on stdout. clap_mangen renders the command line (every command and
//! option, from the same definitions the parser uses); this module adds what clap does not know: exit
//! statuses, signals, files and environment variables.

use super::completions::write_stdout;
use crate::config::{BASE_URL_ENV, CONFIG_ENV};
use crate::exit::{Exit, refuse_while};
use clap_mangen::Man;
use clap_mangen::roff::{Inline, Roff, bold, italic, roman};
use std::io::Write;
use std::process::ExitCode;

/// Writes the manual page for `cmd` (the whole command line) to stdout.
pub(crate) fn run(cmd: clap::Command) -> ExitCode {
    let mut page = Vec::new();
    if let Err(e) = render(cmd, &mut page) {
        return refuse_while("rendering the manual page", &e);
    }
    write_stdout(&page, "writing the manual page")
}

fn render(mut cmd: clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    // Built first so that each command's synopsis reads `atlas-linkd plan` and shows the global options.
    cmd.set_bin_name("atlas-linkd");
    cmd.build();
    let man = Man::new(cmd.clone()).manual("User Commands");
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    commands(&cmd, out)?;
    extra_sections().to_writer(out)?;
    man.render_version_section(out)
}

/// One subsection per command: its synopsis, its long help and its options, as clap_mangen renders
/// them for a page of their own, without their section headings.
fn commands(cmd: &clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    let mut heading = Roff::new();
    heading.control("SH", ["COMMANDS"]);
    heading.text([roman(
        "Without a command, atlas-linkd runs as a daemon, or with --once runs one pass (see DESCRIPTION). \
         The commands:",
    )]);
    heading.to_writer(out)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub
            .get_bin_name()
            .map_or_else(|| format!("atlas-linkd {}", sub.get_name()), str::to_owned);
        let mut intro = Roff::new();
        intro.control("SS", [name.as_str()]);
        intro.to_writer(out)?;
        let sub_man = Man::new(sub.clone());
        let mut synopsis = Vec::new();
        sub_man.render_synopsis_section(&mut synopsis)?;
        out.write_all(&without_headings(&synopsis))?;
        if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
            let mut text = Roff::new();
            for paragraph in about.to_string().split("\n\n") {
                text.control("PP", []);
                text.text([roman(paragraph.replace('\n', " "))]);
            }
            text.to_writer(out)?;
        }
        let mut options = Vec::new();
        sub_man.render_options_section(&mut options)?;
        out.write_all(&without_headings(&options))?;
    }
    Ok(())
}

/// Drops `.SH` lines, so that a command's sections nest under its `.SS` in COMMANDS.
fn without_headings(roff: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(roff);
    let mut kept = String::with_capacity(text.len());
    for line in text.lines().filter(|l| !l.starts_with(".SH")) {
        kept.push_str(line);
        kept.push('\n');
    }
    kept.into_bytes()
}

/// A `.TP` entry: a bold term, then its description.
fn entry(roff: &mut Roff, term: impl Into<Vec<Inline>>, text: &str) {
    roff.control("TP", []);
    roff.text(term);
    roff.text([roman(text)]);
}

fn extra_sections() -> Roff {
    let mut r = Roff::new();

    // README, "Command line and exit codes", and `crate::exit::Exit`.
    r.control("SH", ["EXIT STATUS"]);
    entry(
        &mut r,
        [bold(Exit::Converged.code().to_string())],
        "Converged: with --once, every declared link was seen in a complete listing taken in this pass, \
         or created in it, and is recorded in the ledger. validate: the config and every manifest are \
         valid. plan: the plan was printed. The daemon: a clean stop after SIGTERM or SIGINT. \
         completions, man: the text was written.",
    );
    entry(
        &mut r,
        [bold(Exit::NotConverged.code().to_string())],
        "A pass ran but some links did not converge: a permanent API error, retries used up, a failed \
         link still waiting out its delay, a near-match conflict, a project that could not be listed \
         (its links are unverified), or the pass was interrupted. What succeeded is recorded. plan exits \
         1 when a project cannot be listed. The daemon exits 1 on a second SIGTERM or SIGINT.",
    );
    entry(
        &mut r,
        [bold(Exit::NotAttempted.code().to_string())],
        "Nothing was attempted: bad command line, invalid config or manifest, ledger held by another \
         process, missing credentials, or (the daemon) a metrics address it cannot bind. The systemd \
         unit does not restart the daemon after this status (RestartPreventExitStatus=2).",
    );

    r.control("SH", ["SIGNALS"]);
    entry(
        &mut r,
        [bold("SIGHUP")],
        "The daemon reloads the config (an invalid one is refused and the old one kept) and runs a pass. \
         Settings that need a restart (ledger, metrics.listen, atlas.*, log.format) are named in a \
         warning and keep their running values.",
    );
    entry(
        &mut r,
        [bold("SIGTERM"), roman(", "), bold("SIGINT")],
        "Stop starting calls, let in-flight calls finish and be recorded, then exit: 0 for the daemon, \
         1 for --once. A second signal exits 1 at once.",
    );

    r.control("SH", ["ENVIRONMENT"]);
    entry(
        &mut r,
        [bold(CONFIG_ENV)],
        "The config file when --config is not given; without either, /etc/atlas-linkd/config.yaml.",
    );
    entry(
        &mut r,
        [bold(BASE_URL_ENV)],
        "Overrides atlas.base_url. Plain http:// is refused unless the host is loopback.",
    );
    entry(
        &mut r,
        [
            bold("MONGODB_ATLAS_CLIENT_ID"),
            roman(", "),
            bold("MONGODB_ATLAS_CLIENT_SECRET"),
        ],
        "The service account's credentials, read when atlas.auth is service_account (the default).",
    );
    entry(
        &mut r,
        [
            bold("MONGODB_ATLAS_PUBLIC_API_KEY"),
            roman(" (or "),
            bold("MONGODB_ATLAS_PUBLIC_KEY"),
            roman("), "),
            bold("MONGODB_ATLAS_PRIVATE_API_KEY"),
            roman(" (or "),
            bold("MONGODB_ATLAS_PRIVATE_KEY"),
            roman(")"),
        ],
        "The programmatic API key, read when atlas.auth is api_key.",
    );
    entry(
        &mut r,
        [bold("CREDENTIALS_DIRECTORY")],
        "Set by systemd for LoadCredential=. The files client-id, client-secret, public-key and \
         private-key there win over the variables above; ledger-password there is a PostgreSQL \
         ledger's password.",
    );
    entry(
        &mut r,
        [bold("PGPASSWORD"), roman(", "), bold("PGPASSFILE")],
        "A PostgreSQL ledger's password, or the password file (libpq's format) to find it in, when \
         $CREDENTIALS_DIRECTORY holds no ledger-password file. Without either, ~/.pgpass under HOME \
         is read.",
    );
    entry(
        &mut r,
        [
            bold("HOME"),
            roman(", "),
            bold("USER"),
            roman(", "),
            bold("LOGNAME"),
        ],
        "A PostgreSQL ledger: where ~/.pgpass is, and the user to connect as when the URL names none \
         (as libpq).",
    );
    entry(
        &mut r,
        [bold("RUST_LOG")],
        "The log level or filter (tracing's EnvFilter syntax). Default: info; warn while --once shows a \
         progress bar on a terminal. Logs go to stderr.",
    );
    entry(
        &mut r,
        [bold("NOTIFY_SOCKET")],
        "Set by systemd for Type=notify: the daemon sends READY=1, RELOADING=1, STOPPING=1, STATUS= and \
         WATCHDOG=1 there. Without it the daemon runs the same, without notifications.",
    );
    entry(
        &mut r,
        [bold("WATCHDOG_USEC"), roman(", "), bold("WATCHDOG_PID")],
        "Set by systemd for WatchdogSec=: the daemon sends WATCHDOG=1 every half of WATCHDOG_USEC when \
         WATCHDOG_PID is unset or its own process id.",
    );

    r.control("SH", ["FILES"]);
    entry(
        &mut r,
        [italic("/etc/atlas-linkd/config.yaml")],
        "The config file by default. Relative paths in it are relative to its folder.",
    );
    entry(
        &mut r,
        [italic("/etc/atlas-linkd/manifests/")],
        "The manifests the packaged config names (manifests: [manifests/]): *.yaml and *.yml files, \
         hidden files and directories skipped.",
    );
    entry(
        &mut r,
        [italic("/var/lib/atlas-linkd/ledger.db")],
        "The SQLite ledger of what was created (the config's ledger key). One daemon per ledger; ledger \
         and plan read it while a daemon runs. Under the unit it is systemd's StateDirectory=.",
    );
    entry(
        &mut r,
        [
            italic("$CREDENTIALS_DIRECTORY/client-id"),
            roman(", "),
            italic("client-secret"),
            roman(", "),
            italic("public-key"),
            roman(", "),
            italic("private-key"),
        ],
        "The credentials under systemd. The unit loads them with LoadCredential= from \
         /etc/credstore/atlas-linkd/ (files of mode 0600 owned by root), or with \
         LoadCredentialEncrypted= from files made by systemd-creds encrypt.",
    );
    entry(
        &mut r,
        [italic("/lib/systemd/system/atlas-linkd.service")],
        "The hardened systemd unit (Type=notify, DynamicUser=yes), as the Debian package installs it.",
    );

    r.control("SH", ["SEE ALSO"]);
    r.text([
        bold("systemctl"),
        roman("(1), "),
        bold("systemd-creds"),
        roman("(1), "),
        bold("systemd.exec"),
        roman("(5), "),
        bold("journalctl"),
        roman("(1); the README in /usr/share/doc/atlas-linkd/."),
    ]);
    r
}
