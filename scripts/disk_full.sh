#!/usr/bin/env bash
# A full disk during a checkpoint write: train on a 200 MB tmpfs that holds the first
# checkpoint but not the second, check the run stops with "No space left on device" naming the
# file, then resume a copy of the run folder elsewhere and check its final weights are
# byte-identical to an uninterrupted run's. Needs root (mount) and a release build
# (`cargo build --release -p xtask`). See docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."
xtask=target/release/xtask
data=crates/ba-data/tests/fixtures/cifar-10-batches-bin
args=(train --model ba-alexnet --data "$data" --batch-size 4 --epochs 8)
small=$(mktemp -d) work=$(mktemp -d)
trap 'umount "$small" 2>/dev/null || true; rm -rf "$small" "$work"' EXIT
mount -t tmpfs -o size=200m tmpfs "$small"

if RUST_BACKTRACE=0 RUST_LOG=warn "$xtask" "${args[@]}" --out "$small" >"$work/out.txt" 2>&1; then
  echo "FAIL: the run did not stop on the full disk" >&2; exit 1
fi
grep -q "checkpoint.safetensors.tmp: .*No space left on device" "$work/out.txt" || {
  echo "FAIL: unexpected message:" >&2; cat "$work/out.txt" >&2; exit 1; }
grep -q "continue with: cargo xtask train --resume $small/train-ba-alexnet-1" "$work/out.txt" || {
  echo "FAIL: no resume hint:" >&2; cat "$work/out.txt" >&2; exit 1; }
echo "stopped as expected:"; cat "$work/out.txt"
cp -r "$small/train-ba-alexnet-1" "$work/resumed"
RUST_LOG=warn "$xtask" train --resume "$work/resumed" >/dev/null
RUST_LOG=warn "$xtask" "${args[@]}" --out "$work/straight" >/dev/null
cmp "$work/resumed/final.safetensors" "$work/straight/train-ba-alexnet-1/final.safetensors"
echo "OK: resumed from the last whole checkpoint; final weights byte-identical to an uninterrupted run"
