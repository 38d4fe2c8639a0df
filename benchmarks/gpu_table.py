"""One side-by-side table of chain-steps per second: ebmcore against a torch floor and peers.

Every cell is ``chains x steps / seconds`` (an HMC step is one trajectory of 10 leapfrog
steps), float32, the best of 2 timed runs after a warm-up run. The cases, at their default
sizes (sized for about 2 minutes on an NVIDIA H200; ``--scale`` multiplies the chain counts
and ``--steps-scale`` the steps):

- 2-D double well (``ebmcore.create("energy", "double_well", dim=2)``): Langevin and MALA
  at 1M chains x 1000 steps and at 1k x 1000; HMC at 1M x 100.
- 2-D mixture of 8 Gaussians (variance 0.3, means on a circle of radius 4): Langevin at
  1M x 500 and HMC at 1M x 50 (fewer steps than the double well: its gradient costs about
  5x more in torch, and chain-steps per second do not depend on the length).
- 100-D Gaussian with the dense covariance ``A Aᵀ / 100 + ½ I`` (seeded ``A``): Langevin
  and MALA at 100k x 100 (the MALA row is the one BlackJAX is compared on).

Step sizes everywhere: Langevin 0.01, MALA 0.05, HMC 0.1 with 10 leapfrog steps and an
identity mass; nothing adapts. The energies are ``benchmarks/kernels.py``'s
``double_well``, ``mixture`` and ``dense_gaussian``. TorchEBM samples those very ebmcore
energies; BlackJAX evaluates the same formulas in jax with the same parameters.

Columns, each library in its own process (so that one library's memory pools, threads or
crashes cannot touch another's numbers):

- ``torch floor``: a hand-written vectorised torch loop (analytic gradient, in-place
  updates, noise drawn into a preallocated buffer): :func:`floor_langevin`,
  :func:`floor_mala`, :func:`floor_hmc`. It runs in the ebmcore process, interleaved with
  the ebmcore columns, so that ``cuda / floor`` is measured in one process.
- ``ebmcore torch`` / ``cuda`` / ``auto``: the registry sampler's ``sample(energy, x0,
  n_steps, backend=..., generator=...)``; ``auto chose`` is the backend ``auto`` ran.
- ``TorchEBM`` (0.8.9): ``LangevinDynamics`` and ``HamiltonianMonteCarlo`` on the ebmcore
  energy wrapped as a TorchEBM ``BaseModel`` whose ``gradient`` is the energy's analytic
  one. TorchEBM has no MALA: those cells are ``-``.
- ``BlackJAX`` (1.7.1): ``benchmarks/blackjax_cases.py`` in its own interpreter (jit of a
  ``lax.scan`` over steps of a ``vmap`` over chains, float32, no TF32). ``blackjax.mala``
  and ``blackjax.hmc``; for the Langevin rows ``blackjax.sgld`` with the exact gradient,
  which is the unadjusted Langevin algorithm (BlackJAX has no sampler named ULA).

After the table: ``cuda / floor`` (goal >= 10x on every 2-D case) and ``cuda / BlackJAX``
(goal >= 2x on every case BlackJAX runs), each marked ``ok`` or ``BELOW GOAL``. ``n/a``
marks a library that is missing or cannot run here, ``err`` a run that failed (the reason
is printed under the table) and ``timeout`` a case that a library's time limit cut off.

Run on a GPU (``benchmarks/gpu.sh`` does)::

    python benchmarks/gpu_table.py                      # default sizes, about 2 minutes
    python benchmarks/gpu_table.py --scale 0.1          # 10x fewer chains
    python benchmarks/gpu_table.py --json table.json    # also write the rows

Smoke run without a GPU (the ``cuda`` column then runs numba's CUDA simulator, one Python
thread per chain, so only tiny sizes; the numbers are not speeds)::

    NUMBA_ENABLE_CUDASIM=1 python benchmarks/gpu_table.py --device cpu --scale 1e-4 \\
        --steps-scale 0.01

jax and blackjax may live outside the main environment: ``--blackjax-python-path DIR``
(or ``GPU_TABLE_BLACKJAX_PATH``) is put in front of the BlackJAX process's ``PYTHONPATH``,
``--blackjax-python`` (or ``GPU_TABLE_BLACKJAX_PYTHON``) picks its interpreter.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numba  # noqa: F401  - import first: starting numba can reset torch's OpenMP threads
import numpy as np
import torch
from ebmcore_samplers.kernels.dispatch import auto_backend, simulated
from kernels import dense_gaussian, double_well, mixture  # benchmarks/ is on sys.path
from samplers import hmc_floor_with

import ebmcore

HERE = Path(__file__).resolve().parent

#: Step size of every library per method, and HMC's leapfrog steps.
STEP_SIZE: dict[str, float] = {"langevin": 0.01, "mala": 0.05, "hmc": 0.1}
LEAPFROG = 10
#: Timed runs per cell (the best is reported), after one warm-up run.
REPEATS = 2
#: Steps of the torch columns' warm-up run (the caching allocator and the kernels' compile
#: need the full batch, not the full length; BlackJAX's warm-up is a full run, as its
#: compiled scan is specialised to the number of steps).
WARM_STEPS = 10
#: Prefix of the lines a worker process prints for the driver (anything else is passed on).
TAG = "GPU_TABLE "
#: Table columns, in order, with their headers.
COLUMNS: dict[str, str] = {"floor": "torch floor", "torch": "ebmcore torch",
                           "cuda": "ebmcore cuda", "auto": "ebmcore auto",
                           "torchebm": "TorchEBM", "blackjax": "BlackJAX"}
ENERGY_LABEL = {"double_well": "double well 2-D", "mixture8": "mixture8 2-D",
                "gaussian100": "gaussian 100-D"}
#: The columns each worker fills.
WORKER_COLUMNS: dict[str, tuple[str, ...]] = {"ebmcore": ("floor", "torch", "cuda", "auto"),
                                              "torchebm": ("torchebm",),
                                              "blackjax": ("blackjax",)}
#: Energies of the 2-D cases, where the cuda kernel's goal is 10x the floor.
TWO_D = ("double_well", "mixture8")
GOAL_FLOOR, GOAL_BLACKJAX = 10.0, 2.0


@dataclass(frozen=True)
class Case:
    """One row of the table: an energy, a sampler and a run size."""

    key: str
    energy: str
    method: str
    chains: int
    steps: int
    #: The default size, when ``--scale`` or ``--steps-scale`` changed it (0: unchanged).
    full_chains: int = 0
    full_steps: int = 0


CASES: tuple[Case, ...] = (
    Case("dw_langevin_1M", "double_well", "langevin", 1_000_000, 1000),
    Case("dw_langevin_1k", "double_well", "langevin", 1_000, 1000),
    Case("dw_mala_1M", "double_well", "mala", 1_000_000, 1000),
    Case("dw_mala_1k", "double_well", "mala", 1_000, 1000),
    Case("dw_hmc_1M", "double_well", "hmc", 1_000_000, 100),
    # Fewer steps on the mixture: its torch gradient costs about 5x the double well's.
    Case("mix_langevin_1M", "mixture8", "langevin", 1_000_000, 500),
    Case("mix_hmc_1M", "mixture8", "hmc", 1_000_000, 50),
    Case("g100_langevin_100k", "gaussian100", "langevin", 100_000, 100),
    # BlackJAX has no ULA sampler by that name and the issue runs its MALA on this energy:
    # this row compares MALA with MALA.
    Case("g100_mala_100k", "gaussian100", "mala", 100_000, 100),
)


def scaled_cases(scale: float, steps_scale: float) -> list[Case]:
    """The cases with chains multiplied by ``scale`` and steps by ``steps_scale``.

    At least 2 chains and 1 step remain, so the smallest smoke run still has a batch.
    """
    out = []
    for c in CASES:
        chains, steps = max(2, round(c.chains * scale)), max(1, round(c.steps * steps_scale))
        full = (c.chains, c.steps) if (chains, steps) != (c.chains, c.steps) else (0, 0)
        out.append(Case(c.key, c.energy, c.method, chains, steps, *full))
    return out


# -- energies (shared by every library) ----------------------------------------------------

def build_energy(name: str) -> ebmcore.Energy:
    """The ebmcore energy ``name`` (``double_well``, ``mixture8`` or ``gaussian100``), float64
    parameters on the CPU; the builders are ``benchmarks/kernels.py``'s."""
    if name == "double_well":
        return double_well(2)
    if name == "mixture8":
        return mixture(2, 8)
    if name == "gaussian100":
        return dense_gaussian(100)
    raise ValueError(f"unknown energy {name!r}")


def energy_params(name: str, energy: ebmcore.Energy) -> dict[str, np.ndarray]:
    """The numbers that define energy ``name``, as float64 numpy arrays (for BlackJAX)."""
    if name == "double_well":
        return {"barrier": energy.barrier.double().numpy(),
                "center": energy.center.double().numpy()}
    if name == "mixture8":
        return {"means": energy.means.double().numpy(),
                "precision": energy.precision.double().numpy(),
                "log_coef": energy.log_coef.double().numpy()}
    return {"mean": energy.mean.double().numpy(), "precision": energy.precision.double().numpy()}


# -- the torch floor ----------------------------------------------------------------------

GradFn = Callable[[torch.Tensor], torch.Tensor]
EnergyGradFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def floor_functions(name: str, energy: ebmcore.Energy, x: torch.Tensor
                    ) -> tuple[GradFn, EnergyGradFn]:
    """Hand-written ``grad(x)`` and ``energy_and_grad(x)`` of energy ``name`` in bare torch,
    with its parameters cast once to the dtype and device of ``x`` (B, D)."""
    def cast(t: torch.Tensor) -> torch.Tensor:
        return t.to(device=x.device, dtype=x.dtype)

    if name == "double_well":
        h, c = float(energy.barrier), float(energy.center)

        def grad(x: torch.Tensor) -> torch.Tensor:
            # dE/dx0 = 4h/c u (u^2 - 1) with u = x0 / c; the other axes are harmonic.
            g = x.clone()
            u = x[:, 0] * (1.0 / c)
            torch.mul(u.square().sub_(1.0).mul_(4.0 * h / c), u, out=g[:, 0])
            return g

        def energy_and_grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            g = x.clone()
            u = x[:, 0] * (1.0 / c)
            w = u.square().sub_(1.0)
            torch.mul(w, u, out=g[:, 0]).mul_(4.0 * h / c)
            e = w.square_().mul_(h).add_(torch.linalg.vecdot(x[:, 1:], x[:, 1:]), alpha=0.5)
            return e, g
        return grad, energy_and_grad

    if name == "mixture8":
        means, prec, log_coef = cast(energy.means), cast(energy.precision), cast(energy.log_coef)

        def parts(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            diff = x[:, None, :] - means                                   # (B, K, D)
            pd = torch.einsum("bkd,kde->bke", diff, prec)                   # P_k (x - m_k)
            return log_coef - 0.5 * (diff * pd).sum(-1), pd                # (B, K), (B, K, D)

        def grad(x: torch.Tensor) -> torch.Tensor:
            a, pd = parts(x)
            return (torch.softmax(a, dim=1)[:, :, None] * pd).sum(1)

        def energy_and_grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            a, pd = parts(x)
            lse = torch.logsumexp(a, dim=1)
            return -lse, (torch.exp(a - lse[:, None])[:, :, None] * pd).sum(1)
        return grad, energy_and_grad

    if name != "gaussian100":
        raise ValueError(f"unknown energy {name!r}")
    mean, prec = cast(energy.mean), cast(energy.precision)

    def grad(x: torch.Tensor) -> torch.Tensor:
        return (x - mean) @ prec                                            # one GEMM

    def energy_and_grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        diff = x - mean
        g = diff @ prec
        return 0.5 * torch.linalg.vecdot(diff, g), g
    return grad, energy_and_grad


def floor_langevin(grad: GradFn, x0: torch.Tensor, n_steps: int, eps: float,
                   gen: torch.Generator) -> torch.Tensor:
    """ULA by hand: ``x += -eps grad E(x) + sqrt(2 eps) xi``, noise in a preallocated buffer."""
    x, noise, sd = x0.clone(), torch.empty_like(x0), math.sqrt(2.0 * eps)
    for _ in range(n_steps):
        x.add_(grad(x), alpha=-eps)
        x.add_(torch.randn(x.shape, generator=gen, out=noise), alpha=sd)
    return x


def floor_mala(energy_and_grad: EnergyGradFn, x0: torch.Tensor, n_steps: int, eps: float,
               gen: torch.Generator) -> torch.Tensor:
    """MALA by hand with the energy and gradient cached: one evaluation per step."""
    x = x0.clone()
    e, g = energy_and_grad(x)
    y, xi = torch.empty_like(x), torch.empty_like(x)
    u = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    sd = math.sqrt(2.0 * eps)
    for _ in range(n_steps):
        torch.add(x, g, alpha=-eps, out=y)
        torch.randn(x.shape, generator=gen, out=xi)
        forward = torch.linalg.vecdot(xi, xi).mul_(0.5)      # -log q(y|x) + const
        y.add_(xi, alpha=sd)
        e_y, g_y = energy_and_grad(y)
        r = torch.sub(x, y, out=xi).add_(g_y, alpha=eps)     # x - y + eps grad E(y)
        log_alpha = (e - e_y).add_(forward).sub_(torch.linalg.vecdot(r, r), alpha=0.25 / eps)
        acc = torch.rand(u.shape, generator=gen, out=u) < log_alpha.clamp_max_(0.0).exp_()
        torch.where(acc[:, None], y, x, out=x)
        torch.where(acc[:, None], g_y, g, out=g)
        torch.where(acc, e_y, e, out=e)
    return x


def floor_hmc(grad: GradFn, energy_and_grad: EnergyGradFn, x0: torch.Tensor, n_steps: int,
              eps: float, n_leapfrog: int, gen: torch.Generator) -> torch.Tensor:
    """HMC by hand (identity mass) with a cached gradient: ``samplers.hmc_floor_with``."""
    return hmc_floor_with(energy_and_grad, grad, x0, n_steps, eps, n_leapfrog, gen)


# -- workers (one process per library) ---------------------------------------------------

def emit(record: dict[str, Any]) -> None:
    """Print one record for the driver."""
    print(TAG + json.dumps(record), flush=True)


def error_text(exc: BaseException) -> str:
    """``Type: message`` on one line, cut to 300 characters."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= 300 else text[:297] + "..."


def time_cells(runs: dict[str, Callable[[int], object]], case: Case, sync: Callable[[], None]
               ) -> dict[str, list[float] | BaseException]:
    """Warm every run up, then time them round-robin ``REPEATS`` times.

    Each run takes the number of steps. A run that raises is dropped and its exception
    returned in place of its times.
    """
    out: dict[str, list[float] | BaseException] = {}
    live: dict[str, Callable[[int], object]] = {}
    for name, run in runs.items():
        try:
            run(min(case.steps, WARM_STEPS))
            sync()
            live[name], out[name] = run, []
        except Exception as exc:  # noqa: BLE001 - reported in the table, never fatal
            out[name] = exc
    for _ in range(REPEATS):
        for name, run in list(live.items()):
            try:
                sync()
                start = time.perf_counter()
                run(case.steps)
                sync()
                out[name].append(time.perf_counter() - start)
            except Exception as exc:  # noqa: BLE001
                out[name] = exc
                del live[name]
    return out


def emit_cells(case: Case, times: dict[str, list[float] | BaseException],
               notes: dict[str, str] | None = None) -> None:
    """Report each column's best rate (or its error) for ``case``."""
    for column, t in times.items():
        record: dict[str, Any] = {"case": case.key, "column": column}
        if isinstance(t, BaseException):
            record.update(status="error", detail=error_text(t))
        else:
            record.update(status="ok", rate=case.chains * case.steps / min(t), seconds=t)
        if notes and column in notes:
            record["note"] = notes[column]
        emit(record)


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"CPU {line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def worker_setup(spec: dict[str, Any]) -> tuple[torch.device, Callable[[], None]]:
    """Quieten the simulator, pin CPU runs to one thread; return ``(device, sync)``."""
    if simulated():  # the simulator's RNG warns on every uint64 wrap-around, by design
        warnings.filterwarnings("ignore", category=RuntimeWarning)
    device = torch.device(spec["device"])
    if device.type == "cpu":
        # The DESIGN's rule for CPU comparisons (numba is imported: it cannot undo this).
        torch.set_num_threads(1)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return device, sync


def make_sampler(method: str) -> ebmcore.Sampler:
    """The registry sampler of ``method`` at the table's fixed settings (nothing adapts)."""
    if method == "langevin":
        return ebmcore.create("sampler", "langevin", step_size=STEP_SIZE["langevin"])
    if method == "mala":
        return ebmcore.create("sampler", "mala", step_size=STEP_SIZE["mala"],
                              adapt_step_size=False, adapt_mass=None)
    return ebmcore.create("sampler", "hmc", step_size=STEP_SIZE["hmc"], n_leapfrog=LEAPFROG,
                          adapt_step_size=False, adapt_mass=None)


def ebmcore_runs(case: Case, energy: ebmcore.Energy, x0: torch.Tensor, chose: list[str]
                 ) -> dict[str, Callable[[int], torch.Tensor]]:
    """The floor and the three ebmcore backends on ``case``, each a function of the steps.

    Every run starts from ``x0`` with a fresh generator seeded alike; the ``auto`` run
    appends the backend it ran (its diagnostics say) to ``chose``.
    """
    grad, energy_and_grad = floor_functions(case.energy, energy, x0)
    eps = STEP_SIZE[case.method]
    sampler = make_sampler(case.method)

    def gen() -> torch.Generator:
        return torch.Generator(x0.device).manual_seed(1)

    def floor(n: int) -> torch.Tensor:
        if case.method == "langevin":
            return floor_langevin(grad, x0, n, eps, gen())
        if case.method == "mala":
            return floor_mala(energy_and_grad, x0, n, eps, gen())
        return floor_hmc(grad, energy_and_grad, x0, n, eps, LEAPFROG, gen())

    def backend_run(backend: str) -> Callable[[int], torch.Tensor]:
        def run(n: int) -> torch.Tensor:
            res = sampler.sample(energy, x0, n, backend=backend, generator=gen())
            if backend == "auto":
                chose.append(str(res.diagnostics.get("backend")))
            return res.samples
        return run

    return {"floor": floor, **{b: backend_run(b) for b in ("torch", "cuda", "auto")}}


def ebmcore_worker(spec: dict[str, Any]) -> None:
    """Time the torch floor and ebmcore's torch, cuda and auto backends on every case."""
    device, sync = worker_setup(spec)
    emit({"info": {"device_name": device_name(device), "simulator": simulated(),
                   "torch_threads": torch.get_num_threads()}})
    for case in (Case(**c) for c in spec["cases"]):
        energy = build_energy(case.energy).to(device)
        x0 = torch.randn(case.chains, energy.event_shape[0], dtype=torch.float32,
                         generator=torch.Generator().manual_seed(0)).to(device)
        chose: list[str] = []
        times = time_cells(ebmcore_runs(case, energy, x0, chose), case, sync)
        # What the measured rule says, asked as kernels.py asks it; the run's diagnostics say
        # what it actually ran (the two agree unless the rule changed under us).
        rule = auto_backend(case.method, energy, x0, make_sampler(case.method)._fused_params()[1])
        ran = chose[-1] if chose else rule
        emit_cells(case, times, {"auto": ran if ran == rule else f"{ran} (rule: {rule})"})
        print(f"gpu_table: ebmcore {case.key} done", file=sys.stderr, flush=True)
        del energy, x0
        if device.type == "cuda":
            torch.cuda.empty_cache()  # hand the next case (and the next library) the memory


def torchebm_sampler(method: str, energy: ebmcore.Energy, device: torch.device) -> Any:
    """TorchEBM's sampler of ``method`` (``langevin`` or ``hmc``) on ``energy``.

    The energy is wrapped as a TorchEBM ``BaseModel`` whose ``gradient`` is the energy's
    analytic one: TorchEBM's documented way to give a model a closed-form gradient (its
    default is autograd), so the column times the sampler, not autograd.
    """
    from torchebm.core import BaseModel
    from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics

    class Wrapped(BaseModel):
        """An ebmcore energy as a TorchEBM model."""

        def __init__(self, energy: ebmcore.Energy) -> None:
            super().__init__(dtype=torch.float32, device=device)
            self.energy = energy

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.energy(x)

        def gradient(self, x: torch.Tensor, model_kwargs: dict | None = None) -> torch.Tensor:
            return self.energy.grad(x)

    model = Wrapped(energy)
    if method == "langevin":
        return LangevinDynamics(model, step_size=STEP_SIZE["langevin"], noise_scale=1.0,
                                dtype=torch.float32, device=device)
    if method == "hmc":
        return HamiltonianMonteCarlo(model, step_size=STEP_SIZE["hmc"],
                                     n_leapfrog_steps=LEAPFROG, dtype=torch.float32,
                                     device=device)
    raise ValueError(f"TorchEBM 0.8.9 has no {method} sampler")


def torchebm_worker(spec: dict[str, Any]) -> None:
    """Time TorchEBM's Langevin and HMC on every case it has a sampler for."""
    device, sync = worker_setup(spec)
    try:
        import torchebm.samplers  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means "not here"
        emit({"unavailable": f"torchebm cannot be imported ({error_text(exc)})"})
        return
    emit({"info": {"torchebm": metadata.version("torchebm")}})
    for case in (Case(**c) for c in spec["cases"]):
        if case.method not in ("langevin", "hmc"):
            emit({"case": case.key, "column": "torchebm", "status": "blank",
                  "detail": f"TorchEBM has no {case.method} sampler"})
            continue
        energy = build_energy(case.energy).to(device)
        sampler = torchebm_sampler(case.method, energy, device)
        x0 = torch.randn(case.chains, energy.event_shape[0], dtype=torch.float32,
                         generator=torch.Generator().manual_seed(0)).to(device)

        def run(n: int, sampler: Any = sampler, x0: torch.Tensor = x0) -> torch.Tensor:
            # A copy: TorchEBM may update its input in place (ebmcore never does).
            return sampler.sample(x=x0.clone(), n_steps=n,
                                  generator=torch.Generator(device).manual_seed(1))

        emit_cells(case, time_cells({"torchebm": run}, case, sync))
        print(f"gpu_table: torchebm {case.key} done", file=sys.stderr, flush=True)
        del energy, sampler, x0
        if device.type == "cuda":
            torch.cuda.empty_cache()


# -- the driver -----------------------------------------------------------------------------

@dataclass
class Cell:
    """One table cell: ``status`` is ok, blank, na, error or timeout."""

    status: str
    rate: float | None = None
    detail: str = ""
    note: str = ""
    seconds: list[float] | None = None


def run_worker(name: str, cmd: list[str], env: dict[str, str], timeout: float,
               cases: list[Case]) -> tuple[dict[tuple[str, str], Cell], dict[str, Any]]:
    """Run one library's process; return its cells and info.

    Lines without :data:`TAG` and the process's stderr pass through to our stderr. When the
    process outlives ``timeout`` it is killed and its missing cells say ``timeout``; when it
    dies, ``error``; when it says the library is unavailable, ``na``.
    """
    cells: dict[tuple[str, str], Cell] = {}
    info: dict[str, Any] = {}
    lines: list[str] = []
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True, bufsize=1)
    except OSError as exc:
        return {}, {"unavailable": f"{name}: cannot start {cmd[0]} ({exc})"}

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(TAG):
                lines.append(line[len(TAG):])
            else:
                sys.stderr.write(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()  # our own child, by its handle
        proc.wait()
    reader.join(timeout=10)
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by the kill
            continue
        if "info" in record:
            info.update(record["info"])
        elif "unavailable" in record:
            info["unavailable"] = record["unavailable"]
        else:
            cells[(record["case"], record["column"])] = Cell(
                status=record["status"], rate=record.get("rate"), detail=record.get("detail", ""),
                note=record.get("note", ""), seconds=record.get("seconds"))
    info["seconds"] = round(time.perf_counter() - start, 1)
    if "unavailable" in info:
        return cells, info
    missing = None
    if timed_out:
        missing = Cell("timeout", detail=f"{name} passed its {timeout:.0f} s limit (--timeout)")
    elif proc.returncode:
        missing = Cell("error", detail=f"{name} process ended with code {proc.returncode}")
    if missing is not None:  # the cells it did not report
        info["problem"] = missing.detail
        for case in cases:
            for column in WORKER_COLUMNS[name]:
                cells.setdefault((case.key, column), missing)
    return cells, info


def version_of(dist: str) -> str:
    """The installed version of distribution ``dist``, or ``not installed``."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def fmt_count(n: int) -> str:
    """1000000 -> ``1M``, 1000 -> ``1k``, 1500 -> ``1500``."""
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= size and n % size == 0:
            return f"{n // size}{suffix}"
    return str(n)


def fmt_rate(rate: float) -> str:
    """``5.50e10``: three significant digits, no ``+`` in the exponent."""
    mantissa, exponent = f"{rate:.2e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def cell_text(cell: Cell | None) -> str:
    """What a cell shows: its rate, ``-`` (no such sampler), ``n/a``, ``err`` or ``timeout``."""
    if cell is None or cell.status == "na":
        return "n/a"
    if cell.status == "ok" and cell.rate is not None:
        return fmt_rate(cell.rate)
    return {"blank": "-", "error": "err", "timeout": "timeout"}.get(cell.status, "?")


def ratio_lines(cases: list[Case], cells: dict[tuple[str, str], Cell], simulator: bool
                ) -> tuple[list[str], list[dict[str, Any]]]:
    """The ``cuda / floor`` and ``cuda / BlackJAX`` lines, and the same as records."""
    lines: list[str] = []
    records: list[dict[str, Any]] = []
    width = max(len(case_label(c)) for c in cases)
    checks = ((COLUMNS["floor"], "floor", GOAL_FLOOR, "on every 2-D case"),
              (COLUMNS["blackjax"], "blackjax", GOAL_BLACKJAX, "on every case BlackJAX runs"))
    for label, column, goal, where in checks:
        lines.append(f"ebmcore cuda / {label} (goal >= {goal:g}x {where}):")
        listed = 0
        for case in cases:
            cuda, other = cells.get((case.key, "cuda")), cells.get((case.key, column))
            if other is None or other.status != "ok":
                continue  # nothing to compare with: the table says why
            listed += 1
            name = f"  {case_label(case):<{width}}"
            record: dict[str, Any] = {"case": case.key, "versus": column, "ratio": None,
                                      "goal": None, "ok": None}
            records.append(record)
            if cuda is None or cuda.status != "ok":
                lines.append(f"{name}       n/a  (cuda: {cell_text(cuda)})")
                continue
            ratio = cuda.rate / other.rate
            record["ratio"] = ratio
            if column == "floor" and case.energy not in TWO_D:
                verdict = "(no goal off 2-D)"
            else:
                record.update(goal=goal, ok=ratio >= goal)
                verdict = "ok" if ratio >= goal else "BELOW GOAL"
            if simulator:
                verdict += " [simulator: not a speed]"
            lines.append(f"{name} {ratio:9.3g}x  {verdict}")
        if not listed:
            lines.append(f"  n/a ({label} did not run)")
    return lines, records


def case_label(case: Case) -> str:
    """``double well 2-D  langevin  1M x 1000``, plus ``(of 1M x 1000)`` when scaled."""
    label = (f"{ENERGY_LABEL[case.energy]:<16} {case.method:<9} "
             f"{fmt_count(case.chains)} x {case.steps}")
    if case.full_chains:
        label += f" (of {fmt_count(case.full_chains)} x {case.full_steps})"
    return label


def render(cases: list[Case], cells: dict[tuple[str, str], Cell]) -> list[str]:
    """The table's lines."""
    headers = ["case"] + list(COLUMNS.values()) + ["auto chose"]
    rows = []
    for case in cases:
        auto = cells.get((case.key, "auto"))
        rows.append([case_label(case)] + [cell_text(cells.get((case.key, c))) for c in COLUMNS]
                    + [auto.note if auto is not None and auto.note else "-"])
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return "  ".join(v.ljust(w) if i in (0, len(r) - 1) else v.rjust(w)
                         for i, (v, w) in enumerate(zip(r, widths, strict=True))).rstrip()
    return [line(headers), "  ".join("-" * w for w in widths), *map(line, rows)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                        help="cuda (default) or cpu (a smoke run; the cuda column then needs "
                             "NUMBA_ENABLE_CUDASIM=1)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every chain count (at least 2 remain)")
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="multiply every step count (at least 1 remains)")
    parser.add_argument("--cases", nargs="+", choices=[c.key for c in CASES], default=None,
                        help="run only these cases")
    parser.add_argument("--skip", nargs="+", choices=list(WORKER_COLUMNS), default=[],
                        help="libraries not to run (their columns say n/a)")
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="seconds each library's process may take (default 180)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--blackjax-python-path",
                        default=os.environ.get("GPU_TABLE_BLACKJAX_PATH", ""),
                        help="folder put in front of the BlackJAX process's PYTHONPATH "
                             "(env GPU_TABLE_BLACKJAX_PATH)")
    parser.add_argument("--blackjax-python",
                        default=os.environ.get("GPU_TABLE_BLACKJAX_PYTHON", sys.executable),
                        help="interpreter of the BlackJAX process (env GPU_TABLE_BLACKJAX_PYTHON;"
                             " default: this one)")
    parser.add_argument("--worker", choices=["ebmcore", "torchebm"], help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every library's process, then print the header, the table and the ratios."""
    args = parse_args(argv)
    if args.worker:
        spec = json.loads(args.spec.read_text())
        try:
            {"ebmcore": ebmcore_worker, "torchebm": torchebm_worker}[args.worker](spec)
        except Exception:
            traceback.print_exc()
            return 1
        return 0

    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu_table: torch {torch.__version__} sees no CUDA GPU; for a smoke run without "
              f"one: NUMBA_ENABLE_CUDASIM=1 python {sys.argv[0]} --device cpu --scale 1e-4 "
              f"--steps-scale 0.01", file=sys.stderr)
        return 2
    cases = [c for c in scaled_cases(args.scale, args.steps_scale)
             if args.cases is None or c.key in args.cases]
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_table_") as tmp:
        spec_path, params_path = Path(tmp) / "spec.json", Path(tmp) / "params.npz"
        spec = {"device": args.device, "cases": [asdict(c) for c in cases],
                "step_size": STEP_SIZE, "leapfrog": LEAPFROG, "repeats": REPEATS}
        spec_path.write_text(json.dumps(spec))
        write_params(params_path, {c.energy for c in cases})
        cells: dict[tuple[str, str], Cell] = {}
        infos: dict[str, dict[str, Any]] = {}
        env = dict(os.environ)
        for name in WORKER_COLUMNS:
            if name in args.skip:
                infos[name] = {"unavailable": f"{name}: skipped (--skip)"}
                continue
            if name == "blackjax":
                cmd = [args.blackjax_python, str(HERE / "blackjax_cases.py"),
                       "--spec", str(spec_path), "--params", str(params_path)]
                wenv = blackjax_env(env, args.blackjax_python_path, args.device)
            else:
                cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
                       "--spec", str(spec_path)]
                wenv = env
            print(f"gpu_table: running {name} ({len(cases)} cases)", file=sys.stderr,
                  flush=True)
            got, infos[name] = run_worker(name, cmd, wenv, args.timeout, cases)
            cells.update(got)
    report(args, cases, cells, infos, time.perf_counter() - wall)
    return 0


def write_params(path: Path, energies: set[str]) -> None:
    """Save every energy's defining numbers (``energy.param`` keys) for the BlackJAX process."""
    arrays = {f"{name}.{k}": v for name in sorted(energies)
              for k, v in energy_params(name, build_energy(name)).items()}
    np.savez(path, **arrays)


def blackjax_env(env: dict[str, str], extra_path: str, device: str) -> dict[str, str]:
    """The BlackJAX process's environment: no GPU preallocation, its own path first."""
    out = dict(env)
    out["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"  # torch and jax processes share the GPU
    if device == "cpu":
        out["JAX_PLATFORMS"] = "cpu"
    if extra_path:
        out["PYTHONPATH"] = os.pathsep.join(p for p in (extra_path, env.get("PYTHONPATH"))
                                            if p)
    return out


def report(args: argparse.Namespace, cases: list[Case], cells: dict[tuple[str, str], Cell],
           infos: dict[str, dict[str, Any]], seconds: float) -> None:
    """Print the header, the table, notes and ratios; write ``--json``."""
    eb, bj, te = infos.get("ebmcore", {}), infos.get("blackjax", {}), infos.get("torchebm", {})
    simulator = bool(eb.get("simulator")) and args.device == "cpu"
    # Libraries a process found unavailable fill their columns with n/a.
    for name, info in infos.items():
        if "unavailable" in info:
            for case in cases:
                for column in WORKER_COLUMNS[name]:
                    cells.setdefault((case.key, column), Cell("na", detail=info["unavailable"]))
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "numba": version_of("numba"), "numba-cuda": version_of("numba-cuda"),
                "torchebm": te.get("torchebm", version_of("torchebm")),
                "jax": bj.get("jax", "n/a"), "blackjax": bj.get("blackjax", "n/a")}
    print("ebmcore GPU table: chain-steps per second, float32, best of "
          f"{REPEATS} timed runs after a warm-up, one process per library")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"device: {eb.get('device_name', args.device)}"
          + (f"; jax on {bj['device']}" if "device" in bj else ""))
    if simulator:
        print("NOTE: numba CUDA simulator: the cuda column runs Python threads; "
              "these numbers are not speeds")
    print(f"scale {args.scale:g} (chains), steps-scale {args.steps_scale:g}; step sizes "
          f"langevin {STEP_SIZE['langevin']}, mala {STEP_SIZE['mala']}, "
          f"hmc {STEP_SIZE['hmc']} x {LEAPFROG} leapfrog")
    print()
    for line in render(cases, cells):
        print(line)
    print()
    print("BlackJAX langevin = blackjax.sgld with the exact gradient (ULA); '-' = the library "
          "has no such sampler; TorchEBM uses the energy's analytic gradient")
    # Why cells are empty: each reason once, with the columns it emptied.
    reasons: dict[tuple[str, str], list[str]] = {}
    for column in COLUMNS:
        for case in cases:
            cell = cells.get((case.key, column))
            if cell is not None and cell.status in ("error", "timeout", "na") and cell.detail:
                found = reasons.setdefault((cell.status, cell.detail), [])
                if column not in found:
                    found.append(column)
    for (status, detail), columns in reasons.items():
        print(f"  {', '.join(COLUMNS[c] for c in columns)}: {cell_text(Cell(status))}: {detail}")
    print()
    lines, ratios = ratio_lines(cases, cells, simulator)
    for line in lines:
        print(line)
    print(f"\ntotal {seconds:.0f} s (" + ", ".join(
        f"{n} {i['seconds']} s" for n, i in infos.items() if "seconds" in i) + ")")
    if args.json is not None:
        rows = [{**asdict(case), "label": case_label(case),
                 "cells": {c: asdict(cells[(case.key, c)]) if (case.key, c) in cells else None
                           for c in COLUMNS}} for case in cases]
        args.json.write_text(json.dumps(
            {"versions": versions, "device": eb.get("device_name", args.device),
             "simulator": simulator, "scale": args.scale, "steps_scale": args.steps_scale,
             "step_size": STEP_SIZE, "leapfrog": LEAPFROG, "repeats": REPEATS, "rows": rows,
             "ratios": ratios, "infos": infos, "seconds": seconds}, indent=2))
        print(f"rows written to {args.json}")


if __name__ == "__main__":
    sys.exit(main())
