"""What a run reports about its chains: R-hat and ESS of the traced ones, and which were
finite."""

from __future__ import annotations

from typing import Any

import torch

#: Chains whose trajectory ``ebmcore sample`` and training runs record for R-hat, ESS and the
#: chain plots (``settings["trace_chains"]``, ``sample.trace_chains``): memory then grows with
#: this number times the kept steps, not with the number of chains sampled.
DEFAULT_TRACE_CHAINS = 1000

#: The largest R-hat of samples a run writes without a warning (Vehtari et al. 2021).
RHAT_LIMIT = 1.05

#: What the warning of unmixed chains tells ``ebmcore sample`` to do.
SAMPLE_FIX = ("Sample longer (--steps, --burn-in) or use a sampler that moves between modes, "
              "e.g. --sampler parallel_tempering --set sampler.base=mala --set "
              "'sampler.temperatures=[1,2,4,8]'")

#: What it tells a training run to do: its samples come from ``sample.sampler`` (the 2-D
#: recipe's parallel tempering at temperatures up to 32), else from the sampler training used.
#: A run already on that sampler samples longer; another one writes with it (the ladder that
#: mixed every 2-D set, docs/training-results.md#samples-that-mix).
RUN_FIX = ("Sample longer, e.g. --set sample.n_steps=1000 --set sample.burn_in=600, or write "
           "the samples with a sampler that moves between modes, e.g. --set "
           "'sample.sampler={name = \"parallel_tempering\", params = {base = \"mala\", "
           "temperatures = [1, 2, 4, 8, 16, 32]}}'")


def _scalar_summary(values: torch.Tensor) -> dict[str, float]:
    values = values.double().flatten()
    return {"min": float(values.min()), "median": float(values.median()),
            "max": float(values.max())}


def chain_diagnostics(trajectory: torch.Tensor, *, total_chains: int | None = None,
                      stride: int = 1, fix: str = SAMPLE_FIX) -> dict[str, Any]:
    """R-hat, bulk and tail ESS per coordinate of a trajectory ``(T, C, *event)``.

    Chains with a non-finite draw are left out (the sampler reports them, never replaces
    them); the rest are diagnosed together. The report says what was used: ``n_chains``
    and ``n_draws`` (per chain) went into the figures, ``n_nonfinite_chains`` were left out,
    of the ``traced_chains`` recorded, which were chains ``0, s, 2s, ...``
    (``s = chain_stride``) of the ``total_chains`` sampled. ``rhat``, ``ess_bulk`` and
    ``ess_tail`` are ``None`` (with a ``note``) when no chain is finite or a chain holds
    fewer than 4 draws. When the largest R-hat exceeds :data:`RHAT_LIMIT` the report has a
    ``warning`` saying so and what to do (``fix``): such chains have not mixed (a multimodal
    energy's chains stuck in their modes, say), so the samples misweight the model's regions.

    Args:
        trajectory: Kept positions, steps first (``SampleResult.trajectory``).
        total_chains: Chains sampled, when the trajectory records a subset of them.
        stride: The subset's stride (``SampleResult.diagnostics["trajectory_stride"]``).
        fix: What the warning says to do: :data:`SAMPLE_FIX` (``ebmcore sample``'s options)
            or :data:`RUN_FIX` (a training run's ``[sample]`` settings).
    """
    from ebmcore import diagnostics

    draws = diagnostics.from_trajectory(trajectory)
    finite = torch.isfinite(draws.flatten(1)).all(1)
    used = draws[finite] if not bool(finite.all()) else draws
    report: dict[str, Any] = {
        "n_chains": int(used.shape[0]), "n_draws": int(draws.shape[1]),
        "n_nonfinite_chains": int(draws.shape[0] - used.shape[0]),
        "traced_chains": int(draws.shape[0]), "chain_stride": int(stride),
        "total_chains": int(draws.shape[0] if total_chains is None else total_chains),
        "rhat": None, "ess_bulk": None, "ess_tail": None,
    }
    if used.shape[0] == 0:
        report["note"] = "every traced chain turned non-finite; nothing to diagnose"
    elif draws.shape[1] < diagnostics.MIN_DRAWS:
        report["note"] = (f"{draws.shape[1]} kept draws per chain; R-hat and ESS need at "
                          f"least {diagnostics.MIN_DRAWS}")
    else:
        report.update(rhat=_scalar_summary(diagnostics.rhat(used)),
                      ess_bulk=_scalar_summary(diagnostics.ess_bulk(used)),
                      ess_tail=_scalar_summary(diagnostics.ess_tail(used)))
        worst = report["rhat"]["max"]
        if not worst <= RHAT_LIMIT:
            report["warning"] = (
                f"the chains have not mixed (max R-hat {worst:.3f} > {RHAT_LIMIT}): the "
                f"samples may weight the model's modes wrongly. {fix}")
    return report


def finite_chains(trajectory: torch.Tensor) -> torch.Tensor:
    """The chains (columns) of ``trajectory`` whose draws are all finite, or all of them
    when none is (a plot then shows what went wrong)."""
    finite = torch.isfinite(trajectory.flatten(2)).all(2).all(0)
    return trajectory[:, finite] if bool(finite.any()) else trajectory


def finite_rows(samples: torch.Tensor) -> torch.Tensor:
    """The samples ``(B, *event)`` whose coordinates are all finite."""
    return samples[torch.isfinite(samples.flatten(1)).all(1)]
