//! `cargo xtask summary`: the layer table of `paddle.summary` (layer, input shape, output
//! shape, parameters, totals), from a traced forward pass of the model.

use anyhow::Result;
use ba_core::model::ParameterCount;
use ba_core::summary::{LayerRow, Trace};
use ba_models::ModelKind;
use candle_core::{DType, Device, Tensor};

use crate::table::thousands;
use crate::trained::fresh;

/// Arguments of `summary`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Architecture: alexnet, se-alexnet, ba-alexnet, or a ResNet (resnet20, se-resnet20,
    /// ba-resnet20, ... at depths 20, 32, 56, 110).
    #[arg(long, default_value = "ba-alexnet")]
    model: ModelKind,
    /// Batch size of the traced input (Paddle's summary uses 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
}

pub fn run(args: Args, device: &Device) -> Result<()> {
    let (vars, model) = fresh(args.model, device)?;
    let side = args.model.family().input_size();
    let input = Tensor::zeros((args.batch_size as usize, 3, side, side), DType::F32, device)?;
    let mut trace = Trace::on();
    model.forward_traced(&input, &mut trace)?;
    println!("{}", table(&trace.into_rows(), input.dims(), ParameterCount::of(&vars)));
    Ok(())
}

/// Bytes of `values` f32 values, in MiB.
fn mib(values: usize) -> f64 {
    values as f64 * 4.0 / (1024.0 * 1024.0)
}

/// The table, as Paddle prints it. Totals are `count`, the model's variables; the rows list
/// where they are (a test checks they agree).
fn table(rows: &[LayerRow], input: &[usize], count: ParameterCount) -> String {
    let shape = |s: &[usize]| format!("{s:?}");
    let width = rows.iter().map(|r| r.name.len() + r.kind.len() + 3).max().unwrap_or(0).max(14);
    let line = |c: &str| c.repeat(width + 60);
    let mut out = format!(
        "{}\n {:<width$} {:>20} {:>20} {:>15}\n{}\n",
        line("-"),
        "Layer (type)",
        "Input Shape",
        "Output Shape",
        "Param #",
        line("=")
    );
    for r in rows {
        let name = format!("{} ({})", r.name, r.kind);
        out += &format!(
            " {name:<width$} {:>20} {:>20} {:>15}\n",
            shape(&r.input),
            shape(&r.output),
            thousands(r.parameters())
        );
    }
    let input_values: usize = input.iter().product();
    let outputs: usize = rows.iter().map(|r| r.output.iter().product::<usize>()).sum();
    // Paddle counts every layer output twice (forward and gradient).
    let (input_mib, pass_mib, params_mib) = (mib(input_values), 2.0 * mib(outputs), mib(count.total));
    out += &format!(
        "{}\nTotal params: {}\nTrainable params: {}\nNon-trainable params: {}\n{}\n\
         Input size (MB): {input_mib:.2}\nForward/backward pass size (MB): {pass_mib:.2}\n\
         Params size (MB): {params_mib:.2}\nEstimated Total Size (MB): {:.2}\n{}",
        line("="),
        thousands(count.total),
        thousands(count.trainable),
        thousands(count.total - count.trainable),
        line("-"),
        input_mib + pass_mib + params_mib,
        line("-"),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ba_models::INPUT_SIZE;

    #[test]
    fn the_table_lists_the_layers_and_the_notebook_totals() {
        for (kind, total, trainable) in [
            (ModelKind::AlexNet, 7_524_042, 7_524_042),
            (ModelKind::SeAlexNet, 7_526_122, 7_526_106),
            (ModelKind::BaAlexNet, 7_529_258, 7_529_210),
        ] {
            let (vars, model) = fresh(kind, &Device::Cpu).unwrap();
            let input = Tensor::zeros((1, 3, INPUT_SIZE, INPUT_SIZE), DType::F32, &Device::Cpu).unwrap();
            let mut trace = Trace::on();
            model.forward_traced(&input, &mut trace).unwrap();
            let rows = trace.into_rows();
            let count = ParameterCount::of(&vars);
            assert_eq!(rows.iter().map(|r| r.parameters()).sum::<usize>(), count.total);
            let text = table(&rows, input.dims(), count);
            assert!(text.contains(&format!("Total params: {}\n", thousands(total))), "{text}");
            assert!(text.contains(&format!("Trainable params: {}\n", thousands(trainable))), "{text}");
            assert!(text.contains(&format!("Non-trainable params: {}\n", thousands(total - trainable))), "{text}");
            assert!(text.contains(" features.0 (Conv2D)") && text.contains("[1, 3, 128, 128]"), "{text}");
            assert!(text.contains("Input size (MB): 0.19"), "3 x 128 x 128 floats");
            assert_eq!(text.contains("ba.generation.2 (Sigmoid)"), kind == ModelKind::BaAlexNet);
            assert_eq!(text.contains("se.generation.2 (Sigmoid)"), kind == ModelKind::SeAlexNet);
        }
    }

    #[test]
    fn a_resnet_is_summarised_at_32x32_with_pytorchs_counts() {
        let kind = ModelKind::ResNet { depth: 20, gate: Some(ba_models::Gate::Bridge) };
        let (vars, model) = fresh(kind, &Device::Cpu).unwrap();
        let input = Tensor::zeros((1, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
        let mut trace = Trace::on();
        model.forward_traced(&input, &mut trace).unwrap();
        let text = table(&trace.into_rows(), input.dims(), ParameterCount::of(&vars));
        assert!(text.contains("Trainable params: 275,582\n"), "PyTorch's count: {text}");
        assert!(text.contains(" layer3.2.ba.generation.2 (Sigmoid)") && text.contains("[1, 3, 32, 32]"), "{text}");
    }
}
