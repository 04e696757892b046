//! `sluice bench` (suite `engines`): the same table in PostgreSQL, MariaDB and SQLite, copied by
//! `sluice refresh` between the engines, against PostgreSQL copying it itself.
//!
//! The table (`--rows`, default 2,000,000: bigint key, int, varchar(64), numeric(12,2), timestamptz,
//! date, bool, a ~100-byte jsonb, ~60 bytes of text with some NULLs) is generated in PostgreSQL by
//! SQL; the PG→MariaDB and PG→SQLite cases then build the other engines' copies, which later cases
//! read. The reference is `psql -c "COPY … TO STDOUT (FORMAT binary)" | psql -c "COPY … FROM STDIN
//! (FORMAT binary)"` into an empty table. Each sluice case is a child process reporting its peak
//! RSS. Last, 1 % new rows are added at the source and an incremental refresh is timed.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::args::{BenchArgs, Printing};
use crate::child::{Measured, print_results, run_child};
use crate::report::{json, thousands};

const PG_DB: &str = "sluice_bench";
const MY_SRC: &str = "sluice_bench_src";
const MY_DST: &str = "sluice_bench_dst";

/// Host and port of `HOST:PORT`.
pub(crate) fn host_port(addr: &str) -> Result<(String, String)> {
    let (host, port) = addr
        .rsplit_once(':')
        .with_context(|| format!("{addr:?} is not HOST:PORT"))?;
    Ok((host.to_owned(), port.to_owned()))
}

pub(crate) struct Servers {
    pub(crate) pg: (String, String),
    pub(crate) my: (String, String),
}

impl Servers {
    pub(crate) fn psql(&self, db: &str) -> Command {
        let mut c = Command::new("psql");
        c.args([
            "-h", &self.pg.0, "-p", &self.pg.1, "-U", "postgres", "-d", db,
        ])
        .args(["-v", "ON_ERROR_STOP=1", "-Atq"]);
        c
    }

    pub(crate) fn pg(&self, db: &str, sql: &str) -> Result<String> {
        output(self.psql(db).arg("-c").arg(sql), "psql")
    }

    pub(crate) fn my(&self, sql: &str) -> Result<String> {
        output(
            Command::new("mariadb")
                .args([
                    "-h", &self.my.0, "-P", &self.my.1, "-u", "root", "-N", "-B", "-e",
                ])
                .arg(sql),
            "mariadb",
        )
    }
}

pub(crate) fn output(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("run {what} (is it installed?)"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {} (are the servers up? `scripts/services` starts them)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub(crate) const TABLE: &str = "CREATE TABLE bench_rows (
    id bigint PRIMARY KEY,
    n integer NOT NULL,
    name varchar(64) NOT NULL,
    amount numeric(12,2) NOT NULL,
    created timestamptz NOT NULL,
    day date NOT NULL,
    flag boolean NOT NULL,
    doc jsonb NOT NULL,
    note text
)";

/// Rows `from..=to` of the bench table, as one `INSERT … SELECT` over `generate_series`.
pub(crate) fn generate(table: &str, from: i64, to: i64) -> String {
    format!(
        "INSERT INTO {table} SELECT i, (x % 1000000)::int, 'name-' || lpad(to_hex(x), 8, '0'),
           ((x % 10000000) || '.' || lpad((x % 100)::text, 2, '0'))::numeric(12,2),
           timestamptz '2024-01-01 00:00:00+00' + (x % 31536000) * interval '1 second' + (x % 1000000) * interval '1 microsecond',
           date '2023-01-01' + (x % 365)::int,
           x % 3 = 0,
           jsonb_build_object('id', i, 'kind', 'bench', 'tags', jsonb_build_array('a', 'b', 'c'),
                              'score', x % 1000, 'ok', x % 2 = 0, 'label', 'row ' || lpad(i::text, 10)),
           CASE WHEN x % 10 = 0 THEN NULL ELSE 'note for row ' || lpad(i::text, 10) || ': some text to make sixty bytes' END
         FROM (SELECT i, (i * 2654435761) % 4294967296 AS x FROM generate_series({from}::bigint, {to}::bigint) AS i) AS s"
    )
}

fn definitions(s: &Servers, sqlite: &Path) -> String {
    let pg = |schema: &str| {
        format!(
            "{{class: postgresql, props: {{Database_Host: \"{}\", Database_Port: {}, Database_Name: {PG_DB}, \
             Database_User: postgres, Database_Schema: {schema}, Database_Sslmode: disable}}}}",
            s.pg.0, s.pg.1
        )
    };
    let my = |db: &str| {
        format!(
            "{{class: mariadb, props: {{Database_Host: \"{}\", Database_Port: {}, Database_Name: {db}, Database_User: root}}}}",
            s.my.0, s.my.1
        )
    };
    format!(
        "hub: bench_engines\nlocations:\n  pg: {}\n  pg_dst: {}\n  pg_from_my: {}\n  pg_from_lite: {}\n  my: {}\n  my_dst: {}\n  \
         lite: {{class: sqlite, props: {{Database_Name: \"{}\"}}}}\n\
         channels:\n  bench:\n    loc_groups: {{ALL: [pg, pg_dst, pg_from_my, pg_from_lite, my, my_dst, lite]}}\n    \
         tables: {{bench_rows: {{}}}}\n",
        pg("public"),
        pg("dst"),
        pg("from_mariadb"),
        pg("from_sqlite"),
        my(MY_SRC),
        my(MY_DST),
        sqlite.display()
    )
}

/// Runs the engines suite.
pub async fn run(args: BenchArgs, g: &Printing) -> Result<()> {
    let rows = args.rows.unwrap_or(2_000_000);
    if rows < 100 {
        bail!("--rows must be at least 100");
    }
    let s = Servers {
        pg: host_port(&args.postgres)?,
        my: host_port(&args.mariadb)?,
    };
    std::fs::create_dir_all(&args.dir)?;
    let dir = args.dir.canonicalize()?;
    let home = dir.join(".sluice-engines");
    let _ = std::fs::remove_dir_all(&home);
    let sqlite = dir.join("bench-engines.db");
    let _ = std::fs::remove_file(&sqlite);

    if !g.json {
        note!(
            "generating {} rows in PostgreSQL database {PG_DB} …",
            thousands(rows as u64)
        );
    }
    s.pg(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)"),
    )?;
    s.pg("postgres", &format!("CREATE DATABASE {PG_DB}"))?;
    s.pg(
        PG_DB,
        &format!(
            "CREATE SCHEMA dst; CREATE SCHEMA reference; CREATE SCHEMA from_mariadb; CREATE SCHEMA from_sqlite; \
             {TABLE}; CREATE TABLE reference.bench_rows (LIKE public.bench_rows INCLUDING ALL);"
        ),
    )?;
    s.pg(PG_DB, &generate("bench_rows", 1, rows))?;
    s.pg(PG_DB, "VACUUM ANALYZE bench_rows")?;
    let bytes: u64 = s
        .pg(PG_DB, "SELECT pg_table_size('public.bench_rows')")?
        .parse()
        .context("table size")?;
    let mb = bytes as f64 / 1e6;
    s.my(&format!(
        "DROP DATABASE IF EXISTS {MY_SRC}; DROP DATABASE IF EXISTS {MY_DST}; CREATE DATABASE {MY_SRC}; CREATE DATABASE {MY_DST};"
    ))?;
    let defs = dir.join("bench-engines.yaml");
    std::fs::write(&defs, definitions(&s, &sqlite))?;
    run_child(&["apply", defs.to_str().context("a UTF-8 path")?], &home)?;

    let mut results: Vec<Measured> = Vec::new();
    let mut reference_rate = None;
    let mut measure = |name: &str,
                       runs: u32,
                       prepare: &dyn Fn() -> Result<()>,
                       step: &dyn Fn() -> Result<(f64, Option<u64>)>|
     -> Result<f64> {
        if !g.json {
            note!("{name} ({runs} runs) …");
        }
        let mut times = Vec::new();
        let mut rss = None;
        for _ in 0..runs {
            prepare()?;
            let (seconds, kb) = step()?;
            times.push(seconds);
            rss = kb.map(|kb| kb.max(rss.unwrap_or(0)));
        }
        times.sort_by(f64::total_cmp);
        let seconds = times[times.len() / 2];
        let rate = rows as f64 / seconds;
        let reference = *reference_rate.get_or_insert(rate);
        results.push(Measured {
            case: name.to_owned(),
            rows,
            seconds,
            rows_per_second: rate,
            mb_per_second: mb / seconds,
            peak_rss_mb: rss.map(|kb| kb as f64 / 1024.0),
            vs_reference: Some(rate / reference),
        });
        Ok(seconds)
    };
    let nothing = || Ok(());
    let refresh = |source: &str, target: &str| {
        let (source, target) = (source.to_owned(), target.to_owned());
        let home = home.clone();
        move || -> Result<(f64, Option<u64>)> {
            let (seconds, kb) = run_child(
                &["refresh", "bench", "--source", &source, "--target", &target],
                &home,
            )?;
            Ok((seconds, Some(kb)))
        }
    };

    let pipe = format!(
        "set -o pipefail; psql -h {h} -p {p} -U postgres -d {PG_DB} -Atqc 'COPY public.bench_rows TO STDOUT (FORMAT binary)' \
         | psql -h {h} -p {p} -U postgres -d {PG_DB} -v ON_ERROR_STOP=1 -Atqc 'COPY reference.bench_rows FROM STDIN (FORMAT binary)'",
        h = s.pg.0,
        p = s.pg.1
    );
    measure(
        "reference: psql COPY TO STDOUT piped into psql COPY FROM STDIN (binary, PG→PG)",
        args.runs_or(3),
        &|| s.pg(PG_DB, "TRUNCATE reference.bench_rows").map(drop),
        &|| {
            let started = Instant::now();
            output(Command::new("bash").arg("-c").arg(&pipe), "the psql pipe")?;
            Ok((started.elapsed().as_secs_f64(), None))
        },
    )?;
    let pg_to_pg = measure(
        "sluice refresh PG→PG (raw COPY pipe)",
        args.runs_or(3),
        &|| {
            s.pg(
                PG_DB,
                "DO $$ BEGIN IF to_regclass('dst.bench_rows') IS NOT NULL THEN TRUNCATE dst.bench_rows; END IF; END $$",
            )
            .map(drop)
        },
        &refresh("pg", "pg_dst"),
    )?;
    measure(
        "sluice refresh PG→MariaDB",
        args.runs_or(3),
        &nothing,
        &refresh("pg", "my"),
    )?;
    measure(
        "sluice refresh PG→SQLite",
        args.runs_or(3),
        &nothing,
        &refresh("pg", "lite"),
    )?;
    measure(
        "sluice refresh MariaDB→PG",
        args.runs_or(3),
        &nothing,
        &refresh("my", "pg_from_my"),
    )?;
    measure(
        "sluice refresh SQLite→PG",
        args.runs_or(3),
        &nothing,
        &refresh("lite", "pg_from_lite"),
    )?;
    measure(
        "sluice refresh MariaDB→MariaDB",
        args.runs_or(3),
        &nothing,
        &refresh("my", "my_dst"),
    )?;

    // Incremental: 1 % new rows at the source, then only those travel.
    let new_rows = (rows / 100).max(1);
    s.pg(PG_DB, &generate("bench_rows", rows + 1, rows + new_rows))?;
    if !g.json {
        note!(
            "incremental PG→PG after {} new rows …",
            thousands(new_rows as u64)
        );
    }
    let (seconds, kb) = run_child(
        &[
            "refresh",
            "bench",
            "--source",
            "pg",
            "--target",
            "pg_dst",
            "--mode",
            "incremental",
            "--incremental-column",
            "id",
        ],
        &home,
    )?;
    let counted: i64 = s
        .pg(PG_DB, "SELECT count(*) FROM dst.bench_rows")?
        .parse()
        .context("count")?;
    if counted != rows + new_rows {
        bail!(
            "the incremental refresh left {counted} rows at the target, expected {}",
            rows + new_rows
        );
    }
    let incremental = serde_json::json!({
        "new_rows": new_rows,
        "seconds": seconds,
        "peak_rss_mb": kb as f64 / 1024.0,
        "fraction_of_full_refresh": seconds / pg_to_pg,
    });

    if g.json {
        json(&serde_json::json!({
            "rows": rows,
            "table_mb": mb,
            "results": results,
            "incremental": incremental,
        }))?;
        return Ok(());
    }
    print_results(
        &results,
        &format!(
            "{} rows, PostgreSQL table {:.0} MB; seconds: median wall time of {} runs of the whole child process; \
             × reference: rows/s relative to the psql COPY pipe\n",
            thousands(rows as u64),
            mb,
            args.runs_or(3)
        ),
        args.markdown,
    );
    say!(
        "\nincremental PG→PG after {} new rows (1 %): {:.2} s, {:.1} % of the full PG→PG refresh, peak RSS {:.0} MB",
        thousands(new_rows as u64),
        seconds,
        100.0 * seconds / pg_to_pg,
        kb as f64 / 1024.0
    );
    Ok(())
}
