"""Posteriors with ground truth: ebmcore's gradient samplers beside BlackJAX's and Pyro's NUTS.

Issue #24's benchmark. For each target of ``posterior_targets.py`` (eight schools centred and
non-centred, German credit logistic regression, S&P 500 stochastic volatility, Neal's funnel,
the 100-D ill-conditioned Gaussian, the banana) it first checks the torch log density against
the Inference Gym's own model at random points (where ``tfp-nightly`` is importable), then
runs every sampler asked for from the same starting points (``U(-2, 2)`` in the unconstrained
space, Stan's box):

- ebmcore's ``nuts``, ``hmc``, ``mala``, ``chees`` and ``meads`` (where registered), each built by
  ``ebmcore.create("sampler", name)`` with its defaults (step size found and adapted during
  warm-up, diagonal mass adapted), run by ``Sampler.sample(energy, x0, n_steps=draws,
  burn_in=warmup)`` in this process with ``torch.set_num_threads(1)``; ``seconds`` is that
  whole call: warm-up, draws and the backend choice;
- ``blackjax``: BlackJAX's NUTS with ``window_adaptation``, in its own process on one CPU
  thread (``posteriors_blackjax.py``: chains under ``jax.vmap``; compiled ahead of time,
  ``seconds`` excludes compilation);
- ``pyro``: Pyro's NUTS on the same torch log density, in its own process on one thread, its
  chains one after another (``posteriors_pyro.py``; ``--pyro-chains`` of them, 4 by default:
  ESS per second does not depend on the number of chains, and Pyro's are slow).

Beside the issue's protocol (``--chains`` 16, 1,000 + 1,000, the columns above), three
columns run at the chain count, warm-up and draws of ebmcore's recommended configuration for
the target (``RECOMMENDED``, documented in docs/sampling.md, "Which sampler for which
posterior"):

- ``recommended``: that configuration itself (sampler, its settings, chains, warm-up,
  draws). Where it compiles its leapfrog steps, ``seconds`` excludes the compile, as
  BlackJAX's do; the note gives the compile's seconds;
- ``blackjax_same``: BlackJAX's NUTS (as ``blackjax``) with the same chains, warm-up, draws;
- ``blackjax_chees``: BlackJAX's ChEES-HMC (``chees_adaptation`` with its diagonal mass,
  then ``dynamic_hmc``), the same chains, warm-up and draws.

The starting points of the first ``--chains`` chains are the protocol's; the others come
after them from the same generator.

All statistics come from one estimator, ``ebmcore.diagnostics`` (ArviZ's), on the quantities
whose reference moments are known (``Target.constrain``): the largest ``|z|`` of the posterior
means, ``z = (mean - ref) / sqrt(MCSE^2 + SE_ref^2)`` with ``MCSE = sd / sqrt(ESS_mean)``
(``mcse_mean``) and ``SE_ref`` the gym's standard error of its ground truth; the largest
R-hat; the smallest bulk ESS, per second and per 1,000 gradient evaluations of the draws
phase (all chains; from ``diagnostics["n_grad_sampling"]`` for ebmcore, the leapfrog steps
for BlackJAX, the potential's calls for Pyro); divergences in the draws phase (all chains)
and the mean acceptance statistic. Last, per target, ebmcore's ESS per second over
BlackJAX's (``blackjax``: the protocol's 16 chains; ``blackjax_same``: the recommended
configuration's), BlackJAX ChEES's and Pyro's, measured back to back in one run.

Run (every target and column: an estimated 1 to 1.5 hours on a free core, most of it Pyro and
the 100-D Gaussian's deep trees; ``--samplers nuts,chees,blackjax`` about half an hour;
``--samplers`` and ``--targets`` narrow it)::

    python benchmarks/posteriors.py --markdown posteriors.md
    python benchmarks/posteriors.py --targets funnel,banana --samplers nuts,blackjax
    python benchmarks/posteriors.py --quick          # seconds: a smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import numba  # noqa: F401  (imported first: it can reset torch's OpenMP thread count)
import numpy as np
import torch

import ebmcore
from ebmcore import diagnostics

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from posterior_targets import (  # noqa: E402  (beside this file, found through HERE)
    TARGETS,
    GymUnavailableError,
    PosteriorEnergy,
    Target,
    gym_log_prob,
    make_target,
)

EBMCORE_SAMPLERS = ("nuts", "hmc", "mala", "chees", "meads", "recommended")
#: Peer columns: (script, algorithm, whether it runs at the recommended configuration's size).
PEERS = {"blackjax": ("posteriors_blackjax.py", "nuts", False),
         "pyro": ("posteriors_pyro.py", "nuts", False),
         "blackjax_same": ("posteriors_blackjax.py", "nuts", True),
         "blackjax_chees": ("posteriors_blackjax.py", "chees", True)}
SAMPLERS = (*EBMCORE_SAMPLERS, *PEERS)


@dataclass(frozen=True)
class Recipe:
    """ebmcore's recommended configuration for a target (docs/sampling.md)."""

    sampler: str
    kwargs: dict[str, Any]
    chains: int
    warmup: int
    draws: int

    def describe(self) -> str:
        """``chees(compiled=True), 256 chains, 300 + 1000``."""
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{self.sampler}({args}), {self.chains} chains, {self.warmup} + {self.draws}"


#: Small models: many chains in lockstep cost hardly more per leapfrog step than 16, and
#: the compiled leapfrog removes eager torch's fixed cost per step (docs/sampling.md).
_SMALL = Recipe("chees", {"compiled": True}, 256, 300, 1000)
_NUTS = Recipe("nuts", {}, 16, 1000, 1000)
RECOMMENDED: dict[str, Recipe] = {
    "eight_schools_nc": _SMALL,
    "eight_schools_c": _SMALL,
    "german_credit": _SMALL,
    "gaussian_100": Recipe("chees", {"compiled": True, "adapt_mass": "dense"}, 256, 300, 1000),
    "banana": _SMALL,
    # Where ChEES's one trajectory length and harmonic-mean step size fail (its step size
    # collapsed on the volatilities; the funnel's scales change from place to place): NUTS,
    # its energy calls traced into one compiled graph, each chain running its own
    # transitions (docs/sampling.md). The full 2,516-day model keeps the default NUTS: not
    # measured with these settings.
    "sv_sp500_small": Recipe("nuts", {"asynchronous": True, "compiled": True}, 64, 1000, 1000),
    "funnel": Recipe("nuts", {"asynchronous": True, "compiled": True}, 256, 1000, 1000),
    "sv_sp500": _NUTS,
}
DEFAULT_TARGETS = tuple(t for t in TARGETS if t != "sv_sp500")
QUICK_TARGETS = ("eight_schools_nc", "banana")
THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
#: A log density may differ from the gym's by float32 rounding: this much of max(1, |log p|).
DENSITY_RTOL = 2e-5
#: Where a result's means must lie (issue #24): within this many standard errors.
Z_LIMIT = 5.0
RHAT_LIMIT = 1.05


@dataclass
class Settings:
    """One run's settings."""

    chains: int = 16
    warmup: int = 1000
    draws: int = 1000
    seed: int = 0
    pyro_chains: int = 4
    blackjax_mode: str = "vmap"
    gym_substrate: str = "numpy"
    peer_timeout: float = 3600.0


@dataclass
class Row:
    """One sampler on one target."""

    target: str
    sampler: str
    title: str = ""
    chains: int = 0
    warmup: int = 0
    draws: int = 0
    max_z: float = math.nan
    max_rhat: float = math.nan
    min_ess: float = math.nan
    max_sd_err: float = math.nan
    seconds: float = math.nan
    grads_warmup: float = math.nan
    grads_sampling: float = math.nan
    divergences: float = math.nan
    acceptance: float = math.nan
    note: str = ""
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ess_per_second(self) -> float:
        """Smallest bulk ESS per second of the whole run."""
        return self.min_ess / self.seconds

    @property
    def ess_per_kgrad(self) -> float:
        """Smallest bulk ESS per 1,000 gradient evaluations of the draws phase."""
        return 1000.0 * self.min_ess / self.grads_sampling

    @property
    def ok(self) -> bool:
        """Means within ``Z_LIMIT`` standard errors, or R-hat above ``RHAT_LIMIT``."""
        return self.error is None and (self.max_z <= Z_LIMIT or self.max_rhat > RHAT_LIMIT)


def error_text(exc: BaseException) -> str:
    """``Type: message`` on one line, at most 300 characters."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= 300 else text[:297] + "..."


def statistics(target: Target, draws: Any) -> dict[str, float]:
    """Max |z| of the means, max R-hat, min bulk ESS, max relative sd error of ``draws``
    ``(chains, draws, dim)`` (unconstrained) mapped by ``target.constrain``."""
    u = torch.as_tensor(np.asarray(draws), dtype=torch.float64)
    chains, n, dim = u.shape
    with torch.no_grad():
        q = target.constrain(u.reshape(chains * n, dim)).reshape(chains, n, -1)
    mean = q.mean(dim=(0, 1))
    sd = q.reshape(chains * n, -1).std(dim=0)
    se = (diagnostics.mcse_mean(q) ** 2 + torch.as_tensor(target.ref_mean_se) ** 2).sqrt()
    z = (mean - torch.as_tensor(target.ref_mean)) / se
    return {"max_z": float(z.abs().max()), "max_rhat": float(diagnostics.rhat(q).max()),
            "min_ess": float(diagnostics.ess_bulk(q).min()),
            "max_sd_err": float((sd / torch.as_tensor(target.ref_sd) - 1.0).abs().max())}


def summarise(row: Row, target: Target, draws: Any) -> Row:
    """Fill ``row``'s statistics from ``draws``; a failure becomes ``row.error``."""
    try:
        return replace(row, **statistics(target, draws))
    except ValueError as exc:  # non-finite draws, too few draws
        return replace(row, error=error_text(exc))


def total(value: Any) -> float:
    """Sum of a per-chain count (NaN when absent)."""
    return math.nan if value is None else float(torch.as_tensor(value).double().sum())


def run_ebmcore(name: str, target: Target, x0: torch.Tensor, settings: Settings,
                recipe: Recipe | None = None) -> Row:
    """Sample ``target`` with ebmcore's sampler ``name`` (its defaults), or with ``recipe``
    (its sampler, settings, warm-up and draws; ``x0`` holds its chains)."""
    warmup, draws = ((settings.warmup, settings.draws) if recipe is None
                     else (recipe.warmup, recipe.draws))
    row = Row(target.name, name, target.title, chains=x0.shape[0], warmup=warmup, draws=draws)
    try:
        sampler = (ebmcore.create("sampler", name) if recipe is None
                   else ebmcore.create("sampler", recipe.sampler, **recipe.kwargs))
    except Exception as exc:  # noqa: BLE001 - an unknown or unbuildable sampler is reported
        return replace(row, error=error_text(exc))
    energy = PosteriorEnergy(target)
    generator = torch.Generator().manual_seed(settings.seed)
    start = time.perf_counter()
    try:
        result = sampler.sample(energy, x0, n_steps=draws, burn_in=warmup,
                                generator=generator, return_trajectory=True)
    except Exception as exc:  # noqa: BLE001 - a failing run is a result too
        return replace(row, error=error_text(exc))
    seconds = time.perf_counter() - start
    d = result.diagnostics
    acceptance = d.get("acceptance")
    notes = [f"backend {d.get('backend')}"]
    if recipe is not None:
        notes.insert(0, recipe.describe())
    compile_seconds = float(d.get("compile_seconds") or 0.0)
    if compile_seconds:
        # As BlackJAX's: the compile is excluded (and reported).
        notes.append(f"compile {compile_seconds:.0f} s excluded")
        row.extra["seconds_with_compile"] = seconds
        seconds -= compile_seconds
    if d.get("compiled_refusal"):
        notes.append(f"not compiled: {d['compiled_refusal'][:120]}")
    if d.get("tree_depth") is not None:
        notes.append(f"tree depth {float(torch.as_tensor(d['tree_depth']).double().mean()):.1f}")
    row = replace(row, seconds=seconds, grads_warmup=total(d.get("n_grad_warmup")),
                  grads_sampling=total(d.get("n_grad_sampling")),
                  divergences=total(d.get("divergences")),
                  acceptance=math.nan if acceptance is None else float(acceptance.mean()),
                  note=", ".join(notes))
    return summarise(row, target, diagnostics.from_trajectory(result.trajectory))


def peer_env() -> dict[str, str]:
    """The environment of a peer's process: one CPU thread, this process's import path."""
    env = dict(os.environ)
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=THREAD_FLAGS, XLA_PYTHON_CLIENT_PREALLOCATE="false",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    paths = [str(HERE)] + [p for p in sys.path if p and Path(p).is_dir()]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def run_peer(name: str, target: Target, x0: np.ndarray, check_points: np.ndarray,
             check_values: np.ndarray, settings: Settings,
             recipe: Recipe | None = None) -> Row:
    """Run the peer ``name`` (``PEERS``) in its own process on ``target`` from ``x0``
    (with ``recipe``'s warm-up and draws where given)."""
    warmup, draws = ((settings.warmup, settings.draws) if recipe is None
                     else (recipe.warmup, recipe.draws))
    row = Row(target.name, name, target.title, chains=x0.shape[0], warmup=warmup, draws=draws)
    script, algorithm, _ = PEERS[name]
    spec = {"target": target.name, "warmup": warmup, "draws": draws,
            "seed": settings.seed, "mode": settings.blackjax_mode, "algorithm": algorithm}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "spec.json").write_text(json.dumps(spec))
        np.savez(folder / "data.npz", x0=x0, check_points=check_points, **target.data)
        cmd = [sys.executable, str(HERE / script), "--spec", str(folder / "spec.json"),
               "--data", str(folder / "data.npz"), "--out", str(folder / "out.npz")]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=peer_env(),
                                  timeout=settings.peer_timeout, check=False)
        except subprocess.TimeoutExpired:
            return replace(row, error=f"no result within {settings.peer_timeout:.0f} s")
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("POSTERIORS ")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return replace(row, error=f"exit {proc.returncode}: {tail[:300]}")
        info = json.loads(lines[-1][len("POSTERIORS "):])
        with np.load(folder / "out.npz") as npz:
            out = {k: npz[k] for k in npz.files}
    notes = [info["versions"]] + (["ChEES-HMC"] if algorithm == "chees" else [])
    if "compile_seconds" in info:
        notes.append(f"compile {info['compile_seconds']:.0f} s excluded")
    if "check" in out:  # the peer's own log density at the check points
        gap = float(np.max(np.abs(out["check"] - check_values)
                           / np.maximum(1.0, np.abs(check_values))))
        if not gap <= DENSITY_RTOL:
            return replace(row, error=f"its log density differs from the torch one by {gap:.1e}"
                                      f" (relative) at the check points")
        notes.append(f"log p = torch's to {gap:.0e}")
    row = replace(row, seconds=float(info["seconds"]),
                  grads_warmup=float(out["n_grad_warmup"].sum()),
                  grads_sampling=float(out["n_grad_sampling"].sum()),
                  divergences=float(out["divergences"].sum()),
                  acceptance=float(out["acceptance"].mean()), note="; ".join(notes))
    return summarise(row, target, out["draws"])


def check_density(target: Target, points: np.ndarray, substrate: str) -> tuple[str, bool]:
    """Compare the torch log density with the gym's at ``points``; a line and whether it held."""
    torch_target = make_target(target.name, torch.float64)
    with torch.no_grad():
        ours = torch_target.log_prob(torch.as_tensor(points)).numpy()
    try:
        ref = gym_log_prob(target.name, points, substrate)
    except GymUnavailableError as exc:
        return f"density check against the Inference Gym skipped: {exc}", True
    gap = float(np.max(np.abs(ours - ref) / np.maximum(1.0, np.abs(ours))))
    held = gap <= DENSITY_RTOL
    return (f"log density = the Inference Gym's ({substrate} substrate, its event-space "
            f"bijector) at {len(points)} random points to {gap:.1e} relative"
            f"{'' if held else ' -- MISMATCH'}"), held


HEADER = (f"{'sampler':14s} {'chains':>6s} {'warm+draws':>10s} {'max|z|':>7s} {'R-hat':>6s} "
          f"{'ESS':>7s} {'sd err':>6s} {'seconds':>8s} {'ESS/s':>8s} {'ESS/kgrad':>9s} {'div':>5s} "
          f"{'accept':>6s}  note")


def format_row(row: Row) -> str:
    """One line of the text table."""
    if row.error:
        return f"{row.sampler:14s} {row.chains:6d}  not run: {row.error}"
    flag = "" if row.ok else "  ** means off the reference **"
    size = f"{row.warmup}+{row.draws}"
    return (f"{row.sampler:14s} {row.chains:6d} {size:>10s} {row.max_z:7.2f} {row.max_rhat:6.3f} "
            f"{row.min_ess:7.0f} {row.max_sd_err:6.3f} {row.seconds:8.1f} "
            f"{row.ess_per_second:8.1f} {row.ess_per_kgrad:9.2f} {row.divergences:5.0f} "
            f"{row.acceptance:6.3f}  {row.note}{flag}")


def ratios(rows: list[Row]) -> list[tuple[str, str, str, float]]:
    """``(target, ebmcore sampler, peer, ESS/s ratio)`` for every pair that ran."""
    out = []
    for peer in ("blackjax", "blackjax_same", "blackjax_chees", "pyro"):
        for row in rows:
            if row.sampler not in EBMCORE_SAMPLERS or row.error:
                continue
            ref = [r for r in rows if r.sampler == peer and r.target == row.target
                   and not r.error]
            if ref:
                out.append((row.target, row.sampler, peer,
                            row.ess_per_second / ref[0].ess_per_second))
    return out


def figure(value: float) -> str:
    """A rate or ratio with sensible digits: 2,698 / 58.6 / 0.018."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 1 else f"{value:.2g}"


def markdown(rows: list[Row], settings: Settings) -> str:
    """The results as a markdown table (``docs/posterior-results.md``).

    An R-hat above ``RHAT_LIMIT`` is in bold (the chains did not mix: ESS and z say little),
    and so is a ``|z|`` above ``Z_LIMIT`` where R-hat is not.
    """
    peers = ("blackjax", "blackjax_same", "blackjax_chees", "pyro")
    lines = [f"Protocol rows: {settings.chains} chains ({settings.pyro_chains} for Pyro), "
             f"{settings.warmup:,} warm-up and {settings.draws:,} draws; the others as their "
             f"chains and warm-up + draws say; one CPU thread each.", "",
             "| target | sampler | chains | warm-up + draws | max \\|z\\| | max R-hat | min ESS "
             "| ESS/s | ESS/1k grads | divergences | acceptance | vs BlackJAX-16 "
             "| vs BlackJAX same chains | vs BlackJAX ChEES | vs Pyro |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    per = {(t, s, p): r for t, s, p, r in ratios(rows)}
    for row in rows:
        title = row.title or row.target
        if row.error:
            lines.append(f"| {title} | {row.sampler} | {row.chains} | | not run: {row.error} "
                         "| | | | | | | | | | |")
            continue
        mixed = row.max_rhat <= RHAT_LIMIT
        z = f"{row.max_z:.2f}" if row.max_z <= Z_LIMIT or not mixed else f"**{row.max_z:.2f}**"
        rhat = f"{row.max_rhat:.3f}" if mixed else f"**{row.max_rhat:.3f}**"
        cells = [per.get((row.target, row.sampler, peer)) for peer in peers]
        cells_text = " | ".join("" if c is None else f"{figure(c)}x" for c in cells)
        lines.append(
            f"| {title} | {row.sampler} | {row.chains} | {row.warmup:,} + {row.draws:,} "
            f"| {z} | {rhat} | {row.min_ess:.0f} | "
            f"{figure(row.ess_per_second)} | {figure(row.ess_per_kgrad)} | "
            f"{row.divergences:.0f} | {row.acceptance:.2f} | {cells_text} |")
    return "\n".join(lines) + "\n"


def run(targets: list[str], samplers: list[str], settings: Settings,
        out: TextIO = sys.stdout) -> tuple[list[Row], list[str]]:
    """Check and sample every target with every sampler; print as it goes.

    Returns the rows and the names of targets whose density check failed.
    """
    rows: list[Row] = []
    failed: list[str] = []
    for index, name in enumerate(targets):
        try:
            target = make_target(name, torch.float32)
        except GymUnavailableError as exc:
            print(f"\n{name}: skipped ({exc})", file=out, flush=True)
            continue
        print(f"\n{target.title} [{name}], {target.dim}-D; sampled in {target.space}; "
              f"reference: {target.reference}", file=out)
        points = target.check_points(8, settings.seed + 1000 + index)
        line, held = check_density(target, points, settings.gym_substrate)
        print(f"  {line}", file=out, flush=True)
        if not held:
            failed.append(name)
            continue
        with torch.no_grad():
            check_values = make_target(name, torch.float64).log_prob(
                torch.as_tensor(points)).numpy()
        recipe = RECOMMENDED[name]
        rng = np.random.default_rng(settings.seed + index)
        # The protocol's chains first, the recommended configuration's others after them.
        x0 = rng.uniform(-2.0, 2.0, size=(max(settings.chains, recipe.chains), target.dim))
        print(f"  recommended: {recipe.describe()}", file=out)
        print("  " + HEADER, file=out, flush=True)
        for sampler in samplers:
            sized = sampler == "recommended" or (sampler in PEERS and PEERS[sampler][2])
            n = (recipe.chains if sized else
                 settings.pyro_chains if sampler == "pyro" else settings.chains)
            if sampler in PEERS:
                row = run_peer(sampler, target, x0[:n], points, check_values, settings,
                               recipe if sized else None)
            else:
                row = run_ebmcore(sampler, target, torch.as_tensor(x0[:n], dtype=torch.float32),
                                  settings, recipe if sized else None)
            rows.append(row)
            print("  " + format_row(row), file=out, flush=True)
    pairs = ratios(rows)
    if pairs:
        print("\nESS per second of ebmcore's samplers over the peer's (same run, back to back):",
              file=out)
        for target_name, sampler, peer, ratio in pairs:
            print(f"  {target_name:17s} {sampler:11s} / {peer:14s} {ratio:8.3g}", file=out)
    return rows, failed


def merge(files: list[Path], out: Path | None) -> int:
    """Print (and write to ``out``) one markdown table of the rows of ``--json`` files."""
    rows: list[Row] = []
    settings = None
    for path in files:
        saved = json.loads(path.read_text())
        settings = Settings(**saved["settings"])
        rows += [Row(**r) for r in saved["rows"]]
    text = markdown(rows, settings)
    print(text, end="")
    if out:
        out.write_text(text)
    return 0


def parse_list(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    """Split a comma-separated list and check every item."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise SystemExit(f"--{what} takes a comma-separated list of {', '.join(allowed)}; "
                         f"got {text!r}")
    return items


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run, print (and write ``--markdown``); 1 if a check failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                        help=f"comma-separated, of {', '.join(TARGETS)}")
    parser.add_argument("--samplers", default=",".join(SAMPLERS),
                        help=f"comma-separated, of {', '.join(SAMPLERS)}")
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--pyro-chains", type=int, default=4)
    parser.add_argument("--blackjax-mode", choices=("vmap", "map"), default="vmap",
                        help="BlackJAX's chains in lockstep (vmap) or one after another (map)")
    parser.add_argument("--gym-substrate", choices=("numpy", "jax"), default="numpy",
                        help="TFP backend of the gym's reference densities")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recipe", type=json.loads, metavar="JSON",
                        help="try another configuration as 'recommended' on these targets: "
                             '\'{"sampler": "nuts", "kwargs": {"compiled": true}, '
                             '"chains": 64, "warmup": 1000, "draws": 1000}\'')
    parser.add_argument("--quick", action="store_true",
                        help="4 chains, 100 + 100 steps, two small targets, ebmcore's NUTS")
    parser.add_argument("--markdown", type=Path, help="also write the table here (markdown)")
    parser.add_argument("--json", type=Path, help="also write the rows here (JSON)")
    parser.add_argument("--from-json", type=Path, nargs="+", metavar="FILE",
                        help="sample nothing: merge these --json files into one table")
    args = parser.parse_args(argv)
    if args.from_json:
        return merge(args.from_json, args.markdown)
    torch.set_num_threads(1)
    settings = Settings(chains=args.chains, warmup=args.warmup, draws=args.draws,
                        seed=args.seed, pyro_chains=args.pyro_chains,
                        blackjax_mode=args.blackjax_mode, gym_substrate=args.gym_substrate)
    targets = parse_list(args.targets, TARGETS, "targets")
    samplers = parse_list(args.samplers, SAMPLERS, "samplers")
    if args.recipe is not None:
        try:
            tried = Recipe(**args.recipe)
        except TypeError as exc:
            raise SystemExit(f"--recipe takes sampler, kwargs, chains, warmup and draws: "
                             f"{exc}") from None
        RECOMMENDED.update(dict.fromkeys(targets, tried))
    if args.quick:
        settings = replace(settings, chains=4, warmup=100, draws=100,
                           pyro_chains=min(settings.pyro_chains, 2))
        if "--targets" not in (argv if argv is not None else sys.argv):
            targets = list(QUICK_TARGETS)
        if "--samplers" not in (argv if argv is not None else sys.argv):
            samplers = ["nuts"]
    for value, what in ((settings.chains, "chains"), (settings.warmup, "warmup"),
                        (settings.draws, "draws"), (settings.pyro_chains, "pyro-chains")):
        if value < (4 if what == "draws" else 1):
            raise SystemExit(f"--{what} must be at least {4 if what == 'draws' else 1}")
    print(f"torch {torch.__version__}, ebmcore samplers {', '.join(ebmcore.names('sampler'))}; "
          f"{settings.chains} chains, {settings.warmup} warm-up, {settings.draws} draws, "
          f"one thread", flush=True)
    started = time.perf_counter()
    rows, failed = run(targets, samplers, settings)
    print(f"\n{time.perf_counter() - started:.0f} s in all", flush=True)
    if args.markdown:
        args.markdown.write_text(markdown(rows, settings))
    if args.json:
        args.json.write_text(json.dumps({"settings": asdict(settings),
                                         "rows": [asdict(r) for r in rows]}, indent=1))
    if failed:
        print(f"density check failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
