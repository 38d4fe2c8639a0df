"""Score matching: fit ``-∇E`` to the data score without sampling from the model.

With the model score ``s(x) = -∇E(x)``, Hyvärinen's objective is
``E_data[ ½‖s(x)‖² + tr ∇s(x) ] = E_data[ ½‖∇E(x)‖² - ΔE(x) ]``. The sliced form replaces
the trace by random projections; the denoising form matches the score of the data convolved
with Gaussian noise. All three differentiate through ``∇E`` (``create_graph=True``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ebmcore.energy import Energy, as_energy
from ebmcore.loss import LossOutput
from ebmcore.validation import check_energy_output, check_int, check_positive
from ebmcore_losses._common import StochasticLoss


def energy_gradient(model: Energy, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(x_, ∇E(x_))`` with ``x_`` a leaf copy of ``x`` and the graph kept.

    Args:
        model: The energy.
        x: The points ``(B, *event_shape)``.
    """
    x_ = x.detach().requires_grad_(True)
    e = check_energy_output(model, x_, model(x_))
    (grad,) = torch.autograd.grad(e.sum(), x_, create_graph=True)
    return x_, grad


class ScoreMatching(StochasticLoss):
    """Exact score matching (Hyvärinen 2005) with the Hessian trace computed exactly.

    The Laplacian ``ΔE`` costs one extra backward pass per dimension, so this suits small
    event sizes; use ``sliced_score_matching`` beyond that. The score does not fix how much
    mass separate regions of the data hold, so a smooth energy serves it best: with ``mlp``,
    two hidden layers rather than its default four (``ebmcore.config.LOSS_RECIPES``).

    Args:
        max_dim: Largest flattened event size accepted (the cost grows linearly with it).
    """

    def __init__(self, max_dim: int = 64) -> None:
        super().__init__()
        self.max_dim = check_int("max_dim", max_dim, minimum=1)

    def forward(self, model: Energy, x: torch.Tensor) -> LossOutput:
        """Return the score-matching loss of ``model`` on ``x``.

        Args:
            model: The energy being trained.
            x: A data batch ``(B, *event_shape)``.
        """
        model = as_energy(model)
        x = self.check_batch(x)
        dim = x[0].numel()
        if dim > self.max_dim:
            raise ValueError(f"exact score matching needs one backward pass per dimension; "
                             f"x has {dim} > max_dim={self.max_dim} dimensions. Use "
                             f"'sliced_score_matching' or raise max_dim")
        x_, grad = energy_gradient(model, x)
        flat = grad.flatten(1)
        laplacian = torch.zeros_like(flat[:, 0])
        for d in range(dim):
            (second,) = torch.autograd.grad(flat[:, d].sum(), x_, create_graph=True)
            laplacian = laplacian + second.flatten(1)[:, d]
        half_sq = 0.5 * flat.pow(2).sum(1)
        loss = (half_sq - laplacian).mean()
        return LossOutput(loss=loss, metrics={"grad_norm_sq": 2 * half_sq.mean().detach(),
                                              "laplacian": laplacian.mean().detach()})


class SlicedScoreMatching(StochasticLoss):
    """Sliced score matching (Song et al. 2019) with Gaussian projections.

    Per projection ``v ~ N(0, I)`` the objective is ``vᵀ∇s v + ½(vᵀs)²``; the variance-reduced
    form replaces ``½(vᵀs)²`` by its expectation ``½‖s‖²``. Both are unbiased for exact
    score matching; each projection costs one Hessian-vector product. Like exact score
    matching it trains best on a smooth energy (``mlp`` with two hidden layers) and, on the
    2-D data sets, with the gradient norm clipped at 1 (``ebmcore.config.LOSS_RECIPES``).

    Args:
        n_projections: Projections per data point.
        variance_reduced: Use the closed-form expectation of the quadratic term (SSM-VR).
        generator: Source of randomness (the trainer sets its own with ``set_generator``).
    """

    def __init__(self, n_projections: int = 1, variance_reduced: bool = True,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(generator)
        self.n_projections = check_int("n_projections", n_projections, minimum=1)
        if not isinstance(variance_reduced, bool):
            raise TypeError(f"variance_reduced must be a bool, got "
                            f"{type(variance_reduced).__name__}")
        self.variance_reduced = variance_reduced

    def forward(self, model: Energy, x: torch.Tensor) -> LossOutput:
        """Return the sliced score-matching loss of ``model`` on ``x``.

        Args:
            model: The energy being trained.
            x: A data batch ``(B, *event_shape)``.
        """
        model, x, generator = self.prepare(model, x)
        m = self.n_projections
        # Each point is repeated once per projection: one batched Hessian-vector product.
        x_rep = x.detach().repeat(m, *([1] * (x.ndim - 1)))
        v = torch.randn(x_rep.shape, generator=generator, dtype=x.dtype, device=x.device)
        x_, grad = energy_gradient(model, x_rep)
        (hv,) = torch.autograd.grad((grad * v).sum(), x_, create_graph=True)
        vhv = (hv * v).flatten(1).sum(1)  # vᵀ ∇²E v = -vᵀ ∇s v
        if self.variance_reduced:
            quad = 0.5 * grad.flatten(1).pow(2).sum(1)
        else:
            quad = 0.5 * (grad * v).flatten(1).sum(1).pow(2)
        loss = (quad - vhv).mean()
        return LossOutput(loss=loss, metrics={"quadratic": quad.mean().detach(),
                                              "vhv": vhv.mean().detach()})


def _check_sigmas(sigmas: Any) -> tuple[float, ...]:
    if isinstance(sigmas, (int, float)) and not isinstance(sigmas, bool):
        return (check_positive("sigmas", sigmas),)
    if isinstance(sigmas, (str, bytes)) or not isinstance(sigmas, Sequence) or not sigmas:
        raise TypeError(f"sigmas must be a positive number or a non-empty sequence of them, "
                        f"got {sigmas!r}")
    return tuple(check_positive(f"sigmas[{i}]", s) for i, s in enumerate(sigmas))


class DenoisingScoreMatching(StochasticLoss):
    """Denoising score matching (Vincent 2011) at one or several noise levels.

    For ``x̃ = x + σε`` the target score is ``-ε/σ``; the loss is
    ``½ σ² ‖s(x̃) + ε/σ‖² = ½ ‖σ∇E(x̃) - ε‖²``, weighted by ``σ²`` so that noise levels
    contribute alike (Song & Ermon 2019). With several levels each point draws one uniformly.
    The minimiser is the score of the data convolved with ``N(0, σ²I)``, not of the data.

    Args:
        sigmas: A noise standard deviation or a sequence of them.
        generator: Source of randomness (the trainer sets its own with ``set_generator``).
    """

    def __init__(self, sigmas: float | Sequence[float] = 0.1,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(generator)
        self.sigmas = _check_sigmas(sigmas)

    def forward(self, model: Energy, x: torch.Tensor) -> LossOutput:
        """Return the denoising score-matching loss of ``model`` on ``x``.

        Args:
            model: The energy being trained.
            x: A data batch ``(B, *event_shape)``.
        """
        model, x, generator = self.prepare(model, x)
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        if len(self.sigmas) == 1:
            sigma = torch.full(shape, self.sigmas[0], dtype=x.dtype, device=x.device)
        else:
            table = torch.tensor(self.sigmas, dtype=x.dtype, device=x.device)
            pick = torch.randint(len(self.sigmas), (x.shape[0],), generator=generator,
                                 device=x.device)
            sigma = table[pick].view(shape)
        eps = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        _, grad = energy_gradient(model, x.detach() + sigma * eps)
        per_point = 0.5 * (sigma * grad - eps).flatten(1).pow(2).sum(1)
        return LossOutput(loss=per_point.mean())
