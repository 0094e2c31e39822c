"""PyTorch reference values for crates/ba-train/tests/pytorch_optim.rs.

Optimizers: each of Adam (coupled L2), AdamW, SGD with momentum/dampening/weight decay and
SGD with Nesterov runs 8 steps on two parameters from fixed starting values, fed fixed
gradients (one parameter gets no gradient at step 4, as a frozen or unused parameter would),
with the learning rate changed every step as a scheduler would. The parameters after every
step are recorded, so the Rust side checks the update rule step by step.

Schedulers: the learning rate at every step of CosineAnnealingLR, LinearLR (warm-up),
StepLR, and SequentialLR(LinearLR warm-up, then CosineAnnealingLR).

Writes crates/ba-train/tests/fixtures/pytorch_optim.json. CI does not run this:
    python3 -m venv .venv && .venv/bin/pip install torch
    .venv/bin/python scripts/optim_fixtures.py
"""
import json
import pathlib

import torch

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/ba-train/tests/fixtures/pytorch_optim.json"
STEPS = 8


def run_optimizer(name, make):
    gen = torch.Generator().manual_seed(7)
    starts = [torch.randn(3, 4, generator=gen), torch.randn(5, generator=gen)]
    grads = [[torch.randn(p.shape, generator=gen) for p in starts] for _ in range(STEPS)]
    lrs = [0.05 * (1.0 - 0.1 * t) for t in range(STEPS)]
    params = [torch.nn.Parameter(p.clone()) for p in starts]
    opt = make(params)
    trajectory = []
    for t in range(STEPS):
        for g in opt.param_groups:
            g["lr"] = lrs[t]
        for i, p in enumerate(params):
            p.grad = None if (t == 3 and i == 1) else grads[t][i].clone()
        opt.step()
        trajectory.append([p.detach().flatten().tolist() for p in params])
    return {
        "name": name,
        "starts": [p.flatten().tolist() for p in starts],
        "shapes": [list(p.shape) for p in starts],
        "grads": [[g.flatten().tolist() for g in step] for step in grads],
        "missing": [3, 1],
        "lrs": lrs,
        "params": trajectory,
    }


def lrs_of(make, steps, base=0.1):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def main():
    optimizers = [
        run_optimizer("adam", lambda p: torch.optim.Adam(p, lr=0.05, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)),
        run_optimizer("adamw", lambda p: torch.optim.AdamW(p, lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)),
        run_optimizer("sgd", lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-3)),
        run_optimizer("sgd_nesterov", lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
        run_optimizer("sgd_plain", lambda p: torch.optim.SGD(p, lr=0.05)),
    ]
    S = torch.optim.lr_scheduler
    schedules = {
        "cosine": lrs_of(lambda o: S.CosineAnnealingLR(o, T_max=20, eta_min=1e-4), 25),
        "linear_warmup": lrs_of(lambda o: S.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=5), 12),
        "step": lrs_of(lambda o: S.StepLR(o, step_size=7, gamma=0.5), 25),
        "warmup_then_cosine": lrs_of(
            lambda o: S.SequentialLR(
                o,
                [S.LinearLR(o, start_factor=0.01, total_iters=5), S.CosineAnnealingLR(o, T_max=15, eta_min=0.0)],
                milestones=[5],
            ),
            25,
        ),
    }
    OUT.write_text(json.dumps({"torch": torch.__version__, "optimizers": optimizers, "schedules": schedules}))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
