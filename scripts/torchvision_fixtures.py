"""Reference outputs of torchvision's transforms for crates/ba-data/tests/torchvision.rs.

Runs each transform of the notebook's pipelines with fixed parameters (crop boxes, angles,
factors) on real CIFAR-10 test images from data/cifar-10-sample, on float tensors in [0, 1]
(torchvision's tensor path), and writes crates/ba-data/tests/fixtures/torchvision.safetensors:
the inputs, the outputs, and in the metadata the list of cases and sampling statistics.

CI does not run this; rerun it when a transform changes:
    python3 -m venv .venv && .venv/bin/pip install torch torchvision safetensors numpy
    .venv/bin/python scripts/torchvision_fixtures.py
"""
import gzip
import json
import pathlib

import numpy as np
import torch
import torchvision
import torchvision.transforms as T
import torchvision.transforms.functional as F
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/ba-data/tests/fixtures/torchvision.safetensors"
BILINEAR = T.InterpolationMode.BILINEAR
NEAREST = T.InterpolationMode.NEAREST
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def cifar_test_images(n):
    raw = gzip.decompress((ROOT / "data/cifar-10-sample/test_batch.bin.gz").read_bytes())
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3073)[:n]
    return [torch.from_numpy(r[1:].reshape(3, 32, 32).copy()).float() / 255.0 for r in records]


def jitter(img, steps):
    for op, factor in steps:
        fn = {"brightness": F.adjust_brightness, "contrast": F.adjust_contrast, "saturation": F.adjust_saturation}[op]
        img = fn(img, factor)
    return img


# The notebook's pipelines as torchvision's own Compose (on tensors, so no ToTensor).
NOTEBOOK_TRAIN = T.Compose([
    T.Resize((130, 130)),
    T.ColorJitter(0.5, 0.5, 0.5),
    T.RandomResizedCrop(128, scale=(0.4, 1.0)),
    T.RandomHorizontalFlip(),
    T.RandomRotation(45),
    T.Normalize(MEAN, STD),
])
NOTEBOOK_TEST = T.Compose([T.Resize((128, 128)), T.Normalize(MEAN, STD)])
# The CIFAR ResNets' pipelines (He et al.; CIFAR-10's own channel statistics).
CIFAR_MEAN, CIFAR_STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]
CIFAR_TRAIN = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.Normalize(CIFAR_MEAN, CIFAR_STD)])
CIFAR_TEST = T.Compose([T.Normalize(CIFAR_MEAN, CIFAR_STD)])


def cifar_train(img, top, left, flip):
    """CIFAR_TRAIN with its crop (on the padded image) and flip fixed."""
    saved = vars(T.RandomCrop)["get_params"], torch.rand
    T.RandomCrop.get_params = staticmethod(lambda *_: (top, left, 32, 32))
    torch.rand = lambda *_, **__: torch.tensor([0.0 if flip else 1.0])
    try:
        return CIFAR_TRAIN(img)
    finally:
        T.RandomCrop.get_params, torch.rand = saved
JITTER_INDEX = {"brightness": 0, "contrast": 1, "saturation": 2}


def notebook_train(img, steps, box, flip, angle):
    """NOTEBOOK_TRAIN on `img` with its random draws fixed: each transform's own get_params (and
    the flip's torch.rand) is replaced for the call, so the Compose, its order and its fixed
    parameters (sizes, normalisation) are torchvision's."""
    order = [JITTER_INDEX[op] for op, _ in steps] + [3]
    factors = {op: f for op, f in steps}
    classes = (T.ColorJitter, T.RandomResizedCrop, T.RandomRotation)
    saved = [vars(c)["get_params"] for c in classes], torch.rand
    T.ColorJitter.get_params = staticmethod(
        lambda *_: (torch.tensor(order), factors["brightness"], factors["contrast"], factors["saturation"], None)
    )
    T.RandomResizedCrop.get_params = staticmethod(lambda *_: tuple(box))
    T.RandomRotation.get_params = staticmethod(lambda *_: angle)
    torch.rand = lambda *_, **__: torch.tensor([0.0 if flip else 1.0])
    try:
        return NOTEBOOK_TRAIN(img)
    finally:
        for c, get_params in zip(classes, saved[0]):
            c.get_params = get_params
        torch.rand = saved[1]


def main():
    tensors, cases = {}, []

    def case(name, op, input_name, output, **params):
        tensors[name] = output.contiguous()
        cases.append({"name": name, "op": op, "input": input_name, **params})

    # Small outputs keep the fixture small: the semantics do not depend on the size, and the
    # pipeline case checks the notebook's real sizes (130 -> 128).
    for k, img in enumerate(cifar_test_images(2)):
        src = f"cifar{k}"
        tensors[src] = img
        r130 = F.resize(img, [130, 130], BILINEAR, antialias=True)
        steps = [["contrast", 0.8], ["brightness", 1.2], ["saturation", 0.6]]
        box, angle, flip = [7, 12, 95, 110], -33.3, k == 0
        out = notebook_train(img, steps, box, flip, angle)
        case(f"{src}_pipeline", "pipeline", src, out, steps=steps, box=box, flip=flip, angle=angle)
        # The padded crop at the frame's corners and inside, flipped or not.
        for top, left, flip in ([0, 0, True], [8, 8, False], [3, 6, k == 0], [8, 0, False]):
            out = cifar_train(img, top, left, flip)
            case(f"{src}_cifar_{top}_{left}_{int(flip)}", "cifar_pipeline", src, out, top=top, left=left, flip=flip)
        if k > 0:
            continue
        case(f"{src}_cifar_test", "cifar_test_pipeline", src, CIFAR_TEST(img))
        case(f"{src}_test_pipeline", "test_pipeline", src, NOTEBOOK_TEST(img))
        case(f"{src}_resize130", "resize", src, r130, size=[130, 130])
        r64 = F.resize(img, [64, 64], BILINEAR, antialias=True)
        r48 = F.resize(img, [48, 48], BILINEAR, antialias=True)
        case(f"{src}_resize64", "resize", src, r64, size=[64, 64])
        case(f"{src}_resize48", "resize", src, r48, size=[48, 48])
        case(f"{src}_resize20x45", "resize", src, F.resize(img, [20, 45], BILINEAR, antialias=True), size=[20, 45])
        case(f"{src}_resize30x17", "resize", src, F.resize(img, [30, 17], BILINEAR, antialias=True), size=[30, 17])
        for steps in (
            [["brightness", 1.4]],
            [["contrast", 0.6]],
            [["saturation", 1.5]],
            [["saturation", 0.7], ["brightness", 1.3], ["contrast", 1.2]],
            [["brightness", 1.5], ["contrast", 1.5], ["saturation", 0.5]],
        ):
            name = f"{src}_jitter_" + "_".join(f"{op}{f}" for op, f in steps)
            case(name, "jitter", f"{src}_resize48", jitter(r48, steps), steps=steps)
        for box in ([10, 20, 90, 100], [0, 0, 130, 130], [3, 0, 100, 130], [40, 40, 60, 45]):
            out = F.resized_crop(r130, *box, [64, 64], BILINEAR, antialias=True)
            case(f"{src}_crop_" + "_".join(map(str, box)), "resized_crop", f"{src}_resize130", out, box=box, size=64)
        case(f"{src}_hflip", "hflip", f"{src}_resize64", F.hflip(r64))
        for angle in (30.0, -45.0, 12.3456, 90.0, -7.5):
            out = F.rotate(r64, angle, NEAREST, expand=False, center=None, fill=[0.0, 0.0, 0.0])
            case(f"{src}_rotate{angle}", "rotate", f"{src}_resize64", out, angle=angle)
        case(f"{src}_normalize", "normalize", f"{src}_resize64", F.normalize(r64, MEAN, STD))

    # Sampling statistics of RandomResizedCrop(128, scale=(0.4, 1)) on a 130x130 image.
    torch.manual_seed(0)
    crop = T.RandomResizedCrop(128, scale=(0.4, 1.0))
    areas = np.array([np.prod(crop.get_params(torch.zeros(3, 130, 130), crop.scale, crop.ratio)[2:]) for _ in range(200_000)])
    areas = areas / 130.0**2
    stats = {"rrc_draws": 200_000, "rrc_area_mean": areas.mean(), "rrc_area_below_055": (areas < 0.55).mean()}

    meta = {
        "cases": json.dumps(cases),
        "stats": json.dumps(stats),
        "versions": f"torch {torch.__version__}, torchvision {torchvision.__version__}",
    }
    save_file(tensors, str(OUT), metadata=meta)
    print(f"wrote {OUT} ({len(cases)} cases, {OUT.stat().st_size} bytes): {stats}")


if __name__ == "__main__":
    main()
