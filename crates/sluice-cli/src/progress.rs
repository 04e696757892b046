//! Showing progress: a bar per table with rows/s on a terminal, a plain line per table every few
//! seconds otherwise (CI logs, pipes). Progress goes to stderr; stdout keeps the results.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use sluice_service::Progress;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::output::{rate, thousands};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// Bars on a terminal.
    Bars,
    /// Periodic plain lines.
    Lines,
    /// Nothing.
    Quiet,
}

impl Display {
    /// Bars when stderr is a terminal, lines otherwise; nothing when `quiet`.
    pub fn choose(quiet: bool) -> Self {
        if quiet {
            Display::Quiet
        } else if std::io::stderr().is_terminal() {
            Display::Bars
        } else {
            Display::Lines
        }
    }
}

const LINE_EVERY: Duration = Duration::from_secs(2);

/// Shows progress until the sender is dropped (the job ended). `verb` is what is being done
/// (`refresh`, `compare`).
pub async fn follow(mut progress: UnboundedReceiver<Progress>, display: Display, verb: &str) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    // Rows per second since the table started, as a whole number.
    let rate_key = |state: &ProgressState, w: &mut dyn std::fmt::Write| {
        let seconds = state.elapsed().as_secs_f64();
        let _ = write!(w, "{} rows/s", rate(state.pos(), seconds));
    };
    let style_known = ProgressStyle::with_template(
        "{prefix:>20.bold} [{bar:30.cyan/blue}] {human_pos:>11}/{human_len:11} {rate:>16} {elapsed:>4}",
    )
    .expect("the template is valid")
    .with_key("rate", rate_key)
    .progress_chars("=> ");
    let style_unknown = ProgressStyle::with_template(
        "{prefix:>20.bold} {spinner} {human_pos:>11} {rate:>16} {elapsed:>4}",
    )
    .expect("the template is valid")
    .with_key("rate", rate_key);
    // A table that failed or was cancelled keeps its bar where it stopped, marked so: never
    // drawn as complete.
    let style_stopped = ProgressStyle::with_template(
        "{prefix:>20.bold} stopped after {human_pos} rows {elapsed:>4}",
    )
    .expect("the template is valid");
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    let mut last_line: HashMap<String, (Instant, Instant)> = HashMap::new();
    while let Some(p) = progress.recv().await {
        match (display, p) {
            (Display::Quiet, _) => {}
            (Display::Bars, Progress::Started { table, total_rows }) => {
                let bar = match total_rows {
                    Some(n) => multi
                        .add(ProgressBar::new(n))
                        .with_style(style_known.clone()),
                    None => multi
                        .add(ProgressBar::no_length())
                        .with_style(style_unknown.clone()),
                };
                bar.set_prefix(table.to_string());
                bar.enable_steady_tick(Duration::from_millis(200));
                bars.insert(table.to_string(), bar);
            }
            (Display::Bars, Progress::Advanced { table, rows, .. }) => {
                if let Some(bar) = bars.get(table.as_str()) {
                    bar.set_position(rows);
                }
            }
            (
                Display::Bars,
                Progress::Finished {
                    table, ok, rows, ..
                },
            ) => {
                if let Some(bar) = bars.get(table.as_str()) {
                    bar.set_position(rows);
                    if ok {
                        bar.set_length(rows);
                        bar.finish();
                    } else {
                        bar.set_style(style_stopped.clone());
                        bar.abandon();
                    }
                }
            }
            (Display::Lines, Progress::Started { table, total_rows }) => {
                let now = Instant::now();
                last_line.insert(table.to_string(), (now, now));
                match total_rows {
                    Some(n) => note!("{table}: {verb} started ({} rows)", thousands(n)),
                    None => note!("{table}: {verb} started"),
                }
            }
            (Display::Lines, Progress::Advanced { table, rows, .. }) => {
                if let Some((started, last)) = last_line.get_mut(table.as_str())
                    && last.elapsed() >= LINE_EVERY
                {
                    *last = Instant::now();
                    note!(
                        "{table}: {} rows ({} rows/s)",
                        thousands(rows),
                        rate(rows, started.elapsed().as_secs_f64())
                    );
                }
            }
            (
                Display::Lines,
                Progress::Finished {
                    table,
                    ok,
                    rows,
                    seconds,
                },
            ) => {
                let how = if ok { "finished" } else { "stopped" };
                note!(
                    "{table}: {verb} {how}, {} rows in {seconds:.2} s ({} rows/s)",
                    thousands(rows),
                    rate(rows, seconds)
                );
            }
        }
    }
    // The job ended without finishing these (interrupted).
    for bar in bars.values() {
        if !bar.is_finished() {
            bar.set_style(style_stopped.clone());
            bar.abandon();
        }
    }
}
