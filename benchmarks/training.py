"""Trainer overhead: ebmcore.train.Trainer per step versus a bare PyTorch loop.

Both sides train their own copy of the same model with the same loss, data draws and Adam
optimiser; they run in one process, interleaved in blocks, after warm-up, with torch on one
thread. The figure is the ratio of per-step times (goal: at most 1.10), reported as the
median and range over blocks. The Trainer's default Adam is torch's fused one; the bare loop
uses torch's default Adam (what a user writes), or the fused one with ``--fused-adam`` (the
same optimiser kernel on both sides: the Trainer's own overhead).

Run:  python benchmarks/training.py [--blocks 15] [--block-steps 40] [--fused-adam]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numba  # noqa: F401  - import first: numba can reset torch's OpenMP thread count
import torch

import ebmcore
from ebmcore.train import Trainer


def build(loss_name: str, loss_params: dict, seed: int):
    torch.manual_seed(seed)
    model = ebmcore.create("model", "mlp", dim=2, hidden=[128, 128])
    loss = ebmcore.create("loss", loss_name, **loss_params)
    return model, loss


def bare_loop(model, loss, dataset, optimizer, data_gen, steps: int, batch_size: int) -> None:
    for _ in range(steps):
        x = dataset.sample(batch_size, generator=data_gen)
        out = loss(model, x)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()


def measure(loss_name: str, loss_params: dict, blocks: int, block_steps: int,
            batch_size: int, fused_adam: bool = False) -> dict:
    dataset = ebmcore.create("dataset", "eight_gaussians")
    model_t, loss_t = build(loss_name, loss_params, 0)
    trainer = Trainer(model_t, loss_t, data=dataset, steps=block_steps, batch_size=batch_size,
                      seed=0, log_every=100)
    model_b, loss_b = build(loss_name, loss_params, 0)
    if hasattr(loss_b, "set_generator"):
        loss_b.set_generator(torch.Generator().manual_seed(1))
    opt_b = torch.optim.Adam([*model_b.parameters(), *loss_b.parameters()], lr=trainer.lr,
                             fused=True if fused_adam else None)
    data_gen = torch.Generator().manual_seed(0)

    def run_trainer() -> float:
        trainer.steps = trainer.step + block_steps
        start = time.perf_counter()
        trainer.fit()
        return (time.perf_counter() - start) / block_steps

    def run_bare() -> float:
        start = time.perf_counter()
        bare_loop(model_b, loss_b, dataset, opt_b, data_gen, block_steps, batch_size)
        return (time.perf_counter() - start) / block_steps

    run_trainer()  # warm-up both sides
    run_bare()
    ratios, t_trainer, t_bare = [], [], []
    for i in range(blocks):
        if i % 2 == 0:  # alternate the order so drift hits both sides alike
            a = run_trainer()
            b = run_bare()
        else:
            b = run_bare()
            a = run_trainer()
        t_trainer.append(a)
        t_bare.append(b)
        ratios.append(a / b)
    return {"loss": loss_name, "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios), "ratio_max": max(ratios),
            "trainer_ms": 1e3 * statistics.median(t_trainer),
            "bare_ms": 1e3 * statistics.median(t_bare)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=15)
    parser.add_argument("--block-steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--fused-adam", action="store_true",
                        help="the bare loop uses fused Adam too (the Trainer's default)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    assert torch.get_num_threads() == 1
    cases = [("denoising_score_matching", {"sigmas": 0.1}),
             ("pcd", {"k": 10})]
    print(f"torch {torch.__version__}, 1 thread, {args.blocks} blocks x {args.block_steps} "
          f"steps, batch {args.batch_size}, mlp(2, hidden=(128, 128)), bare loop Adam "
          f"{'fused' if args.fused_adam else 'default'}")
    print("| loss | bare ms/step | trainer ms/step | ratio median | ratio range |")
    print("|---|---|---|---|---|")
    for name, params in cases:
        r = measure(name, params, args.blocks, args.block_steps, args.batch_size,
                    args.fused_adam)
        print(f"| {r['loss']} | {r['bare_ms']:.2f} | {r['trainer_ms']:.2f} | "
              f"{r['ratio_median']:.3f} | {r['ratio_min']:.3f}-{r['ratio_max']:.3f} |",
              flush=True)


if __name__ == "__main__":
    main()
