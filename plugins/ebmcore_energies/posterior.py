"""Posterior energies over named, constrained parameter blocks.

A Bayesian model names its parameters, each a block with a shape and a support (a
``torch.distributions.constraints`` object: ``real``, ``positive``, ``interval(0, 1)``,
``simplex``, ``corr_cholesky``...). Samplers move on one flat, unconstrained vector ``z``
``(B, D)``; PyTorch's own bijections (``torch.distributions.biject_to``) map each block of
``z`` onto its support, and the energy carries the log-Jacobian of that map, so that
``exp(-E(z))`` is the posterior density of ``z``::

    E(z) = -log p(T(z)) - log |det J_T(z)|

:class:`ConstrainedEnergy` holds what every such energy shares (the layout of the blocks,
:meth:`~ConstrainedEnergy.constrain`, :meth:`~ConstrainedEnergy.unconstrain`,
:meth:`~ConstrainedEnergy.initial_points`); :class:`Posterior` takes the log density as a
Python function of the constrained blocks, and :class:`ebmcore_energies.pyro_model.PyroPosterior`
takes a Pyro model.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch.distributions import Distribution, biject_to, constraints
from torch.distributions.transforms import Transform, identity_transform

from ebmcore.energy import Energy
from ebmcore.validation import check_int, check_points

#: A parameter block as :class:`Posterior` takes it: a support alone (a scalar), or
#: ``(shape, support)`` with ``shape`` an int or a tuple of ints.
ParamSpec = Any


class ParameterLayout:
    """Where each named block lives in the flat unconstrained vector, and its bijection.

    Args:
        blocks: ``(name, shape, transform, support)`` per block, in order: ``shape`` is the
            block's shape in the constrained space, ``support`` its constraint, and
            ``transform`` maps an unconstrained value of shape
            ``transform.inverse_shape(shape)`` onto the support.

    Attributes:
        names: The block names, in order.
        shapes: Constrained shape of each block.
        free_shapes: Unconstrained shape of each block (fewer entries for a simplex, a
            correlation Cholesky factor...).
        transforms: Unconstrained-to-constrained transform of each block.
        supports: The support (a constraint) of each block.
        dim: Length ``D`` of the flat unconstrained vector.
    """

    def __init__(self, blocks: list[tuple[str, tuple[int, ...], Transform, Any]]) -> None:
        self.names = [name for name, _, _, _ in blocks]
        self.shapes = {name: tuple(shape) for name, shape, _, _ in blocks}
        self.transforms = {name: t for name, _, t, _ in blocks}
        self.supports = {name: support for name, _, _, support in blocks}
        self.free_shapes: dict[str, tuple[int, ...]] = {}
        self._slices: dict[str, slice] = {}
        start = 0
        for name, shape, t, _ in blocks:
            free = tuple(t.inverse_shape(torch.Size(shape)))
            self.free_shapes[name] = free
            size = math.prod(free)
            self._slices[name] = slice(start, start + size)
            start += size
        self.dim = start

    def split(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return each block's unconstrained values ``(..., *free_shape)`` from ``z (..., D)``."""
        lead = z.shape[:-1]
        return {name: z[..., self._slices[name]].reshape((*lead, *self.free_shapes[name]))
                for name in self.names}

    def constrain(self, z: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Return the constrained blocks ``(..., *shape)`` and ``log|det J|`` ``(...)``."""
        lead = z.shape[:-1]
        values = {}
        log_det = None
        for name, u in self.split(z).items():
            t = self.transforms[name]
            if t == identity_transform:  # an unconstrained block: no work, no Jacobian
                values[name] = u
                continue
            y = t(u)
            values[name] = y
            term = _sum_to(t.log_abs_det_jacobian(u, y), lead)
            log_det = term if log_det is None else log_det + term
        if log_det is None:
            log_det = torch.zeros(lead, dtype=z.dtype, device=z.device)
        return values, log_det

    def unconstrain(self, values: Mapping[str, Any], like: torch.Tensor | None = None
                    ) -> torch.Tensor:
        """Return the flat unconstrained vectors ``(..., D)`` of constrained ``values``.

        Args:
            values: One value per block, each ``(*shape)`` or ``(..., *shape)`` (leading
                dimensions broadcast together).
            like: A tensor whose dtype and device the values take (default: the first
                tensor value's, else the default dtype on the CPU).
        """
        if not isinstance(values, Mapping):
            raise TypeError(f"values must be a dict of parameter name -> value, got "
                            f"{type(values).__name__}")
        missing = [n for n in self.names if n not in values]
        unknown = [n for n in values if n not in self.shapes]
        if missing or unknown:
            raise ValueError(f"values must hold exactly the parameters {self.names}; "
                             f"missing {missing}, unknown {unknown}")
        if like is None:
            like = next((v for v in values.values() if isinstance(v, torch.Tensor)
                         and v.is_floating_point()), torch.empty(0))
        tensors = {}
        for name in self.names:
            v = torch.as_tensor(values[name], dtype=like.dtype, device=like.device)
            shape = self.shapes[name]
            if tuple(v.shape[v.ndim - len(shape):]) != shape or v.ndim < len(shape):
                raise ValueError(f"values[{name!r}] must have shape {shape} (or (..., "
                                 f"*{shape}) for several points), got {tuple(v.shape)}")
            support = self.supports[name]
            if not bool(support.check(v).all()):
                raise ValueError(f"values[{name!r}] lies outside its support {support}")
            tensors[name] = v
        try:
            lead = torch.broadcast_shapes(*(t.shape[:t.ndim - len(self.shapes[n])]
                                            for n, t in tensors.items()))
        except RuntimeError as exc:
            raise ValueError(f"the leading (batch) dimensions of values do not broadcast: "
                             f"{exc}") from None
        parts = []
        for name, v in tensors.items():
            u = self.transforms[name].inv(v.expand((*lead, *self.shapes[name])))
            parts.append(u.reshape(*lead, -1))
        return torch.cat(parts, dim=-1)


def _sum_to(log_det: torch.Tensor, lead: torch.Size) -> torch.Tensor:
    """Sum a transform's log-Jacobian over the block's own dimensions, keeping ``lead``."""
    extra = log_det.ndim - len(lead)
    if extra > 0:
        return log_det.reshape(*lead, -1).sum(-1)
    return log_det.expand(lead)


def _shape_arg(name: str, shape: Any) -> tuple[int, ...]:
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list, torch.Size)) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape):
        raise ValueError(f"params[{name!r}]: the shape must be an int or a tuple of positive "
                         f"ints (() for a scalar), got {shape!r}")
    return tuple(shape)


def block_transform(name: str, shape: tuple[int, ...], support: Any) -> Transform:
    """Return ``biject_to(support)`` for block ``name`` after checking it fits ``shape``.

    Raises:
        TypeError: ``support`` is not a constraint, or PyTorch has no bijection onto it
            (discrete supports such as ``integer_interval``, or ``positive_definite``).
        ValueError: ``shape`` does not fit the support's event shape (a simplex needs at
            least one dimension and two entries, a Cholesky factor a square matrix...).
    """
    where = f"params[{name!r}]"
    if not isinstance(support, constraints.Constraint):
        raise TypeError(f"{where}: the support must be a torch.distributions.constraints "
                        f"object (constraints.real, constraints.positive, ...), got "
                        f"{type(support).__name__} {support!r}")
    try:
        t = biject_to(support)
    except NotImplementedError:
        raise TypeError(f"{where}: PyTorch has no bijection onto the support {support} "
                        f"(torch.distributions.biject_to does not know it); discrete "
                        f"parameters cannot be sampled by gradient samplers, and a "
                        f"covariance can be written as a positive scale vector and a "
                        f"constraints.corr_cholesky factor") from None
    if len(shape) < support.event_dim:
        raise ValueError(f"{where}: the support {support} has {support.event_dim} event "
                         f"dimension(s) but the block's shape {shape} has {len(shape)}")
    try:
        free = tuple(t.inverse_shape(torch.Size(shape)))
        out = tuple(t.forward_shape(torch.Size(free)))
    except (ValueError, IndexError, RuntimeError) as exc:
        raise ValueError(f"{where}: the shape {shape} does not fit the support {support} "
                         f"({exc})") from None
    if out != shape or math.prod(free) == 0:
        raise ValueError(f"{where}: the shape {shape} does not fit the support {support}: "
                         f"it leaves {math.prod(free)} free entries")
    return t


class ConstrainedEnergy(Energy):
    """An energy over the flat unconstrained vector of named, constrained parameter blocks.

    ``E(z) = -log p(T(z)) - log|det J_T(z)|``: subclasses give :meth:`log_density`, the log
    density of a batch of constrained blocks. The event shape is ``(D,)``; gradients come
    from autograd.

    Args:
        layout: The blocks' names, shapes and bijections.
    """

    def __init__(self, layout: ParameterLayout) -> None:
        super().__init__()
        self.layout = layout
        self.event_shape = (layout.dim,)

    @property
    def names(self) -> list[str]:
        """The parameter names, in the order of their blocks in ``z``."""
        return list(self.layout.names)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Each parameter's constrained shape."""
        return dict(self.layout.shapes)

    @property
    def dim(self) -> int:
        """The length ``D`` of the unconstrained vector the samplers move."""
        return self.layout.dim

    def log_density(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """Return the log density ``(B,)`` of constrained blocks ``values[name] (B, *shape)``.

        Constant terms may be dropped. Subclasses implement it.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement log_density")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Return ``-log p(T(z)) - log|det J_T(z)|`` for ``z (B, D)``."""
        z = check_points("z", z, self.event_shape, finite=False)
        # A chain whose position turned non-finite (a diverging trajectory) gets a NaN
        # energy and gradient, which samplers reject, without its values reaching the log
        # density, where a validating distribution would raise for the whole batch.
        finite = torch.isfinite(z).all(-1)
        all_finite = bool(finite.all())
        at = z if all_finite else torch.where(finite[:, None], z, torch.zeros_like(z))
        values, log_det = self.layout.constrain(at)
        lp = self.log_density(values)
        if lp.dtype.is_floating_point and torch.finfo(lp.dtype).eps > torch.finfo(z.dtype).eps:
            raise ValueError(
                f"the log density came back in {lp.dtype} for {z.dtype} points, so the "
                f"energy would be {lp.dtype}-accurate only; give its distributions and data "
                f"the points' dtype (some distributions, e.g. Gamma, cast their argument to "
                f"their parameters' dtype)")
        e = -(lp + log_det).to(z.dtype)
        if all_finite:
            return e
        # NaN energy and gradient on the bad rows; the inner where keeps the good rows'
        # gradient free of 0 * NaN.
        nan = (torch.where(finite[:, None], torch.zeros_like(z), z) * math.nan).sum(-1)
        return torch.where(finite, e, nan)

    def constrain(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Map unconstrained vectors onto the named constrained parameters.

        Args:
            z: Points ``(..., D)``: one ``(D,)``, chains ``(B, D)``, or a trajectory
                ``(T, B, D)`` (``SampleResult.trajectory``).

        Returns:
            ``{name: (..., *shape)}`` for every parameter, detached from any graph.
        """
        if not isinstance(z, torch.Tensor) or not z.is_floating_point():
            raise TypeError(f"z must be a floating-point torch.Tensor, got "
                            f"{type(z).__name__}")
        if z.ndim < 1 or z.shape[-1] != self.dim:
            raise ValueError(f"z must have shape (..., {self.dim}), got {tuple(z.shape)}")
        with torch.no_grad():
            return self.layout.constrain(z.detach())[0]

    def unconstrain(self, values: Mapping[str, Any]) -> torch.Tensor:
        """Map named constrained values onto unconstrained vectors ``(..., D)``.

        Args:
            values: ``{name: value}`` for every parameter, each ``(*shape)`` or
                ``(..., *shape)``; each must lie in its support.
        """
        with torch.no_grad():
            return self.layout.unconstrain(values)

    def initial_points(self, n_chains: int, generator: torch.Generator | None = None, *,
                       init: Mapping[str, Any] | None = None, radius: float = 2.0,
                       dtype: torch.dtype | None = None,
                       device: torch.device | str | None = None) -> torch.Tensor:
        """Return starting points ``(n_chains, D)`` with a finite energy, checked.

        By default each unconstrained coordinate is drawn uniformly from
        ``(-radius, radius)``, as Stan does; with ``init`` every chain starts at the given
        constrained values instead.

        Args:
            n_chains: Number of chains ``B``.
            generator: Source of randomness (torch's global RNG is never touched).
            init: ``{name: value}`` constrained starting values (each ``(*shape)`` for all
                chains, or ``(n_chains, *shape)``).
            radius: Half-width of the uniform draws, positive.
            dtype: Floating dtype of the points (default: torch's default dtype).
            device: Device of the points (default: the generator's, else the CPU).

        Raises:
            ValueError: The log density is NaN or infinite at some chains' starting point;
                the message names the chains and their parameter values.
        """
        check_int("n_chains", n_chains, minimum=1)
        if isinstance(radius, bool) or not isinstance(radius, (int, float)) \
                or not 0 < radius < math.inf:
            raise ValueError(f"radius must be a positive finite number, got {radius!r}")
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if device is None:
            device = generator.device if generator is not None else "cpu"
        if init is None:
            z = torch.rand(n_chains, self.dim, generator=generator, dtype=dtype, device=device)
            z = (2 * z - 1) * radius
        else:
            like = torch.empty(0, dtype=dtype, device=device)
            with torch.no_grad():
                z = self.layout.unconstrain(init, like=like)
            if z.shape[:-1] not in ((), (1,), (n_chains,)):
                raise ValueError(f"init gives starting values for {tuple(z.shape[:-1])} "
                                 f"chains; give one value per parameter for all chains, or "
                                 f"n_chains = {n_chains} of them")
            z = z.expand(n_chains, self.dim).clone()
        self.check_start(z)
        return z

    def check_start(self, z: torch.Tensor) -> None:
        """Raise a ValueError naming the chains whose energy at ``z (B, D)`` is not finite.

        The message gives the first such chain's constrained parameter values, so that the
        offending block can be seen.
        """
        with torch.no_grad():
            e = self(z)
        bad = torch.nonzero(~torch.isfinite(e)).flatten().tolist()
        if not bad:
            return
        first = self.constrain(z[bad[0]])
        shown = ", ".join(f"{n}={_short(v)}" for n, v in first.items())
        kind = "NaN" if bool(torch.isnan(e[bad[0]])) else "infinite"
        listed = bad if len(bad) <= 10 else [*bad[:10], "..."]
        raise ValueError(
            f"the log density is not finite at the initial point of {len(bad)} of "
            f"{z.shape[0]} chains (chains {listed}); chain {bad[0]} gives {kind} at {shown}. "
            f"Check the log density there, or start elsewhere (init=..., or a smaller radius)")

    def extra_repr(self) -> str:
        blocks = ", ".join(f"{n}: {self.layout.shapes[n]} {self.layout.supports[n]}"
                           for n in self.layout.names)
        return f"D={self.dim}, {blocks}"


def _short(v: torch.Tensor) -> str:
    flat = v.reshape(-1)
    text = ", ".join(f"{float(x):.4g}" for x in flat[:6])
    if v.ndim == 0:
        return text
    return f"[{text}{', ...' if flat.numel() > 6 else ''}]"


@contextlib.contextmanager
def _default_validation(value: bool) -> Iterator[None]:
    """Set torch's default distribution validation for the block, then restore it."""
    before = Distribution._validate_args
    Distribution.set_default_validate_args(value)
    try:
        yield
    finally:
        Distribution.set_default_validate_args(before)


class Posterior(ConstrainedEnergy):
    """A posterior written as a log density over named, constrained parameter blocks.

    The samplers see one flat unconstrained vector ``z (B, D)``; each block is mapped onto
    its support by ``torch.distributions.biject_to`` and the energy adds the log-Jacobian,
    ``E(z) = -log p(T(z)) - log|det J_T(z)|``. Draws come back named and constrained with
    :meth:`constrain`::

        from torch.distributions import Normal, HalfCauchy, constraints

        def log_prob(mu, tau, theta):          # one draw: mu (), tau (), theta (8,)
            return (Normal(0, 5).log_prob(mu) + HalfCauchy(5).log_prob(tau)
                    + Normal(mu, tau).log_prob(theta).sum()
                    + Normal(theta, sigma).log_prob(y).sum())

        posterior = Posterior(log_prob, {"mu": constraints.real,
                                         "tau": constraints.positive,
                                         "theta": (8, constraints.real)})
        z0 = posterior.initial_points(4, generator)   # (4, 10)

    By default ``log_prob`` is written for one draw and vectorised over the chains with
    ``torch.func.vmap``, so it costs one batched call per energy evaluation; it must then
    avoid data-dependent Python control flow and ``.item()``. With ``batched=True`` it
    receives ``(B, *shape)`` blocks and returns ``(B,)`` itself (write it so when vmap
    cannot run it).

    Args:
        log_prob: The log density of the constrained parameters (up to a constant), called
            with one keyword argument per parameter.
        params: ``{name: support}`` for a scalar, or ``{name: (shape, support)}`` with
            ``shape`` an int or a tuple; ``support`` is a ``torch.distributions.constraints``
            object (``real``, ``positive``, ``greater_than(a)``, ``interval(a, b)``,
            ``unit_interval``, ``simplex``, ``corr_cholesky``, ...).
        batched: Whether ``log_prob`` takes a batch of draws (see above).
        validate_args: torch's default argument validation for the distributions that
            ``log_prob`` builds while it runs (``Distribution.set_default_validate_args``,
            restored afterwards). Off by default: sampling passes through points where a
            validating distribution raises for the whole batch (``exp(z)`` underflowing to
            0 for a ``LogNormal`` in a diverging trajectory), and validation calls
            ``.item()``, which ``vmap`` cannot run. Distributions built outside
            ``log_prob`` keep their own setting.
    """

    def __init__(self, log_prob: Callable[..., torch.Tensor],
                 params: Mapping[str, ParamSpec], batched: bool = False,
                 validate_args: bool = False) -> None:
        if not callable(log_prob):
            raise TypeError(f"log_prob must be callable, got {type(log_prob).__name__}")
        if not isinstance(params, Mapping) or not params:
            raise TypeError(f"params must be a non-empty dict of name -> support or "
                            f"(shape, support), got {params!r}")
        for flag, value in (("batched", batched), ("validate_args", validate_args)):
            if not isinstance(value, bool):
                raise TypeError(f"{flag} must be True or False, got {type(value).__name__}")
        blocks = []
        for name, spec in params.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"params: names must be Python identifiers (they are "
                                 f"log_prob's keyword arguments), got {name!r}")
            if isinstance(spec, tuple) and len(spec) == 2:
                shape, support = _shape_arg(name, spec[0]), spec[1]
            else:
                shape, support = (), spec
            blocks.append((name, shape, block_transform(name, shape, support), support))
        super().__init__(ParameterLayout(blocks))
        self.log_prob = log_prob
        self.batched = batched
        self.validate_args = validate_args

    def _one(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.log_prob(**values)

    def log_density(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """Return ``log_prob`` of the blocks ``values[name] (B, *shape)``, shape ``(B,)``."""
        with _default_validation(self.validate_args):
            return self._log_density(values)

    def _log_density(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        n = next(iter(values.values())).shape[0]
        if self.batched:
            lp = self.log_prob(**values)
            if not isinstance(lp, torch.Tensor) or lp.shape != (n,):
                got = tuple(lp.shape) if isinstance(lp, torch.Tensor) else type(lp).__name__
                raise ValueError(f"log_prob (batched=True) must return one log density per "
                                 f"draw, shape ({n},) for {n} draws, got {got}")
            return lp
        try:
            lp = torch.func.vmap(self._one)(values)
        except RuntimeError as exc:
            raise RuntimeError(
                f"log_prob could not be vectorised over the chains by torch.func.vmap "
                f"({exc}); avoid data-dependent control flow and .item() in it (some "
                f"distributions call .item() when validating their arguments: pass them "
                f"validate_args=False), or write it for a batch of draws and pass "
                f"batched=True") from exc
        if not isinstance(lp, torch.Tensor) or lp.shape != (n,):
            got = tuple(lp.shape[1:]) if isinstance(lp, torch.Tensor) else type(lp).__name__
            raise ValueError(f"log_prob must return one number (a 0-d tensor) for one draw, "
                             f"got shape {got}; sum the terms of each block (or pass "
                             f"batched=True and return shape (B,))")
        return lp
