//! ba-models
