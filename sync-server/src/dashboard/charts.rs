//! Charts drawn on the server as inline SVG: no script, no library, no CDN. A chart
//! is a series of days with two stacked values (members, non-members).

use super::html::escape;
use std::fmt::Write;

const WIDTH: i64 = 860;
const HEIGHT: i64 = 220;
const LEFT: i64 = 90;
const BOTTOM: i64 = 24;
const TOP: i64 = 26;

/// One bar: its label (a day) and its two stacked values (drawn from zero; negative
/// values, a day of refunds, count as zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    /// The label under the first and last bar.
    pub label: String,
    /// The lower part (members).
    pub members: i64,
    /// The upper part (non-members).
    pub non_members: i64,
}

/// A stacked bar chart with its title, the largest value on the axis, and a legend.
pub fn stacked_bars(title: &str, bars: &[Bar]) -> String {
    let max = bars
        .iter()
        .map(|b| b.members.max(0).saturating_add(b.non_members.max(0)))
        .max()
        .unwrap_or(0)
        .max(1);
    let plot_w = WIDTH - LEFT - 10;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let n = i64::try_from(bars.len()).unwrap_or(i64::MAX).max(1);
    // Bars are placed by their share of the plot, not by a whole-pixel slot: with more
    // bars than pixels a rounded slot would squeeze them into the left part of it.
    let slot_start = |i: usize| LEFT + i64::try_from(i).unwrap_or(0).saturating_mul(plot_w) / n;
    let bar_w = (plot_w * 8 / (10 * n)).max(1);
    let scale = |v: i64| -> i64 {
        // Integer pixels: v ≤ max, so the product stays far below i64::MAX for any
        // figure a report can hold (i128 keeps it exact regardless).
        i64::try_from(i128::from(v.max(0)) * i128::from(plot_h) / i128::from(max)).unwrap_or(0)
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}"><title>{t}</title>"#,
        t = escape(title)
    );
    let _ = write!(
        svg,
        r##"<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{t}</text><text x="{x}" y="16" font-size="11" fill="#1f77b4">■ members</text><text x="{x2}" y="16" font-size="11" fill="#ff7f0e">■ non-members</text>"##,
        t = escape(title),
        x = WIDTH - 210,
        x2 = WIDTH - 120
    );
    let baseline = TOP + plot_h;
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{baseline}" x2="{right}" y2="{baseline}" stroke="#999"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{baseline}" stroke="#999"/><text x="{lx}" y="{ty}" font-size="11" text-anchor="end">{max}</text><text x="{lx}" y="{baseline}" font-size="11" text-anchor="end">0</text>"##,
        right = WIDTH - 10,
        lx = LEFT - 4,
        ty = TOP + 10,
    );
    for (i, bar) in bars.iter().enumerate() {
        let x = slot_start(i) + plot_w / (10 * n);
        let hm = scale(bar.members);
        let hn = scale(bar.non_members);
        let _ = write!(
            svg,
            r##"<rect x="{x}" y="{ym}" width="{bar_w}" height="{hm}" fill="#1f77b4"><title>{l}: members {m}</title></rect><rect x="{x}" y="{yn}" width="{bar_w}" height="{hn}" fill="#ff7f0e"><title>{l}: non-members {nm}</title></rect>"##,
            ym = baseline - hm,
            yn = baseline - hm - hn,
            l = escape(&bar.label),
            m = bar.members,
            nm = bar.non_members,
        );
    }
    if let (Some(first), Some(last)) = (bars.first(), bars.last()) {
        let _ = write!(
            svg,
            r#"<text x="{LEFT}" y="{y}" font-size="11">{f}</text><text x="{r}" y="{y}" font-size="11" text-anchor="end">{l}</text>"#,
            y = HEIGHT - 6,
            r = WIDTH - 10,
            f = escape(&first.label),
            l = escape(&last.label),
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(label: &str, members: i64, non_members: i64) -> Bar {
        Bar {
            label: label.into(),
            members,
            non_members,
        }
    }

    #[test]
    fn the_tallest_stack_fills_the_plot_and_labels_are_escaped() {
        let svg = stacked_bars("Revenue <daily>", &[bar("d1", 50, 50), bar("d2", 25, 0)]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("Revenue &lt;daily&gt;"));
        let plot_h = HEIGHT - TOP - BOTTOM;
        assert!(
            svg.contains(&format!(r#"height="{}""#, plot_h / 2)),
            "{svg}"
        );
        assert!(
            svg.contains(">100</text>"),
            "the axis shows the largest stack"
        );
        assert_eq!(svg.matches("<rect").count(), 4);
    }

    #[test]
    fn no_bars_or_negative_days_draw_without_panicking() {
        assert!(stacked_bars("empty", &[]).ends_with("</svg>"));
        let svg = stacked_bars("refunds", &[bar("d1", -5, -1)]);
        assert!(svg.contains(r#"height="0""#));
    }

    #[test]
    fn more_bars_than_pixels_still_span_the_whole_plot() {
        let bars: Vec<Bar> = (0..2_000).map(|i| bar(&format!("d{i}"), 1, 0)).collect();
        let svg = stacked_bars("many", &bars);
        let xs: Vec<i64> = svg
            .match_indices("<rect x=\"")
            .map(|(at, m)| {
                let rest = &svg[at + m.len()..];
                rest[..rest.find('"').unwrap()].parse().unwrap()
            })
            .collect();
        let plot_w = WIDTH - LEFT - 10;
        let last = *xs.iter().max().unwrap();
        assert!(last >= LEFT + plot_w * 9 / 10, "the last bar at {last}");
        assert!(last < WIDTH, "{last}");
    }
}
