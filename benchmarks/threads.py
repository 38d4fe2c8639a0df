"""Threads and training speed: the demo recipe's step on an idle and a busy machine, and
where a second thread starts to pay.

``demo`` times the demo recipe's training step (``ebmcore train``'s defaults: mlp with four
hidden layers of 128 on ``eight_gaussians``, ``pcd`` with Langevin at step size 0.01, batch
256) through :class:`ebmcore.train.Trainer`, leaving the thread count to the trainer unless
``--threads`` is given; ``--busy N`` keeps N other processes spinning meanwhile (the busy
machine of a laptop, a CI runner or a shared server). ``sweep`` times a training step
(denoising score matching, Adam) of a two-layer mlp of several widths and batch sizes on one
thread and on two, interleaved, and prints the speed-up against the step's work (batch x
parameters), the quantity :func:`ebmcore.threads.fit_threads` decides by.

``alternate`` interleaves blocks of demo steps on the machine as it is with blocks beside one
spinning process, so that the ratio busy / as-is is measured under the same other load; a
single-threaded pure-Python loop timed alike gives the part of that ratio that is only the
CPU share (on an idle 2-core machine about 1; on a machine already carrying a core of other
work about 2), so what exceeds it is what threads cost.

Run:  python benchmarks/threads.py demo [--busy 1] [--steps 150]
      python benchmarks/threads.py alternate [--rounds 8] [--steps 20]
      python benchmarks/threads.py sweep [--rounds 5]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time

import numba  # noqa: F401  - import first: numba can reset torch's OpenMP thread count
import torch

import ebmcore
from ebmcore.train import Trainer


def _spin() -> None:
    while True:
        pass


def demo(steps: int, busy: int, threads: int | None, repeats: int) -> None:
    """Time the demo recipe's step, with ``busy`` spinning processes alongside."""
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(busy)]
    for p in spinners:
        p.start()
    try:
        torch.manual_seed(0)
        model = ebmcore.create("model", "mlp", dim=2)
        loss = ebmcore.create("loss", "pcd", sampler_params={"step_size": 0.01})
        kwargs = {} if threads is None else {"threads": threads}
        trainer = Trainer(model, loss, data="eight_gaussians", steps=10, batch_size=256,
                          seed=0, log_every=50, **kwargs)
        trainer.fit()  # warm-up
        used = torch.get_num_threads()
        per_step = []
        for _ in range(repeats):
            trainer.steps = trainer.step + steps
            start = time.perf_counter()
            trainer.fit()
            per_step.append((time.perf_counter() - start) / steps)
    finally:
        for p in spinners:
            p.kill()
            p.join()
    print(f"demo step: {busy} busy process(es), torch threads {used}: median "
          f"{1e3 * statistics.median(per_step):.1f} ms/step, range "
          f"{1e3 * min(per_step):.1f}-{1e3 * max(per_step):.1f} over {repeats} x {steps} steps",
          flush=True)


def alternate(steps: int, rounds: int, threads: int | None) -> None:
    """Alternate blocks on the machine as it is and with one spinning process, ``rounds``
    times, and print the per-round ratio busy / as-is: slow drifts in the other load cancel."""
    torch.manual_seed(0)
    model = ebmcore.create("model", "mlp", dim=2)
    loss = ebmcore.create("loss", "pcd", sampler_params={"step_size": 0.01})
    kwargs = {} if threads is None else {"threads": threads}
    trainer = Trainer(model, loss, data="eight_gaussians", steps=10, batch_size=256, seed=0,
                      log_every=50, **kwargs)
    trainer.fit()  # warm-up

    def block() -> float:
        trainer.steps = trainer.step + steps
        start = time.perf_counter()
        trainer.fit()
        return (time.perf_counter() - start) / steps

    quiet, busy, ratios, share = [], [], [], []
    for _ in range(rounds):
        quiet.append(block())
        calm = _python_loop()
        spinner = multiprocessing.Process(target=_spin, daemon=True)
        spinner.start()
        time.sleep(0.2)
        try:
            busy.append(block())
            share.append(_python_loop() / calm)
        finally:
            spinner.kill()
            spinner.join()
        ratios.append(busy[-1] / quiet[-1])
    print(f"torch threads {torch.get_num_threads()}: as-is median "
          f"{1e3 * statistics.median(quiet):.1f} ms/step ({1e3 * min(quiet):.1f}-"
          f"{1e3 * max(quiet):.1f}), one busy process {1e3 * statistics.median(busy):.1f} "
          f"ms/step ({1e3 * min(busy):.1f}-{1e3 * max(busy):.1f}); busy/as-is per round: "
          f"median {statistics.median(ratios):.2f}, range {min(ratios):.2f}-{max(ratios):.2f} "
          f"over {rounds} rounds of {steps} steps; a one-thread pure-Python loop's busy/as-is "
          f"(the CPU share alone): median {statistics.median(share):.2f}, range "
          f"{min(share):.2f}-{max(share):.2f}", flush=True)


def _python_loop() -> float:
    """Seconds of a fixed single-threaded pure-Python loop: the yardstick of CPU share."""
    start = time.perf_counter()
    total = 0
    for i in range(2_000_000):
        total += i
    return time.perf_counter() - start


def _step_time(model, loss, opt, x, threads: int, steps: int) -> float:
    torch.set_num_threads(threads)
    start = time.perf_counter()
    for _ in range(steps):
        out = loss(model, x)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def sweep(rounds: int) -> None:
    """Print the two-thread speed-up of a training step against its work."""
    print("| hidden | batch | work (batch x params) | 1 thread ms | 2 threads ms | speed-up |")
    print("|---|---|---|---|---|---|")
    for hidden, batch in [(128, 256), (128, 1024), (256, 1024), (512, 1024), (512, 4096),
                          (1024, 4096)]:
        torch.manual_seed(0)
        model = ebmcore.create("model", "mlp", dim=2, hidden=[hidden, hidden])
        loss = ebmcore.create("loss", "dsm", sigmas=0.1)
        loss.set_generator(torch.Generator().manual_seed(0))
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        x = torch.randn(batch, 2, generator=torch.Generator().manual_seed(1))
        work = batch * sum(p.numel() for p in model.parameters())
        steps = max(3, int(3e8 // work))
        one, two = [], []
        _step_time(model, loss, opt, x, 1, steps)  # warm-up
        for i in range(rounds):
            order = (1, 2) if i % 2 == 0 else (2, 1)
            for t in order:
                (one if t == 1 else two).append(_step_time(model, loss, opt, x, t, steps))
        a, b = statistics.median(one), statistics.median(two)
        print(f"| {hidden} | {batch} | {work:.2e} | {1e3 * a:.2f} | {1e3 * b:.2f} | "
              f"{a / b:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    d = sub.add_parser("demo")
    d.add_argument("--steps", type=int, default=100)
    d.add_argument("--repeats", type=int, default=3)
    d.add_argument("--busy", type=int, default=0)
    d.add_argument("--threads", type=int, default=None)
    a = sub.add_parser("alternate")
    a.add_argument("--steps", type=int, default=20)
    a.add_argument("--rounds", type=int, default=8)
    a.add_argument("--threads", type=int, default=None)
    s = sub.add_parser("sweep")
    s.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, default threads {torch.get_num_threads()}", flush=True)
    if args.mode == "demo":
        demo(args.steps, args.busy, args.threads, args.repeats)
    elif args.mode == "alternate":
        alternate(args.steps, args.rounds, args.threads)
    else:
        sweep(args.rounds)


if __name__ == "__main__":
    main()
