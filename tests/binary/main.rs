//! Tests that run the real `atlas-linkd` binary (or another program: promtool, Prometheus,
//! systemd-analyze), and the parts of the daemon and the fake closest to them: the CLI, `--once`,
//! the daemon, `demo`, `fake-atlas` flags, sd_notify and the manifest watcher.
#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

mod cli_commands;
mod daemon_ready;
mod daemon_run;
mod demo;
mod exactly_once;
mod failover;
mod fake_cli;
mod hostile_files;
mod hostile_host;
mod hostile_manifests;
mod hostile_server;
mod ledger_copy;
mod ledger_replaced;
mod lifecycle;
mod notify_socket;
mod notify_watch;
mod once_binary;
mod one_truth;
mod packaging;
mod prom_promtool;
mod prom_server;
mod prune;
mod soak;
mod systemd_unit;
mod update;
mod wait;
mod watch_replace;
