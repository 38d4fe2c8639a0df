"""Peak memory and wall time of a large ``ebmcore sample`` run (issue 12: bounded memory).

Runs, in a child process, the command line of the issue's goal (by default)::

    ebmcore sample --energy double_well --set sampler.step_size=0.3 --chains 1000000
        --steps 1000 --burn-in 0 --sampler langevin --quiet --out TMP

and reports its wall time, its peak resident memory (``ru_maxrss`` of the waited-for
child, from ``resource.getrusage(RUSAGE_CHILDREN)``; this script starts no other child),
what it printed, the backend it ran on and what its diagnostics used. The goal on a 2-core
CPU: at most 2 GiB peak and 180 s. The output folder is a temporary one, removed at the end.

Run: ``python benchmarks/sample_memory.py [--chains 1000000] [--steps 1000]
[--step-size 0.3] [--sampler langevin] [--extra=--save-trajectory]``
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GIB = 1024 ** 3


def measure(args: list[str]) -> dict[str, object]:
    """Run ``ebmcore`` with ``args`` in a child process; return time, peak RSS and output.

    Args:
        args: The arguments after ``ebmcore`` (``--out`` included).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ebmcore", *args], capture_output=True,
                          text=True)
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    if peak_kib < before:  # pragma: no cover - ru_maxrss is a maximum, never decreasing
        raise RuntimeError("ru_maxrss decreased")
    return {"returncode": done.returncode, "seconds": seconds,
            "peak_rss_gib": peak_kib * 1024 / GIB, "stdout": done.stdout,
            "stderr": done.stderr[-2000:]}


def main() -> int:
    """Parse the options, run the command once and print the figures (and a JSON line)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--step-size", type=float, default=0.3)
    parser.add_argument("--sampler", default="langevin")
    parser.add_argument("--extra", default="",
                        help="more ebmcore sample options, e.g. --extra=--save-trajectory")
    parser.add_argument("--max-gib", type=float, default=2.0, help="goal for the peak RSS")
    parser.add_argument("--max-seconds", type=float, default=180.0, help="goal for the time")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ebmcore-sample-memory-") as tmp:
        out = Path(tmp) / "run"
        args = ["sample", "--energy", "double_well", "--set",
                f"sampler.step_size={opts.step_size}", "--chains", str(opts.chains),
                "--steps", str(opts.steps), "--burn-in", "0", "--sampler", opts.sampler,
                "--quiet", "--out", str(out), *shlex.split(opts.extra)]
        print("command: ebmcore " + shlex.join(args))
        result = measure(args)
        report = {}
        if (out / "diagnostics.json").is_file():
            report = json.loads((out / "diagnostics.json").read_text())
    print(result["stdout"].rstrip())
    if result["returncode"] != 0:
        print(result["stderr"], file=sys.stderr)
        print(f"FAILED with status {result['returncode']}")
        return 1
    summary = {
        "chains": opts.chains, "steps": opts.steps, "sampler": opts.sampler,
        "step_size": opts.step_size, "extra": opts.extra,
        "seconds": round(float(result["seconds"]), 1),
        "sampling_seconds": report.get("seconds"),
        "peak_rss_gib": round(float(result["peak_rss_gib"]), 3),
        "backend": report.get("backend"), "nonfinite_chains": report.get("nonfinite_chains"),
        "diagnostics_used": {k: report.get("chains", {}).get(k)
                             for k in ("n_chains", "n_draws", "n_nonfinite_chains",
                                       "traced_chains", "chain_stride", "total_chains")},
    }
    ok = (summary["peak_rss_gib"] <= opts.max_gib and summary["seconds"] <= opts.max_seconds)
    print(f"wall {summary['seconds']} s (goal <= {opts.max_seconds:g}), peak RSS "
          f"{summary['peak_rss_gib']} GiB (goal <= {opts.max_gib:g}): "
          f"{'met' if ok else 'NOT met'}")
    print(json.dumps(summary))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
