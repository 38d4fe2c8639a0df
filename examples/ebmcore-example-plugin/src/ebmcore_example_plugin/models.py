"""A learnable energy for vector data: a radial-basis-function mixture."""

from __future__ import annotations

import torch
from ebmcore import Energy
from ebmcore.validation import check_int, check_positive
from torch import nn


class RBFEnergy(Energy):
    """``E(x) = -log Σ_k exp(w_k - |x - c_k|² / (2 s_k²))``: a mixture of Gaussian bumps.

    ``exp(-E)`` is an unnormalised mixture of ``n_components`` isotropic Gaussians with
    learnable centres ``c_k``, widths ``s_k`` and log-weights ``w_k``, so it is a density
    whatever the parameters: no confining term is needed. Its :class:`ebmcore.Component`
    declares ``data_shape="dim"``, so a run passes the data's flat size as ``dim``.

    Args:
        dim: Size of each input vector; the event shape is ``(dim,)``.
        n_components: Number of bumps.
        init_spread: Standard deviation of the initial centres (drawn with torch's global
            generator, which runs seed, like every ``nn`` layer's initialisation).
        init_width: Initial width of every bump.
    """

    normalisable = True

    def __init__(self, dim: int, n_components: int = 32, init_spread: float = 2.0,
                 init_width: float = 0.5) -> None:
        super().__init__()
        self.dim = check_int("dim", dim, minimum=1)
        self.n_components = check_int("n_components", n_components, minimum=1)
        check_positive("init_spread", init_spread)
        check_positive("init_width", init_width)
        self.event_shape = (self.dim,)
        self.centers = nn.Parameter(init_spread * torch.randn(self.n_components, self.dim))
        self.log_widths = nn.Parameter(torch.full((self.n_components,),
                                                  float(torch.tensor(init_width).log())))
        self.log_weights = nn.Parameter(torch.zeros(self.n_components))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the energies ``(B,)`` of a batch ``x`` of shape ``(B, dim)``."""
        if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != self.event_shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"RBFEnergy expects x of shape (B, {self.dim}), got {got}")
        sq = (x[:, None, :] - self.centers.to(x.dtype)).pow(2).sum(-1)  # (B, K)
        inv_var = torch.exp(-2.0 * self.log_widths.to(x.dtype))
        return -torch.logsumexp(self.log_weights.to(x.dtype) - 0.5 * sq * inv_var, dim=1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, n_components={self.n_components}"
