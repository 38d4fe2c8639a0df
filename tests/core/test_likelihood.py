"""The exact log-likelihood of a flow: known answers from Gaussian-to-Gaussian flows."""

from __future__ import annotations

import math

import pytest
import torch

import ebmcore
from ebmcore.errors import IntegrationError
from ebmcore.evaluation.images import bits_per_dim
from ebmcore.evaluation.likelihood import EXACT_MAX_DIM, flow_log_likelihood
from ebmcore.field import EnergyField, Field


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny fields: a second thread only spins (30x slower on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def rk4(steps: int = 50):
    return ebmcore.create("integrator", "rk4", steps=steps)


def rotation(dim: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(dim, dim, dtype=torch.float64,
                                       generator=torch.Generator().manual_seed(seed)))
    return q


class GaussianFlow(Field):
    """The exact marginal velocity of the linear path from ``N(0, I)`` (t = 0) to
    ``N(m, Q diag(s^2) Q^T)`` (t = 1) under the independent coupling.

    ``x_t ~ N(t m, Q diag(t^2 s^2 + (1 - t)^2) Q^T)``, and the field that transports a
    Gaussian along that family is ``m + Q diag(c_t) Q^T (x - t m)`` with
    ``c_t = (t s^2 - (1 - t)) / (t^2 s^2 + (1 - t)^2)``.
    """

    def __init__(self, mean: torch.Tensor, scales: torch.Tensor, q: torch.Tensor) -> None:
        super().__init__()
        self.mean, self.scales, self.q = mean, scales, q
        self.event_shape = (mean.numel(),)

    def forward(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype)
        s2 = self.scales.square()
        rate = (t * s2 - (1 - t)) / (t * t * s2 + (1 - t) ** 2)
        return self.mean + ((x - t * self.mean) @ self.q * rate) @ self.q.T

    def target(self) -> torch.distributions.MultivariateNormal:
        cov = self.q @ torch.diag(self.scales.square()) @ self.q.T
        return torch.distributions.MultivariateNormal(self.mean, cov)


def gaussian_flow(dim: int, seed: int = 0) -> GaussianFlow:
    gen = torch.Generator().manual_seed(seed)
    mean = torch.randn(dim, dtype=torch.float64, generator=gen)
    scales = 0.3 + torch.rand(dim, dtype=torch.float64, generator=gen)
    return GaussianFlow(mean, scales, rotation(dim, seed + 1))


def draws(flow: GaussianFlow, n: int, seed: int = 2) -> torch.Tensor:
    z = torch.randn(n, flow.mean.numel(), dtype=torch.float64,
                    generator=torch.Generator().manual_seed(seed))
    return flow.mean + (z * flow.scales) @ flow.q.T


def test_a_gaussian_to_gaussian_flow_gives_the_exact_log_density():
    flow = gaussian_flow(3)
    x = draws(flow, 40)
    result = flow_log_likelihood(flow, x, rk4(50))
    exact = flow.target().log_prob(x)
    assert result.divergence == "exact" and result.per_point_stderr is None
    torch.testing.assert_close(result.per_point, exact, rtol=0, atol=1e-7)
    assert result.log_likelihood == pytest.approx(float(exact.mean()), abs=1e-7)
    assert result.stderr == pytest.approx(float(exact.std() / math.sqrt(40)), rel=1e-6)
    assert result.bits_per_dim == pytest.approx(-float(exact.mean()) / (3 * math.log(2)))
    assert (result.nfe, result.steps, result.n_points, result.dim) == (200, 50, 40, 3)


def test_the_error_falls_as_the_integrator_refines():
    flow = gaussian_flow(2, seed=3)
    x = draws(flow, 20)
    exact = flow.target().log_prob(x)
    errors = {name: [float((flow_log_likelihood(flow, x, ebmcore.create(
        "integrator", name, steps=n)).per_point - exact).abs().max()) for n in (8, 16, 32)]
        for name in ("euler", "rk4")}
    for name, order in (("euler", 1), ("rk4", 4)):
        ratios = [a / b for a, b in zip(errors[name], errors[name][1:], strict=False)]
        assert all(r > 0.7 * 2 ** order for r in ratios), (name, errors[name])
    assert errors["rk4"][-1] < 1e-5


def test_hutchinson_is_unbiased_within_its_standard_error():
    flow = gaussian_flow(4, seed=5)
    x = draws(flow, 200)
    exact = flow.target().log_prob(x)
    result = flow_log_likelihood(flow, x, rk4(10), divergence="hutchinson", n_probes=8,
                                 generator=torch.Generator().manual_seed(7))
    assert result.divergence == "hutchinson" and result.probe == "rademacher"
    error = result.per_point - exact
    assert error.abs().max() > 1e-3  # the probes do add noise: not the exact divergence
    assert abs(float(error.mean())) < 4 * result.probe_stderr
    # The reported standard errors are the size of the actual errors: their root mean
    # squares agree (0.89 to 1.11 over ten seeds of either probe).
    calibration = error.square().mean().sqrt() / result.per_point_stderr.square().mean().sqrt()
    assert 0.8 < float(calibration) < 1.25


def test_gaussian_probes_are_unbiased_too():
    flow = gaussian_flow(3, seed=8)
    x = draws(flow, 200)
    exact = flow.target().log_prob(x)
    result = flow_log_likelihood(flow, x, rk4(10), divergence="hutchinson", probe="gaussian",
                                 n_probes=8)
    assert result.probe == "gaussian" and result.n_probes == 8
    assert abs(float((result.per_point - exact).mean())) < 4 * result.probe_stderr


def test_auto_is_exact_up_to_the_threshold_and_hutchinson_above():
    small, large = gaussian_flow(EXACT_MAX_DIM, seed=9), gaussian_flow(EXACT_MAX_DIM + 16)
    for flow, expected in ((small, "exact"), (large, "hutchinson")):
        x = draws(flow, 6)
        result = flow_log_likelihood(flow, x, rk4(8))
        exact = flow.target().log_prob(x)
        assert result.divergence == expected
        if expected == "exact":
            torch.testing.assert_close(result.per_point, exact, rtol=0, atol=1e-3)
        else:
            assert float((result.per_point - exact).abs().max()) < 5 * float(
                result.per_point_stderr.max()) + 1e-3


def test_a_noise_predicting_field_on_the_vp_path_converts_through_the_interpolant():
    """Data N(m, s^2 I) on the VP path: x_t ~ N(alpha m, (alpha^2 s^2 + sigma^2) I), and
    E[x0 | x_t] = sigma (x - alpha m) / (alpha^2 s^2 + sigma^2). With m = 0 the path's noise
    end is N(0, I) up to alpha(0)^2 = 4e-5 in the variance, so the answer is exact."""
    path = ebmcore.create("interpolant", "vp")
    mean, s = torch.zeros(2, dtype=torch.float64), 0.4

    class Noise(Field):
        event_shape = (2,)

        def forward(self, x, t):
            alpha, sigma, _, _ = path.coefficients(torch.as_tensor(t, dtype=x.dtype))
            return sigma * (x - alpha * mean) / (alpha ** 2 * s ** 2 + sigma ** 2)

    t_data = 1 - 1e-3
    x = mean + s * torch.randn(30, 2, dtype=torch.float64,
                               generator=torch.Generator().manual_seed(0))
    result = flow_log_likelihood(Noise(), x, rk4(100), interpolant=path, prediction="noise",
                                 t_data=t_data)
    alpha, sigma, _, _ = path.coefficients(torch.tensor(t_data, dtype=torch.float64))
    marginal = torch.distributions.Normal(alpha * mean, (alpha ** 2 * s ** 2 + sigma ** 2).sqrt())
    torch.testing.assert_close(result.per_point, marginal.log_prob(x).sum(1), rtol=0,
                               atol=1e-3)


def test_bin_width_and_data_scale_put_the_figure_on_the_data_scale():
    flow = gaussian_flow(3, seed=11)
    x = draws(flow, 10)
    plain = flow_log_likelihood(flow, x, rk4(20))
    scaled = flow_log_likelihood(flow, x, rk4(20), data_scale=2.0, bin_width=1 / 256)
    torch.testing.assert_close(scaled.per_point, plain.per_point + 3 * math.log(2.0))
    assert scaled.bits_per_dim == pytest.approx(
        bits_per_dim(scaled.log_likelihood, 3, 1 / 256))
    assert scaled.to_dict()["bin_width"] == 1 / 256 and "per_point" not in scaled.to_dict()


def test_batches_do_not_change_the_answer():
    flow = gaussian_flow(3, seed=12)
    x = draws(flow, 23)
    whole = flow_log_likelihood(flow, x, rk4(10))
    parts = flow_log_likelihood(flow, x, rk4(10), batch_size=5)
    torch.testing.assert_close(parts.per_point, whole.per_point)
    assert parts.nfe == 5 * whole.nfe


def test_a_field_of_an_energy_is_sent_to_quadrature_or_ais():
    energy = ebmcore.create("energy", "gaussian", mean=[0.0, 0.0])
    x = torch.zeros(3, 2)
    with pytest.raises(TypeError, match="grid_evaluation.*image_evaluation"):
        flow_log_likelihood(EnergyField(energy), x, rk4())
    with pytest.raises(TypeError, match="is an Energy"):
        flow_log_likelihood(energy, x, rk4())
    with pytest.raises(TypeError, match="ebmcore.Field"):
        flow_log_likelihood(lambda x, t: x, x, rk4())


def test_nan_in_the_field_is_a_clear_error():
    class Broken(Field):
        def forward(self, x, t):
            return x * float("nan") if float(t) < 0.5 else -x

    with pytest.raises(IntegrationError, match=r"'rk4'.*non-finite.*t = 0\.4"):
        flow_log_likelihood(Broken(), torch.ones(2, 2), rk4(10))
    with pytest.raises(ValueError, match="x contains non-finite"):
        flow_log_likelihood(gaussian_flow(2), torch.full((2, 2), float("nan")), rk4())


def test_a_field_without_a_differentiable_output_is_refused():
    class Detached(Field):
        def forward(self, x, t):
            return (-x).detach()

    class WrongShape(Field):
        def forward(self, x, t):
            return x[:, :1]

    with pytest.raises(ValueError, match="does not depend on x through autograd"):
        flow_log_likelihood(Detached(), torch.ones(2, 2), rk4(2))
    with pytest.raises(ValueError, match="returned"):
        flow_log_likelihood(WrongShape(), torch.ones(2, 2), rk4(2))
    with pytest.raises(ValueError, match=r"event shape \(3,\) but the field expects \(2,\)"):
        flow_log_likelihood(gaussian_flow(2), torch.ones(2, 3, dtype=torch.float64), rk4(2))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"divergence": "trace"}, ValueError, "divergence must be one of"),
    ({"probe": "uniform"}, ValueError, "probe must be one of"),
    ({"n_probes": 1}, ValueError, "n_probes must be at least 2"),
    ({"prediction": "noise"}, TypeError, "needs the interpolant"),
    ({"bin_width": 0.0}, ValueError, "bin_width"),
    ({"t_data": 1.5}, ValueError, "t_data must lie in"),
    ({"batch_size": 0}, ValueError, "batch_size"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        flow_log_likelihood(gaussian_flow(2), torch.zeros(2, 2, dtype=torch.float64), rk4(),
                            **kwargs)


def test_the_integrator_must_be_an_ode_integrator_instance():
    flow, x = gaussian_flow(2), torch.zeros(2, 2, dtype=torch.float64)
    with pytest.raises(TypeError, match="Integrator instance"):
        flow_log_likelihood(flow, x, "rk4")
    with pytest.raises(ValueError, match="solves SDEs"):
        flow_log_likelihood(flow, x, ebmcore.create("integrator", "euler_maruyama"))


def test_hutchinson_draws_only_from_its_generator():
    flow = gaussian_flow(3, seed=13)
    x = draws(flow, 8)
    state = torch.get_rng_state()
    first = flow_log_likelihood(flow, x, rk4(4), divergence="hutchinson")
    second = flow_log_likelihood(flow, x, rk4(4), divergence="hutchinson")
    other = flow_log_likelihood(flow, x, rk4(4), divergence="hutchinson",
                                generator=torch.Generator().manual_seed(1))
    assert torch.equal(first.per_point, second.per_point)  # None: a private seed-0 stream
    assert not torch.equal(first.per_point, other.per_point)
    assert torch.equal(torch.get_rng_state(), state)
