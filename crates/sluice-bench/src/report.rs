//! Printing results: tables for people, JSON for scripts (the shapes of the `sluice` command
//! line's own output).

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, ContentArrangement, Table};
use serde::Serialize;

/// A table with a header row; numeric columns are right-aligned.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(headers.iter().map(Cell::new));
    // Fit a real terminal; a terminal of unknown or tiny width would squeeze every column to one
    // character, so use the natural widths there.
    if t.width().is_none_or(|w| w < 60) {
        t.set_content_arrangement(ContentArrangement::Disabled);
    }
    for row in rows {
        t.add_row(row.into_iter().map(|v| {
            let numeric =
                !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || ",.-".contains(c));
            match numeric {
                true => Cell::new(v).set_alignment(CellAlignment::Right),
                false => Cell::new(v),
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
