//! `sluice bench --suite sqlite`: the SQLite data path against SQLite's own copy.

use std::path::Path;

use anyhow::{Context, Result};

use crate::args::{BenchArgs, Printing};
use crate::child::{Measured, print_results, run_child};
use crate::report::{json, thousands};
use crate::source::build_source;

fn definitions(dir: &Path) -> String {
    format!(
        r#"hub: bench
locations:
  src: {{class: sqlite, props: {{Database_Name: "{src}"}}}}
  tgt: {{class: sqlite, props: {{Database_Name: "{tgt}"}}}}
channels:
  bench:
    loc_groups: {{SOURCE: [src], TARGET: [tgt]}}
    tables: {{bench_rows: {{}}}}
    actions: [{{type: Capture, loc_scope: SOURCE}}, {{type: Integrate, loc_scope: TARGET}}]
"#,
        src = dir.join("source.db").display(),
        tgt = dir.join("target.db").display()
    )
}

/// Runs the suite.
pub async fn run(args: BenchArgs, g: &Printing) -> Result<()> {
    let rows = args.rows.unwrap_or(1_000_000);
    std::fs::create_dir_all(&args.dir)?;
    let dir = args.dir.canonicalize()?;
    let home = dir.join(".sluice");
    let source = dir.join("source.db");
    if !g.json {
        note!(
            "building {} rows in {} …",
            thousands(rows as u64),
            source.display()
        );
    }
    let bytes = tokio::task::spawn_blocking({
        let source = source.clone();
        move || build_source(&source, rows)
    })
    .await??;
    let mb = bytes as f64 / 1e6;
    std::fs::write(dir.join("bench.yaml"), definitions(&dir))?;
    let exe_args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    run_child(
        &[
            "apply",
            dir.join("bench.yaml").to_str().context("a UTF-8 path")?,
        ],
        &home,
    )?;

    let reference_target = dir.join("reference.db");
    let target = dir.join("target.db");
    // (name, arguments, whether the target is removed before each run)
    let cases: Vec<(String, Vec<String>, bool)> = vec![
        (
            "reference: SQLite INSERT … SELECT across ATTACH".into(),
            exe_args(&[
                "bench-reference",
                source.to_str().unwrap_or_default(),
                reference_target.to_str().unwrap_or_default(),
            ]),
            false,
        ),
        (
            "sluice refresh SQLite→SQLite (truncate_load, target created)".into(),
            exe_args(&["refresh", "bench"]),
            true,
        ),
        (
            "sluice refresh SQLite→SQLite (truncate_load)".into(),
            exe_args(&["refresh", "bench"]),
            false,
        ),
        (
            "sluice refresh SQLite→SQLite (staging_swap)".into(),
            exe_args(&["refresh", "bench", "--strategy", "staging_swap"]),
            false,
        ),
        (
            "sluice compare (counts and checksums)".into(),
            exe_args(&["compare", "bench"]),
            false,
        ),
        (
            "sluice compare --rowwise".into(),
            exe_args(&["compare", "bench", "--rowwise"]),
            false,
        ),
    ];
    let mut results: Vec<Measured> = Vec::new();
    let mut reference_rate = None;
    for (name, child_args, fresh_target) in cases {
        if !g.json {
            note!("{name} ({} runs) …", args.runs_or(3));
        }
        let refs: Vec<&str> = child_args.iter().map(String::as_str).collect();
        let mut times = Vec::new();
        let mut rss_kb = 0;
        for _ in 0..args.runs_or(3) {
            if fresh_target {
                let _ = std::fs::remove_file(&target);
            }
            let (seconds, rss) = run_child(&refs, &home)?;
            times.push(seconds);
            rss_kb = rss_kb.max(rss);
        }
        times.sort_by(f64::total_cmp);
        let seconds = times[times.len() / 2];
        let rate = rows as f64 / seconds;
        if reference_rate.is_none() {
            reference_rate = Some(rate);
        }
        results.push(Measured {
            case: name,
            rows,
            seconds,
            rows_per_second: rate,
            mb_per_second: mb / seconds,
            peak_rss_mb: Some(rss_kb as f64 / 1024.0),
            vs_reference: reference_rate.map(|r| rate / r),
        });
    }
    if g.json {
        json(&serde_json::json!({ "rows": rows, "source_mb": mb, "results": results }))?;
        return Ok(());
    }
    print_results(
        &results,
        &format!(
            "{} rows, source file {:.0} MB; seconds: median wall time of {} runs of the whole child process\n",
            thousands(rows as u64),
            mb,
            args.runs_or(3)
        ),
        args.markdown,
    );
    Ok(())
}
