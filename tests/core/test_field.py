"""The field contract: Field, EnergyField, as_field, energy_of and expand_time."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ebmcore.energy import Energy
from ebmcore.field import EnergyField, Field, as_field, energy_of, expand_time


class _Quartic(Energy):
    """E(x) = sum(w * x^4) + x . b, a trainable energy with a known gradient."""

    event_shape = (3,)

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.5, 1.0, 2.0]))
        self.b = nn.Parameter(torch.tensor([0.1, -0.2, 0.3]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.w * x**4).sum(-1) + x @ self.b


class _Rotation(Field):
    """v(x, t) = t * (-x2, x1): a field that is no gradient."""

    event_shape = (2,)

    def forward(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        return expand_time(t, x)[:, None] * torch.stack([-x[:, 1], x[:, 0]], dim=1)


def test_energy_field_is_minus_the_autograd_gradient():
    energy = _Quartic()
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(0))
    x_ = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(energy(x_).sum(), x_)
    field = EnergyField(energy)
    torch.testing.assert_close(field(x, 0.3), -expected)
    with torch.no_grad():  # the sampling path: the energy's own grad, no graph
        sampled = field(x, torch.tensor(0.9))
    torch.testing.assert_close(sampled, -expected)
    assert not sampled.requires_grad
    torch.testing.assert_close(-energy.w.detach() * 4 * x**3 - energy.b.detach(), -expected)


def test_energy_field_ignores_time_and_keeps_a_graph_to_the_parameters():
    energy = _Quartic()
    field = EnergyField(energy)
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(field(x, 0.0), field(x, torch.rand(8)))
    field(x, 0.5).square().sum().backward()  # a loss on the field reaches E's parameters
    assert energy.w.grad is not None and bool((energy.w.grad != 0).any())
    assert field.energy() is energy
    assert field.event_shape == (3,)


def test_energy_field_keeps_the_graph_to_an_input_that_requires_grad():
    field = EnergyField(_Quartic())
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(2), requires_grad=True)
    v = field(x, 0.0)
    (div_part,) = torch.autograd.grad(v[:, 0].sum(), x)  # d v_0 / d x_0 = -12 w_0 x_0^2
    torch.testing.assert_close(div_part[:, 0], -12 * 0.5 * x.detach()[:, 0] ** 2)


def test_as_field_accepts_fields_and_energies_only():
    rotation = _Rotation()
    assert as_field(rotation) is rotation
    energy = _Quartic()
    wrapped = as_field(energy)
    assert isinstance(wrapped, EnergyField) and wrapped.energy() is energy
    with pytest.raises(TypeError, match="ebmcore.Field .* or an ebmcore.Energy"):
        as_field(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="got str"):
        as_field("mlp_field")


def test_a_field_where_an_energy_is_needed_is_a_clear_error():
    energy = _Quartic()
    assert energy_of(energy) is energy
    assert energy_of(EnergyField(energy)) is energy
    assert _Rotation().energy() is None
    with pytest.raises(TypeError, match="_Rotation is a vector field .* no energy.*'flow'"):
        energy_of(_Rotation())
    with pytest.raises(TypeError, match="expected an ebmcore.Energy"):
        energy_of(nn.Linear(2, 2))


def test_energy_field_rejects_what_is_not_an_energy():
    with pytest.raises(TypeError, match="energy must be an ebmcore.Energy, got _Rotation"):
        EnergyField(_Rotation())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="floating-point"):
        EnergyField(_Quartic())(torch.ones(2, 3, dtype=torch.long), 0.0)


def test_expand_time_broadcasts_scalars_and_checks_shapes():
    x = torch.zeros(5, 2, dtype=torch.float64)
    for t in (0.25, torch.tensor(0.25), torch.full((5,), 0.25)):
        out = expand_time(t, x)
        assert out.shape == (5,) and out.dtype == torch.float64
        assert bool((out == 0.25).all())
    with pytest.raises(ValueError, match=r"t must have shape \(\) or \(5,\)"):
        expand_time(torch.zeros(3), x)
    with pytest.raises(TypeError, match="t must be a float or a tensor"):
        expand_time("0.5", x)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="t must be a float or a tensor"):
        expand_time(True, x)  # type: ignore[arg-type]
    field = _Rotation()
    torch.testing.assert_close(field(torch.ones(5, 2), 0.5), field(torch.ones(5, 2),
                                                                     torch.full((5,), 0.5)))


def test_a_sampler_that_cannot_sample_the_model_is_refused_by_name():
    import ebmcore
    from ebmcore.energy import as_energy
    from ebmcore.field import check_sampler_fits

    langevin = ebmcore.create("sampler", "langevin", step_size=0.1)
    flow = ebmcore.create("sampler", "flow")
    energy = _Quartic()
    check_sampler_fits(energy, langevin, "langevin")
    check_sampler_fits(EnergyField(energy), type(langevin), "langevin")  # -grad E: MCMC
    check_sampler_fits(_Rotation(), flow, "flow")
    with pytest.raises(TypeError, match="_Rotation is a vector field.*MCMC sampler 'langevin' "
                                        "cannot sample.*'flow' sampler"):
        check_sampler_fits(_Rotation(), type(langevin), "langevin")
    with pytest.raises(TypeError, match="_Quartic is an energy.*'flow' is not an MCMC sampler"
                                        ".*'langevin'.*'mlp_field'"):
        check_sampler_fits(energy, flow, "flow")
    check_sampler_fits(energy, lambda: None, "factory")  # unknown until built: not judged
    # a field where an energy is needed: its energy when it is -grad E, else a clear error
    assert as_energy(EnergyField(energy)) is energy
    with pytest.raises(TypeError, match="_Rotation is a vector field .* no energy.*'flow'"):
        langevin.sample(_Rotation(), torch.zeros(3, 2), 2)
