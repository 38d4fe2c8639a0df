"""The pieces of distributed training and sampling that need no second process: shards,
seeds, state splitting, diagnostics merging, shared trajectory files and the early errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ebmcore
from ebmcore import launch, ranks, sharded_sampling
from ebmcore.sampler import TrajectoryFile
from ebmcore.train import Trainer
from ebmcore.training import loss_state


def test_shard_range_deals_rows_and_blocks_evenly():
    assert [ranks.shard_range(10, r, 3) for r in range(3)] == [(0, 4), (4, 7), (7, 10)]
    # blocks of 4 rows stay together: blocks 0-1 to rank 0, block 2 (2 rows) to rank 1
    assert [ranks.shard_range(10, r, 2, block=4) for r in range(2)] == [(0, 8), (8, 10)]
    assert [ranks.shard_range(1, r, 3) for r in range(3)] == [(0, 1), (1, 1), (1, 1)]
    with pytest.raises(ValueError, match="rank must be in"):
        ranks.shard_range(10, 2, 2)


def test_chain_shards_refuse_a_rank_without_chains():
    assert sharded_sampling.chain_shards(400, 8, 2) == [(0, 200), (200, 400)]
    with pytest.raises(ValueError, match="3 chains in blocks of 2 .* 3 ranks"):
        sharded_sampling.chain_shards(3, 2, 3)


def test_rank_seeds_keep_rank_0_and_separate_the_others():
    assert ranks.rank_seed(7, 0) == 7
    seeds = {ranks.rank_seed(7, r) for r in range(1, 50)} | {ranks.rank_seed(8, 1)}
    assert len(seeds) == 50 and all(0 <= s < 2**63 for s in seeds)
    assert ranks.rank_seed(7, 3) == ranks.rank_seed(7, 3)


def test_rank_generators_derive_from_the_callers():
    g = torch.Generator().manual_seed(1)
    assert ranks.rank_generator(g, 0) is g and ranks.rank_generator(None, 1) is None
    a = ranks.rank_generator(torch.Generator().manual_seed(1), 1)
    b = ranks.rank_generator(torch.Generator().manual_seed(1), 1)
    c = ranks.rank_generator(torch.Generator().manual_seed(1), 2)
    assert torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))
    assert not torch.equal(torch.rand(3, generator=c), torch.rand(3, generator=g))


def test_a_single_process_group_is_the_identity():
    group = ranks.RankGroup()
    assert not group.active and group.is_main
    x = torch.arange(6.0).reshape(3, 2)
    assert group.gather_rows(x) is x
    assert group.mean([torch.tensor(0.25), 2]) == [0.25, 2.0]
    assert group.all_true(True) and not group.any_true(False)
    assert group.gather_objects("a") == ["a"] and group.main_first(lambda: 3) == 3


def test_batch_share_needs_an_even_split():
    assert ranks.batch_share(64, 2) == 32
    with pytest.raises(ValueError, match="batch_size=64 is the global batch .* 3 ranks"):
        ranks.batch_share(64, 3)


def test_the_loss_chains_are_shared_and_split_per_rank():
    loss = ebmcore.create("loss", "pcd", buffer_size=101)
    assert loss_state.share_chain_counts(loss, ranks.RankGroup(1, 2)) == {"buffer_size": 101}
    assert loss.buffer_size == 50 and loss.n_negatives is None  # rank 0 keeps 51
    state = {"buffer": torch.arange(20.0).reshape(10, 2), "noise_low": torch.zeros(2)}
    mine = loss_state.split_loss_state(loss, state, ranks.RankGroup(1, 3))
    assert torch.equal(mine["buffer"], state["buffer"][4:7])
    assert mine["noise_low"] is state["noise_low"]
    empty = {"buffer": torch.empty(0)}  # not filled yet: stays empty
    assert loss_state.split_loss_state(loss, empty, ranks.RankGroup(1, 3))["buffer"].numel() == 0
    with pytest.raises(ValueError, match="buffer_size=1 counts chains over all ranks"):
        loss_state.share_chain_counts(ebmcore.create("loss", "pcd", buffer_size=1),
                                      ranks.RankGroup(0, 2))


def test_only_the_chains_a_loss_declares_are_shared():
    class Counted(ebmcore.Loss):
        chain_counts = ("chains", "spare")

        def __init__(self, chains):
            super().__init__()
            self.chains, self.spare, self.other = chains, None, 9

    loss = Counted(7)
    assert loss_state.share_chain_counts(loss, ranks.RankGroup(2, 3)) == {"chains": 7}
    assert (loss.chains, loss.spare, loss.other) == (2, None, 9)
    assert loss_state.share_chain_counts(ebmcore.create("loss", "dsm"),
                                         ranks.RankGroup(1, 2)) == {}
    loss.chains = "many"
    with pytest.raises(TypeError, match="chain_counts names 'chains', which must be an int"):
        loss_state.share_chain_counts(loss, ranks.RankGroup(0, 2))


def test_the_old_distributed_module_still_serves_every_name_with_a_warning():
    from ebmcore import distributed, errors

    with pytest.warns(DeprecationWarning, match="moved to ebmcore.ranks.RankGroup"):
        assert distributed.RankGroup is ranks.RankGroup
    with pytest.warns(DeprecationWarning, match="ebmcore.sharded_sampling.sample_sharded"):
        from ebmcore.distributed import sample_sharded
    assert sample_sharded is sharded_sampling.sample_sharded
    with pytest.warns(DeprecationWarning):
        assert distributed.DistributedError is errors.DistributedError is launch.DistributedError
    for name in distributed.MOVED:
        with pytest.warns(DeprecationWarning):
            getattr(distributed, name)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        distributed.nothing  # noqa: B018


def test_diagnostics_merge_per_chain_and_per_rank_entries():
    parts = [{"acceptance": torch.tensor([0.5, 0.7]), "nonfinite_chains": torch.tensor([1]),
              "energy_trace": torch.tensor([1.0, 2.0]), "swap_acceptance": torch.tensor([0.2]),
              "backend": "torch", "step_size": torch.tensor([0.1, 0.2])},
             {"acceptance": torch.tensor([0.1, 0.2, 0.3]), "nonfinite_chains": torch.tensor([0]),
              "energy_trace": torch.tensor([4.0, 5.0]), "swap_acceptance": torch.tensor([0.4]),
              "backend": "torch", "step_size": torch.tensor([0.3, 0.4, 0.5])}]
    merged = sharded_sampling.merge_diagnostics(parts, [(0, 2), (2, 5)],
                                                ("acceptance", "step_size"))
    assert torch.allclose(merged["acceptance"], torch.tensor([0.5, 0.7, 0.1, 0.2, 0.3]))
    assert merged["nonfinite_chains"].tolist() == [1, 2]
    assert torch.allclose(merged["energy_trace"], torch.tensor([2.8, 3.8]))  # 2 and 3 chains
    assert torch.allclose(merged["swap_acceptance"], torch.tensor([0.3]))
    assert merged["step_size"].shape == (5,) and merged["backend"] == "torch"
    assert merged["shards"] == [[0, 2], [2, 5]] and merged["world_size"] == 2


def test_trajectory_writers_share_one_file_by_columns(tmp_path):
    path = tmp_path / "t.npy"
    x = torch.arange(3 * 5 * 2, dtype=torch.float32).reshape(3, 5, 2)
    first = TrajectoryFile(path, 3, (5, 2), torch.float32, columns=(0, 2))
    second = TrajectoryFile(path, 3, (5, 2), torch.float32, columns=(2, 5), create=False)
    for k in range(3):
        first(k, x[k, :2])
        second(k, x[k, 2:])
    first.close()
    second.close()
    assert np.array_equal(np.load(path), x.numpy()) and first.complete and second.complete
    with pytest.raises(ValueError, match="this writer's chains: 3"):
        TrajectoryFile(path, 3, (5, 2), torch.float32, columns=(2, 5), create=False)(0, x[0])
    with pytest.raises(ValueError, match="holds float32"):
        TrajectoryFile(path, 4, (5, 2), torch.float32, create=False)


def test_distributed_without_a_process_group_is_a_clear_error():
    model = ebmcore.create("model", "mlp", dim=2, hidden=[8])
    with pytest.raises(launch.DistributedError,
                       match=r"Trainer\(distributed=True\) needs an initialised process group"):
        Trainer(model, "score_matching", data="two_moons", distributed=True)
    with pytest.raises(TypeError, match="distributed must be True or False"):
        Trainer(model, "score_matching", data="two_moons", distributed="yes")
    sampler = ebmcore.create("sampler", "mala", step_size=0.1)
    energy = ebmcore.create("energy", "gaussian", mean=[0.0, 0.0], cov=[[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(launch.DistributedError, match=r"Sampler.sample\(distributed=True\)"):
        sampler.sample(energy, torch.zeros(4, 2), 2, distributed=True)


def test_launching_is_refused_under_another_launcher(monkeypatch):
    assert not launch.should_launch(None) and not launch.should_launch(1)
    assert launch.should_launch(2)
    for name, value in {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "h",
                        "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(name, value)
    assert launch.launched_world() == (0, 0, 2) and launch.rank_prefix() == "[rank 0] "
    with pytest.raises(launch.DistributedError, match="leave --nproc out under torchrun"):
        launch.should_launch(2)
    monkeypatch.setenv(launch.LAUNCHED_ENV, "1")  # a worker of ebmcore's own launch
    assert not launch.should_launch(2)


def test_the_backend_follows_the_device():
    assert launch.choose_backend("auto", "cpu") == "gloo"
    assert launch.choose_backend("auto", "cuda") == "nccl"
    assert launch.choose_backend("gloo", "cuda") == "gloo"
    with pytest.raises(ValueError, match="--dist-backend must be one of"):
        launch.choose_backend("mpi", "cpu")


def test_the_first_failure_is_the_killed_rank_not_the_peer_that_aborted():
    """Failures stamped in the same second: a gloo abort (SIGABRT) after a peer vanished, or
    the launcher's SIGTERM to the survivors, is the consequence, whichever rank it hit; an
    earlier stamp still comes first."""
    import signal
    from types import SimpleNamespace

    def failure(stamp: int, code: int) -> SimpleNamespace:
        return SimpleNamespace(timestamp=stamp, exitcode=code, pid=100)

    kill, abort, term = -int(signal.SIGKILL), -int(signal.SIGABRT), -int(signal.SIGTERM)
    assert launch._first_failure({0: failure(5, abort), 1: failure(5, kill)})[0] == 1
    assert launch._first_failure({0: failure(5, term), 1: failure(5, kill)})[0] == 1
    assert launch._first_failure({0: failure(4, abort), 1: failure(5, kill)})[0] == 0
    assert launch._first_failure({0: failure(5, 1), 1: failure(5, kill)})[0] == 0
    error = SimpleNamespace(failures={0: failure(5, abort), 1: failure(5, kill)})
    with pytest.raises(launch.DistributedError,
                       match=r"rank 1 \(pid 100\) was killed by SIGKILL; rank 0 failed after"):
        launch._failure_status(error)
