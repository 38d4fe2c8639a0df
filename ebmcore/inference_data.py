"""Export a sampling run to ArviZ's ``InferenceData``.

:func:`to_inference_data` turns a :class:`ebmcore.SampleResult` (its trajectory and
diagnostics) into an ``arviz.InferenceData`` whose ``posterior`` group holds named
parameters ``(chain, draw, *shape)`` and whose ``sample_stats`` group holds what the
sampler reported, under ArviZ's names (``acceptance_rate``, ``diverging``, ``step_size``,
``tree_depth``, ``n_steps``). ArviZ is an optional extra (``pip install ebmcore[arviz]``),
imported only when this function runs.

Per-draw statistics exist only where something kept them: a run keeps per-chain totals in
its diagnostics, and :class:`InfoRecorder` wraps a sampler to keep its per-step ``info`` at
the kept steps::

    recorder = InfoRecorder(sampler)
    result = recorder.sample(energy, x0, 1000, burn_in=1000, return_trajectory=True)
    idata = to_inference_data(result, posterior.constrain, info=recorder.kept_info(result))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from ebmcore.energy import Energy
from ebmcore.sampler import Sampler, SampleResult

#: ebmcore's per-step ``info`` keys and the ArviZ ``sample_stats`` names they become.
ARVIZ_NAMES = {
    "accept_prob": "acceptance_rate",
    "divergent": "diverging",
    "step_size": "step_size",
    "tree_depth": "tree_depth",
    "n_grad": "n_steps",
}

#: Per-chain diagnostics of a run and their ``sample_stats`` names (dimension ``chain``
#: only): totals and means over the kept draws, which ArviZ has no per-draw name for.
CHAIN_NAMES = {
    "acceptance": "mean_acceptance_rate",
    "divergences": "n_diverging",
    "tree_depth": "mean_tree_depth",
    "n_grad_warmup": "n_grad_warmup",
    "n_grad_sampling": "n_grad_sampling",
}


def import_arviz() -> Any:
    """Return the ``arviz`` module, or raise an ImportError saying how to install it."""
    try:
        import arviz
    except ImportError as exc:
        raise ImportError(f"to_inference_data needs ArviZ, the optional extra "
                          f"ebmcore[arviz]: pip install ebmcore[arviz] ({exc})") from exc
    return arviz


def to_inference_data(result: SampleResult,
                      constrain: Callable[[torch.Tensor], Mapping[str, torch.Tensor]]
                      | None = None, *,
                      info: Mapping[str, torch.Tensor] | None = None,
                      coords: Mapping[str, Any] | None = None,
                      dims: Mapping[str, list[str]] | None = None) -> Any:
    """Return an ``arviz.InferenceData`` of a run's kept draws and sampler statistics.

    Args:
        result: A run of :meth:`ebmcore.Sampler.sample` with ``return_trajectory=True``;
            its trajectory ``(T, C, *event_shape)`` becomes ``C`` chains of ``T`` draws.
        constrain: Maps the trajectory ``(T, C, *event_shape)`` to named parameters
            ``{name: (T, C, *shape)}`` (a posterior energy's ``constrain``); ``None`` puts
            the raw positions under the name ``"x"``.
        info: Per-draw sampler statistics ``{key: (T, B)}`` (:meth:`InfoRecorder.kept_info`),
            under ebmcore's info keys (renamed by :data:`ARVIZ_NAMES`; other keys keep their
            name). Where it has no ``step_size``, the run's per-chain final step size
            (fixed after burn-in) is repeated over the draws.
        coords: ArviZ coordinates, e.g. ``{"school": names}``.
        dims: ArviZ dimensions per variable, e.g. ``{"theta": ["school"]}``.

    Returns:
        ``InferenceData`` with a ``posterior`` group ``(chain, draw, *shape)`` and, when the
        run reported any, a ``sample_stats`` group: the per-draw statistics above, and the
        per-chain diagnostics of :data:`CHAIN_NAMES` (dimension ``chain`` only).
        Scalar diagnostics (``backend``, ``seconds``...) become every group's attributes,
        prefixed ``ebmcore_`` (``ebmcore_backend``).

    Raises:
        ImportError: ArviZ is not installed.
        ValueError: The result has no trajectory, or ``constrain``/``info`` give arrays of
            the wrong shape.
    """
    az = import_arviz()
    if not isinstance(result, SampleResult):
        raise TypeError(f"result must be an ebmcore.SampleResult, got {type(result).__name__}")
    traj = result.trajectory
    if traj is None:
        raise ValueError("result has no trajectory: sample with return_trajectory=True")
    n_draws, n_chains = traj.shape[0], traj.shape[1]
    stride = int(result.diagnostics.get("trajectory_stride", 1))
    draws = {"x": traj} if constrain is None else constrain(traj)
    if not isinstance(draws, Mapping):
        raise TypeError(f"constrain must return a dict of name -> (T, C, *shape), got "
                        f"{type(draws).__name__}")
    posterior = {}
    for name, value in draws.items():
        value = torch.as_tensor(value)
        if tuple(value.shape[:2]) != (n_draws, n_chains):
            raise ValueError(f"constrain returned {name!r} of shape {tuple(value.shape)}; "
                             f"expected ({n_draws}, {n_chains}, ...) like the trajectory")
        posterior[name] = _numpy(value.movedim(0, 1))
    stats = _per_draw(info, n_draws, n_chains, stride)
    chain_stats, attrs = _per_chain(result.diagnostics, n_chains, stride)
    step_size = chain_stats.pop("step_size", None)
    if step_size is not None and "step_size" not in stats:
        stats["step_size"] = step_size[:, None].repeat(n_draws, axis=1)
    idata = az.from_dict(posterior=posterior, sample_stats=stats or None,
                         coords=dict(coords or {}), dims=dict(dims or {}))
    if chain_stats:
        # Per-chain totals have no draw dimension, which from_dict would give them.
        if "sample_stats" not in idata.groups():
            import xarray

            idata.add_groups(sample_stats=xarray.Dataset(
                coords={"chain": idata.posterior["chain"].values}))
        for name, value in chain_stats.items():
            idata.sample_stats[name] = ("chain", value)
    for group in idata.groups():
        idata[group].attrs.update(attrs)
    return idata


def _numpy(value: torch.Tensor) -> Any:
    value = value.detach().cpu()
    if value.is_floating_point():
        value = value.to(torch.float64)
    return value.numpy()


def _per_draw(info: Mapping[str, torch.Tensor] | None, n_draws: int, n_chains: int,
              stride: int) -> dict[str, Any]:
    """``info``'s ``(T, B)`` tensors as ``(chain, draw)`` arrays of the traced chains."""
    if info is None:
        return {}
    if not isinstance(info, Mapping):
        raise TypeError(f"info must be a dict of key -> (T, B) tensors, got "
                        f"{type(info).__name__}")
    out = {}
    for key, value in info.items():
        value = torch.as_tensor(value)
        if value.ndim != 2 or value.shape[0] != n_draws:
            raise ValueError(f"info[{key!r}] must have shape (T, B) with T = {n_draws} kept "
                             f"draws, got {tuple(value.shape)}")
        if value.shape[1] != n_chains:
            value = value[:, ::stride]
        if value.shape[1] != n_chains:
            raise ValueError(f"info[{key!r}] has {value.shape[1]} chains after the trace "
                             f"stride {stride}, the trajectory {n_chains}")
        out[ARVIZ_NAMES.get(key, key)] = _numpy(value.movedim(0, 1))
    return out


def _per_chain(diagnostics: Mapping[str, Any], n_chains: int,
               stride: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-chain diagnostics of the traced chains, and the scalar ones as attributes."""
    stats, attrs = {}, {}
    for key, value in diagnostics.items():
        if isinstance(value, torch.Tensor) and value.ndim == 1 and (
                key in CHAIN_NAMES or key == "step_size"):
            value = value[::stride] if value.shape[0] != n_chains else value
            if value.shape[0] == n_chains:
                stats[CHAIN_NAMES.get(key, key)] = _numpy(value)
        elif isinstance(value, (str, int, float)):
            # netCDF has no boolean attributes: True/False are stored as 1/0
            attrs[f"ebmcore_{key}"] = int(value) if isinstance(value, bool) else value
    return stats, attrs


class InfoRecorder(Sampler):
    """A sampler that runs another and keeps its per-step ``info`` at every step.

    :meth:`kept_info` then returns the info of the kept draws ``{key: (T, B)}`` for
    :func:`to_inference_data`. Only ``(B,)`` tensors are kept (memory ``O(steps x B)``
    per key). The wrapper runs on the ``torch`` backend only, since the fused and compiled
    backends do not return each step's info to Python.

    Args:
        sampler: The sampler to run.
    """

    def __init__(self, sampler: Sampler) -> None:
        if not isinstance(sampler, Sampler):
            raise TypeError(f"sampler must be an ebmcore.Sampler, got "
                            f"{type(sampler).__name__}")
        self.sampler = sampler
        self.acceptance_key = sampler.acceptance_key
        self.divergence_key = sampler.divergence_key
        self.chain_diagnostics = sampler.chain_diagnostics
        self.grads_per_step = sampler.grads_per_step
        self.max_trace_evaluations = sampler.max_trace_evaluations
        self.trace_spacing = sampler.trace_spacing
        self._steps: list[dict[str, torch.Tensor]] = []
        self._burn_in = 0

    def init(self, energy: Energy, x: torch.Tensor) -> Any:
        """Start a new record and return the wrapped sampler's initial state."""
        self._steps, self._burn_in = [], 0
        return self.sampler.init(energy, x)

    def step(self, energy: Energy, state: Any,
             generator: torch.Generator | None = None) -> tuple[Any, dict[str, Any]]:
        """Run the wrapped sampler's step and keep a copy of its ``(B,)`` info tensors."""
        state, info = self.sampler.step(energy, state, generator)
        b = state.x.shape[0]
        self._steps.append({k: v.detach().clone() for k, v in info.items()
                            if isinstance(v, torch.Tensor) and v.shape == (b,)})
        return state, info

    def adapt(self, state: Any, info: dict[str, Any], iteration: int, n_adapt: int) -> Any:
        """Count a burn-in step and let the wrapped sampler adapt."""
        self._burn_in += 1
        return self.sampler.adapt(state, info, iteration, n_adapt)

    def final_diagnostics(self, state: Any) -> dict[str, Any]:
        """The wrapped sampler's final diagnostics."""
        return self.sampler.final_diagnostics(state)

    def state_dict(self) -> dict[str, Any]:
        """The wrapped sampler's state dict."""
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the wrapped sampler's state dict."""
        self.sampler.load_state_dict(state)

    def kept_info(self, result: SampleResult) -> dict[str, torch.Tensor]:
        """Return the info of ``result``'s kept draws, ``{key: (T, B)}`` (all chains).

        Args:
            result: What the last :meth:`sample` of this recorder returned (its ``thin``
                and the number of draws kept pick the steps).
        """
        kept = self._steps[self._burn_in:]
        thin = int(result.diagnostics.get("thin", 1))
        kept = kept[thin - 1::thin]
        if result.trajectory is not None:
            kept = kept[:result.trajectory.shape[0]]
        if not kept:
            return {}
        keys = [k for k in kept[0] if all(k in step for step in kept)]
        return {k: torch.stack([step[k] for step in kept]) for k in keys}
