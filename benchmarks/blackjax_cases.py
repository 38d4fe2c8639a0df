"""BlackJAX's column of ``benchmarks/gpu_table.py``, run in its own process.

``gpu_table.py`` starts this script with the cases (``--spec``, JSON) and the energies'
parameters (``--params``, an ``.npz`` of ``energy.param`` arrays written from the very
ebmcore energies the other columns sample). It prints one line per case, prefixed with
``GPU_TABLE `` and holding JSON: the rate (chains x steps / seconds, the best of the timed
runs after one warm-up run) or why there is none. Nothing here imports torch.

Each case runs as BlackJAX's documented multi-chain loop: ``jax.jit`` of a ``jax.lax.scan``
over steps whose body splits the step's key over the chains and ``jax.vmap``s the kernel's
``step``. Samplers: ``blackjax.mala(logdensity, step_size)``, ``blackjax.hmc(logdensity,
step_size, inverse_mass_matrix=ones(D), num_integration_steps=10)`` and, for Langevin,
``blackjax.sgld(grad_estimator)`` with the exact gradient, whose update ``x + eps grad log p +
sqrt(2 eps) xi`` is the unadjusted Langevin algorithm. float32 (jax's default), with full
float32 matrix products (``jax_default_matmul_precision="highest"``: no TF32, as in torch).

The parent sets ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` and, for ``--device cpu``,
``JAX_PLATFORMS=cpu``. Run by hand::

    python benchmarks/blackjax_cases.py --spec spec.json --params params.npz
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

TAG = "GPU_TABLE "


def emit(record: dict[str, Any]) -> None:
    """Print one record for the driver."""
    print(TAG + json.dumps(record), flush=True)


def error_text(exc: BaseException) -> str:
    """``Type: message`` on one line, cut to 300 characters."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= 300 else text[:297] + "..."


def log_densities(params: dict[str, Any]) -> dict[str, tuple[Callable, int]]:
    """``energy name -> (log p of one point, dimension)``, the ebmcore energies in jax."""
    import jax.numpy as jnp
    from jax.scipy.special import logsumexp

    out: dict[str, tuple[Callable, int]] = {}
    if "double_well.barrier" in params:
        h = float(params["double_well.barrier"])
        c = float(params["double_well.center"])

        def double_well(x: Any) -> Any:
            # E = h ((x0 / c)^2 - 1)^2 + 1/2 sum_{i>=1} x_i^2
            u = x[0] / c
            return -(h * (u * u - 1.0) ** 2 + 0.5 * jnp.sum(x[1:] ** 2))
        out["double_well"] = (double_well, 2)
    if "mixture8.means" in params:
        means = jnp.asarray(params["mixture8.means"], jnp.float32)
        precs = jnp.asarray(params["mixture8.precision"], jnp.float32)
        log_coef = jnp.asarray(params["mixture8.log_coef"], jnp.float32)

        def mixture8(x: Any) -> Any:
            # E = -logsumexp_k(log_coef_k - 1/2 (x - m_k)^T P_k (x - m_k))
            diff = x - means                                     # (K, D)
            quad = jnp.einsum("kd,kde,ke->k", diff, precs, diff)
            return logsumexp(log_coef - 0.5 * quad)
        out["mixture8"] = (mixture8, int(means.shape[1]))
    if "gaussian100.mean" in params:
        mean = jnp.asarray(params["gaussian100.mean"], jnp.float32)
        prec = jnp.asarray(params["gaussian100.precision"], jnp.float32)

        def gaussian100(x: Any) -> Any:
            diff = x - mean                                      # E = 1/2 diff^T P diff
            return -0.5 * diff @ (prec @ diff)
        out["gaussian100"] = (gaussian100, int(mean.shape[0]))
    return out


def algorithm(method: str, logdensity: Callable, dim: int, spec: dict[str, Any]) -> Any:
    """The BlackJAX sampling algorithm of ``method`` with the table's settings.

    Returns an object with ``init(position)`` and ``step(key, state)``.
    """
    import blackjax
    import jax
    import jax.numpy as jnp

    eps = float(spec["step_size"][method])
    if method == "mala":
        return blackjax.mala(logdensity, eps)
    if method == "hmc":
        return blackjax.hmc(logdensity, eps, inverse_mass_matrix=jnp.ones(dim),
                            num_integration_steps=int(spec["leapfrog"]))
    # sgld with the exact gradient and no minibatch is ULA; its step returns the position
    # alone, so wrap it in the (state, info) interface of the other kernels.
    grad = jax.grad(logdensity)
    sgld = blackjax.sgld(lambda position, _batch: grad(position))
    return SimpleNamespace(init=sgld.init,
                           step=lambda key, position: (sgld.step(key, position, None, eps), None))


def make_run(alg: Any, n_chains: int, n_steps: int) -> Callable[[Any, Any], Any]:
    """jit(scan over steps of vmap over chains), returning the final positions."""
    import jax

    @jax.jit
    def run(key: Any, x0: Any) -> Any:
        states = jax.vmap(alg.init)(x0)

        def one_step(states: Any, step_key: Any) -> tuple[Any, None]:
            keys = jax.random.split(step_key, n_chains)
            states, _ = jax.vmap(alg.step)(keys, states)
            return states, None

        states, _ = jax.lax.scan(one_step, states, jax.random.split(key, n_steps))
        return states.position if hasattr(states, "position") else states
    return run


def main(argv: list[str] | None = None) -> int:
    """Time every case BlackJAX has a sampler for; print one record per case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, required=True, help="the cases (JSON)")
    parser.add_argument("--params", type=Path, required=True, help="energy parameters (.npz)")
    args = parser.parse_args(argv)
    spec = json.loads(args.spec.read_text())
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    try:
        import blackjax  # noqa: F401
        import jax
        import jax.numpy as jnp
        import numpy as np
    except Exception as exc:  # noqa: BLE001 - any import failure means "not here"
        emit({"unavailable": f"jax/blackjax cannot be imported ({error_text(exc)})"})
        return 0
    jax.config.update("jax_default_matmul_precision", "highest")
    backend = jax.default_backend()
    versions = {"jax": jax.__version__, "blackjax": metadata.version("blackjax"),
                "device": f"{jax.devices()[0].device_kind} ({backend})"}
    emit({"info": versions})
    if spec["device"] == "cuda" and backend != "gpu":
        # A CPU jax would run a million chains on the host: no comparison with a GPU.
        emit({"unavailable": f"jax {jax.__version__} has no GPU backend here (it runs on "
                             f"{backend}; install jax[cuda12] or jax[cuda13])"})
        return 0
    with np.load(args.params) as data:
        params = {k: data[k] for k in data.files}
    targets = log_densities(params)
    repeats = int(spec["repeats"])
    for case in spec["cases"]:
        record: dict[str, Any] = {"case": case["key"], "column": "blackjax"}
        try:
            logdensity, dim = targets[case["energy"]]
            alg = algorithm(case["method"], logdensity, dim, spec)
            run = make_run(alg, case["chains"], case["steps"])
            key = jax.random.key(1)
            x0 = jax.random.normal(jax.random.key(0), (case["chains"], dim), jnp.float32)
            run(key, x0).block_until_ready()            # compile and warm up
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                run(key, x0).block_until_ready()
                seconds.append(time.perf_counter() - start)
            record.update(status="ok", rate=case["chains"] * case["steps"] / min(seconds),
                          seconds=seconds, note="sgld (ULA)" if case["method"] == "langevin"
                          else case["method"])
        except Exception as exc:  # noqa: BLE001 - reported in the table, never fatal
            record.update(status="error", detail=error_text(exc))
        emit(record)
        print(f"gpu_table: blackjax {case['key']} done", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
