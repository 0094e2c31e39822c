//! One module per verb.

pub mod augment_preview;
pub mod bench;
pub mod compare;
pub mod make_sample;
pub mod train;
