"""ebmcore.testing.check_dataset: passes on the built-in data sets, fails on each broken one."""

from __future__ import annotations

import math

import pytest
import torch

import ebmcore
from ebmcore.dataset import Dataset
from ebmcore.testing import check_dataset
from ebmcore.testing.dataset_checks import DatasetCheckSkipped

_LOG_2PI = math.log(2 * math.pi)


class Normal2D(Dataset):
    """A standard normal in 2-D, done right."""

    event_shape = (2,)
    scale = 1.0

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if generator is None:
            generator = torch.Generator()
            generator.seed()
        return self.scale * torch.randn(n, 2, generator=generator)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return -0.5 * x.pow(2).sum(1) - _LOG_2PI

    @property
    def evaluation_box(self) -> tuple[tuple[float, float], ...]:
        return ((-6.0, 6.0), (-6.0, 6.0))


class Unnormalised(Normal2D):
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return super().log_prob(x) + 0.1


class WrongSamples(Normal2D):
    scale = 1.1  # samples 10% wider than log_prob says


class GlobalRandom(Normal2D):
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if generator is None:
            return torch.randn(n, 2)
        return super().sample(n, generator)


class IgnoresGenerator(Normal2D):
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, 2, generator=torch.Generator().manual_seed(3))


class WrongShape(Normal2D):
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return super().sample(n, generator).reshape(-1)


class TightBox(Normal2D):
    @property
    def evaluation_box(self) -> tuple[tuple[float, float], ...]:
        return ((-1.0, 1.0), (-1.0, 1.0))


class ListShape(Normal2D):
    event_shape = [2]  # type: ignore[assignment]


class LogProbShape(Normal2D):
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return super().log_prob(x)[:, None]


class Normal3D(Dataset):
    event_shape = (3,)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if generator is None:
            generator = torch.Generator()
            generator.seed()
        return torch.randn(n, 3, generator=generator)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return -0.5 * x.pow(2).sum(1) - 1.5 * _LOG_2PI


def test_a_working_dataset_passes():
    check_dataset(Normal2D())


@pytest.mark.parametrize("broken, message", [
    (Unnormalised(), "integrates to"),
    (WrongSamples(), "do not follow exp"),
    (GlobalRandom(), "global generator"),
    (IgnoresGenerator(), "ignores its generator"),
    (WrongShape(), "expected"),
    (TightBox(), "outside the evaluation_box"),
    (ListShape(), "event_shape must be"),
    (LogProbShape(), "log_prob on 7 points"),
])
def test_a_broken_dataset_fails(broken, message):
    with pytest.raises(AssertionError, match=message):
        check_dataset(broken)


def test_the_global_generator_is_left_as_it_was():
    before = torch.get_rng_state()
    with pytest.raises(AssertionError):
        check_dataset(GlobalRandom())
    assert torch.equal(torch.get_rng_state(), before)


def test_above_two_dimensions_the_quadrature_is_skipped():
    with pytest.warns(DatasetCheckSkipped, match="D=3"):
        check_dataset(Normal3D())


@pytest.mark.parametrize("name", ["eight_gaussians", "checkerboard", "rings", "moons",
                                  "pinwheel", "spirals", "swiss_roll"])
def test_builtin_datasets_pass(name):
    check_dataset(ebmcore.create("dataset", name))


def test_an_image_dataset_without_log_prob_passes_the_sampling_checks():
    pytest.importorskip("sklearn")
    check_dataset(ebmcore.create("dataset", "digits"), n_samples=2000)


def test_bad_arguments_name_the_argument():
    with pytest.raises(TypeError, match="dataset must be"):
        check_dataset(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_samples"):
        check_dataset(Normal2D(), n_samples=10)
