"""The TorchEBM side of ``benchmarks/generative.py``: its energy matching runs TorchEBM's
two phases on ebmcore's network, and its exact-OT solver is TorchEBM's assignment."""

from __future__ import annotations

from types import ModuleType

import pytest
import torch
from benchmark_modules import load_benchmark

pytest.importorskip("torchebm")
pytest.importorskip("scipy")



def load_generative() -> ModuleType:
    """Import ``benchmarks/generative.py`` as a module (once per session)."""
    return load_benchmark("generative")


def test_scipy_exact_ot_pairs_as_torchebm_auction() -> None:
    from torchebm.couplings import ExactOTCoupling

    gen = load_generative()
    g = torch.Generator().manual_seed(3)
    x0, x1 = torch.randn(48, 2, generator=g), torch.rand(48, 2, generator=g) * 4 - 2
    ours = gen._exact_ot_coupling().couple(x0, x1).x1
    theirs = ExactOTCoupling().couple(x0, x1).x1
    assert torch.equal(ours, theirs)
    assert not torch.equal(ours, x1)  # the coupling did permute the batch


def test_torchebm_energy_matching_switches_phase(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = load_generative()
    config = gen.run_config("eight_gaussians", "energy_matching",
                            {"train.steps": 4, "loss.switch_step": 2, "train.batch_size": 16})
    built = gen.build(config)
    seen: list[float] = []
    made: list[object] = []
    real = gen.torchebm_loss

    def recording(method: str, model: object, options: dict | None = None) -> object:
        loss = real(method, model, options)
        made.append(model)
        forward = loss.forward

        def spy(x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
            seen.append(float(loss.lambda_cd))
            return forward(x, *args, **kwargs)

        loss.forward = spy
        return loss

    monkeypatch.setattr(gen, "torchebm_loss", recording)
    model, _ = gen.train_torchebm(built, "energy_matching",
                                  {"lambda_cd": 5.0, "n_langevin_steps": 2})
    assert seen == [0.0, 0.0, 5.0, 5.0]
    assert made[0].scale == pytest.approx(0.15)  # V = eps_max * E at TorchEBM's default
    assert model.confinement_fitted
    x = torch.zeros(3, 2)
    assert torch.allclose(made[0](x), 0.15 * model(x))
