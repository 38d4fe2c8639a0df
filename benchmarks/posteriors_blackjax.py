"""BlackJAX's column of ``benchmarks/posteriors.py``: NUTS with window adaptation, own process.

``posteriors.py`` starts this script with the run's settings (``--spec``, JSON: target,
chains, warm-up, draws, seed, how the chains run) and the target's arrays and starting points
(``--data``, ``.npz``), on JAX's CPU backend with one thread (``JAX_PLATFORMS=cpu``,
``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``, set here too
when absent). It writes the unconstrained draws ``(chains, draws, D)`` and the run's counts to
``--out`` (``.npz``). Nothing here imports torch.

The log densities below are the targets of ``posterior_targets.py`` written again in
``jax.numpy`` (same formulas, same unconstrained space, float32); the parent checks them
against the torch ones at the points it passes (``check_points``).

Each chain runs BlackJAX's documented recipe: ``blackjax.window_adaptation(blackjax.nuts,
logdensity)`` (Stan's windows: step size by dual averaging towards acceptance 0.8, diagonal
inverse mass) for the warm-up, then ``blackjax.nuts(logdensity, **parameters)`` for the
draws, in one ``jax.jit``. The chains run under ``jax.vmap`` (``"vmap"``: lockstep, as
ebmcore's, the default) or one after the other with ``jax.lax.map`` (``"map"``).

With ``"algorithm": "chees"`` in the spec it runs BlackJAX's ChEES-HMC instead, as its
documentation shows: ``blackjax.chees_adaptation(logdensity, num_chains,
mass_matrix_estimation="diagonal")`` run with ``optax.adam(0.025)`` (the paper's and
ebmcore's learning rate) from step size 0.1 for the warm-up, then
``blackjax.dynamic_hmc(logdensity, **parameters)`` on every chain (``jax.vmap``) for the
draws. The function is compiled ahead of time (``jit(...).lower(...).compile()``), so the reported
``seconds`` are the warm-up and the draws of every chain, without compilation.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

SCHOOL_Y = (28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0)
SCHOOL_SIGMA = (15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0)
LOG_2PI = math.log(2.0 * math.pi)
THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def log_density(name: str, data: dict[str, Any]) -> Callable[[Any], Any]:
    """``log p(u)`` of one unconstrained point ``u`` ``(D,)`` of target ``name``, in JAX."""
    import jax
    import jax.numpy as jnp
    from jax.scipy.special import gammaln

    def normal_lp(x: Any, loc: Any, scale: Any) -> Any:
        z = (x - loc) / scale
        return -0.5 * z * z - jnp.log(scale) - 0.5 * LOG_2PI

    if name.startswith("eight_schools"):
        y, sigma = jnp.asarray(SCHOOL_Y), jnp.asarray(SCHOOL_SIGMA)
        centred = name.endswith("_c")

        def eight_schools(u: Any) -> Any:
            mu, log_tau, rest = u[0], u[1], u[2:]
            lp = normal_lp(mu, 0.0, 10.0) + normal_lp(log_tau, 5.0, 1.0)
            if centred:
                theta = rest
                lp = lp + normal_lp(theta, mu, jnp.exp(log_tau)).sum()
            else:
                theta = mu + jnp.exp(log_tau) * rest
                lp = lp + normal_lp(rest, 0.0, 1.0).sum()
            return lp + normal_lp(y, theta, sigma).sum()
        return eight_schools
    if name == "german_credit":
        x = jnp.asarray(data["features"], jnp.float32)
        xb = jnp.concatenate([x, jnp.ones((x.shape[0], 1), jnp.float32)], axis=1)
        labels = jnp.asarray(data["labels"], jnp.float32)

        def german_credit(w: Any) -> Any:
            logits = xb @ w
            return (normal_lp(w, 0.0, 1.0).sum()
                    + (labels * logits - jax.nn.softplus(logits)).sum())
        return german_credit
    if name.startswith("sv_sp500"):
        r2 = jnp.asarray(data["returns"], jnp.float32) ** 2
        lbeta = float(gammaln(20.0) + gammaln(1.5) - gammaln(21.5))

        def ar1(c: Any, phi: Any) -> Any:
            h, power, shift = c, phi, 1
            while shift < c.shape[0]:
                h = h + power * jnp.pad(h[:-shift], (shift, 0))
                power, shift = power * power, shift * 2
            return h

        def stochastic_volatility(u: Any) -> Any:
            a, mu, b, z = u[0], u[1], u[2], u[3:]
            phi, sigma = jnp.tanh(0.5 * a), jax.nn.softplus(b)
            c = (sigma * z).at[0].multiply(jnp.cosh(0.5 * a))
            x = mu + ar1(c, phi)
            lp = 20.0 * jax.nn.log_sigmoid(a) + 1.5 * jax.nn.log_sigmoid(-a) - lbeta
            lp = lp - math.log(5.0 * math.pi) - jnp.log1p((mu / 5.0) ** 2)
            lp = lp - math.log(math.pi) - jnp.log1p((sigma / 2.0) ** 2) + jax.nn.log_sigmoid(b)
            lp = lp + normal_lp(z, 0.0, 1.0).sum()
            return lp - 0.5 * (r2 * jnp.exp(-x) + x + LOG_2PI).sum()
        return stochastic_volatility
    if name == "funnel":
        def funnel(x: Any) -> Any:
            v, rest = x[0], x[1:]
            return (normal_lp(v, 0.0, 3.0)
                    - 0.5 * ((rest * rest).sum() * jnp.exp(-v) + rest.shape[0] * (v + LOG_2PI)))
        return funnel
    if name == "gaussian_100":
        precision = jnp.asarray(data["precision"], jnp.float32)
        log_norm = float(data["log_norm"])

        def gaussian(x: Any) -> Any:
            return -0.5 * x @ (precision @ x) + log_norm
        return gaussian
    if name == "banana":
        def banana(x: Any) -> Any:
            return (normal_lp(x[0], 0.0, 10.0)
                    + normal_lp(x[1] - 0.03 * (x[0] * x[0] - 100.0), 0.0, 1.0))
        return banana
    raise ValueError(f"no JAX log density for target {name!r}")


def make_run(logdensity: Callable, n_warmup: int, n_draws: int, mode: str) -> Callable:
    """``run(keys (C, 2), x0 (C, D))`` -> draws, per-draw leapfrog counts, divergences,
    acceptance, and per-chain warm-up leapfrog counts."""
    import blackjax
    import jax

    warmup = blackjax.window_adaptation(blackjax.nuts, logdensity)

    def one_chain(key: Any, x0: Any) -> tuple[Any, ...]:
        k_warm, k_draw = jax.random.split(key)
        (state, parameters), adapt = warmup.run(k_warm, x0, num_steps=n_warmup)
        kernel = blackjax.nuts(logdensity, **parameters)

        def step(state: Any, k: Any) -> tuple[Any, tuple[Any, ...]]:
            state, info = kernel.step(k, state)
            return state, (state.position, info.num_integration_steps, info.is_divergent,
                           info.acceptance_rate)

        _, out = jax.lax.scan(step, state, jax.random.split(k_draw, n_draws))
        return (*out, adapt.info.num_integration_steps.sum())

    if mode == "vmap":
        return jax.jit(jax.vmap(one_chain))
    return jax.jit(lambda keys, x0: jax.lax.map(lambda a: one_chain(*a), (keys, x0)))


def make_chees_run(logdensity: Callable, n_warmup: int, n_draws: int,
                   n_chains: int) -> Callable:
    """``run(key, x0 (C, D))`` of BlackJAX's ChEES-HMC: the same outputs as
    :func:`make_run`'s, chains first."""
    import blackjax
    import jax
    import jax.numpy as jnp
    import optax

    warmup = blackjax.chees_adaptation(logdensity, n_chains,
                                       mass_matrix_estimation="diagonal")

    def run(key: Any, x0: Any) -> tuple[Any, ...]:
        k_warm, k_draw = jax.random.split(key)
        (states, parameters), adapt = warmup.run(k_warm, x0, 0.1, optax.adam(0.025),
                                                 n_warmup)
        kernel = blackjax.dynamic_hmc(logdensity, **parameters)

        def step(states: Any, k: Any) -> tuple[Any, tuple[Any, ...]]:
            states, info = jax.vmap(kernel.step)(jax.random.split(k, n_chains), states)
            return states, (states.position, info.num_integration_steps, info.is_divergent,
                            info.acceptance_rate)

        _, out = jax.lax.scan(step, states, jax.random.split(k_draw, n_draws))
        warm = jnp.sum(adapt.info.num_integration_steps, axis=0)
        return (*(jnp.swapaxes(o, 0, 1) for o in out), warm)

    return jax.jit(run)


def main(argv: list[str] | None = None) -> int:
    """Run BlackJAX's NUTS on one target; write the draws and counts to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, required=True, help="settings (JSON)")
    parser.add_argument("--data", type=Path, required=True, help="arrays and x0 (.npz)")
    parser.add_argument("--out", type=Path, required=True, help="results (.npz)")
    args = parser.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("XLA_FLAGS", THREAD_FLAGS)
    spec = json.loads(args.spec.read_text())
    import jax
    import jax.numpy as jnp
    import numpy as np

    jax.config.update("jax_default_matmul_precision", "highest")
    with np.load(args.data) as npz:
        data = {k: npz[k] for k in npz.files}
    logdensity = log_density(spec["target"], data)
    check = np.asarray(jax.jit(jax.vmap(logdensity))(jnp.asarray(data["check_points"],
                                                                 jnp.float32)))
    x0 = jnp.asarray(data["x0"], jnp.float32)
    if spec.get("algorithm", "nuts") == "chees":
        keys = jax.random.key(int(spec["seed"]))
        run = make_chees_run(logdensity, int(spec["warmup"]), int(spec["draws"]), x0.shape[0])
    else:
        keys = jax.random.split(jax.random.key(int(spec["seed"])), x0.shape[0])
        run = make_run(logdensity, int(spec["warmup"]), int(spec["draws"]), spec["mode"])
    start = time.perf_counter()
    compiled = run.lower(keys, x0).compile()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(keys, x0))
    seconds = time.perf_counter() - start
    draws, n_leapfrog, divergent, acceptance, warm_leapfrog = (np.asarray(o) for o in out)
    np.savez(args.out, draws=draws, check=check,
             n_grad_sampling=n_leapfrog.sum(axis=1), n_grad_warmup=warm_leapfrog,
             divergences=divergent.sum(axis=1), acceptance=acceptance.mean(axis=1))
    info = {"seconds": seconds, "compile_seconds": compile_seconds,
            "versions": f"jax {jax.__version__}, blackjax {metadata.version('blackjax')}",
            "device": str(jax.devices()[0])}
    print("POSTERIORS " + json.dumps(info), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
