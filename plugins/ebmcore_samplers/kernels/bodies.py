"""The whole chain loop of one chain, per method, as plain Python shared by CPU and GPU.

Each ``*_chain`` function runs chain ``i`` from ``X[i]`` through ``n_burn + n_steps``
transitions and writes everything the run reports. The factory compiles a copy of it per
target with its globals rebound (:func:`ebmcore_samplers.kernels.rng.rebind`) to:

- ``D``: the event size, a compile-time constant (local arrays on the GPU need it);
- ``grad(x, p, out)`` and ``energy(x, p)``: the energy's numba face for that target;
- ``HAS_ENERGY``: whether the face has an energy (Langevin can do without);
- ``seed_chain``, ``fill_normal``, ``uniform``: the RNG of :mod:`.rng` for that target.

Arguments shared by all methods (the same kernel signature for every method keeps the
launch and PTX code in one place):

- ``X (B, D)``: start positions, overwritten with the final ones.
- ``traj (T, C, D)``, ``record``: kept positions of chains ``0, s, 2s, ...`` with
  ``s = record`` (chain ``i`` in column ``i // s``; ``record = 1``: every chain, ``C = B``);
  nothing is written when ``record`` is 0.
- ``trace_at (K,)``, ``trace_e (K, B)``: energies at the kept indices listed in ``trace_at``.
- ``e_out (B,)``: final energies. ``acc (B,)``: summed acceptance probabilities over the
  ``n_steps`` kept steps. ``div (B,)``: divergent trajectories among them (HMC).
  ``step_out (B,)``: the step size in use at the end.
- ``p``: the face's parameters. ``seed``: the run's uint64 seed.
- ``plan (n_burn + n_steps, 2)``: per-iteration ``[step_size, noise_sd]`` from the
  sampler's schedules. ``opts``: method options (documented per function).
  ``minv``, ``msqrt (D,)``: inverse and square-root diagonal masses (HMC).
- ``x, g, y, gy, w (D,)``, ``st (2,)``: per-chain scratch (registers / local memory).

The scratch is float64 whatever the chains' dtype: the faces' parameters and the RNG are
float64 anyway, so float32 chains are computed in float64 and only stored in float32 (which
also spares a conversion per access: measured 161 -> 131 ns per mixture chain-step).
"""

from __future__ import annotations

import math

# Names the chain functions call. The factory binds each compiled copy to its own values
# (see the module docstring); these module-level definitions only make the source
# importable and are never called.
D = 1
HAS_ENERGY = True


def grad(x, p, out):  # pragma: no cover - replaced per target
    """Bound per compiled copy to the face's gradient."""
    raise NotImplementedError


def energy(x, p):  # pragma: no cover - replaced per target
    """Bound per compiled copy to the face's energy."""
    raise NotImplementedError


def seed_chain(st, seed, chain):  # pragma: no cover - replaced per target
    """Bound per compiled copy to :func:`.rng.seed_chain`."""
    raise NotImplementedError


def fill_normal(st, out, n):  # pragma: no cover - replaced per target
    """Bound per compiled copy to :func:`.rng.fill_normal`."""
    raise NotImplementedError


def uniform(st):  # pragma: no cover - replaced per target
    """Bound per compiled copy to :func:`.rng.uniform`."""
    raise NotImplementedError


def dual_average(h_bar, log_step_bar, t, mu, alpha, opts):
    """One per-chain dual-averaging update (Hoffman & Gelman 2014, Algorithm 5).

    Mirrors :class:`ebmcore_samplers.adaptation.DualAveraging` exactly.

    Args:
        h_bar: Running average of ``target_accept - alpha``.
        log_step_bar: Running weighted average of the log step size.
        t: The update's number, from 1.
        mu: ``log(10 * initial step size)``.
        alpha: This step's acceptance probability (in ``[0, 1]``).
        opts: The kernel options; ``opts[1:5] = [target_accept, gamma, t0, kappa]``.

    Returns:
        The new ``(h_bar, log_step, log_step_bar)``.
    """
    w = 1.0 / (t + opts[3])
    h_bar = (1.0 - w) * h_bar + w * (opts[1] - alpha)
    log_step = mu - math.sqrt(t) / opts[2] * h_bar
    eta = t ** (-opts[4])
    log_step_bar = (1.0 - eta) * log_step_bar + eta * log_step
    return h_bar, log_step, log_step_bar


def accept_probability(log_alpha):
    """``min(1, exp(log_alpha))`` with NaN mapped to 0 (never calls ``exp`` on a positive).

    Args:
        log_alpha: The log Metropolis-Hastings ratio.
    """
    if log_alpha != log_alpha:
        return 0.0
    if log_alpha >= 0.0:
        return 1.0
    return math.exp(log_alpha)


def start_chain(i, X, x, st, seed):
    """Seed chain ``i``'s random stream and load its start position into ``x``."""
    seed_chain(st, seed, i)
    for d in range(D):
        x[d] = X[i, d]


def metropolis(st, prob, x, g, e, y, gy, e_y):
    """Move to the proposal ``(y, gy, e_y)`` with probability ``prob``; return the energy kept.

    One uniform draw whatever happens, so that every chain's stream advances alike.
    """
    if uniform(st) < prob:
        for d in range(D):
            x[d] = y[d]
            g[d] = gy[d]
        return e_y
    return e


def adapt_step_size(h_bar, log_step_bar, t, n_burn, mu, prob, opts):
    """One burn-in update of a chain's step size; returns ``(h_bar, log_step_bar, step)``.

    The step is the running iterate during burn-in and the averaged one after its last
    step, as in :class:`ebmcore_samplers.adaptation.DualAveraging`.
    """
    h_bar, log_step, log_step_bar = dual_average(h_bar, log_step_bar, t + 1, mu, prob, opts)
    step = math.exp(log_step_bar) if t == n_burn - 1 else math.exp(log_step)
    return h_bar, log_step_bar, step


def keep_position(i, kept, x, record, traj):
    """Write chain ``i``'s position as kept step ``kept`` when ``record`` (a stride) takes it."""
    if record != 0 and i % record == 0:
        for d in range(D):
            traj[kept, i // record, d] = x[d]


def keep_step(i, kept, j, x, e, record, traj, trace_at, trace_e):
    """Keep step ``kept``: its position, and its energy ``e`` if it is the next trace point.

    Returns the index of the next trace point.
    """
    keep_position(i, kept, x, record, traj)
    if j < trace_at.shape[0] and trace_at[j] == kept:
        trace_e[j, i] = e
        j += 1
    return j


def finish_chain(i, X, x, e_out, e, step_out, step):
    """Write chain ``i``'s final position, energy and step size."""
    for d in range(D):
        X[i, d] = x[d]
    e_out[i] = e
    step_out[i] = step


def langevin_chain(i, X, traj, record, trace_at, trace_e, e_out, acc, div, step_out, p, seed,
                   n_burn, n_steps, thin, plan, opts, minv, msqrt, x, g, y, gy, w, st):
    """ULA: ``x' = clamp(x - eps * clip(g) + noise_sd * xi)``.

    ``opts = [grad_clip (<= 0: none), lo, hi, has_lo, has_hi]``.
    """
    start_chain(i, X, x, st, seed)
    grad(x, p, g)
    clip = opts[0]
    lo = opts[1]
    hi = opts[2]
    has_lo = opts[3] > 0.0
    has_hi = opts[4] > 0.0
    n_trace = trace_at.shape[0]
    kept = 0
    to_keep = thin  # a countdown, not (t - n_burn + 1) % thin: no division per step
    j = 0
    for t in range(n_burn + n_steps):
        eps = plan[t, 0]
        noise_sd = plan[t, 1]
        scale = 1.0
        if clip > 0.0:
            norm = 0.0
            for d in range(D):
                norm += g[d] * g[d]
            norm = math.sqrt(norm)
            if norm > clip:
                scale = clip / norm
        fill_normal(st, w, D)
        for d in range(D):
            v = x[d] - eps * scale * g[d] + noise_sd * w[d]
            if has_lo and v < lo:
                v = lo
            if has_hi and v > hi:
                v = hi
            x[d] = v
        grad(x, p, g)
        if t >= n_burn:
            to_keep -= 1
            if to_keep == 0:
                to_keep = thin
                keep_position(i, kept, x, record, traj)
                # The energy is evaluated at the trace points only (the loop needs none).
                if HAS_ENERGY and j < n_trace and trace_at[j] == kept:
                    trace_e[j, i] = energy(x, p)
                    j += 1
                kept += 1
    finish_chain(i, X, x, e_out, energy(x, p) if HAS_ENERGY else 0.0, step_out,
                 plan[n_burn + n_steps - 1, 0])


def mala_chain(i, X, traj, record, trace_at, trace_e, e_out, acc, div, step_out, p, seed,
               n_burn, n_steps, thin, plan, opts, minv, msqrt, x, g, y, gy, w, st):
    """MALA with cached energy and gradient, per-chain dual averaging during burn-in.

    ``opts = [adapt (0/1), target_accept, gamma, t0, kappa]``.
    """
    start_chain(i, X, x, st, seed)
    e = energy(x, p)
    grad(x, p, g)
    adapt = opts[0] > 0.0
    own_step = False  # True once adaptation has given this chain its own step size
    eps_chain = plan[0, 0]
    mu = math.log(eps_chain) + math.log(10.0)
    h_bar = 0.0
    log_step_bar = 0.0
    kept = 0
    to_keep = thin  # a countdown, not (t - n_burn + 1) % thin: no division per step
    j = 0
    for t in range(n_burn + n_steps):
        eps = eps_chain if own_step else plan[t, 0]
        sd = math.sqrt(2.0 * eps)
        fill_normal(st, w, D)
        forward = 0.0
        for d in range(D):
            y[d] = x[d] - eps * g[d] + sd * w[d]
            forward += w[d] * w[d]
        e_y = energy(y, p)
        grad(y, p, gy)
        backward = 0.0
        for d in range(D):
            r = x[d] - y[d] + eps * gy[d]
            backward += r * r
        log_alpha = e - e_y + 0.5 * forward - backward / (4.0 * eps)
        prob = accept_probability(log_alpha)
        e = metropolis(st, prob, x, g, e, y, gy, e_y)
        if adapt and t < n_burn:
            h_bar, log_step_bar, eps_chain = adapt_step_size(h_bar, log_step_bar, t, n_burn,
                                                             mu, prob, opts)
            own_step = True
        if t >= n_burn:
            acc[i] += prob
            to_keep -= 1
            if to_keep == 0:
                to_keep = thin
                j = keep_step(i, kept, j, x, e, record, traj, trace_at, trace_e)
                kept += 1
    finish_chain(i, X, x, e_out, e, step_out,
                 eps_chain if own_step else plan[n_burn + n_steps - 1, 0])


def hmc_chain(i, X, traj, record, trace_at, trace_e, e_out, acc, div, step_out, p, seed,
              n_burn, n_steps, thin, plan, opts, minv, msqrt, x, g, y, gy, w, st):
    """HMC with diagonal mass, cached gradient, step-size jitter and dual averaging.

    ``opts = [adapt (0/1), target_accept, gamma, t0, kappa, jitter, n_leapfrog,
    divergence_threshold]``. Mirrors :class:`ebmcore_samplers.hmc.HMC` step by step.
    """
    start_chain(i, X, x, st, seed)
    e = energy(x, p)
    grad(x, p, g)
    adapt = opts[0] > 0.0
    jitter = opts[5]
    n_leapfrog = int(opts[6])
    threshold = opts[7]
    own_step = False
    eps_chain = plan[0, 0]
    mu = math.log(eps_chain) + math.log(10.0)
    h_bar = 0.0
    log_step_bar = 0.0
    kept = 0
    to_keep = thin  # a countdown, not (t - n_burn + 1) % thin: no division per step
    j = 0
    for t in range(n_burn + n_steps):
        eps = eps_chain if own_step else plan[t, 0]
        if jitter > 0.0:
            eps = eps * (1.0 - jitter + 2.0 * jitter * uniform(st))
        fill_normal(st, w, D)  # w holds the momentum
        kinetic = 0.0
        for d in range(D):
            w[d] = w[d] * msqrt[d]
            kinetic += w[d] * w[d] * minv[d]
            y[d] = x[d]
            w[d] = w[d] - 0.5 * eps * g[d]
        h0 = 0.5 * kinetic + e
        e_y = e
        for step in range(n_leapfrog):
            for d in range(D):
                y[d] = y[d] + eps * w[d] * minv[d]
            grad(y, p, gy)
            if step < n_leapfrog - 1:
                for d in range(D):
                    w[d] = w[d] - eps * gy[d]
            else:
                e_y = energy(y, p)
                for d in range(D):
                    w[d] = w[d] - 0.5 * eps * gy[d]
        kinetic = 0.0
        for d in range(D):
            kinetic += w[d] * w[d] * minv[d]
        error = 0.5 * kinetic + e_y - h0
        prob = accept_probability(-error)
        e = metropolis(st, prob, x, g, e, y, gy, e_y)
        if adapt and t < n_burn:
            h_bar, log_step_bar, eps_chain = adapt_step_size(h_bar, log_step_bar, t, n_burn,
                                                             mu, prob, opts)
            own_step = True
        if t >= n_burn:
            acc[i] += prob
            if not error <= threshold:  # NaN counts as divergent
                div[i] += 1
            to_keep -= 1
            if to_keep == 0:
                to_keep = thin
                j = keep_step(i, kept, j, x, e, record, traj, trace_at, trace_e)
                kept += 1
    finish_chain(i, X, x, e_out, e, step_out,
                 eps_chain if own_step else plan[n_burn + n_steps - 1, 0])


CHAINS = {"langevin": langevin_chain, "mala": mala_chain, "hmc": hmc_chain}
#: Helpers the chain functions call, compiled per target alongside them.
HELPERS = (dual_average, accept_probability, start_chain, metropolis, adapt_step_size,
           keep_position, keep_step, finish_chain)
