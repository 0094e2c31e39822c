//! The comparison table, as printed and as written to `report.md`.

use crate::run::RunSummary;

/// A Markdown table of the runs: the notebook's columns plus best epoch, speed and time. Runs
/// stopped before their first epoch ended have no row.
pub fn comparison_table(runs: &[RunSummary]) -> String {
    let mut out = String::from(
        "| model | parameters (trainable) | train acc | val acc | best val acc (epoch) | val loss | train img/s | time |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in runs {
        let Some((last, best)) = r.last_and_best() else { continue };
        out += &format!(
            "| {} | {} ({}) | {:.4} | {:.4} | {:.4} ({}) | {:.4} | {:.1} | {:.0} s |\n",
            r.model,
            thousands(r.parameters),
            thousands(r.trainable_parameters),
            last.train.accuracy,
            last.val.accuracy,
            best.val.accuracy,
            r.best_epoch,
            last.val.loss,
            last.train.images_per_second(),
            r.seconds,
        );
    }
    out
}

/// `7524042` as `7,524,042`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(7_529_258), "7,529,258");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
    }
}
