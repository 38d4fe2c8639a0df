"""The trainer: exact resume, atomic checkpoints, data sources, callbacks and errors."""

from __future__ import annotations

import pytest
import torch

import ebmcore
from ebmcore.field import Field
from ebmcore.train import Trainer


def _make(tmp_path, data="dataset", steps=20, ema=0.9, seed=0, **kw):
    torch.manual_seed(1234)  # the model's initial weights (the global RNG is restored on resume)
    model = ebmcore.create("model", "mlp", dim=2, hidden=(16, 16))
    loss = ebmcore.create("loss", "pcd", k=2, buffer_size=200,
                          sampler_params={"step_size": 0.01})
    if data == "tensor":
        data = ebmcore.create("dataset", "eight_gaussians").sample(
            100, generator=torch.Generator().manual_seed(7))
    elif data == "loader":
        points = ebmcore.create("dataset", "eight_gaussians").sample(
            100, generator=torch.Generator().manual_seed(7))
        data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(points),
                                           batch_size=32, shuffle=True, drop_last=True)
    elif data == "dataset":
        data = "eight_gaussians"
    return Trainer(model, loss, data=data, steps=steps, batch_size=32, ema=ema, seed=seed,
                   log_every=5, checkpoint_dir=tmp_path, checkpoint_every=10, **kw)


def _all_state(trainer):
    tensors = list(trainer.model.state_dict().values())
    tensors += list(trainer.ema_model.state_dict().values())
    tensors.append(trainer.loss.buffer)
    return tensors


@pytest.mark.parametrize("data", ["dataset", "tensor", "loader"])
def test_resume_reproduces_an_uninterrupted_run_bit_for_bit(tmp_path, data):
    full = _make(tmp_path / "full", data)
    full.fit()
    resumed = _make(tmp_path / "resumed", data)
    resumed.resume(tmp_path / "full" / "step-000000010.pt")
    assert resumed.step == 10
    torch.manual_seed(999)  # whatever happened to the global RNG since is undone by resume...
    resumed.resume(tmp_path / "full" / "step-000000010.pt")
    resumed.fit()
    assert resumed.step == full.step == 20
    for a, b in zip(_all_state(full), _all_state(resumed), strict=True):
        assert torch.equal(a, b)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history]


def test_same_seed_same_bits_different_seed_different_bits(tmp_path):
    a, b, c = (_make(tmp_path / n, seed=s, steps=5) for n, s in (("a", 3), ("b", 3), ("c", 4)))
    for t in (a, b, c):
        t.fit()
    pa, pb, pc = (torch.cat([p.flatten() for p in t.model.parameters()]) for t in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_truncated_checkpoint_is_rejected_and_the_previous_one_loads(tmp_path):
    trainer = _make(tmp_path)
    trainer.fit()
    latest = tmp_path / "step-000000020.pt"
    data = latest.read_bytes()
    latest.write_bytes(data[: len(data) // 2])
    fresh = _make(tmp_path / "other")
    with pytest.raises(ebmcore.CheckpointError, match="step-000000020"):
        fresh.resume(latest)
    assert fresh.step == 0
    fresh.resume(tmp_path / "step-000000010.pt")
    assert fresh.step == 10
    again = _make(tmp_path / "third")
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint"):
        used = again.resume(tmp_path)
    assert used.name == "step-000000010.pt" and again.step == 10


def test_checkpoint_writes_leave_no_temporary_files(tmp_path):
    _make(tmp_path).fit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000010.pt",
                                                          "step-000000020.pt"]


def test_history_callbacks_and_stop(tmp_path):
    seen = []

    def callback(trainer, output):
        seen.append(trainer.step)
        assert isinstance(output, ebmcore.LossOutput)
        if trainer.step == 7:
            trainer.request_stop()

    trainer = _make(tmp_path, callbacks=[callback], grad_clip=1.0)
    history = trainer.fit()
    assert seen == list(range(1, 8))
    assert [r["step"] for r in history] == [5.0, 7.0]
    assert {"loss", "energy_pos", "energy_neg", "seconds"} <= set(history[0])
    history = trainer.fit()  # continues to the end
    assert trainer.step == 20 and history[-1]["step"] == 20.0


def test_optimizer_factory_and_default_covers_loss_parameters(tmp_path):
    model = ebmcore.create("model", "mlp", dim=2, hidden=(8,))
    nce = ebmcore.create("loss", "nce")
    trainer = Trainer(model, nce, data="eight_gaussians", steps=3, batch_size=16)
    assert any(p is nce.log_z for g in trainer.optimizer.param_groups for p in g["params"])
    before = float(nce.log_z.detach())
    trainer.fit()
    assert float(nce.log_z.detach()) != before
    sgd = Trainer(model, "dsm", lambda params: torch.optim.SGD(params, lr=0.1),
                  data="eight_gaussians", steps=2, batch_size=16)
    assert isinstance(sgd.optimizer, torch.optim.SGD)
    sgd.fit()


def test_trainer_does_not_touch_the_global_rng(tmp_path):
    state = torch.get_rng_state()
    trainer = _make(tmp_path, steps=3)
    torch.set_rng_state(state)
    trainer.fit()
    assert torch.equal(torch.get_rng_state(), state)


def test_divergence_is_reported(tmp_path):
    model = ebmcore.create("model", "mlp", dim=2, hidden=(8,))
    with torch.no_grad():
        model.net[0].weight.fill_(float("nan"))
    trainer = Trainer(model, "dsm", data="eight_gaussians", steps=3, batch_size=8, log_every=1)
    with pytest.raises(FloatingPointError, match="diverged"):
        trainer.fit()


def test_bad_arguments_are_named(tmp_path):
    model = ebmcore.create("model", "mlp", dim=2, hidden=(8,))
    with pytest.raises(ValueError, match="data is required"):
        Trainer(model, "dsm")
    with pytest.raises(ValueError, match="batch_size=64 exceeds"):
        Trainer(model, "dsm", data=torch.zeros(10, 2), batch_size=64)
    with pytest.raises(ValueError, match="event shape"):
        Trainer(model, "dsm", data=torch.zeros(10, 3), batch_size=4)
    with pytest.raises(TypeError, match="data must be"):
        Trainer(model, "dsm", data=[1, 2, 3])
    with pytest.raises(TypeError, match="loss must be"):
        Trainer(model, 3, data="eight_gaussians")
    with pytest.raises(TypeError, match="ebmcore.Energy"):
        Trainer(torch.nn.Linear(2, 1), "dsm", data="eight_gaussians")
    with pytest.raises(ValueError, match="checkpoint_dir"):
        Trainer(model, "dsm", data="eight_gaussians", checkpoint_every=5)
    with pytest.raises(ValueError, match="ema"):
        Trainer(model, "dsm", data="eight_gaussians", ema=1.5)
    with pytest.raises(TypeError, match="callbacks"):
        Trainer(model, "dsm", data="eight_gaussians", callbacks=print)
    with pytest.raises(TypeError, match="optimizer"):
        Trainer(model, "dsm", optimizer="adam", data="eight_gaussians")
    with pytest.raises(ValueError, match="steps"):
        Trainer(model, "dsm", data="eight_gaussians", steps=0)


def test_resume_into_a_different_setup_is_refused(tmp_path):
    _make(tmp_path, steps=10).fit()
    model = ebmcore.create("model", "mlp", dim=2, hidden=(16, 16))
    other = Trainer(model, "dsm", data="eight_gaussians", batch_size=32)
    with pytest.raises(ValueError, match="loss"):
        other.resume(tmp_path / "step-000000010.pt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ebmcore.CheckpointError, match="no checkpoints"):
        other.resume(empty)
    with pytest.raises(ebmcore.CheckpointError, match="does not exist"):
        other.resume(tmp_path / "missing.pt")


def test_ema_is_the_exponential_average_of_the_weights():
    model = ebmcore.create("model", "mlp", dim=2, hidden=(8,))
    start = [p.detach().clone() for p in model.parameters()]
    trainer = Trainer(model, "dsm", data="eight_gaussians", steps=2, batch_size=16, ema=0.9)
    trainer.train_step()
    after_one = [p.detach().clone() for p in model.parameters()]
    trainer.train_step()
    for s, a, p, e in zip(start, after_one, model.parameters(), trainer.ema_model.parameters(),
                          strict=True):
        want = 0.9 * (0.9 * s + 0.1 * a) + 0.1 * p.detach()
        torch.testing.assert_close(e, want)
    assert Trainer(model, "dsm", data="eight_gaussians").ema_model is None


def test_the_default_adam_is_fused_and_a_checkpoint_keeps_the_adam_that_wrote_it(tmp_path):
    """The default optimiser is torch's fused Adam (one kernel per parameter), the same
    updates as the per-tensor Adam to rounding; a checkpoint written by a per-tensor Adam
    (an older run's) resumes with it, so the resumed run ends with the same bits."""
    fused = _make(tmp_path / "fused", steps=20)
    assert fused.optimizer.param_groups[0]["fused"] is True
    plain = _make(tmp_path / "plain", steps=20,
                  optimizer=lambda params: torch.optim.Adam(params, lr=3e-3))
    assert not plain.optimizer.param_groups[0]["fused"]
    fused.fit()
    plain.fit()
    for a, b in zip(fused.model.parameters(), plain.model.parameters(), strict=True):
        torch.testing.assert_close(a, b)  # float32 rounding apart (6e-8 here), no more
    resumed = _make(tmp_path / "resumed", steps=20)  # the default, fused Adam...
    resumed.resume(tmp_path / "plain" / "step-000000010.pt")
    assert not resumed.optimizer.param_groups[0]["fused"]  # ...takes the writer's back
    resumed.fit()
    for a, b in zip(_all_state(plain), _all_state(resumed), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("data", ["dataset", "tensor", "loader"])
def test_the_model_wall_is_fitted_to_the_data_before_training(tmp_path, data):
    """The trainer fits the mlp's wall from the data source and leaves every stream alone."""
    trainer = _make(tmp_path, data)
    assert torch.equal(torch.get_rng_state(), _after_model_built())  # global RNG untouched
    wall = trainer.model.confinement
    assert bool(wall.fitted) and float(wall.radius) > 2.0  # eight_gaussians reaches ~3.5
    assert float(wall.center.norm()) < 0.5  # its mean is the origin
    if data == "tensor":
        points = trainer._batches.data
        torch.testing.assert_close(wall.center, points.mean(0), rtol=0, atol=1e-5)
    # The first batch is the one the data stream gives without any fit before it.
    first = trainer._batches.next()
    if data == "dataset":
        expected = ebmcore.create("dataset", "eight_gaussians").sample(
            32, generator=torch.Generator().manual_seed(0))
        assert torch.equal(first, expected)
    elif data == "tensor":
        rows = torch.randperm(100, generator=torch.Generator().manual_seed(0))[:32]
        assert torch.equal(first, trainer._batches.data[rows])


def _after_model_built():
    """Torch's global RNG state after _make's seeding and model, with nothing else drawn."""
    torch.manual_seed(1234)
    ebmcore.create("model", "mlp", dim=2, hidden=(16, 16))
    return torch.get_rng_state()


def test_a_fitted_wall_is_not_refitted(tmp_path):
    """A wall the user fitted by hand (or a resumed model's) is kept as it is."""
    torch.manual_seed(0)
    model = ebmcore.create("model", "mlp", dim=2, hidden=(8,))
    model.fit_confinement(torch.randn(100, 2) * 10)
    radius = float(model.confinement.radius)
    Trainer(model, "pcd", data="eight_gaussians", steps=1)
    assert float(model.confinement.radius) == radius


def test_fitting_the_wall_leaves_a_loaders_own_generator_alone():
    """A loader with its own shuffle generator gives the same first batch with or without a wall."""
    points = torch.randn(200, 2, generator=torch.Generator().manual_seed(3))

    def first_batch(confine):
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(points), batch_size=16, shuffle=True,
            generator=torch.Generator().manual_seed(5))
        model = ebmcore.create("model", "mlp", dim=2, hidden=(4,), confine=confine)
        trainer = Trainer(model, "pcd", data=loader, steps=1)
        assert trainer.model.confinement_fitted
        return trainer._batches.next()

    assert torch.equal(first_batch(True), first_batch(False))


def test_divergence_names_the_step_the_quantity_and_the_last_good_checkpoint(tmp_path):
    from ebmcore.errors import TrainingDivergedError

    def poison(trainer, output):
        if trainer.step == 6:  # after the checkpoint at step 6 the weights turn NaN
            with torch.no_grad():
                trainer.model.net[0].weight.fill_(float("nan"))

    model = ebmcore.create("model", "mlp", dim=2, hidden=(8,))
    trainer = Trainer(model, "dsm", data="eight_gaussians", steps=20, batch_size=8,
                      log_every=10, checkpoint_dir=tmp_path, checkpoint_every=2,
                      callbacks=[poison])
    with pytest.raises(TrainingDivergedError) as info:
        trainer.fit()
    error = info.value
    # found before the checkpoint at step 8 is written: a diverged state is never saved
    assert error.step == 7 and error.quantities[0] == "loss"
    assert error.checkpoint == str(tmp_path / "step-000000006.pt")
    assert not (tmp_path / "step-000000008.pt").exists()
    message = str(error)
    assert message.startswith("training diverged at step 7: the loss = nan")
    assert "learning rate (lr=0.003)" in message and "step-000000006.pt" in message
    assert isinstance(error, FloatingPointError) and isinstance(error, ebmcore.EbmcoreError)


def test_divergence_is_named_instead_of_the_error_it_causes_downstream():
    from ebmcore.errors import TrainingDivergedError

    torch.manual_seed(0)
    model = ebmcore.create("model", "mlp", dim=2, hidden=(16, 16))
    loss = ebmcore.create("loss", "pcd", k=2, buffer_size=64, sampler_params={"step_size": 0.01})
    trainer = Trainer(model, loss, data="eight_gaussians", steps=20, batch_size=32, lr=1e6,
                      log_every=50)
    with pytest.raises(TrainingDivergedError) as info:
        trainer.fit()
    error = info.value
    # the next step fails in the sampler on its non-finite starting points, long before the
    # log cadence: that error is chained, and the message names the step that diverged
    assert isinstance(error.__cause__, ValueError) and "x0" in str(error.__cause__)
    assert error.step == 2 and "loss" in error.quantities
    assert str(error).startswith("training diverged at step 2: ")
    assert "the learning rate (lr=1e+06) or the sampler's step size" in str(error)
    assert "no checkpoint was written before it" in str(error)


def test_a_resumed_trainer_forgets_what_went_wrong_after_the_checkpoint(tmp_path):
    trainer = _make(tmp_path, steps=10, ema=None)
    trainer.fit()
    with torch.no_grad():
        trainer.model.net[0].weight.fill_(float("nan"))
    trainer.train_step()  # not checked yet: the watch holds it on the device
    assert trainer.step == 11 and not trainer.in_step
    trainer.resume(tmp_path / "step-000000010.pt")
    trainer.check_finite()  # the poisoned step was undone
    assert trainer.last_checkpoint == tmp_path / "step-000000010.pt"


class _GrowingEnergyLoss(ebmcore.Loss):
    """A loss whose reported energy grows tenfold every step: a run that runs away."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, model, x):
        from ebmcore.loss import LossOutput

        self.calls += 1
        e = model(x).mean()
        return LossOutput(loss=e, metrics={"energy_pos": torch.tensor(10.0 ** self.calls)})


def test_a_runaway_is_warned_once_and_named_with_its_step(tmp_path):
    """Energies beyond runaway_energy give one warning and Trainer.runaway names the step."""
    from ebmcore.errors import TrainingRunawayWarning

    model = ebmcore.create("model", "mlp", dim=2, hidden=(4,))
    trainer = Trainer(model, _GrowingEnergyLoss(), data="eight_gaussians", steps=6,
                      batch_size=8, log_every=1)
    with pytest.warns(TrainingRunawayWarning, match="step 4: energy_pos = 1e\\+04") as caught:
        trainer.fit()
    assert len([w for w in caught if w.category is TrainingRunawayWarning]) == 1
    assert trainer.runaway == {"step": 4, "quantity": "energy_pos", "value": 1e4,
                               "limit": 1e3}
    quiet = Trainer(ebmcore.create("model", "mlp", dim=2, hidden=(4,)), _GrowingEnergyLoss(),
                    data="eight_gaussians", steps=6, batch_size=8, log_every=1,
                    runaway_energy=None)
    quiet.fit()
    assert quiet.runaway is None
    with pytest.raises(ValueError, match="runaway_energy"):
        Trainer(model, "pcd", data="eight_gaussians", runaway_energy=-1.0)


def test_a_healthy_run_does_not_run_away(tmp_path):
    """The default pcd recipe's energies stay far inside the runaway limit."""
    trainer = _make(tmp_path, steps=20)
    trainer.fit()
    assert trainer.runaway is None


class _SometimesNaNLoss(ebmcore.Loss):
    """A loss with a state that every call changes, whose value is NaN on chosen calls."""

    def __init__(self, bad_calls):
        super().__init__()
        self.bad_calls = set(bad_calls)
        self.calls = 0
        self.register_buffer("visits", torch.zeros(()))

    def forward(self, model, x):
        from ebmcore.loss import LossOutput

        self.calls += 1
        self.visits += 1
        e = model(x).mean()
        if self.calls in self.bad_calls:
            e = e * float("nan")
        return LossOutput(loss=e, metrics={})


def test_skip_nonfinite_skips_the_step_and_restores_the_losss_state():
    """Opted in, a NaN step changes neither the weights nor the loss's state; it is listed."""
    torch.manual_seed(0)
    model = ebmcore.create("model", "mlp", dim=2, hidden=(4,))
    loss = _SometimesNaNLoss({3, 6})
    trainer = Trainer(model, loss, data="eight_gaussians", steps=7, batch_size=8,
                      log_every=1, skip_nonfinite=True)
    weights = []

    def remember(trainer, output):
        weights.append([p.detach().clone() for p in trainer.model.parameters()])

    trainer.callbacks = (remember,)
    trainer.fit()
    assert trainer.skipped_steps == [3, 6] and trainer.step == 7
    def same(i, j):
        return all(torch.equal(a, b) for a, b in zip(weights[i], weights[j], strict=True))

    for step in (3, 6):  # weights after a skipped step equal those before it
        assert same(step - 2, step - 1)
    assert not same(0, 1)
    assert float(loss.visits) == 5  # the two skipped calls' changes were undone
    assert trainer.state_dict()["skipped_steps"] == [3, 6]


def test_without_opting_in_a_nan_step_stops_the_run():
    """The default stops at the first non-finite step, naming it."""
    from ebmcore.errors import TrainingDivergedError

    model = ebmcore.create("model", "mlp", dim=2, hidden=(4,))
    trainer = Trainer(model, _SometimesNaNLoss({3}), data="eight_gaussians", steps=7,
                      batch_size=8, log_every=1)
    with pytest.raises(TrainingDivergedError, match="step 3"):
        trainer.fit()


def test_too_many_skipped_steps_in_a_row_is_a_divergence():
    """Skipping cannot hide a model that diverged for good."""
    from ebmcore.errors import TrainingDivergedError
    from ebmcore.train import MAX_SKIPPED_IN_A_ROW

    model = ebmcore.create("model", "mlp", dim=2, hidden=(4,))
    trainer = Trainer(model, _SometimesNaNLoss(range(2, 100)), data="eight_gaussians",
                      steps=50, batch_size=8, log_every=1, skip_nonfinite=True)
    with pytest.raises(TrainingDivergedError, match=f"last {MAX_SKIPPED_IN_A_ROW} steps"):
        trainer.fit()
    assert trainer.step == 1 + MAX_SKIPPED_IN_A_ROW
    with pytest.raises(TypeError, match="skip_nonfinite"):
        Trainer(model, "pcd", data="eight_gaussians", skip_nonfinite="yes")


def test_the_trainer_seeds_every_loss_through_the_declared_set_generator():
    """A loss that defines no set_generator of its own still gets the trainer's stream."""
    model = ebmcore.create("model", "mlp", dim=2, hidden=(4,))
    loss = _GrowingEnergyLoss()
    trainer = Trainer(model, loss, data="eight_gaussians", steps=1, batch_size=8)
    assert loss.generator is trainer.loss_generator
    pcd = ebmcore.create("loss", "pcd", k=1, buffer_size=16)
    trainer = Trainer(model, pcd, data="eight_gaussians", steps=1, batch_size=8)
    assert pcd.generator is trainer.loss_generator


def test_data_must_be_a_declared_dataset_not_any_object_with_sample():
    class Lookalike:
        def sample(self, n, generator=None):
            return torch.zeros(n, 2)

    model = ebmcore.create("model", "mlp", dim=2, hidden=(4,))
    with pytest.raises(TypeError, match="data must be a tensor, an ebmcore.Dataset"):
        Trainer(model, "dsm", data=Lookalike(), batch_size=8)

    class Declared(ebmcore.Dataset):
        def sample(self, n, generator=None):
            return torch.randn(n, 2, generator=generator)

    trainer = Trainer(model, "dsm", data=Declared(), steps=2, batch_size=8)
    assert len(trainer.fit()) == 1


def test_a_field_trains_as_it_is_and_resumes_exactly(tmp_path):
    """A Field model is trained without being turned into an energy (it has no confinement
    to fit), and its checkpoints resume bit for bit like an energy's."""
    def make(steps):
        torch.manual_seed(99)
        field = ebmcore.create("model", "mlp_field", dim=2, hidden=(16, 16))
        return Trainer(field, "flow_matching", data="eight_gaussians", steps=steps,
                       batch_size=32, seed=3, log_every=5, checkpoint_dir=tmp_path,
                       checkpoint_every=5)

    whole = make(10)
    assert isinstance(whole.model, Field)
    whole.fit()
    part = make(10)
    part.resume(tmp_path / "step-000000005.pt")
    part.fit()
    for a, b in zip(whole.model.parameters(), part.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_anything_but_an_energy_or_a_field_is_refused():
    with pytest.raises(TypeError, match="Energy"):
        Trainer(torch.nn.Linear(2, 2), "flow_matching", data="eight_gaussians", steps=1)
