"""Gradient descent and Nesterov descent on quadratics, where every step is known exactly.

On ``E = (x - c)^T A (x - c) / 2`` with ``A = diag(lambda)``, gradient descent multiplies the
error along eigenvalue ``lambda`` by ``1 - eta lambda`` each step. Nesterov's step is linear
in ``(e, v)``, the error and the momentum:

    v' = mu v - eta lambda (e + mu v),      e' = e + v',

so after ``k`` steps ``(e, v)`` is the ``k``-th power of that 2 x 2 matrix applied to
``(e0, 0)``; with ``eta = 1 / L`` and ``mu = (sqrt(kappa) - 1) / (sqrt(kappa) + 1)`` the
slowest direction contracts by ``1 - 1 / sqrt(kappa)`` per step.
"""

from __future__ import annotations

import math

import pytest
import torch
from ebmcore_samplers.descent import GradientDescent, Nesterov

import ebmcore
from ebmcore.field import EnergyField

CENTRE = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
EIGENVALUES = torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64)


def quadratic() -> ebmcore.Energy:
    """``(x - c)^T diag(lambda) (x - c) / 2`` as the built-in Gaussian energy."""
    return ebmcore.create("energy", "gaussian", mean=CENTRE,
                          precision=torch.diag(EIGENVALUES))


def start(n: int = 5) -> torch.Tensor:
    """Seeded starting points ``(n, 3)``."""
    return CENTRE + torch.randn(n, 3, generator=torch.Generator().manual_seed(0),
                                dtype=torch.float64)


def test_registered_by_name() -> None:
    assert isinstance(ebmcore.create("sampler", "gradient_descent", step_size=0.1),
                      GradientDescent)
    assert isinstance(ebmcore.create("sampler", "gd", step_size=0.1), GradientDescent)
    nesterov = ebmcore.create("sampler", "nesterov", step_size=0.1)
    assert isinstance(nesterov, Nesterov) and nesterov.momentum == 0.9


def test_gradient_descent_contracts_each_direction_at_its_rate() -> None:
    eta, steps = 0.015, 40
    x0 = start()
    result = GradientDescent(eta).sample(quadratic(), x0, steps)
    expected = CENTRE + (x0 - CENTRE) * (1 - eta * EIGENVALUES) ** steps
    torch.testing.assert_close(result.samples, expected, rtol=1e-10, atol=1e-12)
    assert "acceptance" not in result.diagnostics
    # the last step's gradient, per chain: at step k - 1 the error is (1 - eta lambda)^(k-1)
    last = (x0 - CENTRE) * (1 - eta * EIGENVALUES) ** (steps - 1) * EIGENVALUES
    torch.testing.assert_close(result.diagnostics["grad_norm"], last.norm(dim=1))


def test_nesterov_follows_its_linear_recurrence_and_beats_gradient_descent() -> None:
    kappa = float(EIGENVALUES.max() / EIGENVALUES.min())
    eta = 1.0 / float(EIGENVALUES.max())
    mu = (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)
    steps = 60
    x0 = start()
    result = Nesterov(eta, momentum=mu).sample(quadratic(), x0, steps)
    expected = torch.empty_like(x0)
    for i, lam in enumerate(EIGENVALUES.tolist()):
        step = torch.tensor([[1 - eta * lam, mu * (1 - eta * lam)],
                             [-eta * lam, mu * (1 - eta * lam)]], dtype=torch.float64)
        power = torch.linalg.matrix_power(step, steps)
        expected[:, i] = CENTRE[i] + power[0, 0] * (x0[:, i] - CENTRE[i])
    torch.testing.assert_close(result.samples, expected, rtol=1e-9, atol=1e-12)
    error = (result.samples - CENTRE).norm(dim=1) / (x0 - CENTRE).norm(dim=1)
    assert torch.all(error < 3 * steps * (1 - 1 / math.sqrt(kappa)) ** steps)
    plain = GradientDescent(eta).sample(quadratic(), x0, steps).samples
    assert torch.all(error < (plain - CENTRE).norm(dim=1) / (x0 - CENTRE).norm(dim=1) / 10)


def test_noise_is_reproducible_from_the_generator_and_off_by_default() -> None:
    energy, x0 = quadratic(), start()

    def run(sampler: ebmcore.Sampler, seed: int) -> torch.Tensor:
        return sampler.sample(energy, x0, 5, generator=torch.Generator().manual_seed(seed),
                              backend="torch").samples

    noisy = Nesterov(0.005, noise=0.1)
    assert torch.equal(run(noisy, 1), run(noisy, 1))
    assert not torch.equal(run(noisy, 1), run(noisy, 2))
    quiet = GradientDescent(0.005)
    assert torch.equal(run(quiet, 1), run(quiet, 2))


def test_the_one_loop_records_trajectories_and_energies() -> None:
    result = Nesterov(0.005, momentum=0.5).sample(quadratic(), start(), 20,
                                                 return_trajectory=True, thin=5)
    assert result.trajectory is not None and result.trajectory.shape == (4, 5, 3)
    trace = result.diagnostics["energy_trace"]
    assert trace[-1] < trace[0]


def test_a_field_with_an_energy_is_descended_and_one_without_is_refused() -> None:
    x0 = start()
    via_field = GradientDescent(0.01).sample(EnergyField(quadratic()), x0, 3).samples
    direct = GradientDescent(0.01).sample(quadratic(), x0, 3).samples
    assert torch.equal(via_field, direct)
    field = ebmcore.create("model", "mlp_field", dim=3)
    with pytest.raises(TypeError, match="no energy.*'flow' sampler"):
        Nesterov(0.01).sample(field, x0.float(), 3)


@pytest.mark.parametrize(("value", "error"), [(0.0, ValueError), (-0.1, ValueError),
                                              (math.inf, ValueError), (math.nan, ValueError),
                                              ("0.1", TypeError), (True, TypeError)])
def test_bad_step_sizes_are_refused_by_name(value: object, error: type[Exception]) -> None:
    for sampler in (GradientDescent, Nesterov):
        with pytest.raises(error, match="step_size"):
            sampler(value)


def test_bad_momentum_and_noise_are_refused() -> None:
    for momentum in (1.0, -0.1, "0.5"):
        with pytest.raises(ValueError, match="momentum"):
            Nesterov(0.1, momentum=momentum)
    with pytest.raises(ValueError, match="noise"):
        GradientDescent(0.1, noise=-1.0)


def test_state_dict_round_trips() -> None:
    sampler = Nesterov(0.2, momentum=0.7, noise=0.01)
    other = Nesterov(1.0)
    other.load_state_dict(sampler.state_dict())
    assert (other.step_size, other.momentum, other.noise) == (0.2, 0.7, 0.01)
