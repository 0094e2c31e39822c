//! Learning curves: loss and accuracy, train and val, against optimizer steps and epochs.

use std::ops::Range;
use std::path::Path;

use anyhow::Result;
use ba_train::{EpochRecord, StepRecord};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::plot::{model_colour, save_png, save_svg, DrawResult, FONT};

/// The curves of one training run.
pub struct Curves<'a> {
    pub model: &'a str,
    pub seed: u64,
    /// Optimizer steps per epoch, to place the epoch records on the step axis.
    pub steps_per_epoch: usize,
    /// Mean training loss over windows of steps.
    pub steps: &'a [StepRecord],
    pub epochs: &'a [EpochRecord],
}

/// Figure size in pixels.
const SIZE: (u32, u32) = (1400, 900);

/// Writes `<stem>.png` and `<stem>.svg` into `dir`: four panels, loss and accuracy against
/// steps (left) and epochs (right). Training loss against steps is the mean over each logged
/// window of steps; every other point is an epoch's pass. Train solid, val dashed; one colour
/// per model, one line per seed (the legend names the first seed's).
pub fn write(dir: &Path, stem: &str, runs: &[Curves]) -> Result<()> {
    save_png(&dir.join(format!("{stem}.png")), SIZE, |root| draw(root, runs))?;
    save_svg(&dir.join(format!("{stem}.svg")), SIZE, |root| draw(root, runs))
}

/// A line of one panel.
struct Line {
    label: Option<String>,
    colour: RGBColor,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, runs: &[Curves]) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    // One legend entry per model and pass; further seeds draw unlabelled lines of the colour.
    let first_seed = runs.first().map(|r| r.seed);
    let label = |r: &Curves, pass: &str| (Some(r.seed) == first_seed).then(|| format!("{} {pass}", r.model));
    let end_step = |r: &Curves, e: &EpochRecord| (e.epoch * r.steps_per_epoch) as f64;
    let mut panels: [Vec<Line>; 4] = Default::default();
    for r in runs {
        let colour = model_colour(r.model);
        let line =
            |pass: &str, dashed: bool, points: Vec<(f64, f64)>| Line { label: label(r, pass), colour, dashed, points };
        let train_loss_steps: Vec<_> = if r.steps.is_empty() {
            r.epochs.iter().map(|e| (end_step(r, e), e.train.loss)).collect()
        } else {
            r.steps.iter().map(|s| (s.step as f64, s.loss)).collect()
        };
        panels[0].push(line("train", false, train_loss_steps));
        panels[0].push(line("val", true, r.epochs.iter().map(|e| (end_step(r, e), e.val.loss)).collect()));
        panels[1].push(line("train", false, r.epochs.iter().map(|e| (e.epoch as f64, e.train.loss)).collect()));
        panels[1].push(line("val", true, r.epochs.iter().map(|e| (e.epoch as f64, e.val.loss)).collect()));
        panels[2].push(line("train", false, r.epochs.iter().map(|e| (end_step(r, e), e.train.accuracy)).collect()));
        panels[2].push(line("val", true, r.epochs.iter().map(|e| (end_step(r, e), e.val.accuracy)).collect()));
        panels[3].push(line("train", false, r.epochs.iter().map(|e| (e.epoch as f64, e.train.accuracy)).collect()));
        panels[3].push(line("val", true, r.epochs.iter().map(|e| (e.epoch as f64, e.val.accuracy)).collect()));
    }
    let titles = [
        ("loss against steps", "optimizer step", "loss"),
        ("loss against epochs", "epoch", "loss"),
        ("accuracy against steps", "optimizer step", "accuracy"),
        ("accuracy against epochs", "epoch", "accuracy"),
    ];
    let caption = if runs.iter().any(|r| Some(r.seed) != first_seed) { " (one line per seed)" } else { "" };
    for ((area, lines), (title, x, y)) in root.split_evenly((2, 2)).iter().zip(&panels).zip(titles) {
        // Losses fall and accuracies rise: keep the legend where the curves are not.
        let corner = if y == "loss" { SeriesLabelPosition::UpperRight } else { SeriesLabelPosition::LowerRight };
        draw_panel(area, lines, &format!("{title}{caption}"), (x, y), corner)?;
    }
    Ok(())
}

/// The smallest and largest of `values`, widened by 5% (and to a unit range when flat).
fn padded_range(values: impl Iterator<Item = f64>, from_zero: bool) -> Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let lo = if from_zero { 0.0 } else { lo };
    if !(lo.is_finite() && hi.is_finite()) {
        return 0.0..1.0;
    }
    let pad = ((hi - lo) * 0.05).max(1e-3);
    (lo - pad)..(hi + pad)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    lines: &[Line],
    title: &str,
    (x_desc, y_desc): (&str, &str),
    corner: SeriesLabelPosition,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let points = || lines.iter().flat_map(|l| l.points.iter().copied());
    let x_range = {
        let r = padded_range(points().map(|p| p.0), true);
        0.0..r.end
    };
    let y_range = padded_range(points().map(|p| p.1), false);
    // Steps and epochs are whole numbers: at most one label per epoch, none between.
    let x_labels = if x_desc == "epoch" { (x_range.end.floor() as usize + 1).clamp(2, 11) } else { 10 };
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range, y_range)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .x_labels(x_labels)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc(y_desc)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for line in lines {
        let style = line.colour.stroke_width(2);
        let series = if line.dashed {
            chart.draw_series(DashedLineSeries::new(line.points.iter().copied(), 8, 5, style))?
        } else {
            chart.draw_series(LineSeries::new(line.points.iter().copied(), style))?
        };
        if let Some(label) = &line.label {
            let (colour, dashed) = (line.colour, line.dashed);
            series.label(label).legend(move |(x, y)| {
                let end = if dashed { x + 8 } else { x + 24 };
                PathElement::new(vec![(x, y), (end, y)], colour.stroke_width(2))
            });
        }
        // Epoch points get markers, so that runs of one or two epochs still show.
        if line.points.len() <= 200 {
            chart.draw_series(line.points.iter().map(|&p| Circle::new(p, 3, line.colour.filled())))?;
        }
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .position(corner)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_data_with_a_margin() {
        let r = padded_range([0.2, 0.6].into_iter(), false);
        assert!(r.start < 0.2 && r.start > 0.17 && r.end > 0.6 && r.end < 0.63);
        assert_eq!(padded_range(std::iter::empty(), false), 0.0..1.0);
        let flat = padded_range([0.5, 0.5].into_iter(), false);
        assert!(flat.start < 0.5 && flat.end > 0.5);
    }
}
