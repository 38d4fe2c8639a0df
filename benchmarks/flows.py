"""Flow overheads: ebmcore's flow matching and ``flow`` sampler versus hand-written loops.

Two comparisons, each in one process, interleaved in blocks after warm-up, torch on one
thread; the figure is the ratio of per-step times, the median over blocks with the range
(ratios survive a loaded machine; absolute times do not). Each ratio is given twice: by
wall-clock time and by the CPU time of the process (``time.process_time``), which a shared
machine's load disturbs far less (torch runs on one thread, so CPU time is work done):

- **train**: a flow-matching step through :class:`ebmcore.train.Trainer` and the registered
  ``flow_matching`` loss (linear path, independent coupling, velocity prediction) against a
  hand-written loop of the same objective: the same ``mlp_field`` network (a copy of the same
  initial weights), batch, data draws and Adam optimiser. Goal: at most 1.10.
- **sample**: the registered ``flow`` sampler (Heun, fixed steps) against a hand-written Heun
  loop over the same field under ``torch.no_grad``, and the sampler with
  ``backend="compiled"`` (``torch.compile`` of one Heun step, field included) against the
  same hand loop. Goals: the torch backend at most 1.10; the compiled one below 1.

Run:  python benchmarks/flows.py [--blocks 9] [--train-steps 20] [--n 1000] [--steps 50]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from collections.abc import Callable

import torch

import ebmcore
from ebmcore.train import Trainer


def interleave(runs: dict[str, Callable[[], float]], blocks: int
               ) -> dict[str, list[tuple[float, float]]]:
    """Run each callable once per block, in turn (the order reversed every other block, so
    neither side always runs first), after one warm-up round; return the wall-clock and CPU
    seconds per step of each run, block by block (each callable returns its step count)."""
    for run in runs.values():
        run()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for block in range(blocks):
        order = list(runs.items())
        for name, run in order[::-1] if block % 2 else order:
            wall, cpu = time.perf_counter(), time.process_time()
            steps = run()
            times[name].append(((time.perf_counter() - wall) / steps,
                                (time.process_time() - cpu) / steps))
    return times


def ratio(times: dict[str, list[tuple[float, float]]], name: str, base: str
          ) -> dict[str, float]:
    """Median and range over blocks of ``name``'s time over ``base``'s, block by block, by
    wall clock and by CPU time."""
    out: dict[str, float] = {}
    for clock, i in (("wall", 0), ("cpu", 1)):
        ratios = [a[i] / b[i] for a, b in zip(times[name], times[base], strict=True)]
        out.update({f"{clock}_median": statistics.median(ratios),
                    f"{clock}_min": min(ratios), f"{clock}_max": max(ratios)})
    out["ms_per_step"] = 1e3 * statistics.median(t[0] for t in times[name])
    out["base_ms_per_step"] = 1e3 * statistics.median(t[0] for t in times[base])
    return out


def train_case(blocks: int, block_steps: int, batch: int, hidden: list[int]) -> dict:
    """Trainer + ``flow_matching`` against the hand-written loop of the same objective."""
    dataset = ebmcore.create("dataset", "eight_gaussians")
    torch.manual_seed(0)
    net = ebmcore.create("model", "mlp_field", dim=2, hidden=hidden)
    hand_net = copy.deepcopy(net)
    loss = ebmcore.create("loss", "flow_matching")
    trainer = Trainer(net, loss, data=dataset, steps=block_steps, batch_size=batch, lr=1e-3,
                      seed=0, log_every=100, threads=1)
    opt = torch.optim.Adam(hand_net.parameters(), lr=1e-3)
    data_gen, noise_gen = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)

    def hand() -> int:
        for _ in range(block_steps):
            x1 = dataset.sample(batch, generator=data_gen)
            x0 = torch.randn(x1.shape, generator=noise_gen)
            t = torch.rand(batch, generator=noise_gen)
            xt = t[:, None] * x1 + (1 - t[:, None]) * x0
            loss_value = (hand_net(xt, t) - (x1 - x0)).square().mean()
            opt.zero_grad(set_to_none=True)
            loss_value.backward()
            opt.step()
        return block_steps

    def ebm() -> int:
        trainer.steps = trainer.step + block_steps
        trainer.fit()
        return block_steps

    times = interleave({"hand": hand, "trainer": ebm}, blocks)
    return {"batch": batch, "hidden": hidden, "block_steps": block_steps,
            "trainer/hand": ratio(times, "trainer", "hand")}


def heun_by_hand(field: torch.nn.Module, x: torch.Tensor, steps: int) -> torch.Tensor:
    """The hand-written floor: Heun from t = 0 to 1 in equal steps, no checks."""
    dt = 1.0 / steps
    with torch.no_grad():
        for k in range(steps):
            t = torch.tensor(k * dt)
            k1 = field(x, t)
            k2 = field(x + dt * k1, t + dt)
            x = x + 0.5 * dt * (k1 + k2)
    return x


def sample_case(blocks: int, n: int, steps: int, hidden: list[int], compiled: bool) -> dict:
    """The ``flow`` sampler (torch and compiled backends) against the hand Heun loop."""
    torch.manual_seed(0)
    field = ebmcore.create("model", "mlp_field", dim=2, hidden=hidden).eval()
    x0 = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    samplers = {"torch": ebmcore.create("sampler", "flow", integrator="heun", steps=steps)}
    if compiled:
        samplers["compiled"] = ebmcore.create("sampler", "flow", integrator="heun", steps=steps,
                                              backend="compiled")
    ends: dict[str, torch.Tensor] = {}

    def timed(name: str, fn: Callable[[], torch.Tensor]) -> Callable[[], int]:
        def run() -> int:
            ends[name] = fn()
            return steps
        return run

    runs = {"hand": timed("hand", lambda: heun_by_hand(field, x0, steps))}
    for name, sampler in samplers.items():
        runs[name] = timed(name, lambda s=sampler: s.sample(field, x0=x0).samples)
    started = time.perf_counter()
    times = interleave(runs, blocks)
    out = {"n": n, "steps": steps, "hidden": hidden,
           "seconds": time.perf_counter() - started,
           "torch/hand": ratio(times, "torch", "hand"),
           "max_abs_difference": {name: float((ends[name] - ends["hand"]).abs().max())
                                  for name in samplers}}
    if compiled:
        out["compiled/hand"] = ratio(times, "compiled", "hand")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=9)
    parser.add_argument("--train-steps", type=int, default=20, help="steps per train block")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--n", type=int, default=1000, help="samples per sampling run")
    parser.add_argument("--steps", type=int, default=50, help="Heun steps per sampling run")
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256, 256])
    parser.add_argument("--no-compiled", action="store_true")
    parser.add_argument("--only", choices=("train", "sample"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = {"threads": torch.get_num_threads(), "load_average": os.getloadavg(),
              "torch": torch.__version__}
    if args.only in (None, "train"):
        report["train"] = train_case(args.blocks, args.train_steps, args.batch, args.hidden)
    if args.only in (None, "sample"):
        report["sample"] = sample_case(args.blocks, args.n, args.steps, args.hidden,
                                       not args.no_compiled)
    report["load_average_after"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
