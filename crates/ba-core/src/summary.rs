//! Layer-by-layer records of a forward pass: what `paddle.summary` prints (layer, input
//! shape, output shape, parameters). A model reports each layer it runs to a [`Trace`]; an
//! ordinary pass uses [`Trace::off`], which records nothing.

use candle_core::Tensor;

/// One layer a forward pass ran through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRow {
    /// The layer's name in the module tree (`features.0`, `ba.cur_fusion.1`, `relu3`).
    pub name: String,
    /// The layer's type, as Paddle names it (`Conv2D`, `ReLU`, `MaxPool2D`, `Linear`, ...).
    pub kind: &'static str,
    /// Shape of the layer's (first) input.
    pub input: Vec<usize>,
    /// Shape of its output.
    pub output: Vec<usize>,
    /// Values the optimizer updates.
    pub trainable: usize,
    /// Values kept beside them (batch-norm running mean and variance).
    pub non_trainable: usize,
}

impl LayerRow {
    /// Every value of the layer, as Paddle counts its parameters.
    pub fn parameters(&self) -> usize {
        self.trainable + self.non_trainable
    }
}

/// Where a forward pass reports its layers.
#[derive(Debug, Default)]
pub struct Trace {
    rows: Option<Vec<LayerRow>>,
    prefix: String,
}

impl Trace {
    /// A trace that records nothing (ordinary forward passes).
    pub fn off() -> Self {
        Self::default()
    }

    /// A trace that records every layer.
    pub fn on() -> Self {
        Self { rows: Some(Vec::new()), prefix: String::new() }
    }

    /// Whether this trace records layers (so that a model can run its layers one by one for it
    /// and fused otherwise).
    pub fn is_on(&self) -> bool {
        self.rows.is_some()
    }

    /// Records that layer `name` of type `kind` turned `input` into `output`, holding
    /// `trainable` and `non_trainable` values.
    pub fn layer(
        &mut self,
        name: &str,
        kind: &'static str,
        (input, output): (&Tensor, &Tensor),
        (trainable, non_trainable): (usize, usize),
    ) {
        if let Some(rows) = self.rows.as_mut() {
            rows.push(LayerRow {
                name: format!("{}{name}", self.prefix),
                kind,
                input: input.dims().to_vec(),
                output: output.dims().to_vec(),
                trainable,
                non_trainable,
            });
        }
    }

    /// Runs `f` with `prefix.` put before every name it records (a sub-module's layers).
    pub fn scoped<R>(&mut self, prefix: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        let outer = self.prefix.len();
        self.prefix.push_str(prefix);
        self.prefix.push('.');
        let result = f(self);
        self.prefix.truncate(outer);
        result
    }

    /// The rows recorded, in order (empty for a trace that was off).
    pub fn into_rows(self) -> Vec<LayerRow> {
        self.rows.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn records_with_prefixes_only_when_on() {
        let (a, b) = (
            Tensor::zeros((1, 4), candle_core::DType::F32, &Device::Cpu).unwrap(),
            Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu).unwrap(),
        );
        let mut off = Trace::off();
        off.layer("x", "ReLU", (&a, &a), (0, 0));
        assert!(off.into_rows().is_empty());
        let mut on = Trace::on();
        on.layer("fc", "Linear", (&a, &b), (10, 0));
        on.scoped("ba", |t| t.scoped("cur_fusion", |t| t.layer("2", "BatchNorm2D", (&b, &b), (4, 4))));
        on.layer("out", "Sigmoid", (&b, &b), (0, 0));
        let rows = on.into_rows();
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["fc", "ba.cur_fusion.2", "out"]);
        assert_eq!((rows[0].input.clone(), rows[0].output.clone(), rows[1].parameters()), (vec![1, 4], vec![2], 8));
    }
}
