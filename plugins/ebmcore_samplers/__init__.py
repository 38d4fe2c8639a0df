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
     "No-U-Turn sampler with multinomial sampling; chains run in lockstep with masks.", ()),
    ("underdamped_langevin", "ebmcore_samplers.underdamped:UnderdampedLangevin",
     "Underdamped (kinetic) Langevin dynamics with friction.", ("uld", "kinetic_langevin")),
    ("parallel_tempering", "ebmcore_samplers.tempering:ParallelTempering",
     "Replica exchange over a temperature ladder, replicas batched into one energy call.",
     ("pt", "replica_exchange")),
    ("annealed_langevin", "ebmcore_samplers.annealed:AnnealedLangevin",
     "Annealed Langevin dynamics over noise levels, for noise-conditional energies.", ()),
]


@ebmcore.hookimpl
def ebmcore_samplers() -> list[ebmcore.Component]:
    """Return the built-in samplers."""
    return [ebmcore.Component(name, target, summary, aliases)
            for name, target, summary, aliases in _SAMPLERS]
