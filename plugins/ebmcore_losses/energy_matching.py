"""Energy matching (Balcerak et al. 2025, arXiv:2504.10612): one scalar potential whose
``-∇V`` is an optimal-transport flow far from the data and whose ``exp(-V / eps_max)`` is
sharpened by contrastive divergence near it. The model is the energy ``E = V / eps_max``,
so the trained model's own ``exp(-E)`` is that density."""

from __future__ import annotations

from typing import Any

import torch

from ebmcore.coupling import Coupling
from ebmcore.energy import Energy
from ebmcore.field import EnergyField, energy_of
from ebmcore.interpolant import Interpolant
from ebmcore.loss import LossOutput
from ebmcore.validation import check_int, check_positive
from ebmcore_losses._common import draw_replayed, load_lazy_buffers, noise_box, uniform_noise
from ebmcore_losses._paths import PathLoss
from ebmcore_losses.contrastive import fixed_energy


def _fraction(name: str, value: Any, *, upper_open: bool = False) -> float:
    """Return ``value`` after checking it is a number in ``[0, 1]`` (``[0, 1)``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not 0.0 <= value <= 1.0 or (upper_open and value >= 1.0):
        raise ValueError(f"{name} must lie in [0, 1{')' if upper_open else ']'}, got {value}")
    return float(value)


class EnergyMatching(PathLoss):
    """Energy matching: a scalar potential ``V`` trained in two phases.

    **The model is the energy at temperature one.** The paper's potential ``V`` carries
    noise to data along ``-∇V`` and its density is the Boltzmann density at the plateau
    temperature, ``exp(-V / eps_max)``. This loss trains the model ``E`` as that density's
    energy and reads the potential as ``V = eps_max * E`` wherever the paper uses ``V`` (the
    flow term's ``-∇V``, the Langevin negatives, the contrastive term's values). So the
    trained energy says its own temperature: every reader of an ebmcore energy (the run's
    grid evaluation and AIS, MCMC samplers, ``ebmcore sample``) sees ``exp(-E)``, the
    density the contrastive phase shaped, with no temperature to pass along. (TorchEBM's
    ``EnergyMatchingLoss`` trains ``V`` itself; its density is ``exp(-V / eps_max)``.)

    **Phase 1** (steps before ``switch_step``) is optimal-transport flow matching on the
    field ``-∇V``: noise and data are paired by the coupling (exact minibatch OT by
    default), each pair is placed on the path with smoothing noise ``sigma``, and

        L_flow = E[ w(t) |-∇V(x_t) - u_t|² ],    w(t) = min(1, (1 - t) / (1 - cutoff)),

    so the flow supervision fades out near the data. **Phase 2** adds the contrastive term
    near the data,

        L_cd = lambda_cd (E_data[V] - trimmed mean of V over the negatives),

    floored at ``-cd_clamp`` if set. The negatives come from Langevin chains on ``V``
    (``x ← x - dt ∇V + sqrt(2 eps dt) ξ``): a ``noise_fraction`` of them start from noise
    and sweep the temperature ``eps(t)`` (zero up to ``tau_star``, then a linear ramp to
    ``eps_max`` at ``t = 1``), the rest start at data (or, with ``buffer_size``, continue
    from a replay buffer of past negatives) and stay at ``eps_max``. The loss
    counts its calls (one per training step) in a buffer, so the switch survives a resume;
    a recipe sets it with ``loss.switch_step`` (``0``: contrastive from the start; ``None``:
    phase 1 only).

    Defaults follow the paper's 2-D configuration as TorchEBM 0.8.9 ships it, but for the
    floor: none, as in the paper's released 2-D code (TorchEBM floors the term at -0.02,
    which stops its gradient whenever the data's energy is already below the negatives').
    A run's config.toml leaves ``None`` out, so a default of ``None`` replays as itself.
    The 2-D data sets' recipe (``ebmcore_datasets.toy_recipe``) changes the negatives.

    Args:
        interpolant: The path, by name or instance.
        coupling: How noise pairs with data; ``"exact_ot"`` by default (needs POT).
        switch_step: The call from which the contrastive term is on, or ``None`` for never.
        sigma: Standard deviation of the smoothing noise added to path points.
        flow_weight_cutoff: Where the flow term's gate starts to fall; ``>= 1`` disables it.
        lambda_cd: Weight of the contrastive term.
        epsilon_max: The plateau temperature ``eps_max``, positive: the potential is
            ``V = epsilon_max * E`` of the model ``E``.
        tau_star: Where the noise chains' temperature starts to rise, in ``[0, 1)``.
        n_langevin_steps: Langevin steps per negative chain.
        langevin_dt: Langevin step size ``dt``.
        noise_fraction: Fraction of the negatives started from noise.
        cd_trim_fraction: Fraction of the highest-energy negatives left out of their mean.
        cd_clamp: The floor ``-cd_clamp`` of the contrastive term; ``None`` for none.
        buffer_size: ``None`` (the paper's chains): the chains not started from noise start
            at the data batch. A count: they continue instead from a replay buffer of that
            many past negatives (persistent chains, as pcd's), filled at first with uniform
            noise over the data batch's range.
        reinit_prob: The chance that a chain drawn from the replay buffer restarts from
            that uniform noise.
        alpha: Weight of an energy-magnitude penalty in the contrastive phase,
            ``lambda_cd eps_max alpha (mean E(x+)² + mean E(x-)²)`` on the learned part of
            ``E`` (as pcd's ``alpha``, relative to the contrastive term); 0 for none.
    """

    # the replay buffer's rows are chains: each rank of a distributed run keeps its share
    chain_counts = ("buffer_size",)
    sharded_state = ("buffer",)

    def __init__(self, interpolant: str | Interpolant = "linear",
                 coupling: str | Coupling = "exact_ot", switch_step: int | None = 2000,
                 sigma: float = 0.1, flow_weight_cutoff: float = 0.8, lambda_cd: float = 2.0,
                 epsilon_max: float = 0.15, tau_star: float = 0.8,
                 n_langevin_steps: int = 200, langevin_dt: float = 0.01,
                 noise_fraction: float = 0.5, cd_trim_fraction: float = 0.1,
                 cd_clamp: float | None = None, buffer_size: int | None = None,
                 reinit_prob: float = 0.05, alpha: float = 0.0) -> None:
        super().__init__(interpolant, coupling)
        self.switch_step = (None if switch_step is None
                            else check_int("switch_step", switch_step, minimum=0))
        self.sigma = check_positive("sigma", sigma, allow_zero=True)
        self.flow_weight_cutoff = check_positive("flow_weight_cutoff", flow_weight_cutoff,
                                                 allow_zero=True)
        self.lambda_cd = check_positive("lambda_cd", lambda_cd, allow_zero=True)
        self.epsilon_max = check_positive("epsilon_max", epsilon_max)
        self.tau_star = _fraction("tau_star", tau_star, upper_open=True)
        self.n_langevin_steps = check_int("n_langevin_steps", n_langevin_steps, minimum=1)
        self.langevin_dt = check_positive("langevin_dt", langevin_dt)
        self.noise_fraction = _fraction("noise_fraction", noise_fraction)
        self.cd_trim_fraction = _fraction("cd_trim_fraction", cd_trim_fraction,
                                          upper_open=True)
        self.cd_clamp = None if cd_clamp is None else check_positive("cd_clamp", cd_clamp,
                                                                     allow_zero=True)
        self.buffer_size = (None if buffer_size is None
                            else check_int("buffer_size", buffer_size, minimum=1))
        self.reinit_prob = _fraction("reinit_prob", reinit_prob)
        self.alpha = check_positive("alpha", alpha, allow_zero=True)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self.register_buffer("buffer", torch.empty(0))

    @property
    def phase(self) -> int:
        """The phase the next call runs: 1 (flow only) or 2 (flow and contrastive)."""
        if self.switch_step is None or self.lambda_cd == 0.0:
            return 1
        return 2 if int(self.calls) >= self.switch_step else 1

    def flow_weight(self, t: torch.Tensor) -> torch.Tensor:
        """The flow term's gate ``w(t)``, one near the noise, falling to zero at the data."""
        if self.flow_weight_cutoff >= 1.0:
            return torch.ones_like(t)
        return ((1.0 - t) / (1.0 - self.flow_weight_cutoff)).clamp(0.0, 1.0)

    def temperature(self, step: int) -> float:
        """The noise chains' temperature ``eps(t)`` at Langevin step ``step`` (t = step/N)."""
        t = step / self.n_langevin_steps
        if t < self.tau_star:
            return 0.0
        return self.epsilon_max * min(1.0, (t - self.tau_star) / (1.0 - self.tau_star))

    def negatives(self, energy: Energy, x1: torch.Tensor) -> torch.Tensor:
        """Draw the contrastive negatives by Langevin chains on the potential
        ``V = epsilon_max * energy`` (no graph kept)."""
        batch = x1.shape[0]
        n_noise = int(round(batch * self.noise_fraction))
        noise = torch.randn((n_noise, *x1.shape[1:]), generator=self.generator,
                            device=x1.device, dtype=x1.dtype)
        if self.buffer_size is None:
            rows = torch.randperm(batch, generator=self.generator, device=x1.device)
            warm, slots = x1[rows[:batch - n_noise]].detach(), None
        else:
            warm, slots = self.replayed(batch - n_noise, x1)
        x = torch.cat([noise, warm])
        # per-chain noise scale: the noise chains follow the sweep, the data chains eps_max
        hot = torch.zeros((batch,) + (1,) * (x1.dim() - 1), device=x1.device, dtype=x1.dtype)
        hot[n_noise:] = 1.0
        dt = self.langevin_dt
        with torch.no_grad():
            for step in range(self.n_langevin_steps):
                eps = hot * self.epsilon_max + (1.0 - hot) * self.temperature(step)
                xi = torch.randn(x.shape, generator=self.generator, device=x.device,
                                 dtype=x.dtype)
                x = x - (dt * self.epsilon_max) * energy.grad(x) \
                    + torch.sqrt(2.0 * eps * dt) * xi
        if slots is not None:
            self.buffer[slots] = x[n_noise:].to(self.buffer.dtype)
        return x.detach()

    def replayed(self, n: int, x1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` chain starts from the replay buffer and return them with their rows.

        The buffer is filled at its first use with uniform noise over the range of the batch
        ``x1``; each drawn chain restarts from such noise (over the current batch's range)
        with probability ``reinit_prob``.

        Raises:
            ValueError: When ``x1``'s event shape is not the buffer's.
        """
        low, high = noise_box(x1, None, margin=0.0)
        if self.buffer.numel() == 0:
            self.buffer = uniform_noise(self.buffer_size, low, high, self.generator)
        return draw_replayed(self.buffer, n, self.reinit_prob,
                             lambda k: uniform_noise(k, low, high, self.generator), x1,
                             self.generator)

    def trimmed_mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of ``values`` without the highest ``cd_trim_fraction`` of them."""
        keep = values.shape[0] - int(self.cd_trim_fraction * values.shape[0])
        return torch.topk(values, keep, largest=False).values.mean()

    def forward(self, model: Energy | Any, x: torch.Tensor) -> LossOutput:
        """Return the energy-matching loss of the potential ``model`` on the data ``x``.

        Raises:
            TypeError: When ``model`` is a field that is not ``-∇E`` of an energy.
        """
        energy = energy_of(model)
        scale = self.epsilon_max  # V = scale * E
        phase = self.phase
        self.calls += 1
        path = self.draw_path(x)
        xt = path.xt
        if self.sigma > 0:
            xt = xt + self.sigma * torch.randn(xt.shape, generator=self.generator,
                                               device=xt.device, dtype=xt.dtype)
        error = (scale * EnergyField(energy)(xt) - path.ut).square().reshape(x.shape[0], -1)
        error = error.mean(1)
        flow = (self.flow_weight(path.t) * error).mean()
        metrics: dict[str, float | torch.Tensor] = {"flow_loss": flow.detach(),
                                                    "phase": float(phase)}
        if phase == 1:
            return LossOutput(flow, metrics)
        negatives = self.negatives(energy, x)
        e_pos, e_neg = energy(x), energy(negatives)
        cd = scale * (e_pos.mean() - self.trimmed_mean(e_neg))
        cd_loss = self.lambda_cd * cd
        if self.cd_clamp is not None:
            cd_loss = cd_loss.clamp(min=-self.cd_clamp)
        if self.alpha > 0:
            cd_loss = cd_loss + self.lambda_cd * scale * self.alpha * (
                self.learned(energy, x, e_pos).square().mean()
                + self.learned(energy, negatives, e_neg).square().mean())
        metrics["cd_value"] = cd.detach()
        return LossOutput(flow + cd_loss, metrics, negatives)

    @staticmethod
    def learned(energy: Energy, x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """``values`` (the energies at ``x``) less the model's fixed part there (its wall or
        Gaussian base, which training does not change): what the penalty ``alpha`` holds."""
        fixed = fixed_energy(energy, x)
        return values if fixed is None else values - fixed.detach().to(values.dtype)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any,
                              **kwargs: Any) -> None:
        load_lazy_buffers(self, state_dict, prefix)  # the replay buffer, shaped at first use
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return (f"switch_step={self.switch_step}, lambda_cd={self.lambda_cd}, "
                f"epsilon_max={self.epsilon_max}, tau_star={self.tau_star}, "
                f"{super().extra_repr()}")
