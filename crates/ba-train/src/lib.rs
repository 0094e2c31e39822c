//! ba-train
