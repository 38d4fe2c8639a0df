"""Built-in plugin: the simulation-free kinds — interpolants, couplings and integrators.

Registers through the ``ebmcore`` entry-point group. Its root module stays light (no torch,
POT or torchdiffeq import): components are named as lazy ``"module:attr"`` targets, and the
optional packages (``pip install "ebmcore[flows]"``) are imported only when a component that
needs them is built.
"""

from __future__ import annotations

import ebmcore

EBMCORE_PLUGIN_API = 1

# name, target, summary, aliases
_INTERPOLANTS = [
    ("linear", "ebmcore_flows.interpolants:LinearInterpolant",
     "Straight path x_t = t x1 + (1 - t) x0 (rectified flow, conditional OT).",
     ("rectified", "cond_ot")),
    ("cosine", "ebmcore_flows.interpolants:CosineInterpolant",
     "Trigonometric path x_t = sin(pi t / 2) x1 + cos(pi t / 2) x0.", ("trig",)),
    ("vp", "ebmcore_flows.interpolants:VPInterpolant",
     "Variance-preserving diffusion path (Song et al.), linear beta schedule 0.1..20.",
     ("variance_preserving",)),
]

_COUPLINGS = [
    ("independent", "ebmcore_flows.couplings:IndependentCoupling",
     "Keeps noise and data paired as drawn.", ("iid",)),
    ("exact_ot", "ebmcore_flows.couplings:ExactOTCoupling",
     "Minibatch optimal transport (POT's exact solver, squared Euclidean cost).", ("ot",)),
    ("sinkhorn", "ebmcore_flows.couplings:SinkhornCoupling",
     "Entropic minibatch OT (POT's Sinkhorn); pairs drawn from the plan.", ("entropic_ot",)),
]

_INTEGRATORS = [
    ("euler", "ebmcore_flows.integrators:Euler",
     "Explicit Euler, first order, one field evaluation per step.", ()),
    ("heun", "ebmcore_flows.integrators:Heun",
     "Heun's method (explicit trapezoid), second order, two evaluations per step.", ()),
    ("rk4", "ebmcore_flows.integrators:RK4",
     "Classical Runge-Kutta, fourth order, four evaluations per step.", ("runge_kutta",)),
    ("dopri5", "ebmcore_flows.integrators:Dopri5",
     "Adaptive Dormand-Prince 5(4) through torchdiffeq, to rtol/atol.", ("adaptive",)),
    ("euler_maruyama", "ebmcore_flows.integrators:EulerMaruyama",
     "Euler-Maruyama for SDEs dx = f dt + g(t) dW, strong order 1/2.", ("em",)),
]


def _components(table: list[tuple[str, str, str, tuple[str, ...]]]) -> list[ebmcore.Component]:
    return [ebmcore.Component(name, target, summary, aliases)
            for name, target, summary, aliases in table]


@ebmcore.hookimpl
def ebmcore_interpolants() -> list[ebmcore.Component]:
    """Return the built-in interpolants."""
    return _components(_INTERPOLANTS)


@ebmcore.hookimpl
def ebmcore_couplings() -> list[ebmcore.Component]:
    """Return the built-in couplings."""
    return _components(_COUPLINGS)


@ebmcore.hookimpl
def ebmcore_integrators() -> list[ebmcore.Component]:
    """Return the built-in integrators."""
    return _components(_INTEGRATORS)
