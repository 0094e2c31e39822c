#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU, its driver, the CUDA 13 libraries (a CUDA
# toolkit, or PyTorch's nvidia-* wheels) and Python with torch and torchvision, but no Rust:
#   1. every ba-core op on the GPU against the CPU (gpu-bundle/cuda_ops),
#   2. a whole training step of both models on the GPU against the CPU (gpu-bundle/cuda_step),
#   3. one epoch of the full training recipe (50,000 images, batch 128, augmentation and mixup
#      on) for both models, beside the same epoch of the PyTorch reference on the same GPU.
# Build gpu-bundle/ first, on any machine: scripts/gpu-bundle.sh. Run from the checkout's root:
#   scripts/gpu-check.sh [--data DIR]     (default data: the committed sample, cycled to 50,000)
# Prints the tables for docs/benchmarks.md; with $OUT set, also writes them to $OUT/gpu-check.md.
# Takes about 5 minutes on an H100/H200 (estimated: not yet run on one).
set -euo pipefail
cd "$(dirname "$0")/.."
data=data/cifar-10-sample
[ "${1:-}" = "--data" ] && data=$2

fail() { echo "gpu-check: $*" >&2; exit 2; }
[ -f gpu-bundle/BUILD ] || fail "no gpu-bundle/: run scripts/gpu-bundle.sh (on any machine) first"
command -v nvidia-smi >/dev/null || fail "nvidia-smi not found: no NVIDIA driver here"
python=${PYTHON:-python3}

# The CUDA libraries the binaries link against: a toolkit's, or those of the nvidia-* wheels.
dirs=()
for d in "${CUDA_HOME:-}/lib64" /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d "$d" ] && dirs+=("$d")
done
while IFS= read -r d; do dirs+=("$d"); done < <("$python" - <<'PY' 2>/dev/null || true
import pathlib, sys
for root in map(pathlib.Path, sys.path):
    for lib in sorted(root.glob("nvidia/*/lib")):
        print(lib)
PY
)
LD_LIBRARY_PATH=$(IFS=:; echo "${dirs[*]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
for name in xtask cuda_ops cuda_step; do
    xz -dc "gpu-bundle/$name.xz" > "$bin/$name"
    chmod +x "$bin/$name"
    missing=$(ldd "$bin/$name" | awk '/not found/ {print $1}')
    [ -z "$missing" ] || fail "$name needs $(echo "$missing" | tr '\n' ' ')which are in none of: $LD_LIBRARY_PATH"
done

report=$(mktemp)
{
    echo "## GPU check: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"
    echo
    echo "bundle: $(tr '\n' ';' < gpu-bundle/BUILD)"
    echo "PyTorch: $("$python" -c 'import torch, torchvision; print(torch.__version__, "torchvision", torchvision.__version__)' 2>&1 | tail -1)"
    echo "CPU: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    echo
} > "$report"

# Each stage runs even when an earlier one failed (a GPU machine is a scarce, timed loan: one
# failing test should not cost the epoch timings); the script fails at the end.
failed=0
# Runs test binary $1 (stage $2), prints the tail of its output (all of it on failure) and
# adds a line to the report.
run_tests() {
    local log start
    log=$(mktemp)
    start=$SECONDS
    if "$bin/$1" --test-threads 1 > "$log" 2>&1; then
        tail -5 "$log"
        echo "- $2: all passed ($((SECONDS - start)) s)" >> "$report"
    else
        cat "$log"
        echo "- $2: FAILED ($((SECONDS - start)) s): $(grep -c '^test .* FAILED$' "$log") test(s), output above" >> "$report"
        failed=1
    fi
    rm -f "$log"
}

echo "== 1/3 ba-core ops on the GPU against the CPU"
run_tests cuda_ops "ops"

echo "== 2/3 a training step of both models on the GPU against the CPU"
run_tests cuda_step "training step"
echo >> "$report"

echo "== 3/3 one epoch of the full recipe, ours and PyTorch's, on the GPU: f32, then mixed precision"
for precision in f32 bf16; do
    if ! "$bin/xtask" --device cuda bench epoch --images 50000 --batch-size 128 --lr 1e-4 --mixup-alpha 1.5 \
        --precision "$precision" --data "$data" --python "$python" | tee -a "$report"; then
        echo "- epoch ($precision): FAILED, output above" >> "$report"
        failed=1
    fi
done

echo
cat "$report"
if [ -n "${OUT:-}" ]; then cp "$report" "$OUT/gpu-check.md"; fi
exit "$failed"
