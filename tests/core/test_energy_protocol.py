"""The optional members of the contracts the core uses (declared, never probed): their
defaults on a bare Energy and Dataset, and the built-in models' implementations."""

import pytest
import torch

import ebmcore
from ebmcore.dataset import Dataset, ImageDataset
from ebmcore.energy import Energy


class Bare(Energy):
    event_shape = (2,)

    def forward(self, x):
        return x.square().sum(1)


def test_a_bare_energy_declares_no_optional_capability():
    energy = Bare()
    assert energy.preconditioner() is None and energy.base_energy() is None
    assert energy.confinement_fitted is True
    with pytest.raises(TypeError, match="no confinement to fit"):
        energy.fit_confinement(torch.zeros(3, 2))


def test_a_walled_model_fits_its_confinement_through_the_contract():
    model = ebmcore.create("model", "mlp", dim=2, hidden=[8])
    assert model.confinement_fitted is False
    model.fit_confinement(torch.randn(50, 2, generator=torch.Generator().manual_seed(0)))
    assert model.confinement_fitted is True
    assert model.base_energy() is None and model.preconditioner() is None


def test_a_model_with_a_gaussian_base_declares_it_and_its_preconditioner():
    model = ebmcore.create("model", "conv", event_shape=(1, 4, 4), channels=[2])
    data = torch.rand(100, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    model.fit_confinement(data)
    base = model.base_energy()
    assert base is not None and base.log_z is not None and base.has_exact_sampler
    assert model.preconditioner().shape == (16, 16)


def test_a_bare_model_without_confinement_has_nothing_to_fit():
    model = ebmcore.create("model", "mlp", dim=2, hidden=[8], confine=False)
    assert model.confinement_fitted is True
    model.fit_confinement(torch.zeros(4, 2))  # a no-op the model declares


def test_a_data_set_declares_no_box_by_default_and_toy_sets_declare_theirs():
    assert Dataset().evaluation_box is None
    assert ebmcore.create("dataset", "rings").evaluation_box == ((-5.0, 5.0), (-5.0, 5.0))
    board = ebmcore.create("dataset", "checkerboard", width=4.0)
    assert board.evaluation_box == ((-2.5, 2.5), (-2.5, 2.5))


def test_the_image_protocol_says_what_an_image_data_set_must_implement():
    class Half(ImageDataset):
        levels = 4

    half = Half()
    assert half.bin_width == 0.25 and isinstance(half, Dataset)
    with pytest.raises(NotImplementedError, match="tensor"):
        half.tensor()
    with pytest.raises(NotImplementedError, match="held_out"):
        half.held_out()
