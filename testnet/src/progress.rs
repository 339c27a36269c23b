//! The one progress display of the long-running tools (`phalanx bench`,
//! `phalanx faults`, `phalanx sim`).
//!
//! On a terminal it is an [`indicatif`] bar, redrawn in place. Anywhere else
//! (CI, a pipe, a log file) a redrawn bar would only leave carriage returns
//! and escape codes behind, so no bar is drawn: a plain line is printed at
//! the first update and then at most every [`LINE_EVERY`], e.g.
//!
//! ```text
//! bench n=4 @ 2,000 tx/s: 45% 9.0/20.0 s, sent 2,000 tx/s, committed 1,987 tx/s
//! ```
//!
//! and [`Progress::finish`] prints the last state if it was not printed yet.
//! The plain lines take their time from a [`Clock`], so tests drive them
//! with a clock of their own instead of sleeping.

use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal as _, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a plain progress line is printed where there is no terminal.
pub const LINE_EVERY: Duration = Duration::from_secs(5);

/// What a progress display counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Seconds of a timed run: "9.0/20.0 s".
    Seconds,
    /// Whole things, named: "450/1,000 schedules".
    Count(&'static str),
}

/// Where plain progress lines get the time from.
pub trait Clock: Send {
    /// Time since a fixed start (only differences matter).
    fn now(&self) -> Duration;
}

/// The wall clock, counted from when it was made.
#[derive(Clone, Copy, Debug)]
pub struct WallClock(Instant);

impl WallClock {
    /// A clock starting now.
    pub fn new() -> WallClock {
        WallClock(Instant::now())
    }
}

impl Default for WallClock {
    fn default() -> WallClock {
        WallClock::new()
    }
}

impl Clock for WallClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// A progress display: an indicatif bar on a terminal, plain lines elsewhere.
/// `update` and `finish` take `&self` and may be called from any thread.
pub struct Progress {
    name: String,
    unit: Unit,
    total: f64,
    out: Output,
}

enum Output {
    Bar(ProgressBar),
    Lines(Mutex<Lines>),
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("name", &self.name)
            .field("unit", &self.unit)
            .field("total", &self.total)
            .field(
                "out",
                &match self.out {
                    Output::Bar(_) => "bar",
                    Output::Lines(_) => "lines",
                },
            )
            .finish()
    }
}

/// The plain-line printer: when a line is due, and where it goes.
struct Lines {
    clock: Box<dyn Clock>,
    every: Duration,
    /// When the last line was printed.
    printed_at: Option<Duration>,
    /// The newest line not printed yet (printed by `finish`).
    pending: Option<String>,
    out: Box<dyn Write + Send>,
}

impl Lines {
    fn offer(&mut self, line: String) {
        let now = self.clock.now();
        let due = self
            .printed_at
            .is_none_or(|at| now.saturating_sub(at) >= self.every);
        if due {
            self.printed_at = Some(now);
            self.pending = None;
            self.print(&line);
        } else {
            self.pending = Some(line);
        }
    }

    fn finish(&mut self) {
        if let Some(line) = self.pending.take() {
            self.print(&line);
        }
    }

    fn print(&mut self, line: &str) {
        // Progress is a courtesy: a closed stderr must not stop a run.
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
    }
}

/// Whether to draw a bar: stderr is a terminal that indicatif would draw
/// on (it hides its bars when `TERM` is unset or `dumb`, and then the
/// plain lines are the only progress there is).
pub fn use_bar(stderr_is_terminal: bool, term: Option<&str>) -> bool {
    stderr_is_terminal && term.is_some_and(|t| !t.is_empty() && t != "dumb")
}

/// The position part of a line: "9.0/20.0 s" or "450/1,000 schedules".
pub fn position_text(unit: Unit, position: f64, total: f64) -> String {
    match unit {
        Unit::Seconds => format!("{position:.1}/{total:.1} s"),
        Unit::Count(name) => format!(
            "{}/{} {name}",
            HumanCount(position.max(0.0) as u64),
            HumanCount(total.max(0.0) as u64)
        ),
    }
}

/// Whole percent done, 0–100 (100 for an empty total).
pub fn percent(position: f64, total: f64) -> u32 {
    if total <= 0.0 {
        return 100;
    }
    ((position / total).clamp(0.0, 1.0) * 100.0).floor() as u32
}

/// One plain progress line: "NAME: PCT% POSITION, DETAIL".
pub fn line(name: &str, unit: Unit, position: f64, total: f64, detail: &str) -> String {
    let mut s = format!(
        "{name}: {}% {}",
        percent(position, total),
        position_text(unit, position, total)
    );
    if !detail.is_empty() {
        s.push_str(", ");
        s.push_str(detail);
    }
    s
}

/// A whole number with thousands separators, for rates in details: "4,912".
pub fn count(value: f64) -> String {
    HumanCount(value.max(0.0).round() as u64).to_string()
}

impl Progress {
    /// Progress of `name` towards `total` on stderr: a bar if stderr is a
    /// terminal, otherwise a plain line every [`LINE_EVERY`].
    pub fn new(name: impl Into<String>, unit: Unit, total: f64) -> Progress {
        let term = std::env::var("TERM").ok();
        if use_bar(std::io::stderr().is_terminal(), term.as_deref()) {
            Progress::bar(name, unit, total, ProgressDrawTarget::stderr())
        } else {
            Progress::lines(
                name,
                unit,
                total,
                LINE_EVERY,
                Box::new(WallClock::new()),
                Box::new(std::io::stderr()),
            )
        }
    }

    /// Plain lines into `out`: at the first update, then whenever `every`
    /// has passed on `clock` since the last one printed.
    pub fn lines(
        name: impl Into<String>,
        unit: Unit,
        total: f64,
        every: Duration,
        clock: Box<dyn Clock>,
        out: Box<dyn Write + Send>,
    ) -> Progress {
        Progress {
            name: name.into(),
            unit,
            total,
            out: Output::Lines(Mutex::new(Lines {
                clock,
                every,
                printed_at: None,
                pending: None,
                out,
            })),
        }
    }

    /// An indicatif bar drawn on `target`.
    pub fn bar(
        name: impl Into<String>,
        unit: Unit,
        total: f64,
        target: ProgressDrawTarget,
    ) -> Progress {
        let name = name.into();
        let style = ProgressStyle::with_template("{prefix} [{bar:30}] {percent:>3}% {msg}")
            .expect("a valid template")
            .progress_chars("#>-");
        let bar = ProgressBar::with_draw_target(Some(steps(unit, total)), target)
            .with_style(style)
            .with_prefix(name.clone());
        Progress {
            name,
            unit,
            total,
            out: Output::Bar(bar),
        }
    }

    /// Whether this progress draws a bar (rather than plain lines).
    pub fn is_bar(&self) -> bool {
        matches!(self.out, Output::Bar(_))
    }

    /// Shows `position` (of the total, in the unit) and what the tool
    /// reports beside it (`detail`, e.g. "committed 4,912 tx/s").
    pub fn update(&self, position: f64, detail: &str) {
        match &self.out {
            Output::Bar(bar) => {
                bar.set_message(format!(
                    "{}  {detail}",
                    position_text(self.unit, position, self.total)
                ));
                bar.set_position(steps(self.unit, position).min(steps(self.unit, self.total)));
            }
            Output::Lines(lines) => {
                let text = line(&self.name, self.unit, position, self.total, detail);
                lines.lock().unwrap_or_else(|e| e.into_inner()).offer(text);
            }
        }
    }

    /// The end: the bar stays on screen as it is and the next output starts
    /// on a new line; plain lines print the last state if it was not yet.
    pub fn finish(&self) {
        match &self.out {
            Output::Bar(bar) => {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
            Output::Lines(lines) => lines.lock().unwrap_or_else(|e| e.into_inner()).finish(),
        }
    }
}

/// The bar's integer steps: milliseconds, or the count itself.
fn steps(unit: Unit, value: f64) -> u64 {
    let value = value.max(0.0);
    match unit {
        Unit::Seconds => (value * 1000.0).round() as u64,
        Unit::Count(_) => value as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// A clock the test moves by hand.
    #[derive(Clone, Default)]
    struct TestClock(Arc<AtomicU64>);

    impl TestClock {
        fn set(&self, ms: u64) {
            self.0.store(ms, Ordering::SeqCst);
        }
    }

    impl Clock for TestClock {
        fn now(&self) -> Duration {
            Duration::from_millis(self.0.load(Ordering::SeqCst))
        }
    }

    /// What was printed, shared with the test.
    #[derive(Clone, Default)]
    struct Printed(Arc<Mutex<Vec<u8>>>);

    impl Printed {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    impl Write for Printed {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn plain(name: &str, unit: Unit, total: f64) -> (Progress, TestClock, Printed) {
        let clock = TestClock::default();
        let printed = Printed::default();
        let p = Progress::lines(
            name,
            unit,
            total,
            LINE_EVERY,
            Box::new(clock.clone()),
            Box::new(printed.clone()),
        );
        (p, clock, printed)
    }

    #[test]
    fn a_line_at_the_first_update_then_one_every_five_seconds() {
        let (p, clock, printed) = plain("bench", Unit::Seconds, 20.0);
        assert!(!p.is_bar());
        clock.set(1_000);
        p.update(1.0, "a");
        assert_eq!(printed.lines().len(), 1, "the first update prints at once");
        for ms in [2_000, 3_000, 4_000, 5_999] {
            clock.set(ms);
            p.update(ms as f64 / 1000.0, "b");
        }
        assert_eq!(
            printed.lines().len(),
            1,
            "nothing within 5 s of the last line"
        );
        clock.set(6_000);
        p.update(6.0, "c");
        assert_eq!(printed.lines().len(), 2, "due 5 s after the last line");
        // The next one counts from the line printed at 6 s, not from the
        // updates since.
        clock.set(10_500);
        p.update(10.5, "d");
        assert_eq!(printed.lines().len(), 2);
        clock.set(11_000);
        p.update(11.0, "e");
        let lines = printed.lines();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines,
            [
                "bench: 5% 1.0/20.0 s, a",
                "bench: 30% 6.0/20.0 s, c",
                "bench: 55% 11.0/20.0 s, e",
            ]
        );
    }

    #[test]
    fn a_late_update_prints_at_once() {
        // Updates far apart (a slow sweep): each one is due.
        let (p, clock, printed) = plain("sim", Unit::Count("schedules"), 3.0);
        for (ms, done) in [(0, 1.0), (12_000, 2.0), (30_000, 3.0)] {
            clock.set(ms);
            p.update(done, "");
        }
        assert_eq!(
            printed.lines(),
            [
                "sim: 33% 1/3 schedules",
                "sim: 66% 2/3 schedules",
                "sim: 100% 3/3 schedules",
            ]
        );
        p.finish();
        assert_eq!(printed.lines().len(), 3, "nothing left to print");
    }

    #[test]
    fn finish_prints_the_last_state_once_if_it_was_not_printed() {
        let (p, clock, printed) = plain("bench", Unit::Seconds, 4.0);
        clock.set(1_000);
        p.update(1.0, "sent 1,000 tx/s, committed 0 tx/s (warm-up)");
        clock.set(2_000);
        p.update(2.0, "sent 1,000 tx/s, committed 990 tx/s");
        clock.set(4_100);
        p.update(4.1, "sent 1,000 tx/s, committed 1,001 tx/s");
        assert_eq!(printed.lines().len(), 1);
        p.finish();
        p.finish();
        assert_eq!(
            printed.lines(),
            [
                "bench: 25% 1.0/4.0 s, sent 1,000 tx/s, committed 0 tx/s (warm-up)",
                "bench: 100% 4.1/4.0 s, sent 1,000 tx/s, committed 1,001 tx/s",
            ]
        );
    }

    #[test]
    fn finish_without_updates_prints_nothing() {
        let (p, _, printed) = plain("bench", Unit::Seconds, 4.0);
        p.finish();
        assert!(printed.lines().is_empty());
    }

    #[test]
    fn what_a_line_says() {
        assert_eq!(
            line(
                "bench",
                Unit::Seconds,
                9.0,
                20.0,
                &format!("{} tx/s", count(4_912.4))
            ),
            "bench: 45% 9.0/20.0 s, 4,912 tx/s"
        );
        assert_eq!(
            line(
                "sim",
                Unit::Count("schedules"),
                450.0,
                1_000.0,
                "0 violations"
            ),
            "sim: 45% 450/1,000 schedules, 0 violations"
        );
        // Past the end (a drain), before the start, and an empty total.
        assert_eq!(percent(25.0, 20.0), 100);
        assert_eq!(percent(-1.0, 20.0), 0);
        assert_eq!(percent(0.0, 0.0), 100);
        assert_eq!(percent(19.99, 20.0), 99);
        assert_eq!(count(1_234_567.6), "1,234,568");
        assert_eq!(count(-3.0), "0");
    }

    #[test]
    fn a_bar_only_on_a_terminal_indicatif_draws_on() {
        assert!(use_bar(true, Some("xterm-256color")));
        assert!(!use_bar(false, Some("xterm-256color")), "a pipe or a file");
        assert!(!use_bar(true, Some("dumb")), "indicatif would hide it");
        assert!(!use_bar(true, None));
        assert!(!use_bar(true, Some("")));
    }

    #[test]
    fn the_bar_counts_milliseconds_or_things_and_stops_at_the_end() {
        let p = Progress::bar("bench", Unit::Seconds, 20.0, ProgressDrawTarget::hidden());
        assert!(p.is_bar());
        p.update(9.0, "sent 4,912 tx/s");
        let Output::Bar(bar) = &p.out else {
            unreachable!()
        };
        assert_eq!(bar.length(), Some(20_000));
        assert_eq!(bar.position(), 9_000);
        assert_eq!(bar.message(), "9.0/20.0 s  sent 4,912 tx/s");
        p.update(23.5, "draining");
        assert_eq!(bar.position(), 20_000);
        p.finish();
        assert!(bar.is_finished());

        let p = Progress::bar(
            "sim",
            Unit::Count("schedules"),
            1_000.0,
            ProgressDrawTarget::hidden(),
        );
        p.update(450.0, "0 violations");
        let Output::Bar(bar) = &p.out else {
            unreachable!()
        };
        assert_eq!((bar.position(), bar.length()), (450, Some(1_000)));
        assert_eq!(bar.message(), "450/1,000 schedules  0 violations");
    }
}
