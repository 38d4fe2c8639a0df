"""The coupling contract: the base checks batches and gathers the rows ``indices`` picks."""

from __future__ import annotations

import pytest
import torch

from ebmcore.coupling import Coupling, check_batches
from ebmcore.testing import check_coupling


class Reverse(Coupling):
    """Pairs the first noise row with the last datum, and so on."""

    def indices(self, x0, x1, generator=None):
        rows = torch.arange(x0.shape[0])
        return rows, rows.flip(0)


class WrongLength(Coupling):
    def indices(self, x0, x1, generator=None):
        return torch.arange(1), torch.arange(1)


def test_pair_gathers_the_rows_indices_picks():
    x0, x1 = torch.arange(3.0)[:, None], 10 + torch.arange(3.0)[:, None]
    p0, p1 = Reverse().pair(x0, x1)
    assert p0.flatten().tolist() == [0, 1, 2] and p1.flatten().tolist() == [12, 11, 10]


def test_a_subclass_with_only_indices_passes_the_kit():
    check_coupling(Reverse())


def test_the_base_needs_indices_or_pair():
    with pytest.raises(NotImplementedError, match="indices"):
        Coupling().pair(torch.zeros(2, 1), torch.zeros(2, 1))


def test_indices_of_the_wrong_length_are_named():
    with pytest.raises(ValueError, match=r"WrongLength.indices returned rows of shape \(1,\)"):
        WrongLength().pair(torch.zeros(3, 2), torch.zeros(3, 2))


@pytest.mark.parametrize("x0, x1, error, match", [
    (torch.zeros(3, 2), torch.zeros(4, 2), ValueError, "same shape"),
    (torch.zeros(0, 2), torch.zeros(0, 2), ValueError, "non-empty"),
    (torch.tensor(1.0), torch.tensor(1.0), ValueError, "x0 must be a non-empty batch"),
    ([[1.0]], torch.zeros(1, 1), TypeError, "x0 must be a torch.Tensor"),
])
def test_bad_batches_are_named(x0, x1, error, match):
    with pytest.raises(error, match=match):
        check_batches(x0, x1)
