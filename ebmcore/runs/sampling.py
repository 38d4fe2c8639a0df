"""Sampling a run: draw chains from an energy and write samples, diagnostics and plots.

Errors name the keys of ``settings`` (``settings['n_steps']``); the command line says which
of its options set them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import ebmcore
from ebmcore.runs.build import component_block, evaluation_work
from ebmcore.runs.chains import DEFAULT_TRACE_CHAINS, chain_diagnostics, finite_chains, finite_rows
from ebmcore.runs.folder import prepare_output_dir, run_ranks, save_figure, versions, write_json

#: The plots' axis range comes from at most this many samples (torch.quantile's input is
#: limited to 2**24 values, and a range needs no more).
_SPREAD_POINTS = 100_000


def _check_settings(settings: dict[str, Any]) -> tuple[int, int, int, bool, str, int | None]:
    """Check ``settings``; return steps, thinning, traced chains, whether to stream the
    trajectory, the backend and the dimension asked for."""
    from ebmcore.sampling.lookup import find_backend
    from ebmcore.validation import check_int

    for key, minimum in (("n_chains", 1), ("n_steps", 1), ("burn_in", 0), ("thin", 1)):
        if key in settings:
            check_int(f"settings[{key!r}]", settings[key], minimum=minimum)
    trace_chains = check_int("settings['trace_chains']",
                             settings.get("trace_chains", DEFAULT_TRACE_CHAINS), minimum=1)
    save_trajectory = settings.get("save_trajectory", False)
    if not isinstance(save_trajectory, bool):
        raise TypeError(f"settings['save_trajectory'] must be true or false, got "
                        f"{save_trajectory!r}")
    n_steps, thin = int(settings["n_steps"]), int(settings.get("thin", 1))
    if n_steps // thin == 0:
        raise ValueError(f"settings['n_steps'] {n_steps} with settings['thin'] {thin} keeps "
                         f"no step; give at least {thin} steps")
    backend = str(settings.get("backend", "auto"))
    # an unknown name is refused here, before the output folder is made
    chosen = None if backend in ("auto", "torch") else find_backend(backend)
    if save_trajectory and chosen is not None and not chosen.streams:
        raise ValueError(f"settings['save_trajectory'] streams each kept step to disk as the "
                         f"chains run; settings['backend'] {backend!r} runs the whole loop in "
                         f"one call. Use settings['backend'] torch (or auto, which then picks "
                         f"one that streams)")
    dim = settings.get("dim")
    if dim is not None:
        dim = check_int("settings['dim']", dim, minimum=1)
    return n_steps, thin, trace_chains, save_trajectory, backend, dim


def _event_shape(energy: Any, dim: int | None) -> tuple[int, ...]:
    """The shape of one point: the energy's own, or ``(dim,)`` for one that takes any."""
    if energy.event_shape is None:
        if dim is None:
            raise ValueError(f"{type(energy).__name__} accepts any dimension; give "
                             f"settings['dim']")
        return (dim,)
    if dim is not None and tuple(energy.event_shape) != (dim,):
        raise ValueError(f"settings['dim'] {dim} does not fit {type(energy).__name__}, whose "
                         f"event shape is {tuple(energy.event_shape)}")
    return tuple(energy.event_shape)


def sample_run(energy: Any, sampler_spec: dict[str, Any], settings: dict[str, Any],
               out: str | Path, *, seed: int = 0, progress: bool = False,
               overwrite: bool = False, distributed: bool = False,
               threads: int | None = None) -> dict[str, Any]:
    """Sample ``energy`` and write samples (``.pt``, ``.npy``), diagnostics and plots.

    Memory stays bounded whatever the run's size: the chains' positions, per-chain counts,
    and the trajectory of ``trace_chains`` chains only (chains ``0, s, 2s, ...``, see
    :meth:`ebmcore.Sampler.sample`), on which R-hat, ESS and the chain plots are computed;
    ``diagnostics.json`` says how many chains and draws they used (``chains``). With
    ``save_trajectory`` every chain's kept steps go to ``trajectory.npy``
    ``(T, B, *event_shape)``, written step by step as the chains run (on a backend that
    streams; see :class:`ebmcore.sampler.TrajectoryFile`), never held whole in memory.

    Args:
        energy: An :class:`ebmcore.Energy`.
        sampler_spec: ``{"name": ..., "params": {...}}`` of the sampler.
        settings: ``n_chains``, ``n_steps``, ``burn_in``, ``thin``, ``backend``, ``init_scale``,
            ``trace_chains`` (default :data:`~ebmcore.runs.chains.DEFAULT_TRACE_CHAINS`),
            ``save_trajectory`` (default false) and, for energies without an
            ``event_shape``, ``dim``.
        out: The output folder (created; must be empty unless ``overwrite``).
        seed: Seeds the initial points and the sampler.
        progress: Show a progress bar on a terminal.
        overwrite: Allow writing into a non-empty folder.
        distributed: Split the chains over the ranks of the initialised process group
            (``Sampler.sample(distributed=True)``; every rank calls this alike). Every rank
            returns the report; rank 0 writes the folder, except that with
            ``save_trajectory`` each rank writes its own chains' columns of
            ``trajectory.npy`` (on several machines the folder must then be shared).
        threads: CPU threads for torch (and numba); ``None`` lets
            :func:`ebmcore.threads.fit_threads` choose for the size of the chains' batch.
    """
    import numpy as np

    from ebmcore.threads import fit_threads

    n_steps, thin, trace_chains, save_trajectory, backend, dim = _check_settings(settings)
    block = component_block("sampler", sampler_spec)
    sampler = ebmcore.create("sampler", block["name"], **block["params"])
    event_shape = _event_shape(energy, dim)
    fit_threads(threads, work=evaluation_work(energy, int(settings["n_chains"])))
    ranks = run_ranks(distributed)
    ranks.main_first(lambda: prepare_output_dir(out, overwrite=overwrite))
    out = Path(out)
    ref = next(iter(energy.buffers()), None)
    ref = next(iter(energy.parameters()), ref)
    dtype = ref.dtype if ref is not None else torch.float32
    device = ref.device if ref is not None else torch.device("cpu")
    x0 = float(settings.get("init_scale", 1.0)) * torch.randn(
        (int(settings["n_chains"]), *event_shape), generator=torch.Generator().manual_seed(seed),
        dtype=dtype).to(device)
    generator = torch.Generator(device=device).manual_seed(seed + 1)
    writer = (_trajectory_writer(out / "trajectory.npy", n_steps // thin, x0, trace_chains,
                                 ranks) if save_trajectory else None)
    try:
        result = sampler.sample(energy, x0, n_steps, burn_in=int(settings.get("burn_in", 0)),
                                thin=thin, generator=generator, return_trajectory=True,
                                trace_chains=trace_chains, on_keep=writer, backend=backend,
                                progress=progress and ranks.is_main, distributed=distributed)
    except BaseException:
        if writer is not None:  # a half-written file would read as a whole one
            writer.close()
            writer.path.unlink(missing_ok=True)
        raise
    if writer is not None:
        writer.close()
    samples = result.samples.detach().cpu()
    diag = result.diagnostics
    trajectory = result.trajectory.detach().cpu()
    acceptance = diag.get("acceptance")
    report = {
        "sampler": block, "backend": diag.get("backend"), "seconds": diag.get("seconds"),
        "n_chains": int(samples.shape[0]), "event_shape": list(event_shape), "seed": seed,
        "acceptance_mean": None if acceptance is None else float(acceptance.mean()),
        "nonfinite_chains": int(diag["nonfinite_chains"].numel())
        if "nonfinite_chains" in diag else None,
        "chains": chain_diagnostics(trajectory, total_chains=int(samples.shape[0]),
                                    stride=int(diag.get("trajectory_stride", 1))),
        "trajectory": None if writer is None else str(writer.path),
        "versions": versions(), "world_size": ranks.world_size,
    }
    if not ranks.is_main:
        return report  # rank 0 writes the files
    torch.save(samples, out / "samples.pt")
    np.save(out / "samples.npy", samples.numpy())
    report["plots"] = _plot_chains(trajectory, samples, energy, out)
    write_json(out / "diagnostics.json", report)
    return report


def _trajectory_writer(path: Path, n_kept: int, x0: torch.Tensor, trace_chains: int,
                       ranks: Any) -> Any:
    """The ``on_keep`` hook that streams every chain's kept steps into ``path``.

    In a distributed run rank 0 creates the file and each rank writes the columns of the
    chains it samples (:func:`ebmcore.sharded_sampling.chain_shards`).
    """
    from ebmcore.sampler import TrajectoryFile, trace_stride

    if not ranks.active:
        return TrajectoryFile(path, n_kept, x0.shape, x0.dtype)
    from ebmcore.sharded_sampling import chain_shards

    stride = trace_stride(x0.shape[0], trace_chains)
    columns = chain_shards(x0.shape[0], stride, ranks.world_size)[ranks.rank]
    created = ranks.main_first(
        lambda: TrajectoryFile(path, n_kept, x0.shape, x0.dtype, columns=columns))
    return created or TrajectoryFile(path, n_kept, x0.shape, x0.dtype, columns=columns,
                                     create=False)


def writing_sampler(model: Any, sampler: Any, sample_cfg: dict[str, Any]) -> Any:
    """The sampler a training run writes its samples with: the one ``sample.sampler`` names
    (:func:`ebmcore.config.sample_sampler`), else ``sampler``, the run's own (the one that
    drew training's negatives). A field without an energy is sampled by its flow sampler,
    the run's ``[sampler]``: it gets ``sampler`` back whatever ``sample.sampler`` says.

    The 2-D recipe names parallel tempering here: its trained energies are multimodal, and
    the Langevin chains that train them stay in the mode where they start.

    Args:
        model: The trained model.
        sampler: The run's sampler.
        sample_cfg: The run's ``[sample]`` section.

    Raises:
        ConfigError: When ``sample.sampler`` is malformed, names no sampler, or its
            parameters do not build it.
        TypeError: When the sampler cannot sample ``model``.
    """
    from ebmcore.config import sample_sampler
    from ebmcore.errors import ConfigError
    from ebmcore.field import Field, check_sampler_fits

    block = sample_sampler(sample_cfg)
    if block is None or (isinstance(model, Field) and model.energy() is None):
        return sampler
    try:
        chosen = ebmcore.create("sampler", block["name"], **block["params"])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"sample.sampler {block['name']!r}: {exc}") from exc
    check_sampler_fits(model, chosen, f"sample.sampler {block['name']}")
    return chosen


def _plot_chains(trajectory: torch.Tensor, samples: torch.Tensor, energy: Any,
                 out: Path) -> list[str]:
    """Trace, rank and autocorrelation plots of the traced chains (the finite ones), and a
    picture of the samples."""
    from ebmcore import plot

    shown = finite_chains(trajectory)
    written = [
        save_figure(plot.trace_plot(shown), out / "trace.png"),
        save_figure(plot.rank_plot(shown), out / "rank.png"),
        save_figure(plot.autocorrelation_plot(shown), out / "autocorrelation.png"),
    ]
    event = tuple(samples.shape[1:])
    finite = finite_rows(samples)
    if event == (2,):
        spread = (float(finite[:_SPREAD_POINTS].abs().quantile(0.99)) if finite.numel()
                  else 4.0)
        bound = max(1.0, 1.2 * spread)
        written.append(save_figure(
            plot.sample_scatter(finite, energy, bounds=(-bound, bound)), out / "samples.png"))
    elif len(event) == 3 and event[0] in (1, 3):
        written.append(save_figure(plot.image_grid(finite), out / "samples.png"))
    return [str(p) for p in written]
