#!/usr/bin/env python3
"""Independent reference for ba-models: the same networks written in PyTorch.

Loads the weights and input that `cargo test --release -p ba-train --test pytorch_compat --
--ignored write_pytorch_inputs` writes to target/pytorch-compat/, with
`load_state_dict(strict=True)` (so every name, shape and buffer must match PyTorch's module
tree), in float64, and for each model:
- runs it in eval mode and writes its logits to crates/ba-train/tests/fixtures/pytorch_logits.json
  (the test `eval_logits_match_pytorch`);
- takes one training step in train mode (dropout off, soft targets, label smoothing 0.1,
  torch.optim.Adam lr 1e-3 with weight_decay 1e-5) and writes the loss, every parameter's
  gradient, the batch-norm running statistics after the step and the updated parameters to
  crates/ba-train/tests/fixtures/pytorch_step.json (the test `a_training_step_matches_pytorch`).
  Tensors of more than 256 values are summarised: max |value|, sum, and the values at 24
  fixed indices.

Setup (once; CI does not run this):  python3 -m venv .venv && .venv/bin/pip install torch safetensors
Run:  scripts/pytorch_reference.sh
"""
import json
import pathlib
import sys

import torch
from safetensors.torch import load_file

from torch_models import GATES, AlexNet

ROOT = pathlib.Path(__file__).resolve().parent.parent
INPUTS = ROOT / "target" / "pytorch-compat"
FIXTURE = ROOT / "crates" / "ba-train" / "tests" / "fixtures" / "pytorch_logits.json"
STEP_FIXTURE = ROOT / "crates" / "ba-train" / "tests" / "fixtures" / "pytorch_step.json"
SMALL = 256
SAMPLES = 24


def short(x):
    """A float with 10 significant digits (the tests' tolerances are 1e-5 and wider)."""
    return float(f"{x:.10g}")


def summary(t):
    """Every value of a small tensor; max |value|, sum and 24 values at fixed indices of a large one."""
    flat = t.detach().flatten()
    if flat.numel() <= SMALL:
        return {"values": [short(x) for x in flat.tolist()]}
    n = flat.numel()
    indices = sorted({(k * 2654435761) % n for k in range(SAMPLES)})
    return {
        "max_abs": short(flat.abs().max().item()),
        "sum": short(flat.sum().item()),
        "samples": [[i, short(flat[i].item())] for i in indices],
    }


def training_step(model, images, targets):
    """One step in train mode with dropout off; what the fixture records of it."""
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    params = dict(model.named_parameters())
    optimizer = torch.optim.Adam(params.values(), lr=1e-3, weight_decay=1e-5)
    loss = torch.nn.functional.cross_entropy(model(images), targets, label_smoothing=0.1)
    loss.backward()
    grads = {name: summary(p.grad) for name, p in params.items()}
    optimizer.step()
    return {
        "loss": loss.item(),
        "grads": grads,
        "updated": {name: summary(p) for name, p in params.items()},
        "buffers": {name: b.flatten().tolist() for name, b in model.named_buffers() if "running_" in name},
    }


def main():
    inputs = load_file(INPUTS / "input.safetensors")
    images = inputs["images"].double()
    step_images, step_targets = inputs["step_images"].double(), inputs["step_targets"].double()
    out = {"torch_version": torch.__version__}
    steps = {"torch_version": torch.__version__}
    for name, gate in GATES.items():
        model = AlexNet(gate=gate).double()
        state = {k: (v if v.dtype == torch.int64 else v.double()) for k, v in load_file(INPUTS / f"{name}.safetensors").items()}
        model.load_state_dict(state, strict=True)
        model.eval()
        with torch.no_grad():
            out[name] = model(images).tolist()
        print(f"{name}: strict load ok, {sum(p.numel() for p in model.parameters())} trainable parameters")
        steps[name] = training_step(model, step_images, step_targets)
    FIXTURE.write_text(json.dumps(out, indent=1) + "\n")
    STEP_FIXTURE.write_text(json.dumps(steps) + "\n")
    print(f"wrote {FIXTURE} and {STEP_FIXTURE}")


if __name__ == "__main__":
    sys.exit(main())
