//! `--once --wait DURATION`: after a converged pass, list the projects whose declared links are not
//! `DONE` yet, one listing per project per poll, until every link is `DONE` (exit 0), one can no
//! longer become `DONE` (exit 1, with Atlas's `errorMessage`), the deadline passes (exit 1, naming
//! each link not ready and its state) or a signal stops it (exit 1). The decision each poll makes
//! is a pure function of the declared links and the ledger's rows (`WaitStatus`).

use crate::exit::{Exit, refuse};
use crate::logging::TERMINAL_BAR;
use crate::model::{DesiredState, GroupId, LinkKey, Record, RemoteState};
use crate::progress::WaitProgress;
use crate::reconcile::{Reconciler, Unlisted};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The shortest wait `--wait` takes: less is shorter than one listing of a large project.
const MIN_WAIT: Duration = Duration::from_secs(1);
/// The longest: a week. Atlas's slowest links take about an hour; a longer wait is a mistake, and
/// the bound keeps the deadline's arithmetic far from overflow.
const MAX_WAIT: Duration = Duration::from_secs(7 * 24 * 3_600);

/// Parses `--wait`'s humane duration (`45m`, `90s`, `1h30m`, `1h 30m`): a unit is required, and
/// the result lies within one second and one week. Clap turns an error into exit status 2.
pub(crate) fn parse_wait(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("`{text}` is not a duration ({e}); write it with units, such as 45m, 90s or 1h30m")
    })?;
    if d < MIN_WAIT || d > MAX_WAIT {
        return Err(format!(
            "`{text}` is out of range: wait at least 1s and at most 7 days (168h)"
        ));
    }
    Ok(d)
}

/// What `--once --wait` needs besides the pass.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WaitOptions {
    /// How long to wait at most, counted from the end of the pass.
    pub(crate) limit: Duration,
    /// `reconcile.ready_poll_secs`.
    pub(crate) poll: Duration,
}

/// Where one declared link stands, from its ledger row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LinkWait {
    /// `DONE`.
    Ready,
    /// May still become `DONE`: `IDLE`, `WORKING`, a state this version does not know, or not
    /// known at all yet. `state` is what to show.
    Pending { state: String },
    /// Will not become `DONE`: `FAILED`, being deleted, or gone from two complete listings in a
    /// row. `message` is Atlas's `errorMessage` when it gave one.
    Failed {
        state: String,
        message: Option<String>,
    },
}

/// A link's standing: its row (if any), and whether a complete listing taken during the wait no
/// longer showed its connection.
pub(crate) fn link_wait(record: Option<&Record>, gone: bool) -> LinkWait {
    let Some(record) = record.filter(|r| r.connection().is_some()) else {
        return LinkWait::Pending {
            state: "not created".to_owned(),
        };
    };
    let state = record.remote_state.as_ref();
    // A connection created in the pass has not been listed yet: its state is not known.
    let shown = state.map_or("not listed yet", |s| s.as_str()).to_owned();
    if gone {
        return LinkWait::Failed {
            state: "GONE".to_owned(),
            message: Some(format!(
                "Atlas no longer lists connection {} (last seen {shown}): deleted outside atlas-linkd?",
                record.atlas_id.as_deref().unwrap_or("")
            )),
        };
    }
    match state {
        Some(RemoteState::Done) => LinkWait::Ready,
        Some(
            RemoteState::Failed
            | RemoteState::DeleteRequested
            | RemoteState::Deleting
            | RemoteState::Deleted,
        ) => LinkWait::Failed {
            state: shown,
            message: record.remote_error.clone(),
        },
        Some(RemoteState::Idle | RemoteState::Working | RemoteState::Other(_)) | None => {
            LinkWait::Pending { state: shown }
        }
    }
}

/// What the wait does after a look at the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Every declared link is `DONE`: exit 0.
    Done,
    /// A link will never be `DONE`: exit 1 now, not at the deadline.
    Failed,
    /// Poll again (or, past the deadline, exit 1).
    Continue,
}

/// Every declared link's standing at one look, in the manifests' order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WaitStatus {
    pub(crate) links: Vec<(LinkKey, LinkWait)>,
}

impl WaitStatus {
    /// The standing of each declared link, from the ledger's rows and the links whose connection a
    /// listing of this wait no longer showed.
    pub(crate) fn new(
        desired: &DesiredState,
        records: &[Record],
        gone: &HashSet<LinkKey>,
    ) -> WaitStatus {
        let by_key: HashMap<&LinkKey, &Record> = records.iter().map(|r| (&r.key, r)).collect();
        let links = desired
            .links()
            .map(|link| {
                let wait = link_wait(by_key.get(&link.key).copied(), gone.contains(&link.key));
                (link.key.clone(), wait)
            })
            .collect();
        WaitStatus { links }
    }

    pub(crate) fn decision(&self) -> Decision {
        if self
            .links
            .iter()
            .any(|(_, w)| matches!(w, LinkWait::Failed { .. }))
        {
            Decision::Failed
        } else if self.links.iter().all(|(_, w)| *w == LinkWait::Ready) {
            Decision::Done
        } else {
            Decision::Continue
        }
    }

    pub(crate) fn ready(&self) -> usize {
        self.links
            .iter()
            .filter(|(_, w)| *w == LinkWait::Ready)
            .count()
    }

    /// The projects a poll lists: those with a link still pending. A project whose links are all
    /// `DONE` costs nothing more.
    pub(crate) fn projects_to_list(&self) -> BTreeSet<GroupId> {
        self.links
            .iter()
            .filter(|(_, w)| matches!(w, LinkWait::Pending { .. }))
            .map(|(k, _)| k.group_id.clone())
            .collect()
    }

    /// The links not `DONE`, by state: `IDLE: 2, WORKING: 1`.
    pub(crate) fn others(&self) -> String {
        let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, w) in &self.links {
            match w {
                LinkWait::Ready => {}
                LinkWait::Pending { state } | LinkWait::Failed { state, .. } => {
                    *by_state.entry(state.as_str()).or_default() += 1;
                }
            }
        }
        by_state
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The verdict's lines: each link that ended the wait (with Atlas's message) or, with
    /// `pending`, each link not ready, with its state.
    fn lines(&self, pending: bool) -> Vec<String> {
        self.links
            .iter()
            .filter_map(|(key, w)| match w {
                LinkWait::Failed { state, message } => Some(match message {
                    Some(m) => format!("  {key}: {state}: {}", one_line(m)),
                    None => format!("  {key}: {state} (Atlas gave no errorMessage)"),
                }),
                LinkWait::Pending { state } if pending => Some(format!("  {key}: {state}")),
                _ => None,
            })
            .collect()
    }
}

/// Atlas's message on one line of the verdict, whatever it holds.
fn one_line(message: &str) -> String {
    message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Waits as `--once --wait` does, after a converged pass whose rows are in `reconciler`'s ledger.
/// Prints the verdict on stdout and returns the exit status.
pub(crate) async fn wait_until_ready(
    reconciler: &Reconciler,
    desired: &DesiredState,
    options: WaitOptions,
    cancel: &CancellationToken,
    show_bar: bool,
) -> Exit {
    let started = Instant::now();
    // `parse_wait` bounds the limit to a week: the fallback only guards the arithmetic.
    let deadline = started.checked_add(options.limit).unwrap_or(started);
    let progress = WaitProgress::new(show_bar);
    let exit = poll_until_ready(reconciler, desired, options, cancel, &progress, deadline).await;
    progress.finish();
    exit
}

async fn poll_until_ready(
    reconciler: &Reconciler,
    desired: &DesiredState,
    options: WaitOptions,
    cancel: &CancellationToken,
    progress: &WaitProgress,
    deadline: Instant,
) -> Exit {
    let started = Instant::now();
    let total = desired.link_count();
    let mut gone: HashSet<LinkKey> = HashSet::new();
    let mut unlisted = Unlisted::default();
    loop {
        // The first look is at what the pass itself recorded: it listed every managed project.
        let records = match reconciler.ledger().snapshot().await {
            Ok(r) => r,
            Err(e) => return ledger_failed(&e),
        };
        reconciler.set_remote_links_gauge(desired, &records);
        let status = WaitStatus::new(desired, &records, &gone);
        progress.poll(status.ready() as u64, total as u64, &status.others());
        let waited = humantime::format_duration(Duration::from_secs(started.elapsed().as_secs()));
        match status.decision() {
            Decision::Done => {
                progress.finish();
                outln!("wait: all {total} declared links are DONE (waited {waited})");
                return Exit::Converged;
            }
            Decision::Failed => {
                progress.finish();
                outln!("wait: stopped after {waited}: a link will not become DONE:");
                for line in status.lines(false) {
                    outln!("{line}");
                }
                return Exit::NotConverged;
            }
            Decision::Continue => {}
        }
        let now = Instant::now();
        if now >= deadline {
            progress.finish();
            let ready = status.ready();
            outln!(
                "wait: the deadline of {} passed: {} of {total} declared links are not DONE:",
                humantime::format_duration(options.limit),
                total - ready
            );
            for line in status.lines(true) {
                outln!("{line}");
            }
            return Exit::NotConverged;
        }
        let nap = options.poll.min(deadline.saturating_duration_since(now));
        let groups = status.projects_to_list();
        tokio::select! {
            _ = tokio::time::sleep(nap) => {}
            _ = cancel.cancelled() => return interrupted(&status),
        }
        let refreshed = match reconciler.refresh_projects(groups, cancel).await {
            Ok(r) => r,
            Err(e) => return ledger_failed(&e),
        };
        if cancel.is_cancelled() {
            // What this poll recorded is the latest word on each link: report that.
            let records = match reconciler.ledger().snapshot().await {
                Ok(r) => r,
                Err(e) => return ledger_failed(&e),
            };
            return interrupted(&WaitStatus::new(desired, &records, &gone));
        }
        for (group, e) in &refreshed.failures {
            // The rows keep their last state; the next poll tries again, up to the deadline.
            tracing::warn!(project = %group, error = %e, "could not list the project while waiting; trying again at the next poll");
        }
        unlisted.observe(&records, &refreshed.listed);
        gone = unlisted.gone();
    }
}

fn interrupted(status: &WaitStatus) -> Exit {
    TERMINAL_BAR.write_around(|| {
        outln!(
            "wait: interrupted: {} of {} declared links are not DONE:",
            status.links.len() - status.ready(),
            status.links.len()
        );
        for line in status.lines(true) {
            outln!("{line}");
        }
    });
    Exit::NotConverged
}

fn ledger_failed(e: &crate::ledger::LedgerError) -> Exit {
    // The pass ran: exit 1, whatever `refuse` returns.
    let _ = refuse(e);
    Exit::NotConverged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LinkSpec, Phase, Provider, Vendor};

    const G: &str = "32b6e34b3d91647abb20e7b8";

    fn record(name: &str, state: Option<RemoteState>, error: Option<&str>) -> Record {
        let group = GroupId::parse(G).unwrap();
        Record {
            key: LinkKey::new(group.clone(), name),
            spec_json: "{}".into(),
            fingerprint: LinkSpec::new(Provider::Aws, Vendor::Kinesis).fingerprint(),
            atlas_id: Some(format!("65a1b2c3d4e5f60718293a{:02x}", name.len())),
            phase: Phase::Created,
            remote_state: state,
            remote_error: error.map(str::to_owned),
            ..Record::stand_in(group)
        }
    }

    fn decide(states: &[Option<RemoteState>]) -> Decision {
        let links: Vec<_> = states
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let r = record(&format!("l{i}"), s.clone(), None);
                (r.key.clone(), link_wait(Some(&r), false))
            })
            .collect();
        WaitStatus { links }.decision()
    }

    #[test]
    fn durations_are_humane_with_units_and_bounded() {
        assert_eq!(parse_wait("45m"), Ok(Duration::from_secs(45 * 60)));
        assert_eq!(parse_wait("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_wait("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_wait("1h 30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_wait("7d"), Ok(MAX_WAIT));
        for nonsense in [
            "",
            "45",
            "-5m",
            "soon",
            "5 parsecs",
            "0s",
            "500ms",
            "8d",
            "1e9h",
            "m",
        ] {
            let e = parse_wait(nonsense).unwrap_err();
            assert!(e.contains(&format!("`{nonsense}`")), "{nonsense}: {e}");
        }
        assert!(parse_wait("99999999999999999999h").is_err());
    }

    #[test]
    fn the_wait_is_done_only_when_every_link_is_done() {
        use RemoteState::*;
        assert_eq!(decide(&[Some(Done), Some(Done)]), Decision::Done);
        assert_eq!(decide(&[]), Decision::Done);
        assert_eq!(decide(&[Some(Done), Some(Working)]), Decision::Continue);
        assert_eq!(decide(&[Some(Idle), None]), Decision::Continue);
        assert_eq!(
            decide(&[Some(Done), Some(Other("PENDING_ACCEPTANCE".into()))]),
            Decision::Continue
        );
        // A link that will never be DONE ends the wait at once, whatever the others do.
        for end in [Failed, DeleteRequested, Deleting, Deleted] {
            assert_eq!(
                decide(&[Some(Idle), Some(end.clone())]),
                Decision::Failed,
                "{end:?}"
            );
        }
    }

    #[test]
    fn a_link_without_a_connection_is_pending_and_one_gone_from_atlas_failed() {
        assert_eq!(
            link_wait(None, false),
            LinkWait::Pending {
                state: "not created".into()
            }
        );
        let mut intent = record("a", None, None);
        intent.phase = Phase::Intent;
        assert!(matches!(
            link_wait(Some(&intent), false),
            LinkWait::Pending { .. }
        ));
        let working = record("b", Some(RemoteState::Working), None);
        match link_wait(Some(&working), true) {
            LinkWait::Failed { state, message } => {
                assert_eq!(state, "GONE");
                assert!(message.unwrap().contains("last seen WORKING"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_verdict_names_each_link_with_its_state_and_atlas_message() {
        let failed = record(
            "msk",
            Some(RemoteState::Failed),
            Some("Endpoint service\nrejected"),
        );
        let silent = record("kinesis", Some(RemoteState::Failed), None);
        let idle = record("s3", Some(RemoteState::Idle), None);
        let done = record("done", Some(RemoteState::Done), None);
        let status = WaitStatus {
            links: [&failed, &silent, &idle, &done]
                .into_iter()
                .map(|r| (r.key.clone(), link_wait(Some(r), false)))
                .collect(),
        };
        assert_eq!(status.ready(), 1);
        assert_eq!(status.others(), "FAILED: 2, IDLE: 1");
        assert_eq!(
            status.lines(false),
            [
                format!("  {G}/msk: FAILED: Endpoint service rejected"),
                format!("  {G}/kinesis: FAILED (Atlas gave no errorMessage)"),
            ]
        );
        assert_eq!(status.lines(true).len(), 3);
        assert!(status.lines(true)[2].ends_with("/s3: IDLE"));
        assert_eq!(
            status.projects_to_list().into_iter().collect::<Vec<_>>(),
            [GroupId::parse(G).unwrap()]
        );
    }
}
