"""The ``flow`` sampler on the exact Gaussian-to-Gaussian flow of every built-in path.

For data ``N(m, s^2 I)`` and noise ``N(0, I)`` on the path ``x_t = alpha x1 + sigma x0``,
``x_t ~ N(alpha m, V)`` with ``V = alpha^2 s^2 + sigma^2`` and, with ``r = x_t - alpha m``,

    E[x1 | x_t] = m + alpha s^2 / V r,      E[x0 | x_t] = sigma / V r,

so the marginal velocity is ``alpha' E[x1 | x_t] + sigma' E[x0 | x_t]``, the score is
``-r / V`` and the noise ``E[x0 | x_t]``. The flow is affine: a point starting at ``x`` at
time ``t0`` ends at ``m + s (x - alpha(t0) m) / sqrt(V(t0))`` at ``t = 1``.
"""

from __future__ import annotations

import math

import pytest
import torch
from ebmcore_samplers.flow import FlowResult, FlowSampler

import ebmcore
from ebmcore.errors import IntegrationError
from ebmcore.field import Field, expand_time
from ebmcore.interpolant import Interpolant

MEAN = torch.tensor([2.0, -1.0], dtype=torch.float64)
SCALE = 0.5


class GaussianField(Field):
    """The exact velocity, score or noise of the path from ``N(0, I)`` to ``N(m, s^2 I)``."""

    def __init__(self, prediction: str = "velocity", path: str | Interpolant = "linear",
                 mean: torch.Tensor = MEAN, scale: float = SCALE) -> None:
        super().__init__()
        self.prediction, self.mean, self.scale = prediction, mean, scale
        self.path = ebmcore.create("interpolant", path) if isinstance(path, str) else path
        self.event_shape = (mean.shape[0],)
        self.calls: list[float] = []

    def forward(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        t = expand_time(t, x)
        self.calls.append(float(t[0]))
        alpha, sigma, d_alpha, d_sigma = (c[:, None] for c in self.path.coefficients(t))
        variance = alpha ** 2 * self.scale ** 2 + sigma ** 2
        r = x - alpha * self.mean
        noise = sigma / variance * r
        if self.prediction == "noise":
            return noise
        if self.prediction == "score":
            return -r / variance
        data = self.mean + alpha * self.scale ** 2 / variance * r
        return d_alpha * data + d_sigma * noise


def exact_end(x: torch.Tensor, t0: float, t1: float = 1.0, path: str = "linear") -> torch.Tensor:
    """Where the exact flow carries ``x`` from time ``t0`` to time ``t1``."""
    alpha, sigma, _, _ = ebmcore.create("interpolant", path).coefficients(
        torch.tensor([t0, t1], dtype=torch.float64))
    spread = torch.sqrt(alpha ** 2 * SCALE ** 2 + sigma ** 2)
    return alpha[1] * MEAN + spread[1] * (x - alpha[0] * MEAN) / spread[0]


def noise(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` seeded standard normal points in float64."""
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def assert_moments(samples: torch.Tensor, mean: torch.Tensor, sd: float) -> None:
    """Per coordinate, the mean and standard deviation within four standard errors."""
    n = samples.shape[0]
    assert torch.all((samples.mean(0) - mean).abs() < 4 * sd / math.sqrt(n)), samples.mean(0)
    assert torch.all((samples.std(0) - sd).abs() < 4 * sd / math.sqrt(2 * n)), samples.std(0)


def test_registered_by_name_with_defaults() -> None:
    sampler = ebmcore.create("sampler", "flow")
    assert isinstance(sampler, FlowSampler)
    assert sampler.integrator.name == "heun" and sampler.integrator.steps == 100
    assert sampler.t_span == (0.0, 1.0)
    assert isinstance(ebmcore.create("sampler", "ode"), FlowSampler)
    assert ebmcore.create("sampler", "flow", rtol=1e-4).integrator.name == "dopri5"
    assert ebmcore.create("sampler", "flow", sde=True).integrator.name == "euler_maruyama"


def test_ode_samples_match_the_data_law_and_the_exact_map() -> None:
    x0 = noise(20_000)
    result = FlowSampler().sample(GaussianField(), x0=x0)
    assert isinstance(result, FlowResult)
    assert_moments(result.samples, MEAN, SCALE)
    assert (result.samples - exact_end(x0, 0.0)).abs().max() < 1e-3  # Heun, 100 steps
    assert result.nfe == 200 and result.steps == 100
    assert torch.equal(x0, noise(20_000))  # the start is not modified


@pytest.mark.parametrize(("name", "stages"), [("euler", 1), ("heun", 2), ("rk4", 4)])
def test_nfe_is_steps_times_stages(name: str, stages: int) -> None:
    field = GaussianField()
    result = FlowSampler(name, steps=7).sample(field, x0=noise(4))
    assert (result.nfe, result.steps) == (7 * stages, 7)
    assert len(field.calls) == result.nfe


def test_adaptive_tolerance_is_met_and_reported() -> None:
    x0 = noise(500)
    errors = {}
    for tol in (1e-3, 1e-7):
        result = FlowSampler(rtol=tol, atol=tol).sample(GaussianField(), x0=x0)
        assert f"rtol={tol:g}, atol={tol:g}" in result.diagnostics["integrator"]
        assert result.steps >= 1 and result.nfe >= 6 * result.steps
        errors[tol] = float((result.samples - exact_end(x0, 0.0)).abs().max())
        assert errors[tol] < 100 * tol
    assert errors[1e-7] < errors[1e-3]


@pytest.mark.parametrize("path", ["linear", "cosine", "vp"])
@pytest.mark.parametrize("prediction", ["score", "noise"])
def test_score_and_noise_predictions_follow_the_velocity(path: str, prediction: str) -> None:
    x0 = noise(64, seed=3)
    converted = FlowSampler(prediction=prediction, interpolant=path)
    # Each end moves in where the conversion is singular: alpha = 0 at the noise end (not on
    # vp), sigma = 0 for a score and vp's infinite sigma' at the data end.
    start = 0.0 if path == "vp" else 1e-3
    end = 1.0 - 1e-3 if path == "vp" or prediction == "score" else 1.0
    assert converted.t_span == (start, end)
    reference = FlowSampler(interpolant=path, t_span=converted.t_span)
    got = converted.sample(GaussianField(prediction, path), x0=x0).samples
    want = reference.sample(GaussianField("velocity", path), x0=x0).samples
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    # and both are the exact flow from where they started, to integration error
    end = exact_end(x0, *converted.t_span, path=path)
    assert (got - end).abs().max() < 1e-3


def test_sde_keeps_the_marginals_and_is_reproducible() -> None:
    sampler = FlowSampler(sde=True, steps=200, diffusion=1.0)
    end = sampler.t_span[1]
    assert end == 1.0 - 1e-3  # the score is singular where sigma = 0
    x0 = noise(20_000, seed=5)
    first = sampler.sample(GaussianField(), x0=x0, generator=torch.Generator().manual_seed(9))
    again = sampler.sample(GaussianField(), x0=x0, generator=torch.Generator().manual_seed(9))
    assert torch.equal(first.samples, again.samples) and first.nfe == 201  # + final step
    sd = math.sqrt(end ** 2 * SCALE ** 2 + (1 - end) ** 2)
    assert_moments(first.samples, end * MEAN, sd)
    ode = FlowSampler(t_span=(0.0, end)).sample(GaussianField(), x0=x0).samples
    assert (first.samples - ode).abs().mean() > 0.05  # the noise really moved the points


def test_time_invariant_fields_and_energies_are_called_at_time_zero() -> None:
    class Pull(Field):
        """``v(x) = m - x``, the field of ``E = |x - m|^2 / 2``; records its times."""

        event_shape = (2,)

        def __init__(self) -> None:
            super().__init__()
            self.times: set[float] = set()

        def forward(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
            self.times |= set(expand_time(t, x).tolist())
            return MEAN - x

    x0 = noise(8)
    exact = MEAN + (x0 - MEAN) * math.exp(-1.0)
    pull = Pull()
    result = FlowSampler("rk4", steps=20, time_invariant=True).sample(pull, x0=x0)
    assert pull.times == {0.0}
    torch.testing.assert_close(result.samples, exact, rtol=0, atol=1e-6)
    energy = ebmcore.create("energy", "gaussian", mean=MEAN, cov=torch.eye(2, dtype=torch.float64))
    by_energy = FlowSampler("rk4", steps=20, time_invariant=True).sample(energy, x0=x0)
    torch.testing.assert_close(by_energy.samples, exact, rtol=0, atol=1e-6)


def test_draws_its_own_noise_reproducibly_and_records_the_trajectory() -> None:
    field = GaussianField()
    sampler = FlowSampler("heun", steps=10)
    first = sampler.sample(field, 6, generator=torch.Generator().manual_seed(2),
                           return_trajectory=True)
    plain = sampler.sample(field, 6, generator=torch.Generator().manual_seed(2))
    assert first.trajectory is not None and first.trajectory.shape == (11, 6, 2)
    assert torch.equal(first.trajectory[-1], first.samples)
    assert torch.equal(first.samples, plain.samples) and first.nfe == plain.nfe == 20
    start = torch.randn(6, 2, generator=torch.Generator().manual_seed(2))
    assert torch.equal(first.trajectory[0], start)


def test_bad_arguments_get_clear_errors() -> None:
    with pytest.raises(TypeError, match="ebmcore.Field"):
        FlowSampler().sample(object(), 4)
    with pytest.raises(ValueError, match="stochastic"):
        FlowSampler("heun", sde=True)
    with pytest.raises(ValueError, match="ODE integrator"):
        FlowSampler("euler_maruyama")
    with pytest.raises(ValueError, match="not both"):
        FlowSampler(steps=10, rtol=1e-3)
    with pytest.raises(ValueError, match="prediction"):
        FlowSampler(prediction="x0")
    with pytest.raises(ValueError, match="time_invariant"):
        FlowSampler(time_invariant=True, prediction="score")
    with pytest.raises(ValueError, match="only apply when the integrator is given by name"):
        FlowSampler(ebmcore.create("integrator", "rk4"), steps=5)
    with pytest.raises(ValueError, match="t_span"):
        FlowSampler(t_span=(0.5, 0.2))
    with pytest.raises(ValueError, match="n=3 but x0 holds 4"):
        FlowSampler().sample(GaussianField(), 3, x0=noise(4))
    with pytest.raises(ValueError, match="give n"):
        FlowSampler().sample(GaussianField())
    with pytest.raises(ValueError, match="fixed-step"):
        FlowSampler(rtol=1e-3).sample(GaussianField(), x0=noise(4), return_trajectory=True)


def test_a_nan_field_names_the_integrator_and_time() -> None:
    class Broken(GaussianField):
        def forward(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
            out = super().forward(x, t)
            return out * float("nan") if float(expand_time(t, x)[0]) >= 0.5 else out

    with pytest.raises(IntegrationError, match="'euler'.*t = 0.5"):
        FlowSampler("euler", steps=10).sample(Broken(), x0=noise(4))


def test_samples_a_model_field_without_touching_the_global_rng() -> None:
    import copy
    import pickle

    field = ebmcore.create("model", "mlp_field", dim=2)
    sampler = FlowSampler("euler", steps=3, sde=False)
    before = torch.get_rng_state()
    result = sampler.sample(field, 5)
    assert torch.equal(torch.get_rng_state(), before)
    assert result.samples.shape == (5, 2) and result.samples.dtype == torch.float32
    assert result.nfe == 3
    for clone in (copy.deepcopy(sampler), pickle.loads(pickle.dumps(sampler))):
        assert repr(clone) == repr(sampler)
    with pytest.raises(TypeError, match="generator"):
        sampler.sample(field, 5, generator=0)


def test_euler_on_a_time_free_field_is_gradient_descent() -> None:
    """``k`` Euler steps over ``(0, T)`` of ``-∇E`` are ``k`` descent steps of ``T / k``."""
    energy = ebmcore.create("energy", "gaussian", mean=MEAN,
                            precision=torch.diag(torch.tensor([1.0, 4.0], dtype=torch.float64)))
    x0 = noise(6)
    flow = FlowSampler("euler", steps=30, time_invariant=True, t_span=(0.0, 3.0))
    descent = ebmcore.create("sampler", "gradient_descent", step_size=0.1)
    torch.testing.assert_close(flow.sample(energy, x0=x0).samples,
                               descent.sample(energy, x0, 30).samples, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="t_span"):
        FlowSampler(t_span=(0.0, 3.0))  # a time-conditioned field lives on [0, 1]


def test_integrators_by_name_take_their_own_settings() -> None:
    adaptive = FlowSampler("dopri5")  # no steps handed to an adaptive integrator
    assert adaptive.integrator.name == "dopri5"
    with pytest.raises(ValueError, match="'dopri5' is not a fixed-step integrator.*rtol/atol"):
        FlowSampler("dopri5", steps=10)
    with pytest.raises(ValueError, match="'heun' takes fixed steps.*rtol"):
        FlowSampler("heun", rtol=1e-3)


def test_a_nan_field_is_named_with_what_to_do() -> None:
    class Exploding(GaussianField):
        def forward(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
            return super().forward(x, t) * float("inf")

    with pytest.raises(IntegrationError, match=r"field Exploding.*'heun'.*t = 0\b.*trained "
                                               r"without diverging") as err:
        FlowSampler("heun", steps=4).sample(Exploding(), x0=noise(3))
    assert err.value.time == 0.0 and err.value.integrator == "heun"


def test_backend_is_checked_and_reported() -> None:
    with pytest.raises(ValueError, match="backend must be one of auto, torch, compiled.*'numba'"):
        FlowSampler(backend="numba")
    result = FlowSampler("euler", steps=2).sample(GaussianField(), x0=noise(3))
    assert result.diagnostics["backend"] == "torch"  # auto runs eagerly


class Relaxing(Field):
    """``v = m - x``, times ``bad`` from ``t = 0.5`` on (1 until a test sets it to NaN)."""

    event_shape = (2,)

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("bad", torch.ones((), dtype=torch.float64))

    def forward(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        t = expand_time(t, x)[:, None]
        return (MEAN - x) * torch.where(t >= 0.5, self.bad, torch.ones_like(t))


def test_compiled_backend_matches_the_eager_one_and_reports_the_nan_step() -> None:
    x0, field = noise(64), Relaxing()
    eager = FlowSampler("heun", steps=8).sample(field, x0=x0)
    sampler = FlowSampler("heun", steps=8, backend="compiled")
    first = sampler.sample(field, x0=x0)
    torch.testing.assert_close(first.samples, eager.samples, rtol=1e-12, atol=1e-12)
    assert (first.nfe, first.steps, first.diagnostics["backend"]) == (16, 8, "compiled")
    field.bad.fill_(float("nan"))  # the same compiled step sees the buffer's new value
    with pytest.raises(IntegrationError, match=r"field Relaxing.*'heun'.*step from t = 0.375 "
                                               r"to 0.5"):
        sampler.sample(field, x0=x0)


def test_the_sde_ends_with_a_noise_free_probability_flow_step() -> None:
    x0, field, seed = noise(500, seed=3), GaussianField(), torch.Generator().manual_seed
    sampler = FlowSampler(sde=True, steps=50)
    start, end = sampler.t_span
    result = sampler.sample(field, x0=x0, generator=seed(4), return_trajectory=True)
    assert (result.nfe, result.steps, result.diagnostics["final_step"]) == (51, 51, 0.04)
    noisy = FlowSampler(sde=True, steps=50, final_step=None, t_span=(start, end - 0.04))
    before = noisy.sample(field, x0=x0, generator=seed(4)).samples
    velocity = FlowSampler().drift(field)(before, torch.tensor(end - 0.04, dtype=x0.dtype))
    torch.testing.assert_close(result.samples, before + 0.04 * velocity)
    assert torch.equal(result.trajectory[-1], result.samples)
    assert FlowSampler(sde=True, steps=5, final_step=None).sample(field, x0=x0).nfe == 5
    with pytest.raises(ValueError, match="final_step"):
        FlowSampler(sde=True, final_step=2.0)


def test_a_tolerance_that_cannot_be_met_names_the_field_and_the_tolerances() -> None:
    from ebmcore_flows.integrators import Dopri5

    class BlowUp(GaussianField):
        def forward(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
            return 50.0 * x * x  # x' = 50 x^2 leaves every bound before t = 1

    sampler = FlowSampler(Dopri5(rtol=1e-9, atol=1e-9, max_steps=30))
    with pytest.raises(IntegrationError, match=r"field BlowUp: integrator 'dopri5' could not "
                                               r"meet rtol=1e-09, atol=1e-09.*loosen the "
                                               r"tolerances, raise max_steps"):
        sampler.sample(BlowUp(), x0=noise(4).abs() + 1)


def test_compiled_backend_without_a_compiler_says_to_run_eagerly(monkeypatch) -> None:
    import ebmcore_samplers.compiled.backend as compiled

    from ebmcore.errors import BackendUnavailableError

    monkeypatch.setattr(compiled, "compiler_reason", lambda x: "no compiler in this test")
    with pytest.raises(BackendUnavailableError, match="no compiler in this test.*"
                                                      "backend='torch'"):
        FlowSampler(backend="compiled").sample(GaussianField(), x0=noise(2))
