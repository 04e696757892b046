//! Cases run as child processes of the `sluice` binary, which report their own peak RSS.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::report::{table, thousands};

/// Environment variable that makes `sluice` print its peak RSS to stderr when it exits.
pub const REPORT_RSS_ENV: &str = "SLUICE_REPORT_PEAK_RSS";

/// Prints `peak_rss_kb=N` to stderr when [`REPORT_RSS_ENV`] is set.
pub fn report_peak_rss() {
    if std::env::var_os(REPORT_RSS_ENV).is_none() {
        return;
    }
    if let Some(kb) = peak_rss_kb() {
        note!("peak_rss_kb={kb}");
    }
}

fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// One measured case.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Measured {
    pub(crate) case: String,
    pub(crate) rows: i64,
    pub(crate) seconds: f64,
    pub(crate) rows_per_second: f64,
    pub(crate) mb_per_second: f64,
    pub(crate) peak_rss_mb: Option<f64>,
    pub(crate) vs_reference: Option<f64>,
}

pub(crate) fn run_child(args: &[&str], home: &Path) -> Result<(f64, u64)> {
    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let out = Command::new(exe)
        .args(args)
        .env("SLUICE_HOME", home)
        .env(REPORT_RSS_ENV, "1")
        .output()
        .context("run a bench child")?;
    let seconds = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A compare that finds differences exits 3; anything else but 0 is a failure.
    if !matches!(out.status.code(), Some(0)) {
        bail!("`sluice {}` failed: {}", args.join(" "), stderr.trim());
    }
    let rss = stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak_rss_kb="))
        .and_then(|v| v.trim().parse().ok())
        .context("the child did not report its peak RSS")?;
    Ok((seconds, rss))
}

/// Prints measured cases as a table (or Markdown) under a heading line.
pub(crate) fn print_results(results: &[Measured], heading: &str, markdown: bool) {
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|m| {
            vec![
                m.case.clone(),
                format!("{:.2}", m.seconds),
                thousands(m.rows_per_second.round() as u64),
                format!("{:.1}", m.mb_per_second),
                m.peak_rss_mb
                    .map_or_else(|| "-".to_owned(), |mb| format!("{mb:.0}")),
                m.vs_reference
                    .map(|r| format!("{r:.2}"))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    say!("{heading}");
    if markdown {
        say!("| case | seconds | rows/s | MB/s | peak RSS (MB) | × reference |");
        say!("|---|---:|---:|---:|---:|---:|");
        for r in &rows {
            say!("| {} |", r.join(" | "));
        }
    } else {
        say!(
            "{}",
            table(
                &[
                    "case",
                    "seconds",
                    "rows/s",
                    "MB/s",
                    "peak RSS MB",
                    "× reference"
                ],
                rows
            )
        );
    }
}
