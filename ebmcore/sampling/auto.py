"""Which backend runs a case: the one asked for, or ``auto``'s pick, with the reason.

``auto`` considers torch and every backend whose ``supports`` says yes, then:

1. a run with an ``on_keep`` hook runs on torch (the only backend that returns to Python at
   every kept step whatever the run), and so does a run with a ``time_limit`` or a
   ``should_stop`` when no other backend that can run it honours them (``stops``);
2. **rule**: the first backend (by ``rule_priority``) whose ``rule_picks`` says yes, else
   torch. A backend that cannot be timed cheaply (``measurable = False``: compiling costs
   seconds) is taken on the rule's word;
3. **measure**: when two or more measurable backends can run and the run is long enough to
   repay a trial (``MEASURE_MIN_STEPS`` steps and ``MEASURE_MIN_WORK`` chain-coordinate-steps),
   each is timed for a few steps on the actual case, as cuDNN's benchmark mode and FFTW's
   planner do, and the winner is cached per case (:func:`case_key`) in memory and, when the
   environment variable ``EBMCORE_AUTO_CACHE`` names a file, on disk. The rule's pick is
   kept unless another backend measures ``MEASURE_MARGIN`` times faster in every round of
   the trial, so that a near tie or a noisy trial does not flip the choice (and the bits)
   from one process to the next.

The trials run on a copy of the chains with a generator of their own (seeded with
``TRIAL_SEED``), so they never advance the run's generator: once the backend is chosen, the
run's results are those of that backend with the caller's seed. A short run keeps the rule.
"""

from __future__ import annotations

import gc
import json
import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ebmcore.errors import BackendUnavailableError
from ebmcore.sampling.backend import Backend, RunSpec

if TYPE_CHECKING:
    from ebmcore.energy import Energy
    from ebmcore.sampler import Sampler

#: Environment variable naming a JSON file where measured choices persist across processes.
ENV_CACHE = "EBMCORE_AUTO_CACHE"
#: Least steps (burn-in included) of a run that ``auto`` times backends for.
MEASURE_MIN_STEPS = 50
#: Least work (chains x steps x coordinates) of a run that ``auto`` times backends for:
#: about 0.05-0.5 s of sampling on one CPU core. A trial costs a few steps of each backend,
#: plus compiling a fused kernel the first time a process meets a face (a few seconds on a
#: CPU), so smaller runs keep the rule unless a trial of their case is cached.
MEASURE_MIN_WORK = 10_000_000
#: Another backend replaces the rule's pick only when it measures this much faster: the
#: rule is fitted to measurements and right on most cases, while a trial of a few steps on a
#: busy machine can be off by tens of percent, so the trial overrides it only where the rule
#: would miss by more than the 1.25x ``auto`` promises.
MEASURE_MARGIN = 1.25
#: Seed of the trials' own generator.
TRIAL_SEED = 0
#: Trials shorter than this are repeated, and the fastest repeat counts (timer noise, and
#: stalls on a shared machine only ever add time).
REPEAT_BELOW_SECONDS = 0.05
#: A trial's extra steps are lengthened until they take at least this long.
MIN_SPAN_SECONDS = 0.02
#: Most repeats of one timed trial run.
TRIAL_REPEATS = 5
#: Least repeats, whatever they cost (one timing of a few steps is too noisy to act on).
TRIAL_MIN_REPEATS = 3


@dataclass(frozen=True)
class Choice:
    """The backend that runs a case and why.

    Attributes:
        backend: The chosen backend.
        reason: One line for ``diagnostics["backend_reason"]``.
        trial_seconds: Time spent timing backends for this choice (0 when none).
        predicted: Each timed backend's predicted seconds for the run, when measured.
    """

    backend: Backend
    reason: str
    trial_seconds: float = 0.0
    predicted: Mapping[str, float] = field(default_factory=dict)


def choose(sampler: Sampler, energy: Energy, x: torch.Tensor, requested: str, run: RunSpec,
           torch_backend: Backend, backends: Mapping[str, Backend]) -> Choice:
    """Return the :class:`Choice` for ``requested`` (a backend name or ``"auto"``).

    Args:
        sampler: The sampler.
        energy: The target energy.
        x: The initial positions.
        requested: ``"auto"`` or a backend's name.
        run: The run.
        torch_backend: The core's torch backend for this run.
        backends: The registered backends by name.

    Raises:
        BackendUnavailableError: The backend asked for cannot run this case (the message
            says why and lists those that can).
    """
    if requested != "auto":
        return _requested(sampler, energy, x, requested, run, torch_backend, backends)
    if run.on_keep is not None:
        return Choice(torch_backend, "on_keep is given: torch returns to Python at every "
                                     "kept step")
    if run.stoppable:
        backends = {name: b for name, b in backends.items() if b.stops}
        if not backends:
            return Choice(torch_backend, "time_limit or should_stop is given: torch checks "
                                         "them between steps")
    reasons = {name: b.supports(sampler, energy, x, run) for name, b in backends.items()}
    eligible = [backends[n] for n, r in reasons.items() if r is None]
    if not eligible:
        why = "; ".join(f"{n}: {r}" for n, r in reasons.items())
        return Choice(torch_backend, f"only torch can run this case ({why})" if why
                      else "torch is the only backend installed")
    rule = _rule(sampler, energy, x, run, torch_backend, eligible)
    if not rule.backend.timeable(x):
        return rule
    candidates = [torch_backend, *(b for b in eligible if b.timeable(x))]
    if len(candidates) < 2:
        return rule
    key = case_key(sampler, energy, x, candidates)
    cached = _CACHE.get(key)
    if cached is not None and cached in {b.name for b in candidates}:
        picked = next(b for b in candidates if b.name == cached)
        return Choice(picked, f"measured fastest on this case earlier ({_describe(key)})")
    work = x.shape[0] * run.n_total * math.prod(x.shape[1:])
    if run.n_total < MEASURE_MIN_STEPS or work < MEASURE_MIN_WORK:
        return Choice(rule.backend, f"{rule.reason} (a run of {run.n_total} steps x "
                                    f"{x.shape[0]} chains is too short to time backends)")
    return _measure(sampler, energy, x, run, candidates, rule, key)


def _requested(sampler: Sampler, energy: Energy, x: torch.Tensor, requested: str,
               run: RunSpec, torch_backend: Backend,
               backends: Mapping[str, Backend]) -> Choice:
    if requested == "torch":
        return Choice(torch_backend, "requested")
    backend = backends[requested]
    if run.on_keep is not None and not backend.streams:
        raise BackendUnavailableError(
            f"backend={requested!r} cannot call on_keep: its fused kernel runs the whole "
            f"chain loop in one call, with no Python between steps. Use backend='torch' "
            f"(or 'auto', which picks it when on_keep is given).")
    if run.stoppable and not backend.stops:
        raise BackendUnavailableError(
            f"backend={requested!r} cannot honour time_limit or should_stop: it does not "
            f"return to Python between steps. Use backend='torch' (or 'auto', which picks "
            f"it when either is given).")
    reason = backend.supports(sampler, energy, x, run)
    if reason is not None:
        usable = ["torch", *(n for n, b in backends.items()
                             if n != requested and b.supports(sampler, energy, x, run) is None)]
        raise BackendUnavailableError(
            f"backend={requested!r} cannot run here: {reason}. Usable backends: "
            f"{', '.join(usable)} (or backend='auto').")
    return Choice(backend, "requested")


def _rule(sampler: Sampler, energy: Energy, x: torch.Tensor, run: RunSpec,
          torch_backend: Backend, eligible: list[Backend]) -> Choice:
    for backend in sorted(eligible, key=lambda b: b.rule_priority):
        if backend.rule_picks(sampler, energy, x, run):
            return Choice(backend, f"rule: {backend.rule_reason(sampler, energy, x)}")
    names = ", ".join(b.name for b in eligible)
    return Choice(torch_backend, f"rule: torch is expected faster than {names} here")


def case_key(sampler: Sampler, energy: Energy, x: torch.Tensor,
             candidates: list[Backend]) -> str:
    """The cache key of a case: energy type, each candidate's own key (a face's cost), D,
    dtype, device, sampler type, the candidates and the chain count rounded to a power of 2."""
    energy_type = f"{type(energy).__module__}.{type(energy).__qualname__}"
    sampler_type = f"{type(sampler).__module__}.{type(sampler).__qualname__}"
    extra = [list(b.case_key(sampler, energy, x)) for b in candidates]
    bucket = 2 ** round(math.log2(max(1, x.shape[0])))
    return json.dumps([energy_type, extra, math.prod(x.shape[1:]), str(x.dtype)[6:],
                       x.device.type, sampler_type, [b.name for b in candidates], bucket])


def _describe(key: str) -> str:
    energy, _, dim, dtype, device, sampler, _, bucket = json.loads(key)
    return (f"{energy.rsplit('.', 1)[-1]}, {dim}-D {dtype} on {device}, "
            f"{sampler.rsplit('.', 1)[-1]}, about {bucket} chains")


def _sync(x: torch.Tensor) -> None:
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)


def _seconds(backend: Backend, sampler: Sampler, energy: Energy, x: torch.Tensor,
             n_steps: int) -> float:
    """Time one run of ``n_steps`` on the trial's own generator, with Python's garbage
    collector paused as :mod:`timeit` does (a full collection in a process holding many
    objects takes tens of milliseconds, which a short trial would extrapolate)."""
    generator = torch.Generator(device=x.device).manual_seed(TRIAL_SEED)
    collecting = gc.isenabled()
    gc.disable()
    try:
        _sync(x)
        started = time.perf_counter()
        backend.run(sampler, energy, x, RunSpec(n_steps=n_steps), generator)
        _sync(x)
        return time.perf_counter() - started
    finally:
        if collecting:
            gc.enable()


def trial_steps(n_total: int) -> int:
    """Steps in the longer of a trial's two timed runs, beyond the shorter's one step:
    about 1 % of the run, between 2 and 8."""
    return max(2, min(8, n_total // 100))


def predict_all(candidates: list[Backend], sampler: Sampler, energy: Energy,
                x: torch.Tensor, n_total: int) -> tuple[dict[str, Trial], list[str]]:
    """Time each candidate for a run of ``n_total`` steps; return each one's :class:`Trial`
    and the candidates that failed theirs (with why).

    After one untimed warm-up step each (a kernel's compilation), runs of 1 and ``1 + k``
    steps give the cost per step and per call: the run costs one call plus ``n_total - 1``
    more steps. ``k`` starts at :func:`trial_steps` and doubles, up to 5 % of the run,
    until the ``k`` steps take ``MIN_SPAN_SECONDS``. The timed runs go round-robin over
    the candidates, at least ``TRIAL_MIN_REPEATS`` rounds and up to ``TRIAL_REPEATS`` while
    they stay under ``REPEAT_BELOW_SECONDS``, and each keeps its fastest: a shared
    machine's stalls come in bursts and only ever add time.
    """
    k = trial_steps(n_total)
    failed: list[str] = []
    live: list[Backend] = []
    for backend in candidates:
        try:
            backend.run(sampler, energy, x, RunSpec(n_steps=1),
                        torch.Generator(device=x.device).manual_seed(TRIAL_SEED))
            live.append(backend)
        except BackendUnavailableError as exc:
            failed.append(f"{backend.name} failed its trial: {exc}")
    steps = {b.name: k for b in live}
    longest = max(k, n_total // 20)
    for backend in live:
        # As timeit's autorange: lengthen the trial until its extra steps take long enough
        # to time (MIN_SPAN_SECONDS), within 5 % of the run.
        name = backend.name
        while steps[name] * 2 <= longest:
            span = (_seconds(backend, sampler, energy, x, 1 + steps[name])
                    - _seconds(backend, sampler, energy, x, 1))
            if span >= MIN_SPAN_SECONDS:
                break
            steps[name] *= 2
    rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
    for round_ in range(TRIAL_REPEATS):
        for backend in live:
            name = backend.name
            if round_ >= TRIAL_MIN_REPEATS and rounds[name][-1][1] >= REPEAT_BELOW_SECONDS:
                continue
            rounds[name].append((_seconds(backend, sampler, energy, x, 1),
                                 _seconds(backend, sampler, energy, x, 1 + steps[name])))
    return {name: Trial(steps[name], tuple(r), n_total) for name, r in rounds.items()}, failed


@dataclass(frozen=True)
class Trial:
    """One backend's timed trial: ``(seconds of 1 step, seconds of 1 + k steps)`` per round.

    Attributes:
        k: Extra steps of the longer run.
        rounds: The timings, one pair per round.
        n_total: Steps of the run to predict.
    """

    k: int
    rounds: tuple[tuple[float, float], ...]
    n_total: int

    def _predict(self, one: float, more: float) -> float:
        per_step = max(more - one, 0.0) / self.k
        # A negative slope is noise: then the longer run alone bounds the cost per step.
        if per_step == 0.0:
            per_step = more / (1 + self.k)
        return one + (self.n_total - 1) * per_step

    @property
    def seconds(self) -> float:
        """The run's predicted seconds, from the fastest timings (stalls only add time)."""
        return self._predict(min(r[0] for r in self.rounds), min(r[1] for r in self.rounds))

    @property
    def spread(self) -> tuple[float, float]:
        """The fewest and most seconds any single round predicts."""
        each = [self._predict(*r) for r in self.rounds]
        return min(each), max(each)


def _measure(sampler: Sampler, energy: Energy, x: torch.Tensor, run: RunSpec,
             candidates: list[Backend], rule: Choice, key: str) -> Choice:
    started = time.perf_counter()
    trial_x = x.detach().clone()
    trials, failed = predict_all(candidates, sampler, energy, trial_x, run.n_total)
    seconds = time.perf_counter() - started
    predicted = {name: trial.seconds for name, trial in trials.items()}
    fastest = min(predicted, key=predicted.__getitem__)
    # The trial overrides the rule only when every round agrees by the margin: the rule's
    # pick at its best still MEASURE_MARGIN times slower than the other at its worst.
    rule_name = rule.backend.name
    keep_rule = (rule_name in trials and rule_name != fastest
                 and trials[rule_name].spread[0] <= MEASURE_MARGIN * trials[fastest].spread[1])
    winner = rule_name if keep_rule or rule_name == fastest else fastest
    _CACHE.put(key, winner, predicted)
    times = ", ".join(f"{n} {1e3 * t:.3g} ms" for n, t in sorted(predicted.items(),
                                                                 key=lambda kv: kv[1]))
    reason = f"measured: predicted {times} for this run"
    if keep_rule and winner != fastest:
        reason += f"; within {MEASURE_MARGIN}x, so the rule's {winner} stays"
    if failed:
        reason += "; " + "; ".join(failed)
    return Choice(next(b for b in candidates if b.name == winner), reason,
                  trial_seconds=seconds, predicted=predicted)


class _ChoiceCache:
    """Measured winners by case key, in memory and (with ``EBMCORE_AUTO_CACHE``) on disk."""

    def __init__(self) -> None:
        self._memory: dict[str, str] = {}
        self._loaded_from: str | None = None
        self._lock = threading.Lock()

    def _path(self) -> Path | None:
        value = os.environ.get(ENV_CACHE, "").strip()
        return Path(value).expanduser() if value else None

    def _load(self, path: Path) -> None:
        if self._loaded_from == str(path):
            return
        self._loaded_from = str(path)
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            return  # no file yet, or an unreadable one: measure again and rewrite it
        if isinstance(stored, dict):
            for key, entry in stored.items():
                if isinstance(entry, dict) and isinstance(entry.get("backend"), str):
                    self._memory.setdefault(key, entry["backend"])

    def get(self, key: str) -> str | None:
        """The cached winner of ``key``, or ``None``."""
        with self._lock:
            path = self._path()
            if path is not None:
                self._load(path)
            return self._memory.get(key)

    def put(self, key: str, backend: str, predicted: Mapping[str, float]) -> None:
        """Cache ``backend`` as ``key``'s winner (and write the file, when one is set)."""
        with self._lock:
            self._memory[key] = backend
            path = self._path()
            if path is None:
                return
            try:
                stored: dict[str, Any] = json.loads(path.read_text())
                if not isinstance(stored, dict):
                    stored = {}
            except (OSError, ValueError):
                stored = {}
            stored[key] = {"backend": backend, "predicted_seconds": dict(predicted)}
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(stored, indent=1, sort_keys=True))
            os.replace(tmp, path)

    def clear(self) -> None:
        """Forget every cached winner in memory (the file, if any, stays)."""
        with self._lock:
            self._memory.clear()
            self._loaded_from = None


_CACHE = _ChoiceCache()


def clear_auto_cache() -> None:
    """Forget the measured choices of this process (a file in ``EBMCORE_AUTO_CACHE`` stays)."""
    _CACHE.clear()
