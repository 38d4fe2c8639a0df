"""Exceptions raised by the registry and the contracts."""

from __future__ import annotations


class EbmcoreError(Exception):
    """Base class of every error ebmcore raises on purpose."""


class UnknownComponentError(EbmcoreError, LookupError):
    """No component of the requested kind has the requested name."""

    def __str__(self) -> str:  # LookupError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class AmbiguousComponentError(EbmcoreError, LookupError):
    """Two plugins provide the same name and none was chosen with ``plugin:name``."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownKindError(EbmcoreError, ValueError):
    """The kind is not one of :func:`ebmcore.kinds`."""


class PluginLoadError(EbmcoreError, ImportError):
    """A plugin failed to load (raised in strict mode) or a lazy target failed to import."""


class BackendUnavailableError(EbmcoreError, RuntimeError):
    """The requested sampler backend cannot serve this energy, tensor or machine."""


class CheckpointError(EbmcoreError, ValueError):
    """A checkpoint file is missing, truncated, corrupt or not an ebmcore checkpoint."""


class TrainingDivergedError(EbmcoreError, FloatingPointError):
    """Training produced a non-finite loss, gradient, energy or negative sample.

    Attributes:
        step: The first training step at which a watched quantity was non-finite.
        quantities: The names of the quantities that were non-finite at that step, the
            earliest in the computation first (negatives, energies, loss, gradient).
        checkpoint: The last checkpoint written before the divergence, or ``None``.
    """

    def __init__(self, message: str, *, step: int, quantities: tuple[str, ...] = (),
                 checkpoint: str | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.quantities = quantities
        self.checkpoint = checkpoint


class TrainingRunawayWarning(UserWarning):
    """The loss or an energy metric left the plausible range: the energies are running away.

    Issued once per run by :class:`ebmcore.train.Trainer` when a recorded ``loss`` or
    ``energy*`` metric exceeds its ``runaway_energy`` in magnitude; the run goes on (the model
    may still recover), and :attr:`ebmcore.train.Trainer.runaway` names the step.
    """


class DistributedError(EbmcoreError, RuntimeError):
    """A distributed job could not start, or one of its ranks failed or stopped answering."""


class CommandError(EbmcoreError):
    """A user error a command-line command detected; ``ebmcore`` prints it as one line and
    exits with status 1."""


class ConfigError(EbmcoreError, ValueError):
    """A run configuration's value, file or ``--set`` item is malformed, or the recipes the
    plugins declare leave its defaults undecided."""


class InvalidParametersError(EbmcoreError, TypeError):
    """The parameters given to :func:`ebmcore.create` do not fit the component's signature."""


class MissingDependencyError(EbmcoreError, ImportError):
    """A component needs an optional package that is not installed; the message names the
    ``pip install`` command (for example ``pip install "ebmcore[flows]"``)."""


class IntegrationError(EbmcoreError, RuntimeError):
    """An integrator could not solve an ODE or SDE: the field returned non-finite values,
    or an adaptive integrator could not meet its tolerance.

    Attributes:
        integrator: The name of the integrator that failed.
        time: The time at which it failed, or ``None`` when unknown.
    """

    def __init__(self, message: str, *, integrator: str, time: float | None = None) -> None:
        super().__init__(message)
        self.integrator = integrator
        self.time = time
