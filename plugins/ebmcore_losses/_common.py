"""Pieces the losses share: sampler resolution, random-stream handling, noise boxes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

from ebmcore.energy import Energy, as_energy
from ebmcore.loss import Loss
from ebmcore.sampler import Sampler
from ebmcore.validation import check_points, same_device

#: Parameters a sampler given by name gets when ``sampler_params`` is ``None``: tuned for
#: training on data of unit to a few units of scale (the 2-D toy data sets).
DEFAULT_SAMPLER_PARAMS: dict[str, dict[str, Any]] = {
    "langevin": {"step_size": 0.01, "noise_scale": 1.0},
    "mala": {"step_size": 0.01, "adapt_step_size": False},
    "parallel_tempering": {"base": "langevin", "base_params": {"step_size": 0.01},
                           "temperatures": (1.0, 2.0, 4.0, 8.0)},
}


def resolve_sampler(sampler: Any, params: dict[str, Any] | None) -> Sampler:
    """Return a sampler instance from a name (built with ``params``) or an instance.

    Args:
        sampler: A registered sampler name or an :class:`ebmcore.Sampler` instance.
        params: Keyword parameters for a sampler given by name; ``None`` uses
            :data:`DEFAULT_SAMPLER_PARAMS` for that name (or none). Must be ``None`` for an
            instance, which is already configured.
    """
    if params is not None and not isinstance(params, dict):
        raise TypeError(f"sampler_params must be a dict or None, got {type(params).__name__}")
    if isinstance(sampler, str):
        import ebmcore

        if params is None:
            target = ebmcore.get("sampler", sampler)
            params = {}
            for key, value in DEFAULT_SAMPLER_PARAMS.items():  # aliases find their defaults
                with contextlib.suppress(ebmcore.EbmcoreError):
                    if ebmcore.get("sampler", key) is target:
                        params = dict(value)
        return ebmcore.create("sampler", sampler, **params)
    if isinstance(sampler, Sampler):
        if params:
            raise ValueError("sampler_params apply only to a sampler given by name; configure "
                             "the sampler instance itself instead")
        return sampler
    raise TypeError(f"sampler must be a sampler name or an ebmcore.Sampler instance, "
                    f"got {type(sampler).__name__}")


def check_generator(generator: Any) -> torch.Generator | None:
    """Return ``generator`` after checking it is a ``torch.Generator`` or ``None``.

    Args:
        generator: The value to check.
    """
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got "
                        f"{type(generator).__name__}")
    return generator


def check_bounds(bounds: Any) -> tuple[float, float] | None:
    """Return ``bounds`` as a ``(low, high)`` float pair with ``low < high``, or ``None``.

    Args:
        bounds: The value to check.
    """
    if bounds is None:
        return None
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise TypeError(f"noise_bounds must be a pair (low, high) of numbers or None, "
                        f"got {bounds!r}") from None
    if not low < high:
        raise ValueError(f"noise_bounds must satisfy low < high, got ({low}, {high})")
    return low, high


class StochasticLoss(Loss):
    """A loss that draws random numbers from a generator it is handed.

    The generator is borrowed, not owned: the :class:`ebmcore.train.Trainer` passes its own
    with :meth:`set_generator` and checkpoints that generator's state, so runs resume exactly.

    Args:
        generator: Source of randomness; ``None`` uses the generator set later with
            :meth:`set_generator`, or a private one seeded from the OS (never torch's global).
    """

    def __init__(self, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self._generator = check_generator(generator)

    @property
    def generator(self) -> torch.Generator | None:  # type: ignore[override]
        """The generator draws come from (``None`` until one is given or first needed)."""
        return self._generator

    def set_generator(self, generator: torch.Generator | None) -> None:
        """Use ``generator`` for every later random draw."""
        self._generator = check_generator(generator)

    def generator_for(self, x: torch.Tensor) -> torch.Generator:
        """Return the generator to draw with, checking it lives on ``x``'s device."""
        if self._generator is None:
            fresh = torch.Generator(device=x.device)
            fresh.seed()  # from the OS, leaving torch's global generator alone
            self._generator = fresh
        if not same_device(self._generator.device, x.device):
            raise ValueError(f"the loss's generator is on {self._generator.device} but the data "
                             f"is on {x.device}; pass torch.Generator(device=x.device)")
        return self._generator

    @staticmethod
    def check_batch(x: Any) -> torch.Tensor:
        """Check that the data batch is a finite floating-point ``(B, ...)`` tensor."""
        return check_points("x", x)

    def prepare(self, model: Any, x: Any) -> tuple[Energy, torch.Tensor, torch.Generator]:
        """Return what every ``forward`` starts from: the model as an energy, the checked
        data batch and the generator to draw with (checked in that order)."""
        model = as_energy(model)
        x = self.check_batch(x)
        return model, x, self.generator_for(x)


def noise_box(x: torch.Tensor, bounds: tuple[float, float] | None,
              margin: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """Return per-dimension ``(low, high)`` of the uniform noise that starts chains.

    With ``bounds`` the box is ``[low, high]`` in every dimension; without, it is the batch's
    per-dimension range widened by ``margin`` of that range on each side.

    Args:
        x: A data batch ``(B, *event_shape)``.
        bounds: ``(low, high)`` for every dimension, or ``None``.
        margin: Fraction of the batch's range added on each side when ``bounds`` is ``None``.
    """
    if bounds is not None:
        low = torch.full(x.shape[1:], bounds[0], dtype=x.dtype, device=x.device)
        return low, torch.full_like(low, bounds[1])
    lo = x.detach().amin(0)
    hi = x.detach().amax(0)
    width = (hi - lo).clamp_min(1e-3)
    return lo - margin * width, hi + margin * width


def uniform_noise(n: int, low: torch.Tensor, high: torch.Tensor,
                  generator: torch.Generator) -> torch.Tensor:
    """Draw ``n`` points uniformly from the box ``[low, high]``.

    Args:
        n: Number of points.
        low: Per-dimension lower corner.
        high: Per-dimension upper corner.
        generator: Source of randomness.
    """
    u = torch.rand((n, *low.shape), generator=generator, dtype=low.dtype, device=low.device)
    return low + (high - low) * u


def draw_replayed(buffer: torch.Tensor, n: int, reinit_prob: float,
                  fresh: Callable[[int], torch.Tensor], x: torch.Tensor,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` chain starts from a replay buffer of past negatives: ``(starts, rows)``.

    Each start is a random row of ``buffer``, or with probability ``reinit_prob`` the
    matching row of ``fresh(n)`` (drawn for every chain and selected by a mask, so no host
    sync); ``rows`` are the buffer rows to write the advanced chains back to.

    Args:
        buffer: The chains kept ``(N, *event_shape)``.
        n: Number of chains to draw.
        reinit_prob: Probability that a drawn chain restarts.
        fresh: Draws ``n`` restart points.
        x: The data batch ``(B, *event_shape)``: device, dtype and event shape.
        generator: Source of randomness.

    Raises:
        ValueError: When ``x``'s event shape is not the buffer's.
    """
    if buffer.shape[1:] != x.shape[1:]:
        raise ValueError(f"x has event shape {tuple(x.shape[1:])} but the replay buffer "
                         f"holds {tuple(buffer.shape[1:])}")
    rows = torch.randint(buffer.shape[0], (n,), generator=generator, device=x.device)
    restart = torch.rand(n, generator=generator, device=x.device) < reinit_prob
    mask = restart.view(n, *([1] * (x.ndim - 1)))
    return torch.where(mask, fresh(n), buffer[rows].to(x.dtype)), rows


def load_lazy_buffers(module: torch.nn.Module, state_dict: dict[str, Any],
                      prefix: str) -> None:
    """Give ``module``'s lazily shaped buffers (a replay buffer, empty until its first use)
    the shape saved in ``state_dict``, so that ``load_state_dict`` can copy values in; call
    from ``_load_from_state_dict`` before torch's own."""
    for name, buf in module._buffers.items():
        saved = state_dict.get(prefix + name)
        if buf is not None and isinstance(saved, torch.Tensor) and saved.shape != buf.shape:
            module._buffers[name] = torch.empty_like(saved, device=buf.device)
