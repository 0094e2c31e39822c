//! Bridge Attention in a network of your own: a three-convolution CNN whose last convolution
//! is gated by a `BridgeAttention` module that also sees the two earlier feature maps, trained
//! for a few steps on random data with candle-nn's AdamW.
//!
//!     cargo run --release -p ba-core --example ba_in_your_own_cnn

use ba_core::nn::{linear, BridgeAttention, Conv2d, Linear};
use ba_core::ops::Conv2dParams;
use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};

/// conv1 -> conv2 -> conv3, each 3x3; BA gates conv3 from conv1's and conv2's outputs.
struct SmallNet {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    ba: BridgeAttention,
    head: Linear,
}

impl SmallNet {
    fn new(vb: VarBuilder) -> Result<Self> {
        let relu = Conv2dParams::square(1, 1).with_relu();
        Ok(Self {
            conv1: Conv2d::new(3, 16, 3, relu, vb.pp("conv1"))?,
            conv2: Conv2d::new(16, 32, 3, relu, vb.pp("conv2"))?,
            // The gate multiplies conv3's output before its ReLU, as in BA-AlexNet.
            conv3: Conv2d::new(32, 32, 3, Conv2dParams::square(1, 1), vb.pp("conv3"))?,
            // Earlier maps of 16 and 32 channels, a current map of 32, reduction r = 8.
            ba: BridgeAttention::new(&[16, 32], 32, 8, vb.pp("ba"))?,
            head: linear(32, 10, vb.pp("head"))?,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x1 = self.conv1.forward(x)?;
        let x2 = self.conv2.forward(&x1)?;
        let x3 = self.conv3.forward(&x2)?;
        let gate = self.ba.forward_t(&[&x1, &x2], &x3, train)?; // (B, 32, 1, 1), in (0, 1)
        let gated = x3.broadcast_mul(&gate)?.relu()?;
        self.head.forward(&gated.mean((2, 3))?) // global average pool, then the classifier
    }
}

fn main() -> Result<()> {
    let device = Device::Cpu;
    let vars = VarMap::new();
    let net = SmallNet::new(VarBuilder::from_varmap(&vars, DType::F32, &device))?;
    let mut optimizer = AdamW::new(vars.all_vars(), ParamsAdamW { lr: 1e-3, ..Default::default() })?;

    // A fixed batch of 8 random 16x16 images and labels (seeded, so every run is the same).
    let images = ba_core::rng::randn(0, (8, 3, 16, 16), &device)?;
    let labels = Tensor::new(&[0u32, 1, 2, 3, 4, 5, 6, 7], &device)?;
    let mut losses = Vec::new();
    for step in 0..20 {
        let logits = net.forward_t(&images, true)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &labels)?;
        optimizer.backward_step(&loss)?;
        losses.push(loss.to_scalar::<f32>()?);
        if step % 5 == 0 {
            println!("step {step:2}: loss {:.4}", losses[step]);
        }
    }
    let accuracy = net.forward_t(&images, false)?.argmax(D::Minus1)?.eq(&labels)?.to_dtype(DType::F32)?.mean_all()?;
    println!("loss {:.4} -> {:.4}; accuracy on the batch {:.2}", losses[0], losses[19], accuracy.to_scalar::<f32>()?);
    // Memorising 8 images is easy: the loss must fall, or the gate's gradients are broken.
    assert!(losses[19] < losses[0], "the loss did not fall");
    Ok(())
}
