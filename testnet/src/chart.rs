//! Small, dependency-free SVG charts for the reports of `phalanx bench` and
//! `phalanx faults`: line charts (throughput or latency against offered load,
//! throughput over time with marked events) and grouped bar charts (one group
//! per cell or category).
//!
//! The output is a self-contained SVG 1.1 document of 720 × 420 px with a
//! white background, a title, axis labels, "nice" ticks (1, 2 or 5 × 10^k)
//! with grid lines, and a legend above the plot, so it never covers data.
//! Colours come from a fixed colour-blind-friendly palette (Okabe–Ito,
//! without its yellow, which is unreadable on white) and cycle when there are
//! more series than colours.
//!
//! Rendering is robust and deterministic: non-finite values (NaN, ±∞) are
//! skipped, a chart without any finite value says "no data", a single point
//! or all-equal values get a non-empty range, all text is XML-escaped, and
//! every number is written with a fixed precision, so the same input always
//! gives the same bytes.
//!
//! ```
//! use phalanx_testnet::chart::{LineChart, Series};
//!
//! let chart = LineChart {
//!     title: "Throughput vs offered load".into(),
//!     x_label: "offered load (tx/s)".into(),
//!     y_label: "committed (tx/s)".into(),
//!     series: vec![Series::new("n = 4", vec![(1000.0, 990.0), (2000.0, 1950.0)])],
//!     markers: vec![],
//!     y_from_zero: true,
//! };
//! let svg = chart.to_svg();
//! assert!(svg.starts_with("<svg "));
//! ```

use std::fmt::Write as _;

/// Width of every chart, in px.
const WIDTH: f64 = 720.0;
/// Height of every chart, in px.
const HEIGHT: f64 = 420.0;
/// Font stack of all text.
const FONT: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";
/// Colour of axis lines and text.
const INK: &str = "#222222";
/// Colour of grid lines.
const GRID: &str = "#e2e2e2";
/// Colour of event markers.
const MARKER: &str = "#555555";
/// Series with more points than this are drawn without per-point circles
/// (they would merge into a thick line); isolated points keep theirs.
const CIRCLE_LIMIT: usize = 80;
/// Estimated advance of one character, as a fraction of the font size
/// (slightly generous, so that estimated labels never overlap).
const CHAR_WIDTH: f64 = 0.62;

/// The series colours, in order (Okabe–Ito without yellow); series `i` gets
/// `PALETTE[i % PALETTE.len()]`.
pub const PALETTE: [&str; 7] = [
    "#0072B2", // blue
    "#E69F00", // orange
    "#009E73", // bluish green
    "#D55E00", // vermillion
    "#CC79A7", // reddish purple
    "#56B4E9", // sky blue
    "#000000", // black
];

/// The colour of series number `index` (the palette, cycling).
pub fn series_colour(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}

/// One named line of a [`LineChart`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    /// Name shown in the legend.
    pub name: String,
    /// Points `(x, y)`, joined in the given order; points with a non-finite
    /// coordinate are skipped and break the line.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A series named `name` through `points`.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            name: name.into(),
            points,
        }
    }
}

/// A line chart: each series a polyline with a small circle per point, plus
/// labelled vertical markers (e.g. "fault injected" at some time).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LineChart {
    /// Title above the chart.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// The lines, one legend entry and colour each.
    pub series: Vec<Series>,
    /// Vertical dashed lines at `x`, with their label above the plot.
    /// Non-finite positions are skipped; finite ones widen the x range.
    pub markers: Vec<(f64, String)>,
    /// Whether the y axis includes 0 (it then also includes negative data).
    pub y_from_zero: bool,
}

/// One category of a [`BarChart`]: a bar per series.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BarGroup {
    /// Category label under the group.
    pub label: String,
    /// One value per series, in the order of [`BarChart::series_names`];
    /// non-finite values draw no bar.
    pub values: Vec<f64>,
}

/// A grouped bar chart: one group of bars per category, one bar per series,
/// each labelled with its value. Bars start at 0, so the y axis always
/// includes 0.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BarChart {
    /// Title above the chart.
    pub title: String,
    /// Label of the y axis.
    pub y_label: String,
    /// Series names, one legend entry and colour each (no legend if empty).
    pub series_names: Vec<String>,
    /// The categories, left to right.
    pub groups: Vec<BarGroup>,
    /// Decimals of the value labels above the bars (values of 10 000 and
    /// more are abbreviated instead: 12.3k, 1.5M).
    pub decimals: usize,
}

impl LineChart {
    /// Renders the chart as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        let finite: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|&(x, y)| x.is_finite() && y.is_finite())
            .collect();
        if finite.is_empty() {
            return no_data(&self.title);
        }
        let markers: Vec<(f64, &str)> = self
            .markers
            .iter()
            .filter(|(x, _)| x.is_finite())
            .map(|(x, l)| (*x, l.as_str()))
            .collect();

        let (mut x_lo, mut x_hi) = min_max(
            finite
                .iter()
                .map(|p| p.0)
                .chain(markers.iter().map(|m| m.0)),
        );
        let (mut y_lo, mut y_hi) = min_max(finite.iter().map(|p| p.1));
        if self.y_from_zero {
            y_lo = y_lo.min(0.0);
            y_hi = y_hi.max(0.0);
        }
        (x_lo, x_hi) = widen_degenerate(x_lo, x_hi);
        (y_lo, y_hi) = widen_degenerate(y_lo, y_hi);
        let x_ticks = nice_ticks(x_lo, x_hi, 7);
        let y_ticks = nice_ticks(y_lo, y_hi, 6);
        let x_labels = tick_labels(&x_ticks);
        let y_labels = tick_labels(&y_ticks);

        // Horizontal layout: room for the rotated y label and the y tick
        // labels on the left, half of the last x tick label on the right.
        let y_label_w = max_text_width(&y_labels, 11.0);
        let left = (34.0 + y_label_w + 8.0).round();
        let right = WIDTH
            - (text_width(x_labels.last().map_or("", |s| s), 11.0) / 2.0 + 12.0)
                .max(24.0)
                .round();

        // Vertical layout: title, legend rows, marker-label rows, plot.
        let names = legend_names(self.series.iter().map(|s| s.name.as_str()));
        let legend = layout_legend(&names);
        let x_scale = Scale::new(x_ticks[0], *x_ticks.last().unwrap_or(&1.0), left, right);
        let marker_rows = layout_marker_labels(&markers, &x_scale);
        let legend_top = 40.0;
        let band_top = legend_top + 18.0 * legend.rows as f64;
        let n_marker_rows = marker_rows.iter().map(|r| r.row + 1).max().unwrap_or(0);
        let top = band_top + 14.0 * n_marker_rows as f64 + 10.0;
        let bottom = HEIGHT - 48.0;
        let y_scale = Scale::new(y_ticks[0], *y_ticks.last().unwrap_or(&1.0), bottom, top);

        let mut svg = Svg::begin();
        svg.title(&self.title);
        svg.plot_area(left, top, right, bottom);
        // Grid and tick labels.
        for (t, label) in y_ticks.iter().zip(&y_labels) {
            let y = y_scale.map(*t);
            svg.line(left, y, right, y, GRID);
            svg.text(left - 6.0, y + 4.0, 11.0, "end", "", label);
        }
        for (t, label) in x_ticks.iter().zip(&x_labels) {
            let x = x_scale.map(*t);
            svg.line(x, top, x, bottom, GRID);
            svg.text(x, bottom + 16.0, 11.0, "middle", "", label);
        }
        // Axes, and a zero line when 0 is inside the y range.
        svg.line(left, bottom, right, bottom, INK);
        svg.line(left, top, left, bottom, INK);
        if y_ticks[0] < 0.0 && *y_ticks.last().unwrap_or(&0.0) > 0.0 {
            let y = y_scale.map(0.0);
            svg.line(left, y, right, y, "#999999");
        }
        svg.text(
            (left + right) / 2.0,
            HEIGHT - 12.0,
            12.0,
            "middle",
            "",
            &self.x_label,
        );
        svg.y_label(
            y_label_x(left, &y_labels),
            (top + bottom) / 2.0,
            &self.y_label,
        );

        // Markers: a dashed line through the plot, the label above it.
        for m in &marker_rows {
            let x = x_scale.map(m.x);
            svg.raw(&format!(
                "<g class=\"marker\"><line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{MARKER}\" stroke-width=\"1.5\" stroke-dasharray=\"5,4\"/>",
                num(x),
                num(top - 4.0),
                num(x),
                num(bottom)
            ));
            svg.text(
                m.centre,
                band_top + 14.0 * m.row as f64 + 10.0,
                11.0,
                "middle",
                MARKER,
                m.label,
            );
            svg.raw("</g>\n");
        }

        // Series.
        for (i, s) in self.series.iter().enumerate() {
            let colour = series_colour(i);
            let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
            for &(x, y) in &s.points {
                if x.is_finite() && y.is_finite() {
                    if let Some(seg) = segments.last_mut() {
                        seg.push((x_scale.map(x), y_scale.map(y)));
                    }
                } else if segments.last().is_some_and(|seg| !seg.is_empty()) {
                    segments.push(Vec::new());
                }
            }
            let n_points: usize = segments.iter().map(Vec::len).sum();
            svg.raw(&format!(
                "<g class=\"series\" stroke=\"{colour}\" fill=\"{colour}\">\n"
            ));
            for seg in segments.iter().filter(|seg| seg.len() > 1) {
                let pts: Vec<String> = seg
                    .iter()
                    .map(|&(x, y)| format!("{},{}", num(x), num(y)))
                    .collect();
                svg.raw(&format!(
                    "<polyline fill=\"none\" stroke-width=\"2\" stroke-linejoin=\"round\" points=\"{}\"/>\n",
                    pts.join(" ")
                ));
            }
            for seg in &segments {
                if n_points <= CIRCLE_LIMIT || seg.len() == 1 {
                    for &(x, y) in seg {
                        svg.raw(&format!(
                            "<circle cx=\"{}\" cy=\"{}\" r=\"3\"/>\n",
                            num(x),
                            num(y)
                        ));
                    }
                }
            }
            svg.raw("</g>\n");
        }

        svg.legend(&names, &legend, legend_top, true);
        svg.end()
    }
}

impl BarChart {
    /// Renders the chart as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        let values = || {
            self.groups
                .iter()
                .flat_map(|g| g.values.iter().copied())
                .filter(|v| v.is_finite())
        };
        if values().next().is_none() {
            return no_data(&self.title);
        }
        let (v_lo, v_hi) = min_max(values());
        let n_series = self
            .groups
            .iter()
            .map(|g| g.values.len())
            .chain([self.series_names.len(), 1])
            .max()
            .unwrap_or(1);
        let names = legend_names(self.series_names.iter().map(String::as_str));
        let legend = layout_legend(&names);
        let top = 40.0 + 18.0 * legend.rows as f64 + 8.0;

        // The left margin depends on the tick labels, which depend on the
        // room the value labels need, which depends on the bar width, which
        // depends on the left margin: iterate to a fixed point (in practice
        // it is reached after one or two rounds).
        let mut left = 60.0;
        let mut layout = self.layout(left, top, v_lo, v_hi, n_series);
        for _ in 0..4 {
            let needed = layout.min_left;
            if needed <= left {
                break;
            }
            left = needed;
            layout = self.layout(left, top, v_lo, v_hi, n_series);
        }
        let BarLayout {
            right,
            bottom,
            ticks,
            tick_labels,
            y_scale,
            group_w,
            bar_w,
            rotate_values,
            category_chars,
            rotate_categories,
            ..
        } = layout;

        let mut svg = Svg::begin();
        svg.title(&self.title);
        svg.plot_area(left, top, right, bottom);
        for (t, label) in ticks.iter().zip(&tick_labels) {
            let y = y_scale.map(*t);
            svg.line(left, y, right, y, GRID);
            svg.text(left - 6.0, y + 4.0, 11.0, "end", "", label);
        }
        let zero = y_scale.map(0.0);
        svg.line(left, top, left, bottom, INK);
        svg.line(left, bottom, right, bottom, INK);
        svg.y_label(
            y_label_x(left, &tick_labels),
            (top + bottom) / 2.0,
            &self.y_label,
        );

        for (g, group) in self.groups.iter().enumerate() {
            let centre = left + group_w * (g as f64 + 0.5);
            let bars_left = centre - bar_w * n_series as f64 / 2.0;
            svg.raw("<g class=\"group\">\n");
            for (i, &v) in group.values.iter().enumerate() {
                if !v.is_finite() {
                    continue;
                }
                let x = bars_left + bar_w * i as f64;
                let y = y_scale.map(v);
                let (y_top, h) = if y <= zero {
                    (y, zero - y)
                } else {
                    (zero, y - zero)
                };
                svg.raw(&format!(
                    "<rect class=\"bar\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"/>\n",
                    num(x + 1.0),
                    num(y_top),
                    num((bar_w - 2.0).max(1.0)),
                    num(h),
                    series_colour(i)
                ));
                let label = format_value(v, self.decimals);
                let cx = x + bar_w / 2.0;
                if rotate_values {
                    let (ly, anchor) = if v >= 0.0 {
                        (y - 4.0, "start")
                    } else {
                        (y + 4.0, "end")
                    };
                    svg.raw(&format!(
                        "<text class=\"value\" x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"{anchor}\" fill=\"{INK}\" transform=\"rotate(-90 {} {})\">{}</text>\n",
                        num(cx + 3.5),
                        num(ly),
                        num(cx + 3.5),
                        num(ly),
                        esc(&label)
                    ));
                } else {
                    let ly = if v >= 0.0 { y - 4.0 } else { y + 12.0 };
                    svg.raw(&format!(
                        "<text class=\"value\" x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\" fill=\"{INK}\">{}</text>\n",
                        num(cx),
                        num(ly),
                        esc(&label)
                    ));
                }
            }
            if rotate_categories {
                let label = truncate(&group.label, 30);
                let y = bottom + 14.0;
                svg.raw(&format!(
                    "<text class=\"category\" x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\" fill=\"{INK}\" transform=\"rotate(-40 {} {})\">{}</text>\n",
                    num(centre),
                    num(y),
                    num(centre),
                    num(y),
                    esc(&label)
                ));
            } else {
                let lines =
                    wrap(&group.label, category_chars).unwrap_or_else(|| vec![group.label.clone()]);
                for (k, line) in lines.iter().enumerate() {
                    svg.text(
                        centre,
                        bottom + 16.0 + 13.0 * k as f64,
                        11.0,
                        "middle",
                        "",
                        line,
                    );
                }
            }
            svg.raw("</g>\n");
        }
        // Draw the zero line over the bars' feet when 0 is not the bottom.
        if ticks[0] < 0.0 {
            svg.line(left, zero, right, zero, INK);
        }
        svg.legend(&names, &legend, 40.0, false);
        svg.end()
    }

    /// Computes the geometry of the chart for a given left margin.
    fn layout(&self, left: f64, top: f64, v_lo: f64, v_hi: f64, n_series: usize) -> BarLayout {
        let right = WIDTH - 20.0;
        let n_groups = self.groups.len().max(1);
        let group_w = (right - left) / n_groups as f64;
        let bar_w = (group_w * 0.8 / n_series as f64).min(56.0);

        // Category labels: one line, else wrapped on up to three, else
        // rotated.
        let max_chars = ((group_w - 6.0) / (11.0 * CHAR_WIDTH)).floor().max(1.0) as usize;
        let wrapped: Option<usize> = self
            .groups
            .iter()
            .map(|g| wrap(&g.label, max_chars).map(|lines| lines.len()))
            .try_fold(1, |acc, n| n.filter(|&n| n <= 3).map(|n| acc.max(n)));
        let (rotate_categories, bottom, min_left_categories) = match wrapped {
            Some(lines) => (false, HEIGHT - 14.0 - 13.0 * lines as f64 - 6.0, 0.0),
            None => {
                let widths: Vec<f64> = self
                    .groups
                    .iter()
                    .map(|g| text_width(&truncate(&g.label, 30), 11.0))
                    .collect();
                let widest = widths.iter().copied().fold(0.0, f64::max);
                let (sin, cos) = 40f64.to_radians().sin_cos();
                // The first label extends left of its group's centre.
                let first = widths.first().copied().unwrap_or(0.0);
                (
                    true,
                    HEIGHT - 16.0 - widest * sin - 8.0,
                    first * cos - group_w / 2.0 + 8.0,
                )
            }
        };
        let bottom = bottom.max(top + 80.0);

        // Value labels: horizontal if they all fit over their bar.
        let labels: Vec<String> = self
            .groups
            .iter()
            .flat_map(|g| g.values.iter())
            .filter(|v| v.is_finite())
            .map(|&v| format_value(v, self.decimals))
            .collect();
        let widest_value = max_text_width(&labels, 10.0);
        let rotate_values = widest_value > bar_w + 2.0;
        let need_px = if rotate_values {
            widest_value + 8.0
        } else {
            16.0
        };

        // Leave `need_px` between the tallest bar and the plot's edge: with
        // the data range [lo, hi] stretched to [lo', hi'] the bar tops sit at
        // least `need_px` from the edges if the stretch adds that fraction.
        let plot_h = bottom - top;
        let frac = (need_px / plot_h).min(0.5);
        let lo = v_lo.min(0.0);
        let hi = v_hi.max(0.0);
        let span = hi - lo;
        let (lo, hi) = if span > 0.0 {
            let stretch = span * frac / (1.0 - 2.0 * frac).max(0.2);
            (
                if lo < 0.0 { lo - stretch } else { lo },
                if hi > 0.0 { hi + stretch } else { hi },
            )
        } else {
            (0.0, 1.0)
        };
        let ticks = nice_ticks(lo, hi, 6);
        let tick_labels = tick_labels(&ticks);
        let y_scale = Scale::new(ticks[0], *ticks.last().unwrap_or(&1.0), bottom, top);
        let min_left = (34.0 + max_text_width(&tick_labels, 11.0) + 8.0)
            .round()
            .max(min_left_categories.round());
        BarLayout {
            right,
            bottom,
            ticks,
            tick_labels,
            y_scale,
            group_w,
            bar_w,
            rotate_values,
            category_chars: max_chars,
            rotate_categories,
            min_left,
        }
    }
}

/// The geometry of a bar chart.
struct BarLayout {
    right: f64,
    bottom: f64,
    ticks: Vec<f64>,
    tick_labels: Vec<String>,
    y_scale: Scale,
    group_w: f64,
    bar_w: f64,
    rotate_values: bool,
    /// Characters per line of a wrapped category label.
    category_chars: usize,
    rotate_categories: bool,
    /// Left margin this layout needs.
    min_left: f64,
}

/// A linear map from a data interval to a pixel interval.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scale {
    d0: f64,
    d1: f64,
    r0: f64,
    r1: f64,
}

impl Scale {
    /// Maps `d0 → r0` and `d1 → r1` (an empty data interval is widened by 1).
    fn new(d0: f64, d1: f64, r0: f64, r1: f64) -> Self {
        let d1 = if d1 == d0 { d0 + 1.0 } else { d1 };
        Scale { d0, d1, r0, r1 }
    }

    fn map(&self, v: f64) -> f64 {
        self.r0 + (v - self.d0) / (self.d1 - self.d0) * (self.r1 - self.r0)
    }
}

/// Tick values covering `[min, max]` with a step of 1, 2 or 5 × 10^k, chosen
/// so that the number of intervals is as close to `target` as possible
/// (ties go to the larger step). The first tick is ≤ `min`, the last ≥ `max`.
/// An empty range is widened around its value; non-finite bounds give
/// `[0, 1]`.
fn nice_ticks(min: f64, max: f64, target: usize) -> Vec<f64> {
    if !min.is_finite() || !max.is_finite() {
        return vec![0.0, 1.0];
    }
    let (lo, hi) = widen_degenerate(min.min(max), min.max(max));
    let target = target.max(1) as f64;
    let raw = (hi - lo) / target;
    let mag = 10f64.powi(raw.log10().floor() as i32);
    // A small tolerance keeps exact multiples (0.3 / 0.1 = 2.9999…) on their
    // tick instead of adding one more below or above.
    let span = |step: f64| {
        let first = (lo / step + 1e-9).floor();
        let last = (hi / step - 1e-9).ceil().max(first + 1.0);
        (first, last)
    };
    let mut best: Option<(f64, f64, f64)> = None;
    for mult in [10.0, 5.0, 2.0, 1.0] {
        let step = mult * mag;
        let (first, last) = span(step);
        let better = match best {
            None => true,
            Some((_, f, l)) => ((last - first) - target).abs() < ((l - f) - target).abs(),
        };
        if better {
            best = Some((step, first, last));
        }
    }
    let (step, first, last) = best.unwrap_or((1.0, lo.floor(), lo.floor() + 1.0));
    let n = ((last - first) as usize).min(1000);
    (0..=n)
        .map(|i| {
            let t = (first + i as f64) * step;
            if t.abs() < step * 1e-6 {
                0.0
            } else {
                t
            }
        })
        .collect()
}

/// Where the rotated y-axis label goes: left of the widest tick label.
fn y_label_x(left: f64, tick_labels: &[String]) -> f64 {
    (left - 6.0 - max_text_width(tick_labels, 11.0) - 14.0).max(16.0)
}

/// Widens an empty (or almost empty) range around its value.
fn widen_degenerate(lo: f64, hi: f64) -> (f64, f64) {
    let scale = lo.abs().max(hi.abs());
    if hi - lo > scale * 1e-12 {
        (lo, hi)
    } else if scale == 0.0 {
        (lo - 1.0, hi + 1.0)
    } else {
        (lo - scale * 0.1, hi + scale * 0.1)
    }
}

/// Labels of evenly spaced ticks: SI suffixes (k, M, G, T) from 1000 on,
/// just as many decimals as the step needs, trailing zeros trimmed.
fn tick_labels(ticks: &[f64]) -> Vec<String> {
    let step = if ticks.len() > 1 {
        (ticks[1] - ticks[0]).abs()
    } else {
        1.0
    };
    ticks.iter().map(|&t| format_tick(t, step)).collect()
}

/// Formats a tick value `v` of an axis with tick distance `step`.
fn format_tick(v: f64, step: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return "0".to_string();
    }
    let (unit, suffix) = si_unit(v.abs());
    // Just enough decimals to tell ticks apart: those of the step.
    let step = step / unit;
    let decimals = (0..12)
        .find(|&d| {
            let scaled = step * 10f64.powi(d);
            (scaled - scaled.round()).abs() < 1e-6 * scaled.max(1.0)
        })
        .unwrap_or(12) as usize;
    let mut s = format!("{:.*}", decimals, v / unit);
    trim_zeros(&mut s);
    s.push_str(suffix);
    s
}

/// Formats a bar value: `decimals` decimals below 10 000, one trimmed decimal
/// and an SI suffix from 10 000 on (12.3k, 1.5M).
fn format_value(v: f64, decimals: usize) -> String {
    if v.abs() < 10_000.0 {
        let s = format!("{:.*}", decimals, v);
        // No "-0.0".
        if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
            return s[1..].to_string();
        }
        return s;
    }
    let (mut unit, mut suffix) = si_unit(v.abs());
    let mut s = format!("{:.1}", v / unit);
    // 999 950 rounds to "1000.0k": move to the next unit.
    if s.trim_start_matches('-').starts_with("1000") && unit < 1e12 {
        (unit, suffix) = si_unit(unit * 1000.0);
        s = format!("{:.1}", v / unit);
    }
    trim_zeros(&mut s);
    s.push_str(suffix);
    s
}

/// The SI unit to write `abs` with.
fn si_unit(abs: f64) -> (f64, &'static str) {
    if abs >= 1e12 {
        (1e12, "T")
    } else if abs >= 1e9 {
        (1e9, "G")
    } else if abs >= 1e6 {
        (1e6, "M")
    } else if abs >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    }
}

/// Removes trailing zeros after a decimal point, and the point if bare.
fn trim_zeros(s: &mut String) {
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    if s == "-0" {
        *s = "0".to_string();
    }
}

/// Minimum and maximum of a non-empty iterator of finite values.
fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// Estimated width of `s` in px at font size `size`.
fn text_width(s: &str, size: f64) -> f64 {
    s.chars().count() as f64 * size * CHAR_WIDTH
}

/// Widest of `labels`, in px.
fn max_text_width(labels: &[String], size: f64) -> f64 {
    labels
        .iter()
        .map(|l| text_width(l, size))
        .fold(0.0, f64::max)
}

/// `s` cut to `max` characters, with an ellipsis if cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Splits `s` at spaces into lines of at most `max` characters, or `None` if
/// a word is longer than that.
fn wrap(s: &str, max: usize) -> Option<Vec<String>> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in s.split_whitespace() {
        let n = word.chars().count();
        if n > max {
            return None;
        }
        if line.is_empty() {
            line.push_str(word);
        } else if line.chars().count() + 1 + n <= max {
            line.push(' ');
            line.push_str(word);
        } else {
            lines.push(std::mem::take(&mut line));
            line.push_str(word);
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    Some(lines)
}

/// Legend texts: the names, with "series N" for empty ones.
fn legend_names<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    names
        .enumerate()
        .map(|(i, n)| {
            if n.trim().is_empty() {
                format!("series {}", i + 1)
            } else {
                truncate(n, 80)
            }
        })
        .collect()
}

/// Where the legend entries go: rows centred under the title.
struct Legend {
    /// `(x, row)` of each entry's swatch.
    entries: Vec<(f64, usize)>,
    /// Number of rows.
    rows: usize,
}

/// Lays legend entries out in centred rows across the chart's width.
fn layout_legend(names: &[String]) -> Legend {
    const SWATCH: f64 = 22.0;
    const GAP: f64 = 18.0;
    let max_w = WIDTH - 40.0;
    let widths: Vec<f64> = names
        .iter()
        .map(|n| SWATCH + text_width(n, 12.0).min(max_w - SWATCH))
        .collect();
    // Greedy rows of entry indices.
    let mut rows: Vec<Vec<usize>> = Vec::new();
    let mut row_w = 0.0;
    for (i, w) in widths.iter().enumerate() {
        match rows.last_mut() {
            Some(row) if row_w + GAP + w <= max_w => {
                row.push(i);
                row_w += GAP + w;
            }
            _ => {
                rows.push(vec![i]);
                row_w = *w;
            }
        }
    }
    let mut entries = vec![(0.0, 0); names.len()];
    for (r, row) in rows.iter().enumerate() {
        let total: f64 =
            row.iter().map(|&i| widths[i]).sum::<f64>() + GAP * (row.len() as f64 - 1.0);
        let mut x = ((WIDTH - total) / 2.0).round();
        for &i in row {
            entries[i] = (x, r);
            x += widths[i] + GAP;
        }
    }
    Legend {
        entries,
        rows: rows.len(),
    }
}

/// A marker label placed above the plot.
struct MarkerLabel<'a> {
    x: f64,
    centre: f64,
    row: usize,
    label: &'a str,
}

/// Places marker labels centred over their line (kept inside the chart), in
/// the first row where they overlap no other label.
fn layout_marker_labels<'a>(markers: &[(f64, &'a str)], x_scale: &Scale) -> Vec<MarkerLabel<'a>> {
    let mut order: Vec<usize> = (0..markers.len()).collect();
    order.sort_by(|&a, &b| markers[a].0.total_cmp(&markers[b].0).then(a.cmp(&b)));
    let mut row_ends: Vec<f64> = Vec::new();
    let mut out = Vec::new();
    for i in order {
        let (x, label) = markers[i];
        let w = text_width(label, 11.0);
        let centre = x_scale.map(x).clamp(8.0 + w / 2.0, WIDTH - 8.0 - w / 2.0);
        let (start, end) = (centre - w / 2.0, centre + w / 2.0 + 10.0);
        let row = match row_ends.iter().position(|&e| e <= start) {
            Some(r) => r,
            None => {
                row_ends.push(f64::NEG_INFINITY);
                row_ends.len() - 1
            }
        };
        row_ends[row] = end;
        out.push(MarkerLabel {
            x,
            centre,
            row,
            label,
        });
    }
    out
}

/// The chart for input without any finite value.
fn no_data(title: &str) -> String {
    let mut svg = Svg::begin();
    svg.title(title);
    svg.raw(&format!(
        "<rect x=\"40\" y=\"50\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"{GRID}\"/>\n",
        num(WIDTH - 80.0),
        num(HEIGHT - 90.0)
    ));
    svg.text(
        WIDTH / 2.0,
        HEIGHT / 2.0 + 10.0,
        16.0,
        "middle",
        "#777777",
        "no data",
    );
    svg.end()
}

/// Escapes text for XML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters other than tab and newline are not XML.
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A coordinate with fixed precision (two decimals, no "-0.00").
fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    if s == "-0.00" {
        "0.00".to_string()
    } else {
        s
    }
}

/// An SVG document under construction.
struct Svg(String);

impl Svg {
    fn begin() -> Self {
        let mut s = String::new();
        let _ = write!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"{FONT}\">\n\
             <rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>\n",
            w = WIDTH,
            h = HEIGHT
        );
        Svg(s)
    }

    fn end(mut self) -> String {
        self.0.push_str("</svg>\n");
        self.0
    }

    fn raw(&mut self, s: &str) {
        self.0.push_str(s);
    }

    /// An invisible rectangle marking the plot area (for tools and tests).
    fn plot_area(&mut self, left: f64, top: f64, right: f64, bottom: f64) {
        let _ = writeln!(
            self.0,
            "<rect class=\"plot-area\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\"/>",
            num(left),
            num(top),
            num(right - left),
            num(bottom - top)
        );
    }

    /// The chart title, shrunk to fit the width if long.
    fn title(&mut self, title: &str) {
        if title.is_empty() {
            return;
        }
        let size = (16.0f64)
            .min((WIDTH - 20.0) / (title.chars().count() as f64 * CHAR_WIDTH))
            .max(8.0);
        let _ = writeln!(
            self.0,
            "<text class=\"title\" x=\"{}\" y=\"26\" font-size=\"{}\" font-weight=\"bold\" text-anchor=\"middle\" fill=\"{INK}\">{}</text>",
            num(WIDTH / 2.0),
            num(size),
            esc(title)
        );
    }

    fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str) {
        let _ = writeln!(
            self.0,
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{stroke}\" stroke-width=\"1\"/>",
            num(x1),
            num(y1),
            num(x2),
            num(y2)
        );
    }

    fn text(&mut self, x: f64, y: f64, size: f64, anchor: &str, fill: &str, text: &str) {
        let fill = if fill.is_empty() { INK } else { fill };
        let _ = writeln!(
            self.0,
            "<text x=\"{}\" y=\"{}\" font-size=\"{}\" text-anchor=\"{anchor}\" fill=\"{fill}\">{}</text>",
            num(x),
            num(y),
            num(size),
            esc(text)
        );
    }

    /// A y-axis label, rotated, centred at height `y`, baseline at `x`.
    fn y_label(&mut self, x: f64, y: f64, text: &str) {
        let _ = writeln!(
            self.0,
            "<text x=\"{x}\" y=\"{y}\" font-size=\"12\" text-anchor=\"middle\" fill=\"{INK}\" transform=\"rotate(-90 {x} {y})\">{}</text>",
            esc(text),
            x = num(x),
            y = num(y)
        );
    }

    /// The legend: a swatch (a line with a dot, or a square) and the name.
    fn legend(&mut self, names: &[String], legend: &Legend, top: f64, lines: bool) {
        for (i, (name, &(x, row))) in names.iter().zip(&legend.entries).enumerate() {
            let y = top + 18.0 * row as f64;
            let colour = series_colour(i);
            self.raw("<g class=\"legend-entry\">");
            if lines {
                let _ = write!(
                    self.0,
                    "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{colour}\" stroke-width=\"2\"/><circle cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"{colour}\"/>",
                    num(x),
                    num(y),
                    num(x + 16.0),
                    num(y),
                    num(x + 8.0),
                    num(y)
                );
            } else {
                let _ = write!(
                    self.0,
                    "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{colour}\"/>",
                    num(x + 2.0),
                    num(y - 6.0)
                );
            }
            let _ = writeln!(
                self.0,
                "<text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"{INK}\">{}</text></g>",
                num(x + 22.0),
                num(y + 4.0),
                esc(name)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One element start tag: name and attributes.
    #[derive(Debug)]
    struct Element {
        name: String,
        attrs: Vec<(String, String)>,
    }

    impl Element {
        fn attr(&self, name: &str) -> Option<&str> {
            self.attrs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }

        fn num(&self, name: &str) -> f64 {
            self.attr(name)
                .unwrap_or_else(|| panic!("<{}> without {name}", self.name))
                .parse()
                .unwrap_or_else(|e| panic!("<{}> {name}: {e}", self.name))
        }
    }

    /// Checks that `doc` is a well-formed XML document with a single `svg`
    /// root: balanced tags, quoted unique attributes, valid entity references
    /// and no stray `<` or `&`. Returns the start tags in document order.
    fn check_xml(doc: &str) -> Result<Vec<Element>, String> {
        fn check_text(t: &str) -> Result<(), String> {
            let mut rest = t;
            while let Some(i) = rest.find('&') {
                rest = &rest[i + 1..];
                let end = rest.find(';').ok_or_else(|| format!("bare & in {t:?}"))?;
                let entity = &rest[..end];
                let ok = matches!(entity, "amp" | "lt" | "gt" | "quot" | "apos")
                    || (entity.starts_with('#')
                        && entity.len() > 1
                        && entity[1..].chars().all(|c| c.is_ascii_digit()));
                if !ok {
                    return Err(format!("bad entity &{entity}; in {t:?}"));
                }
            }
            if t.contains('<') {
                return Err(format!("stray < in {t:?}"));
            }
            Ok(())
        }
        let is_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.');
        let mut stack: Vec<String> = Vec::new();
        let mut elements = Vec::new();
        let mut roots = 0;
        let mut rest = doc;
        while !rest.is_empty() {
            let Some(lt) = rest.find('<') else {
                check_text(rest)?;
                if !rest.trim().is_empty() && stack.is_empty() {
                    return Err("text after the root".into());
                }
                break;
            };
            let text = &rest[..lt];
            check_text(text)?;
            if stack.is_empty() && !text.trim().is_empty() {
                return Err(format!("text outside the root: {text:?}"));
            }
            rest = &rest[lt..];
            if let Some(r) = rest.strip_prefix("</") {
                let gt = r.find('>').ok_or("unterminated end tag")?;
                let name = r[..gt].trim();
                match stack.pop() {
                    Some(open) if open == name => {}
                    other => return Err(format!("</{name}> closes {other:?}")),
                }
                rest = &r[gt + 1..];
                continue;
            }
            // A start tag.
            let r = &rest[1..];
            let name_len = r.find(|c: char| !is_name(c)).unwrap_or(r.len());
            if name_len == 0 {
                return Err(format!("bad tag at {:?}", &rest[..rest.len().min(20)]));
            }
            let name = r[..name_len].to_string();
            let mut r = &r[name_len..];
            let mut attrs: Vec<(String, String)> = Vec::new();
            let self_closing = loop {
                let trimmed = r.trim_start();
                let had_space = trimmed.len() < r.len();
                r = trimmed;
                if let Some(after) = r.strip_prefix("/>") {
                    r = after;
                    break true;
                }
                if let Some(after) = r.strip_prefix('>') {
                    r = after;
                    break false;
                }
                if !had_space {
                    return Err(format!(
                        "<{name}>: no space before attribute at {:?}",
                        &r[..r.len().min(20)]
                    ));
                }
                let n = r.find(|c: char| !is_name(c)).unwrap_or(r.len());
                if n == 0 {
                    return Err(format!(
                        "<{name}>: bad attribute at {:?}",
                        &r[..r.len().min(20)]
                    ));
                }
                let attr = r[..n].to_string();
                r = r[n..]
                    .strip_prefix('=')
                    .ok_or_else(|| format!("<{name}> {attr}: no ="))?;
                let quote = r.chars().next().filter(|&c| c == '"' || c == '\'');
                let quote = quote.ok_or_else(|| format!("<{name}> {attr}: unquoted value"))?;
                r = &r[1..];
                let end = r
                    .find(quote)
                    .ok_or_else(|| format!("<{name}> {attr}: unterminated value"))?;
                let value = &r[..end];
                check_text(value)?;
                if attrs.iter().any(|(a, _)| *a == attr) {
                    return Err(format!("<{name}>: duplicate attribute {attr}"));
                }
                attrs.push((attr, value.to_string()));
                r = &r[end + 1..];
            };
            if stack.is_empty() {
                roots += 1;
                if name != "svg" {
                    return Err(format!("root <{name}>"));
                }
            }
            if !self_closing {
                stack.push(name.clone());
            }
            elements.push(Element { name, attrs });
            rest = r;
        }
        if !stack.is_empty() {
            return Err(format!("unclosed: {stack:?}"));
        }
        if roots != 1 {
            return Err(format!("{roots} root elements"));
        }
        Ok(elements)
    }

    fn well_formed(svg: &str) -> Vec<Element> {
        match check_xml(svg) {
            Ok(elements) => elements,
            Err(e) => panic!("malformed SVG: {e}\n{svg}"),
        }
    }

    fn count(svg: &str, needle: &str) -> usize {
        svg.matches(needle).count()
    }

    /// The plot area's (left, top, right, bottom).
    fn plot_area(elements: &[Element]) -> (f64, f64, f64, f64) {
        let r = elements
            .iter()
            .find(|e| e.attr("class") == Some("plot-area"))
            .expect("a plot area");
        let (x, y) = (r.num("x"), r.num("y"));
        (x, y, x + r.num("width"), y + r.num("height"))
    }

    fn line_example() -> LineChart {
        LineChart {
            title: "Throughput vs offered load (n = 4, 7, 10)".into(),
            x_label: "offered load (tx/s)".into(),
            y_label: "committed throughput (tx/s)".into(),
            series: vec![
                Series::new(
                    "n = 4",
                    vec![
                        (1000.0, 998.0),
                        (2000.0, 1990.0),
                        (4000.0, 3900.0),
                        (8000.0, 6100.0),
                        (16000.0, 6300.0),
                    ],
                ),
                Series::new(
                    "n = 7",
                    vec![
                        (1000.0, 995.0),
                        (2000.0, 1970.0),
                        (4000.0, 3650.0),
                        (8000.0, 4800.0),
                        (16000.0, 4900.0),
                    ],
                ),
                Series::new(
                    "n = 10 & <Byzantine>",
                    vec![
                        (1000.0, 990.0),
                        (2000.0, f64::NAN),
                        (4000.0, 3100.0),
                        (8000.0, 3500.0),
                        (16000.0, 3400.0),
                    ],
                ),
            ],
            markers: vec![(8000.0, "saturation".into())],
            y_from_zero: true,
        }
    }

    fn timeline_example() -> LineChart {
        let points: Vec<(f64, f64)> = (0..=120)
            .map(|i| {
                let t = i as f64 * 0.5;
                let y = if (20.0..26.0).contains(&t) {
                    0.0
                } else {
                    2400.0 + 300.0 * (t * 0.7).sin()
                };
                (t, y)
            })
            .collect();
        LineChart {
            title: "Commits around a primary crash".into(),
            x_label: "time (s)".into(),
            y_label: "commits/s".into(),
            series: vec![Series::new("committed tx/s", points)],
            markers: vec![
                (20.0, "fault injected: kill -9 primary".into()),
                (21.5, "view change".into()),
                (26.0, "recovered".into()),
            ],
            y_from_zero: true,
        }
    }

    fn bar_example() -> BarChart {
        BarChart {
            title: "Throughput per fault cell".into(),
            y_label: "committed tx/s".into(),
            series_names: vec!["n = 4".into(), "n = 7".into(), "n = 10".into()],
            groups: vec![
                BarGroup {
                    label: "baseline".into(),
                    values: vec![6300.0, 4900.0, 3400.0],
                },
                BarGroup {
                    label: "crash primary".into(),
                    values: vec![5100.0, 4100.0, 2900.0],
                },
                BarGroup {
                    label: "partition minority".into(),
                    values: vec![6200.0, 4800.0, 3300.0],
                },
                BarGroup {
                    label: "equivocating replica".into(),
                    values: vec![5900.0, 4600.0, 3100.0],
                },
                BarGroup {
                    label: "slow links 200 ms".into(),
                    values: vec![2100.0, 1500.0, f64::NAN],
                },
            ],
            decimals: 0,
        }
    }

    #[test]
    fn chart_checker_rejects_malformed_xml() {
        assert!(check_xml("<svg><g></svg>").is_err());
        assert!(check_xml("<svg><g></svg></g>").is_err());
        assert!(check_xml("<svg x=1/>").is_err());
        assert!(check_xml("<svg x=\"1/>").is_err());
        assert!(check_xml("<svg><text>a & b</text></svg>").is_err());
        assert!(check_xml("<svg><text>a &foo; b</text></svg>").is_err());
        assert!(check_xml("<svg x=\"1\" x=\"2\"/>").is_err());
        assert!(check_xml("<svg/><svg/>").is_err());
        assert!(check_xml("<svg x=\"1\"y=\"2\"/>").is_err());
        assert!(check_xml("<svg a=\"1\"><text>a &amp; b &#38;</text><g/></svg>\n").is_ok());
    }

    #[test]
    fn chart_line_svg_is_well_formed() {
        for chart in [line_example(), timeline_example()] {
            let svg = chart.to_svg();
            let elements = well_formed(&svg);
            let root = &elements[0];
            assert_eq!(root.attr("xmlns"), Some("http://www.w3.org/2000/svg"));
            assert_eq!(root.attr("version"), Some("1.1"));
            assert_eq!(root.attr("width"), Some("720"));
            assert_eq!(root.attr("height"), Some("420"));
            assert_eq!(root.attr("viewBox"), Some("0 0 720 420"));
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        }
    }

    #[test]
    fn chart_bar_svg_is_well_formed() {
        let svg = bar_example().to_svg();
        let elements = well_formed(&svg);
        assert_eq!(elements[0].name, "svg");
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        // 14 finite values: 14 bars, each with a value label.
        assert_eq!(count(&svg, "class=\"bar\""), 14);
        assert_eq!(count(&svg, "class=\"value\""), 14);
    }

    #[test]
    fn chart_escapes_text() {
        let nasty = "a<b>&\"c\" 'd'";
        let escaped = "a&lt;b&gt;&amp;&quot;c&quot; &apos;d&apos;";
        let line = LineChart {
            title: nasty.into(),
            x_label: nasty.into(),
            y_label: nasty.into(),
            series: vec![Series::new(nasty, vec![(1.0, 2.0), (2.0, 3.0)])],
            markers: vec![(1.5, nasty.into())],
            y_from_zero: false,
        };
        let bar = BarChart {
            title: nasty.into(),
            y_label: nasty.into(),
            series_names: vec![nasty.into()],
            groups: vec![BarGroup {
                label: nasty.into(),
                values: vec![1.0],
            }],
            decimals: 1,
        };
        for (svg, copies) in [(line.to_svg(), 5), (bar.to_svg(), 4)] {
            well_formed(&svg);
            assert_eq!(count(&svg, escaped), copies, "{svg}");
            assert!(!svg.contains(nasty));
        }
        assert!(no_data(nasty).contains(escaped));
        well_formed(&no_data(nasty));
    }

    #[test]
    fn chart_one_legend_entry_per_series() {
        for n in [1, 3, 9] {
            let series: Vec<Series> = (0..n)
                .map(|i| {
                    Series::new(
                        format!("validator set {i}"),
                        vec![(0.0, i as f64), (1.0, 2.0 * i as f64)],
                    )
                })
                .collect();
            let svg = LineChart {
                series,
                ..Default::default()
            }
            .to_svg();
            well_formed(&svg);
            assert_eq!(count(&svg, "class=\"legend-entry\""), n);
            assert_eq!(count(&svg, "class=\"series\""), n);
            for i in 0..n {
                assert!(svg.contains(&format!(">validator set {i}</text>")));
            }
            // Colours cycle: the 8th series has the first colour again.
            if n == 9 {
                assert_eq!(series_colour(7), series_colour(0));
            }
        }
        let svg = bar_example().to_svg();
        assert_eq!(count(&svg, "class=\"legend-entry\""), 3);
    }

    #[test]
    fn chart_legend_is_above_the_plot() {
        let svg = line_example().to_svg();
        let elements = well_formed(&svg);
        let (_, top, _, _) = plot_area(&elements);
        // Legend swatches are the lines drawn after the last series.
        let legend_start = svg.find("class=\"legend-entry\"").unwrap();
        let legend = well_formed(&format!(
            "<svg>{}</svg>",
            &svg[legend_start - 3..svg.len() - "</svg>\n".len()]
        ));
        for e in legend.iter().filter(|e| e.name == "text") {
            assert!(
                e.num("y") < top,
                "legend text at {} inside the plot (top {top})",
                e.num("y")
            );
        }
    }

    #[test]
    fn chart_ticks_are_nice_and_cover_the_range() {
        let ranges = [
            (0.0, 1.0),
            (0.0, 6300.0),
            (998.0, 6300.0),
            (-3.7, 12.2),
            (-1500.0, -20.0),
            (0.001, 0.0042),
            (1e9, 1e9 + 3.0),
            (5.0, 5.0),
            (0.0, 0.0),
            (-2.0, -2.0),
            (0.3, 0.9),
            (12.0, 3.0),
            (0.0, 1.23e12),
        ];
        for (min, max) in ranges {
            for target in [2, 5, 6, 7, 10] {
                let ticks = nice_ticks(min, max, target);
                assert!(ticks.len() >= 2, "{min}..{max}: {ticks:?}");
                assert!(
                    ticks.len() <= 2 * target + 3,
                    "{min}..{max} target {target}: {ticks:?}"
                );
                let step = ticks[1] - ticks[0];
                assert!(step > 0.0);
                let mag = 10f64.powf(step.log10().floor());
                let mult = step / mag;
                assert!(
                    [1.0, 2.0, 5.0, 10.0]
                        .iter()
                        .any(|m| (mult - m).abs() < 1e-6),
                    "step {step} of {min}..{max} is not nice"
                );
                for w in ticks.windows(2) {
                    assert!(
                        ((w[1] - w[0]) - step).abs() <= step * 1e-6,
                        "{ticks:?} unevenly spaced"
                    );
                }
                for t in &ticks {
                    let k = t / step;
                    assert!(
                        (k - k.round()).abs() < 1e-6,
                        "tick {t} not a multiple of {step}"
                    );
                }
                let (lo, hi) = (min.min(max), min.max(max));
                let tol = step * 1e-6;
                assert!(
                    ticks[0] <= lo + tol && *ticks.last().unwrap() >= hi - tol,
                    "{ticks:?} misses {lo}..{hi}"
                );
                // Not wastefully wide: at most one step of slack on each side.
                if hi > lo {
                    assert!(ticks[0] > lo - step - tol && *ticks.last().unwrap() < hi + step + tol);
                }
            }
        }
        assert_eq!(
            nice_ticks(0.0, 10.0, 5),
            vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        );
        assert_eq!(nice_ticks(f64::NAN, 1.0, 5), vec![0.0, 1.0]);
    }

    #[test]
    fn chart_tick_labels_are_formatted() {
        let labels = |ticks: &[f64]| tick_labels(ticks);
        assert_eq!(
            labels(&[0.0, 2000.0, 4000.0, 12000.0]),
            ["0", "2k", "4k", "12k"]
        );
        assert_eq!(
            labels(&[0.0, 500.0, 1000.0, 1500.0]),
            ["0", "500", "1k", "1.5k"]
        );
        assert_eq!(labels(&[1e6, 1.5e6, 2e6]), ["1M", "1.5M", "2M"]);
        assert_eq!(labels(&[0.0, 0.5, 1.0]), ["0", "0.5", "1"]);
        assert_eq!(
            labels(&[0.1, 0.2, 0.30000000000000004]),
            ["0.1", "0.2", "0.3"]
        );
        assert_eq!(labels(&[-1.0, -0.5, -0.0, 0.5]), ["-1", "-0.5", "0", "0.5"]);
        assert_eq!(labels(&[-3000.0, -1500.0, 0.0]), ["-3k", "-1.5k", "0"]);
        assert_eq!(labels(&[0.001, 0.002]), ["0.001", "0.002"]);
        assert_eq!(format_value(1234.567, 1), "1234.6");
        assert_eq!(format_value(7.0, 0), "7");
        assert_eq!(format_value(-0.001, 2), "0.00");
        assert_eq!(format_value(12_345.0, 0), "12.3k");
        assert_eq!(format_value(1_500_000.0, 0), "1.5M");
        assert_eq!(format_value(999_960.0, 0), "1M");
        assert_eq!(format_value(-20_000.0, 0), "-20k");
    }

    #[test]
    fn chart_scale_maps_points_inside_the_plot() {
        let ticks = nice_ticks(998.0, 6300.0, 6);
        let y = Scale::new(ticks[0], *ticks.last().unwrap(), 372.0, 60.0);
        assert_eq!(y.map(ticks[0]), 372.0);
        assert_eq!(y.map(*ticks.last().unwrap()), 60.0);
        for v in [998.0, 2000.0, 6300.0] {
            let p = y.map(v);
            assert!((60.0..=372.0).contains(&p), "{v} -> {p}");
        }
        assert!(y.map(2000.0) > y.map(3000.0), "larger values are higher up");
        // Linear: the midpoint maps to the midpoint.
        let mid = (ticks[0] + ticks.last().unwrap()) / 2.0;
        assert!((y.map(mid) - 216.0).abs() < 1e-9);
        // A degenerate domain does not divide by zero.
        assert!(Scale::new(3.0, 3.0, 0.0, 100.0).map(3.0).is_finite());

        // Every drawn point of a real chart is inside its plot area.
        for chart in [line_example(), timeline_example()] {
            let svg = chart.to_svg();
            let elements = well_formed(&svg);
            let (l, t, r, b) = plot_area(&elements);
            assert!(0.0 < l && l < r && r <= WIDTH && 0.0 < t && t < b && b <= HEIGHT);
            let mut n = 0;
            for e in &elements {
                let pts: Vec<(f64, f64)> = match e.name.as_str() {
                    // Legend circles have their own fill; series circles inherit it.
                    "circle" if e.attr("fill").is_none() => {
                        vec![(e.num("cx"), e.num("cy"))]
                    }
                    "polyline" => e
                        .attr("points")
                        .unwrap()
                        .split(' ')
                        .map(|p| {
                            let (x, y) = p.split_once(',').unwrap();
                            (x.parse().unwrap(), y.parse().unwrap())
                        })
                        .collect(),
                    _ => vec![],
                };
                for (x, y) in pts {
                    n += 1;
                    assert!(
                        l - 1e-6 <= x && x <= r + 1e-6 && t - 1e-6 <= y && y <= b + 1e-6,
                        "({x}, {y}) outside"
                    );
                }
            }
            assert!(n > 0);
        }
    }

    #[test]
    fn chart_skips_nan_and_infinity() {
        let chart = LineChart {
            series: vec![Series::new(
                "s",
                vec![
                    (0.0, 1.0),
                    (1.0, f64::NAN),
                    (2.0, 3.0),
                    (f64::INFINITY, 4.0),
                    (3.0, 5.0),
                    (4.0, f64::NEG_INFINITY),
                ],
            )],
            markers: vec![(f64::NAN, "never".into()), (2.5, "kept".into())],
            ..Default::default()
        };
        let svg = chart.to_svg();
        let elements = well_formed(&svg);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        // Three finite points, each alone between gaps: three circles and no
        // polyline; the legend adds one more circle.
        let circles = elements.iter().filter(|e| e.name == "circle").count();
        assert_eq!(circles, 3 + 1);
        assert_eq!(count(&svg, "<polyline"), 0);
        assert!(!svg.contains("never") && svg.contains("kept"));

        // A gap splits a line into two polylines.
        let chart = LineChart {
            series: vec![Series::new(
                "s",
                vec![
                    (0.0, 1.0),
                    (1.0, 2.0),
                    (2.0, f64::NAN),
                    (3.0, 1.0),
                    (4.0, 2.0),
                ],
            )],
            ..Default::default()
        };
        assert_eq!(count(&chart.to_svg(), "<polyline"), 2);
    }

    #[test]
    fn chart_empty_input_says_no_data() {
        let empty_line = [
            LineChart::default(),
            LineChart {
                series: vec![Series::new("a", vec![])],
                ..Default::default()
            },
            LineChart {
                series: vec![Series::new(
                    "a",
                    vec![(f64::NAN, 1.0), (1.0, f64::INFINITY)],
                )],
                markers: vec![(1.0, "m".into())],
                ..Default::default()
            },
        ];
        for chart in empty_line {
            let svg = chart.to_svg();
            well_formed(&svg);
            assert!(svg.contains(">no data</text>"), "{svg}");
        }
        let empty_bar = [
            BarChart::default(),
            BarChart {
                groups: vec![BarGroup {
                    label: "x".into(),
                    values: vec![],
                }],
                ..Default::default()
            },
            BarChart {
                groups: vec![BarGroup {
                    label: "x".into(),
                    values: vec![f64::NAN],
                }],
                ..Default::default()
            },
        ];
        for chart in empty_bar {
            let svg = chart.to_svg();
            well_formed(&svg);
            assert!(svg.contains(">no data</text>"));
        }
        assert!(!line_example().to_svg().contains("no data"));
        assert!(!bar_example().to_svg().contains("no data"));
    }

    #[test]
    fn chart_single_point_and_equal_values() {
        for (points, from_zero) in [
            (vec![(5.0, 42.0)], false),
            (vec![(5.0, 42.0)], true),
            (vec![(0.0, 0.0)], false),
            (vec![(1.0, 7.0), (2.0, 7.0), (3.0, 7.0)], false),
            (vec![(1.0, -7.0), (1.0, -7.0)], true),
        ] {
            let chart = LineChart {
                series: vec![Series::new("s", points.clone())],
                y_from_zero: from_zero,
                ..Default::default()
            };
            let svg = chart.to_svg();
            let elements = well_formed(&svg);
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
            let (l, t, r, b) = plot_area(&elements);
            let circles: Vec<&Element> = elements.iter().filter(|e| e.name == "circle").collect();
            assert_eq!(circles.len(), points.len() + 1);
            for c in &circles[..points.len()] {
                let (x, y) = (c.num("cx"), c.num("cy"));
                assert!(l <= x && x <= r && t <= y && y <= b);
            }
        }
        let bar = BarChart {
            groups: vec![BarGroup {
                label: "only".into(),
                values: vec![0.0],
            }],
            ..Default::default()
        };
        well_formed(&bar.to_svg());
    }

    #[test]
    fn chart_negative_values_include_zero() {
        let chart = LineChart {
            series: vec![Series::new("delta", vec![(0.0, -30.0), (1.0, -10.0)])],
            y_from_zero: true,
            ..Default::default()
        };
        let svg = chart.to_svg();
        well_formed(&svg);
        // The y ticks run from at most -30 up to 0.
        assert!(
            svg.contains(">-30</text>") && svg.contains(">0</text>"),
            "{svg}"
        );
        let bar = BarChart {
            series_names: vec!["change".into()],
            groups: vec![
                BarGroup {
                    label: "a".into(),
                    values: vec![-20.0],
                },
                BarGroup {
                    label: "b".into(),
                    values: vec![40.0],
                },
            ],
            ..Default::default()
        };
        let svg = bar.to_svg();
        let elements = well_formed(&svg);
        let bars: Vec<&Element> = elements
            .iter()
            .filter(|e| e.attr("class") == Some("bar"))
            .collect();
        assert_eq!(bars.len(), 2);
        let (h_neg, h_pos) = (bars[0].num("height"), bars[1].num("height"));
        assert!((h_pos / h_neg - 2.0).abs() < 0.01, "{h_pos} / {h_neg}");
        // The negative bar hangs from the zero line the positive one stands on.
        let zero = bars[1].num("y") + h_pos;
        assert!((bars[0].num("y") - zero).abs() < 0.01);
    }

    #[test]
    fn chart_bar_heights_are_proportional() {
        let values = [10.0, 20.0, 40.0, 5.0, 35.5];
        let bar = BarChart {
            series_names: vec!["a".into()],
            groups: values
                .iter()
                .enumerate()
                .map(|(i, &v)| BarGroup {
                    label: format!("cell {i}"),
                    values: vec![v],
                })
                .collect(),
            decimals: 1,
            ..Default::default()
        };
        let svg = bar.to_svg();
        let elements = well_formed(&svg);
        let (_, top, _, bottom) = plot_area(&elements);
        let bars: Vec<&Element> = elements
            .iter()
            .filter(|e| e.attr("class") == Some("bar"))
            .collect();
        assert_eq!(bars.len(), values.len());
        let per_unit = bars[0].num("height") / values[0];
        for (b, v) in bars.iter().zip(values) {
            assert!(
                (b.num("height") - v * per_unit).abs() < 0.02,
                "bar of {v}: {}",
                b.num("height")
            );
            // Standing on the axis, inside the plot, with room for the label.
            assert!((b.num("y") + b.num("height") - bottom).abs() < 0.02);
            assert!(b.num("y") >= top + 10.0);
        }
        assert!(svg.contains(">35.5</text>") && svg.contains(">5.0</text>"));
        // Bars are left to right in group order.
        for w in bars.windows(2) {
            assert!(w[0].num("x") < w[1].num("x"));
        }
    }

    #[test]
    fn chart_output_is_deterministic() {
        assert_eq!(line_example().to_svg(), line_example().to_svg());
        assert_eq!(timeline_example().to_svg(), timeline_example().to_svg());
        assert_eq!(bar_example().to_svg(), bar_example().to_svg());
    }

    #[test]
    fn chart_long_category_labels_are_wrapped_or_rotated() {
        let mut bar = bar_example();
        let svg = bar.to_svg();
        assert!(!svg.contains("rotate(-40"), "short labels stay horizontal");
        bar.groups[2].label = "partition-of-the-minority-with-a-very-long-name".into();
        let svg = bar.to_svg();
        well_formed(&svg);
        assert_eq!(count(&svg, "class=\"category\""), 5);
        assert!(svg.contains("rotate(-40"));
    }

    /// Writes example charts to /tmp for a visual check:
    /// `cargo test -p phalanx-testnet --lib chart_write_examples -- --ignored`.
    #[test]
    #[ignore]
    fn chart_write_examples() {
        std::fs::write("/tmp/chart-line.svg", line_example().to_svg()).unwrap();
        std::fs::write("/tmp/chart-timeline.svg", timeline_example().to_svg()).unwrap();
        std::fs::write("/tmp/chart-bar.svg", bar_example().to_svg()).unwrap();
        let mut long = bar_example();
        long.title = "Latency per cell (p50 / p99)".into();
        long.y_label = "latency (ms)".into();
        long.series_names = vec!["p50".into(), "p99".into()];
        long.decimals = 1;
        for (i, g) in long.groups.iter_mut().enumerate() {
            g.label = format!("{} with a rather long description", g.label);
            g.values = vec![12.25 + i as f64 * 3.5, 48.0 + i as f64 * 20.0];
        }
        std::fs::write("/tmp/chart-bar-long.svg", long.to_svg()).unwrap();
        std::fs::write("/tmp/chart-empty.svg", LineChart::default().to_svg()).unwrap();
    }
}
