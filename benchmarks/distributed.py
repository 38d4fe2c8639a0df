"""One process against two: training and sampling throughput with torch.distributed (gloo).

Each configuration runs in fresh processes started with the ``spawn`` method: one process
with one or two torch threads, or two processes with one thread each joined in a gloo
process group (``Trainer(distributed=True)``, ``Sampler.sample(distributed=True)``). Every
configuration does the same global work: the same global batch per training step, the same
chains per sampling run. After warm-up, each configuration times ``--blocks`` blocks; the
configurations take turns for ``--rounds`` rounds (so that load from other work on the
machine falls on all of them alike), and the report gives the median (and range) over all
blocks of:

- training steps per second, and data points per second (global batch x steps/s);
- sampling chain-steps per second (chains x steps / seconds).

Run:  python benchmarks/distributed.py [--rounds 3] [--blocks 3] [--train-steps 20]
      [--batch-size 256] [--chains 20000]
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import socket
import statistics
import time
from typing import Any

#: (label, processes, torch threads per process)
CONFIGS = [("1 process x 1 thread", 1, 1), ("1 process x 2 threads", 1, 2),
           ("2 processes x 1 thread", 2, 1)]

#: The trainings timed: (label, loss, loss parameters).
LOSSES = [("pcd (k=20 Langevin steps)", "pcd", {"k": 20, "buffer_size": 10000}),
          ("sliced score matching", "sliced_score_matching", {})]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _time_training(world: int, loss_name: str, params: dict, args: argparse.Namespace
                   ) -> list[float]:
    """Seconds per block of ``args.train_steps`` steps of the default mlp on eight_gaussians."""
    import torch

    import ebmcore
    from ebmcore.train import Trainer

    torch.manual_seed(0)
    model = ebmcore.create("model", "mlp", dim=2, hidden=[128, 128])
    loss = ebmcore.create("loss", loss_name, **params)
    trainer = Trainer(model, loss, data="eight_gaussians", steps=args.warmup,
                      batch_size=args.batch_size, log_every=10_000, seed=0,
                      distributed=world > 1)
    trainer.fit()
    times = []
    for _ in range(args.blocks):
        trainer.steps = trainer.step + args.train_steps
        _barrier(world)
        start = time.perf_counter()
        trainer.fit()
        _barrier(world)
        times.append(time.perf_counter() - start)
    return times


def _time_sampling(world: int, args: argparse.Namespace) -> list[float]:
    """Seconds per MALA run of ``args.chains`` chains x ``args.sample_steps`` on an mlp energy."""
    import torch

    import ebmcore

    torch.manual_seed(0)
    model = ebmcore.create("model", "mlp", dim=2, hidden=[128, 128]).eval()
    model.fit_confinement(torch.randn(1000, 2, generator=torch.Generator().manual_seed(0)))
    sampler = ebmcore.create("sampler", "mala", step_size=0.05, adapt_step_size=False)
    x0 = torch.randn(args.chains, 2, generator=torch.Generator().manual_seed(1))
    times = []
    for block in range(args.blocks + 1):
        _barrier(world)
        start = time.perf_counter()
        sampler.sample(model, x0, args.sample_steps, backend="torch",
                       generator=torch.Generator().manual_seed(block),
                       distributed=world > 1)
        _barrier(world)
        if block:  # the first run warms up
            times.append(time.perf_counter() - start)
    return times


def _worker(rank: int, world: int, threads: int, port: int, args: argparse.Namespace,
            results: Any) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import torch

    torch.set_num_threads(threads)
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("gloo", rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=600))
    out = {label: _time_training(world, name, params, args) for label, name, params in LOSSES}
    out["sampling"] = _time_sampling(world, args)
    if rank == 0:
        results.put(out)
    if world > 1:
        torch.distributed.destroy_process_group()


def run_config(world: int, threads: int, args: argparse.Namespace) -> dict[str, list[float]]:
    """Run every measurement in ``world`` fresh processes; return rank 0's block times."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, world, threads, port, args, results))
             for r in range(world)]
    for p in procs:
        p.start()
    out = results.get(timeout=3600)
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"a benchmark process exited with status {p.exitcode}")
    return out


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--blocks", type=int, default=3, help="timed blocks per round")
    parser.add_argument("--warmup", type=int, default=5, help="training steps before timing")
    parser.add_argument("--train-steps", type=int, default=20, help="training steps per block")
    parser.add_argument("--batch-size", type=int, default=256, help="the global batch")
    parser.add_argument("--chains", type=int, default=20000)
    parser.add_argument("--sample-steps", type=int, default=100)
    args = parser.parse_args()

    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores; global batch "
          f"{args.batch_size}; {args.chains} chains x {args.sample_steps} MALA steps; median "
          f"(min-max) of {args.rounds} rounds x {args.blocks} blocks", flush=True)
    times: dict[str, dict[str, list[float]]] = {label: {} for label, _, _ in CONFIGS}
    for round_ in range(args.rounds):
        for label, world, threads in CONFIGS:
            for key, values in run_config(world, threads, args).items():
                times[label].setdefault(key, []).extend(values)
        # other work on the machine shows here: it takes cores from the configurations
        print(f"round {round_ + 1} of {args.rounds} done; load average "
              f"{os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    for label, _, _ in CONFIGS:
        row = [label]
        for loss_label, _, _ in LOSSES:
            steps = [args.train_steps / t for t in times[label][loss_label]]
            points = [args.batch_size * s for s in steps]
            row += [f"{statistics.median(steps):.1f}", _summary(points)]
        row.append(_summary([args.chains * args.sample_steps / t
                             for t in times[label]["sampling"]]))
        rows.append(row)
    header = ["configuration"]
    for loss_label, _, _ in LOSSES:
        header += [f"{loss_label}: steps/s", "points/s"]
    header.append("MALA chain-steps/s")
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
