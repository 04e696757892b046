//! Printing: tables for people, JSON for scripts, and one-line errors with documented exit codes.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, ContentArrangement, Table};
use serde::Serialize;
use sluice_service::{ServiceError, ServiceErrorKind};

/// The work was interrupted by the user.
#[derive(Debug)]
pub struct Interrupted;

/// A job ran and failed; its tables' errors were already printed.
#[derive(Debug)]
pub struct JobFailed(pub String);

/// The user stopped waiting for a job that goes on on the hub server.
#[derive(Debug)]
pub struct StoppedWaiting(pub String);

impl std::fmt::Display for StoppedWaiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoppedWaiting {}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted; tables not yet committed were left as they were")
    }
}

impl std::error::Error for Interrupted {}

impl std::fmt::Display for JobFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JobFailed {}

/// A table with a header row; numeric columns are right-aligned.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(headers.iter().map(Cell::new));
    // Fit a real terminal; a terminal of unknown or tiny width (a pty without a size) would squeeze
    // every column to one character, so use the natural widths there.
    if t.width().is_none_or(|w| w < 60) {
        t.set_content_arrangement(ContentArrangement::Disabled);
    }
    for row in rows {
        t.add_row(row.into_iter().map(|v| {
            let numeric =
                !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || ",.-".contains(c));
            let cell = Cell::new(v);
            if numeric {
                cell.set_alignment(CellAlignment::Right)
            } else {
                cell
            }
        }));
    }
    t.to_string()
}

/// Prints `value` as pretty JSON.
pub fn json(value: &impl Serialize) -> anyhow::Result<()> {
    say!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub use sluice_model::text::thousands;

/// Rows per second, rounded, with thousands separators.
pub fn rate(rows: u64, seconds: f64) -> String {
    if seconds <= 0.0 {
        return "-".into();
    }
    thousands((rows as f64 / seconds).round() as u64)
}

/// What a refresh did to the target's rows: `12 inserted, 3 updated, 0 deleted`, or
/// `16 upserted` (an incremental refresh); empty for a table replaced whole.
pub fn changes(c: Option<&sluice_service::RowChanges>) -> String {
    use sluice_service::RowChanges;
    match c {
        None => String::new(),
        Some(RowChanges::Upserted { upserted }) => format!("{} upserted", thousands(*upserted)),
        Some(RowChanges::Merged {
            inserted,
            updated,
            deleted,
        }) => format!(
            "{} inserted, {} updated, {} deleted",
            thousands(*inserted),
            thousands(*updated),
            thousands(*deleted)
        ),
    }
}

/// A time in the local time zone, `2024-05-01 10:11:12`; empty for none.
pub fn when(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| {
        t.with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    })
    .unwrap_or_default()
}

/// Prints the error chain on one line (and definition errors one per line) and returns the exit
/// code.
pub fn report_error(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<Interrupted>().is_some()
        || error.downcast_ref::<StoppedWaiting>().is_some()
    {
        note!("error: {error}");
        return 130;
    }
    let service = error.chain().find_map(|e| e.downcast_ref::<ServiceError>());
    if let Some(service) = service {
        for d in service.diagnostics() {
            note!("{d}");
        }
    }
    note!("error: {error:#}");
    let client = error
        .chain()
        .find_map(|e| e.downcast_ref::<sluice_client::Error>());
    if let Some(client) = client {
        use sluice_client::ErrorKind;
        return match client.kind() {
            ErrorKind::Invalid | ErrorKind::NotFound | ErrorKind::Usage => 2,
            _ => 1,
        };
    }
    match service.map(ServiceError::kind) {
        Some(ServiceErrorKind::Invalid | ServiceErrorKind::NotFound) => 2,
        Some(ServiceErrorKind::Conflict) => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(rate(1000, 0.5), "2,000");
        assert_eq!(rate(1, 0.0), "-");
    }
}
