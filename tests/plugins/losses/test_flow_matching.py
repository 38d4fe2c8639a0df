"""flow_matching and diffusion: the kit's conformance checks and Gaussian known answers.

For data ``x1 ~ N(m, s² I)``, noise ``x0 ~ N(0, I)`` and a path ``x_t = α x1 + σ x0`` the
marginal ``p_t`` is ``N(α m, V)`` with ``V = α² s² + σ²``, and the regression targets have
closed-form conditional means and variances (per coordinate):

- velocity ``u_t = α' x1 + σ' x0``: ``E[u_t | x] = α' m + C / V (x - α m)`` with
  ``C = α α' s² + σ σ'``, residual ``s² (α σ' - σ α')² / V``;
- noise ``x0``: ``E[x0 | x] = σ / V (x - α m)``, residual ``α² s² / V`` (the σ²-weighted
  score loss has the same residual).

On the linear path the velocity residual integrates over ``t ∈ [0, 1]`` to ``π s / 2``.
"""

from __future__ import annotations

import math

import pytest
import torch
from ebmcore_losses.flow_matching import Diffusion, FlowMatching
from ebmcore_models.fields import MLPField
from torch import nn

import ebmcore
from ebmcore.field import Field, expand_time
from ebmcore.interpolant import Interpolant
from ebmcore.testing import check_loss


class GaussianPathField(Field):
    """The exact minimiser of each prediction for Gaussian data on a path, plus a learnable
    offset that starts at zero (so the kit's gradient checks have a parameter to reach)."""

    def __init__(self, mean: float, std: float, interpolant: Interpolant,
                 prediction: str, dim: int = 2) -> None:
        super().__init__()
        self.mean, self.std, self.interpolant, self.prediction = mean, std, interpolant, prediction
        self.offset = nn.Parameter(torch.zeros(dim, dtype=torch.float64))
        self.event_shape = (dim,)

    def forward(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        t = expand_time(t, x)
        a, s, da, ds = (c[:, None] for c in self.interpolant.coefficients(t))
        var = a**2 * self.std**2 + s**2
        centred = x - a * self.mean
        if self.prediction == "velocity":
            cov = a * da * self.std**2 + s * ds
            out = da * self.mean + cov / var * centred
        elif self.prediction == "noise":
            out = s / var * centred
        else:  # the marginal score
            out = -centred / var
        return out + self.offset


def residual(interpolant: Interpolant, prediction: str, std: float, t_max: float = 1.0,
             points: int = 200_001) -> float:
    """The expected loss of the exact field: the residual variance averaged over t."""
    t = torch.linspace(0.0, t_max, points, dtype=torch.float64)
    a, s, da, ds = interpolant.coefficients(t)
    var = a**2 * std**2 + s**2
    if prediction == "velocity":
        density = std**2 * (a * ds - s * da) ** 2 / var
    else:
        density = a**2 * std**2 / var
    return float(torch.trapezoid(density, t) / t_max)


def gaussian_data(n: int, mean: float, std: float, dim: int = 2, seed: int = 5) -> torch.Tensor:
    return mean + std * torch.randn(n, dim, generator=torch.Generator().manual_seed(seed),
                                    dtype=torch.float64)


def loss_value(loss: FlowMatching, field: Field, data: torch.Tensor, seed: int = 0) -> float:
    loss.set_generator(torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return float(loss(field, data).loss)


def test_the_linear_velocity_residual_is_pi_s_over_two():
    for std in (0.5, 1.0, 2.0):
        got = residual(ebmcore.create("interpolant", "linear"), "velocity", std)
        assert got == pytest.approx(math.pi * std / 2, rel=1e-4)


@pytest.mark.parametrize("prediction", ["velocity", "score", "noise"])
@pytest.mark.parametrize("path", ["linear", "cosine"])
def test_the_exact_field_has_the_analytic_loss_and_is_the_minimiser(prediction, path):
    interpolant = ebmcore.create("interpolant", path)
    mean, std = 1.5, 0.5
    loss = FlowMatching(interpolant=interpolant, prediction=prediction)
    data = gaussian_data(200_000, mean, std)
    exact = GaussianPathField(mean, std, interpolant, prediction)
    value = loss_value(loss, exact, data)
    expected = residual(interpolant, "velocity" if prediction == "velocity" else "noise", std)
    assert value == pytest.approx(expected, rel=0.02)
    # any shift of the exact field costs delta² (times the mean of sigma², the score's weight)
    t = torch.linspace(0, 1, 10_001, dtype=torch.float64)
    weight = float(torch.trapezoid(interpolant.coefficients(t)[1] ** 2, t)) \
        if prediction == "score" else 1.0
    for delta in (0.05, -0.05):
        with torch.no_grad():
            exact.offset.fill_(delta)
        shifted = loss_value(loss, exact, data)
        assert shifted > value
        assert shifted - value == pytest.approx(weight * delta**2, rel=0.25)


@pytest.fixture
def one_thread():
    """Tiny training steps run fastest on one thread (two thrash on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_a_learnt_field_approaches_the_analytic_minimum(one_thread):
    torch.manual_seed(0)
    mean, std = 1.0, 0.5
    field = MLPField(dim=2, hidden=(32, 32), time_dim=16).double()
    loss = FlowMatching()
    loss.set_generator(torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(field.parameters(), lr=3e-3)
    for step in range(400):
        value = loss(field, gaussian_data(256, mean, std, seed=100 + step)).loss
        opt.zero_grad()
        value.backward()
        opt.step()
    final = loss_value(loss, field, gaussian_data(50_000, mean, std, seed=9))
    floor = math.pi * std / 2
    assert floor * 0.97 < final < floor * 1.15


@pytest.mark.parametrize("prediction", ["velocity", "score", "noise"])
def test_flow_matching_passes_the_kit(prediction):
    data = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    check_loss(FlowMatching(prediction=prediction), MLPField(2, hidden=(16, 16)), data)


def test_flow_matching_takes_an_energy_as_its_velocity_field():
    from ebmcore_models.mlp import MLPEnergy

    data = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    check_loss(FlowMatching(), MLPEnergy(2, hidden=(16,), confine=False), data)
    with pytest.raises(TypeError, match="prediction='noise' needs a Field model"):
        FlowMatching(prediction="noise")(MLPEnergy(2, hidden=(4,)), data)


@pytest.mark.parametrize("coupling", ["exact_ot", "sinkhorn"])
def test_flow_matching_with_an_ot_coupling_passes_the_kit(coupling):
    pytest.importorskip("ot")
    data = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    check_loss(FlowMatching(coupling=coupling), MLPField(2, hidden=(16,)), data)


def test_flow_matching_on_images_with_the_unet():
    from ebmcore_models.fields import UNetField

    images = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    check_loss(FlowMatching(), UNetField((1, 8, 8), channels=(4, 8)), images)


def test_diffusion_is_noise_prediction_on_the_vp_path_away_from_the_data_end():
    loss = Diffusion()
    assert loss.prediction == "noise" and loss.t_max == pytest.approx(1 - 1e-3)
    assert type(loss.interpolant) is type(ebmcore.create("interpolant", "vp"))
    data = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    check_loss(loss, MLPField(2, hidden=(16, 16)), data)
    vp = loss.interpolant
    exact = GaussianPathField(0.0, 1.0, vp, "noise")
    value = loss_value(loss, exact, gaussian_data(200_000, 0.0, 1.0))
    assert value == pytest.approx(residual(vp, "noise", 1.0, t_max=loss.t_max), rel=0.02)


class TimeRecorder(Field):
    """A field that records the times it is called with (in :attr:`seen`)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.seen: list[torch.Tensor] = []

    def forward(self, x, t):
        self.seen.append(expand_time(t, x))
        return x * self.w


def test_the_training_times_stay_in_their_interval():
    recorder = TimeRecorder()
    loss = FlowMatching(t_min=0.2, t_max=0.3)
    loss_value(loss, recorder, torch.randn(1000, 2).double())
    assert float(recorder.seen[-1].min()) >= 0.2 and float(recorder.seen[-1].max()) <= 0.3
    Diffusion(t_eps=0.5)(recorder, torch.randn(1000, 2))
    assert float(recorder.seen[-1].max()) <= 0.5


def test_logit_normal_times_have_the_asked_location_and_scale():
    n = 20_000
    for loc, scale in ((0.0, 1.0), (0.5, 0.7)):
        recorder = TimeRecorder()
        loss = FlowMatching(time_sampling="logit_normal", time_loc=loc, time_scale=scale)
        loss_value(loss, recorder, torch.randn(n, 2).double())
        t = recorder.seen[-1]
        assert float(t.min()) > 0.0 and float(t.max()) < 1.0
        logit = torch.log(t / (1 - t))
        # mean within 4 standard errors; the variance's standard error is about s² √(2/n)
        assert float(logit.mean()) == pytest.approx(loc, abs=4 * scale / math.sqrt(n))
        assert float(logit.var()) == pytest.approx(scale**2, abs=4 * scale**2 * math.sqrt(2 / n))
    # mapped onto the training interval, and uniform stays the default
    recorder = TimeRecorder()
    loss = FlowMatching(t_min=0.2, t_max=0.3, time_sampling="logit_normal")
    loss_value(loss, recorder, torch.randn(1000, 2).double())
    assert float(recorder.seen[-1].min()) >= 0.2 and float(recorder.seen[-1].max()) <= 0.3
    assert FlowMatching().time_sampling == "uniform"
    assert "logit_normal" in repr(loss)


def test_bad_time_sampling_names_the_argument():
    with pytest.raises(ValueError, match="time_sampling must be one of uniform, logit_normal"):
        FlowMatching(time_sampling="beta")
    with pytest.raises(ValueError, match="time_scale must be positive"):
        FlowMatching(time_sampling="logit_normal", time_scale=0.0)
    with pytest.raises(TypeError, match="time_loc must be a finite number"):
        FlowMatching(time_loc=float("nan"))


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="prediction must be one of velocity, score, noise"):
        FlowMatching(prediction="x0")
    with pytest.raises(TypeError, match="interpolant must be an interpolant name"):
        FlowMatching(interpolant=3)
    with pytest.raises(TypeError, match="coupling must be a coupling name"):
        FlowMatching(coupling=None)
    with pytest.raises(ebmcore.UnknownComponentError, match="interpolant"):
        FlowMatching(interpolant="lineer")
    with pytest.raises(ValueError, match="t_min < t_max"):
        FlowMatching(t_min=0.5, t_max=0.5)
    with pytest.raises(ValueError, match="t_eps must be a number in"):
        Diffusion(t_eps=0)
    with pytest.raises(TypeError, match="model must be an ebmcore.Field"):
        FlowMatching()(nn.Linear(2, 2), torch.randn(4, 2))
    with pytest.raises(TypeError, match=r"x must be a floating-point tensor"):
        FlowMatching()(MLPField(2, (4,)), torch.ones(4, dtype=torch.long))


def test_the_loss_descriptors_bring_a_field_recipe():
    registry = ebmcore.registry.get_registry()
    for name in ("flow_matching", "diffusion", "equilibrium_matching"):
        assert registry.recipe("loss", name)["model"]["name"] == "mlp_field"
    assert registry.recipe("loss", "energy_matching")["loss"]["params"]["switch_step"] >= 0


@pytest.mark.parametrize("kind, name", [("loss", "flow_matching"), ("loss", "diffusion"),
                                        ("loss", "equilibrium_matching"),
                                        ("loss", "energy_matching"), ("model", "mlp_field"),
                                        ("model", "unet_field")])
def test_the_new_components_are_registered_and_documented(kind, name):
    info = ebmcore.describe(kind, name)
    assert info["summary"] and info["plugin"] == ("losses" if kind == "loss" else "models")
    assert not [p["name"] for p in info["parameters"] if not p["doc"]]
