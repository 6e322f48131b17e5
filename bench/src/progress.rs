//! What a long run shows while it works: a line per phase (with the time
//! since the start) and a progress bar for each long step, on stderr. Bars
//! are drawn only on a terminal; the phase lines always appear (unless
//! `--quiet`), so CI logs show where a run is.

use std::fmt::Display;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often bars are redrawn.
const REDRAW_HZ: u8 = 4;

#[derive(Clone)]
pub struct Progress {
    multi: MultiProgress,
    started: Instant,
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr_with_hz(REDRAW_HZ)
        };
        Self {
            multi: MultiProgress::with_draw_target(target),
            started: Instant::now(),
            quiet,
        }
    }

    /// A phase line, e.g. "fanout/chat: 1000 streams open".
    pub fn note(&self, message: impl Display) {
        if self.quiet {
            return;
        }
        let line = format!("[{:>7.1}s] {message}", self.started.elapsed().as_secs_f64());
        if self.multi.is_hidden() {
            eprintln!("{line}");
        } else {
            // Printed above the bars instead of through them.
            let _ = self.multi.println(line);
        }
    }

    /// A bar counting `len` items.
    pub fn counter(&self, len: u64, label: impl Into<String>) -> ProgressBar {
        self.add(
            ProgressBar::new(len),
            "{prefix:>24} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
            label,
        )
    }

    /// A bar for a timed step, counting milliseconds.
    pub fn timer(&self, length: Duration, label: impl Into<String>) -> ProgressBar {
        let millis = u64::try_from(length.as_millis()).unwrap_or(u64::MAX);
        self.add(
            ProgressBar::new(millis),
            "{prefix:>24} [{elapsed_precise}] {wide_bar} {msg}",
            label,
        )
    }

    fn add(&self, bar: ProgressBar, template: &str, label: impl Into<String>) -> ProgressBar {
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = self.multi.add(bar.with_style(style));
        bar.set_prefix(label.into());
        bar
    }
}
