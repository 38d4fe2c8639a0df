"""ebmcore.testing.check_loss: passes on the built-in losses, fails on each broken one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ebmcore
from ebmcore import Energy
from ebmcore.loss import Loss, LossOutput
from ebmcore.testing import KnownAnswer, check_loss


class Quadratic(Energy):
    """``E(x) = a |x|² / 2`` with a learnable ``a``: its score is known in closed form."""

    def __init__(self, a: float = 1.5) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.a.to(x.dtype) * x.pow(2).sum(1)


class Contrast(Loss):
    """A working loss: data energy minus the energy of Gaussian noise drawn from its generator."""

    def forward(self, model: Energy, x: torch.Tensor) -> LossOutput:
        noise = torch.randn(x.shape, generator=self.generator, dtype=x.dtype)
        return LossOutput(model(x).mean() - model(noise).mean(), negatives=noise)


class GlobalRandom(Contrast):
    def forward(self, model: Energy, x: torch.Tensor) -> LossOutput:
        noise = torch.randn(x.shape, dtype=x.dtype)  # ignores its generator
        return LossOutput(model(x).mean() - model(noise).mean())


class Unseeded(Contrast):
    def forward(self, model: Energy, x: torch.Tensor) -> LossOutput:
        private = torch.Generator()
        private.seed()
        noise = torch.randn(x.shape, generator=private, dtype=x.dtype)
        return LossOutput(model(x).mean() - model(noise).mean())


class PerPoint(Contrast):
    def forward(self, model: Energy, x: torch.Tensor) -> LossOutput:
        return LossOutput(model(x))  # (B,), not a scalar


class Detached(Contrast):
    def forward(self, model: Energy, x: torch.Tensor) -> LossOutput:
        return LossOutput(model(x).mean().detach())


class CutGraph(Contrast):
    def forward(self, model: Energy, x: torch.Tensor) -> LossOutput:
        return LossOutput(model(x).mean().detach().requires_grad_(True))


class NotAnOutput(Contrast):
    def forward(self, model: Energy, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return model(x).mean()


class ChainsOutsideState(Contrast):
    """Keeps persistent chains in a plain attribute, so they miss the state_dict."""

    def __init__(self) -> None:
        super().__init__()
        self.chains: torch.Tensor | None = None

    def forward(self, model: Energy, x: torch.Tensor) -> LossOutput:
        if self.chains is None:
            self.chains = torch.randn(x.shape, generator=self.generator, dtype=x.dtype)
        self.chains = self.chains + 0.1 * torch.randn(x.shape, generator=self.generator,
                                                       dtype=x.dtype)
        return LossOutput(model(x).mean() - model(self.chains).mean(), negatives=self.chains)

    def persistent_chains(self) -> torch.Tensor | None:
        return self.chains


class ChainsInState(ChainsOutsideState):
    """The same loss done right: the chains and whether they started are registered buffers."""

    def __init__(self, n_chains: int = 64, dim: int = 2) -> None:
        Loss.__init__(self)
        self.register_buffer("chains", torch.zeros(n_chains, dim, dtype=torch.float64))
        self.register_buffer("started", torch.tensor(False))

    def forward(self, model: Energy, x: torch.Tensor) -> LossOutput:
        if not self.started:
            self.chains.copy_(torch.randn(self.chains.shape, generator=self.generator,
                                          dtype=self.chains.dtype))
            self.started.fill_(True)
        self.chains += 0.1 * torch.randn(self.chains.shape, generator=self.generator,
                                         dtype=self.chains.dtype)
        return LossOutput(model(x).mean() - model(self.chains).mean(),
                          negatives=self.chains.clone())


class WrongChainCount(Contrast):
    chain_counts = ("n_chains",)


class WrongShardedState(Contrast):
    sharded_state = ("buffer",)


@pytest.fixture
def data() -> torch.Tensor:
    return torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def test_a_working_loss_passes(data):
    check_loss(Contrast(), Quadratic(), data)
    check_loss(ChainsInState(), Quadratic(), data)


@pytest.mark.parametrize("broken, message", [
    (GlobalRandom(), "global generator"),
    (Unseeded(), "seeded alike"),
    (PerPoint(), "0-d tensor"),
    (Detached(), "does not depend"),
    (CutGraph(), "reached none"),
    (NotAnOutput(), "not an ebmcore.LossOutput"),
    (ChainsOutsideState(), "persistent_chains"),
    (WrongChainCount(), "chain_counts names 'n_chains'"),
    (WrongShardedState(), "sharded_state names"),
])
def test_a_broken_loss_fails(broken, message, data):
    with pytest.raises(AssertionError, match=message):
        check_loss(broken, Quadratic(), data)


def test_the_global_generator_is_left_as_it_was(data):
    before = torch.get_rng_state()
    with pytest.raises(AssertionError):
        check_loss(GlobalRandom(), Quadratic(), data)
    assert torch.equal(torch.get_rng_state(), before)


def test_known_answer_of_score_matching(data):
    # For E = a|x|²/2, ∇E = a x and ΔE = a D: the loss is mean(a²|x|²/2) - a D.
    a, dim = 1.5, data.shape[1]
    expected = float((0.5 * a**2 * data.pow(2).sum(1)).mean() - a * dim)
    loss = ebmcore.create("loss", "score_matching")
    check_loss(loss, Quadratic(a), data, known_answers=(KnownAnswer(Quadratic(a), data,
                                                                    expected),))
    with pytest.raises(AssertionError, match="known answer 0"):
        check_loss(loss, Quadratic(a), data,
                   known_answers=(KnownAnswer(Quadratic(a), data, expected + 1e-3),))


def test_known_answer_drawn_from_the_seeded_generator(data):
    def expected(generator: torch.Generator) -> float:
        noise = torch.randn(data.shape, generator=generator, dtype=data.dtype)
        return float(0.75 * (data.pow(2).sum(1).mean() - noise.pow(2).sum(1).mean()))

    check_loss(Contrast(), Quadratic(), data,
               known_answers=(KnownAnswer(Quadratic(1.5), data, expected, seed=7),))


@pytest.mark.parametrize("name, params", [
    ("score_matching", {}),
    ("sliced_score_matching", {}),
    ("denoising_score_matching", {}),
    ("nce", {}),
    ("cd", {"k": 2}),
    ("pcd", {"k": 2, "buffer_size": 64}),
])
def test_builtin_losses_pass(name, params):
    model = ebmcore.create("model", "mlp", dim=2, hidden=[16, 16])
    if not model.confinement_fitted:
        model.fit_confinement(torch.randn(256, 2, generator=torch.Generator().manual_seed(0)))
    data = torch.randn(64, 2, generator=torch.Generator().manual_seed(2))
    check_loss(ebmcore.create("loss", name, **params), model, data)


def test_bad_arguments_name_the_argument(data):
    with pytest.raises(TypeError, match="loss must be"):
        check_loss(object(), Quadratic(), data)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model must be"):
        check_loss(Contrast(), nn.Linear(2, 1), data)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="steps"):
        check_loss(Contrast(), Quadratic(), data, steps=0)
