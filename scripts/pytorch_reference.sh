#!/usr/bin/env bash
# Regenerates crates/ba-train/tests/fixtures/pytorch_logits.json from PyTorch (see
# scripts/pytorch_reference.py). Needs a Python with torch and safetensors: PYTHON=path/to/python.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release -p ba-train --test pytorch_compat -- --ignored write_pytorch_inputs
"${PYTHON:-python3}" scripts/pytorch_reference.py
cargo test --release -p ba-train --test pytorch_compat
