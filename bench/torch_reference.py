"""The PyTorch reference for `cargo xtask bench train`: the identical AlexNet / BA-AlexNet,
loss and optimizer, timed the way the Rust side times ours, one configuration per process so
that each peak RSS is its own.

Usage:
    python bench/torch_reference.py step  --model ba-alexnet --batch 128 --threads 2 [--steps 7]
    python bench/torch_reference.py infer --model alexnet --batch 128 --threads 2
    python bench/torch_reference.py gemm  --threads 2
    python bench/torch_reference.py epoch --model alexnet --data data/cifar-10-sample --images 50000 \
        --batch 128 --mixup-alpha 1.5 --workers 16 --device cuda [--tf32 on]

Prints one JSON line. `step`: median seconds of forward (train mode, with the loss), backward
and optimizer over --steps timed steps after 3 warm-ups, and the process's peak RSS. `infer`:
median seconds of an evaluation-mode forward pass without gradients over 11 passes after 3
warm-ups. `gemm`: GFLOP/s of a 2048^3 f32 matrix product, best of 5. `epoch`: seconds of one
training pass over --images images (the CIFAR-10 binary training file(s) under --data, cycled)
through the notebook's torchvision augmentation in a DataLoader, with mixup, label-smoothed loss,
Adam and a per-step cosine schedule, then of one validation pass over the test file, with the
pass's mean training loss per image and the validation accuracy; needs torchvision. On a GPU,
f32 convolutions and products run in true f32 unless `--tf32 on` (PyTorch's own default for
cuDNN convolutions is TF32).

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
from torch_models import GATES, AlexNet, resnet_of  # noqa: E402

RESNETS = [f"{g}resnet{d}" for d in (20, 32, 56, 110) for g in ("", "se-", "ba-")]


def model_of(name):
    """The model of a ba-models name: an AlexNet or a CIFAR ResNet."""
    return AlexNet(gate=GATES[name]) if name in GATES else resnet_of(name)


def side_of(name):
    """Side of the model's input images."""
    return 128 if name in GATES else 32


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def batch(size, side=128):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(size, 3, side, side, generator=g)
    targets = F.one_hot(torch.randint(0, 10, (size,), generator=g), 10).float()
    return images, targets


def step(args):
    model = model_of(args.model)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-5)
    images, targets = batch(args.batch, side_of(args.model))
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
    model = model_of(args.model)
    model.eval()
    images, _ = batch(args.batch, side_of(args.model))
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


MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def read_binary(paths):
    """(images as HxWx3 uint8 arrays, labels) of CIFAR-10 binary files, gzipped or not."""
    import gzip

    import numpy as np

    records = []
    for path in paths:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        records.append(np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3073))
    records = np.concatenate(records)
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, records[:, 0].astype(np.int64)


class Images(torch.utils.data.Dataset):
    def __init__(self, images, labels, count, transform):
        self.images, self.labels, self.count, self.transform = images, labels, count, transform

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        from PIL import Image

        j = i % len(self.labels)
        return self.transform(Image.fromarray(self.images[j])), int(self.labels[j])


def epoch(args):
    import torchvision.transforms as T

    data = pathlib.Path(args.data)
    train_files = sorted(data.glob("data_batch_*.bin*"))
    test_files = sorted(data.glob("test_batch.bin*"))
    if not train_files or not test_files:
        raise SystemExit(f"{data}: no CIFAR-10 binary files (data_batch_*.bin[.gz], test_batch.bin[.gz])")
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32 == "on"
    torch.backends.cudnn.allow_tf32 = args.tf32 == "on"
    train_tf = T.Compose(
        [
            T.Resize((130, 130)),
            T.ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5),
            T.RandomResizedCrop(128, scale=(0.4, 1.0)),
            T.RandomHorizontalFlip(0.5),
            T.RandomRotation(45),
            T.ToTensor(),
            T.Normalize(MEAN, STD),
        ]
    )
    test_tf = T.Compose([T.Resize((128, 128)), T.ToTensor(), T.Normalize(MEAN, STD)])
    images, labels = read_binary(train_files)
    test_images, test_labels = read_binary(test_files)
    loader = lambda dataset, shuffle, drop_last: torch.utils.data.DataLoader(  # noqa: E731
        dataset,
        batch_size=args.batch,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    train = loader(Images(images, labels, args.images, train_tf), True, True)
    val = loader(Images(test_images, test_labels, len(test_labels), test_tf), False, False)
    model = AlexNet(gate=GATES[args.model]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=len(train))
    beta = torch.distributions.Beta(args.mixup_alpha, args.mixup_alpha) if args.mixup_alpha > 0 else None

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    model.train()
    loss_sum, seen = 0.0, 0
    sync()
    t0 = time.perf_counter()
    for x, y in train:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        target = F.one_hot(y, 10).float()
        if beta is not None:
            lam = beta.sample().item()
            perm = torch.randperm(x.shape[0], device=device)
            x = lam * x + (1 - lam) * x[perm]
            target = lam * target + (1 - lam) * target[perm]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            loss = F.cross_entropy(model(x), target, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_sum += loss.item() * x.shape[0]  # the trainer reads every loss, as ours does
        seen += x.shape[0]
    sync()
    t1 = time.perf_counter()
    model.eval()
    correct = 0
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
        for x, y in val:
            correct += model(x.to(device)).argmax(1).eq(y.to(device)).sum().item()
    sync()
    return {
        "train_seconds": t1 - t0,
        "val_seconds": time.perf_counter() - t1,
        "train_loss": loss_sum / seen,
        "val_accuracy": correct / len(val.dataset),
        "tf32": args.tf32 == "on",
        "device": str(device),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["step", "infer", "gemm", "epoch"])
    p.add_argument("--model", default="ba-alexnet", choices=list(GATES) + RESNETS)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=7)
    p.add_argument("--data", default="data/cifar-10-sample")
    p.add_argument("--images", type=int, default=50000)
    p.add_argument("--mixup-alpha", type=float, default=1.5)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="f32", choices=["f32", "bf16"], help="epoch: bf16 runs under autocast")
    p.add_argument("--tf32", default="off", choices=["off", "on"], help="epoch on a GPU: TF32 for f32 products")
    args = p.parse_args()
    torch.manual_seed(0)
    if args.what != "epoch":  # the epoch keeps PyTorch's own thread choice, as a user would
        torch.set_num_threads(args.threads)
    result = {"step": step, "infer": infer, "gemm": gemm, "epoch": epoch}[args.what](args)
    result.update(torch=torch.__version__, threads=torch.get_num_threads())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
