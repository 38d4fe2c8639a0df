"""The 2-D toy data sets' run recipe (and so ``ebmcore demo``'s), with its per-loss tuning."""

from __future__ import annotations

from typing import Any

#: Half-width of the toy data sets' evaluation box, ``[-5, 5]²``.
TOY_HALF_WIDTH = 5.0

#: The recipe of the 2-D toy data sets (and so of ``ebmcore demo``): an ``mlp`` trained by
#: persistent contrastive divergence with Langevin negatives, evaluated on ``[-5, 5]²``.
#: The field losses' ``mlp_field`` sees 64 random Fourier features of the point at scale 4
#: beside it (``input_features``): they let flow matching resolve thin rings and the
#: checkerboard's edges (likelihood gap on ``rings`` 0.071 against the plain field's 0.665;
#: docs/training-results.md, benchmarks/generative.py).
_TOY_FIELD: dict[str, Any] = {
    "model": {"name": "mlp_field", "params": {"hidden": [256, 256, 256], "input_features": 64,
                                              "input_scale": 4.0}},
}
TOY_RECIPE: dict[str, Any] = {
    "model": {"name": "mlp", "params": {}},
    "loss": {"name": "pcd", "params": {}},
    "sampler": {"name": "langevin", "params": {"step_size": 0.01}},
    "evaluate": {"bounds": [-TOY_HALF_WIDTH, TOY_HALF_WIDTH]},
    "losses": {name: _TOY_FIELD for name in ("flow_matching", "equilibrium_matching",
                                            "diffusion")},
}
