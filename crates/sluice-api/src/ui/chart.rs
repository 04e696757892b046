//! Charts drawn on the server as SVG: a bar per refresh, newest on the right. No script and no
//! chart library; the SVG is inline in the page and holds only numbers and fixed words.

use std::fmt::Write;

/// Width and height of a chart, in SVG units.
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 180.0;
/// Room for the axis labels.
const LEFT: f64 = 64.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 12.0;

/// One bar: its value, the label under it and whether the refresh failed.
pub(crate) struct Bar {
    pub value: f64,
    pub label: String,
    pub failed: bool,
}

/// A number short enough for an axis: 950, 12.5k, 3.2M.
fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Labels are dates and event ids; anything else is dropped so the SVG stays well-formed.
fn label_text(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || " :-./".contains(*c))
        .collect()
}

/// A bar chart titled `title` with values in `unit`; a note when there is nothing to draw.
pub(crate) fn bars(title: &str, unit: &str, bars: &[Bar]) -> String {
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg">"#,
        t = label_text(title)
    );
    let plot_w = WIDTH - LEFT - 8.0;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let base = TOP + plot_h;
    let _ = write!(
        svg,
        r#"<line class="axis" x1="{LEFT}" y1="{base}" x2="{x2}" y2="{base}"/><line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}"/>"#,
        x2 = WIDTH - 8.0
    );
    if bars.is_empty() {
        let _ = write!(
            svg,
            r#"<text class="note" x="{x}" y="{y}" text-anchor="middle">no finished refresh yet</text></svg>"#,
            x = LEFT + plot_w / 2.0,
            y = TOP + plot_h / 2.0
        );
        return svg;
    }
    let max = bars
        .iter()
        .map(|b| b.value)
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let top = if max > 0.0 { max * 1.1 } else { 1.0 };
    for (i, tick) in [0.0, 0.5, 1.0].iter().enumerate() {
        let y = base - plot_h * tick;
        let _ = write!(
            svg,
            r#"<text class="tick" x="{x}" y="{y}" text-anchor="end" dy="4">{v}</text>"#,
            x = LEFT - 6.0,
            y = y,
            v = short(top * tick)
        );
        if i > 0 {
            let _ = write!(
                svg,
                r#"<line class="grid" x1="{LEFT}" y1="{y}" x2="{x2}" y2="{y}"/>"#,
                x2 = WIDTH - 8.0
            );
        }
    }
    let slot = plot_w / bars.len() as f64;
    let width = (slot * 0.7).clamp(1.0, 36.0);
    for (i, bar) in bars.iter().enumerate() {
        let value = if bar.value.is_finite() {
            bar.value.max(0.0)
        } else {
            0.0
        };
        let h = plot_h * value / top;
        let x = LEFT + slot * i as f64 + (slot - width) / 2.0;
        let class = if bar.failed { "bar failed" } else { "bar" };
        let _ = write!(
            svg,
            r#"<rect class="{class}" x="{x:.1}" y="{y:.1}" width="{width:.1}" height="{h:.1}"><title>{label}: {v} {unit}</title></rect>"#,
            y = base - h,
            label = label_text(&bar.label),
            v = short(value),
            unit = label_text(unit),
        );
    }
    let first = label_text(&bars[0].label);
    let last = label_text(&bars[bars.len() - 1].label);
    let _ = write!(
        svg,
        r#"<text class="tick" x="{LEFT}" y="{y}">{first}</text><text class="tick" x="{x}" y="{y}" text-anchor="end">{last}</text><text class="unit" x="{LEFT}" y="{TOP}" dx="4" dy="8">{unit}</text></svg>"#,
        y = HEIGHT - 6.0,
        x = WIDTH - 8.0,
        unit = label_text(unit),
    );
    svg
}

/// One line of a [`lines`] chart: its CSS class (`capture`, `integrate`), its name in the
/// legend, and a value per sample (`None`: not known then).
pub(crate) struct Line {
    pub class: &'static str,
    pub name: &'static str,
    pub values: Vec<Option<f64>>,
}

/// A line chart of samples taken over time (oldest left), labelled with the first and last
/// sample's time; a note when there is nothing to draw.
pub(crate) fn lines(title: &str, unit: &str, first: &str, last: &str, lines: &[Line]) -> String {
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg">"#,
        t = label_text(title)
    );
    let plot_w = WIDTH - LEFT - 8.0;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let base = TOP + plot_h;
    let _ = write!(
        svg,
        r#"<line class="axis" x1="{LEFT}" y1="{base}" x2="{x2}" y2="{base}"/><line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}"/>"#,
        x2 = WIDTH - 8.0
    );
    let finite = |v: &Option<f64>| v.filter(|v| v.is_finite()).map(|v| v.max(0.0));
    let samples = lines.iter().map(|l| l.values.len()).max().unwrap_or(0);
    if lines
        .iter()
        .all(|l| l.values.iter().all(|v| finite(v).is_none()))
    {
        let _ = write!(
            svg,
            r#"<text class="note" x="{x}" y="{y}" text-anchor="middle">no latency measured yet</text></svg>"#,
            x = LEFT + plot_w / 2.0,
            y = TOP + plot_h / 2.0
        );
        return svg;
    }
    let max = lines
        .iter()
        .flat_map(|l| l.values.iter().filter_map(finite))
        .fold(0.0_f64, f64::max);
    let top = if max > 0.0 { max * 1.1 } else { 1.0 };
    for (i, tick) in [0.0, 0.5, 1.0].iter().enumerate() {
        let y = base - plot_h * tick;
        let _ = write!(
            svg,
            r#"<text class="tick" x="{x}" y="{y}" text-anchor="end" dy="4">{v}</text>"#,
            x = LEFT - 6.0,
            v = short(top * tick)
        );
        if i > 0 {
            let _ = write!(
                svg,
                r#"<line class="grid" x1="{LEFT}" y1="{y}" x2="{x2}" y2="{y}"/>"#,
                x2 = WIDTH - 8.0
            );
        }
    }
    let step = if samples > 1 {
        plot_w / (samples - 1) as f64
    } else {
        0.0
    };
    for (n, line) in lines.iter().enumerate() {
        let points: Vec<String> = line
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                finite(v).map(|v| {
                    format!(
                        "{:.1},{:.1}",
                        LEFT + step * i as f64,
                        base - plot_h * v / top
                    )
                })
            })
            .collect();
        if !points.is_empty() {
            let _ = write!(
                svg,
                r#"<polyline class="line {class}" fill="none" points="{p}"><title>{name} ({unit})</title></polyline>"#,
                class = label_text(line.class),
                p = points.join(" "),
                name = label_text(line.name),
                unit = label_text(unit),
            );
        }
        let _ = write!(
            svg,
            r#"<text class="legend {class}" x="{x}" y="{TOP}" dy="8" text-anchor="end">{name}</text>"#,
            class = label_text(line.class),
            x = WIDTH - 8.0 - 90.0 * n as f64,
            name = label_text(line.name),
        );
    }
    let _ = write!(
        svg,
        r#"<text class="tick" x="{LEFT}" y="{y}">{first}</text><text class="tick" x="{x}" y="{y}" text-anchor="end">{last}</text><text class="unit" x="{LEFT}" y="{TOP}" dx="4" dy="8">{unit}</text></svg>"#,
        y = HEIGHT - 6.0,
        x = WIDTH - 8.0,
        first = label_text(first),
        last = label_text(last),
        unit = label_text(unit),
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value() {
        let svg = bars(
            "rows per second",
            "rows/s",
            &[
                Bar {
                    value: 100.0,
                    label: "2026-01-01 10:00".into(),
                    failed: false,
                },
                Bar {
                    value: 50.0,
                    label: "<script>".into(),
                    failed: true,
                },
            ],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("bar failed"));
        assert!(!svg.contains("<script"));
        // The tallest bar fills 1/1.1 of the plot: 144 * 100 / 110.
        assert!(svg.contains(r#"height="130.9""#), "{svg}");
        assert!(svg.contains(r#"height="65.5""#), "{svg}");
    }

    #[test]
    fn empty_chart_says_so() {
        let svg = bars("sync duration", "s", &[]);
        assert!(svg.contains("no finished refresh yet"));
        assert!(!svg.contains("<rect"));
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn lines_draw_known_samples_and_skip_unknown_ones() {
        let svg = lines(
            "lag",
            "s",
            "10:00:00",
            "10:00:04",
            &[
                Line {
                    class: "capture",
                    name: "capture",
                    values: vec![Some(0.5), None, Some(2.0)],
                },
                Line {
                    class: "integrate",
                    name: "integrate",
                    values: vec![None, None, Some(f64::NAN)],
                },
            ],
        );
        assert_eq!(svg.matches("<polyline").count(), 1, "{svg}");
        let points = svg
            .split(r#"points=""#)
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(points.split(' ').count(), 2, "{points}");
        assert!(svg.contains("10:00:04") && svg.contains(">integrate<"));
        let empty = lines("lag", "s", "", "", &[]);
        assert!(empty.contains("no latency measured yet"));
    }
}
