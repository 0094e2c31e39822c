#!/usr/bin/env python3
"""Independent reference for the CIFAR ResNets of ba-models: their twins in scripts/torch_models.py.

Loads the weights and batch that `cargo test --release -p ba-train --test pytorch_resnets --
--ignored write_resnet_inputs` writes to target/pytorch-compat/, with
`load_state_dict(strict=True)`, in float64, and for each of the twelve models writes to
crates/ba-train/tests/fixtures/pytorch_resnets.json: the trainable parameter count and the
number of running-statistics values, the eval-mode logits, and for one train-mode pass (batch
statistics) the logits, the soft-target cross-entropy, per parameter the sum of |gradient| and
its first value, and every batch norm's running statistics afterwards (depth 20 only: the
deeper nets' are the same code, and the file stays small).

Run: scripts/pytorch_reference.sh (with a Python that has torch and safetensors: PYTHON=...)
"""
import json
import pathlib

import torch
from safetensors.torch import load_file

from torch_models import resnet_of

ROOT = pathlib.Path(__file__).resolve().parent.parent
INPUTS = ROOT / "target" / "pytorch-compat"
FIXTURE = ROOT / "crates" / "ba-train" / "tests" / "fixtures" / "pytorch_resnets.json"
NAMES = [f"{g}resnet{d}" for d in (20, 32, 56, 110) for g in ("", "se-", "ba-")]


def short(x):
    return float(f"{x:.10g}")


def main():
    batch = load_file(INPUTS / "resnet-input.safetensors")
    images, targets = batch["images"].double(), batch["targets"].double()
    out = {"torch_version": torch.__version__}
    for name in NAMES:
        model = resnet_of(name).double()
        state = {k: (v if v.dtype == torch.int64 else v.double()) for k, v in load_file(INPUTS / f"{name}.safetensors").items()}
        model.load_state_dict(state, strict=True)
        record = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "running_statistics": sum(b.numel() for n, b in model.named_buffers() if "running_" in n),
        }
        model.eval()
        with torch.no_grad():
            record["eval_logits"] = [short(v) for v in model(images).flatten().tolist()]
        model.train()
        logits = model(images)
        loss = torch.sum(-targets * torch.log_softmax(logits, 1)) / len(images)
        loss.backward()
        record["train_logits"] = [short(v) for v in logits.detach().flatten().tolist()]
        record["loss"] = loss.item()
        record["grads"] = {
            n: [short(p.grad.abs().sum().item()), short(p.grad.flatten()[0].item())] for n, p in model.named_parameters()
        }
        record["buffers"] = {
            n: [short(v) for v in b.flatten().tolist()]
            for n, b in model.named_buffers()
            if "running_" in n and name.endswith("resnet20")
        }
        out[name] = record
        print(f"{name}: strict load ok, {record['parameters']} trainable parameters")
    FIXTURE.write_text(json.dumps(out) + "\n")
    print(f"wrote {FIXTURE}")


if __name__ == "__main__":
    main()
