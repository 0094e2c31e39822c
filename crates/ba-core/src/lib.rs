//! # ba-core
//!
//! The Bridge Attention module of BA-Net (Zhao et al., "BA-Net: Bridge Attention for Deep
//! Convolutional Neural Networks", ECCV 2022) and the Candle pieces that training it needs:
//!
//! - [`nn::BridgeAttention`]: the BA gate, generic over the number of earlier feature maps and
//!   the reduction ratio;
//! - [`ops`]: custom ops with forward and backward (max-pool with arg-max, im2col convolution);
//! - [`nn`]: layers with PyTorch names and initialisation, and a seeded dropout;
//! - [`init`] and [`rng`]: seeded initialisation and one generator per purpose;
//! - [`model`]: the [`ImageClassifier`](model::ImageClassifier) trait and parameter counts;
//! - [`summary`]: layer-by-layer records of a forward pass (`paddle.summary`'s table).
//!
//! It knows nothing of CIFAR, AlexNet or training loops.

#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod init;
pub mod model;
pub mod nn;
pub mod ops;
pub mod rng;
pub mod summary;
