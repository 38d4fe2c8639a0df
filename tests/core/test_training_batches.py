"""The batch sources on their own: which adapter each kind of data gets, and its state."""

from __future__ import annotations

import pytest
import torch

import ebmcore
from ebmcore.ranks import RankGroup
from ebmcore.training import batches


def _build(data, batch_size=4, ranks=None):
    return batches.build_batches(data, event_shape=(2,), batch_size=batch_size,
                                 generator=torch.Generator().manual_seed(0),
                                 ranks=ranks or RankGroup())


def test_each_kind_of_data_gets_its_adapter():
    points = torch.randn(10, 2)
    assert isinstance(_build(points), batches.TensorBatches)
    assert isinstance(_build("eight_gaussians"), batches.DatasetBatches)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(points), batch_size=5)
    assert isinstance(_build(loader), batches.LoaderBatches)
    with pytest.raises(ValueError, match="data is required"):
        _build(None)
    with pytest.raises(TypeError, match="data must be a tensor, an ebmcore.Dataset"):
        _build(object())
    with pytest.raises(ValueError, match="batch_size=4 is the global batch"):
        _build(points, ranks=RankGroup(0, 3))


def test_a_rank_takes_its_rows_of_each_global_batch():
    points = torch.arange(16.0).reshape(8, 2)
    whole, half = _build(points), _build(points, ranks=RankGroup(1, 2))
    assert torch.equal(whole.next()[2:], half.next())


def test_tensor_batches_resume_mid_epoch():
    points = torch.randn(10, 2)
    first = _build(points)
    first.next()
    state, stream = first.state_dict(), first.generator.get_state()
    expected = [first.next() for _ in range(3)]  # crosses an epoch: 10 points, batches of 4
    again = _build(points)
    again.load_state_dict(state)
    again.generator.set_state(stream)  # the trainer's checkpoint restores the data stream
    assert all(torch.equal(a, b) for a, b in zip(expected, [again.next() for _ in range(3)],
                                                 strict=True))
    fresh = _build(points)
    assert not torch.equal(fresh.next(), expected[0])


def test_the_confinement_sample_leaves_the_batches_alone():
    source = _build("eight_gaussians")
    before = source.generator.get_state()
    sample = batches.confinement_sample(source, seed=3)
    assert sample.shape == (batches.CONFINEMENT_SAMPLE, 2)
    assert torch.equal(source.generator.get_state(), before)
    points = torch.randn(10, 2)
    assert batches.confinement_sample(_build(points), seed=3) is points
    assert isinstance(ebmcore.create("dataset", "eight_gaussians"), ebmcore.Dataset)
