"""Built-in plugin: energies. Registers through the ``ebmcore`` entry-point group.

Its root module stays light: components are named as lazy ``"module:attr"`` targets, so
listing them imports neither torch nor numba.
"""

from __future__ import annotations

import ebmcore

EBMCORE_PLUGIN_API = 1

_P = "ebmcore_energies"

_COMPONENTS = [
    ("gaussian", "gaussian:Gaussian",
     "Multivariate normal from a mean and a covariance, precision or diagonal.", ("normal",)),
    ("gaussian_mixture", "mixture:GaussianMixture",
     "Mixture of K Gaussians with isotropic, diagonal or full covariances.", ("gmm", "mixture")),
    ("double_well", "classic:DoubleWell",
     "Double well along x0 with a set barrier height, harmonic in the rest.", ()),
    ("harmonic", "classic:Harmonic", "Harmonic well 0.5 k (x - c)^2 with exact samples.", ()),
    ("rastrigin", "classic:Rastrigin", "Rastrigin function: a grid of local minima.", ()),
    ("rosenbrock", "classic:Rosenbrock",
     "Rosenbrock's curved valley (exact log Z and samples in 2-D).", ()),
    ("ackley", "classic:Ackley", "Ackley function: a central funnel in a sea of ripples.", ()),
    ("himmelblau", "classic:Himmelblau", "Himmelblau function: four equal minima in 2-D.", ()),
    ("styblinski_tang", "classic:StyblinskiTang",
     "Styblinski-Tang function: 2^D local minima.", ()),
    ("banana", "exact:Banana", "Twisted-Gaussian banana with exact log Z and samples.", ()),
    ("funnel", "exact:Funnel", "Neal's funnel with exact log Z and samples.", ("neal_funnel",)),
    ("ring", "exact:Ring", "Ring-shaped shell (||x|| - r)^2 / (2 w^2) with exact samples.", ()),
    ("sum", "composite:SumEnergy",
     "Sum of energies (a product of experts).", ("product_of_experts",)),
    ("tempered", "composite:TemperedEnergy", "An energy divided by a temperature T > 0.", ()),
    ("callable", "composite:CallableEnergy",
     "An energy from any Python callable, with an autograd gradient.", ()),
    ("posterior", "posterior:Posterior",
     "A log density over named blocks with torch constraints, on the unconstrained space.",
     ()),
    ("pyro_model", "pyro_model:PyroPosterior",
     "The posterior of a Pyro model's latent sites (optional extra ebmcore[pyro]).",
     ("pyro",)),
]


@ebmcore.hookimpl
def ebmcore_energies() -> list[ebmcore.Component]:
    """Return the built-in energies."""
    return [ebmcore.Component(name, f"{_P}.{target}", summary, aliases=aliases)
            for name, target, summary, aliases in _COMPONENTS]
