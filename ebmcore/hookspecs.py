"""Hook specifications: the plugin author's API.

A plugin is a module (or any object) registered under the ``ebmcore`` entry-point group. It
implements one or more of the hooks below, each marked with :data:`hookimpl`, and returns
:class:`ebmcore.Component` descriptors. Keep the plugin's root module light: name heavy
targets as ``"module:attr"`` strings so nothing is imported until a user asks for it.

Example::

    import ebmcore

    EBMCORE_PLUGIN_API = 1

    @ebmcore.hookimpl
    def ebmcore_energies():
        return [ebmcore.Component("my_energy", "my_pkg.energies:MyEnergy", "My energy.")]
"""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from ebmcore.component import Component

PROJECT_NAME = "ebmcore"

#: Marks a hook specification (used by the core only).
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Marks a plugin's hook implementation.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: Maps each hook name to the component kind it contributes.
HOOK_KINDS: dict[str, str] = {
    "ebmcore_energies": "energy",
    "ebmcore_samplers": "sampler",
    "ebmcore_losses": "loss",
    "ebmcore_models": "model",
    "ebmcore_datasets": "dataset",
    "ebmcore_backends": "backend",
    "ebmcore_interpolants": "interpolant",
    "ebmcore_couplings": "coupling",
    "ebmcore_integrators": "integrator",
}


@hookspec
def ebmcore_energies() -> Iterable[Component]:
    """Return the energies this plugin contributes (kind ``energy``).

    Each target builds an :class:`ebmcore.Energy`: a module whose ``forward`` maps a batch
    ``(B, *event_shape)`` to energies ``(B,)``.
    """


@hookspec
def ebmcore_samplers() -> Iterable[Component]:
    """Return the samplers this plugin contributes (kind ``sampler``).

    Each target builds an :class:`ebmcore.Sampler` implementing ``init`` and ``step``; the
    base class supplies ``sample``.
    """


@hookspec
def ebmcore_losses() -> Iterable[Component]:
    """Return the training objectives this plugin contributes (kind ``loss``).

    Each target builds an :class:`ebmcore.Loss` returning :class:`ebmcore.LossOutput`.
    Set ``takes_sampler=True`` on the descriptor when the constructor takes ``sampler=``;
    a ``recipe`` holds what changes in a run that uses the loss.
    """


@hookspec
def ebmcore_models() -> Iterable[Component]:
    """Return the neural energy models this plugin contributes (kind ``model``).

    Each target builds an :class:`ebmcore.Energy` with learnable parameters. The
    descriptor's ``data_shape`` names the constructor keyword that receives the data's shape
    (``"dim"`` or ``"event_shape"``).
    """


@hookspec
def ebmcore_datasets() -> Iterable[Component]:
    """Return the data sets this plugin contributes (kind ``dataset``).

    Each target builds an :class:`ebmcore.Dataset` with ``sample(n, generator)`` and, where
    the density is known, ``log_prob(x)``. The descriptor's ``recipe`` says how a run trains
    on the data set (``"default": True`` makes it the data set of a run that names none).
    """


@hookspec
def ebmcore_backends() -> Iterable[Component]:
    """Return the sampling backends this plugin contributes (kind ``backend``).

    Each target builds, with no arguments, an :class:`ebmcore.sampling.Backend`: an object
    whose ``supports(sampler, energy, x, run)`` says whether it can run a case (``None``) or
    why not, and whose ``run(...)`` runs it. ``Sampler.sample(backend=name)`` finds it by
    its ``name``, and ``backend="auto"`` considers it.
    """


@hookspec
def ebmcore_interpolants() -> Iterable[Component]:
    """Return the interpolants this plugin contributes (kind ``interpolant``).

    Each target builds an :class:`ebmcore.interpolant.Interpolant`: the Gaussian path
    ``x_t = alpha(t) x1 + sigma(t) x0`` from noise (``t = 0``) to data (``t = 1``), given by
    its ``coefficients(t)``.
    """


@hookspec
def ebmcore_couplings() -> Iterable[Component]:
    """Return the couplings this plugin contributes (kind ``coupling``).

    Each target builds an :class:`ebmcore.coupling.Coupling` whose ``pair(x0, x1,
    generator)`` re-pairs a batch of noise with a batch of data.
    """


@hookspec
def ebmcore_integrators() -> Iterable[Component]:
    """Return the ODE/SDE integrators this plugin contributes (kind ``integrator``).

    Each target builds an :class:`ebmcore.integrator.Integrator` whose ``integrate(f, x, t0,
    t1, *, generator, diffusion)`` returns an ``IntegrationResult(x, nfe, steps)``.
    """
