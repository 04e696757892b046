//! The lineage graph drawn on the server as SVG: layered left to right (a column per depth in
//! the flow graph), nodes stacked in their column, an edge per flow as a curve with an
//! arrowhead, labelled with its channel and coloured by its state. No script and no library;
//! every text from the repository is escaped.

use std::collections::BTreeMap;
use std::fmt::Write;

use sluice_service::lineage::{FlowState, Lineage};

/// Sizes in SVG units.
const NODE_W: f64 = 240.0;
const NODE_H: f64 = 44.0;
const GAP_X: f64 = 150.0;
const GAP_Y: f64 = 20.0;
const MARGIN: f64 = 16.0;
/// Characters of a node's lines that fit its box.
const FIT: usize = 36;

/// `text` safe inside SVG text and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `text` cut to `max` characters, with an ellipsis when cut.
fn fit(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

const STATES: [FlowState; 4] = [
    FlowState::Done,
    FlowState::Failed,
    FlowState::Running,
    FlowState::Never,
];

/// The lineage as an inline SVG element; a note when there is no flow.
pub(crate) fn lineage_svg(lineage: &Lineage) -> String {
    if lineage.nodes.is_empty() {
        return r#"<p class="empty" id="lineage-empty">no channel has a source and a target yet</p>"#
            .to_owned();
    }
    // Columns by depth; in each, nodes ordered by the mean row of what flows into them, so
    // edges cross less.
    let mut columns: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, n) in lineage.nodes.iter().enumerate() {
        columns.entry(n.depth).or_default().push(i);
    }
    let index: BTreeMap<&str, usize> = lineage
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut row: Vec<usize> = vec![0; lineage.nodes.len()];
    for members in columns.values_mut() {
        let key = |i: &usize| {
            let id = lineage.nodes[*i].id.as_str();
            let rows: Vec<f64> = lineage
                .edges
                .iter()
                .filter(|e| e.target == id)
                .filter_map(|e| index.get(e.source.as_str()))
                .filter(|s| lineage.nodes[**s].depth < lineage.nodes[*i].depth)
                .map(|s| row[*s] as f64)
                .collect();
            if rows.is_empty() {
                f64::MAX
            } else {
                rows.iter().sum::<f64>() / rows.len() as f64
            }
        };
        let mut keyed: Vec<(f64, usize)> = members.iter().map(|i| (key(i), *i)).collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        *members = keyed.into_iter().map(|(_, i)| i).collect();
        for (r, i) in members.iter().enumerate() {
            row[*i] = r;
        }
    }
    let depth_max = columns.keys().copied().max().unwrap_or(0);
    let rows_max = columns.values().map(Vec::len).max().unwrap_or(1);
    let width = 2.0 * MARGIN + (depth_max as f64 + 1.0) * NODE_W + depth_max as f64 * GAP_X;
    let height = 2.0 * MARGIN + rows_max as f64 * (NODE_H + GAP_Y) - GAP_Y + 24.0;
    let at = |i: usize| {
        let n = &lineage.nodes[i];
        (
            MARGIN + n.depth as f64 * (NODE_W + GAP_X),
            MARGIN + row[i] as f64 * (NODE_H + GAP_Y),
        )
    };

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="lineage" id="lineage-graph" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="lineage" xmlns="http://www.w3.org/2000/svg"><defs>"#
    );
    for s in STATES {
        let _ = write!(
            svg,
            r#"<marker id="arrow-{s}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{c}"/></marker>"#,
            s = s.as_str(),
            c = s.colour()
        );
    }
    svg.push_str("</defs>");

    // Edges first, so nodes sit on top; parallel flows between one pair fan out.
    let mut seen: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for e in &lineage.edges {
        let (Some(&s), Some(&t)) = (index.get(e.source.as_str()), index.get(e.target.as_str()))
        else {
            continue;
        };
        let nth = seen
            .entry((e.source.as_str(), e.target.as_str()))
            .or_default();
        let offset = *nth as f64 * 8.0;
        *nth += 1;
        let ((sx, sy), (tx, ty)) = (at(s), at(t));
        let (x1, y1) = (sx + NODE_W, sy + NODE_H / 2.0 + offset);
        let (x2, y2) = (tx, ty + NODE_H / 2.0 + offset);
        let path = if x2 > x1 {
            let mid = (x1 + x2) / 2.0;
            format!("M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}")
        } else {
            // Back to an earlier column (a cycle): around below both.
            let low = sy.max(ty) + NODE_H + GAP_Y / 2.0 + offset;
            format!(
                "M{x1},{y1} C{a},{y1} {a},{low} {m},{low} S{b},{y2} {x2},{y2}",
                a = x1 + 60.0,
                m = (x1 + x2) / 2.0,
                b = x2 - 60.0
            )
        };
        let state = e.state;
        let when = e
            .last_run
            .as_ref()
            .map(|r| format!(", {} {}", r.state, r.time.format("%Y-%m-%d %H:%M:%S")))
            .unwrap_or_default();
        let title = format!(
            "{hub}/{channel} table {table}: {src} → {tgt}, {state}{when}",
            hub = e.hub,
            channel = e.channel,
            table = e.table,
            src = e.source_location,
            tgt = e.target_location,
            state = state.as_str(),
        );
        let _ = write!(
            svg,
            r#"<g class="flow s-{st}" data-hub="{hub}" data-channel="{ch}" data-table="{tb}" data-state="{st}"><title>{title}</title><path d="{path}" fill="none" stroke="{c}" stroke-width="2" marker-end="url(#arrow-{st})"/>"#,
            st = state.as_str(),
            hub = escape(e.hub.as_str()),
            ch = escape(e.channel.as_str()),
            tb = escape(e.table.as_str()),
            title = escape(&title),
            c = state.colour(),
        );
        let (lx, ly) = if x2 > x1 {
            ((x1 + x2) / 2.0, (y1 + y2) / 2.0 - 4.0)
        } else {
            (
                (x1 + x2) / 2.0,
                sy.max(ty) + NODE_H + GAP_Y / 2.0 + offset - 4.0,
            )
        };
        let _ = write!(
            svg,
            r#"<text class="flow-label" x="{lx}" y="{ly}" text-anchor="middle" fill="{c}">{label}</text></g>"#,
            c = state.colour(),
            label = escape(&fit(e.channel.as_str(), 20)),
        );
    }

    for (i, n) in lineage.nodes.iter().enumerate() {
        let (x, y) = at(i);
        let _ = write!(
            svg,
            r#"<g class="node" data-id="{id}"><title>{title}</title><rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6"/><text class="node-label" x="{tx}" y="{ty1}">{label}</text><text class="node-db" x="{tx}" y="{ty2}">{db}</text></g>"#,
            id = escape(&n.id),
            title = escape(&format!("{}\n{}", n.label, n.database)),
            tx = x + 8.0,
            ty1 = y + 18.0,
            ty2 = y + 34.0,
            label = escape(&fit(&n.label, FIT)),
            db = escape(&fit(&n.database, FIT + 4)),
        );
    }

    // The legend, under the graph.
    let ly = height - 8.0;
    for (k, s) in STATES.iter().enumerate() {
        let x = MARGIN + k as f64 * 90.0;
        let _ = write!(
            svg,
            r#"<g class="legend"><line x1="{x}" y1="{y}" x2="{x2}" y2="{y}" stroke="{c}" stroke-width="3"/><text x="{tx}" y="{ty}">{name}</text></g>"#,
            y = ly - 4.0,
            x2 = x + 20.0,
            c = s.colour(),
            tx = x + 26.0,
            ty = ly,
            name = match s {
                FlowState::Done => "done",
                FlowState::Failed => "failed",
                FlowState::Running => "running",
                FlowState::Never => "never run",
            },
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_model::{ChannelName, HubName, LocationName, TableName};
    use sluice_service::lineage::{LineageEdge, LineageNode, NodeLocation};

    fn node(id: &str, label: &str, depth: usize) -> LineageNode {
        LineageNode {
            id: id.to_owned(),
            database: format!("sqlite:///{id}"),
            table: "t".to_owned(),
            locations: vec![NodeLocation {
                hub: HubName::new("h").unwrap(),
                location: LocationName::new("l").unwrap(),
            }],
            label: label.to_owned(),
            depth,
        }
    }

    fn edge(source: &str, target: &str, state: FlowState) -> LineageEdge {
        LineageEdge {
            hub: HubName::new("h").unwrap(),
            channel: ChannelName::new("c").unwrap(),
            table: TableName::new("t").unwrap(),
            source: source.to_owned(),
            target: target.to_owned(),
            source_location: LocationName::new("a").unwrap(),
            target_location: LocationName::new("b").unwrap(),
            state,
            last_run: None,
            replication: None,
        }
    }

    #[test]
    fn nodes_sit_in_columns_by_depth_and_text_is_escaped() {
        let lineage = Lineage {
            nodes: vec![
                node("a", "<script>&\"'", 0),
                node("b", "b: t", 1),
                node("c", "c: t", 2),
            ],
            edges: vec![
                edge("a", "b", FlowState::Done),
                edge("b", "c", FlowState::Failed),
                edge("c", "a", FlowState::Never),
            ],
        };
        let svg = lineage_svg(&lineage);
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;&amp;&quot;&#39;"));
        assert_eq!(svg.matches("<g class=\"node\"").count(), 3);
        assert_eq!(svg.matches("<g class=\"flow ").count(), 3);
        assert!(svg.contains(r#"data-state="failed""#));
        assert!(svg.contains(FlowState::Failed.colour()));
        // Column x by depth: 16, 16 + 390, 16 + 780.
        for x in ["x=\"16\"", "x=\"406\"", "x=\"796\""] {
            assert!(svg.contains(x), "{x} in {svg}");
        }
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }

    #[test]
    fn nothing_to_draw_says_so() {
        assert!(lineage_svg(&Lineage::default()).contains("lineage-empty"));
    }
}
