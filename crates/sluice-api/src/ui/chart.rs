//! Charts drawn on the server as SVG: a bar per refresh (newest on the right) and lines of
//! samples over time. No script and no chart library; the SVG is inline in the page, and every
//! text in it is escaped.
//!
//! The value axis starts at 0 and ends on a rounded tick: 3 to 5 ticks a step of 1, 2, 2.5 or
//! 5 times a power of ten apart ([`value_ticks`]), each labelled with its unit and grid line.
//! The time axis has up to six labels, on whole seconds, minutes, hours or days where the
//! chart's times are continuous ([`time_ticks`]), short when the chart spans one day. Whatever
//! is coloured is named in a legend: failed runs, and each line when there are several.

use std::fmt::Write;

use chrono::{DateTime, Datelike, TimeDelta, Utc};

/// Width and height of a chart, in SVG units.
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 190.0;
/// Room for the value labels (left), the legend (top) and the time labels (bottom).
const LEFT: f64 = 80.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 24.0;
const BOTTOM: f64 = 26.0;
/// The plot: its width, height and the y of its base line (value 0).
const PLOT_W: f64 = WIDTH - LEFT - RIGHT;
const PLOT_H: f64 = HEIGHT - TOP - BOTTOM;
const BASE: f64 = TOP + PLOT_H;
/// About how wide a character of a label is, to keep labels inside the chart.
const CHAR_W: f64 = 5.6;
/// The most time labels a bar chart shows.
const BAR_LABELS: usize = 6;
/// The most ticks of the time axis.
const TIME_TICKS: i64 = 6;
/// The steps of the time axis, in seconds: whole seconds, minutes, hours, days, weeks, months.
const TIME_STEPS: [i64; 24] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400,
    172_800, 604_800, 1_209_600, 2_592_000, 7_776_000, 31_536_000,
];

/// One bar: a finished run's value, when it started and whether it failed (or was canceled).
pub(crate) struct Bar {
    pub value: f64,
    pub at: DateTime<Utc>,
    pub failed: bool,
}

/// One line of a [`lines`] chart: its CSS class (`capture`, `integrate`), its name in the
/// legend, and a value per sample (`None`: not known then).
pub(crate) struct Line {
    pub class: &'static str,
    pub name: &'static str,
    pub values: Vec<Option<f64>>,
}

/// The ticks of a value axis from 0 up to at least `max`, evenly spaced by the smallest step
/// of 1, 2, 2.5 or 5 times a power of ten that needs at most 4 intervals: 3 to 5 ticks. No
/// positive maximum (nothing measured, all zeros) gives the axis 0 to 1.
pub(crate) fn value_ticks(max: f64) -> Vec<f64> {
    let max = if max.is_finite() && max > 0.0 {
        max.clamp(1e-9, 1e300)
    } else {
        1.0
    };
    // The smallest candidate step is at most a quarter of `max`, so it needs 4 intervals or
    // more; the candidates of the next two powers of ten include one that needs at most 4.
    let start = (max / 4.0).log10().floor() as i32;
    for exp in start..=start + 1 {
        for mantissa in [1.0, 2.0, 2.5, 5.0] {
            let step = mantissa * 10f64.powi(exp);
            // A hair below an exact multiple still counts as that multiple.
            let intervals = (max / step * (1.0 - 1e-9)).ceil().max(1.0);
            if intervals <= 4.0 {
                return (0..=intervals as usize).map(|i| i as f64 * step).collect();
            }
        }
    }
    vec![0.0, max]
}

/// The label of a value tick: a k or M suffix from a thousand on, as many decimals as the
/// axis's `step` needs (none trailing), thousands separated: `0`, `0.25`, `750k`, `1M`.
fn value_label(v: f64, step: f64) -> String {
    let (div, suffix) = if v >= 1e6 {
        (1e6, "M")
    } else if v >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    let text = format!("{:.*}", decimals(step / div), v / div);
    format!("{}{suffix}", grouped(trim_zeros(&text)))
}

/// How many decimals write every multiple of `step` exactly (at most 6).
fn decimals(step: f64) -> usize {
    (0..6)
        .find(|&d| {
            let x = step * 10f64.powi(d as i32);
            (x - x.round()).abs() < 1e-6 * x.max(1.0)
        })
        .unwrap_or(6)
}

/// `text` (a formatted number) without trailing zeros after its point, nor a bare point.
fn trim_zeros(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

/// `text` (a formatted number) with its whole part in groups of three: 1,234,567.5.
fn grouped(text: &str) -> String {
    let (sign, digits) = text.strip_prefix('-').map_or(("", text), |d| ("-", d));
    let (whole, fraction) = digits
        .split_once('.')
        .map_or((digits, None), |(w, f)| (w, Some(f)));
    let mut out = String::from(sign);
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if let Some(f) = fraction {
        out.push('.');
        out.push_str(f);
    }
    out
}

/// A measured value as a tooltip shows it: whole and thousands separated from 100 on, else
/// with three significant digits.
fn figure(v: f64) -> String {
    if v >= 100.0 {
        grouped(&format!("{v:.0}"))
    } else if v > 0.0 {
        let d = (2 - v.log10().floor() as i32).clamp(0, 9) as usize;
        trim_zeros(&format!("{v:.d$}")).to_owned()
    } else {
        "0".to_owned()
    }
}

/// Instants on whole multiples (since the epoch, UTC) of a step from `first` to `last`, the
/// step the smallest of [`TIME_STEPS`] that gives at most six; and that step.
pub(crate) fn time_ticks(
    first: DateTime<Utc>,
    last: DateTime<Utc>,
) -> (Vec<DateTime<Utc>>, TimeDelta) {
    let (lo, hi) = (
        first.min(last).timestamp_millis(),
        first.max(last).timestamp_millis(),
    );
    let span = hi - lo;
    let step = TIME_STEPS
        .iter()
        .map(|s| s * 1000)
        .find(|s| span / s < TIME_TICKS)
        .unwrap_or_else(|| {
            let year = 31_536_000_000;
            year * (span / year / (TIME_TICKS - 1) + 1)
        });
    let ticks = (lo.div_euclid(step) + i64::from(lo.rem_euclid(step) != 0)..=hi.div_euclid(step))
        .filter_map(|k| DateTime::from_timestamp_millis(k * step))
        .collect();
    (ticks, TimeDelta::milliseconds(step))
}

/// How time labels `step` apart between `first` and `last` are written: the time of day when
/// they fall on one day (with seconds when they are under a minute apart), else the date too,
/// with the year when they span years; only the date when they are days apart.
fn time_format(first: DateTime<Utc>, last: DateTime<Utc>, step: TimeDelta) -> &'static str {
    let seconds = step < TimeDelta::minutes(1);
    let days = step >= TimeDelta::days(1);
    if first.date_naive() == last.date_naive() {
        if seconds { "%H:%M:%S" } else { "%H:%M" }
    } else if first.year() == last.year() {
        match (days, seconds) {
            (true, _) => "%b %d",
            (_, true) => "%b %d %H:%M:%S",
            _ => "%b %d %H:%M",
        }
    } else if days {
        "%Y-%m-%d"
    } else {
        "%Y-%m-%d %H:%M"
    }
}

/// `s` escaped for SVG text and attribute values (control characters, which XML forbids,
/// dropped).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The opening tag of a chart titled `title`.
fn open(title: &str) -> String {
    format!(
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg">"#,
        t = escape(title)
    )
}

/// The two axes, drawn over the plot.
fn axes(svg: &mut String) {
    let _ = write!(
        svg,
        r#"<line class="axis" x1="{LEFT}" y1="{BASE}" x2="{x2}" y2="{BASE}"/><line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{BASE}"/>"#,
        x2 = WIDTH - RIGHT
    );
}

/// The axes with `note` in the middle of the plot, and the end of the chart.
fn nothing(mut svg: String, note: &str) -> String {
    axes(&mut svg);
    let _ = write!(
        svg,
        r#"<text class="note" x="{x}" y="{y}" text-anchor="middle">{note}</text></svg>"#,
        x = LEFT + PLOT_W / 2.0,
        y = TOP + PLOT_H / 2.0,
        note = escape(note)
    );
    svg
}

/// The labels of the value axis at `ticks`, with `unit`, and a grid line at each above 0.
fn value_axis(svg: &mut String, ticks: &[f64], unit: &str) {
    let (top, step) = (axis_top(ticks), ticks.get(1).copied().unwrap_or(1.0));
    for &tick in ticks {
        let y = BASE - PLOT_H * tick / top;
        let _ = write!(
            svg,
            r#"<text class="tick" x="{x}" y="{y:.1}" text-anchor="end" dy="4">{v} {unit}</text>"#,
            x = LEFT - 6.0,
            v = value_label(tick, step),
            unit = escape(unit),
        );
        if tick > 0.0 {
            let _ = write!(
                svg,
                r#"<line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{x2}" y2="{y:.1}"/>"#,
                x2 = WIDTH - RIGHT
            );
        }
    }
}

/// The highest of `ticks` (1 when there is none, so it can divide).
fn axis_top(ticks: &[f64]) -> f64 {
    ticks.last().copied().filter(|t| *t > 0.0).unwrap_or(1.0)
}

/// A label of the time axis at `x` (kept inside the chart), with a tick mark on the axis.
fn time_label(svg: &mut String, x: f64, text: &str) {
    let half = text.chars().count() as f64 * CHAR_W / 2.0;
    let _ = write!(
        svg,
        r#"<line class="axis" x1="{x:.1}" y1="{BASE}" x2="{x:.1}" y2="{y2}"/><text class="tick" x="{tx:.1}" y="{y}" text-anchor="middle">{t}</text>"#,
        y2 = BASE + 4.0,
        tx = x.clamp(half.min(WIDTH / 2.0), (WIDTH - half).max(WIDTH / 2.0)),
        y = HEIGHT - 8.0,
        t = escape(text),
    );
}

/// What a legend entry shows before its text.
enum Key {
    /// A box of this class (`done`, `failed`), as bars are.
    Box(&'static str),
    /// A stroke of this line class (`capture`, `integrate`).
    Stroke(&'static str),
}

/// A legend above the plot, flush right.
fn legend(svg: &mut String, entries: &[(Key, String)]) {
    const GAP: f64 = 14.0;
    let widths: Vec<f64> = entries
        .iter()
        .map(|(_, text)| 14.0 + text.chars().count() as f64 * CHAR_W)
        .collect();
    let total = widths.iter().sum::<f64>() + GAP * entries.len().saturating_sub(1) as f64;
    let mut x = (WIDTH - RIGHT - total).max(LEFT);
    let y = TOP - 10.0;
    svg.push_str(r#"<g class="legend">"#);
    for ((key, text), width) in entries.iter().zip(widths) {
        let _ = match key {
            Key::Box(class) => write!(
                svg,
                r#"<rect class="key {class}" x="{x:.1}" y="{y0:.1}" width="10" height="10"/>"#,
                y0 = y - 8.0,
            ),
            Key::Stroke(class) => write!(
                svg,
                r#"<line class="line {class}" x1="{x:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y1:.1}"/>"#,
                y1 = y - 3.0,
                x2 = x + 10.0,
            ),
        };
        let _ = write!(
            svg,
            r#"<text class="legend" x="{tx:.1}" y="{y:.1}">{t}</text>"#,
            tx = x + 14.0,
            t = escape(text),
        );
        x += width + GAP;
    }
    svg.push_str("</g>");
}

/// A bar chart titled `title` with values in `unit`, a bar per run in the order given (oldest
/// first), the start of up to six of them under the axis; a note when there is nothing to draw.
pub(crate) fn bars(title: &str, unit: &str, bars: &[Bar]) -> String {
    let mut svg = open(title);
    if bars.is_empty() {
        return nothing(svg, "no finished refresh yet");
    }
    let value = |b: &Bar| {
        if b.value.is_finite() {
            b.value.max(0.0)
        } else {
            0.0
        }
    };
    let ticks = value_ticks(bars.iter().map(value).fold(0.0, f64::max));
    let top = axis_top(&ticks);
    value_axis(&mut svg, &ticks, unit);
    if bars.iter().any(|b| b.failed) {
        legend(
            &mut svg,
            &[
                (Key::Box("done"), "done".to_owned()),
                (Key::Box("failed"), "failed or canceled".to_owned()),
            ],
        );
    }
    let slot = PLOT_W / bars.len() as f64;
    let width = (slot * 0.7).clamp(1.0, 36.0);
    for (i, bar) in bars.iter().enumerate() {
        let v = value(bar);
        let h = PLOT_H * v / top;
        let (class, outcome) = if bar.failed {
            ("bar failed", ", failed or canceled")
        } else {
            ("bar", "")
        };
        let _ = write!(
            svg,
            r#"<rect class="{class}" x="{x:.1}" y="{y:.1}" width="{width:.1}" height="{h:.1}"><title>{at}: {v} {unit}{outcome}</title></rect>"#,
            x = LEFT + slot * i as f64 + (slot - width) / 2.0,
            y = BASE - h,
            at = bar.at.format("%Y-%m-%d %H:%M:%S"),
            v = figure(v),
            unit = escape(unit),
        );
    }
    // Every bar labelled, or every second, third… counting from the newest: at most six.
    let stride = bars.len().div_ceil(BAR_LABELS);
    let mut labelled: Vec<usize> = (0..bars.len()).rev().step_by(stride).collect();
    labelled.reverse();
    let gap = labelled
        .windows(2)
        .map(|w| (bars[w[1]].at - bars[w[0]].at).abs())
        .min()
        .unwrap_or_default();
    let (first, last) = bars.iter().fold((bars[0].at, bars[0].at), |(lo, hi), b| {
        (lo.min(b.at), hi.max(b.at))
    });
    let format = time_format(first, last, gap);
    for i in labelled {
        let x = LEFT + slot * (i as f64 + 0.5);
        time_label(&mut svg, x, &bars[i].at.format(format).to_string());
    }
    axes(&mut svg);
    svg.push_str("</svg>");
    svg
}

/// A line chart of samples taken at `times` (oldest first; a line's `i`th value is the sample
/// at `times[i]`), on a time axis with rounded ticks; a legend when there are several lines;
/// a note when there is nothing to draw.
pub(crate) fn lines(title: &str, unit: &str, times: &[DateTime<Utc>], lines: &[Line]) -> String {
    let mut svg = open(title);
    let finite = |v: &Option<f64>| v.filter(|v| v.is_finite()).map(|v| v.max(0.0));
    let known = |l: &Line| -> Vec<(DateTime<Utc>, f64)> {
        l.values
            .iter()
            .zip(times)
            .filter_map(|(v, t)| finite(v).map(|v| (*t, v)))
            .collect()
    };
    let points: Vec<Vec<(DateTime<Utc>, f64)>> = lines.iter().map(known).collect();
    let (Some(first), Some(last)) = (times.iter().min(), times.iter().max()) else {
        return nothing(svg, "no latency measured yet");
    };
    if points.iter().all(Vec::is_empty) {
        return nothing(svg, "no latency measured yet");
    }
    let (first, last) = (*first, *last);
    let max = points.iter().flatten().map(|(_, v)| *v).fold(0.0, f64::max);
    let ticks = value_ticks(max);
    let top = axis_top(&ticks);
    value_axis(&mut svg, &ticks, unit);
    let span = (last - first).num_milliseconds() as f64;
    let x_of = |t: DateTime<Utc>| {
        if span > 0.0 {
            LEFT + PLOT_W * (t - first).num_milliseconds() as f64 / span
        } else {
            LEFT + PLOT_W / 2.0
        }
    };
    let y_of = |v: f64| BASE - PLOT_H * v / top;
    for (line, points) in lines.iter().zip(&points) {
        if points.is_empty() {
            continue;
        }
        let class = escape(line.class);
        let name = escape(line.name);
        let p: Vec<String> = points
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x_of(*t), y_of(*v)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline class="line {class}" fill="none" points="{p}"><title>{name} ({unit})</title></polyline>"#,
            p = p.join(" "),
            unit = escape(unit),
        );
        // A line of one sample draws nothing: a dot shows it.
        if let [(t, v)] = points.as_slice() {
            let _ = write!(
                svg,
                r#"<circle class="dot {class}" cx="{x:.1}" cy="{y:.1}" r="2.5"><title>{name}: {f} {unit}</title></circle>"#,
                x = x_of(*t),
                y = y_of(*v),
                f = figure(*v),
                unit = escape(unit),
            );
        }
    }
    if lines.len() > 1 {
        let entries: Vec<(Key, String)> = lines
            .iter()
            .zip(&points)
            .map(|(l, p)| {
                let text = if p.is_empty() {
                    format!("{} (no sample)", l.name)
                } else {
                    l.name.to_owned()
                };
                (Key::Stroke(l.class), text)
            })
            .collect();
        legend(&mut svg, &entries);
    }
    let (mut ticks, mut step) = time_ticks(first, last);
    if ticks.len() < 2 {
        // Too short a span for two rounded ticks: its ends.
        ticks = if span > 0.0 {
            vec![first, last]
        } else {
            vec![first]
        };
        step = last - first;
    }
    let format = time_format(first, last, step);
    for t in ticks {
        time_label(&mut svg, x_of(t), &t.format(format).to_string());
    }
    axes(&mut svg);
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("a test instant")
            .with_timezone(&Utc)
    }

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() < 1e-9 * y.max(1.0))
    }

    fn labels(ticks: &[f64]) -> Vec<String> {
        ticks.iter().map(|t| value_label(*t, ticks[1])).collect()
    }

    #[test]
    fn value_ticks_are_round_steps() {
        let t = value_ticks(918_000.0);
        assert!(close(&t, &[0.0, 250e3, 500e3, 750e3, 1e6]), "{t:?}");
        assert_eq!(labels(&t), ["0", "250k", "500k", "750k", "1M"]);
        let t = value_ticks(0.67);
        assert!(close(&t, &[0.0, 0.2, 0.4, 0.6, 0.8]), "{t:?}");
        assert_eq!(labels(&t), ["0", "0.2", "0.4", "0.6", "0.8"]);
        let t = value_ticks(0.9);
        assert_eq!(labels(&t), ["0", "0.25", "0.5", "0.75", "1"]);
        let t = value_ticks(0.45);
        assert_eq!(labels(&t), ["0", "0.2", "0.4", "0.6"]);
        let t = value_ticks(2_300_000.0);
        assert_eq!(labels(&t), ["0", "1M", "2M", "3M"]);
        let t = value_ticks(7_200_000_000.0);
        assert_eq!(labels(&t), ["0", "2,000M", "4,000M", "6,000M", "8,000M"]);
        let t = value_ticks(12_345.0);
        assert_eq!(labels(&t), ["0", "5k", "10k", "15k"]);
        let t = value_ticks(1_800.0);
        assert_eq!(labels(&t), ["0", "500", "1k", "1.5k", "2k"]);
    }

    #[test]
    fn a_single_value_and_nothing_get_an_axis_too() {
        // One bar: its value under a rounded top.
        assert!(close(&value_ticks(42.0), &[0.0, 20.0, 40.0, 60.0]));
        assert!(close(&value_ticks(1.0), &[0.0, 0.25, 0.5, 0.75, 1.0]));
        // All zeros, or nothing finite: 0 to 1.
        for max in [0.0, -3.0, f64::NAN, f64::INFINITY] {
            assert!(
                close(&value_ticks(max), &[0.0, 0.25, 0.5, 0.75, 1.0]),
                "{max}"
            );
        }
    }

    #[test]
    fn value_ticks_hold_for_every_magnitude() {
        for exp in -6..=12 {
            for mantissa in [1.0, 1.01, 1.5, 2.0, 2.49, 3.3, 4.0, 5.5, 7.77, 9.99] {
                let max = mantissa * 10f64.powi(exp);
                let t = value_ticks(max);
                assert!((3..=5).contains(&t.len()), "{max}: {t:?}");
                assert!(
                    *t.last().unwrap_or(&0.0) >= max * (1.0 - 1e-9),
                    "{max}: {t:?}"
                );
                let step = t[1];
                let m = step / 10f64.powi(step.log10().floor() as i32);
                assert!(
                    [1.0, 2.0, 2.5, 5.0].iter().any(|n| (m - n).abs() < 1e-6),
                    "{max}: step {step}"
                );
            }
        }
    }

    #[test]
    fn time_ticks_fall_on_round_instants() {
        let (ticks, step) = time_ticks(at("2025-12-07T10:03:20Z"), at("2025-12-07T10:17:40Z"));
        assert_eq!(step, TimeDelta::minutes(5));
        let format = time_format(at("2025-12-07T10:03:20Z"), at("2025-12-07T10:17:40Z"), step);
        let text: Vec<String> = ticks.iter().map(|t| t.format(format).to_string()).collect();
        assert_eq!(text, ["10:05", "10:10", "10:15"]);
        // Across midnight: the date too.
        let (first, last) = (at("2025-12-06T22:00:00Z"), at("2025-12-07T10:00:00Z"));
        let (ticks, step) = time_ticks(first, last);
        let text: Vec<String> = ticks
            .iter()
            .map(|t| t.format(time_format(first, last, step)).to_string())
            .collect();
        assert_eq!(
            text,
            [
                "Dec 07 00:00",
                "Dec 07 03:00",
                "Dec 07 06:00",
                "Dec 07 09:00"
            ]
        );
        // Seconds apart: with seconds.
        let (first, last) = (at("2025-12-07T10:00:01.5Z"), at("2025-12-07T10:00:09Z"));
        let (ticks, step) = time_ticks(first, last);
        assert_eq!(step, TimeDelta::seconds(2));
        assert_eq!(ticks.len(), 4);
        assert_eq!(time_format(first, last, step), "%H:%M:%S");
        for (first, last) in [
            ("2025-12-07T10:00:00Z", "2025-12-07T10:00:00Z"),
            ("2025-01-01T00:00:00Z", "2025-01-01T00:00:59Z"),
            ("2025-01-01T00:00:00Z", "2025-03-01T17:00:00Z"),
            ("2019-05-01T00:00:00Z", "2025-03-01T17:00:00Z"),
        ] {
            let (ticks, _) = time_ticks(at(first), at(last));
            assert!((1..=6).contains(&ticks.len()), "{first}..{last}: {ticks:?}");
        }
    }

    fn bar(value: f64, at_: &str, failed: bool) -> Bar {
        Bar {
            value,
            at: at(at_),
            failed,
        }
    }

    #[test]
    fn bars_scale_to_a_rounded_top() {
        let svg = bars(
            "rows per second <script>",
            "rows/s",
            &[
                bar(100.0, "2026-01-01T10:00:00Z", false),
                bar(50.0, "2026-01-01T10:05:00Z", false),
            ],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 2, "{svg}");
        assert!(!svg.contains("<script") && svg.contains("&lt;script&gt;"));
        // The top tick is 100: the tallest bar fills the plot.
        assert!(svg.contains(&format!(r#"height="{PLOT_H:.1}""#)), "{svg}");
        assert!(
            svg.contains(&format!(r#"height="{:.1}""#, PLOT_H / 2.0)),
            "{svg}"
        );
        assert!(
            svg.contains(">100 rows/s<") && svg.contains(">0 rows/s<"),
            "{svg}"
        );
        assert_eq!(svg.matches(r#"class="grid""#).count(), 4, "{svg}");
        assert!(svg.contains(">10:00<") && svg.contains(">10:05<"), "{svg}");
        // Nothing red, so no legend.
        assert!(!svg.contains("legend") && !svg.contains("failed"), "{svg}");
    }

    #[test]
    fn a_failed_run_is_explained_in_a_legend() {
        let runs: Vec<Bar> = (0..12)
            .map(|i| {
                bar(
                    918_000.0 * (i + 1) as f64 / 12.0,
                    &format!("2025-12-07T{:02}:15:00Z", 8 + i),
                    i == 3,
                )
            })
            .collect();
        let svg = bars("rows per second of each refresh", "rows/s", &runs);
        assert!(svg.contains(r#"<rect class="bar failed""#), "{svg}");
        assert!(svg.contains(r#"<g class="legend">"#), "{svg}");
        assert!(
            svg.contains(">failed or canceled<") && svg.contains(">done<"),
            "{svg}"
        );
        assert!(
            svg.contains(">1M rows/s<") && svg.contains(">250k rows/s<"),
            "{svg}"
        );
        assert!(svg.contains("918,000 rows/s</title>"), "{svg}");
        // Every second of the twelve runs labelled, the newest among them.
        assert_eq!(svg.matches(r#"text-anchor="middle""#).count(), 6, "{svg}");
        assert!(svg.contains(">09:15<") && svg.contains(">19:15<"), "{svg}");
        assert!(!svg.contains(">08:15<"), "{svg}");
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
        let times = [
            at("2025-12-07T10:00:00Z"),
            at("2025-12-07T10:00:02Z"),
            at("2025-12-07T10:00:04Z"),
        ];
        let svg = lines(
            "lag",
            "s",
            &times,
            &[
                Line {
                    class: "capture",
                    name: "capture",
                    values: vec![Some(0.5), None, Some(0.67)],
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
        // The samples span the plot's width.
        assert!(points.starts_with(&format!("{LEFT:.1},")), "{points}");
        assert!(
            points.contains(&format!(" {:.1},", WIDTH - RIGHT)),
            "{points}"
        );
        // Rounded ticks in seconds, times of day, and a legend naming both lines.
        assert!(svg.contains(">0.8 s<") && svg.contains(">0.4 s<"), "{svg}");
        assert!(
            svg.contains(">10:00:00<") && svg.contains(">10:00:04<"),
            "{svg}"
        );
        assert!(svg.contains(r#"<line class="line capture""#), "{svg}");
        assert!(svg.contains(">integrate (no sample)<"), "{svg}");
        let empty = lines("lag", "s", &[], &[]);
        assert!(empty.contains("no latency measured yet"));
    }

    #[test]
    fn a_single_sample_is_a_dot() {
        let svg = lines(
            "lag",
            "s",
            &[at("2025-12-07T10:00:00Z")],
            &[Line {
                class: "capture",
                name: "capture",
                values: vec![Some(0.2)],
            }],
        );
        assert!(svg.contains(r#"<circle class="dot capture""#), "{svg}");
        assert!(svg.contains(r#"<polyline class="line capture""#), "{svg}");
        assert!(
            svg.contains(">10:00:00<") && !svg.contains("legend"),
            "{svg}"
        );
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(grouped("1234567.5"), "1,234,567.5");
        assert_eq!(grouped("999"), "999");
        assert_eq!(figure(918_234.4), "918,234");
        assert_eq!(figure(0.3421), "0.342");
        assert_eq!(figure(12.0), "12");
        assert_eq!(figure(0.0), "0");
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
