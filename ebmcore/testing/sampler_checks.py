"""Conformance check for samplers: stationary moments on a Gaussian target, scaled by MCSE.

:func:`check_sampler` runs many independent chains from an over-dispersed start on a
correlated Gaussian with known mean and covariance, averages each chain over its kept steps,
and compares the across-chain average of those per-chain means with the truth. Because the
chains are independent, the spread of the per-chain averages gives the Monte Carlo standard
error directly, autocorrelation included (no ESS estimator to trust). Every mean entry and
every covariance entry must lie within ``tolerance`` MCSEs of the truth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ebmcore.energy import Energy
from ebmcore.validation import check_int, check_positive


class GaussianTarget(Energy):
    """A Gaussian energy ``E(x) = (x - m)^T P (x - m) / 2`` with closed-form gradient.

    Points may have any event shape whose size is ``D``; they are flattened per chain.

    Args:
        mean: Mean ``(D,)``.
        cov: Covariance ``(D, D)`` (symmetric positive definite).
        event_shape: Shape of one point (default ``(D,)``).
    """

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor,
                 event_shape: Sequence[int] | None = None) -> None:
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
        cov = torch.as_tensor(cov, dtype=torch.float64)
        d = mean.shape[0]
        if cov.shape != (d, d):
            raise ValueError(f"cov must have shape ({d}, {d}), got {tuple(cov.shape)}")
        shape = (d,) if event_shape is None else tuple(int(s) for s in event_shape)
        if math.prod(shape) != d:
            raise ValueError(f"event_shape {shape} does not hold {d} values")
        self.event_shape = shape
        chol = torch.linalg.cholesky(cov)
        self.register_buffer("mean", mean)
        self.register_buffer("cov", cov)
        self.register_buffer("chol", chol)
        precision = torch.cholesky_inverse(chol)
        self.register_buffer("precision", (0.5 * (precision + precision.T)).contiguous())
        self._cast: dict[Any, tuple[torch.Tensor, torch.Tensor]] = {}

    def _params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (x.dtype, x.device)
        if key not in self._cast:
            self._cast[key] = (self.mean.to(x.dtype).to(x.device),
                               self.precision.to(x.dtype).to(x.device).contiguous())
        return self._cast[key]

    def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return energies ``(B,)`` and gradients ``P (x - m)`` in closed form."""
        mean, precision = self._params(x)
        diff = x.reshape(x.shape[0], -1) - mean
        g = diff @ precision
        return 0.5 * torch.linalg.vecdot(diff, g), g.reshape(x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the energies ``(B,)``."""
        mean, precision = self._params(x)
        diff = x.reshape(x.shape[0], -1) - mean
        return 0.5 * torch.linalg.vecdot(diff, diff @ precision)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``P (x - m)`` with the shape of ``x``."""
        mean, precision = self._params(x)
        return ((x.reshape(x.shape[0], -1) - mean) @ precision).reshape(x.shape)

    @property
    def log_z(self) -> float:
        """``log((2 pi)^(D/2) det(cov)^(1/2))``."""
        d = self.mean.shape[0]
        return 0.5 * d * math.log(2 * math.pi) + float(self.chol.diagonal().log().sum())

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` exact samples (float64)."""
        z = torch.randn((n, self.mean.shape[0]), generator=generator, dtype=torch.float64,
                        device=self.mean.device)
        return (self.mean + z @ self.chol.T).reshape(n, *self.event_shape)


def correlated_gaussian(dim: int = 2, *, correlation: float = 0.5, scale_ratio: float = 2.0,
                        event_shape: Sequence[int] | None = None) -> GaussianTarget:
    """Build the check's target: AR(1) correlations and geometrically spread scales.

    Args:
        dim: Dimension ``D``.
        correlation: ``rho`` in ``corr[i, j] = rho ** |i - j|`` (``-1 < rho < 1``).
        scale_ratio: Largest over smallest standard deviation (``1``: equal scales). The
            scales run geometrically from ``scale_ratio ** -0.5`` to ``scale_ratio ** 0.5``.
        event_shape: Shape of one point (default ``(dim,)``).
    """
    check_int("dim", dim, minimum=1)
    if not -1.0 < correlation < 1.0:
        raise ValueError(f"correlation must lie in (-1, 1), got {correlation!r}")
    check_positive("scale_ratio", scale_ratio)
    idx = torch.arange(dim, dtype=torch.float64)
    corr = correlation ** (idx[:, None] - idx[None, :]).abs()
    if dim > 1:
        scales = torch.logspace(-0.5, 0.5, dim, base=scale_ratio, dtype=torch.float64)
    else:
        scales = torch.ones(1, dtype=torch.float64)
    cov = corr * scales[:, None] * scales[None, :]
    mean = torch.linspace(-1.0, 1.0, dim, dtype=torch.float64) if dim > 1 else torch.ones(1)
    return GaussianTarget(mean, cov, event_shape=event_shape)


def moment_zscores(trajectory: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor
                   ) -> dict[str, torch.Tensor]:
    """Compare per-chain time averages with the true mean and covariance.

    Args:
        trajectory: Kept positions ``(T, C, *event)`` of ``C`` independent chains.
        mean: True mean ``(D,)``.
        cov: True covariance ``(D, D)``.

    Returns:
        ``mean_hat``, ``mean_mcse``, ``mean_z`` (each ``(D,)``) and ``cov_hat``, ``cov_mcse``,
        ``cov_z`` (each ``(D, D)``); ``z = (estimate - truth) / MCSE``.
    """
    t, c = trajectory.shape[:2]
    if c < 2:
        raise ValueError(f"need at least 2 independent chains for an MCSE, got {c}")
    x = trajectory.reshape(t, c, -1).to(torch.float64)
    mean = mean.to(x)
    cov = cov.to(x)
    chain_means = x.mean(0)  # (C, D)
    centred = x - mean
    chain_second = torch.einsum("tci,tcj->cij", centred, centred) / t  # (C, D, D)
    out: dict[str, torch.Tensor] = {}
    for label, per_chain, truth in (("mean", chain_means, mean), ("cov", chain_second, cov)):
        est = per_chain.mean(0)
        mcse = per_chain.std(0) / math.sqrt(c)
        out[f"{label}_hat"] = est
        out[f"{label}_mcse"] = mcse
        out[f"{label}_z"] = (est - truth) / mcse
    return out


def check_sampler(sampler: Any, *, dim: int = 2, n_chains: int = 500, n_steps: int = 400,
                  burn_in: int = 400, thin: int = 1, generator: torch.Generator | None = None,
                  correlation: float = 0.5, scale_ratio: float = 2.0, tolerance: float = 5.0,
                  init_scale: float = 3.0, dtype: torch.dtype = torch.float64,
                  event_shape: Sequence[int] | None = None,
                  backend: str = "auto") -> dict[str, Any]:
    """Check that ``sampler`` leaves a correlated Gaussian's mean and covariance invariant.

    Chains start from the target inflated by ``init_scale`` (so a sampler that never moves
    fails), run ``burn_in`` adaptation steps and ``n_steps`` kept steps; each chain's kept
    steps are averaged, and the across-chain spread of those averages is the MCSE.

    Args:
        sampler: An :class:`ebmcore.Sampler` instance.
        dim: Dimension of the target.
        n_chains: Independent chains (at least 50, so that the MCSE itself is reliable).
        n_steps: Kept steps per chain.
        burn_in: Burn-in (adaptation) steps per chain.
        thin: Keep every ``thin``-th step.
        generator: Source of randomness (a fixed seed when ``None``, so the check is
            reproducible).
        correlation: AR(1) correlation of the target (see :func:`correlated_gaussian`).
        scale_ratio: Largest over smallest standard deviation of the target.
        tolerance: How many MCSEs an estimate may be off.
        init_scale: Over-dispersion of the starting points.
        dtype: Floating dtype of the chains.
        event_shape: Event shape of the points (default ``(dim,)``).
        backend: The backend to sample with (the target is a plain torch energy, so
            ``"auto"`` runs the torch backend).

    Returns:
        The z-scores and estimates of :func:`moment_zscores`, plus the sampler's result.

    Raises:
        AssertionError: When an estimate is further than ``tolerance`` MCSEs from the truth,
            or a chain turned non-finite.
    """
    check_int("n_chains", n_chains, minimum=50)
    check_int("n_steps", n_steps, minimum=1)
    check_positive("tolerance", tolerance)
    target = correlated_gaussian(dim, correlation=correlation, scale_ratio=scale_ratio,
                                 event_shape=event_shape)
    if generator is None:
        generator = torch.Generator().manual_seed(20240611)
    device = generator.device
    target = target.to(device)
    z0 = torch.randn((n_chains, dim), generator=generator, dtype=torch.float64, device=device)
    x0 = (target.mean + init_scale * z0 @ target.chol.T).to(dtype).reshape(
        n_chains, *target.event_shape)
    result = sampler.sample(target, x0, n_steps, burn_in=burn_in, thin=thin,
                            generator=generator, return_trajectory=True, backend=backend)
    name = type(sampler).__name__
    bad_chains = result.diagnostics.get("nonfinite_chains")
    if bad_chains is not None and bad_chains.numel():
        raise AssertionError(f"{name}: {bad_chains.numel()} of {n_chains} chains turned "
                             f"non-finite on a {dim}-D Gaussian")
    if result.trajectory is None or result.trajectory.shape[0] < 1:
        raise AssertionError(f"{name}: sample() returned no trajectory")
    report = moment_zscores(result.trajectory, target.mean, target.cov)
    failures = []
    upper = torch.triu(torch.ones(dim, dim, dtype=torch.bool, device=device))
    for label, truth in (("mean", target.mean), ("cov", target.cov)):
        z = report[f"{label}_z"]
        z = torch.where(torch.isnan(z), torch.full_like(z, math.inf), z).abs()
        if label == "cov":
            z = torch.where(upper, z, torch.zeros_like(z))
        for flat_index in torch.nonzero(z.flatten() > tolerance).flatten()[:5].tolist():
            index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat_index),
                                                              z.shape))
            failures.append(
                f"{label}{list(index)}: estimate {float(report[f'{label}_hat'][index]):.4g}, "
                f"truth {float(truth[index]):.4g}, MCSE {float(report[f'{label}_mcse'][index]):.3g}"
                f" (|z| = {float(z[index]):.2f} > {tolerance})")
    if failures:
        raise AssertionError(
            f"{name} does not keep the {dim}-D Gaussian target's moments "
            f"({n_chains} chains, burn_in={burn_in}, n_steps={n_steps}):\n  "
            + "\n  ".join(failures))
    report["result"] = result
    return report


def check_backend(backend: str, sampler: Any, energy: Energy, x0: torch.Tensor, *,
                  n_steps: int = 6, burn_in: int = 2, thin: int = 2,
                  trace_chains: int | None = None) -> dict[str, Any]:
    """Check that a registered backend keeps the sampling contract on one case.

    Runs ``sampler.sample(energy, x0, backend=backend)`` twice with one seed and checks: the
    backend ran and says so; ``x0`` is untouched; samples, trajectory (with the
    ``trace_chains`` stride) and per-chain diagnostics have the documented shapes and dtype;
    the energy trace lists kept steps; and the same seed gives the same bits.

    Args:
        backend: The backend's registered name.
        sampler: An :class:`ebmcore.Sampler` the backend can run.
        energy: The target.
        x0: Initial positions ``(B, *event_shape)``.
        n_steps: Kept steps.
        burn_in: Burn-in steps.
        thin: Trajectory thinning.
        trace_chains: Record at most this many chains (``None``: all).

    Returns:
        The first run's :class:`ebmcore.SampleResult`, under ``"result"``.

    Raises:
        AssertionError: On the first broken promise, naming it.
    """
    check_int("n_steps", n_steps, minimum=1)
    before = x0.clone()
    runs = [sampler.sample(energy, x0, n_steps, burn_in=burn_in, thin=thin, backend=backend,
                           return_trajectory=True, trace_chains=trace_chains,
                           generator=torch.Generator(device=x0.device).manual_seed(11))
            for _ in range(2)]
    first, again = runs
    d = first.diagnostics
    n, stride = x0.shape[0], d.get("trajectory_stride", 1)

    def require(ok: bool, what: str) -> None:
        if not ok:
            raise AssertionError(f"backend {backend!r} with {type(sampler).__name__}: {what}")

    require(d.get("backend") == backend, f"diagnostics['backend'] is {d.get('backend')!r}")
    require(torch.equal(x0, before), "x0 was modified in place")
    require(first.samples.shape == x0.shape and first.samples.dtype == x0.dtype,
            f"samples are {first.samples.dtype} {tuple(first.samples.shape)}, not "
            f"{x0.dtype} {tuple(x0.shape)}")
    n_traced = -(-n // stride)
    want = (n_steps // thin, n_traced, *x0.shape[1:])
    got = None if first.trajectory is None else tuple(first.trajectory.shape)
    require(got == want, f"trajectory shape {got}, not {want}")
    for key in ("acceptance", "divergences"):
        if key in d:
            require(tuple(d[key].shape) == (n,), f"diagnostics[{key!r}] is not per chain")
    steps = d["energy_trace_steps"]
    require(len(d["energy_trace"]) == len(steps) and all(
        0 < int(s) <= n_steps for s in steps), "energy_trace_steps are not kept steps")
    require(bool(((d["nonfinite_chains"] >= 0) & (d["nonfinite_chains"] < n)).all()),
            "nonfinite_chains are not chain indices")
    require(torch.equal(first.samples, again.samples)
            and torch.equal(first.trajectory, again.trajectory),
            "the same seed gave different samples")
    return {"result": first}
