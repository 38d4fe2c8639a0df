"""What ``train``, ``demo`` and ``evaluate`` print about a run: the evaluation's figures in
words, where the run folder's files are, and the exit status of a run a signal stopped."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

#: Exit statuses of a training run stopped by a signal (128 + the signal's number).
SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}


def print_summary(out: Path, metrics: dict[str, Any]) -> None:
    """Print a finished (or stopped) training run's figures and where its files are."""
    evaluation = metrics.get("evaluation") or {}
    for line in (evaluation_lines(evaluation) + image_lines(metrics.get("image_evaluation"))
                 + flow_lines(metrics)):
        print(line)
    runaway = metrics.get("runaway")
    if runaway:
        print(f"RUNAWAY: {runaway['quantity']} reached {runaway['value']:.4g} at step "
              f"{runaway['step']} (limit {runaway['limit']:g}); the energies grew without bound")
    sampling = metrics.get("sampling") or {}
    if sampling:
        chains = sampling["chains"]
        rhat = chains["rhat"]
        shown = (f"no R-hat ({chains.get('note', 'no finite traced chain')})" if rhat is None
                 else f"max R-hat {rhat['max']:.3f}")
        print(f"sampled {chains.get('total_chains', chains['n_chains'])} chains with backend "
              f"{sampling['backend']}: {shown} over {chains['n_chains']} traced chains")
        if chains.get("warning"):
            print(f"WARNING: {chains['warning']}")
    pictures = sorted(p.name for p in out.glob("*.png"))
    print(f"run folder: {out}")
    print(f"pictures:   {', '.join(str(out / p) for p in pictures)}")
    print(f"metrics:    {out / 'metrics.json'}")


def exit_status(out: Path, metrics: dict[str, Any], *, say: bool = True) -> int:
    """0 for a finished run; for one stopped by a signal, 128 + signal, and (with ``say``)
    how to continue it."""
    if not metrics.get("interrupted"):
        return 0
    signal_name = metrics.get("stopped_by") or "SIGINT"
    world = int(metrics.get("world_size", 1))
    if say:
        print(f"ebmcore: training stopped by {signal_name} at step "
              f"{metrics.get('steps_done')}; checkpoint {metrics.get('last_checkpoint')}; "
              f"continue with: ebmcore train --resume {out}"
              + (f" --nproc {world}" if world > 1 else ""), file=sys.stderr)
    return SIGNAL_EXIT.get(signal_name, 130)


def _share(value: float | None) -> str:
    return "unmeasurable (NaN or -inf energies)" if value is None else f"{value:.2e}"


def evaluation_lines(evaluation: dict[str, Any]) -> list[str]:
    """Summarise a grid evaluation: the likelihood figures only for a normalisable model,
    always the mass outside the box and the far-field energy against the data's."""
    if not evaluation:
        return []
    lines = []
    if not evaluation["normalisable"]:
        lines.append(f"NO LIKELIHOOD: the model is {evaluation['status']}")
    elif evaluation.get("nll") is not None:
        line = f"test NLL {evaluation['nll']:.3f} nats over the whole plane"
        if evaluation.get("data_nll") is not None:  # data sets with a known density
            line += (f" (data's own {evaluation['data_nll']:.3f}, gap "
                     f"{evaluation['nll_gap']:.3f}); KL {evaluation['kl']:.3f}; "
                     f"TV {evaluation['tv']:.3f}")
        lines.append(line)
    far = evaluation["far_field"]
    line = (f"model mass outside the box {_share(evaluation['outside_mass'])}, outside three "
            f"times the box {_share(evaluation['outside_mass_3x'])}; least energy at radius "
            f"{far['radii'][-1]:g}: {far['min_energy'][-1]:.4g}")
    if far.get("reference_energy") is not None:
        line += f" (highest on test data {far['reference_energy']:.4g})"
    lines.append(line)
    return lines


def flow_lines(metrics: dict[str, Any]) -> list[str]:
    """Summarise a trained field's figures: the held-out flow log-likelihood, the histogram
    TV of its samples beside the floor exact samples reach, and the flow's cost."""
    sampling = metrics.get("flow_sampling")
    if not sampling:
        return []
    lines = []
    likelihood = metrics.get("likelihood") or {}
    if likelihood.get("log_likelihood") is not None:
        lines.append(f"test log-likelihood (flow ODE, {likelihood['integrator']}) "
                     f"{likelihood['log_likelihood']:.3f} nats per point over "
                     f"{likelihood['n_points']} points")
    elif likelihood.get("note"):
        lines.append(f"no likelihood: {likelihood['note']}")
    tv = metrics.get("histogram_tv")
    if tv:
        lines.append(f"histogram TV of the samples {tv['tv']:.3f} (exact samples reach "
                     f"{tv['floor']:.3f}; ratio {tv['ratio']:.2f})")
    lines.append(f"sampled {sampling['n_samples']} points as a flow: {sampling['nfe']} field "
                 f"evaluations, {sampling['nonfinite_samples']} non-finite")
    return lines


def image_lines(evaluation: dict[str, Any] | None) -> list[str]:
    """Summarise an image evaluation: the AIS bracket of the test log-likelihood beside the
    exact baselines, then class coverage and the MMD test."""
    if not evaluation:
        return []
    b = evaluation["likelihood"]
    lines = [f"test log-likelihood (AIS) between {b['lower']:.2f} ± {b['lower_stderr']:.2f} and "
             f"{b['upper']:.2f} ± {b['upper_stderr']:.2f} nats per image "
             f"({b['bits_per_dim_upper']:.3f} to {b['bits_per_dim_lower']:.3f} bits/dim)"]
    if evaluation["baselines"]:
        lines.append("exact baselines on the same split: " + "; ".join(
            f"{name} {base['log_likelihood']:.2f} nats ({base['bits_per_dim']:.3f} bits/dim)"
            for name, base in evaluation["baselines"].items()))
    cov, ref = evaluation["coverage"], evaluation["data_coverage"]
    if cov is not None:
        lines.append(f"class coverage: {cov['confident_share']:.0%} of samples classified "
                     f"with confidence (held-out images: {ref['confident_share']:.0%}), "
                     f"{cov['classes_covered']} classes, largest share {cov['max_share']:.0%}")
    if evaluation.get("mmd") is not None:
        m = evaluation["mmd"]
        lines.append(f"MMD² samples vs held-out images {m['statistic']:.5f} "
                     f"(p = {m['p_value']:.3f})")
    lines += [f"note: {note}" for note in evaluation.get("notes", [])]
    return lines
