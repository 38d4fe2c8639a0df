"""End to end: PCD with its defaults learns each 2-D data set with a known density to near the
data's own NLL, as a real density: the whole plane's mass counted, none leaking far away."""

from __future__ import annotations

import pytest
import torch

import ebmcore
from ebmcore.evaluate import grid_evaluation
from ebmcore.train import Trainer

#: The issue's goals: the honest test-NLL gap pcd reaches with its defaults, per data set.
#: Measured for seed 0, test seed 123: 0.106, 0.237 and 0.235, with at most 2e-4 of the mass
#: outside the box (docs/training-results.md, "No halo").
GOALS = {"eight_gaussians": 0.15, "checkerboard": 0.30, "rings": 0.30}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(GOALS))
def test_pcd_mlp_reaches_the_data_nll(name):
    """2,000 steps at batch 256 (about 1 min each on one core) land within the goal.

    Defaults only: pcd's (Langevin step 0.01, k=20, buffer 10,000, alpha=0.1 on the network's
    energy, restarts within the data's range), mlp's (four
    hidden layers of 128, with its confining wall, fitted to the data by the trainer) and the
    trainer's (Adam at 3e-3). The evaluation normalises over the whole plane: a 256x256 grid
    over [-5, 5]^2 plus rings out to 81 times that box. A model whose energy falls far away
    (the old mlp without a wall) is "not normalisable" and fails here; so does the two-layer
    mlp on checkerboard and rings (0.346 and 0.704). The assertion adds four Monte Carlo
    standard errors of the gap estimate from the 20,000 test points, so it holds for the
    population gap too.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = ebmcore.create("model", "mlp", dim=2)
        dataset = ebmcore.create("dataset", name)
        trainer = Trainer(model, "pcd", data=dataset, steps=2000, batch_size=256, seed=0,
                          log_every=500)
        trainer.fit()
        test = dataset.sample(20000, generator=torch.Generator().manual_seed(123))
        ev = grid_evaluation(model, dataset, test, bounds=(-5.0, 5.0), resolution=256)
    finally:
        torch.set_num_threads(threads)
    assert ev.normalisable, ev.status
    with torch.no_grad():
        per_point = (model(test) + ev.log_z).double() + dataset.log_prob(test.double())
    assert ev.outside_mass_3x < 1e-3
    # no halo: at most 0.1 % of the mass outside the box itself (issue #23)
    assert ev.outside_mass < 1e-3, ev.ring_masses
    far = ev.far_field  # the energy at radius 1000 is above the highest energy on the data
    assert far.radii[-1] == pytest.approx(1000.0) and far.min_energy[-1] > far.reference_energy
    # the box holds the data; the midpoint rule loses up to 1 % of the checkerboard's
    # discontinuous density in the cells its square edges cut
    assert ev.data_mass == pytest.approx(1.0, abs=0.01)
    assert float(per_point.mean()) == pytest.approx(ev.nll_gap, abs=1e-5)
    stderr = float(per_point.std() / per_point.numel() ** 0.5)
    assert ev.nll_gap + 4 * stderr < GOALS[name], (ev, stderr)
