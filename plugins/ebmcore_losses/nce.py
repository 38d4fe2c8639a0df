"""Noise-contrastive estimation with a learned log-normaliser (Gutmann & Hyvärinen 2010)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ebmcore.energy import Energy
from ebmcore.loss import LossOutput
from ebmcore.validation import check_energy_output, check_positive
from ebmcore_losses._common import StochasticLoss

_LOG_2PI = math.log(2 * math.pi)


class NoiseContrastiveEstimation(StochasticLoss):
    """Classify data against noise with ``log p(x) = -E(x) - c`` and a learned ``c``.

    The loss is ``-mean_data log σ(G) - ν mean_noise log σ(-G)`` with
    ``G(u) = -E(u) - c - log p_noise(u) - log ν``; at its optimum ``c`` is the model's log
    normaliser. Optimise the loss's own parameter ``log_z`` along with the model (the trainer's
    default optimiser does). The output's ``negatives`` are the noise samples drawn.

    Args:
        noise: Where noise comes from: ``None`` for a diagonal Gaussian fitted to the first
            data batch (its standard deviations times ``noise_scale``); an object with
            ``sample(n, generator)`` and ``log_prob(x)`` (an ``ebmcore.Dataset``); or an
            ``ebmcore.Energy`` with exact ``sample`` and known ``log_z``.
        noise_ratio: Noise samples per data sample ``ν``.
        noise_scale: Multiplies the fitted standard deviations (``noise=None`` only).
        init_log_z: Starting value of the learned log normaliser.
        generator: Source of randomness (the trainer sets its own with ``set_generator``).
    """

    def __init__(self, noise: Any = None, noise_ratio: float = 1.0, noise_scale: float = 1.0,
                 init_log_z: float = 0.0, generator: torch.Generator | None = None) -> None:
        super().__init__(generator)
        if noise is not None:
            if isinstance(noise, Energy):
                if noise.log_z is None or not noise.has_exact_sampler:
                    raise ValueError("an Energy used as NCE noise needs a known log_z and an "
                                     "exact sample(n, generator)")
            elif not (callable(getattr(noise, "sample", None))
                      and callable(getattr(noise, "log_prob", None))):
                raise TypeError(f"noise must be None, an Energy with log_z and sample, or an "
                                f"object with sample(n, generator) and log_prob(x); got "
                                f"{type(noise).__name__}")
        # Held in a tuple so that an Energy used as noise is not registered as a submodule:
        # its parameters must not be trained, nor its state saved with the loss.
        self._noise_source = (noise,)
        self.noise_ratio = check_positive("noise_ratio", noise_ratio)
        self.noise_scale = check_positive("noise_scale", noise_scale)
        if isinstance(init_log_z, bool) or not isinstance(init_log_z, (int, float)) \
                or not math.isfinite(init_log_z):
            raise ValueError(f"init_log_z must be a finite number, got {init_log_z!r}")
        self.log_z = nn.Parameter(torch.tensor(float(init_log_z)))
        self.register_buffer("noise_mean", torch.empty(0))
        self.register_buffer("noise_std", torch.empty(0))

    @property
    def noise(self) -> Any:
        """The noise source given at construction (``None`` for the fitted Gaussian)."""
        return self._noise_source[0]

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any,
                              **kwargs: Any) -> None:
        for name, buf in self._buffers.items():
            saved = state_dict.get(prefix + name)
            if buf is not None and isinstance(saved, torch.Tensor) and saved.shape != buf.shape:
                self._buffers[name] = torch.empty_like(saved, device=buf.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _noise_sample(self, n: int, x: torch.Tensor,
                      generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``n`` noise points and their log density."""
        if self.noise is None:
            if self.noise_mean.numel() == 0:
                if x.shape[0] < 2:
                    raise ValueError(f"nce fits its Gaussian noise to the first batch, which "
                                     f"needs at least 2 points; got {x.shape[0]}")
                flat = x.detach().flatten(1)
                self.noise_mean = flat.mean(0)
                self.noise_std = flat.std(0).clamp_min(1e-6) * self.noise_scale
            if self.noise_mean.numel() != x[0].numel():
                raise ValueError(f"x has event shape {tuple(x.shape[1:])} ({x[0].numel()} "
                                 f"values) but the Gaussian noise was fitted to "
                                 f"{self.noise_mean.numel()} values per point")
            mean, std = self.noise_mean.to(x), self.noise_std.to(x)
            z = torch.randn((n, mean.numel()), generator=generator, dtype=x.dtype,
                            device=x.device)
            y = mean + std * z
            log_p = -0.5 * z.pow(2).sum(1) - std.log().sum() - 0.5 * mean.numel() * _LOG_2PI
            return y.view(n, *x.shape[1:]), log_p
        y = self.noise.sample(n, generator=generator).to(x)
        if isinstance(self.noise, Energy):
            with torch.no_grad():
                log_p = -self.noise(y) - self.noise.log_z
        else:
            log_p = self.noise.log_prob(y)
        return y, log_p.detach().to(x)

    def forward(self, model: Energy, x: torch.Tensor) -> LossOutput:
        """Return the NCE loss of ``model`` on the data batch ``x``.

        Args:
            model: The energy being trained.
            x: A data batch ``(B, *event_shape)``.
        """
        model, x, generator = self.prepare(model, x)
        n_data = x.shape[0]
        n_noise = max(1, round(self.noise_ratio * n_data))
        log_nu = math.log(n_noise / n_data)
        y, log_pn_noise = self._noise_sample(n_noise, x, generator)
        if self.noise is None:
            mean, std = self.noise_mean.to(x), self.noise_std.to(x)
            z = (x.flatten(1) - mean) / std
            log_pn_data = (-0.5 * z.pow(2).sum(1) - std.log().sum()
                           - 0.5 * mean.numel() * _LOG_2PI)
        elif isinstance(self.noise, Energy):
            with torch.no_grad():
                log_pn_data = -self.noise(x) - self.noise.log_z
        else:
            log_pn_data = self.noise.log_prob(x).to(x)
        both = torch.cat([x, y])
        e = check_energy_output(model, both, model(both))
        log_pm = -e - self.log_z
        g_data = log_pm[:n_data] - log_pn_data - log_nu
        g_noise = log_pm[n_data:] - log_pn_noise - log_nu
        nu = n_noise / n_data
        loss = -F.logsigmoid(g_data).mean() - nu * F.logsigmoid(-g_noise).mean()
        accuracy = 0.5 * ((g_data > 0).to(x.dtype).mean() + (g_noise < 0).to(x.dtype).mean())
        return LossOutput(loss=loss, metrics={"log_z": self.log_z.detach(),
                                              "accuracy": accuracy.detach()},
                          negatives=y.detach())
