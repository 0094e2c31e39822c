//! ba-data
