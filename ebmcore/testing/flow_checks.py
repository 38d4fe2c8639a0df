"""Conformance checks for the simulation-free kinds: interpolants, couplings, integrators.

Plugin authors call these from their own tests::

    from ebmcore.testing import check_coupling, check_integrator, check_interpolant

    def test_my_integrator():
        check_integrator(MyIntegrator(steps=200), order=2)

Every failure raises an ``AssertionError`` that names the component and the property that
broke, with the numbers.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch

from ebmcore.coupling import Coupling
from ebmcore.errors import IntegrationError
from ebmcore.integrator import FixedStepIntegrator, IntegrationResult, Integrator
from ebmcore.interpolant import Interpolant

#: Allowed deviation of a Monte Carlo estimate from the truth, in standard errors.
MCSE_TOLERANCE = 5.0
#: Chains of the Ornstein–Uhlenbeck moment check of a stochastic integrator.
N_SDE_CHAINS = 20_000

__all__ = ["MCSE_TOLERANCE", "N_SDE_CHAINS", "check_coupling", "check_integrator",
           "check_interpolant"]


def _fail(component: Any, what: str) -> AssertionError:
    return AssertionError(f"{type(component).__name__}: {what}")


def _close(component: Any, what: str, got: torch.Tensor, want: torch.Tensor, *,
           rtol: float, atol: float) -> None:
    if got.shape != want.shape:
        raise _fail(component, f"{what}: shape {tuple(got.shape)}, expected {tuple(want.shape)}")
    if not torch.allclose(got, want, rtol=rtol, atol=atol):
        worst = (got - want).abs().max().item()
        raise _fail(component, f"{what}: off by up to {worst:.3g} (rtol={rtol}, atol={atol})")


# -- interpolants --------------------------------------------------------------------------

def check_interpolant(interpolant: Interpolant, *, event_shape: Sequence[int] = (3,),
                      batch_size: int = 16, interior: tuple[float, float] = (0.05, 0.95),
                      noise_end_tolerance: float = 0.01, seed: int = 0) -> None:
    """Check that ``interpolant`` honours the :class:`ebmcore.interpolant.Interpolant` contract.

    Checks: ``coefficients`` returns four tensors shaped like ``t`` (a batch and a 0-d time),
    finite inside ``interior``; the derivatives match autograd of ``alpha`` and ``sigma``
    (float64); the data end is exact (``alpha(1) = 1``, ``sigma(1) = 0``) and the noise end
    close (``|alpha(0)|`` and ``|sigma(0) - 1|`` within ``noise_end_tolerance``); ``sample``
    returns ``x_t`` and ``u_t = d x_t / dt`` (against autograd) with ``x0``'s shape and dtype
    in float32 and float64, leaving its inputs unchanged; and the conversions agree with the
    path (the conditional velocity of a pair converts to its noise ``x0`` and to the score
    ``-x0 / sigma``) and round-trip (velocity -> noise -> velocity, velocity -> score ->
    velocity).
    """
    if not isinstance(interpolant, Interpolant):
        raise _fail(interpolant, "is not an ebmcore.interpolant.Interpolant")
    gen = torch.Generator().manual_seed(seed)
    shape = (batch_size, *event_shape)
    t = torch.linspace(*interior, batch_size, dtype=torch.float64)
    _check_coefficients(interpolant, t)
    ends = interpolant.coefficients(torch.tensor([0.0, 1.0], dtype=torch.float64))
    alpha, sigma = ends[0], ends[1]
    if abs(alpha[1].item() - 1.0) > 1e-6 or abs(sigma[1].item()) > 1e-6:
        raise _fail(interpolant, f"t = 1 must be the data: alpha(1) = {alpha[1].item():.6g}, "
                                 f"sigma(1) = {sigma[1].item():.6g}, expected 1 and 0")
    if abs(alpha[0].item()) > noise_end_tolerance or \
            abs(sigma[0].item() - 1.0) > noise_end_tolerance:
        raise _fail(interpolant, f"t = 0 must be (close to) noise: alpha(0) = "
                                 f"{alpha[0].item():.6g}, sigma(0) = {sigma[0].item():.6g}")
    for dtype in (torch.float32, torch.float64):
        x0 = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
        x1 = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
        _check_sample(interpolant, x0, x1, t.to(dtype))
    x0 = torch.randn(shape, generator=gen, dtype=torch.float64)
    x1 = torch.randn(shape, generator=gen, dtype=torch.float64)
    _check_conversions(interpolant, x0, x1, t)


def _check_coefficients(interpolant: Interpolant, t: torch.Tensor) -> None:
    for times in (t, t[-1]):
        coefficients = interpolant.coefficients(times)
        if not isinstance(coefficients, tuple) or len(coefficients) != 4:
            raise _fail(interpolant, "coefficients(t) must return a tuple of four tensors")
        for label, c in zip(("alpha", "sigma", "d_alpha", "d_sigma"), coefficients, strict=True):
            if not isinstance(c, torch.Tensor) or c.shape != times.shape:
                got = tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
                raise _fail(interpolant, f"{label} has shape {got}; expected t's shape "
                                         f"{tuple(times.shape)}")
            if not bool(torch.isfinite(c).all()):
                raise _fail(interpolant, f"{label} is not finite inside (0, 1)")
    leaf = t.clone().requires_grad_(True)
    alpha, sigma, d_alpha, d_sigma = interpolant.coefficients(leaf)
    for label, value, derivative in (("d_alpha", alpha, d_alpha), ("d_sigma", sigma, d_sigma)):
        (auto,) = torch.autograd.grad(value.sum(), leaf, retain_graph=True)
        _close(interpolant, f"{label} against autograd", derivative.detach(), auto,
               rtol=1e-6, atol=1e-8)


def _check_sample(interpolant: Interpolant, x0: torch.Tensor, x1: torch.Tensor,
                  t: torch.Tensor) -> None:
    before = (x0.clone(), x1.clone())
    xt, ut = interpolant.sample(x0, x1, t)
    if not torch.equal(x0, before[0]) or not torch.equal(x1, before[1]):
        raise _fail(interpolant, "sample() modified its inputs")
    for label, out in (("x_t", xt), ("u_t", ut)):
        if out.shape != x0.shape or out.dtype != x0.dtype:
            raise _fail(interpolant, f"sample() returned {label} of shape {tuple(out.shape)} "
                                     f"and {out.dtype}; expected {tuple(x0.shape)}, {x0.dtype}")
    if x0.dtype != torch.float64:
        return
    leaf = t.clone().requires_grad_(True)
    xt, ut = interpolant.sample(x0, x1, leaf)
    (auto,) = torch.autograd.grad(xt.sum(), leaf)
    flat = ut.detach().reshape(ut.shape[0], -1).sum(dim=1)
    _close(interpolant, "u_t against d x_t / dt (autograd)", flat, auto, rtol=1e-6, atol=1e-8)


def _check_conversions(interpolant: Interpolant, x0: torch.Tensor, x1: torch.Tensor,
                       t: torch.Tensor) -> None:
    xt, ut = interpolant.sample(x0, x1, t)
    sigma = interpolant.coefficients(t)[1].reshape(-1, *([1] * (x0.dim() - 1)))
    tol = {"rtol": 1e-6, "atol": 1e-7}
    _close(interpolant, "velocity_to_noise of a pair's velocity (should give its x0)",
           interpolant.velocity_to_noise(ut, xt, t), x0, **tol)
    _close(interpolant, "velocity_to_score of a pair's velocity (should give -x0 / sigma)",
           interpolant.velocity_to_score(ut, xt, t), -x0 / sigma, **tol)
    v = torch.randn_like(x0)
    _close(interpolant, "velocity -> noise -> velocity round trip",
           interpolant.noise_to_velocity(interpolant.velocity_to_noise(v, xt, t), xt, t), v,
           **tol)
    _close(interpolant, "velocity -> score -> velocity round trip",
           interpolant.score_to_velocity(interpolant.velocity_to_score(v, xt, t), xt, t), v,
           **tol)


# -- couplings -----------------------------------------------------------------------------

def check_coupling(coupling: Coupling, *, event_shape: Sequence[int] = (2,),
                   batch_size: int = 16, rows_from_inputs: bool = True, seed: int = 0) -> None:
    """Check that ``coupling`` honours the :class:`ebmcore.coupling.Coupling` contract.

    Checks: ``pair`` returns two tensors with the inputs' shape, dtype and device (for
    ``batch_size`` and for one row), leaves its inputs and the global random state alone,
    repeats under the same generator seed, and refuses batches of different shapes with a
    ``ValueError``. With ``rows_from_inputs`` (couplings that choose pairs rather than make
    new points), every returned row is a row of the matching input.
    """
    if not isinstance(coupling, Coupling):
        raise _fail(coupling, "is not an ebmcore.coupling.Coupling")
    gen = torch.Generator().manual_seed(seed)
    for batch in (batch_size, 1):
        x0 = torch.randn(batch, *event_shape, generator=gen)
        x1 = torch.randn(batch, *event_shape, generator=gen) + 3.0
        before, state = (x0.clone(), x1.clone()), torch.get_rng_state()
        first = coupling.pair(x0, x1, generator=torch.Generator().manual_seed(seed))
        if not torch.equal(torch.get_rng_state(), state):
            raise _fail(coupling, "pair() drew from the global random stream; draw from the "
                                  "generator passed in")
        if not torch.equal(x0, before[0]) or not torch.equal(x1, before[1]):
            raise _fail(coupling, "pair() modified its inputs")
        if not isinstance(first, tuple) or len(first) != 2:
            raise _fail(coupling, "pair() must return a tuple (x0, x1)")
        for label, out, given in (("x0", first[0], x0), ("x1", first[1], x1)):
            if out.shape != given.shape or out.dtype != given.dtype \
                    or out.device != given.device:
                raise _fail(coupling, f"pair() returned {label} of shape {tuple(out.shape)}, "
                                      f"{out.dtype}; expected {tuple(given.shape)}, {given.dtype}")
            if rows_from_inputs and not _rows_of(out, given):
                raise _fail(coupling, f"pair() returned a {label} row that is not a row of "
                                      f"the input {label}")
        again = coupling.pair(x0, x1, generator=torch.Generator().manual_seed(seed))
        if not (torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])):
            raise _fail(coupling, "pair() differs between two runs with the same generator seed")
    try:
        coupling.pair(torch.zeros(4, *event_shape), torch.zeros(5, *event_shape))
    except ValueError:
        pass
    else:
        raise _fail(coupling, "pair() accepted batches of different shapes; raise ValueError")


def _rows_of(out: torch.Tensor, given: torch.Tensor) -> bool:
    """Whether every row of ``out`` equals some row of ``given``."""
    a, b = out.reshape(out.shape[0], -1), given.reshape(given.shape[0], -1)
    return bool((a[:, None, :] == b[None, :, :]).all(dim=2).any(dim=1).all())


# -- integrators ---------------------------------------------------------------------------

#: The rotation field of the ODE checks: dx/dt = A x, solved by x(t) = exp(A t) x(0).
_ROTATION = torch.tensor([[-0.5, -1.0], [1.0, -0.5]], dtype=torch.float64)


def check_integrator(integrator: Integrator, *, tolerance: float = 1e-2,
                     order: float | None = None, seed: int = 0) -> None:
    """Check that ``integrator`` honours the :class:`ebmcore.integrator.Integrator` contract.

    An ODE integrator solves the damped rotation ``dx/dt = A x`` (known solution
    ``exp(A t) x0``) forwards and backwards to relative error ``tolerance``, returns an
    :class:`~ebmcore.integrator.IntegrationResult` whose ``nfe`` is the number of field calls,
    passes ``t`` as a 0-d tensor of the state's dtype and device, keeps float32 states
    float32, refuses a ``diffusion``, and raises :class:`~ebmcore.errors.IntegrationError`
    when the field turns NaN. With ``order`` (fixed-step integrators), halving the step must
    cut the error by ``2 ** order`` (within a factor ``2 ** 0.5``). A stochastic integrator
    solves an Ornstein–Uhlenbeck process over ``N_SDE_CHAINS`` chains and must match its mean
    and variance within ``MCSE_TOLERANCE`` Monte Carlo standard errors, repeat under one
    generator seed, leave the global random stream alone and refuse a run without diffusion.
    """
    if not isinstance(integrator, Integrator):
        raise _fail(integrator, "is not an ebmcore.integrator.Integrator")
    _check_nan_field(integrator)
    if integrator.stochastic:
        _check_sde(integrator, seed)
        return
    try:
        integrator.integrate(lambda x, t: -x, torch.ones(3), 0.0, 1.0, diffusion=lambda t: 1.0)
    except ValueError:
        pass
    else:
        raise _fail(integrator, "an ODE integrator accepted diffusion=; raise ValueError")
    x0 = torch.randn(8, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    for t0, t1 in ((0.0, 1.0), (1.0, 0.0)):
        error = _rotation_error(integrator, x0, t0, t1)
        if error > tolerance:
            raise _fail(integrator, f"relative error {error:.3g} from t = {t0} to {t1} on "
                                    f"dx/dt = A x exceeds {tolerance}")
    result = integrator.integrate(lambda x, t: -x, torch.ones(4, 2), 0.0, 1.0)
    if result.x.dtype != torch.float32:
        raise _fail(integrator, f"a float32 state came back as {result.x.dtype}")
    if order is not None:
        _check_order(integrator, x0, order)


def _rotation_error(integrator: Integrator, x0: torch.Tensor, t0: float, t1: float) -> float:
    calls: list[torch.Tensor] = []

    def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(t)
        return x @ _ROTATION.T

    result = integrator.integrate(field, x0, t0, t1)
    if not isinstance(result, IntegrationResult):
        raise _fail(integrator, f"integrate() returned {type(result).__name__}, expected "
                                f"IntegrationResult")
    if result.nfe != len(calls):
        raise _fail(integrator, f"reported nfe = {result.nfe} but the field was called "
                                f"{len(calls)} times")
    if not isinstance(result.steps, int) or result.steps < 1:
        raise _fail(integrator, f"reported steps = {result.steps!r}; expected a positive int")
    bad = [t for t in calls if not isinstance(t, torch.Tensor) or t.dim() != 0
           or t.dtype != x0.dtype or t.device != x0.device]
    if bad:
        raise _fail(integrator, f"passed t = {bad[0]!r} to the field; expected a 0-d tensor of "
                                f"the state's dtype and device")
    exact = x0 @ torch.linalg.matrix_exp(_ROTATION * (t1 - t0)).T
    return ((result.x - exact).norm() / exact.norm()).item()


def _check_order(integrator: Integrator, x0: torch.Tensor, order: float) -> None:
    if not isinstance(integrator, FixedStepIntegrator):
        raise _fail(integrator, "order= applies to fixed-step integrators only")
    errors = []
    for steps in (8, 16, 32):
        scaled = copy.copy(integrator)
        scaled.steps = steps
        errors.append(_rotation_error(scaled, x0, 0.0, 1.0))
    for coarse, fine in zip(errors, errors[1:], strict=False):
        observed = math.log2(coarse / fine)
        if abs(observed - order) > 0.5:
            raise _fail(integrator, f"observed order {observed:.2f} when halving the step "
                                    f"(errors {errors}); expected {order}")


def _check_nan_field(integrator: Integrator) -> None:
    diffusion = (lambda t: 0.5) if integrator.stochastic else None
    try:
        integrator.integrate(lambda x, t: x * float("nan"), torch.ones(4, 2), 0.0, 1.0,
                             generator=torch.Generator().manual_seed(0), diffusion=diffusion)
    except IntegrationError:
        return
    raise _fail(integrator, "a field returning NaN did not raise ebmcore.errors.IntegrationError")


def _check_sde(integrator: Integrator, seed: int) -> None:
    """Ornstein–Uhlenbeck ``dx = -theta x dt + g dW`` from ``x = m0``: mean ``m0 e^{-theta t}``,
    variance ``g^2 (1 - e^{-2 theta t}) / (2 theta)``."""
    theta, g, m0, t1 = 1.0, 0.8, 2.0, 1.0
    try:
        integrator.integrate(lambda x, t: -x, torch.ones(3), 0.0, 1.0)
    except ValueError:
        pass
    else:
        raise _fail(integrator, "a stochastic integrator ran without diffusion=; raise "
                                "ValueError")
    x = torch.full((N_SDE_CHAINS,), m0, dtype=torch.float64)
    state = torch.get_rng_state()
    runs = [integrator.integrate(lambda x, t: -theta * x, x, 0.0, t1, diffusion=lambda t: g,
                                 generator=torch.Generator().manual_seed(seed)).x
            for _ in range(2)]
    if not torch.equal(torch.get_rng_state(), state):
        raise _fail(integrator, "drew from the global random stream; use the generator")
    if not torch.equal(runs[0], runs[1]):
        raise _fail(integrator, "differs between two runs with the same generator seed")
    end = runs[0]
    mean = m0 * math.exp(-theta * t1)
    var = g * g * (1.0 - math.exp(-2.0 * theta * t1)) / (2.0 * theta)
    n = end.numel()
    mean_se = math.sqrt(var / n)
    var_se = var * math.sqrt(2.0 / (n - 1))  # Gaussian end point
    for label, got, want, se in (("mean", end.mean().item(), mean, mean_se),
                                 ("variance", end.var().item(), var, var_se)):
        if abs(got - want) > MCSE_TOLERANCE * se:
            raise _fail(integrator, f"Ornstein-Uhlenbeck {label} {got:.5g}, expected "
                                    f"{want:.5g} (off by {abs(got - want) / se:.1f} standard "
                                    f"errors)")
