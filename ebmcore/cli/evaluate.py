"""``ebmcore evaluate``: evaluate a trained model and print a table (or JSON)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ebmcore.cli.options import COMMON_FLAGS, add_threads_option, non_negative_int, positive_int
from ebmcore.cli.summary import evaluation_lines, flow_lines, image_lines
from ebmcore.config import AIS_CHAINS, AIS_TEMPS

#: The parameters of :func:`ebmcore.runs.evaluate_checkpoint` the options set, as its errors
#: name them.
FLAGS: dict[str, str] = {**COMMON_FLAGS, "n_ais_chains": "--ais-chains",
                         "n_ais_temps": "--ais-temps", "n_test": "--n-test"}


def add_parser(subparsers: Any) -> None:
    """Attach ``evaluate`` to the ``ebmcore`` parser."""
    p = subparsers.add_parser(
        "evaluate", help="evaluate a trained model: NLL, KL, TV, AIS bounds of log Z, MMD, KSD")
    p.add_argument("checkpoint", type=Path, help="model.pt or the run folder")
    p.add_argument("--n-test", type=positive_int, default=20000, help="held-out points")
    p.add_argument("--ais-chains", type=positive_int,
                   help=f"AIS chains (default: the data set's recipe, else {AIS_CHAINS})")
    p.add_argument("--ais-temps", type=positive_int,
                   help=f"AIS temperatures (default: the data set's recipe, else {AIS_TEMPS})")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--out", type=Path, help="also write the JSON report to this file")
    add_threads_option(p, "the evaluation")
    p.set_defaults(handler=run, flags=FLAGS)


def run(args: argparse.Namespace) -> int:
    """Evaluate a trained model and print a table (or JSON)."""
    from ebmcore.runs import evaluate_checkpoint

    report = evaluate_checkpoint(args.checkpoint, n_test=args.n_test,
                                 n_ais_chains=args.ais_chains, n_ais_temps=args.ais_temps,
                                 seed=args.seed, threads=args.threads)
    text = json.dumps(report, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    if args.json:
        print(text)
    elif "flow_sampling" in report:
        for line in flow_lines(report):
            print(line)
    elif "image_evaluation" in report:
        for line in image_lines(report["image_evaluation"]):
            print(line)
    else:
        for line in evaluation_lines(report.get("grid") or {}) + _table(report):
            print(line)
    return 0


def _table(report: dict[str, Any]) -> list[str]:
    """The report's figures as aligned ``name  value`` rows."""
    rows: list[tuple[str, str]] = []
    grid = report.get("grid") or {}
    for key in ("nll", "data_nll", "nll_gap", "kl", "tv", "log_z", "log_z_box"):
        if grid.get(key) is not None:
            rows.append((f"grid {key}", f"{grid[key]:.4f}"))
    a = report["ais"]
    rows.append(("AIS log Z lower", f"{a['log_z_lower']:.4f} ± {a['lower_stderr']:.4f}"))
    rows.append(("reverse AIS log Z upper (approx.)",
                 f"{a['log_z_upper_approx']:.4f} ± {a['upper_stderr']:.4f}"))
    if a.get("warning"):
        rows.append(("AIS warning", a["warning"]))
    m, k = report["mmd_ais_samples_vs_data"], report["ksd_data_vs_model"]
    rows.append(("MMD² samples vs data", f"{m['statistic']:.5f} (p = {m['p_value']:.3f})"))
    rows.append(("KSD² data vs model", f"{k['statistic']:.5f} (p = {k['p_value']:.3f})"))
    width = max(len(name) for name, _ in rows)
    return [f"{name:<{width}}  {value}" for name, value in rows]
