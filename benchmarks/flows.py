"""Flow overheads: ebmcore's flow matching and ``flow`` sampler versus hand-written loops.

Two comparisons, each in one process, interleaved in blocks after warm-up, torch on one
thread; the figure is the ratio of per-step times, the median over blocks with the range
(ratios survive a loaded machine; absolute times do not), glibc's heap pinned for both sides
(``samplers.pin_heap``; ``--system-malloc`` keeps trimming). Each ratio is given twice: by
wall-clock time and by the CPU time of the process (``time.process_time``), which a shared
machine's load disturbs far less (torch runs on one thread, so CPU time is work done):

- **train**: a step of :class:`ebmcore.train.Trainer` on each field loss with its 2-D
  recipe (``ebmcore train --dataset eight_gaussians --loss L``: the ``mlp_field`` of 3 x 256
  units with 64 Fourier features for flow and equilibrium matching, the ``mlp`` energy for
  energy matching's first phase; batch, learning rate and EMA as the recipe sets them) against
  hand-written loops of the same objective on copies of the same initial weights, with the
  same batch, data stream, EMA update (one ``torch._foreach_lerp_``) and one host read per
  block as the trainer's log: one loop with torch's default Adam (what a user writes), one
  with fused Adam (the Trainer's default optimiser: that ratio is the Trainer's own
  overhead). Blocks are the recipe's ``log_every`` steps. Each hand-written objective is first
  checked to give the registered loss's value on the same draws (:func:`same_objective`).
  Goal: at most 1.10.
- **sample**: the registered ``flow`` sampler (Heun, fixed steps) against a hand-written Heun
  loop over the flow-matching recipe's field under ``torch.no_grad``, and the sampler with
  ``backend="compiled"`` (``torch.compile`` of one Heun step, field included) against the
  same hand loop. Goals: the torch backend at most 1.10; the compiled one below 1.

Run:  python benchmarks/flows.py [--only train|sample] [--blocks 9] [--n 1000] [--steps 50]
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
from samplers import pin_heap  # benchmarks/ is on sys.path when this runs as a script

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


#: The field losses timed by ``--only train``.
TRAIN_LOSSES = ("flow_matching", "equilibrium_matching", "energy_matching")


def recipe(loss_name: str, dataset: str = "eight_gaussians") -> dict:
    """The run configuration ``ebmcore train --dataset D --loss L`` starts from."""
    from ebmcore.config import defaults_for

    return defaults_for(dataset, loss_name)


def hand_objective(loss_name: str, settings: dict) -> Callable:
    """The objective of ``loss_name`` written by hand, ``objective(net, x1, gen) -> loss``:
    the recipe's path (linear), coupling and weights, nothing checked, nothing generic."""
    if loss_name == "flow_matching":
        def flow(net, x1, gen):
            x0 = torch.randn(x1.shape, generator=gen)
            t = torch.rand(x1.shape[0], generator=gen)
            xt = t[:, None] * x1 + (1 - t[:, None]) * x0
            return (net(xt, t) - (x1 - x0)).square().mean()
        return flow
    if loss_name == "equilibrium_matching":
        threshold = settings.get("ct_threshold", 0.8)
        multiplier = settings.get("ct_multiplier", 4.0)

        def equilibrium(net, x1, gen):
            x0 = torch.randn(x1.shape, generator=gen)
            t = torch.rand(x1.shape[0], generator=gen)
            xt = t[:, None] * x1 + (1 - t[:, None]) * x0
            c = multiplier * ((1 - t) / (1 - threshold)).clamp(max=1.0)
            return (net(xt, torch.zeros_like(t)) - c[:, None] * (x1 - x0)).square().mean()
        return equilibrium
    if loss_name == "energy_matching":  # phase 1: exact-OT flow matching on -grad V
        import ot

        sigma, cutoff = settings.get("sigma", 0.1), settings.get("flow_weight_cutoff", 0.8)
        scale = settings.get("epsilon_max", 0.15)  # the potential V = eps_max * E

        def energy_matching(net, x1, gen):
            x0 = torch.randn(x1.shape, generator=gen)
            batch = x1.shape[0]
            weights = torch.full((batch,), 1.0 / batch, dtype=torch.float64)
            cost = torch.cdist(x0.double(), x1.double()).square()
            x1 = x1[torch.as_tensor(ot.emd(weights, weights, cost)).argmax(1)]
            t = torch.rand(batch, generator=gen)
            xt = t[:, None] * x1 + (1 - t[:, None]) * x0
            xt = (xt + sigma * torch.randn(xt.shape, generator=gen)).requires_grad_(True)
            (grad,) = torch.autograd.grad(net(xt).sum(), xt, create_graph=True)
            error = (-scale * grad - (x1 - x0)).square().mean(1)
            return (((1 - t) / (1 - cutoff)).clamp(0, 1) * error).mean()
        return energy_matching
    raise ValueError(f"no hand-written objective for {loss_name!r}")


def same_objective(loss_name: str, params: dict, objective: Callable, model: torch.nn.Module,
                   x: torch.Tensor) -> float:
    """The absolute difference between the registered loss and the hand-written objective on
    one batch, each drawing from a generator seeded alike (both draw the noise, then the
    times, then any smoothing noise, so they see the same numbers): the hand loop computes
    the same objective, not merely a similar one. Raises when they disagree beyond
    rounding."""
    loss = ebmcore.create("loss", loss_name, **params)
    loss.set_generator(torch.Generator().manual_seed(5))
    ours = float(loss(model, x).loss.detach())
    theirs = float(objective(model, x, torch.Generator().manual_seed(5)).detach())
    if abs(ours - theirs) > 1e-5 * max(1.0, abs(ours)):
        raise AssertionError(f"{loss_name}: the hand-written objective gives {theirs}, the "
                             f"loss {ours}: the comparison would not be of the same work")
    return abs(ours - theirs)


def train_case(loss_name: str, blocks: int, block_steps: int | None) -> dict:
    """The Trainer on the recipe's ``loss_name`` run against hand-written loops of the same
    objective, each on its own copy of the same initial network, with the recipe's batch,
    learning rate and EMA (both sides update it): one with torch's default Adam (what a
    user writes), one with torch's fused Adam (the Trainer's default optimiser, so that
    ratio is the Trainer's own overhead)."""
    config = recipe(loss_name)
    train = config["train"]
    batch, lr, decay = int(train["batch_size"]), float(train["lr"]), train.get("ema")
    log_every = int(train.get("log_every", 50))
    block_steps = block_steps or log_every
    dataset = ebmcore.create("dataset", config["dataset"]["name"])
    torch.manual_seed(0)
    net = ebmcore.create("model", config["model"]["name"], dim=2, **config["model"]["params"])
    loss = ebmcore.create("loss", loss_name, **config["loss"]["params"])
    trainer = Trainer(net, loss, data=dataset, steps=block_steps, batch_size=batch, lr=lr,
                      ema=decay, seed=0, log_every=log_every, threads=1)
    objective = hand_objective(loss_name, config["loss"]["params"])
    agreement = same_objective(loss_name, config["loss"]["params"], objective, trainer.model,
                               dataset.sample(batch, generator=torch.Generator().manual_seed(9)))

    def hand_loop(fused: bool) -> Callable[[], int]:
        hand_net = copy.deepcopy(trainer.model)  # the fitted wall of an energy included
        params = list(hand_net.parameters())
        opt = torch.optim.Adam(params, lr=lr, fused=True if fused else None)
        average = [p.detach().clone() for p in params] if decay else None
        data_gen, noise_gen = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)

        def run() -> int:
            for _ in range(block_steps):
                value = objective(hand_net, dataset.sample(batch, generator=data_gen),
                                  noise_gen)
                opt.zero_grad(set_to_none=True)
                value.backward()
                opt.step()
                if average is not None:
                    with torch.no_grad():
                        torch._foreach_lerp_(average, params, 1.0 - decay)
            float(value.detach())  # one host read per block, as the trainer logs once per block
            return block_steps
        return run

    def ebm() -> int:
        trainer.steps = trainer.step + block_steps
        trainer.fit()
        return block_steps

    times = interleave({"hand": hand_loop(False), "hand_fused": hand_loop(True),
                        "trainer": ebm}, blocks)
    return {"loss": loss_name, "model": config["model"], "loss_params": config["loss"]["params"],
            "batch": batch, "lr": lr, "ema": decay, "block_steps": block_steps,
            "objective_difference": agreement,
            "trainer/hand": ratio(times, "trainer", "hand"),
            "trainer/hand_fused_adam": ratio(times, "trainer", "hand_fused")}


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


def sample_case(blocks: int, n: int, steps: int, compiled: bool) -> dict:
    """The ``flow`` sampler (torch and compiled backends) against the hand Heun loop, on the
    flow-matching recipe's field."""
    model = recipe("flow_matching")["model"]
    torch.manual_seed(0)
    field = ebmcore.create("model", model["name"], dim=2, **model["params"]).eval()
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
    out = {"n": n, "steps": steps, "model": model,
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
    parser.add_argument("--train-steps", type=int, default=None,
                        help="steps per train block (default: the recipe's log_every)")
    parser.add_argument("--losses", nargs="+", default=list(TRAIN_LOSSES),
                        choices=TRAIN_LOSSES)
    parser.add_argument("--n", type=int, default=1000, help="samples per sampling run")
    parser.add_argument("--steps", type=int, default=50, help="Heun steps per sampling run")
    parser.add_argument("--no-compiled", action="store_true")
    parser.add_argument("--only", choices=("train", "sample"))
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc's heap trimming on (see samplers.pin_heap)")
    args = parser.parse_args()
    pinned = False if args.system_malloc else pin_heap()
    torch.set_num_threads(1)
    report = {"threads": torch.get_num_threads(), "load_average": os.getloadavg(),
              "torch": torch.__version__, "heap_pinned": pinned}
    if args.only in (None, "train"):
        report["train"] = [train_case(name, args.blocks, args.train_steps)
                           for name in args.losses]
    if args.only in (None, "sample"):
        report["sample"] = sample_case(args.blocks, args.n, args.steps,
                                       not args.no_compiled)
    report["load_average_after"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
