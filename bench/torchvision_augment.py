"""torchvision's version of the notebook's training augmentation, timed on one core, for
`cargo xtask bench augment` (which runs this script beside our pipeline and prints both).

Usage: python bench/torchvision_augment.py CIFAR_BINARY_FILE IMAGES
Prints one JSON line per path: {"path": "pil" | "tensor", "threads": 1, "images_per_s": ...}.
"""
import gzip
import json
import sys
import time

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def load(path, n):
    raw = open(path, "rb").read()
    if path.endswith(".gz"):
        raw = gzip.decompress(raw)
    recs = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3073)[:n]
    return [r[1:].reshape(3, 32, 32).transpose(1, 2, 0).copy() for r in recs]


def pipeline():
    return [
        T.Resize((130, 130)),
        T.ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5),
        T.RandomResizedCrop(128, scale=(0.4, 1.0)),
        T.RandomHorizontalFlip(0.5),
        T.RandomRotation(45),
    ]


def timed(fn, inputs):
    for x in inputs[:50]:
        fn(x)  # warm-up
    best = float("inf")
    for _ in range(3):  # the fastest of three, as the Rust side measures
        start = time.perf_counter()
        for x in inputs:
            fn(x)
        best = min(best, time.perf_counter() - start)
    return len(inputs) / best


def main():
    path, n = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    images = load(path, n)
    pil = T.Compose(pipeline() + [T.ToTensor(), T.Normalize(MEAN, STD)])
    pil_inputs = [Image.fromarray(a) for a in images]
    print(json.dumps({"path": "pil", "threads": 1, "images_per_s": timed(pil, pil_inputs)}), flush=True)
    tensor = T.Compose([T.ConvertImageDtype(torch.float32)] + pipeline() + [T.Normalize(MEAN, STD)])
    tensor_inputs = [torch.from_numpy(a).permute(2, 0, 1).contiguous() for a in images]
    print(json.dumps({"path": "tensor", "threads": 1, "images_per_s": timed(tensor, tensor_inputs)}), flush=True)


if __name__ == "__main__":
    main()
