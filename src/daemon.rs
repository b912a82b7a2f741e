//! The daemon: triggers (start-up, file changes, resync timer, SIGHUP), signals and sd_notify.
