"""The built-in couplings: independent pairs, exact minibatch OT and Sinkhorn.

The two optimal-transport couplings hand the numerics to POT (``pot``, in the ``flows``
extra): its network-simplex solver for the exact plan and its log-domain Sinkhorn for the
entropic one. POT is imported when such a coupling is built, so a missing package fails
early with the command that installs it.
"""

from __future__ import annotations

import math
import warnings
from types import ModuleType

import torch

from ebmcore.coupling import Coupling, check_batches
from ebmcore_flows._optional import import_optional

__all__ = ["ExactOTCoupling", "IndependentCoupling", "SinkhornCoupling", "squared_distances"]


def squared_distances(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Return the ``(B, B)`` float64 matrix of squared Euclidean distances between the rows
    of ``x0`` and ``x1`` (each flattened)."""
    a = x0.detach().reshape(x0.shape[0], -1).to(torch.float64)
    b = x1.detach().reshape(x1.shape[0], -1).to(torch.float64)
    return torch.cdist(a, b).square()


def _positive(owner: str, label: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"coupling {owner!r}: {label} must be a positive number, got {value!r}")
    return float(value)


def _positive_int(owner: str, label: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"coupling {owner!r}: {label} must be a positive int, got {value!r}")
    return value


class IndependentCoupling(Coupling):
    """Keeps noise and data paired as drawn: the two batches are already independent."""

    def indices(self, x0: torch.Tensor, x1: torch.Tensor,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the identity pairing."""
        rows = torch.arange(x0.shape[0], device=x0.device)
        return rows, rows

    def pair(self, x0: torch.Tensor, x1: torch.Tensor,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(x0, x1)`` unchanged after checking their shapes (no copy)."""
        check_batches(x0, x1)
        return x0, x1


class _POTCoupling(Coupling):
    """A coupling computed by POT (the optional extra ``ebmcore[flows]``)."""

    def _pot(self) -> ModuleType:
        # looked up on use, never stored: a module attribute would make the coupling (and any
        # loss holding it) impossible to deep-copy or pickle
        return import_optional("ot", "pot", f"coupling {self.name!r}")


class ExactOTCoupling(_POTCoupling):
    """Pairs a minibatch by the permutation that minimises the total squared distance.

    With equal uniform weights the optimal plan is a permutation (a vertex of the Birkhoff
    polytope), which POT's ``ot.emd`` finds exactly; it costs about ``O(B^3)`` on the CPU.
    Nothing is drawn at random.

    Args:
        max_iterations: The network simplex's iteration cap; a batch that needs more raises
            ``RuntimeError`` rather than pairing by a plan that is not optimal.
    """

    name = "exact_ot"

    def __init__(self, max_iterations: int = 1_000_000) -> None:
        self.max_iterations = _positive_int(self.name, "max_iterations", max_iterations)
        self._pot()  # fail at construction, not mid-run, when POT is missing

    def indices(self, x0: torch.Tensor, x1: torch.Tensor,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(arange(B), perm)`` with ``perm`` the optimal assignment."""
        batch = x0.shape[0]
        cost = squared_distances(x0, x1).cpu()
        weights = torch.full((batch,), 1.0 / batch, dtype=torch.float64)
        with warnings.catch_warnings():  # an unfinished plan raises below, with the remedy
            warnings.simplefilter("ignore", UserWarning)
            plan, log = self._pot().emd(weights, weights, cost, numItermax=self.max_iterations,
                                     log=True)
        if log.get("warning"):
            raise RuntimeError(f"coupling {self.name!r}: POT's exact solver stopped before the "
                               f"optimum ({log['warning']}); raise max_iterations "
                               f"(now {self.max_iterations}) or use a smaller batch")
        cols = torch.as_tensor(plan).argmax(dim=1)
        if torch.unique(cols).numel() != batch:  # a degenerate vertex would repeat a column
            raise RuntimeError(f"coupling {self.name!r}: the exact plan is not a permutation")
        return torch.arange(batch), cols

    def __repr__(self) -> str:
        return f"ExactOTCoupling(max_iterations={self.max_iterations})"


class SinkhornCoupling(_POTCoupling):
    """Pairs a minibatch by drawing from the entropic OT plan that POT's Sinkhorn computes.

    Every noise row keeps its place; its datum is drawn from that row of the plan with the
    generator, so the pairs are a draw from the plan and a seeded run pairs the same way.

    Args:
        reg: The entropic regularisation, relative to the largest squared distance of the
            batch when ``normalize_cost`` (small: close to exact OT; large: independent).
        normalize_cost: Divide the cost by its maximum first, so ``reg`` means the same for
            any scale of data and dimension.
        max_iterations: Sinkhorn's iteration cap (POT warns when it stops unconverged).
        method: POT's Sinkhorn variant; ``"sinkhorn_log"`` (log domain) does not underflow
            at small ``reg``.
    """

    name = "sinkhorn"

    def __init__(self, reg: float = 0.05, normalize_cost: bool = True,
                 max_iterations: int = 1000, method: str = "sinkhorn_log") -> None:
        self.reg = _positive(self.name, "reg", reg)
        if not isinstance(normalize_cost, bool):
            raise ValueError(f"coupling {self.name!r}: normalize_cost must be True or False, "
                             f"got {normalize_cost!r}")
        self.normalize_cost = normalize_cost
        self.max_iterations = _positive_int(self.name, "max_iterations", max_iterations)
        methods = ("sinkhorn", "sinkhorn_log", "sinkhorn_stabilized")
        if method not in methods:
            raise ValueError(f"coupling {self.name!r}: method must be one of "
                             f"{', '.join(methods)}, got {method!r}")
        self.method = method
        self._pot()  # fail at construction, not mid-run, when POT is missing

    def plan(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """Return the ``(B, B)`` float64 entropic plan between the rows of ``x0`` and ``x1``
        (rows and columns each sum to ``1 / B``)."""
        batch = x0.shape[0]
        cost = squared_distances(x0, x1)
        if self.normalize_cost:
            cost = cost / cost.max().clamp_min(torch.finfo(cost.dtype).tiny)
        weights = torch.full((batch,), 1.0 / batch, dtype=torch.float64, device=cost.device)
        plan = self._pot().sinkhorn(weights, weights, cost, self.reg, method=self.method,
                                 numItermax=self.max_iterations)
        plan = torch.as_tensor(plan, device=cost.device)
        if not bool(torch.isfinite(plan).all()) or not bool((plan.sum(dim=1) > 0).all()):
            raise RuntimeError(f"coupling {self.name!r}: Sinkhorn returned a degenerate plan "
                               f"(reg={self.reg}); raise reg or keep normalize_cost=True")
        return plan

    def indices(self, x0: torch.Tensor, x1: torch.Tensor,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(arange(B), cols)`` with each ``cols[i]`` drawn from row ``i`` of the plan."""
        plan = self.plan(x0, x1)
        if generator is not None and generator.device != plan.device:
            plan = plan.to(generator.device)
        cols = torch.multinomial(plan, 1, generator=generator).squeeze(1)
        return torch.arange(x0.shape[0]), cols

    def __repr__(self) -> str:
        return (f"SinkhornCoupling(reg={self.reg}, normalize_cost={self.normalize_cost}, "
                f"max_iterations={self.max_iterations}, method={self.method!r})")
