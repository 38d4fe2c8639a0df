"""The lockstep No-U-Turn transition: every chain grows its own tree, all chains in one batch.

One transition of the multinomial NUTS of Betancourt (2017), as in Stan and BlackJAX:

- the trajectory doubles in a random direction per chain until it makes a U-turn, diverges or
  reaches the maximum depth; the new half of each doubling is built leaf by leaf;
- within a new half, each leaf becomes the half's proposal with probability proportional to
  its weight ``exp(-H)`` (uniform progressive sampling, i.e. exact multinomial sampling);
  a finished half replaces the tree's proposal with probability ``min(1, W_new / W_old)``
  (biased progressive sampling);
- U-turns inside a half are checked on every balanced sub-tree with the iterative
  checkpoint scheme of NumPyro / BlackJAX (Phan et al. 2019), the whole tree with the
  generalised criterion on the summed momentum ``rho``.

All chains that are still growing are at the same depth and the same leaf, so the leaf and
checkpoint indices are Python integers shared by every chain. At the start of each doubling
the still-growing chains are gathered into one compact batch (one host synchronisation per
doubling); inside a doubling a chain that stops is masked, so each leapfrog step is one
energy-and-gradient call for the whole batch. An energy whose value depends on the row
(a batch of tempered replicas) provides ``take_rows(index) -> Energy`` for the compacted batch.
"""

from __future__ import annotations

import math

import torch

from ebmcore.energy import Energy
from ebmcore_samplers._common import flat, per_chain

#: Keys of the per-chain tree record (all tensors with the chains along dimension 0).
_TREE_KEYS = ("xl", "pl", "gl", "xr", "pr", "gr", "rho", "log_w", "px", "pe", "pg", "h0",
              "eps", "sum_accept", "n_leapfrog", "depth", "diverged")


def kinetic(p: torch.Tensor, inv_mass: torch.Tensor | None) -> torch.Tensor:
    """Kinetic energy ``p^T M^{-1} p / 2`` per chain for a diagonal inverse mass."""
    v = p if inv_mass is None else p * inv_mass
    return 0.5 * torch.linalg.vecdot(flat(v), flat(p))


def draw_momentum(x: torch.Tensor, inv_mass: torch.Tensor | None,
                  generator: torch.Generator) -> torch.Tensor:
    """Draw ``p ~ N(0, M)`` with ``M = diag(1 / inv_mass)`` for every chain."""
    p = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return p if inv_mass is None else p.mul_(inv_mass.rsqrt())


def is_turning(p_a: torch.Tensor, p_b: torch.Tensor, rho: torch.Tensor,
               inv_mass: torch.Tensor | None) -> torch.Tensor:
    """Generalised no-U-turn criterion (Betancourt 2017): True where the span turns back.

    ``p_a`` and ``p_b`` are the momenta at the span's two ends, ``rho`` the sum of the
    momenta over the span (ends included). The criterion is symmetric in the two ends.
    """
    r = flat(rho)
    v_a = flat(p_a if inv_mass is None else p_a * inv_mass)
    v_b = flat(p_b if inv_mass is None else p_b * inv_mass)
    return (torch.linalg.vecdot(v_a, r) <= 0) | (torch.linalg.vecdot(v_b, r) <= 0)


def checkpoint_range(leaf: int) -> tuple[int, int]:
    """Checkpoints ``[lo, hi]`` to test at odd leaf ``leaf`` (and ``hi`` stores at even ones).

    ``hi`` is the number of set bits of ``leaf >> 1``; the sub-trees that end at ``leaf`` are
    as many as its trailing one bits, and they start at checkpoints ``hi, hi - 1, ...``.
    """
    hi = bin(leaf >> 1).count("1")
    trailing = 0
    n = leaf
    while n & 1:
        n >>= 1
        trailing += 1
    return hi - trailing + 1, hi


def _double(energy: Energy, t: dict[str, torch.Tensor], depth: int,
            inv_mass: torch.Tensor | None, max_energy_error: float,
            generator: torch.Generator) -> torch.Tensor:
    """Grow every chain of ``t`` by ``2**depth`` leaves; update ``t``; return who continues."""
    x_prev = t["xl"]
    n, nd = x_prev.shape[0], x_prev.ndim
    n_leaves = 2 ** depth
    # One draw for all of this doubling's randomness: direction, each leaf, the merge.
    u = torch.rand((n_leaves + 2, n), generator=generator, dtype=x_prev.dtype,
                   device=x_prev.device)
    forward = u[0] < 0.5
    fwd = per_chain(forward, nd)
    eps = per_chain(torch.where(forward, t["eps"], -t["eps"]), nd)
    half_eps = 0.5 * eps
    x = torch.where(fwd, t["xr"], t["xl"])
    p = torch.where(fwd, t["pr"], t["pl"])
    g = torch.where(fwd, t["gr"], t["gl"])
    h0 = t["h0"]

    alive = torch.ones(n, dtype=torch.bool, device=x.device)
    diverged = torch.zeros_like(alive)
    log_w = torch.full_like(h0, -math.inf)
    rho = torch.zeros_like(p)
    sx, se, sg = x, t["pe"], g  # the new half's proposal; leaf 0 always replaces it
    sum_accept = torch.zeros_like(h0)
    n_leapfrog = torch.zeros_like(t["n_leapfrog"])
    ckpt_p: list[torch.Tensor | None] = [None] * depth
    ckpt_rho: list[torch.Tensor | None] = [None] * depth

    for leaf in range(n_leaves):
        # Leapfrog; chains that stopped inside this half keep moving but are masked out.
        p = torch.addcmul(p, half_eps, g, value=-1.0)
        x = torch.addcmul(x, eps, p if inv_mass is None else p * inv_mass)
        e, g = energy.energy_and_grad(x)
        p = torch.addcmul(p, half_eps, g, value=-1.0)

        delta = e + kinetic(p, inv_mass) - h0  # energy error H - H0
        delta = torch.where(torch.isnan(delta), math.inf, delta)
        sum_accept += torch.where(alive, torch.exp(-delta).clamp_(max=1.0), 0.0)
        n_leapfrog += alive
        new_log_w = torch.logaddexp(log_w, -delta)
        take = alive & (u[leaf + 1] < torch.exp(-delta - new_log_w))
        log_w = torch.where(alive, new_log_w, log_w)
        take_b = per_chain(take, nd)
        sx = torch.where(take_b, x, sx)
        sg = torch.where(take_b, g, sg)
        se = torch.where(take, e, se)
        rho = rho + torch.where(per_chain(alive, nd), p, 0.0)

        stop = alive & (delta > max_energy_error)
        diverged |= stop
        if depth > 0:
            lo, hi = checkpoint_range(leaf)
            if leaf % 2 == 0:
                ckpt_p[hi], ckpt_rho[hi] = p, rho
            else:
                for i in range(lo, hi + 1):
                    span_rho = rho - ckpt_rho[i] + ckpt_p[i]
                    stop = stop | is_turning(ckpt_p[i], p, span_rho, inv_mass)
        alive = alive & ~stop

    t["sum_accept"] = t["sum_accept"] + sum_accept
    t["n_leapfrog"] = t["n_leapfrog"] + n_leapfrog
    t["diverged"] = t["diverged"] | diverged
    # A half that stopped early is discarded: no new end, no new proposal.
    valid = alive
    grow_right = per_chain(valid & forward, nd)
    grow_left = per_chain(valid & ~forward, nd)
    for side, grow in (("r", grow_right), ("l", grow_left)):
        t["x" + side] = torch.where(grow, x, t["x" + side])
        t["p" + side] = torch.where(grow, p, t["p" + side])
        t["g" + side] = torch.where(grow, g, t["g" + side])
    take = valid & (u[n_leaves + 1] < torch.exp(log_w - t["log_w"]))
    take_b = per_chain(take, nd)
    t["px"] = torch.where(take_b, sx, t["px"])
    t["pg"] = torch.where(take_b, sg, t["pg"])
    t["pe"] = torch.where(take, se, t["pe"])
    t["log_w"] = torch.where(valid, torch.logaddexp(t["log_w"], log_w), t["log_w"])
    t["rho"] = torch.where(per_chain(valid, nd), t["rho"] + rho, t["rho"])
    t["depth"] = t["depth"] + valid
    return valid & ~is_turning(t["pl"], t["pr"], t["rho"], inv_mass)


def transition(energy: Energy, x: torch.Tensor, e: torch.Tensor, g: torch.Tensor,
               step_size: torch.Tensor, inv_mass: torch.Tensor | None, max_depth: int,
               max_energy_error: float, generator: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Run one NUTS transition for every chain.

    Args:
        energy: The target energy.
        x: Positions ``(B, *event)``; not modified.
        e: Energies ``(B,)`` at ``x``.
        g: Gradients at ``x``.
        step_size: Per-chain step sizes ``(B,)``.
        inv_mass: Diagonal inverse mass with the event shape, or ``None`` for the identity.
        max_depth: Maximum number of doublings.
        max_energy_error: Energy error ``H - H0`` beyond which a leaf counts as divergent.
        generator: Source of randomness.

    Returns:
        New positions, energies and gradients, and per-chain info: ``acceptance`` (mean
        Metropolis acceptance over the tree's leaves, the statistic step-size adaptation
        uses), ``tree_depth``, ``n_grad`` (leapfrog steps, one gradient each) and
        ``diverged``.
    """
    b = x.shape[0]
    p0 = draw_momentum(x, inv_mass, generator)
    h0 = e + kinetic(p0, inv_mass)
    int_zeros = torch.zeros(b, dtype=torch.long, device=x.device)
    # Ends and proposal start at the initial point. The record is only ever replaced
    # (never written in place), so sharing x, p0 and g between entries is safe.
    t = {"xl": x, "pl": p0, "gl": g, "xr": x, "pr": p0, "gr": g, "rho": p0,
         "log_w": torch.zeros_like(e), "px": x, "pe": e, "pg": g, "h0": h0,
         "eps": step_size, "sum_accept": torch.zeros_like(e), "n_leapfrog": int_zeros,
         "depth": int_zeros, "diverged": torch.zeros(b, dtype=torch.bool, device=x.device)}
    active: torch.Tensor | None = None
    for depth in range(max_depth):
        idx = None
        if active is not None:
            idx = torch.nonzero(active).squeeze(1)  # the one host sync per doubling
            if idx.numel() == 0:
                break
            if idx.numel() == b:
                idx = None
        if idx is None:
            active = _double(energy, t, depth, inv_mass, max_energy_error, generator)
        else:
            sub = {k: v.index_select(0, idx) for k, v in t.items()}
            # Energies that depend on the row (tempered replicas) follow the compaction.
            take_rows = getattr(energy, "take_rows", None)
            sub_energy = energy if take_rows is None else take_rows(idx)
            still = _double(sub_energy, sub, depth, inv_mass, max_energy_error, generator)
            t = {k: v.index_copy(0, idx, sub[k]) for k, v in t.items()}
            active = torch.zeros_like(active).index_copy_(0, idx, still)
    info = {
        "acceptance": t["sum_accept"] / t["n_leapfrog"].clamp(min=1),
        "tree_depth": t["depth"],
        "n_grad": t["n_leapfrog"],
        "diverged": t["diverged"],
    }
    return t["px"], t["pe"], t["pg"], info


def find_reasonable_step_size(energy: Energy, x: torch.Tensor, e: torch.Tensor,
                              g: torch.Tensor, step_size: torch.Tensor,
                              inv_mass: torch.Tensor | None, generator: torch.Generator,
                              *, target: float = 0.8, max_iter: int = 100) -> torch.Tensor:
    """Per-chain step-size heuristic of Hoffman & Gelman (2014, Algorithm 4), as in Stan.

    From ``step_size``, each chain doubles (or halves) its step until the acceptance
    probability of one leapfrog step from a fresh momentum crosses ``target``.

    Raises:
        RuntimeError: When a chain's step size leaves ``[1e-12, 1e7]`` (a flat or improper
            energy, or a gradient that is not finite) or does not settle in ``max_iter``.
    """
    log_target = math.log(target)
    nd = x.ndim

    def log_accept(eps: torch.Tensor) -> torch.Tensor:
        p = draw_momentum(x, inv_mass, generator)
        h0 = e + kinetic(p, inv_mass)
        eb = per_chain(eps, nd)
        p1 = torch.addcmul(p, eb, g, value=-0.5)
        x1 = torch.addcmul(x, eb, p1 if inv_mass is None else p1 * inv_mass)
        e1, g1 = energy.energy_and_grad(x1)
        p1 = torch.addcmul(p1, eb, g1, value=-0.5)
        d = h0 - e1 - kinetic(p1, inv_mass)
        return torch.where(torch.isnan(d), -math.inf, d)

    eps = step_size.clone()
    up = log_accept(eps) > log_target
    done = torch.zeros_like(up)
    for _ in range(max_iter):
        eps = torch.where(done, eps, torch.where(up, eps * 2.0, eps * 0.5))
        d = log_accept(eps)
        done = done | torch.where(up, ~(d > log_target), ~(d < log_target))
        out = ~done & ((eps > 1e7) | (eps < 1e-12))
        all_done, any_out = torch.stack([done.all(), out.any()]).tolist()
        if all_done:
            return eps
        if any_out:
            raise RuntimeError(
                f"NUTS step-size search left [1e-12, 1e7] for {int(out.sum())} chain(s); the "
                f"energy may be flat, improper or have a non-finite gradient. Pass step_size.")
    raise RuntimeError(f"NUTS step-size search did not settle in {max_iter} iterations; "
                       f"pass step_size explicitly")
