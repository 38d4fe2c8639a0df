"""An energy's energy-and-gradient call as one inductor graph with no per-call guards.

NUTS grows its trees one leaf at a time, so a run makes tens of thousands of small
energy-and-gradient calls; through ``torch.compile`` each call also pays dynamo's frame
evaluation and guards, some 0.2 ms on this project's CPU, ten to twenty times the compiled
code of a small posterior (Neal's funnel, 256 chains: 9 µs). Here the call is traced once
into an FX graph (``make_fx``: the forward and autograd's backward as aten operations) and
compiled by inductor (``compile_fx``), then called directly.

What the guards would have checked is fixed by construction instead: the batch's shape,
dtype and device are those of the graph (one graph per batch size), and the energy's
parameters and buffers are inputs of the graph, so changes made to them in place show at
the next call. What the trace bakes in is the energy's Python state (floats,
flags, which branch its ``forward`` takes): the energy must not change it while a run
uses the graph. An energy whose trace fails (data-dependent control flow, ``.item()``,
numba or numpy inside) raises :class:`~ebmcore.errors.BackendUnavailableError`.
"""

from __future__ import annotations

import itertools
import time

import torch

from ebmcore.energy import Energy
from ebmcore.errors import BackendUnavailableError


class _EnergyAndGrad(torch.nn.Module):
    """``energy.energy_and_grad`` as a module's forward, for ``functional_call``."""

    def __init__(self, energy: Energy) -> None:
        super().__init__()
        self.energy = energy

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            e, g = self.energy.energy_and_grad(x)
        return e.detach(), g.detach()


class TracedGradient:
    """Energies and flat gradients of a fixed batch of flat points, compiled without guards.

    Args:
        energy: The energy.
        like: Flat points ``(n, D)``: the batch's shape, dtype and device.
        event: The energy's event shape (``D`` flattened).

    Raises:
        BackendUnavailableError: When the call cannot be traced or compiled.
    """

    def __init__(self, energy: Energy, like: torch.Tensor, event: tuple[int, ...]) -> None:
        from torch._inductor.compile_fx import compile_fx
        from torch.fx.experimental.proxy_tensor import make_fx

        started = time.perf_counter()
        wrapper = _EnergyAndGrad(energy)
        named = dict(itertools.chain(wrapper.named_parameters(), wrapper.named_buffers()))
        self._names = tuple(named)
        self._tensors = tuple(t.detach() for t in named.values())
        n = like.shape[0]
        self.shape = tuple(like.shape)

        def flat(*args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            *tensors, z = args
            e, g = torch.func.functional_call(wrapper, dict(zip(self._names, tensors,
                                                                strict=True)),
                                              (z.view(n, *event),))
            return e, g.reshape(n, -1)

        example = [*self._tensors, like.detach()]
        try:
            graph = make_fx(flat)(*example)
            self._fn = compile_fx(graph, example)
            e, g = self._fn(*example)
        except Exception as exc:  # noqa: BLE001 - any failure means: no traced graph
            raise BackendUnavailableError(
                f"the energy's energy_and_grad could not be traced into one graph "
                f"({type(exc).__name__}: {str(exc)[:200]})") from exc
        if e.shape != (n,) or g.shape != like.shape:
            raise BackendUnavailableError(
                f"the traced energy_and_grad returned shapes {tuple(e.shape)} and "
                f"{tuple(g.shape)}, expected ({n},) and {tuple(like.shape)}")
        self.compile_seconds = time.perf_counter() - started

    def __call__(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies ``(n,)`` and flat gradients ``(n, D)`` at flat points ``z`` of the
        traced shape."""
        if tuple(z.shape) != self.shape:
            raise ValueError(f"z has shape {tuple(z.shape)}, the graph was traced for "
                             f"{self.shape}")
        e, g = self._fn(*self._tensors, z)
        return e, g

