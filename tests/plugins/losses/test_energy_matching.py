"""energy_matching: both phases pass the kit, the switch, the flow term's known answer."""

from __future__ import annotations

import pytest
import torch
from ebmcore_losses.energy_matching import EnergyMatching
from ebmcore_models.fields import MLPField
from ebmcore_models.mlp import MLPEnergy
from torch import nn

import ebmcore
from ebmcore.energy import Energy
from ebmcore.testing import check_loss

DATA = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))


class Bowl(Energy):
    """``E(x) = k |x - c|² / 2`` with a learnable centre ``c``: ``-∇E(x) = k (c - x)``."""

    def __init__(self, centre: float, dim: int = 2, curvature: float = 1.0) -> None:
        super().__init__()
        self.centre = nn.Parameter(torch.full((dim,), centre, dtype=torch.float64))
        self.curvature = curvature
        self.event_shape = (dim,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.curvature * (x - self.centre).square().sum(-1)


def small(**params) -> EnergyMatching:
    params = {"coupling": "independent", "n_langevin_steps": 5, **params}
    return EnergyMatching(**params)


def test_phase_one_passes_the_kit():
    check_loss(small(switch_step=None), MLPEnergy(2, hidden=(16,), confine=False), DATA)


def test_phase_two_passes_the_kit_and_draws_negatives():
    energy = MLPEnergy(2, hidden=(16,), confine=False)
    check_loss(small(switch_step=0), energy, DATA)
    loss = small(switch_step=0)
    loss.set_generator(torch.Generator().manual_seed(0))
    out = loss(energy, DATA)
    assert out.negatives is not None and out.negatives.shape == DATA.shape
    assert out.metrics["phase"] == 2.0 and "cd_value" in out.metrics


def test_phase_one_with_exact_ot_passes_the_kit():
    pytest.importorskip("ot")
    check_loss(EnergyMatching(switch_step=None), MLPEnergy(2, hidden=(16,), confine=False),
               DATA)


def test_the_switch_is_a_parameter_and_survives_a_state_dict():
    energy = MLPEnergy(2, hidden=(8,), confine=False)
    loss = small(switch_step=2)
    loss.set_generator(torch.Generator().manual_seed(0))
    phases = [loss(energy, DATA).metrics["phase"] for _ in range(4)]
    assert phases == [1.0, 1.0, 2.0, 2.0]
    resumed = small(switch_step=2)
    resumed.load_state_dict(loss.state_dict())
    assert resumed.phase == 2
    assert small(switch_step=None).phase == 1
    assert small(switch_step=0, lambda_cd=0.0).phase == 1
    config = ebmcore.config.defaults_for("eight_gaussians", "energy_matching")
    params = config["loss"]["params"]
    assert params["switch_step"] == 2000  # the recipe sets the switch
    # the 2-D recipe's contrastive phase: persistent negatives and the energy penalty
    assert params["buffer_size"] > 0 and params["alpha"] > 0 and params["noise_fraction"] == 0


def test_the_flow_term_has_its_known_answer_on_a_bowl():
    """Data N(m, s²), linear path, V = |x - m|²/2 (so the model E = V / eps_max), no
    smoothing and no gate: -∇V(x_t) - u_t = m - (1 + t) x1 + t x0, whose mean square per
    coordinate is t² m² + (1 + t)² s² + t², which averages over t to m²/3 + 7 s²/3 + 1/3."""
    m, s, eps = 0.7, 0.5, 0.25
    data = m + s * torch.randn(200_000, 2, generator=torch.Generator().manual_seed(2),
                               dtype=torch.float64)
    loss = small(switch_step=None, sigma=0.0, flow_weight_cutoff=1.0, epsilon_max=eps)
    loss.set_generator(torch.Generator().manual_seed(3))
    value = float(loss(Bowl(m, curvature=1 / eps), data).loss.detach())
    assert value == pytest.approx(m**2 / 3 + 7 * s**2 / 3 + 1 / 3, rel=0.02)
    # the same bowl read as V itself (E = V) is the wrong potential at eps != 1
    loss.set_generator(torch.Generator().manual_seed(3))
    assert float(loss(Bowl(m), data).loss.detach()) > 1.25 * value


def test_the_gate_and_the_temperature_profile():
    loss = EnergyMatching(coupling="independent", flow_weight_cutoff=0.8, tau_star=0.8,
                          epsilon_max=0.15, n_langevin_steps=10)
    t = torch.tensor([0.0, 0.8, 0.9, 1.0])
    torch.testing.assert_close(loss.flow_weight(t), torch.tensor([1.0, 1.0, 0.5, 0.0]))
    assert [loss.temperature(k) for k in (0, 7, 9)] == pytest.approx([0.0, 0.0, 0.075])


def test_the_negatives_sample_the_models_own_density():
    """Data-started chains run Langevin on V = eps_max E at temperature eps_max, so on the
    bowl E = k |x|² / 2 they relax to exp(-E) = N(0, 1 / k), whatever eps_max is."""
    k = 2.0
    for eps in (0.15, 0.6):
        loss = EnergyMatching(coupling="independent", noise_fraction=0.0,
                              n_langevin_steps=400, langevin_dt=0.02 / eps,
                              epsilon_max=eps)
        loss.set_generator(torch.Generator().manual_seed(5))
        far = torch.full((4000, 2), 3.0, dtype=torch.float64)
        neg = loss.negatives(Bowl(0.0, curvature=k), far)
        # mean 3 exp(-k * 400 * 0.02) is 3e-7; the s.e. of the mean is 0.011
        assert neg.mean(0).abs().max() < 0.045
        # variance: s.e. sqrt(2 / 4000) / k = 0.011
        torch.testing.assert_close(neg.var(0), torch.full((2,), 1 / k, dtype=torch.float64),
                                   rtol=0.1, atol=0)


def test_a_field_without_an_energy_is_a_clear_error():
    with pytest.raises(TypeError, match="MLPField is a vector field .* no energy"):
        small(switch_step=None)(MLPField(2, hidden=(4,)), DATA)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="switch_step"):
        EnergyMatching(coupling="independent", switch_step=-1)
    with pytest.raises(ValueError, match="tau_star must lie in"):
        EnergyMatching(coupling="independent", tau_star=1.0)
    with pytest.raises(ValueError, match="noise_fraction must lie in"):
        EnergyMatching(coupling="independent", noise_fraction=1.5)
    with pytest.raises(ValueError, match="langevin_dt"):
        EnergyMatching(coupling="independent", langevin_dt=0.0)
    with pytest.raises(ValueError, match="n_langevin_steps"):
        EnergyMatching(coupling="independent", n_langevin_steps=0)
    with pytest.raises(ValueError, match="epsilon_max"):
        EnergyMatching(coupling="independent", epsilon_max=0.0)


def test_the_replay_buffer_keeps_its_chains_and_they_relax_to_the_density():
    """With a replay buffer the warm chains persist across calls: on the bowl
    E = k |x|² / 2 the buffer, started as uniform noise over the batch's range, relaxes to
    exp(-E) = N(0, 1 / k); and it travels in the state dict."""
    k, size = 2.0, 2000
    loss = EnergyMatching(coupling="independent", noise_fraction=0.0, buffer_size=size,
                          reinit_prob=0.0, n_langevin_steps=20, langevin_dt=0.04,
                          epsilon_max=0.5)
    loss.set_generator(torch.Generator().manual_seed(7))
    box = torch.full((500, 2), 3.0, dtype=torch.float64)
    box[::2] = 4.0  # the batch's range: the buffer starts uniform on [3, 4]²
    loss.negatives(Bowl(0.0, curvature=k), box)
    assert loss.buffer.shape == (size, 2)
    for _ in range(40):  # each row is drawn about 10 times: 10 x 20 x 0.02 = 4 time units
        loss.negatives(Bowl(0.0, curvature=k), box)
    # s.e. of the mean sqrt(1 / (k size)) = 0.016; of the variance sqrt(2 / size) = 3.2 %,
    # plus the Langevin step's bias 1 / (1 - k h / 2) - 1 = 2 % at h = dt eps = 0.02
    assert loss.buffer.mean(0).abs().max() < 0.065
    torch.testing.assert_close(loss.buffer.var(0), torch.full((2,), 1 / k, dtype=torch.float64),
                               rtol=0.15, atol=0)
    resumed = EnergyMatching(coupling="independent", buffer_size=size)
    resumed.load_state_dict(loss.state_dict())
    torch.testing.assert_close(resumed.buffer, loss.buffer)


def test_the_replay_buffer_restarts_from_noise_in_the_batch_range():
    loss = EnergyMatching(coupling="independent", noise_fraction=0.0, buffer_size=50,
                          reinit_prob=1.0, n_langevin_steps=1, langevin_dt=1e-8)
    loss.set_generator(torch.Generator().manual_seed(1))
    far = torch.tensor([[10.0, -3.0], [12.0, -1.0]]).repeat(200, 1)
    loss.buffer = torch.zeros(50, 2)  # every chain restarts: none may start at zero
    starts = loss.negatives(Bowl(0.0), far)
    assert starts[:, 0].min() > 9.99 and starts[:, 0].max() < 12.01
    assert starts[:, 1].min() > -3.01 and starts[:, 1].max() < -0.99
    # uniform on the range: mean 11 and -2, s.e. 0.58 / sqrt(400) = 0.029
    torch.testing.assert_close(starts.mean(0), torch.tensor([11.0, -2.0]), atol=0.12, rtol=0)


def test_bad_buffer_and_penalty_arguments_name_the_argument():
    with pytest.raises(ValueError, match="buffer_size"):
        EnergyMatching(coupling="independent", buffer_size=0)
    with pytest.raises(ValueError, match="reinit_prob must lie in"):
        EnergyMatching(coupling="independent", reinit_prob=1.5)
    with pytest.raises(TypeError, match="reinit_prob must be a number"):
        EnergyMatching(coupling="independent", reinit_prob="high")
    with pytest.raises(ValueError, match="alpha"):
        EnergyMatching(coupling="independent", alpha=-0.1)


def test_the_energy_penalty_adds_its_known_value_and_leaves_the_wall_out():
    """alpha adds lambda_cd eps_max alpha (mean E(x+)² + mean E(x-)²) of the learned part."""
    bowl, data = Bowl(0.5), DATA.double()
    params = {"switch_step": 0, "lambda_cd": 3.0, "epsilon_max": 0.2}
    plain, penalised = small(**params), small(alpha=0.5, **params)
    plain.set_generator(torch.Generator().manual_seed(4))
    penalised.set_generator(torch.Generator().manual_seed(4))
    base, out = plain(bowl, data), penalised(bowl, data)
    torch.testing.assert_close(out.negatives, base.negatives)
    with torch.no_grad():
        expected = 3.0 * 0.2 * 0.5 * (bowl(data).square().mean()
                                       + bowl(out.negatives).square().mean())
    torch.testing.assert_close(out.loss - base.loss, expected)
    walled = MLPEnergy(2, hidden=(8,))
    walled.confinement.fit(DATA * 0.1)  # the data's box is small: most of DATA is outside
    with torch.no_grad():
        values = walled(DATA)
        wall = walled.confinement(DATA)
    assert wall.abs().max() > 0.1
    torch.testing.assert_close(EnergyMatching.learned(walled, DATA, values), values - wall)
