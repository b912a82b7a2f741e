//! Logging set-up: `tracing` on stderr, text or JSON, with `RUST_LOG` taking precedence, and log lines
//! written around the progress bar that owns the terminal, if any (`TERMINAL_BAR`).

use crate::config::LogFormat;
use crate::lock::LockExt;
use indicatif::ProgressBar;
use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;
use tracing_subscriber::fmt::MakeWriter;

/// Sets up `tracing` on stderr: text on a terminal, JSON elsewhere, unless the config says otherwise.
/// `RUST_LOG` overrides the level; the default is `info`, or `warn` when a progress bar owns the terminal.
pub(crate) fn init_logging(format: LogFormat, quiet_default: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if quiet_default { "warn" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(AroundBar {
            bar: &TERMINAL_BAR,
            inner: std::io::stderr,
        });
    // A second initialisation (tests, demo) keeps the first subscriber.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// The progress bar drawn on stderr while a pass runs in a terminal (`BarProgress` sets it).
pub(crate) static TERMINAL_BAR: ActiveBar = ActiveBar::new();

/// A progress bar that owns a terminal for a while. Anything else written to that terminal meanwhile
/// goes through `write_around`: the bar is erased, the text written, the bar drawn again below it.
/// Written straight to the terminal instead, a line lands in the middle of the bar's next redraw,
/// which leaves a stale copy of the bar above it.
pub(crate) struct ActiveBar(Mutex<Option<ProgressBar>>);

impl ActiveBar {
    pub(crate) const fn new() -> ActiveBar {
        ActiveBar(Mutex::new(None))
    }

    /// `Some(bar)` while `bar` is drawn on the terminal; `None` once it is finished.
    pub(crate) fn set(&self, bar: Option<ProgressBar>) {
        *self.0.lock_or_recover() = bar;
    }

    fn current(&self) -> Option<ProgressBar> {
        // A clone (an `Arc`): the lock is not held while the bar is suspended.
        self.0.lock_or_recover().clone()
    }

    /// Runs `write` with the bar, if any, erased for the while.
    pub(crate) fn write_around<R>(&self, write: impl FnOnce() -> R) -> R {
        match self.current() {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}

/// A `MakeWriter` that writes each log line around the active bar; with no bar, straight to `inner`.
pub(crate) struct AroundBar<'b, M> {
    pub(crate) bar: &'b ActiveBar,
    pub(crate) inner: M,
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for AroundBar<'_, M> {
    type Writer = LineAroundBar<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        LineAroundBar {
            bar: self.bar.current(),
            inner: self.inner.make_writer(),
        }
    }
}

/// The writer of one log event: `tracing-subscriber` formats the whole line first and hands it over in
/// one `write_all`, so the bar is erased once per line.
pub(crate) struct LineAroundBar<W> {
    bar: Option<ProgressBar>,
    inner: W,
}

impl<W: Write> Write for LineAroundBar<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf).map(|()| buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let inner = &mut self.inner;
        match &self.bar {
            Some(bar) => bar.suspend(|| inner.write_all(buf).and_then(|()| inner.flush())),
            None => inner.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::{ProgressDrawTarget, TermLike};
    use std::sync::Arc;

    /// What reached the terminal, in order: the bar's drawing and the log lines.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<Vec<String>>>);

    impl Screen {
        fn push(&self, event: String) -> io::Result<()> {
            self.0.lock_or_recover().push(event);
            Ok(())
        }
        fn events(&self) -> Vec<String> {
            self.0.lock_or_recover().clone()
        }
    }

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            80
        }
        fn move_cursor_up(&self, n: usize) -> io::Result<()> {
            self.push(format!("up {n}"))
        }
        fn move_cursor_down(&self, n: usize) -> io::Result<()> {
            self.push(format!("down {n}"))
        }
        fn move_cursor_right(&self, n: usize) -> io::Result<()> {
            self.push(format!("right {n}"))
        }
        fn move_cursor_left(&self, n: usize) -> io::Result<()> {
            self.push(format!("left {n}"))
        }
        fn write_line(&self, s: &str) -> io::Result<()> {
            self.push(format!("bar {s}"))
        }
        fn write_str(&self, s: &str) -> io::Result<()> {
            self.push(format!("bar {s}"))
        }
        fn clear_line(&self) -> io::Result<()> {
            self.push("clear".into())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Log output on the same screen as the bar.
    struct Log(Screen);

    impl Write for Log {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .push(format!("log {}", String::from_utf8_lossy(buf).trim_end()))?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A bar registry of the test's own, not the process's `TERMINAL_BAR`: tests run in parallel.
    fn registry() -> &'static ActiveBar {
        Box::leak(Box::new(ActiveBar::new()))
    }

    fn log_a_warning(active: &'static ActiveBar, screen: &Screen) {
        let screen = screen.clone();
        let writer = AroundBar {
            bar: active,
            inner: move || Log(screen.clone()),
        };
        let subscriber = tracing_subscriber::fmt()
            .with_writer(writer)
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!("a 429: the project waits");
        });
    }

    #[test]
    fn a_log_line_erases_the_active_bar_and_the_bar_is_drawn_again_below_it() {
        let screen = Screen::default();
        let bar = ProgressBar::with_draw_target(
            Some(24),
            ProgressDrawTarget::term_like(Box::new(screen.clone())),
        );
        bar.set_position(3);
        let active = registry();
        active.set(Some(bar.clone()));

        log_a_warning(active, &screen);

        let events = screen.events();
        let log = events
            .iter()
            .position(|e| e.starts_with("log ") && e.contains("a 429: the project waits"))
            .unwrap_or_else(|| panic!("no log line: {events:?}"));
        let drawn_before = events[..log]
            .iter()
            .rposition(|e| e.starts_with("bar ") && e.contains("3/24"))
            .unwrap_or_else(|| panic!("the bar was not drawn before the line: {events:?}"));
        assert!(
            events[drawn_before..log].iter().any(|e| e == "clear"),
            "the bar was not erased before the line: {events:?}"
        );
        assert!(
            events[log + 1..]
                .iter()
                .any(|e| e.starts_with("bar ") && e.contains("3/24")),
            "the bar was not drawn again after the line: {events:?}"
        );
    }

    #[test]
    fn with_no_active_bar_a_log_line_is_written_unchanged() {
        let screen = Screen::default();
        let bar = ProgressBar::with_draw_target(
            Some(24),
            ProgressDrawTarget::term_like(Box::new(screen.clone())),
        );
        bar.set_position(3);
        let active = registry();
        active.set(Some(bar.clone()));
        active.set(None);
        let drawn = screen.events().len();

        log_a_warning(active, &screen);

        let events = screen.events();
        assert_eq!(events.len(), drawn + 1, "{events:?}");
        assert!(
            events[drawn].starts_with("log ") && events[drawn].contains("WARN"),
            "{events:?}"
        );
    }
}
