//! `sluice quickstart`: the whole path on the embedded default, no server to install.
//!
//! In `./sluice-quickstart/` it builds a deterministic sample shop (`shop.db`: customers, products,
//! orders, and exactly `--rows` order items), writes and applies `sluice.yaml`, refreshes the shop
//! into `warehouse.db`, compares, changes the shop in known ways, checks that a row-wise compare
//! reports exactly those changes, refreshes again (with a staging swap) and compares once more.
//! Running it again rebuilds the shop and repeats everything; the repository keeps the history.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use rusqlite::{Connection, params};
use sluice_connector::WriteStrategy;
use sluice_model::{ChannelName, EventState, TableName};
use sluice_service::{CompareCommand, CompareSummary, Granularity, HubService, RefreshCommand};

use crate::args::{Global, Outcome};
use crate::local::{print_compare, run_compare, run_refresh};
use crate::output::{json, rate, table, thousands};

/// Options of `sluice quickstart`.
#[derive(Args, Debug)]
pub struct QuickstartArgs {
    /// Where to build it; its repository is `DIR/.sluice`.
    #[arg(long, default_value = "sluice-quickstart")]
    pub dir: PathBuf,
    /// Order items in the sample shop.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1000..=100_000_000))]
    pub rows: u64,
}

/// A small deterministic generator (SplitMix64): the same shop on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: i64) -> i64 {
        (self.next() % n as u64) as i64
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as i64) as usize]
    }

    fn chance(&mut self, percent: i64) -> bool {
        self.below(100) < percent
    }
}

const FIRST: &[&str] = &[
    "Zoë",
    "José",
    "Łukasz",
    "Søren",
    "Ayşe",
    "Nguyễn",
    "李雷",
    "Мария",
    "Ægir",
    "Renée",
    "Aarav",
    "Chloé",
    "Björn",
    "Fatima",
    "Ōta",
    "Siobhán",
    "Ana",
    "Jürgen",
    "Noa",
    "Emma",
    "Liam",
    "Olivia",
    "Mateo",
    "Sofía",
];
const LAST: &[&str] = &[
    "O'Brien",
    "Müller",
    "García",
    "Kowalski",
    "Øster",
    "Dubois",
    "Yılmaz",
    "Tanaka",
    "Смирнова",
    "Smith",
    "Rossi",
    "da Silva",
    "van Dijk",
    "Nowak",
    "Þórsson",
    "Ng",
    "Ferreira",
    "Novák",
];
const COUNTRIES: &[&str] = &[
    "BE", "NL", "DE", "FR", "PL", "JP", "BR", "US", "TR", "VN", "IS", "NO",
];
const PRODUCTS: &[&str] = &[
    "Café crème",
    "Smørbrød tray",
    "Tōkyō green tea",
    "Crème brûlée torch",
    "Jalapeño sauce",
    "Pão de queijo mix",
    "Kürbiskernöl",
    "Pierogi press",
    "Çay glass",
    "Bánh mì knife",
    "Skyr bowl",
    "Plain mug",
];
const STATUSES: &[&str] = &[
    "new",
    "paid",
    "shipped",
    "delivered",
    "returned",
    "cancelled",
];

/// `cents` as `123.45`.
fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// A timestamp text in 2022–2024, sometimes with microseconds.
fn moment(rng: &mut Rng) -> String {
    let base = chrono::NaiveDate::from_ymd_opt(2022, 1, 1)
        .expect("a valid date")
        .and_hms_opt(0, 0, 0)
        .expect("a valid time");
    let t = base + chrono::TimeDelta::seconds(rng.below(3 * 365 * 86_400));
    if rng.chance(30) {
        format!(
            "{}.{:06}",
            t.format("%Y-%m-%d %H:%M:%S"),
            rng.below(1_000_000)
        )
    } else {
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    }
}

const SHOP_SCHEMA: &str = r#"
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT,
    country VARCHAR(2) NOT NULL,
    vip BOOLEAN NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    sku VARCHAR(16) NOT NULL,
    name TEXT NOT NULL,
    price DECIMAL(10,2) NOT NULL,
    weight_kg REAL,
    launched DATE
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL,
    ordered_at DATETIME NOT NULL,
    status VARCHAR(12) NOT NULL,
    total DECIMAL(12,2) NOT NULL,
    note TEXT
);
CREATE TABLE order_items (
    order_id INTEGER NOT NULL,
    line_no INT NOT NULL,
    product_id INTEGER NOT NULL,
    quantity INT NOT NULL,
    unit_price DECIMAL(10,2) NOT NULL,
    discount DECIMAL(4,2),
    PRIMARY KEY (order_id, line_no)
);
"#;

const CUSTOMERS: i64 = 20_000;
const PRODUCT_COUNT: i64 = 2_000;

/// Builds the shop into `path` (through a temporary file, so a half-built shop never appears).
/// Returns the number of orders.
fn build_shop(path: &Path, items: i64) -> Result<i64> {
    let tmp = path.with_extension("db.building");
    let _ = std::fs::remove_file(&tmp);
    let mut conn = Connection::open(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA journal_mode = MEMORY;")?;
    conn.execute_batch(SHOP_SCHEMA)?;
    let mut rng = Rng(0x5_1u64 << 32 | 0xC0FFEE);
    let tx = conn.transaction()?;
    let order_count = fill_shop(&tx, items, &mut rng)?;
    tx.commit()?;
    drop(conn);
    std::fs::rename(&tmp, path).with_context(|| format!("move {} into place", path.display()))?;
    Ok(order_count)
}

fn fill_shop(tx: &rusqlite::Transaction<'_>, items: i64, rng: &mut Rng) -> Result<i64> {
    let mut stmt = tx.prepare("INSERT INTO customers VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
    for id in 1..=CUSTOMERS {
        let name = format!("{} {}", rng.pick(FIRST), rng.pick(LAST));
        let email = (!rng.chance(7)).then(|| format!("customer{id}@example.com"));
        let created = format!("{}+00:00", moment(rng));
        stmt.execute(params![
            id,
            name,
            email,
            rng.pick(COUNTRIES),
            rng.chance(10),
            created
        ])?;
    }
    let mut stmt = tx.prepare("INSERT INTO products VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
    let mut prices = Vec::with_capacity(PRODUCT_COUNT as usize);
    for id in 1..=PRODUCT_COUNT {
        let cents = 99 + rng.below(50_000);
        prices.push(cents);
        let weight = (!rng.chance(10)).then(|| (rng.below(20_000) as f64) / 1000.0);
        let launched = (!rng.chance(15)).then(|| moment(rng)[..10].to_owned());
        stmt.execute(params![
            id,
            format!("SKU-{id:06}"),
            format!("{} #{id}", rng.pick(PRODUCTS)),
            money(cents),
            weight,
            launched
        ])?;
    }
    let mut order = tx.prepare("INSERT INTO orders VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
    let mut item = tx.prepare("INSERT INTO order_items VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
    let (mut written, mut order_id) = (0i64, 0i64);
    while written < items {
        order_id += 1;
        let lines = (1 + rng.below(7)).min(items - written);
        let mut total = 0i64;
        for line in 1..=lines {
            let product = 1 + rng.below(PRODUCT_COUNT);
            let quantity = 1 + rng.below(5);
            let cents = prices[(product - 1) as usize];
            total += cents * quantity;
            let discount = rng.chance(20).then(|| money(5 * (1 + rng.below(6))));
            item.execute(params![
                order_id,
                line,
                product,
                quantity,
                money(cents),
                discount
            ])?;
        }
        written += lines;
        let note = rng.chance(8).then(|| {
            if rng.chance(50) {
                "Bitte vor 18 Uhr liefern — danke!".to_owned()
            } else {
                format!("gift for {} 🎁", rng.pick(FIRST))
            }
        });
        order.execute(params![
            order_id,
            1 + rng.below(CUSTOMERS),
            moment(rng),
            rng.pick(STATUSES),
            money(total),
            note
        ])?;
    }
    Ok(order_id)
}

/// The known changes made to the shop, and the row-wise differences they must produce.
struct Changes {
    /// (table, only on source, only on target, differ)
    expected: Vec<(&'static str, u64, u64, u64)>,
    description: String,
}

fn change_shop(path: &Path, orders: i64) -> Result<Changes> {
    ensure!(orders >= 500, "the shop is too small to change");
    let mut conn = Connection::open(path)?;
    let tx = conn.transaction()?;
    // 5 new orders with 12 items (3+3+2+2+2).
    for (i, lines) in [3i64, 3, 2, 2, 2].into_iter().enumerate() {
        let id = orders + 1 + i as i64;
        tx.execute(
            "INSERT INTO orders VALUES (?1, 42, '2025-01-15 09:30:00', 'new', '12.50', 'added by quickstart')",
            [id],
        )?;
        for line in 1..=lines {
            tx.execute(
                "INSERT INTO order_items VALUES (?1, ?2, 7, 1, '2.50', NULL)",
                params![id, line],
            )?;
        }
    }
    // 7 orders and 9 items updated.
    tx.execute(
        "UPDATE orders SET note = 'changed by quickstart ✓' WHERE id BETWEEN 101 AND 107",
        [],
    )?;
    tx.execute(
        "UPDATE order_items SET quantity = quantity + 100 WHERE order_id BETWEEN 301 AND 309 AND line_no = 1",
        [],
    )?;
    // 3 orders and 4 items deleted.
    tx.execute("DELETE FROM orders WHERE id BETWEEN 201 AND 203", [])?;
    tx.execute(
        "DELETE FROM order_items WHERE order_id BETWEEN 401 AND 404 AND line_no = 1",
        [],
    )?;
    tx.commit()?;
    Ok(Changes {
        expected: vec![
            ("customers", 0, 0, 0),
            ("order_items", 12, 4, 9),
            ("orders", 5, 3, 7),
            ("products", 0, 0, 0),
        ],
        description: "5 orders with 12 items added, 7 orders and 9 items updated, 3 orders and 4 items deleted".into(),
    })
}

const DEFINITIONS: &str = r#"# sluice quickstart: a sample shop replicated into a warehouse, both SQLite files.
hub:
  name: quickstart
  description: "sluice quickstart: shop to warehouse"
locations:
  shop:
    class: sqlite
    description: the sample shop (source)
    props:
      Database_Name: shop.db
  warehouse:
    class: sqlite
    description: the warehouse (target)
    props:
      Database_Name: warehouse.db
channels:
  sales:
    description: customers, products, orders and their items
    loc_groups:
      SOURCE: [shop]
      TARGET: [warehouse]
    tables:
      customers: {}
      products: {}
      orders: {}
      order_items: {}
    actions:
      - {type: Capture, loc_scope: SOURCE}
      - {type: Integrate, loc_scope: TARGET}
"#;

fn step(g: &Global, n: usize, text: impl std::fmt::Display) {
    if !g.json {
        say!("[{n}/7] {text}");
    }
}

fn check_identical(summary: &CompareSummary, when: &str) -> Result<()> {
    if summary.state != EventState::Done || !summary.identical {
        bail!(
            "quickstart self-check failed: the compare {when} did not find the tables identical: {}",
            summary.response
        );
    }
    Ok(())
}

fn check_changes(summary: &CompareSummary, changes: &Changes) -> Result<()> {
    for (table, only_source, only_target, differ) in &changes.expected {
        let t = summary
            .tables
            .iter()
            .find(|t| t.table.as_str() == *table)
            .with_context(|| format!("the compare did not report table {table}"))?;
        let d = t.diff.clone().unwrap_or_default();
        let got = (d.only_on_source, d.only_on_target, d.differ);
        if got != (*only_source, *only_target, *differ) {
            bail!(
                "quickstart self-check failed: table {table}: expected {only_source} only on source, {only_target} only on \
                 target, {differ} differing; the compare found {}, {}, {}",
                got.0,
                got.1,
                got.2
            );
        }
    }
    Ok(())
}

/// Runs the quickstart.
pub async fn run(args: QuickstartArgs, g: &Global) -> Result<Outcome> {
    let started = Instant::now();
    std::fs::create_dir_all(&args.dir).with_context(|| format!("create {}", args.dir.display()))?;
    let dir = args.dir.canonicalize()?;
    if !g.json {
        say!("sluice quickstart in {}\n", dir.display());
    }
    let t = Instant::now();
    let shop = dir.join("shop.db");
    let orders = tokio::task::spawn_blocking({
        let (shop, rows) = (shop.clone(), args.rows);
        move || build_shop(&shop, rows as i64)
    })
    .await??;
    step(
        g,
        1,
        format_args!(
            "built the sample shop: {} customers, {} products, {} orders, {} order items ({:.1} s)",
            thousands(CUSTOMERS as u64),
            thousands(PRODUCT_COUNT as u64),
            thousands(orders as u64),
            thousands(args.rows),
            t.elapsed().as_secs_f64()
        ),
    );

    let definitions = dir.join("sluice.yaml");
    std::fs::write(&definitions, DEFINITIONS)?;
    let svc = HubService::open_local(&dir.join(".sluice"), "quickstart")?;
    svc.apply_file(&definitions, None).await?;
    step(
        g,
        2,
        "applied sluice.yaml: hub quickstart, locations shop and warehouse, channel sales",
    );

    let hub = svc.resolve_hub(Some(&"quickstart".parse()?)).await?;
    let channel: ChannelName = "sales".parse()?;
    let refresh_cmd = |strategy| RefreshCommand {
        slicing: Default::default(),
        hub: hub.clone(),
        channel: channel.clone(),
        source: None,
        target: None,
        tables: Vec::<TableName>::new(),
        strategy: Some(strategy),
        batch_rows: None,
        count_first: true,
        mode: Default::default(),
        parallel: None,
    };
    let compare_cmd = |granularity| CompareCommand {
        slicing: Default::default(),
        hub: hub.clone(),
        channel: channel.clone(),
        source: None,
        target: None,
        tables: Vec::new(),
        granularity,
        max_listed: 5,
        pushdown: true,
        online: None,
    };

    step(g, 3, "refresh sales: shop → warehouse (truncate_load)");
    let first = run_refresh(&svc, refresh_cmd(WriteStrategy::TruncateLoad), g).await?;
    if first.state != EventState::Done {
        bail!("the refresh failed: {}", first.response);
    }

    let bulk = run_compare(&svc, compare_cmd(Granularity::Bulk), g).await?;
    check_identical(&bulk, "after the first refresh")?;
    step(
        g,
        4,
        format_args!("compare (counts and checksums): {}", bulk.response),
    );

    let changes = change_shop(&shop, orders)?;
    step(
        g,
        5,
        format_args!("changed the shop: {}", changes.description),
    );

    let rowwise = run_compare(&svc, compare_cmd(Granularity::Rowwise), g).await?;
    if !g.json {
        print_compare(&rowwise, g)?;
    }
    check_changes(&rowwise, &changes)?;
    step(
        g,
        6,
        "compare (row by row) reports exactly the changes made",
    );

    let second = run_refresh(&svc, refresh_cmd(WriteStrategy::StagingSwap), g).await?;
    if second.state != EventState::Done {
        bail!("the second refresh failed: {}", second.response);
    }
    let last = run_compare(&svc, compare_cmd(Granularity::Rowwise), g).await?;
    check_identical(&last, "after the second refresh")?;
    step(
        g,
        7,
        format_args!("refresh again (staging_swap), compare: {}", last.response),
    );

    if g.json {
        json(&serde_json::json!({
            "dir": dir,
            "first_refresh": first,
            "changes_compare": rowwise,
            "second_refresh": second,
            "seconds": started.elapsed().as_secs_f64(),
        }))?;
        return Ok(Outcome::Ok);
    }
    say!("\nfirst refresh, shop → warehouse:");
    let rows = first
        .tables
        .iter()
        .map(|t| {
            vec![
                t.table.to_string(),
                thousands(t.rows),
                format!("{:.2}", t.seconds),
                rate(t.rows, t.seconds),
            ]
        })
        .collect();
    say!("{}", table(&["table", "rows", "seconds", "rows/s"], rows));
    say!(
        "\nquickstart finished in {:.1} s. Next, try:",
        started.elapsed().as_secs_f64()
    );
    let cd = std::env::current_dir()
        .ok()
        .and_then(|cwd| dir.strip_prefix(&cwd).ok().map(Path::to_path_buf));
    say!("  cd {}", cd.unwrap_or(dir).display());
    let program = program();
    let hints = [
        ("status", "rows at both ends, last refresh and compare"),
        (
            "compare sales --rowwise",
            "row by row, listing differing keys",
        ),
        (
            "refresh sales --dry-run",
            "every statement a refresh would run",
        ),
        ("refresh sales --tables orders --strategy staging_swap", ""),
        ("event list", "what each operation did"),
        ("channel show sales", ""),
    ];
    let width = hints
        .iter()
        .filter(|(_, why)| !why.is_empty())
        .map(|(command, _)| program.len() + 1 + command.len())
        .max()
        .unwrap_or(0);
    for (command, why) in hints {
        let line = format!("{program} {command}");
        if why.is_empty() {
            say!("  {line}");
        } else {
            say!("  {line:width$}  # {why}");
        }
    }
    if program != "sluice" {
        say!(
            "(`sluice` on your PATH is not this binary; to put it there, run \
             `cargo install --path crates/sluice-cli --locked` in sluice's source checkout)"
        );
    }
    Ok(Outcome::Ok)
}

/// How to run this binary again: `sluice` when that name on the PATH (the first executable
/// file of that name, as a shell finds it) is this binary, else its absolute path, quoted for a
/// shell when it needs to be (a quickstart run with `cargo run` is not on the PATH).
fn program() -> String {
    use std::os::unix::fs::PermissionsExt;
    let me = std::env::current_exe().and_then(|p| p.canonicalize());
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("sluice"))
            .find(|p| {
                std::fs::metadata(p)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
            .and_then(|p| p.canonicalize().ok())
    });
    match (me, on_path) {
        (Ok(me), Some(found)) if me == found => "sluice".to_owned(),
        (Ok(me), _) => shell_word(&me.display().to_string()),
        (Err(_), _) => "sluice".to_owned(),
    }
}

/// `word` as one shell word: as it is when it holds only characters no shell treats specially,
/// else in single quotes.
fn shell_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_for_a_shell_when_they_need_to_be() {
        assert_eq!(
            shell_word("/opt/sluice/bin/sluice"),
            "/opt/sluice/bin/sluice"
        );
        assert_eq!(shell_word("/home/a b/sluice"), "'/home/a b/sluice'");
        assert_eq!(shell_word("/tmp/it's/sluice"), "'/tmp/it'\\''s/sluice'");
        assert_eq!(shell_word("/x/$HOME/sluice"), "'/x/$HOME/sluice'");
    }

    #[test]
    fn the_generator_is_deterministic() {
        let mut a = Rng(7);
        let mut b = Rng(7);
        for _ in 0..100 {
            assert_eq!(a.next(), b.next());
        }
        assert_eq!(money(12345), "123.45");
        assert_eq!(money(5), "0.05");
    }
}
