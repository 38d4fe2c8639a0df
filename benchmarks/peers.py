"""Peer libraries trained like ebmcore's training-quality benchmark, for the same evaluation.

Each ``train_*`` function trains a plain MLP 2-128-128-1 with SiLU (no confining wall: the
peers have none; built after ``torch.manual_seed(seed)``, so it starts from the very weights
of ebmcore's ``mlp(2)`` net) with a peer's own contrastive-divergence loss at its defaults,
on fresh batches of 256 from an ebmcore data set drawn from ``Generator().manual_seed(seed)``
(the batches ebmcore's Trainer draws), for ``steps`` Adam steps; Langevin step size 0.01 with
the correct noise ``sqrt(2 * 0.01)`` and the peer's default number of Langevin steps. It
returns the trained net wrapped as an :class:`ebmcore.Energy` (``event_shape=(2,)``).

Peers (install with ``pip install --no-deps torchebm==0.8.9 ebmkit==0.16.0``):

* TorchEBM 0.8.9 (``import torchebm``): ``torchebm:cd`` is ``ContrastiveDivergence``
  (CD-k from the data batch), ``torchebm:pcd`` is ``PersistentContrastiveDivergence``
  (replay buffer of 10,000 chains started at ``0.01 * N(0, I)`` and warmed by 100 Langevin
  steps on the untrained model, drawn stratified, written back first-in first-out; 5% of the
  drawn starts get ``0.01 * N(0, I)`` jitter, none restart). Both: ``k_steps=10``,
  ``energy_reg_weight=0.001`` (defaults). The loss is called in a plain Adam loop, as in the
  library's README: its ``ContrastiveDivergenceTrainer`` builds its own loss with other
  defaults (buffer 1,000) and spends two extra forward passes per step on metrics.
* ebmkit 0.16.0 (``import ebm``): ``ebmkit:cd`` is ``ContrastiveDivergence(sampler)`` without
  a buffer: it has no data-started CD, its chains start at ``N(0, I)`` (short-run MCMC from
  noise). ``ebmkit:pcd`` adds ``ReplayBuffer(10_000, (2,))`` (capacity has no default; 10,000
  is its docstring's example and the other libraries' default; ``reinit_prob=0.05``
  restarts at ``N(0, I)``). Both: ``LangevinDynamics(step_size=0.01)`` with its default
  ``steps=100``, ``energy_reg=0`` (default), trained with ``ebm.Trainer`` on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

import torch
from torch import nn

import ebmcore

#: Peer name -> (PyPI distribution, import name, version benchmarked, losses).
PEERS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "torchebm": ("torchebm", "torchebm", "0.8.9", ("cd", "pcd")),
    "ebmkit": ("ebmkit", "ebm", "0.16.0", ("cd", "pcd")),
}

#: What each peer run uses, printed under the table.
SETTINGS: dict[str, str] = {
    "torchebm:cd": "ContrastiveDivergence, k_steps=10 from the data, energy_reg_weight=0.001",
    "torchebm:pcd": "PersistentContrastiveDivergence, k_steps=10, buffer 10,000 "
                    "(0.01*N(0,I) warmed 100 steps, FIFO), energy_reg_weight=0.001",
    "ebmkit:cd": "ContrastiveDivergence without buffer: 100 Langevin steps from N(0,I), "
                 "energy_reg=0",
    "ebmkit:pcd": "ContrastiveDivergence + ReplayBuffer(10,000, reinit 0.05 to N(0,I)), "
                  "100 Langevin steps, energy_reg=0",
}

#: Langevin step size of every peer run (ebmcore's default).
STEP_SIZE = 0.01


class PeerEnergy(ebmcore.Energy):
    """A peer's trained network as an ebmcore energy: ``E(x) = net(x)``, shape ``(B,)``."""

    event_shape = (2,)

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the energies ``(B,)`` of a batch ``x`` of shape ``(B, 2)``."""
        return self.net(x).reshape(x.shape[0])


def peer_problem(peer: str) -> str | None:
    """Return why ``peer`` cannot run here (not installed, fails to import), else ``None``."""
    dist, module, pinned, _ = PEERS[peer]
    try:
        installed = version(dist)
    except PackageNotFoundError:
        return (f"{peer} is not installed: pip install --no-deps {dist}=={pinned} "
                f"(skipping {peer})")
    try:
        import_module(module)
    except Exception as error:  # noqa: BLE001 - any import failure means "skip this peer"
        return f"{peer} {installed} cannot be imported ({error!r}); skipping {peer}"
    if installed != pinned:
        print(f"note: {peer} {installed} is installed; this benchmark was written for {pinned}")
    return None


def make_net(seed: int) -> nn.Sequential:
    """The MLP 2-128-128-1 with SiLU, initialised after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 128), nn.SiLU(), nn.Linear(128, 128), nn.SiLU(),
                         nn.Linear(128, 1))


def batches(dataset_name: str, seed: int, batch_size: int = 256) -> Iterator[torch.Tensor]:
    """Fresh batches from the ebmcore data set, drawn as ebmcore's Trainer draws them."""
    dataset = ebmcore.create("dataset", dataset_name)
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield dataset.sample(batch_size, generator=generator)


def train_torchebm(loss_name: str, dataset_name: str, steps: int, seed: int,
                   lr: float = 3e-3) -> PeerEnergy:
    """Train with TorchEBM's CD (``"cd"``) or PCD (``"pcd"``) loss at its defaults."""
    from torchebm.core import BaseModel
    from torchebm.losses import ContrastiveDivergence, PersistentContrastiveDivergence
    from torchebm.samplers import LangevinDynamics

    class TorchEBMEnergy(BaseModel):
        """The MLP as a TorchEBM model (its samplers need ``BaseModel.gradient``)."""

        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x).squeeze(-1)

    model = TorchEBMEnergy(make_net(seed))
    # noise_scale=1.0 (default) gives noise sqrt(2 * step_size); k_steps=10 is the default.
    sampler = LangevinDynamics(model, step_size=STEP_SIZE)
    loss_classes = {"cd": ContrastiveDivergence, "pcd": PersistentContrastiveDivergence}
    loss_fn = loss_classes[loss_name](model, sampler)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    chain_generator = torch.Generator().manual_seed(seed + 1)  # chains, buffer, noise
    data = batches(dataset_name, seed)
    model.train()
    for _ in range(steps):
        loss, _negatives = loss_fn(next(data), generator=chain_generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    return PeerEnergy(model.net)


def train_ebmkit(loss_name: str, dataset_name: str, steps: int, seed: int,
                 lr: float = 3e-3) -> PeerEnergy:
    """Train with ebmkit's ContrastiveDivergence, without (``"cd"``) or with a replay buffer."""
    import ebm

    net = make_net(seed)  # ebmkit draws all its chains from torch's global RNG, seeded here
    sampler = ebm.LangevinDynamics(step_size=STEP_SIZE)  # steps=100 and sqrt(2 eps) noise
    buffer = ebm.ReplayBuffer(10_000, (2,)) if loss_name == "pcd" else None
    loss_fn = ebm.ContrastiveDivergence(sampler, buffer=buffer)
    trainer = ebm.Trainer(ebm.EnergyModel(net), loss_fn, lr=lr, device="cpu")
    trainer.fit(batches(dataset_name, seed), steps=steps, batch_size=256, verbose=False)
    return PeerEnergy(net)


TRAINERS: dict[str, Callable[..., PeerEnergy]] = {"torchebm": train_torchebm,
                                                  "ebmkit": train_ebmkit}


def train_peer(peer: str, loss_name: str, dataset_name: str, steps: int, seed: int,
               lr: float = 3e-3) -> PeerEnergy:
    """Train ``peer``'s ``loss_name`` (see :data:`PEERS`) and return the energy."""
    if loss_name not in PEERS[peer][3]:
        raise ValueError(f"{peer} has no loss {loss_name!r}; it has {PEERS[peer][3]}")
    return TRAINERS[peer](loss_name, dataset_name, steps, seed, lr)
