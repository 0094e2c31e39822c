#!/usr/bin/env bash
# Regenerates the PyTorch fixtures of crates/ba-train/tests/fixtures/ (pytorch_logits.json,
# pytorch_step.json: scripts/pytorch_reference.py; pytorch_resnets.json:
# scripts/resnet_reference.py). Needs a Python with torch and safetensors: PYTHON=path/to/python.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release -p ba-train --test pytorch_compat -- --ignored write_pytorch_inputs
cargo test --release -p ba-train --test pytorch_resnets -- --ignored write_resnet_inputs
"${PYTHON:-python3}" scripts/pytorch_reference.py
"${PYTHON:-python3}" scripts/resnet_reference.py
cargo test --release -p ba-train --test pytorch_compat --test pytorch_resnets
