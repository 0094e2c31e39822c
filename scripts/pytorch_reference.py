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
from torch import nn

ROOT = pathlib.Path(__file__).resolve().parent.parent
INPUTS = ROOT / "target" / "pytorch-compat"
FIXTURE = ROOT / "crates" / "ba-train" / "tests" / "fixtures" / "pytorch_logits.json"


class BAModule(nn.Module):
    """Bridge Attention as in the BA-Net reference code."""

    def __init__(self, pre_channels, cur_channel, reduction=16):
        super().__init__()
        hidden = cur_channel // reduction
        self.pre_fusions = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, hidden, 1, bias=False), nn.BatchNorm2d(hidden))
            for c in pre_channels
        )
        self.cur_fusion = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(cur_channel, hidden, 1, bias=False), nn.BatchNorm2d(hidden)
        )
        self.generation = nn.Sequential(nn.ReLU(), nn.Conv2d(hidden, cur_channel, 1, bias=False), nn.Sigmoid())

    def forward(self, pre_layers, cur_layer):
        att = self.cur_fusion(cur_layer)
        for fusion, pre in zip(self.pre_fusions, pre_layers):
            att = att + fusion(pre)
        return self.generation(att)


class AlexNet(nn.Module):
    """The notebook's AlexNet for 128x128 input; with `ba=True` the gate is applied to conv3."""

    def __init__(self, num_classes=10, ba=False):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 48, 11, 4, 5), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(48, 128, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        )
        self.conv1 = nn.Conv2d(128, 192, 3, padding=1)
        self.conv2 = nn.Conv2d(192, 192, 3, padding=1)
        self.conv3 = nn.Conv2d(192, 128, 3, padding=1)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2)
        if ba:
            self.ba = BAModule([192, 192], 128, 16)
        self.classifier = nn.Sequential(
            nn.Linear(128 * 3 * 3, 2048), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(2048, 2048), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(2048, num_classes),
        )

    def forward(self, x):
        x = self.features(x)
        x1 = self.relu(self.conv1(x))
        x2 = self.relu(self.conv2(x1))
        x3 = self.conv3(x2)
        if hasattr(self, "ba"):
            x3 = x3 * self.ba([x1, x2], x3)
        x = self.maxpool(self.relu(x3))
        return self.classifier(torch.flatten(x, 1))


def main():
    images = load_file(INPUTS / "input.safetensors")["images"].double()
    out = {"torch_version": torch.__version__}
    for name, ba in [("alexnet", False), ("ba-alexnet", True)]:
        model = AlexNet(ba=ba).double()
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
