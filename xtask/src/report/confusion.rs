//! The confusion matrix of a classifier on a labelled set: per-class accuracy, as text and as a
//! heat map.

use std::path::Path;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Serialize;

use crate::plot::{save_png, DrawResult, FONT};

/// Counts of (true class, predicted class).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfusionMatrix {
    /// `counts[truth][predicted]`.
    pub counts: Vec<Vec<usize>>,
}

impl ConfusionMatrix {
    /// An empty matrix over `classes` classes.
    pub fn new(classes: usize) -> Self {
        Self { counts: vec![vec![0; classes]; classes] }
    }

    /// Records one prediction.
    pub fn add(&mut self, truth: usize, predicted: usize) {
        self.counts[truth][predicted] += 1;
    }

    /// Images counted.
    pub fn total(&self) -> usize {
        self.counts.iter().flatten().sum()
    }

    /// Fraction of all images on the diagonal.
    pub fn accuracy(&self) -> f64 {
        let right: usize = (0..self.counts.len()).map(|c| self.counts[c][c]).sum();
        right as f64 / self.total().max(1) as f64
    }

    /// Recall of each class: right / images of the class (0 for a class with no images).
    pub fn per_class_accuracy(&self) -> Vec<f64> {
        self.counts.iter().enumerate().map(|(c, row)| row[c] as f64 / row.iter().sum::<usize>().max(1) as f64).collect()
    }

    /// The matrix and per-class accuracy as a Markdown table (rows: true class).
    pub fn table(&self, classes: &[String]) -> String {
        let short: Vec<String> = classes.iter().map(|c| c.chars().take(5).collect()).collect();
        let mut out = format!("| true \\ predicted | {} | accuracy |\n", short.join(" | "));
        out += &format!("|---|{}---|\n", "---:|".repeat(classes.len()));
        for ((name, row), acc) in classes.iter().zip(&self.counts).zip(self.per_class_accuracy()) {
            let cells: Vec<String> = row.iter().map(|n| n.to_string()).collect();
            out += &format!("| {name} | {} | {acc:.4} |\n", cells.join(" | "));
        }
        out
    }

    /// Writes the matrix as a heat map (row-normalised shading, counts written in) at `path`.
    pub fn write_png(&self, path: &Path, title: &str, classes: &[String]) -> Result<()> {
        save_png(path, (900, 820), |root| self.draw(root, title, classes))
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, title: &str, classes: &[String]) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let n = self.counts.len();
        let (left, top, cell) = (130i32, 80i32, 70i32);
        root.draw(&Text::new(title.to_string(), (20, 15), (FONT, 20).into_font().style(FontStyle::Bold)))?;
        root.draw(&Text::new("predicted", (left + cell * n as i32 / 2 - 40, top - 45), (FONT, 16)))?;
        for (c, name) in classes.iter().enumerate() {
            let at = left + c as i32 * cell;
            root.draw(&Text::new(name.clone(), (at + 4, top - 22), (FONT, 13)))?;
            root.draw(&Text::new(name.clone(), (10, top + c as i32 * cell + cell / 2 - 8), (FONT, 14)))?;
        }
        for (t, row) in self.counts.iter().enumerate() {
            let row_total = row.iter().sum::<usize>().max(1) as f64;
            for (p, &count) in row.iter().enumerate() {
                let share = count as f64 / row_total;
                // White to dark blue by the share of the true class's images.
                let shade = |full: f64| (255.0 - share * (255.0 - full)).round() as u8;
                let colour = RGBColor(shade(8.0), shade(48.0), shade(107.0));
                let (x, y) = (left + p as i32 * cell, top + t as i32 * cell);
                root.draw(&Rectangle::new([(x, y), (x + cell - 1, y + cell - 1)], colour.filled()))?;
                let ink = if share > 0.5 { WHITE } else { BLACK };
                let text = count.to_string();
                let x_text = x + cell / 2 - 4 * text.len() as i32;
                root.draw(&Text::new(text, (x_text, y + cell / 2 - 8), (FONT, 15).into_font().color(&ink)))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracies_come_from_the_diagonal() {
        let mut m = ConfusionMatrix::new(3);
        for (t, p) in [(0, 0), (0, 0), (0, 1), (1, 1), (2, 0), (2, 2), (2, 2), (2, 2)] {
            m.add(t, p);
        }
        assert_eq!(m.total(), 8);
        assert_eq!(m.accuracy(), 6.0 / 8.0);
        assert_eq!(m.per_class_accuracy(), vec![2.0 / 3.0, 1.0, 0.75]);
        let names: Vec<String> = ["cat", "dog", "frog"].map(String::from).to_vec();
        let table = m.table(&names);
        assert!(table.contains("| frog | 1 | 0 | 3 | 0.7500 |"), "{table}");
    }
}
