"""equilibrium_matching: both variants pass the kit; the target scale and its identities."""

from __future__ import annotations

import pytest
import torch
from ebmcore_losses.equilibrium_matching import EquilibriumMatching
from ebmcore_losses.flow_matching import FlowMatching
from ebmcore_models.fields import MLPField
from ebmcore_models.mlp import MLPEnergy
from torch import nn

import ebmcore
from ebmcore.field import EnergyField, Field, expand_time
from ebmcore.testing import check_loss

DATA = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))


def test_the_implicit_variant_passes_the_kit():
    check_loss(EquilibriumMatching(), MLPField(2, hidden=(16, 16)), DATA)


def test_the_explicit_variant_trains_an_energy_through_minus_its_gradient():
    energy = MLPEnergy(2, hidden=(16, 16), confine=False)
    check_loss(EquilibriumMatching(), energy, DATA)
    # the loss of the energy is the loss of its field -grad E, parameters reached through it
    loss = EquilibriumMatching()
    loss.set_generator(torch.Generator().manual_seed(3))
    a = loss(energy, DATA).loss
    loss.set_generator(torch.Generator().manual_seed(3))
    b = loss(EnergyField(energy), DATA).loss
    torch.testing.assert_close(a, b)


def test_the_field_sees_no_time_unless_asked():
    seen: list[torch.Tensor] = []

    class Recorder(Field):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(()))

        def forward(self, x, t):
            seen.append(expand_time(t, x).clone())
            return x * self.w

    EquilibriumMatching()(Recorder(), DATA)
    assert bool((seen[-1] == 0).all())
    EquilibriumMatching(time_invariant=False)(Recorder(), DATA)
    assert float(seen[-1].max()) > 0


def test_the_truncated_scale_is_torchebms():
    loss = EquilibriumMatching()
    t = torch.tensor([0.0, 0.5, 0.8, 0.9, 1.0])
    torch.testing.assert_close(loss.scale(t), torch.tensor([4.0, 4.0, 4.0, 2.0, 0.0]))
    torch.testing.assert_close(EquilibriumMatching(ct="linear", ct_multiplier=2.0).scale(t),
                               2.0 * (1 - t))
    torch.testing.assert_close(EquilibriumMatching(ct="constant").scale(t), torch.full((5,), 4.0))


def test_a_constant_scale_with_time_is_flow_matching_on_a_scaled_field():
    """With c = 1 and the drawn time shown, the objective is flow matching's exactly."""
    field = MLPField(2, hidden=(8,))
    eqm = EquilibriumMatching(ct="constant", ct_multiplier=1.0, time_invariant=False)
    fm = FlowMatching()
    for loss in (eqm, fm):
        loss.set_generator(torch.Generator().manual_seed(11))
    torch.testing.assert_close(eqm(field, DATA).loss, fm(field, DATA).loss)


def test_the_exact_time_invariant_target_on_a_point_mass():
    """Data at one point m, linear path: x_t = t m + (1 - t) x0 and u_t = m - x0, so
    c(t) u_t = c(t) (m - x_t) / (1 - t). Below the threshold c is constant and the
    target is 4 (m - x) / (1 - t); a field that returns it row by row has zero loss."""
    m = torch.tensor([[1.0, -2.0]])

    class Oracle(Field):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(()))
            self.times: torch.Tensor | None = None

        def forward(self, x, t):
            return loss.scale(self.times)[:, None] * (m - x) / (1 - self.times)[:, None]

    loss = EquilibriumMatching()
    oracle = Oracle()
    gen = torch.Generator().manual_seed(4)
    loss.set_generator(gen)
    data = m.expand(256, 2).clone()
    # replay the loss's draws to know its times: noise, then (independent coupling) times
    replay = torch.Generator().manual_seed(4)
    torch.randn(data.shape, generator=replay)
    oracle.times = torch.rand(256, generator=replay)
    assert float(loss(oracle, data).loss) < 1e-9


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="ct must be one of"):
        EquilibriumMatching(ct="cosine")
    with pytest.raises(ValueError, match="ct_threshold must be a number strictly inside"):
        EquilibriumMatching(ct_threshold=1.0)
    with pytest.raises(ValueError, match="ct_multiplier"):
        EquilibriumMatching(ct_multiplier=0.0)
    with pytest.raises(TypeError, match="time_invariant must be True or False"):
        EquilibriumMatching(time_invariant="yes")
    with pytest.raises(TypeError, match="model must be an ebmcore.Field"):
        EquilibriumMatching()(nn.Linear(2, 2), DATA)


def test_it_is_registered():
    assert ebmcore.get("loss", "eqm") is EquilibriumMatching
