"""Trainer(compile=True) against eager: milliseconds per training step of the demo recipe.

The demo's recipe (``pcd``: k = 20 Langevin steps, batch 256, a buffer of 10,000 chains;
``mlp`` with its wall, by default its four hidden layers of 128, ``--hidden 128 128`` for
two; Adam at 3e-3) on ``eight_gaussians``, one torch thread.
Each mode trains ``--warmup`` steps first (the compiled mode compiles there), then is timed
over ``--steps`` steps, best of ``--repeats``.

    python benchmarks/compiled_training.py [--steps 200] [--repeats 3] [--device cuda]
        [--hidden 128 128]
"""

from __future__ import annotations

import argparse
import time

import torch

import ebmcore
from ebmcore.train import Trainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_mode(compile: bool, steps: int, warmup: int, repeats: int,
              device: torch.device, hidden: list[int] | None = None) -> tuple[float, float]:
    """Return (best ms per step, seconds of the warm-up) for one mode."""
    torch.manual_seed(0)
    widths = {} if hidden is None else {"hidden": hidden}
    model = ebmcore.create("model", "mlp", dim=2, **widths).to(device)
    trainer = Trainer(model, "pcd", data="eight_gaussians", steps=warmup + steps * repeats,
                      batch_size=256, seed=0, log_every=10_000, compile=compile)
    started = time.perf_counter()
    for _ in range(warmup):
        trainer.train_step()
    _sync(device)
    warm = time.perf_counter() - started
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        _sync(device)
        best = min(best, (time.perf_counter() - started) / steps * 1e3)
    return best, warm


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--hidden", type=int, nargs="+",
                        help="hidden widths of the mlp (default: the mlp's own)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    eager, eager_warm = time_mode(False, args.steps, args.warmup, args.repeats, device,
                                  args.hidden)
    compiled, compiled_warm = time_mode(True, args.steps, args.warmup, args.repeats, device,
                                        args.hidden)
    print("| mode | ms per step | first steps (s) |")
    print("|---|---:|---:|")
    print(f"| eager | {eager:.2f} | {eager_warm:.1f} |")
    print(f"| compiled | {compiled:.2f} | {compiled_warm:.1f} |")
    print(f"speed-up: {eager / compiled:.2f}x")


if __name__ == "__main__":
    main()
