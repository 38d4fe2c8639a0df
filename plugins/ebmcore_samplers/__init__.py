"""Built-in plugin: samplers. Registers through the ``ebmcore`` entry-point group.

Its root module stays light: components are named as lazy ``"module:attr"`` targets.
"""

from __future__ import annotations

import ebmcore

EBMCORE_PLUGIN_API = 1

_SAMPLERS = [
    ("langevin", "ebmcore_samplers.langevin:Langevin",
     "Unadjusted Langevin dynamics (ULA), with gradient clipping, noise scale and box clamp.",
     ("ula", "sgld")),
    ("mala", "ebmcore_samplers.mala:MALA",
     "Metropolis-adjusted Langevin; one energy-and-gradient evaluation per step.", ()),
    ("hmc", "ebmcore_samplers.hmc:HMC",
     "Hamiltonian Monte Carlo with diagonal or dense mass and step-size jitter.", ()),
    ("nuts", "ebmcore_samplers.nuts:NUTS",
     "No-U-Turn sampler with multinomial sampling; chains in lockstep or asynchronous.", ()),
    ("chees", "ebmcore_samplers.chees:ChEES",
     "ChEES-HMC: many-chain HMC, one step size and trajectory length tuned across chains.",
     ("chees_hmc",)),
    ("meads", "ebmcore_samplers.meads:MEADS",
     "MEADS: generalized HMC, step size, damping and scales set across folds of chains.", ()),
    ("underdamped_langevin", "ebmcore_samplers.underdamped:UnderdampedLangevin",
     "Underdamped (kinetic) Langevin dynamics with friction.", ("uld", "kinetic_langevin")),
    ("parallel_tempering", "ebmcore_samplers.tempering:ParallelTempering",
     "Replica exchange over a temperature ladder, replicas batched into one energy call.",
     ("pt", "replica_exchange")),
    ("annealed_langevin", "ebmcore_samplers.annealed:AnnealedLangevin",
     "Annealed Langevin dynamics over noise levels, for noise-conditional energies.", ()),
    ("flow", "ebmcore_samplers.flow:FlowSampler",
     "Integrates a field from noise to data (ODE or SDE; velocity, score or noise), counts nfe.",
     ("flow_sampler", "ode")),
    ("gradient_descent", "ebmcore_samplers.descent:GradientDescent",
     "Deterministic descent x - eta grad E, as equilibrium matching samples; optional noise.",
     ("gd", "descent")),
    ("nesterov", "ebmcore_samplers.descent:Nesterov",
     "Nesterov's accelerated descent of an energy (look-ahead gradient, momentum mu).", ()),
]


_BACKENDS = [
    ("numba", "ebmcore_samplers.kernels.backend:NumbaBackend",
     "Fused numba kernel over CPU chains (Langevin, MALA, HMC on energies with a numba face)."),
    ("cuda", "ebmcore_samplers.kernels.backend:CudaBackend",
     "Fused numba.cuda kernel, one GPU thread per chain (energies with a numba face)."),
    ("compiled", "ebmcore_samplers.compiled.loop:CompiledBackend",
     "Blocks of torch steps traced by torch.compile (CUDA graphs on GPUs)."),
    ("async", "ebmcore_samplers.async_backend:AsyncBackend",
     "NUTS chains that each run their own transitions, one batched call per leaf (CPU)."),
]


@ebmcore.hookimpl
def ebmcore_samplers() -> list[ebmcore.Component]:
    """Return the built-in samplers."""
    return [ebmcore.Component(name, target, summary, aliases)
            for name, target, summary, aliases in _SAMPLERS]


@ebmcore.hookimpl
def ebmcore_backends() -> list[ebmcore.Component]:
    """Return the built-in sampling backends (``torch`` is the core's own)."""
    return [ebmcore.Component(name, target, summary) for name, target, summary in _BACKENDS]
