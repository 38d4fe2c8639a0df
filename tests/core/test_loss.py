"""The loss contract's declared protocols and their defaults."""

from __future__ import annotations

import pytest
import torch

from ebmcore.loss import Loss, LossOutput


class _Plain(Loss):
    def forward(self, model, x):
        return LossOutput(model(x).mean())


def test_a_plain_loss_declares_no_chains_and_stores_its_generator():
    loss = _Plain()
    assert loss.sampler is None and loss.persistent_chains() is None
    assert loss.chain_counts == () and loss.sharded_state == ()
    assert loss.generator is None
    g = torch.Generator().manual_seed(3)
    loss.set_generator(g)
    assert loss.generator is g
    loss.set_generator(None)
    assert loss.generator is None
    with pytest.raises(TypeError, match="generator must be a torch.Generator or None, got int"):
        loss.set_generator(3)
    with pytest.raises(ValueError, match="_Plain runs none"):
        loss.use_compiled()
