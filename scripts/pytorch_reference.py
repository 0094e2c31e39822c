#!/usr/bin/env python3
"""Independent reference for ba-models: the same networks written in PyTorch.

Loads the weights and input that `cargo test --release -p ba-train --test pytorch_compat --
--ignored write_pytorch_inputs` writes to target/pytorch-compat/, with
`load_state_dict(strict=True)` (so every name, shape and buffer must match PyTorch's module
tree), runs both models in eval mode and writes their logits to
crates/ba-train/tests/fixtures/pytorch_logits.json, which the test `eval_logits_match_pytorch`
compares against the Rust models.

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


def main():
    images = load_file(INPUTS / "input.safetensors")["images"].double()
    out = {"torch_version": torch.__version__}
    for name, gate in GATES.items():
        model = AlexNet(gate=gate).double()
        state = {k: (v if v.dtype == torch.int64 else v.double()) for k, v in load_file(INPUTS / f"{name}.safetensors").items()}
        model.load_state_dict(state, strict=True)
        model.eval()
        with torch.no_grad():
            out[name] = model(images).tolist()
        print(f"{name}: strict load ok, {sum(p.numel() for p in model.parameters())} trainable parameters")
    FIXTURE.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {FIXTURE}")


if __name__ == "__main__":
    sys.exit(main())
