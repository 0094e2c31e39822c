"""The PyTorch reference for `cargo xtask bench train`: the identical AlexNet / BA-AlexNet,
loss and optimizer, timed the way the Rust side times ours, one configuration per process so
that each peak RSS is its own.

Usage:
    python bench/torch_reference.py step  --model ba-alexnet --batch 128 --threads 2 [--steps 7]
    python bench/torch_reference.py infer --model alexnet --batch 128 --threads 2
    python bench/torch_reference.py gemm  --threads 2

Prints one JSON line. `step`: median seconds of forward (train mode, with the loss), backward
and optimizer over --steps timed steps after 3 warm-ups, and the process's peak RSS. `infer`:
median seconds of an evaluation-mode forward pass without gradients over 11 passes after 3
warm-ups. `gemm`: GFLOP/s of a 2048^3 f32 matrix product, best of 5.

Set up (once): python3 -m venv .venv && .venv/bin/pip install torch numpy
"""
import argparse
import json
import pathlib
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

# The networks themselves are the ones scripts/pytorch_reference.py checks against our weights.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "scripts"))
from torch_models import AlexNet  # noqa: E402


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def batch(size):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(size, 3, 128, 128, generator=g)
    targets = F.one_hot(torch.randint(0, 10, (size,), generator=g), 10).float()
    return images, targets


def step(args):
    model = AlexNet(ba=args.model == "ba-alexnet")
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-5)
    images, targets = batch(args.batch)
    phases = {"forward": [], "backward": [], "optimizer": []}
    for i in range(3 + args.steps):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(images), targets, label_smoothing=0.1)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        if i >= 3:
            phases["forward"].append(t1 - t0)
            phases["backward"].append(t2 - t1)
            phases["optimizer"].append(t3 - t2)
    out = {k: statistics.median(v) for k, v in phases.items()}
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def infer(args):
    model = AlexNet(ba=args.model == "ba-alexnet")
    model.eval()
    images, _ = batch(args.batch)
    times = []
    with torch.no_grad():
        for i in range(3 + 11):
            t0 = time.perf_counter()
            model(images)
            if i >= 3:
                times.append(time.perf_counter() - t0)
    return {"seconds": statistics.median(times), "peak_rss_mib": peak_rss_mib()}


def gemm(_args):
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return {"gflops": 2 * n**3 / best / 1e9}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["step", "infer", "gemm"])
    p.add_argument("--model", default="ba-alexnet", choices=["alexnet", "ba-alexnet"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=7)
    args = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    result = {"step": step, "infer": infer, "gemm": gemm}[args.what](args)
    result.update(torch=torch.__version__, threads=torch.get_num_threads())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
