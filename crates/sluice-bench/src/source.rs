//! The bench table: built in a SQLite file, and SQLite's own copy of it (the reference).

use std::path::Path;

use anyhow::Result;
use rusqlite::{Connection, params};

use crate::child::report_peak_rss;

const BENCH_TABLE: &str = "CREATE TABLE bench_rows (
    id INTEGER PRIMARY KEY,
    n INT NOT NULL,
    name VARCHAR(64) NOT NULL,
    amount DECIMAL(12,2) NOT NULL,
    created TIMESTAMPTZ NOT NULL,
    day DATE NOT NULL,
    flag BOOLEAN NOT NULL,
    doc JSON_TEXT NOT NULL,
    note TEXT
)";

pub(crate) fn build_source(path: &Path, rows: i64) -> Result<u64> {
    let _ = std::fs::remove_file(path);
    let mut conn = Connection::open(path)?;
    conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA journal_mode = MEMORY;")?;
    conn.execute_batch(BENCH_TABLE)?;
    let tx = conn.transaction()?;
    {
        let mut insert =
            tx.prepare("INSERT INTO bench_rows VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")?;
        for id in 1..=rows {
            let x = id.wrapping_mul(2_654_435_761) & 0xFFFF_FFFF;
            let doc = format!(
                r#"{{"id":{id},"kind":"bench","tags":["a","b","c"],"score":{},"ok":{},"label":"row {id:>10}"}}"#,
                x % 1000,
                x % 2 == 0
            );
            let note = (x % 10 != 0)
                .then(|| format!("note for row {id:>10}: some text to make sixty bytes…"));
            insert.execute(params![
                id,
                x % 1_000_000,
                format!("name-{:08x}", x),
                format!("{}.{:02}", x % 10_000_000, x % 100),
                format!(
                    "2024-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00:00",
                    1 + x % 12,
                    1 + x % 28,
                    x % 24,
                    x % 60,
                    (x / 7) % 60,
                    x % 1_000_000
                ),
                format!("2023-{:02}-{:02}", 1 + x % 12, 1 + (x / 3) % 28),
                x % 3 == 0,
                doc,
                note
            ])?;
        }
    }
    tx.commit()?;
    let bytes = std::fs::metadata(path)?.len();
    Ok(bytes)
}

/// The reference copy, run as `sluice bench-reference SOURCE TARGET`: what SQLite does on its own.
pub fn reference_copy(source: &Path, target: &Path) -> Result<()> {
    let _ = std::fs::remove_file(target);
    let conn = Connection::open(target)?;
    conn.execute_batch(BENCH_TABLE)?;
    conn.execute("ATTACH DATABASE ?1 AS src", [source.display().to_string()])?;
    conn.execute_batch(
        "BEGIN IMMEDIATE; INSERT INTO main.bench_rows SELECT * FROM src.bench_rows; COMMIT;",
    )?;
    report_peak_rss();
    Ok(())
}
