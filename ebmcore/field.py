"""The field contract: a time-conditioned vector field ``v(x, t)`` with the shape of ``x``.

Time runs from noise to data: ``t = 0`` is the noise ``x0 ~ N(0, I)``, ``t = 1`` the data.
Inside losses ``t`` is a tensor of shape ``(B,)``, one time per row; an integrator passes a
float or a 0-d tensor, and :func:`expand_time` broadcasts it to ``(B,)``.

A scalar energy also serves as a field through ``v = -∇E`` (:class:`EnergyField`). Such a
field says so through :meth:`Field.energy`, so the evaluation knows it has a density.
:func:`as_field` turns either into a field; :func:`energy_of` goes the other way and says
clearly when a field has no energy.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ebmcore.energy import Energy


def expand_time(t: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Return the time ``t`` as a tensor of shape ``(B,)`` on ``x``'s device and dtype.

    Args:
        t: A float, a 0-d tensor (one time for the whole batch, as an integrator passes) or a
            tensor of shape ``(B,)`` (one time per row, as a loss passes).
        x: The batch ``(B, *event_shape)`` the times belong to.

    Raises:
        TypeError: When ``t`` is neither a number nor a tensor.
        ValueError: When a tensor ``t`` is neither 0-d nor of shape ``(B,)``.
    """
    batch = x.shape[0]
    if isinstance(t, bool) or not isinstance(t, (int, float, torch.Tensor)):
        raise TypeError(f"t must be a float or a tensor of shape () or (B,), got "
                        f"{type(t).__name__}")
    if not isinstance(t, torch.Tensor):
        return torch.full((batch,), float(t), device=x.device, dtype=x.dtype)
    t = t.to(device=x.device, dtype=x.dtype)
    if t.ndim == 0:
        return t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"t must have shape () or ({batch},) for a batch of {batch}, got "
                         f"{tuple(t.shape)}")
    return t


class Field(nn.Module):
    """Base class of every time-conditioned vector field ``v(x, t)``.

    Subclasses implement :meth:`forward`, which returns a tensor with the shape of ``x``
    and accepts ``t`` as a float, a 0-d tensor or a ``(B,)`` tensor (call
    :func:`expand_time` first). What the output means — a velocity, a score or a noise
    prediction — is set by the loss that trains the field; samplers convert it through the
    interpolant.

    Attributes:
        event_shape: The shape of one point, or ``None`` when any shape is accepted.
    """

    event_shape: tuple[int, ...] | None = None

    def forward(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """Return the field at ``x`` ``(B, *event_shape)`` and times ``t``, shaped like ``x``."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x, t)")

    def energy(self) -> Energy | None:
        """The energy ``E`` when this field is ``-∇E``, else ``None`` (the default).

        A field with an energy has a density ``exp(-E)``, so the evaluation can judge it as
        an energy too.
        """
        return None


class EnergyField(Field):
    """The field ``v(x, t) = -∇E(x)`` of an energy; the time is ignored.

    Under ``torch.no_grad`` (sampling) the gradient is the energy's own
    :meth:`~ebmcore.Energy.grad` (closed form where the energy knows it). With gradients
    enabled (training) it is taken by autograd with ``create_graph=True``, so a loss on the
    field reaches the energy's parameters.

    Args:
        energy: The energy whose negative gradient is the field.
    """

    def __init__(self, energy: Energy) -> None:
        super().__init__()
        if not isinstance(energy, Energy):
            raise TypeError(f"energy must be an ebmcore.Energy, got {type(energy).__name__}")
        self.wrapped = energy
        self.event_shape = energy.event_shape

    def forward(self, x: torch.Tensor, t: float | torch.Tensor | None = None) -> torch.Tensor:
        """Return ``-∇E(x)`` with the shape of ``x``; ``t`` is accepted and ignored."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError("x must be a floating-point torch.Tensor")
        if not torch.is_grad_enabled():
            return -self.wrapped.grad(x)
        x_ = x if x.requires_grad else x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.wrapped(x_).sum(), x_, create_graph=True)
        return -grad

    def energy(self) -> Energy:
        """The wrapped energy: this field is ``-∇E``, so it has a density."""
        return self.wrapped


def as_field(obj: Any) -> Field:
    """Return ``obj`` as a :class:`Field`: a field as it is, an energy as ``-∇E``.

    Raises:
        TypeError: For anything else, saying what was expected.
    """
    if isinstance(obj, Field):
        return obj
    if isinstance(obj, Energy):
        return EnergyField(obj)
    raise TypeError(f"model must be an ebmcore.Field (a vector field v(x, t), such as the "
                    f"'mlp_field' or 'unet_field' model) or an ebmcore.Energy (used as the "
                    f"field -grad E), got {type(obj).__name__}")


def energy_of(obj: Any) -> Energy:
    """Return the energy behind ``obj``: an energy as it is, a field's :meth:`Field.energy`.

    Raises:
        TypeError: For a field that is not the gradient of an energy (it has no density, so
            energy-based losses, MCMC samplers and energy evaluation cannot use it), or for
            anything that is neither a field nor an energy.
    """
    if isinstance(obj, Energy):
        return obj
    if isinstance(obj, Field):
        energy = obj.energy()
        if energy is not None:
            return energy
        raise TypeError(f"{type(obj).__name__} is a vector field v(x, t) with no energy, but "
                        f"an ebmcore.Energy is needed here; sample a field with the 'flow' "
                        f"sampler and train it with a field loss (flow_matching, "
                        f"equilibrium_matching, diffusion), or use an energy model (such as "
                        f"'mlp') for energy losses and MCMC samplers")
    raise TypeError(f"expected an ebmcore.Energy (or a Field that is -grad E), got "
                    f"{type(obj).__name__}")


def check_sampler_fits(model: Any, sampler: Any, name: str) -> None:
    """Refuse a sampler that cannot sample ``model``, before any work is done.

    A field without an energy has no density for a Markov chain to sample: it is sampled by
    integrating it (the ``flow`` sampler). An energy, or a field that is ``-∇E``, is sampled
    by MCMC (an :class:`ebmcore.Sampler`); an integrator of fields carries noise along
    ``-∇E``, which descends the energy rather than sampling ``exp(-E)``.

    Args:
        model: The model to sample (a field or an energy).
        sampler: The sampler, an instance or the class (or factory) a name resolves to;
            a factory that is not a class is not judged.
        name: The sampler's name, for the message.

    Raises:
        TypeError: Naming the model, the sampler and what to use instead.
    """
    from ebmcore.sampler import Sampler

    if isinstance(sampler, type):
        mcmc = issubclass(sampler, Sampler)
    elif isinstance(sampler, Sampler):
        mcmc = True
    elif callable(sampler):
        return  # a factory function: what it builds is unknown until it is called
    else:
        mcmc = False  # a sampler object outside the MCMC contract (the flow sampler)
    flow_model = isinstance(model, Field) and model.energy() is None
    if flow_model and mcmc:
        raise TypeError(f"{type(model).__name__} is a vector field v(x, t) with no energy, "
                        f"which the MCMC sampler {name!r} cannot sample: sample it with the "
                        f"'flow' sampler (it integrates the field from noise), or train an "
                        f"energy model (such as 'mlp') to sample with {name!r}")
    if not flow_model and not mcmc:
        raise TypeError(f"{type(model).__name__} is an energy, sampled by MCMC, but sampler "
                        f"{name!r} is not an MCMC sampler (an ebmcore.Sampler): it integrates "
                        f"fields; name an MCMC sampler (such as 'langevin' or 'mala'), or "
                        f"train a field model (such as 'mlp_field') to sample with {name!r}")
