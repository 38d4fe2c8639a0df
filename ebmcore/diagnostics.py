"""MCMC convergence diagnostics: rank-normalised split-R-hat, bulk/tail ESS, MCSE, autocorrelation.

Layout convention: every function takes ``draws`` shaped ``(chains, draws)`` or
``(chains, draws, *dims)`` and returns one value per element of ``dims`` (a 0-d tensor for
``(chains, draws)`` input); all dimensions are handled at once, vectorised in torch. A sampler
trajectory ``(T, B, *event_shape)`` (``SampleResult.trajectory``) has steps first; convert it with
:func:`from_trajectory`, which returns the ``(B, T, *event_shape)`` view these functions expect.

The estimators follow Vehtari, Gelman, Simpson, Carpenter and Buerkner (2021), "Rank-normalization,
folding, and localization: an improved R-hat for assessing convergence of MCMC", exactly as ArviZ
computes them (``arviz.rhat(method="rank")``, ``arviz.ess(method="bulk" | "tail" | "mean")``,
``arviz.mcse(method="mean")``), including the split of each chain into two halves (the middle draw
of an odd-length chain is dropped), average ranks for ties, Blom's offset 3/8, the FFT
autocovariance and Geyer's initial monotone sequence. The tests check agreement to 1e-6. The one
place agreement can break is a Geyer pair sum that is exactly zero in exact arithmetic (possible
for the 0/1 tail indicators or heavily tied draws in short chains): whether the sequence stops
there then depends on round-off, and ArviZ itself answers differently with and without numba.
One deliberate difference: ArviZ returns NaN for R-hat of a single chain, while here a single
chain is split into two halves and compared (as Stan does), since split-R-hat is well defined then.

Inputs may have any real dtype and live on any device; all arithmetic is done in float64 on that
device and every result is a float64 tensor (ESS reaches the total number of draws and R-hat is
read to the third decimal, which float16/32 arithmetic would blur). Draws must be finite and
there must be at least 4 per chain. Degenerate cases follow ArviZ: a dimension whose draws are
all equal has R-hat NaN (0/0), ESS equal to the number of draws used, and MCSE 0.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ebmcore.validation import check_int

__all__ = [
    "autocorrelation",
    "ess_bulk",
    "ess_mean",
    "ess_tail",
    "from_trajectory",
    "integrated_autocorrelation_time",
    "mcse_mean",
    "rhat",
    "summary",
]

MIN_DRAWS = 4
# ArviZ treats an array as constant when its range is below float64's resolution.
_CONSTANT_RANGE = 1e-15
# Blom's (1958) offset for the rank -> normal-score back-transformation.
_BLOM = 3.0 / 8.0


# --------------------------------------------------------------------------- input handling


def from_trajectory(trajectory: Any) -> torch.Tensor:
    """Turn a sampler trajectory ``(T, B, *event_shape)`` into draws ``(B, T, *event_shape)``.

    ``Sampler.sample(..., return_trajectory=True)`` records steps first; the diagnostics here take
    chains first. The result is a view (no copy).

    Args:
        trajectory: The kept positions, steps first, e.g. ``SampleResult.trajectory``.

    Returns:
        The same values with chains first, ready for :func:`rhat`, :func:`summary` and the rest.
    """
    if trajectory is None:
        raise TypeError(
            "trajectory is None: run the sampler with return_trajectory=True to record one"
        )
    if not isinstance(trajectory, torch.Tensor):
        raise TypeError(f"trajectory must be a torch.Tensor, got {type(trajectory).__name__}")
    if trajectory.ndim < 2:
        raise ValueError(
            "trajectory must have shape (T, B, *event_shape) with at least 2 dimensions, "
            f"got shape {tuple(trajectory.shape)}"
        )
    return trajectory.movedim(0, 1)


def _prepare(draws: Any, name: str = "draws") -> tuple[torch.Tensor, tuple[int, ...]]:
    """Validate ``draws`` and return it as float64 ``(chains, n, F)`` plus the ``dims`` shape."""
    if not isinstance(draws, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(draws).__name__}")
    if draws.is_complex():
        raise TypeError(f"{name} must be real-valued, got dtype {draws.dtype}")
    if draws.ndim < 2:
        raise ValueError(
            f"{name} must have shape (chains, draws, *dims) with at least 2 dimensions, got "
            f"shape {tuple(draws.shape)}; for one chain use {name}.unsqueeze(0), and for a "
            "sampler trajectory (T, B, *event_shape) use ebmcore.diagnostics.from_trajectory"
        )
    n_chains, n_draws = draws.shape[0], draws.shape[1]
    if n_chains < 1:
        raise ValueError(f"{name} must hold at least 1 chain, got shape {tuple(draws.shape)}")
    if n_draws < MIN_DRAWS:
        raise ValueError(
            f"{name} must hold at least {MIN_DRAWS} draws per chain (axis 1 of "
            f"(chains, draws, *dims)), got shape {tuple(draws.shape)}"
        )
    if draws.numel() == 0:
        raise ValueError(f"{name} has no values to diagnose, got shape {tuple(draws.shape)}")
    x = draws.detach().to(torch.float64)
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(f"{name} contains {bad} non-finite values (NaN or infinity)")
    dims = tuple(draws.shape[2:])
    return x.reshape(n_chains, n_draws, math.prod(dims)), dims


def _finish(value: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Reshape a per-dimension result ``(F,)`` or ``(..., F)`` back to ``(..., *dims)``."""
    return value.reshape((*value.shape[:-1], *dims))


# --------------------------------------------------------------------------- building blocks


def _split_chains(x: torch.Tensor) -> torch.Tensor:
    """Split each chain into its first and last halves: ``(C, n, F) -> (2C, n // 2, F)``."""
    half = x.shape[1] // 2
    return torch.cat([x[:, :half], x[:, x.shape[1] - half:]], dim=0)


def _pooled_sorted(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort all chains' draws together per dimension: ``(C, n, F) -> (F, C * n)`` and indices.

    Dimensions go first so that each sort runs over contiguous memory (about 3x faster).
    """
    return torch.sort(x.flatten(0, 1).T.contiguous(), dim=1)


def _z_scale(x: torch.Tensor,
             presorted: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Rank-normalise: pooled average ranks, Blom back-transform, standard normal quantiles."""
    values, order = _pooled_sorted(x) if presorted is None else presorted
    size = values.shape[1]
    pos = torch.arange(1, size + 1, dtype=torch.float64, device=x.device).expand_as(values)
    starts_group = torch.ones_like(values, dtype=torch.bool)
    starts_group[:, 1:] = values[:, 1:] != values[:, :-1]
    ends_group = torch.ones_like(starts_group)
    ends_group[:, :-1] = starts_group[:, 1:]
    # Tied draws share the mean of the positions their group occupies (scipy's "average").
    first = torch.cummax(torch.where(starts_group, pos, 0.0), dim=1).values
    last = torch.where(ends_group, pos, float(size + 1)).flip(1)
    last = torch.cummin(last, dim=1).values.flip(1)
    ranks = torch.empty_like(values).scatter_(1, order, (first + last) / 2)
    z = torch.special.ndtri((ranks - _BLOM) / (size - 2 * _BLOM + 1))
    return z.T.reshape(x.shape)


def _sorted_median(values: torch.Tensor) -> torch.Tensor:
    """Median of each row of sorted ``(F, S)`` values (mean of the middle two for even S)."""
    size = values.shape[1]
    if size % 2:
        return values[:, size // 2]
    return (values[:, size // 2 - 1] + values[:, size // 2]) / 2


def _sorted_quantile(values: torch.Tensor, prob: float) -> torch.Tensor:
    """Type-7 (linear interpolation) quantile of each row of sorted ``(F, S)`` values.

    Written as scipy's ``mquantiles(alphap=1, betap=1)``, which ArviZ uses, to share its rounding.
    """
    size = values.shape[1]
    aleph = size * prob + (1.0 - prob)
    k = math.floor(min(max(aleph, 1.0), size - 1.0))
    gamma = min(max(aleph - k, 0.0), 1.0)
    return (1.0 - gamma) * values[:, k - 1] + gamma * values[:, k]


def _fast_fft_len(n: int) -> int:
    """Smallest 5-smooth integer (2^a 3^b 5^c) that is at least ``n``: cheap FFT sizes."""
    best = 1 << max(n - 1, 0).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


def _autocovariance(x: torch.Tensor) -> torch.Tensor:
    """Biased (divide by n) autocovariance of each chain at every lag, via a zero-padded FFT."""
    n = x.shape[1]
    centred = x - x.mean(dim=1, keepdim=True)
    # Padding to >= 2n - 1 makes the circular correlation equal the linear one.
    size = _fast_fft_len(2 * n)
    spectrum = torch.fft.rfft(centred, n=size, dim=1)
    power = spectrum.real.square() + spectrum.imag.square()
    return torch.fft.irfft(power, n=size, dim=1)[:, :n] / n


def _rhat_basic(x: torch.Tensor) -> torch.Tensor:
    """Classic potential scale reduction of ``(C, n, F)`` chains (no splitting)."""
    n = x.shape[1]
    between = n * x.mean(dim=1).var(dim=0, correction=1)
    within = x.var(dim=1, correction=1).mean(dim=0)
    return torch.sqrt((between / within + n - 1) / n)


def _ess_basic(x: torch.Tensor) -> torch.Tensor:
    """Multi-chain ESS of ``(C, n, F)`` chains (Geyer's initial monotone sequence), as ArviZ."""
    n_chains, n = x.shape[0], x.shape[1]
    size = n_chains * n
    constant = (x.amax(dim=(0, 1)) - x.amin(dim=(0, 1))) < _CONSTANT_RANGE

    acov = _autocovariance(x)
    mean_var = acov[:, 0].mean(dim=0) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if n_chains > 1:
        var_plus = var_plus + x.mean(dim=1).var(dim=0, correction=1)
    rho = 1.0 - (mean_var - acov.mean(dim=0)) / var_plus  # (n, F)
    rho[0] = 1.0

    # Pair sums P_j = rho_2j + rho_2j+1 for the pairs ArviZ's loop can reach (j <= n_pairs - 1).
    n_pairs = max((n - 3) // 2, 0) + 1
    even = rho[0: 2 * n_pairs: 2]
    pair_sums = even + rho[1: 2 * n_pairs: 2]
    # The initial positive sequence stops at the first pair whose sum is not positive.
    stops = pair_sums <= 0
    stopped = stops.any(dim=0)
    first_stop = torch.argmax(stops.to(torch.int8), dim=0)
    n_kept = torch.where(stopped, first_stop, torch.full_like(first_stop, n_pairs - 1))
    # The initial monotone sequence replaces each pair sum by the running minimum.
    monotone = torch.cummin(pair_sums, dim=0).values
    lags = torch.arange(n_pairs, device=x.device).unsqueeze(-1)
    kept_sum = torch.where(lags < n_kept, monotone, 0.0).sum(dim=0)
    # The next even autocorrelation adds once: always when the sequence ran out of lags, and
    # after a stop only when it is positive or its pair summed to exactly zero (ArviZ's rule).
    next_even = even.gather(0, n_kept.unsqueeze(0)).squeeze(0)
    next_sum = pair_sums.gather(0, n_kept.unsqueeze(0)).squeeze(0)
    include = ~stopped | (next_sum >= 0) | (next_even > 0)
    tau = -1.0 + 2.0 * kept_sum + torch.where(include, next_even, 0.0)
    tau = torch.clamp(tau, min=1.0 / math.log10(size))
    ess = size / tau
    return torch.where(constant, torch.full_like(ess, float(size)), ess)


def _ess_bulk(x: torch.Tensor) -> torch.Tensor:
    return _ess_basic(_z_scale(_split_chains(x)))


def _ess_tail(x: torch.Tensor, prob: float) -> torch.Tensor:
    values, _ = _pooled_sorted(x)
    low = (x <= _sorted_quantile(values, prob)).to(torch.float64)
    high = (x <= _sorted_quantile(values, 1.0 - prob)).to(torch.float64)
    ess_low, ess_high = _ess_basic(_split_chains(low)), _ess_basic(_split_chains(high))
    return torch.where(ess_high < ess_low, ess_high, ess_low)


def _ess_mean(x: torch.Tensor) -> torch.Tensor:
    return _ess_basic(_split_chains(x))


def _rhat_rank(x: torch.Tensor) -> torch.Tensor:
    split = _split_chains(x)
    presorted = _pooled_sorted(split)
    bulk = _rhat_basic(_z_scale(split, presorted))
    tail = _rhat_basic(_z_scale((split - _sorted_median(presorted[0])).abs()))
    # Python's max(bulk, tail), as ArviZ: a NaN tail (folded draws all equal) keeps the bulk.
    return torch.where(tail > bulk, tail, bulk)


def _pooled_sd(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(0, 1).std(dim=0, correction=1)


def _check_prob(prob: Any) -> float:
    if isinstance(prob, bool) or not isinstance(prob, (int, float)):
        raise TypeError(f"prob must be a number, got {type(prob).__name__}")
    prob = float(prob)
    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob must lie strictly between 0 and 1, got {prob!r}")
    return prob


def _check_max_lag(max_lag: Any, n_draws: int) -> int:
    if max_lag is None:
        return n_draws - 1
    check_int("max_lag", max_lag, minimum=0)
    if max_lag > n_draws - 1:
        raise ValueError(
            f"max_lag must be at most n_draws - 1 = {n_draws - 1}, got {max_lag}"
        )
    return max_lag


# --------------------------------------------------------------------------- public API


def rhat(draws: torch.Tensor) -> torch.Tensor:
    """Rank-normalised split-R-hat: the larger of the bulk and the folded (tail) R-hat.

    Values near 1 indicate that the chains agree; Vehtari et al. (2021) recommend using draws only
    when R-hat < 1.01. Matches ``arviz.rhat(method="rank")`` for two or more chains; a single
    chain is split in two and compared (ArviZ returns NaN there).

    Args:
        draws: Draws ``(chains, draws)`` or ``(chains, draws, *dims)``, at least 4 per chain.

    Returns:
        R-hat per dimension, shape ``dims`` (0-d for ``(chains, draws)`` input), float64.
    """
    x, dims = _prepare(draws)
    return _finish(_rhat_rank(x), dims)


def ess_bulk(draws: torch.Tensor) -> torch.Tensor:
    """Bulk effective sample size: ESS of the rank-normalised split chains.

    Matches ``arviz.ess(method="bulk")``. It tells how many independent draws the chains are
    worth for estimates of the centre of the distribution (mean, median).

    Args:
        draws: Draws ``(chains, draws)`` or ``(chains, draws, *dims)``, at least 4 per chain.

    Returns:
        Bulk ESS per dimension, shape ``dims``, float64.
    """
    x, dims = _prepare(draws)
    return _finish(_ess_bulk(x), dims)


def ess_tail(draws: torch.Tensor, prob: float = 0.05) -> torch.Tensor:
    """Tail effective sample size: the smaller ESS of the ``prob`` and ``1 - prob`` quantiles.

    Each quantile's ESS is the split-chain ESS of the indicator ``draws <= quantile``. Matches
    ``arviz.ess(method="tail", prob=prob)`` (default 5 % and 95 % quantiles).

    Args:
        draws: Draws ``(chains, draws)`` or ``(chains, draws, *dims)``, at least 4 per chain.
        prob: Lower tail probability, strictly between 0 and 1; ``1 - prob`` is the other tail.

    Returns:
        Tail ESS per dimension, shape ``dims``, float64.
    """
    x, dims = _prepare(draws)
    return _finish(_ess_tail(x, _check_prob(prob)), dims)


def ess_mean(draws: torch.Tensor) -> torch.Tensor:
    """Effective sample size for the mean: split-chain ESS of the raw (not rank-normalised) draws.

    Matches ``arviz.ess(method="mean")``; this is the ESS that sets :func:`mcse_mean`.

    Args:
        draws: Draws ``(chains, draws)`` or ``(chains, draws, *dims)``, at least 4 per chain.

    Returns:
        ESS for the mean per dimension, shape ``dims``, float64.
    """
    x, dims = _prepare(draws)
    return _finish(_ess_mean(x), dims)


def mcse_mean(draws: torch.Tensor) -> torch.Tensor:
    """Monte Carlo standard error of the mean: ``sd / sqrt(ess_mean)``.

    ``sd`` is the standard deviation of all draws pooled (divisor ``N - 1``). Matches
    ``arviz.mcse(method="mean")``.

    Args:
        draws: Draws ``(chains, draws)`` or ``(chains, draws, *dims)``, at least 4 per chain.

    Returns:
        MCSE of the mean per dimension, shape ``dims``, float64.
    """
    x, dims = _prepare(draws)
    return _finish(_pooled_sd(x) / _ess_mean(x).sqrt(), dims)


def autocorrelation(draws: torch.Tensor, max_lag: int | None = None) -> torch.Tensor:
    """Autocorrelation of each chain at lags ``0..max_lag``, computed with an FFT.

    Uses the biased autocovariance (divisor ``n``, each chain centred on its own mean) divided
    by the lag-0 value, as ``arviz.autocorr`` does; a constant chain gives NaN.

    Args:
        draws: Draws ``(chains, draws)`` or ``(chains, draws, *dims)``, at least 4 per chain.
        max_lag: Largest lag to return, from 0 to ``n_draws - 1``; ``None`` returns every lag.

    Returns:
        Autocorrelations ``(chains, max_lag + 1, *dims)``, float64; lag 0 is 1.
    """
    x, dims = _prepare(draws)
    max_lag = _check_max_lag(max_lag, x.shape[1])
    acov = _autocovariance(x)[:, : max_lag + 1]
    return _finish(acov / acov[:, :1], dims)


def integrated_autocorrelation_time(draws: torch.Tensor) -> torch.Tensor:
    """Integrated autocorrelation time ``tau = N / ess_mean``, in draws.

    ``N`` is the number of draws the split-chain ESS uses (``chains * 2 * (n_draws // 2)``), so
    ``tau = 1 + 2 * sum_k rho_k`` with the sum truncated by Geyer's initial monotone sequence on
    the multi-chain autocorrelation (Geyer 1992; Vehtari et al. 2021), not Sokal's window. An
    AR(1) chain with coefficient ``phi`` has ``tau = (1 + phi) / (1 - phi)``. ArviZ clamps the
    estimate below at ``1 / log10(N)``, and so does this.

    Args:
        draws: Draws ``(chains, draws)`` or ``(chains, draws, *dims)``, at least 4 per chain.

    Returns:
        Integrated autocorrelation time per dimension, shape ``dims``, float64.
    """
    x, dims = _prepare(draws)
    used = x.shape[0] * 2 * (x.shape[1] // 2)
    return _finish(used / _ess_mean(x), dims)


def summary(draws: torch.Tensor, max_lag: int | None = None) -> dict[str, torch.Tensor]:
    """All diagnostics of ``draws`` at once, validating and converting the input only once.

    Args:
        draws: Draws ``(chains, draws)`` or ``(chains, draws, *dims)``, at least 4 per chain.
        max_lag: Largest lag of the ``"autocorrelation"`` entry (default: every lag).

    Returns:
        A dict of float64 tensors: ``"mean"``, ``"sd"``, ``"mcse_mean"``, ``"ess_bulk"``,
        ``"ess_tail"``, ``"ess_mean"``, ``"rhat"`` and ``"iat"`` (integrated autocorrelation time),
        each shaped ``dims``, and ``"autocorrelation"`` shaped ``(chains, max_lag + 1, *dims)``.
    """
    x, dims = _prepare(draws)
    max_lag = _check_max_lag(max_lag, x.shape[1])
    sd = _pooled_sd(x)
    ess_m = _ess_mean(x)
    acov = _autocovariance(x)[:, : max_lag + 1]
    used = x.shape[0] * 2 * (x.shape[1] // 2)
    values = {
        "mean": x.mean(dim=(0, 1)),
        "sd": sd,
        "mcse_mean": sd / ess_m.sqrt(),
        "ess_bulk": _ess_bulk(x),
        "ess_tail": _ess_tail(x, 0.05),
        "ess_mean": ess_m,
        "rhat": _rhat_rank(x),
        "iat": used / ess_m,
        "autocorrelation": acov / acov[:, :1],
    }
    return {key: _finish(value, dims) for key, value in values.items()}
