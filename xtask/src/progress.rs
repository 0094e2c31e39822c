//! The training progress bar: steps over the whole run, with the epoch's running loss,
//! accuracy and speed, and an ETA. Hidden when stdout is not a terminal (CI, redirected logs).

use std::io::IsTerminal;

use ba_train::StepProgress;
use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `total_steps` training steps of `model`.
pub fn bar(model: &str, total_steps: usize) -> ProgressBar {
    if !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total_steps as u64).with_prefix(model.to_string());
    #[allow(clippy::expect_used)] // a constant template
    let style = ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
        .expect("the template is valid")
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// Advances `bar` by one step and shows where the epoch stands.
pub fn show(bar: &ProgressBar, p: &StepProgress) {
    bar.inc(1);
    bar.set_message(format!(
        "epoch {} loss {:.4} acc {:.4} {:.0} img/s lr {:.2e}",
        p.epoch, p.loss, p.accuracy, p.images_per_second, p.lr
    ));
}
