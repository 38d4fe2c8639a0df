"""Tests of preconditioned MALA and Langevin (``precondition=True``).

The target is a correlated Gaussian whose covariance eigenvalues span 1e-4 .. 1 (in 2-D and
in an image-like event shape ``(1, 2, 2)``), with its exact Cholesky factor as the
preconditioner. Statistical checks run thousands of independent chains and scale every
tolerance by the Monte Carlo standard error of per-chain averages (autocorrelation
included), with a fixed seed.
"""

from __future__ import annotations

import math

import pytest
import torch
from core_sampler_helpers import independent_chain_z
from ebmcore_energies.gaussian import Gaussian
from ebmcore_samplers.kernels.backend import NumbaBackend
from ebmcore_samplers.langevin import Langevin
from ebmcore_samplers.mala import MALA

from ebmcore.errors import BackendUnavailableError
from ebmcore.sampling import RunSpec
from ebmcore.testing.sampler_checks import GaussianTarget, moment_zscores

SHAPES = [pytest.param((2,), torch.float64, id="2d-float64"),
          pytest.param((1, 2, 2), torch.float32, id="image-1x2x2-float32")]
N_CHAINS = 4000
TOLERANCE = 5.0  # MCSEs


class PreconditionedGaussian(GaussianTarget):
    """A Gaussian target whose ``preconditioner()`` is its exact covariance factor."""

    def preconditioner(self) -> torch.Tensor:
        """The Cholesky factor ``L`` of the covariance, ``(D, D)``."""
        return self.chol


class FixedPreconditioner(GaussianTarget):
    """A Gaussian target whose ``preconditioner()`` returns whatever it was given."""

    def __init__(self, factor: object, dim: int = 2) -> None:
        super().__init__(torch.zeros(dim), torch.eye(dim))
        self.factor = factor

    def preconditioner(self) -> object:
        """The stored factor, right or wrong."""
        return self.factor


def ill_conditioned(event_shape: tuple[int, ...]) -> PreconditionedGaussian:
    """A rotated Gaussian with covariance eigenvalues ``logspace(-4, 0)`` and a non-zero mean."""
    d = math.prod(event_shape)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(0),
                                       dtype=torch.float64))
    cov = (q * torch.logspace(-4, 0, d, dtype=torch.float64)) @ q.T
    mean = torch.linspace(-1.0, 2.0, d, dtype=torch.float64)
    return PreconditionedGaussian(mean, 0.5 * (cov + cov.T), event_shape=event_shape)


def starts(target: GaussianTarget, kind: str, gen: torch.Generator,
           dtype: torch.dtype) -> torch.Tensor:
    """Exact draws, or over-dispersed (x3) and shifted (by 4 sd per whitened axis) ones."""
    if kind == "exact":
        return target.sample(N_CHAINS, gen).to(dtype)
    d = target.mean.shape[0]
    z = 3.0 * torch.randn(N_CHAINS, d, generator=gen, dtype=torch.float64) + 4.0
    return (target.mean + z @ target.chol.T).reshape(N_CHAINS, *target.event_shape).to(dtype)


def assert_moments(trajectory: torch.Tensor, target: GaussianTarget) -> None:
    """Every mean and covariance entry within ``TOLERANCE`` MCSEs (chains independent)."""
    report = moment_zscores(trajectory, target.mean, target.cov)
    for label in ("mean", "cov"):
        z = report[f"{label}_z"].abs()
        assert bool((z <= TOLERANCE).all()), (
            f"{label} off by up to {float(z.nan_to_num(math.inf).max()):.2f} MCSE: estimate "
            f"{report[f'{label}_hat'].tolist()}, truth {getattr(target, label).tolist()}")


def whiten(trajectory: torch.Tensor, target: GaussianTarget) -> torch.Tensor:
    """``L⁻¹ (x - m)`` for every kept point, ``(T, C, D)``."""
    t, c = trajectory.shape[:2]
    centred = trajectory.reshape(t, c, -1).double() - target.mean
    return torch.linalg.solve_triangular(target.chol, centred.unsqueeze(-1),
                                         upper=False).squeeze(-1)


# -- the Metropolis-Hastings ratio -----------------------------------------------------------
@pytest.mark.parametrize("per_chain_step", [False, True])
def test_accept_prob_uses_the_preconditioned_proposal_density(per_chain_step: bool) -> None:
    target = ill_conditioned((2,))
    tril, eps, n = target.chol, 1.5, 32
    x0 = target.sample(n, torch.Generator().manual_seed(2)) + torch.tensor([0.05, -0.02])
    sampler = MALA(eps, adapt_step_size=False, precondition=True)
    state = sampler.init(target, x0)
    assert torch.equal(state.scale_tril, tril)
    eps_c = torch.full((n,), eps, dtype=torch.float64)
    if per_chain_step:  # as after adaptation: every chain its own step size
        eps_c = torch.linspace(0.2, 3.0, n, dtype=torch.float64)
        state.step_size = eps_c.clone()
    _, info = sampler.step(target, state, torch.Generator().manual_seed(5))
    xi = torch.randn(x0.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    e = eps_c[:, None]
    mass = tril @ tril.T
    y = x0 - e * target.grad(x0) @ mass + (2 * e).sqrt() * xi @ tril.T

    def log_q(to: torch.Tensor, frm: torch.Tensor) -> torch.Tensor:
        r = to - frm + e * target.grad(frm) @ mass
        white = torch.linalg.solve_triangular(tril, r.T, upper=False).T
        return -(white**2).sum(1) / (4 * eps_c)

    log_ratio = -target(y) + target(x0) + log_q(x0, y) - log_q(y, x0)
    assert torch.allclose(info["accept_prob"], log_ratio.clamp(max=0).exp())
    accepted = info["accepted"]
    assert accepted.any() and (~accepted).any()
    assert torch.allclose(state.x[accepted], y[accepted])
    assert torch.equal(state.x[~accepted], x0[~accepted])
    # The unpreconditioned density would give other probabilities (the test can tell).
    plain = (-target(y) + target(x0)
             - ((x0 - y + e * target.grad(y)) ** 2).sum(1) / (4 * eps_c)
             + ((y - x0 + e * target.grad(x0)) ** 2).sum(1) / (4 * eps_c))
    assert not torch.allclose(info["accept_prob"], plain.clamp(max=0).exp())


def test_identity_preconditioner_is_plain_mala() -> None:
    target = FixedPreconditioner(torch.eye(2, dtype=torch.float64))
    x0 = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    runs = [MALA(0.6, precondition=flag).sample(target, x0, 20, burn_in=10,
                                                generator=torch.Generator().manual_seed(1))
            for flag in (False, True)]
    assert torch.allclose(runs[0].samples, runs[1].samples)
    assert torch.allclose(runs[0].diagnostics["step_size"], runs[1].diagnostics["step_size"])


# -- stationary moments ----------------------------------------------------------------------
@pytest.mark.parametrize(("start", "adapt"), [("exact", False), ("off", False), ("off", True)])
@pytest.mark.parametrize(("shape", "dtype"), SHAPES)
def test_preconditioned_mala_recovers_mean_and_covariance(
        shape: tuple[int, ...], dtype: torch.dtype, start: str, adapt: bool) -> None:
    target = ill_conditioned(shape)
    gen = torch.Generator().manual_seed(11)
    x0 = starts(target, start, gen, dtype)
    burn_in = 0 if start == "exact" else 150
    r = MALA(0.5, adapt_step_size=adapt, precondition=True).sample(
        target, x0, 200, burn_in=burn_in, generator=gen, return_trajectory=True)
    assert r.diagnostics["backend"] == "torch"
    assert r.diagnostics["nonfinite_chains"].numel() == 0
    assert float(r.diagnostics["acceptance"].mean()) > 0.5
    if adapt:  # every chain tuned its own step, to the order of the whitened scale
        steps = r.diagnostics["step_size"]
        assert steps.shape == (N_CHAINS,) and 0.3 < float(steps.median()) < 3.0
    assert_moments(r.trajectory, target)


@pytest.mark.parametrize(("shape", "dtype"), SHAPES)
def test_the_moment_check_catches_a_biased_sampler(shape: tuple[int, ...],
                                                   dtype: torch.dtype) -> None:
    # Preconditioned ULA at the same step has whitened variance 1 / (1 - 0.25): rejected.
    target = ill_conditioned(shape)
    gen = torch.Generator().manual_seed(11)
    r = Langevin(0.5, precondition=True).sample(
        target, starts(target, "exact", gen, dtype), 200, burn_in=50, generator=gen,
        return_trajectory=True)
    with pytest.raises(AssertionError, match="cov off"):
        assert_moments(r.trajectory, target)


@pytest.mark.parametrize(("shape", "dtype"), SHAPES)
def test_without_preconditioning_the_same_step_is_almost_always_rejected(
        shape: tuple[int, ...], dtype: torch.dtype) -> None:
    target = ill_conditioned(shape)
    x0 = starts(target, "exact", torch.Generator().manual_seed(3), dtype)[:500]
    runs = {flag: MALA(0.5, adapt_step_size=False, precondition=flag).sample(
        target, x0, 50, generator=torch.Generator().manual_seed(4)) for flag in (False, True)}
    assert float(runs[False].diagnostics["acceptance"].mean()) < 1e-3
    assert float(runs[True].diagnostics["acceptance"].mean()) > 0.7
    # Adaptation cannot rescue plain MALA: it shrinks the step to the narrowest direction.
    tuned = MALA(0.5).sample(target, x0, 10, burn_in=150,
                             generator=torch.Generator().manual_seed(4))
    assert float(tuned.diagnostics["step_size"].median()) < 1e-2


@pytest.mark.parametrize(("shape", "dtype"), SHAPES)
def test_preconditioned_langevin_has_the_exact_ula_bias(shape: tuple[int, ...],
                                                        dtype: torch.dtype) -> None:
    # In whitened coordinates z = L⁻¹ (x - m) the step is z' = (1 - eps) z + sqrt(2 eps) xi,
    # whose stationary law is N(0, I / (1 - eps / 2)) in every direction, however badly
    # the target is scaled.
    eps = 0.05
    target = ill_conditioned(shape)
    gen = torch.Generator().manual_seed(7)
    r = Langevin(eps, precondition=True).sample(
        target, starts(target, "exact", gen, dtype), 500, burn_in=100, thin=2,
        generator=gen, return_trajectory=True)
    white = whiten(r.trajectory, target)  # (T, C, D)
    closed_form = 1.0 / (1.0 - eps / 2.0)
    d = white.shape[-1]
    second = white[..., :, None] * white[..., None, :]  # (T, C, D, D)
    z = independent_chain_z(second, closed_form * torch.eye(d, dtype=torch.float64))
    assert bool((z.abs() <= TOLERANCE).all()), f"whitened covariance off: z = {z.tolist()}"
    pooled = white.square().mean(-1)  # (T, C)
    assert abs(float(independent_chain_z(pooled, closed_form))) <= TOLERANCE
    # The test has the power to see the bias: the exact variance 1 is rejected.
    assert abs(float(independent_chain_z(pooled, 1.0))) > TOLERANCE


# -- errors, backends and state dicts -----------------------------------------------------------
SAMPLERS = [pytest.param(lambda: MALA(0.5, precondition=True), id="mala"),
            pytest.param(lambda: Langevin(0.05, precondition=True), id="langevin")]


@pytest.mark.parametrize("make", SAMPLERS)
def test_an_energy_without_preconditioner_is_refused(make) -> None:
    plain = GaussianTarget(torch.zeros(2), torch.eye(2))
    with pytest.raises(ValueError, match="precondition"):
        make().sample(plain, torch.zeros(4, 2, dtype=torch.float64), 3)
    with pytest.raises(ValueError, match="precondition"):  # a model without a Gaussian base
        make().init(FixedPreconditioner(None), torch.zeros(4, 2, dtype=torch.float64))


@pytest.mark.parametrize("factor", [torch.eye(3, dtype=torch.float64),
                                    torch.ones(2, dtype=torch.float64), [[1.0, 0.0], [0.0, 1.0]],
                                    torch.tensor([[1.0, 0.0], [math.nan, 1.0]])])
@pytest.mark.parametrize("make", SAMPLERS)
def test_a_wrong_preconditioner_is_refused(make, factor: object) -> None:
    with pytest.raises(ValueError, match="preconditioner"):
        make().init(FixedPreconditioner(factor), torch.zeros(4, 2, dtype=torch.float64))


@pytest.mark.parametrize("cls", [MALA, Langevin])
def test_the_flag_must_be_a_bool(cls: type) -> None:
    with pytest.raises(TypeError, match="precondition"):
        cls(0.1, precondition=1)


class PreconditionedFusable(Gaussian):
    """The built-in Gaussian (which has a numba face) with its factor as preconditioner."""

    def preconditioner(self) -> torch.Tensor:
        """The covariance's Cholesky factor."""
        return self.scale_tril


@pytest.mark.parametrize("cls", [MALA, Langevin])
def test_preconditioned_chains_run_on_torch_only(cls: type) -> None:
    energy = PreconditionedFusable(mean=[0.0, 1.0], cov=[[1.0, 0.3], [0.3, 0.5]])
    x0 = torch.zeros(8, 2, dtype=torch.float64)
    # Control: unpreconditioned, this energy and batch would go to the fused kernel.
    assert NumbaBackend().supports(cls(0.1), energy, x0, RunSpec(n_steps=3)) is None
    assert cls(0.1).choose_backend(energy, x0, 3).backend.name == "numba"
    sampler = cls(0.1, precondition=True)
    for backend in ("numba", "cuda"):
        with pytest.raises(BackendUnavailableError, match="precondition=True"):
            sampler.sample(energy, x0, 3, backend=backend)
    r = sampler.sample(energy, x0, 3, backend="auto", generator=torch.Generator().manual_seed(0))
    assert r.diagnostics["backend"] == "torch"
    assert torch.equal(r.state.scale_tril, energy.scale_tril)


@pytest.mark.parametrize(("cls", "kwargs"), [(MALA, {"adapt_step_size": False}),
                                             (Langevin, {"noise_scale": 0.5})])
def test_state_dict_round_trip_keeps_the_flag(cls: type, kwargs: dict) -> None:
    s = cls(0.2, precondition=True, **kwargs)
    t = cls(1.0)
    t.load_state_dict(s.state_dict())
    assert t.precondition is True and t.state_dict() == s.state_dict()
    old = cls(0.2, **kwargs).state_dict()
    del old["precondition"]  # a checkpoint from before the flag
    t.load_state_dict(old)
    assert t.precondition is False
