//! The CSV and the cumulative-distribution plot of an election sweep, in
//! the style of the paper's Figure 16: the fraction of trials (y) that had
//! a leader within a time (x), one line per timeout range.

use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

/// One timeout range's measured times, in milliseconds.
pub struct Series {
    /// Its label, e.g. "150-300ms".
    pub label: String,
    /// Every trial's time, in milliseconds.
    pub times_ms: Vec<f64>,
}

/// Writes `range,trial,ms` rows, one per trial.
pub fn write_csv(path: &Path, series: &[&Series]) -> std::io::Result<()> {
    let mut out = String::from("range,trial,ms\n");
    for s in series {
        for (i, t) in s.times_ms.iter().enumerate() {
            let _ = writeln!(out, "{},{},{:.3}", s.label, i, t);
        }
    }
    std::fs::write(path, out)
}

fn cdf(times: &[f64]) -> Vec<(f64, f64)> {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    // At most about 250 points a line: enough for the eye, small files.
    let stride = n.div_ceil(250).max(1);
    sorted
        .iter()
        .enumerate()
        .filter(|(i, _)| i % stride == 0 || i + 1 == n)
        .map(|(i, &t)| (t, 100.0 * (i + 1) as f64 / n as f64))
        .collect()
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Draws two panels into an SVG file: `top` on a logarithmic time axis and
/// `bottom` on a linear one, as in the paper.
pub fn draw_cdf(path: &Path, top: &[Series], bottom: &[Series]) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let (upper, lower) = root.split_vertically(400);
    let top_max = top.iter().flat_map(|s| s.times_ms.iter().copied()).fold(1000.0, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(&upper)
        .caption("Time without a leader after the leader crashes (log scale)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((100.0..top_max).log_scale(), 0.0..100.0)?;
    chart.configure_mesh().x_desc("time without leader (ms)").y_desc("cumulative %").draw()?;
    draw_series(&mut chart, top).map_err(|e| e.to_string())?;

    let bottom_max = bottom.iter().flat_map(|s| s.times_ms.iter().copied()).fold(100.0, f64::max) * 1.05;
    let mut chart = ChartBuilder::on(&lower)
        .caption("Time without a leader, shorter timeouts (linear scale)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..bottom_max, 0.0..100.0)?;
    chart.configure_mesh().x_desc("time without leader (ms)").y_desc("cumulative %").draw()?;
    draw_series(&mut chart, bottom).map_err(|e| e.to_string())?;
    root.present()?;
    Ok(())
}

fn draw_series<'a, X>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, plotters::coord::types::RangedCoordf64>>,
    series: &[Series],
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
{
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(cdf(&s.times_ms), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| e.to_string())
}
