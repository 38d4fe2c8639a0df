"""The guard-free traced energy-and-gradient call (``ebmcore_samplers.compiled.traced``)."""

from __future__ import annotations

import ebmcore_samplers.compiled as compiled
import pytest
import torch
from core_sampler_helpers import BranchingEnergy
from ebmcore_samplers.compiled.traced import TracedGradient

import ebmcore
from ebmcore.errors import BackendUnavailableError

pytestmark = pytest.mark.skipif(compiled.compiler_reason(torch.zeros(1)) is not None,
                                reason="torch.compile cannot run here")


class SmallNet(ebmcore.Energy):
    """A two-layer network energy on 2x3 events: parameters, a buffer, an event shape."""

    event_shape = (2, 3)

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.w1 = torch.nn.Parameter(torch.randn(6, 8, generator=gen, dtype=torch.float64))
        self.w2 = torch.nn.Parameter(torch.randn(8, generator=gen, dtype=torch.float64))
        self.register_buffer("shift", torch.full((6,), 0.25, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh((x.reshape(x.shape[0], -1) - self.shift) @ self.w1)
        return h @ self.w2 + 0.5 * x.square().sum((1, 2))


def _autograd(energy: ebmcore.Energy, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    zr = z.view(z.shape[0], 2, 3).clone().requires_grad_(True)
    e = energy(zr)
    (g,) = torch.autograd.grad(e.sum(), zr)
    return e.detach(), g.reshape(z.shape[0], -1)


def test_the_traced_call_matches_autograd_and_sees_parameter_updates() -> None:
    energy = SmallNet()
    z = torch.randn(12, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    call = TracedGradient(energy, z, (2, 3))
    assert call.compile_seconds > 0
    for _ in range(2):
        e, g = call(z)
        e_ref, g_ref = _autograd(energy, z)
        torch.testing.assert_close(e, e_ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)
        # Parameters and buffers are the graph's inputs: changes made in place show.
        with torch.no_grad():
            energy.w2.mul_(-2.0)
            energy.shift.add_(1.0)
    with pytest.raises(ValueError, match="traced for"):
        call(z[:5])


def test_an_energy_that_branches_on_values_is_refused() -> None:
    z = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(BackendUnavailableError, match="could not be traced"):
        TracedGradient(BranchingEnergy(3), z, (3,))
