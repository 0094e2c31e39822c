#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU, its driver, the CUDA 13 libraries (a CUDA
# toolkit, or PyTorch's nvidia-* wheels) and Python with torch and torchvision, but no Rust:
#   1. every ba-core op on the GPU against the CPU (gpu-bundle/cuda_ops),
#   2. a whole training step of both models on the GPU against the CPU (gpu-bundle/cuda_step),
#   3. ten steps of our training on the GPU against the same ten on the CPU (same seed, same
#      batches), then one epoch of the full training recipe (25,000 images, batch 128,
#      augmentation and mixup on) for both models in f32 and in bf16, beside the same epoch of
#      the PyTorch reference on the same GPU, loss and accuracy beside every time.
# Build gpu-bundle/ first, on any machine: scripts/gpu-bundle.sh. Run from the checkout's root:
#   scripts/gpu-check.sh [--data DIR]     (default data: the committed sample, cycled)
# Every stage has its own time limit (8 minutes in all, so one 10-minute command holds the
# check) and appends its part of the report as it ends: with $OUT set, to $OUT/gpu-check.md,
# with each stage's whole output in $OUT/logs/, so a timeout keeps every finished stage.
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

if [ -n "${OUT:-}" ]; then
    report=$OUT/gpu-check.md
    logs=$OUT/logs
else
    report=$(mktemp)
    logs=$(mktemp -d)
fi
mkdir -p "$logs"
images=${GPU_CHECK_IMAGES:-25000}
{
    echo "## GPU check: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"
    echo
    echo "bundle: $(tr '\n' ';' < gpu-bundle/BUILD)"
    echo "PyTorch: $("$python" -c 'import torch, torchvision; print(torch.__version__, "torchvision", torchvision.__version__)' 2>&1 | tail -1)"
    echo "CPU: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    echo
} > "$report"

# Each stage runs even when an earlier one failed or ran out of time (a GPU machine is a
# scarce, timed loan: one failing test should not cost the epoch timings); the script fails at
# the end.
failed=0
# Runs stage $1 (a name without spaces: its log file's) under a limit of $2 seconds: the command after them, its output in
# $logs/$1.log, shown as it runs (all of it on failure), and one line of the report; with
# `table` as $3, the command's table goes into the report too.
stage() {
    local name=$1 limit=$2 start rc log
    shift 2
    local with_table=0
    [ "$1" = table ] && { with_table=1; shift; }
    log=$logs/$name.log
    start=$SECONDS
    echo "== $name (at most $limit s)"
    set +e
    timeout -k 10 "$limit" "$@" > "$log" 2>&1
    rc=$?
    set -e
    if [ "$rc" -eq 0 ]; then
        tail -5 "$log"
        echo "- $name: passed ($((SECONDS - start)) s)" >> "$report"
    else
        cat "$log"
        if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
            echo "- $name: TIMED OUT after $limit s; output in logs/$name.log" >> "$report"
        else
            echo "- $name: FAILED ($((SECONDS - start)) s, exit $rc): $(grep -c '^test .* FAILED$' "$log") failed test(s); output in logs/$name.log" >> "$report"
        fi
        failed=1
    fi
    if [ "$with_table" -eq 1 ]; then
        { echo; grep '^|' "$log" || true; grep '^(' "$log" || true; echo; } >> "$report"
    fi
}

# 1. The ops, each launch waited for, so that a fault names the test that caused it.
stage ops 120 env CUDA_LAUNCH_BLOCKING=1 "$bin/cuda_ops" --test-threads 1

# 1b. Out-of-bounds and uninitialised accesses in the convolution and pooling kernels.
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ -n "$sanitizer" ]; then
    stage memcheck 90 "$sanitizer" --tool memcheck --error-exitcode 1 "$bin/cuda_ops" --test-threads 1 conv pool
else
    echo "- memcheck: skipped, no compute-sanitizer on this machine" >> "$report"
fi

# 2. A whole training step of each model against the CPU.
stage step 60 "$bin/cuda_step" --test-threads 1

# 3. Ten steps of ours on the GPU against the CPU, then the epochs beside PyTorch.
stage steps-against-cpu 60 table "$bin/xtask" --device cuda bench epoch --images 1280 \
    --batch-size 128 --lr 1e-4 --mixup-alpha 1.5 --data "$data" --no-torch --against-cpu
stage epoch-f32 90 table "$bin/xtask" --device cuda bench epoch --images "$images" --batch-size 128 \
    --lr 1e-4 --mixup-alpha 1.5 --precision f32 --data "$data" --python "$python"
stage epoch-bf16 60 table "$bin/xtask" --device cuda bench epoch --images "$images" --batch-size 128 \
    --lr 1e-4 --mixup-alpha 1.5 --precision bf16 --data "$data" --python "$python"

echo
cat "$report"
echo "(each stage's whole output: $logs)"
exit "$failed"
