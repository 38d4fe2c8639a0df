"""Contrastive divergence losses: closed-form gradients, stationarity, the replay buffer."""

from __future__ import annotations

import pytest
import torch
from conftest import Frozen, LearnableGaussian, loss_grads

import ebmcore


def _energy_and_param_grads(model, pts):
    """Per-point E, dE/dμ and dE/dA of the Gaussian energy, in closed form."""
    p = model.precision.detach()
    d = pts - model.mean.detach()
    e = 0.5 * ((d @ p) * d).sum(1)
    de_dmean = -(d @ p)  # (N, D)
    de_da = torch.einsum("ni,nj,jk->nik", d, d, model.a.detach())  # d dᵀ A
    return e, de_dmean, de_da


@pytest.mark.parametrize("name", ["cd", "pcd"])
@pytest.mark.parametrize("alpha", [0.0, 0.3])
@pytest.mark.parametrize("init", ["data", "noise"])
def test_contrastive_gradient_matches_closed_form(gaussian_setup, name, alpha, init):
    model, x, _, _ = gaussian_setup
    loss = ebmcore.create("loss", name, k=3, init=init, alpha=alpha,
                          sampler_params={"step_size": 0.05},
                          generator=torch.Generator().manual_seed(1))
    if name == "pcd":
        loss(model, x)  # a second call draws from a buffer that already holds chains
    out, gm, ga = loss_grads(loss, model, x)
    neg = out.negatives
    assert neg.shape == x.shape and not neg.requires_grad
    e_pos, dm_pos, da_pos = _energy_and_param_grads(model, x)
    e_neg, dm_neg, da_neg = _energy_and_param_grads(model, neg)
    want_m = dm_pos.mean(0) - dm_neg.mean(0) + alpha * (
        (2 * e_pos[:, None] * dm_pos).mean(0) + (2 * e_neg[:, None] * dm_neg).mean(0))
    want_a = da_pos.mean(0) - da_neg.mean(0) + alpha * (
        (2 * e_pos[:, None, None] * da_pos).mean(0) + (2 * e_neg[:, None, None] * da_neg).mean(0))
    want_loss = e_pos.mean() - e_neg.mean() + alpha * (e_pos.pow(2).mean() + e_neg.pow(2).mean())
    torch.testing.assert_close(out.loss.detach(), want_loss)
    torch.testing.assert_close(gm, want_m)
    torch.testing.assert_close(ga, want_a)
    assert {"energy_pos", "energy_neg"} <= set(out.metrics)


def test_cd_gradient_vanishes_in_expectation_at_the_data_distribution():
    """With the model equal to the data law and an exact (MALA) kernel, E[∇θ loss] = 0."""
    mean = torch.tensor([0.5, -1.0], dtype=torch.float64)
    a = torch.tensor([[1.1, 0.0], [-0.4, 0.9]], dtype=torch.float64)
    model = LearnableGaussian(mean, a)
    cov = torch.linalg.inv(model.precision.detach())
    chol = torch.linalg.cholesky(cov)
    g = torch.Generator().manual_seed(3)
    sampler = ebmcore.create("sampler", "mala", step_size=0.3, adapt_step_size=False)
    # alpha=0: the energy penalty's gradient does not vanish at the data law
    loss = ebmcore.create("loss", "cd", sampler=sampler, k=3, init="data", alpha=0.0,
                          generator=g)
    grads = []
    for _ in range(150):
        x = mean + torch.randn(128, 2, generator=g, dtype=torch.float64) @ chol.T
        _, gm, ga = loss_grads(loss, model, x)
        grads.append(torch.cat([gm, ga.flatten()]))
    grads = torch.stack(grads)
    mcse = grads.std(0) / grads.shape[0] ** 0.5
    assert (grads.mean(0).abs() < 5 * mcse).all(), (grads.mean(0), mcse)


def test_cd_accepts_sampler_instances_and_rejects_bad_arguments():
    sampler = ebmcore.create("sampler", "langevin", step_size=0.1)
    assert ebmcore.create("loss", "cd", sampler=sampler).sampler is sampler
    with pytest.raises(ValueError, match="sampler_params"):
        ebmcore.create("loss", "cd", sampler=sampler, sampler_params={"step_size": 0.1})
    with pytest.raises(TypeError, match="sampler must be"):
        ebmcore.create("loss", "cd", sampler=3)
    with pytest.raises(ValueError, match="init must be"):
        ebmcore.create("loss", "cd", init="prior")
    with pytest.raises(ValueError, match="k must be at least 1"):
        ebmcore.create("loss", "cd", k=0)
    with pytest.raises(ValueError, match="alpha"):
        ebmcore.create("loss", "cd", alpha=-1.0)
    with pytest.raises(ValueError, match="noise_bounds"):
        ebmcore.create("loss", "cd", noise_bounds=(1.0, -1.0))


def test_pcd_buffer_restarts_about_reinit_prob_of_chains(gaussian_setup):
    model, x, _, _ = gaussian_setup
    p, n, steps = 0.2, 256, 20
    loss = ebmcore.create("loss", "pcd", sampler=Frozen(), k=1, buffer_size=4096,
                          reinit_prob=p, generator=torch.Generator().manual_seed(0))
    restarted = 0
    for _ in range(steps):
        before = loss.buffer.clone() if loss.buffer.numel() else None
        out = loss(model, x[:n].float().double())
        if before is not None:
            # A frozen chain that was not restarted is exactly a row of the buffer it came from.
            same = (out.negatives[:, None, :] == before[None]).all(-1).any(1)
            restarted += int((~same).sum())
    total = n * (steps - 1)
    sd = (total * p * (1 - p)) ** 0.5
    assert abs(restarted - total * p) < 5 * sd


def test_pcd_is_reproducible_and_its_buffer_is_state(gaussian_setup):
    model, x, _, _ = gaussian_setup

    def make(seed):
        return ebmcore.create("loss", "pcd", k=2, buffer_size=300,
                              sampler_params={"step_size": 0.05},
                              generator=torch.Generator().manual_seed(seed))

    a, b = make(5), make(5)
    out_a, out_b = a(model, x[:64]), b(model, x[:64])
    assert torch.equal(out_a.negatives, out_b.negatives)
    state = a.state_dict()
    assert state["buffer"].shape == (300, 2)
    assert {"noise_low", "noise_high", "_extra_state"} <= set(state)
    c = make(9)
    c.load_state_dict(state)
    assert torch.equal(c.buffer, a.buffer)
    c.set_generator(torch.Generator().manual_seed(11))
    a.set_generator(torch.Generator().manual_seed(11))
    assert torch.equal(a(model, x[:64]).negatives, c(model, x[:64]).negatives)


@pytest.mark.parametrize("name, margin", [("pcd", 0.0), ("cd", 0.25)])
def test_noise_starts_fill_the_batch_range_widened_by_the_margin(gaussian_setup, name, margin):
    """pcd restarts within the data's range by default, cd's noise starts reach a quarter past
    it: frozen chains are the starts, whose range fills the widened box."""
    model, x, _, _ = gaussian_setup
    extra = {"buffer_size": 4000, "reinit_prob": 0.0} if name == "pcd" else {}
    loss = ebmcore.create("loss", name, sampler=Frozen(), k=1, init="noise",
                          generator=torch.Generator().manual_seed(0), **extra)
    assert loss.noise_margin == margin
    batch = x[:64]
    low, high = batch.amin(0), batch.amax(0)
    starts = loss(model, batch.repeat(63, 1)[:4000]).negatives
    wide_low, wide_high = low - margin * (high - low), high + margin * (high - low)
    assert bool((starts >= wide_low).all() and (starts <= wide_high).all())
    # 4,000 uniform draws come within 1 % of the box's edges (failure odds ~ 4 e^-40)
    span = wide_high - wide_low
    assert bool((starts.amin(0) < wide_low + 0.01 * span).all())
    assert bool((starts.amax(0) > wide_high - 0.01 * span).all())
    with pytest.raises(ValueError, match="noise_margin"):
        ebmcore.create("loss", name, noise_margin=-0.1)


def test_pcd_data_init_and_validation(gaussian_setup):
    model, x, _, _ = gaussian_setup
    loss = ebmcore.create("loss", "pcd", sampler=Frozen(), k=1, buffer_size=50, init="data",
                          n_negatives=16, generator=torch.Generator().manual_seed(0))
    out = loss(model, x[:32])
    assert out.negatives.shape == (16, 2)
    # Every start came from the batch: frozen chains are data rows.
    assert (out.negatives[:, None, :] == x[None, :32]).all(-1).any(1).all()
    with pytest.raises(ValueError, match="event shape"):
        loss(LearnableGaussian(torch.zeros(3), torch.eye(3)), torch.zeros(8, 3))
    with pytest.raises(ValueError, match="reinit_prob"):
        ebmcore.create("loss", "pcd", reinit_prob=1.5)
    with pytest.raises(ValueError, match="buffer_size"):
        ebmcore.create("loss", "pcd", buffer_size=0)


def test_generator_must_be_a_generator():
    with pytest.raises(TypeError, match="generator"):
        ebmcore.create("loss", "cd", generator=42)


def test_pt_cd_draws_negatives_from_the_cold_replica(gaussian_setup):
    model, x, _, _ = gaussian_setup
    loss = ebmcore.create("loss", "pt_cd", k=3, alpha=0.0,  # the bare contrastive gradient
                          generator=torch.Generator().manual_seed(2))
    assert type(loss.sampler).__name__ == "ParallelTempering"
    out, gm, ga = loss_grads(loss, model, x)
    assert out.negatives.shape == x.shape and torch.isfinite(out.negatives).all()
    _, dm_pos, da_pos = _energy_and_param_grads(model, x)
    _, dm_neg, da_neg = _energy_and_param_grads(model, out.negatives)
    torch.testing.assert_close(gm, dm_pos.mean(0) - dm_neg.mean(0))
    torch.testing.assert_close(ga, da_pos.mean(0) - da_neg.mean(0))
    custom = ebmcore.create("loss", "pt_cd", sampler_params={
        "base": "mala", "base_params": {"step_size": 0.05, "adapt_step_size": False},
        "temperatures": (1.0, 3.0)})
    assert custom.sampler.temperatures == (1.0, 3.0)


@pytest.mark.parametrize("name", ["cd", "pcd"])
def test_base_init_starts_chains_at_exact_draws_of_the_models_gaussian_base(name):
    """Frozen chains from init='base' are the base's own draws: their moments are the data's."""
    gen = torch.Generator().manual_seed(0)
    data = torch.randn(4000, 3, generator=gen, dtype=torch.float64) * torch.tensor([0.1, 1.0, 3.0])
    model = ebmcore.create("model", "mlp", dim=3, hidden=[4], confine="gaussian").double()
    model.fit_confinement(data)
    extra = {"buffer_size": 4000, "reinit_prob": 0.0} if name == "pcd" else {}
    loss = ebmcore.create("loss", name, sampler=Frozen(), k=1, init="base",
                          generator=torch.Generator().manual_seed(1), **extra)
    negatives = loss(model, data[:4000]).negatives
    sd = data.std(0)
    # means within 4 standard errors, standard deviations within 5% (n = 4000)
    assert bool(((negatives.mean(0) - data.mean(0)).abs() < 4 * sd / 4000**0.5).all())
    torch.testing.assert_close(negatives.std(0), sd, rtol=0.05, atol=0.0)


def test_base_init_needs_a_model_with_a_gaussian_base(gaussian_setup):
    model, x, _, _ = gaussian_setup
    loss = ebmcore.create("loss", "cd", k=1, init="base")
    with pytest.raises(ValueError, match="init='base' needs a model with a Gaussian base"):
        loss(model, x[:8])


def test_the_energy_penalty_spares_a_gaussian_base():
    """With the network silenced the model is its base: the penalty on E - E_base is 0."""
    data = torch.randn(500, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model = ebmcore.create("model", "mlp", dim=2, hidden=[4], confine="gaussian").double()
    model.fit_confinement(data * 3.0)  # a base whose energies on data are far from 0
    with torch.no_grad():
        for p in model.net.parameters():
            p.zero_()
    plain, penalised = (ebmcore.create("loss", "cd", sampler=Frozen(), k=1, alpha=alpha,
                                       generator=torch.Generator().manual_seed(1))
                        for alpha in (0.0, 0.3))
    torch.testing.assert_close(penalised(model, data).loss, plain(model, data).loss)
    with torch.no_grad():
        model.net[-1].bias.fill_(2.0)  # E - E_base = 2 everywhere: penalty 0.3 * (4 + 4)
    torch.testing.assert_close(penalised(model, data).loss - plain(model, data).loss,
                               torch.tensor(2.4, dtype=torch.float64))


def test_the_energy_penalty_spares_the_confining_wall():
    """The wall is fixed once fitted: the penalty sees the network's energy alone, so it
    cannot hold negatives beyond the wall at E = 1 / (2 alpha) (the pcd halo)."""
    data = torch.randn(500, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model = ebmcore.create("model", "mlp", dim=2, hidden=[4]).double()
    model.fit_confinement(data)
    with torch.no_grad():
        for p in model.net.parameters():
            p.zero_()
        model.net[-1].bias.fill_(2.0)  # network energy 2 everywhere
    far = data * 10.0  # mostly beyond the wall, where it adds up to hundreds
    assert float(model.confinement(far).mean()) > 100.0
    plain, penalised = (ebmcore.create("loss", "cd", sampler=Frozen(), k=1, alpha=alpha,
                                       init="noise", noise_bounds=(-40.0, 40.0),
                                       generator=torch.Generator().manual_seed(1))
                        for alpha in (0.0, 0.3))
    gap = penalised(model, far).loss - plain(model, far).loss  # positives beyond it too
    torch.testing.assert_close(gap, torch.tensor(2.4, dtype=torch.float64))


def test_the_contrastive_losses_answer_the_loss_protocols():
    pcd = ebmcore.create("loss", "pcd", buffer_size=16, k=1)
    assert isinstance(pcd.sampler, ebmcore.Sampler)
    assert pcd.chain_counts == ("buffer_size", "n_negatives")
    assert pcd.sharded_state == ("buffer",)
    assert pcd.persistent_chains() is None  # not filled before the first step
    g = torch.Generator().manual_seed(0)
    pcd.set_generator(g)
    assert pcd.generator is g
    model = ebmcore.create("model", "mlp", dim=2, hidden=[8])
    pcd(model, torch.randn(4, 2))
    assert pcd.persistent_chains() is pcd.buffer and pcd.buffer.shape == (16, 2)
    cd = ebmcore.create("loss", "cd", k=1)
    assert cd.chain_counts == () and cd.persistent_chains() is None
    cd.use_compiled()
    assert cd.backend == "compiled"
    nuts = ebmcore.create("loss", "cd", sampler=ebmcore.create("sampler", "nuts", step_size=0.1))
    with pytest.raises(ValueError, match="NUTS has none"):
        nuts.use_compiled()
    dsm = ebmcore.create("loss", "dsm")
    assert dsm.sampler is None and dsm.chain_counts == ()
    with pytest.raises(ValueError, match="runs none"):
        dsm.use_compiled()
