//! One module per verb.

pub mod augment_preview;
pub mod bench;
pub mod compare;
pub mod eval;
pub mod make_sample;
pub mod predict;
pub mod report;
pub mod summary;
pub mod train;
