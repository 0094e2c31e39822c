//! The paired-differences figure: for each pair of models, every seed's difference in final
//! val accuracy as a dot, and the mean with its confidence interval as a bar, beside zero.

use std::path::Path;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::Report;
use crate::plot::{model_colour, save_png, save_svg, DrawResult, FONT};

/// Figure width in pixels; the height grows with the number of pairs.
const WIDTH: u32 = 1000;

/// Figure size for `pairs` rows.
pub fn size(pairs: usize) -> (u32, u32) {
    (WIDTH, 150 + 110 * pairs.max(1) as u32)
}

/// Writes `<stem>.png` and `<stem>.svg` into `dir`.
pub fn write(dir: &Path, stem: &str, report: &Report) -> Result<()> {
    let size = size(report.pairs.len());
    save_png(&dir.join(format!("{stem}.png")), size, |root| draw(root, report))?;
    save_svg(&dir.join(format!("{stem}.svg")), size, |root| draw(root, report))
}

/// The horizontal range in percentage points: every dot and interval bound, and zero.
fn x_range(report: &Report) -> (f64, f64) {
    let values = report.pairs.iter().flat_map(|p| {
        let bounds = p.val_accuracy.interval.map_or(vec![], |(lo, hi)| vec![lo, hi]);
        p.val_accuracy_by_seed.iter().copied().chain(bounds)
    });
    let (lo, hi) = values.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v * 100.0), hi.max(v * 100.0)));
    let pad = ((hi - lo) * 0.08).max(0.5);
    (lo - pad, hi + pad)
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, report: &Report) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let rows = report.pairs.len();
    let (lo, hi) = x_range(report);
    let level = (report.pairs.first().map_or(0.95, |p| p.val_accuracy.confidence) * 100.0).round();
    let caption = format!(
        "final val accuracy, paired by seed ({} seed{}): dots = seeds, bar = mean and {level:.0}% t-interval",
        report.seeds.len(),
        if report.seeds.len() == 1 { "" } else { "s" }
    );
    let labels: Vec<String> = report.pairs.iter().map(|p| p.label.clone()).collect();
    let mut chart = ChartBuilder::on(root)
        .caption(caption, (FONT, 18))
        .margin(16)
        .x_label_area_size(45)
        .y_label_area_size(190)
        .build_cartesian_2d(lo..hi, -0.5..(rows as f64 - 0.5))?;
    chart
        .configure_mesh()
        .x_desc("difference in percentage points (later model minus baseline)")
        .x_label_formatter(&|x| if x.abs() < 1e-9 { "0".to_string() } else { format!("{x:+.1}") })
        .y_labels(rows.max(1))
        .y_label_formatter(&|y| {
            let i = y.round();
            if (y - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(rows - 1 - i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .disable_y_mesh()
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(0.0, -0.5), (0.0, rows as f64 - 0.5)],
        BLACK.mix(0.6).stroke_width(1),
    )))?;
    for (i, pair) in report.pairs.iter().enumerate() {
        // The first pair on top.
        let y = (rows - 1 - i) as f64;
        let colour = model_colour(&pair.model);
        let n = pair.val_accuracy_by_seed.len();
        // Seeds spread a little vertically, so that equal differences stay visible.
        let dots = pair.val_accuracy_by_seed.iter().enumerate().map(move |(k, d)| {
            let offset = if n > 1 { 0.18 * (k as f64 / (n - 1) as f64 - 0.5) } else { 0.0 };
            Circle::new((d * 100.0, y + 0.12 + offset), 4, colour.mix(0.7).filled())
        });
        chart.draw_series(dots)?;
        let mean = pair.val_accuracy.difference.mean * 100.0;
        if let Some((a, b)) = pair.val_accuracy.interval {
            let (a, b) = (a * 100.0, b * 100.0);
            let bar = colour.stroke_width(3);
            chart.draw_series([
                PathElement::new(vec![(a, y - 0.15), (b, y - 0.15)], bar),
                PathElement::new(vec![(a, y - 0.25), (a, y - 0.05)], bar),
                PathElement::new(vec![(b, y - 0.25), (b, y - 0.05)], bar),
            ])?;
        }
        chart.draw_series(std::iter::once(Rectangle::new(
            [(mean - (hi - lo) * 0.004, y - 0.27), (mean + (hi - lo) * 0.004, y - 0.03)],
            BLACK.filled(),
        )))?;
        let text = match pair.val_accuracy.interval {
            Some((a, b)) => format!("{mean:+.2} [{:+.2}, {:+.2}]", a * 100.0, b * 100.0),
            None => format!("{mean:+.2} (one seed: no interval)"),
        };
        chart.draw_series(std::iter::once(Text::new(text, (lo + (hi - lo) * 0.01, y - 0.32), (FONT, 14))))?;
    }
    Ok(())
}
