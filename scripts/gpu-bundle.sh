#!/usr/bin/env bash
# Builds everything scripts/gpu-check.sh needs on a GPU machine that has no Rust toolchain:
# the xtask binary and the two GPU test binaries (ba-core's ops, a whole training step), built
# with `--features cuda` here (no GPU needed), stripped and xz-compressed into gpu-bundle/
# (about 20 MB, git-ignored). Installs the CUDA toolkit from PyPI into .cuda/ first if needed.
#
#   scripts/gpu-bundle.sh            then copy the checkout (with gpu-bundle/) to the GPU machine
#                                    and run scripts/gpu-check.sh there
set -euo pipefail
cd "$(dirname "$0")/.."

[ -f .cuda/env.sh ] || { cargo fetch --quiet; scripts/cuda-toolkit.sh .cuda; }
# shellcheck source=/dev/null
source .cuda/env.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cuda}"

# Prints the executables a cargo build produced, one per line.
executables() {
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["executable"])'
}

echo "== building with --features cuda (CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP)"
xtask=$(cargo build --release --features cuda -p xtask --bin xtask --message-format=json | executables)
ops=$(cargo test --release --features cuda -p ba-core --test cuda_ops --no-run --message-format=json | executables)
step=$(cargo test --release --features cuda -p ba-models --test cuda_step --no-run --message-format=json | executables)

rm -rf gpu-bundle
mkdir -p gpu-bundle
for pair in "xtask:$xtask" "cuda_ops:$ops" "cuda_step:$step"; do
    name=${pair%%:*}
    strip -o "gpu-bundle/$name" "${pair#*:}"
    xz -T0 -6 "gpu-bundle/$name"
done
{
    echo "commit $(git rev-parse HEAD)$(git diff --quiet HEAD || echo ' (with uncommitted changes)')"
    echo "built $(date -u +%FT%TZ) with $(nvcc --version | tail -1), compute capability $CUDA_COMPUTE_CAP"
} > gpu-bundle/BUILD
ls -l gpu-bundle
du -sh gpu-bundle
