"""Standard posteriors with ground truth, as torch log densities (``benchmarks/posteriors.py``).

Every target is a log density on ``R^D``, the unconstrained space the samplers see, with the
log-Jacobian of the map to the model's own parameters included. ``Target.constrain`` maps a
batch of unconstrained points to the quantities whose reference moments are known, in the
order of ``ref_mean`` / ``ref_sd``: the Inference Gym's ``identity`` sample transformation
(its model parameters, flattened) where the gym has a target of that name.

Targets (``TARGETS``):

- ``eight_schools_nc``: eight schools, non-centred: ``(mu, log tau, z_1..z_8)`` with school
  effects ``theta = mu + tau z``; reported as the gym's ``(avg_effect, log_stddev,
  school_effects)``. ``eight_schools_c``: the gym's own centred form ``(mu, log tau, theta)``.
- ``german_credit``: logistic regression on the numeric German credit data (24 standardised
  features and a bias, last), standard normal prior, 25-D.
- ``sv_sp500_small``: stochastic volatility of the last 100 daily S&P 500 returns (the gym's
  ``StochasticVolatilitySP500Small``), non-centred: ``(a, mu, b, z_0..z_99)`` with persistence
  ``phi = tanh(a / 2)`` (the gym's ``Sigmoid(-1, 1)``), shock scale ``sigma = softplus(b)``
  and log volatilities ``x = mu + h``, ``h_t = phi h_{t-1} + sigma z_t`` (``h_0 = sigma z_0 /
  sqrt(1 - phi^2)``); reported as ``(phi, mu, sigma, x)``. ``sv_sp500`` is the same model on
  all 2,516 returns (2,519-D).
- ``funnel``: Neal's funnel, 10-D, in its own (centred) coordinates.
- ``gaussian_100``: the gym's 100-D ill-conditioned Gaussian (eigenvalues ``1 / Gamma(0.5)``,
  rotated by a random orthogonal matrix, numpy seed 10; condition number 1.3e5).
- ``banana``: the gym's 2-D banana (curvature 0.03).

Reference moments: for ``eight_schools_*``, ``german_credit`` and ``sv_sp500*`` the gym's
ground truth (``inference_gym/targets/ground_truth/*.py``, read from the installed package's
files: no TensorFlow Probability needed), with its standard error of the mean; for the funnel,
the Gaussian and the banana the exact ones. The S&P 500 prices also come from the gym's
package files; the German credit data, which the gym downloads through
``tensorflow_datasets``, ship beside this file (``data/german_credit_numeric.txt``).

:func:`gym_log_prob` evaluates the same density with the gym's own model (TensorFlow
Probability's numpy or JAX substrate, ``tfp-nightly``) and default event-space bijector, plus
the log-Jacobian between the gym's unconstrained space and ours, for the density checks.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ebmcore.energy import Energy

LOG_2PI = math.log(2.0 * math.pi)
DATA = Path(__file__).resolve().parent / "data"
SCHOOL_Y = (28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0)
SCHOOL_SIGMA = (15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0)
BANANA_CURVATURE = 0.03
#: Every target's name, cheap ones first.
TARGETS = ("eight_schools_nc", "eight_schools_c", "german_credit", "sv_sp500_small", "funnel",
           "gaussian_100", "banana", "sv_sp500")


class GymUnavailableError(RuntimeError):
    """The Inference Gym (its package files, or its TFP substrate) cannot be used here."""


@dataclass(frozen=True)
class Target:
    """A posterior on ``R^dim`` with reference moments of ``constrain``'s quantities.

    Attributes:
        name: Short name (``TARGETS``).
        title: What it is, for tables.
        dim: Dimension of the unconstrained space.
        log_prob: ``(B, dim) -> (B,)``: the normalised log density on ``R^dim``, the
            log-Jacobian of the map to the model's parameters included.
        constrain: ``(B, dim) -> (B, K)``: the quantities of ``ref_mean``.
        ref_mean: Reference means ``(K,)``.
        ref_sd: Reference standard deviations ``(K,)``.
        ref_mean_se: Standard error of ``ref_mean`` ``(K,)`` (zeros when exact).
        reference: Where the reference comes from.
        space: The space the samplers see.
        data: Arrays the peers need to rebuild the density (``posteriors_blackjax.py``).
        check_center: Centre of the points the density checks use (``check_points``).
    """

    name: str
    title: str
    dim: int
    log_prob: Callable[[torch.Tensor], torch.Tensor]
    constrain: Callable[[torch.Tensor], torch.Tensor]
    ref_mean: np.ndarray
    ref_sd: np.ndarray
    ref_mean_se: np.ndarray
    reference: str
    space: str
    data: dict[str, np.ndarray] = field(default_factory=dict)
    check_center: np.ndarray | None = None

    def check_points(self, n: int, seed: int) -> np.ndarray:
        """``n`` points ``(n, dim)`` for density checks: ``check_center`` plus U(-2, 2)^dim
        (Stan's initialisation box), so that no term dwarfs the others in float32."""
        rng = np.random.default_rng(seed)
        center = np.zeros(self.dim) if self.check_center is None else self.check_center
        return center + rng.uniform(-2.0, 2.0, size=(n, self.dim))


class PosteriorEnergy(Energy):
    """The energy ``-log p(u)`` of a :class:`Target`; autograd gradient.

    Args:
        target: The posterior.
    """

    def __init__(self, target: Target) -> None:
        super().__init__()
        self.target = target
        self.event_shape = (target.dim,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``-log p(x)`` for a batch ``(B, dim)``."""
        return -self.target.log_prob(x)


def normal_lp(x: torch.Tensor, loc: Any, scale: Any) -> torch.Tensor:
    """Elementwise ``log N(x; loc, scale)``."""
    z = (x - loc) / scale
    log_scale = torch.log(scale) if isinstance(scale, torch.Tensor) else math.log(scale)
    return -0.5 * z * z - log_scale - 0.5 * LOG_2PI


def ar1_filter(c: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """``h_t = phi h_{t-1} + c_t`` along the last axis of ``c`` ``(B, T)``, ``phi`` ``(B,)``.

    A log-depth scan (Hillis-Steele): after the pass with shift ``s``, ``h_t`` sums ``phi^k
    c_{t-k}`` over ``k < 2s``; ``ceil(log2 T)`` passes of ``O(B T)`` tensor work, no loop
    over time and no division by powers of ``phi``.
    """
    h = c
    power = phi.unsqueeze(-1)
    shift = 1
    while shift < c.shape[-1]:
        h = h + power * F.pad(h[..., :-shift], (shift, 0))
        power = power * power
        shift *= 2
    return h


# --------------------------------------------------------------------------- gym files


def gym_dir() -> Path:
    """The installed ``inference_gym`` package folder (no import of the package itself)."""
    spec = importlib.util.find_spec("inference_gym")
    if spec is None or not spec.submodule_search_locations:
        raise GymUnavailableError("inference_gym is not installed (pip install inference-gym): "
                                  "it holds the reference moments and the S&P 500 data")
    return Path(list(spec.submodule_search_locations)[0])


def gym_file(relative: str) -> ModuleType:
    """Load one plain-numpy module of the gym (ground truth, data) by its path."""
    path = gym_dir() / relative
    if not path.is_file():
        raise GymUnavailableError(f"inference_gym has no {relative}")
    spec = importlib.util.spec_from_file_location(f"_gym_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ground_truth(module: str, parts: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    """Concatenate the gym's ``IDENTITY_<PART>_{MEAN, STANDARD_DEVIATION,
    MEAN_STANDARD_ERROR}`` over ``parts`` (``""``: the whole ``IDENTITY_MEAN``...)."""
    gt = gym_file(f"targets/ground_truth/{module}.py")
    out = []
    for stat in ("MEAN", "STANDARD_DEVIATION", "MEAN_STANDARD_ERROR"):
        names = [f"IDENTITY_{p}_{stat}" if p else f"IDENTITY_{stat}" for p in parts]
        out.append(np.concatenate([np.asarray(getattr(gt, n), np.float64).reshape(-1)
                                   for n in names]))
    return tuple(out)


def sp500_returns(num_points: int | None) -> np.ndarray:
    """The gym's mean-adjusted daily S&P 500 returns (``data.sp500_returns``)."""
    prices = gym_file("internal/datasets/sp500_closing_prices.py").CLOSING_PRICES
    returns = np.diff(np.asarray(prices, np.float64))
    returns = returns[-num_points:] if num_points else returns
    return returns - returns.mean()


def german_credit_data() -> tuple[np.ndarray, np.ndarray]:
    """Standardised features ``(1000, 24)`` (zero mean, unit population sd, as the gym) and
    labels ``(1000,)`` in {0, 1} (1: bad credit; the gym's ``1 - tfds label``)."""
    raw = np.loadtxt(DATA / "german_credit_numeric.txt")
    x, cls = raw[:, :-1], raw[:, -1]
    return (x - x.mean(0)) / x.std(0), cls - 1.0


# --------------------------------------------------------------------------- targets


def _const(values: Any, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, np.float64), dtype=dtype)


def _identity(u: torch.Tensor) -> torch.Tensor:
    return u


def eight_schools(centred: bool, dtype: torch.dtype) -> Target:
    """Eight schools; ``centred`` samples the school effects, else their standardised form."""
    y, sigma = _const(SCHOOL_Y, dtype), _const(SCHOOL_SIGMA, dtype)

    def log_prob(u: torch.Tensor) -> torch.Tensor:
        mu, log_tau, rest = u[:, 0], u[:, 1], u[:, 2:]
        lp = normal_lp(mu, 0.0, 10.0) + normal_lp(log_tau, 5.0, 1.0)
        if centred:
            theta = rest
            lp = lp + normal_lp(theta, mu[:, None], log_tau.exp()[:, None]).sum(-1)
        else:
            theta = mu[:, None] + log_tau.exp()[:, None] * rest
            lp = lp + normal_lp(rest, 0.0, 1.0).sum(-1)
        return lp + normal_lp(y, theta, sigma).sum(-1)

    def constrain(u: torch.Tensor) -> torch.Tensor:
        if centred:
            return u
        theta = u[:, :1] + u[:, 1:2].exp() * u[:, 2:]
        return torch.cat([u[:, :2], theta], dim=1)

    mean, sd, se = ground_truth("eight_schools", ("AVG_EFFECT", "LOG_STDDEV", "SCHOOL_EFFECTS"))
    form = "centred" if centred else "non-centred"
    space = ("(mu, log tau, theta): the gym's own space" if centred else
             "(mu, log tau, z), theta = mu + tau z (log-Jacobian 8 log tau)")
    return Target(f"eight_schools_{'c' if centred else 'nc'}", f"Eight schools, {form}", 10,
                  log_prob, constrain if not centred else _identity, mean, sd, se,
                  "Inference Gym ground truth", space)


def german_credit(dtype: torch.dtype) -> Target:
    """Bayesian logistic regression on the numeric German credit data (25-D)."""
    x, labels = german_credit_data()
    xb = _const(np.concatenate([x, np.ones((x.shape[0], 1))], axis=1), dtype)
    y = _const(labels, dtype)

    def log_prob(w: torch.Tensor) -> torch.Tensor:
        logits = w @ xb.T
        return (normal_lp(w, 0.0, 1.0).sum(-1)
                + (y * logits - F.softplus(logits)).sum(-1))

    mean, sd, se = ground_truth("german_credit_numeric_logistic_regression", ("",))
    return Target("german_credit", "German credit, logistic", 25, log_prob, _identity, mean,
                  sd, se, "Inference Gym ground truth", "the weights (the gym's own space)",
                  {"features": x, "labels": labels})


def stochastic_volatility(num_points: int | None, dtype: torch.dtype) -> Target:
    """Non-centred stochastic volatility of S&P 500 returns (``num_points``: the last ones)."""
    returns = sp500_returns(num_points)
    r2 = _const(returns ** 2, dtype)
    steps = returns.shape[0]
    lbeta = math.lgamma(20.0) + math.lgamma(1.5) - math.lgamma(21.5)

    def parts(u: torch.Tensor) -> tuple[torch.Tensor, ...]:
        a, mu, b, z = u[:, 0], u[:, 1], u[:, 2], u[:, 3:]
        phi, sigma = torch.tanh(0.5 * a), F.softplus(b)
        c = sigma[:, None] * z
        c = torch.cat([c[:, :1] * torch.cosh(0.5 * a)[:, None], c[:, 1:]], dim=1)
        return a, mu, b, z, phi, sigma, mu[:, None] + ar1_filter(c, phi)

    def log_prob(u: torch.Tensor) -> torch.Tensor:
        a, mu, b, z, _phi, sigma, x = parts(u)
        # (phi + 1) / 2 = sigmoid(a) ~ Beta(20, 1.5), with d phi / d a folded in.
        lp = 20.0 * F.logsigmoid(a) + 1.5 * F.logsigmoid(-a) - lbeta
        lp = lp - math.log(5.0 * math.pi) - torch.log1p((mu / 5.0) ** 2)      # Cauchy(0, 5)
        lp = (lp - math.log(math.pi) - torch.log1p((sigma / 2.0) ** 2)         # HalfCauchy(0, 2)
              + F.logsigmoid(b))                                               # d sigma / d b
        lp = lp + normal_lp(z, 0.0, 1.0).sum(-1)
        return lp - 0.5 * (r2 * torch.exp(-x) + x + LOG_2PI).sum(-1)

    def constrain(u: torch.Tensor) -> torch.Tensor:
        _a, mu, _b, _z, phi, sigma, x = parts(u)
        return torch.cat([phi[:, None], mu[:, None], sigma[:, None], x], dim=1)

    small = num_points is not None
    module = "stochastic_volatility_sp500" + ("_small" if small else "")
    mean, sd, se = ground_truth(module, ("PERSISTENCE_OF_VOLATILITY", "MEAN_LOG_VOLATILITY",
                                         "WHITE_NOISE_SHOCK_SCALE", "LOG_VOLATILITY"))
    days = f"{steps:,} days"
    return Target("sv_sp500_small" if small else "sv_sp500",
                  f"Stochastic volatility, S&P 500 ({days}), non-centred", steps + 3, log_prob,
                  constrain, mean, sd, se, "Inference Gym ground truth",
                  "(a, mu, b, z): phi = tanh(a/2), sigma = softplus(b), x = mu + AR(1)(sigma z)",
                  {"returns": returns},
                  # Log volatilities near log r^2, where the likelihood is of order one a day.
                  check_center=np.r_[0.0, math.log(float(np.mean(returns ** 2))),
                                     np.zeros(steps + 1)])


def funnel(dtype: torch.dtype, ndims: int = 10) -> Target:
    """Neal's funnel: ``x_0 ~ N(0, 3)``, ``x_i ~ N(0, exp(x_0 / 2))``."""

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        v = x[:, 0]
        rest = x[:, 1:]
        return (normal_lp(v, 0.0, 3.0)
                - 0.5 * ((rest * rest).sum(-1) * torch.exp(-v) + (ndims - 1) * (v + LOG_2PI)))

    sd = np.array([3.0] + [math.exp(2.25)] * (ndims - 1))
    return Target("funnel", f"Neal's funnel, {ndims}-D", ndims, log_prob, _identity,
                  np.zeros(ndims), sd, np.zeros(ndims), "exact", "its own coordinates")


def gaussian_eigen(ndims: int = 100, shape: float = 0.5,
                   seed: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues and eigenvectors of the gym's ``IllConditionedGaussian`` (same numpy draws)."""
    rng = np.random.RandomState(seed=seed & (2 ** 32 - 1))
    eigenvalues = 1.0 / np.sort(rng.gamma(shape=shape, scale=1.0, size=ndims))
    q, r = np.linalg.qr(rng.randn(ndims, ndims))
    q *= np.sign(np.diag(r))
    return eigenvalues, q


def gaussian(dtype: torch.dtype, ndims: int = 100) -> Target:
    """The gym's ill-conditioned Gaussian: zero mean, covariance ``Q diag(lambda) Q^T``."""
    eigenvalues, q = gaussian_eigen(ndims)
    precision_np = (q / eigenvalues) @ q.T
    precision = _const(precision_np, dtype)
    # A Python float: torch.compile would take a numpy scalar for a tensor (from_numpy),
    # whose guard fails under torch.func.grad (the compiled leapfrog of chees).
    log_norm = float(-0.5 * (np.log(eigenvalues).sum() + ndims * LOG_2PI))

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        return -0.5 * torch.linalg.vecdot(x @ precision, x) + log_norm

    sd = np.sqrt(np.diag((q * eigenvalues) @ q.T))
    return Target("gaussian_100", f"Ill-conditioned Gaussian, {ndims}-D", ndims, log_prob,
                  _identity, np.zeros(ndims), sd, np.zeros(ndims), "exact",
                  "its own coordinates",
                  {"precision": precision_np, "log_norm": np.asarray(log_norm)})


def banana(dtype: torch.dtype) -> Target:
    """The gym's banana: ``x_0 ~ N(0, 10)``, ``x_1 ~ N(0.03 (x_0^2 - 100), 1)``."""
    k = BANANA_CURVATURE

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        x0, x1 = x[:, 0], x[:, 1]
        return normal_lp(x0, 0.0, 10.0) + normal_lp(x1 - k * (x0 * x0 - 100.0), 0.0, 1.0)

    sd = np.array([10.0, math.sqrt(1.0 + 2.0 * k * k * 1e4)])
    return Target("banana", "Banana, 2-D", 2, log_prob, _identity, np.zeros(2), sd,
                  np.zeros(2), "exact", "its own coordinates")


_BUILDERS: dict[str, Callable[[torch.dtype], Target]] = {
    "eight_schools_nc": lambda dtype: eight_schools(False, dtype),
    "eight_schools_c": lambda dtype: eight_schools(True, dtype),
    "german_credit": german_credit,
    "sv_sp500_small": lambda dtype: stochastic_volatility(100, dtype),
    "sv_sp500": lambda dtype: stochastic_volatility(None, dtype),
    "funnel": funnel,
    "gaussian_100": gaussian,
    "banana": banana,
}


def make_target(name: str, dtype: torch.dtype = torch.float32) -> Target:
    """Build the target ``name`` (one of ``TARGETS``) with constants of ``dtype``.

    Raises:
        ValueError: ``name`` is not a target.
        GymUnavailableError: The target needs the gym's files and they are not installed.
    """
    if name not in _BUILDERS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}; got {name!r}")
    return _BUILDERS[name](dtype)


# --------------------------------------------------------------------------- gym densities


def _gym_api(substrate: str) -> Any:
    if substrate not in ("numpy", "jax"):
        raise ValueError(f"substrate must be 'numpy' or 'jax', got {substrate!r}")
    try:
        gym = importlib.import_module(f"inference_gym.using_{substrate}")
    except Exception as exc:  # noqa: BLE001 - any import failure means "not here"
        raise GymUnavailableError(f"the Inference Gym's {substrate} substrate cannot be imported "
                                  f"(it needs tfp-nightly): {type(exc).__name__}: {exc}") from exc
    return gym


def _unconstrained_lp(model: Any, value: Any) -> np.ndarray:
    """The gym model's log density in its default event space at ``value`` (a batch).

    The bijector is one bijector, or a dict / tuple of them matching ``value``'s parts; each
    part's log-Jacobian is summed over its event dimensions (all but the batch's).
    """
    bijector = model.default_event_space_bijector
    if isinstance(value, dict):
        keys = list(value)
        pairs = [(bijector[k], value[k]) for k in keys]
    elif isinstance(value, tuple):
        pairs = list(zip(bijector, value, strict=True))
    else:
        pairs = [(bijector, value)]
    constrained = [b.forward(v) for b, v in pairs]
    log_det = sum(np.asarray(b.forward_log_det_jacobian(v, event_ndims=np.ndim(v) - 1))
                  for b, v in pairs)
    if isinstance(value, dict):
        constrained = dict(zip(keys, constrained, strict=True))
    elif isinstance(value, tuple):
        constrained = type(value)(*constrained)
    else:
        constrained = constrained[0]
    return np.asarray(model.unnormalized_log_prob(constrained)) + log_det


def gym_log_prob(name: str, u: np.ndarray, substrate: str = "numpy") -> np.ndarray:
    """``log p(u)`` of target ``name`` at points ``u`` ``(N, D)``, computed by the gym.

    The gym's model density in its default event space (its bijector's log-Jacobian included),
    plus the log-Jacobian between that space and ours (non-centred forms). float32, as the gym.
    ``substrate``: the gym's TensorFlow Probability backend, ``"numpy"`` (about 4 s for every
    target) or ``"jax"`` (the same code through XLA, about 50 s: it compiles each operation);
    they agree to float32 rounding.

    Raises:
        GymUnavailableError: The gym's substrate cannot be imported.
    """
    gym = _gym_api(substrate)
    u = np.asarray(u, np.float32)
    if name.startswith("eight_schools"):
        model = gym.targets.EightSchools()
        mu, log_tau, rest = u[:, 0], u[:, 1], u[:, 2:]
        centred = name.endswith("_c")
        theta = rest if centred else mu[:, None] + np.exp(log_tau)[:, None] * rest
        value = {"avg_effect": mu, "log_stddev": log_tau, "school_effects": theta}
        extra = 0.0 if centred else 8.0 * log_tau
        return _unconstrained_lp(model, value) + extra
    if name == "german_credit":
        x, labels = german_credit_data()
        model = gym.targets.LogisticRegression(x.astype(np.float32), labels.astype(np.int32))
        return _unconstrained_lp(model, u)
    if name.startswith("sv_sp500"):
        small = name.endswith("_small")
        model = (gym.targets.StochasticVolatilitySP500Small if small else
                 gym.targets.StochasticVolatilitySP500)(use_markov_chain=True)
        a, mu, b, z = u[:, 0], u[:, 1], u[:, 2], u[:, 3:].astype(np.float64)
        phi, sigma = np.tanh(0.5 * a.astype(np.float64)), np.logaddexp(0.0, b.astype(np.float64))
        h = np.empty_like(z)
        h[:, 0] = sigma * z[:, 0] / np.sqrt(1.0 - phi ** 2)
        for t in range(1, z.shape[1]):
            h[:, t] = phi * h[:, t - 1] + sigma * z[:, t]
        x = (mu[:, None] + h).astype(np.float32)
        value = type(model.dtype)(a, mu, b, x)
        extra = z.shape[1] * np.log(sigma) - 0.5 * np.log1p(-phi ** 2)
        return _unconstrained_lp(model, value) + extra
    if name == "funnel":
        return _unconstrained_lp(gym.targets.NealsFunnel(), u)
    if name == "gaussian_100":
        return _unconstrained_lp(gym.targets.IllConditionedGaussian(), u)
    if name == "banana":
        return _unconstrained_lp(gym.targets.Banana(), u)
    raise ValueError(f"target must be one of {', '.join(TARGETS)}; got {name!r}")
