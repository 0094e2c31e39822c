//! One module per verb.

pub mod bench;
pub mod compare;
pub mod make_sample;
pub mod train;
