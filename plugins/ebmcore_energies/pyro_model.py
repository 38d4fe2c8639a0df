"""An energy from a Pyro model, through Pyro's own potential-function utilities.

Needs the optional extra ``ebmcore[pyro]`` (``pip install ebmcore[pyro]``, i.e. pyro-ppl);
importing this module does not import Pyro, building a :class:`PyroPosterior` does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ebmcore.validation import check_points
from ebmcore_energies.posterior import ConstrainedEnergy, ParameterLayout

#: Name of the plate :class:`PyroPosterior` wraps a model in to evaluate all chains at once.
CHAIN_PLATE = "_ebmcore_chains"


def import_pyro() -> Any:
    """Return the ``pyro`` module, or raise an ImportError saying how to install it."""
    try:
        import pyro
        import pyro.infer.mcmc.util  # noqa: F401  (initialize_model)
    except ImportError as exc:
        raise ImportError(f"PyroPosterior needs Pyro, the optional extra ebmcore[pyro]: "
                          f"pip install ebmcore[pyro] ({exc})") from exc
    return pyro


def _plate_nesting(trace: Any) -> int:
    """The deepest plate of a trace's sample sites (as Pyro guesses ``max_plate_nesting``)."""
    dims = [frame.dim for site in trace.nodes.values() if site["type"] == "sample"
            for frame in site["cond_indep_stack"] if frame.vectorized]
    return -min(dims) if dims else 0


class PyroPosterior(ConstrainedEnergy):
    """The posterior of a Pyro model's latent sites, as an energy over one flat vector.

    Built with Pyro's own ``pyro.infer.mcmc.util.initialize_model``: its transforms map each
    latent site onto an unconstrained block, and the energy is Pyro's potential
    ``-log p(x, y) - log|det J|`` (HMC's potential energy) over the concatenated blocks.
    :meth:`constrain` returns draws under the model's site names.

    With ``vectorize=True`` (the default) one call evaluates every chain: the model runs
    once inside an extra ``pyro.plate`` over the chains (to the left of its own plates),
    conditioned on the batched site values, as ``Predictive(parallel=True)`` runs it. The
    model must then be vectorisable (plates declared, no ``.item()`` on latent values, no
    shape taken from a latent value); at construction the batched potential is compared
    with Pyro's own ``potential_fn`` at two points, and a model that fails gets an error
    that says so. ``vectorize=False`` calls Pyro's ``potential_fn`` once per chain instead
    (any model, but a Python loop: 30 to 45 times slower at 64 chains on eight schools).

    Args:
        model: The Pyro model, a callable with ``pyro.sample`` statements; observed sites
            carry ``obs=``. Discrete latent sites are refused (marginalise them).
        model_args: Positional arguments the model is called with.
        model_kwargs: Keyword arguments the model is called with.
        vectorize: Evaluate all chains in one run of the model (see above).
        max_plate_nesting: How many plates the model nests (default: found by running it
            once, as Pyro does).
        validate_args: Pyro's distribution validation while the energy runs the model
            (``pyro.validation_enabled``). Off by default: a diverging trajectory visits
            points where a validating distribution raises for the whole batch of chains.
    """

    def __init__(self, model: Callable[..., Any], model_args: Sequence[Any] = (),
                 model_kwargs: Mapping[str, Any] | None = None, vectorize: bool = True,
                 max_plate_nesting: int | None = None, validate_args: bool = False) -> None:
        import_pyro()
        from pyro.infer.mcmc.util import initialize_model

        if not callable(model):
            raise TypeError(f"model must be a callable Pyro model, got {type(model).__name__}")
        for flag, value in (("vectorize", vectorize), ("validate_args", validate_args)):
            if not isinstance(value, bool):
                raise TypeError(f"{flag} must be True or False, got {type(value).__name__}")
        self_args = tuple(model_args)
        self_kwargs = dict(model_kwargs or {})
        # initialize_model draws its initial point from torch's global RNG: keep it untouched.
        with torch.random.fork_rng(devices=[]):
            init, potential_fn, transforms, trace = initialize_model(
                model, model_args=self_args, model_kwargs=self_kwargs,
                max_plate_nesting=max_plate_nesting)
        discrete = [name for name, site in trace.nodes.items()
                    if site["type"] == "sample" and not site["is_observed"]
                    and site["fn"].has_enumerate_support]
        if discrete:
            raise ValueError(f"model has discrete latent sites {discrete}; gradient samplers "
                             f"need continuous parameters, so marginalise them in the model")
        if not transforms:
            raise ValueError("model has no latent sites (every pyro.sample is observed)")
        blocks = [(name, tuple(trace.nodes[name]["value"].shape), transforms[name].inv,
                   trace.nodes[name]["fn"].support) for name in transforms]
        super().__init__(ParameterLayout(blocks))
        self.model = model
        self.model_args = self_args
        self.model_kwargs = self_kwargs
        self.potential_fn = potential_fn
        self.vectorize = vectorize
        self.validate_args = validate_args
        self.max_plate_nesting = (_plate_nesting(trace) if max_plate_nesting is None
                                  else max_plate_nesting)
        self._event_dims = {name: trace.nodes[name]["fn"].event_dim for name in transforms}
        if vectorize:
            self._check_vectorized(init)

    def log_density(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """Return the model's log joint ``(B,)`` at constrained site values ``(B, *shape)``.

        The model runs once, in a plate over the chains at dimension
        ``-(max_plate_nesting + 1)``, conditioned on ``values``; each site's log probability
        (with its plates' scale and mask) is summed over all but the chain dimension.
        """
        import pyro
        from pyro import poutine

        n = next(iter(values.values())).shape[0]
        nest = self.max_plate_nesting
        data = {}
        for name, v in values.items():
            batch_dims = v.ndim - 1 - self._event_dims[name]
            data[name] = v.reshape(n, *([1] * (nest - batch_dims)), *v.shape[1:])
        with pyro.validation_enabled(self.validate_args), \
                pyro.plate(CHAIN_PLATE, n, dim=-(nest + 1)):
            trace = poutine.trace(poutine.condition(self.model, data=data)).get_trace(
                *self.model_args, **self.model_kwargs)
        trace.compute_log_prob()
        like = next(iter(values.values()))
        total = torch.zeros(n, dtype=like.dtype, device=like.device)
        for site in trace.nodes.values():
            if site["type"] != "sample":
                continue
            lp = site["log_prob"]
            if lp.ndim > nest:
                total = total + lp.reshape(*lp.shape[:lp.ndim - nest], -1).sum(-1).reshape(n)
            else:
                total = total + lp.sum()
        return total

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Return Pyro's potential energy at ``z (B, D)``, every chain at once or one by one."""
        if self.vectorize:
            return super().forward(z)
        import pyro

        z = check_points("z", z, self.event_shape, finite=False)
        with pyro.validation_enabled(self.validate_args):
            return torch.stack([self.potential_fn(self.layout.split(row))
                                for row in z]).to(z.dtype)

    def _check_vectorized(self, init: dict[str, torch.Tensor]) -> None:
        """Compare the batched potential with Pyro's ``potential_fn`` at two points."""
        gen = torch.Generator().manual_seed(0)
        z0 = torch.cat([init[name].detach().reshape(-1) for name in self.layout.names])
        shift = torch.rand(z0.shape, generator=gen, dtype=z0.dtype) - 0.5
        z = torch.stack([z0, z0 + shift.to(z0.device)])
        expected = torch.stack([self.potential_fn(self.layout.split(row)).detach()
                                for row in z])
        try:
            with torch.no_grad():
                got = self(z)
        except Exception as exc:
            raise ValueError(
                f"the model could not be run for all chains at once inside a "
                f"pyro.plate over chains ({type(exc).__name__}: {exc}); declare its plates "
                f"and avoid .item() on latent values, or pass vectorize=False") from exc
        if not torch.allclose(got, expected.to(got.dtype), rtol=1e-6, atol=1e-6):
            raise ValueError(
                f"the model gives a different potential when run for all chains at once "
                f"inside a pyro.plate over chains ({got.tolist()} against Pyro's "
                f"potential_fn {expected.tolist()}); it does not vectorise (a shape read "
                f"from a latent value, a missing plate?). Pass vectorize=False")
