"""The ``flow`` sampler: integrate a field from noise (``t = 0``) to data (``t = 1``).

A trained field is sampled by carrying Gaussian noise along it with an integrator: the
probability-flow ODE ``dx/dt = v(x, t)``, or, where the path gives a score, the SDE

    dx = [v(x, t) + g(t)^2 / 2 * s(x, t)] dt + g(t) dW,

which has the same marginals for any diffusion ``g`` (its Fokker–Planck equation is the
ODE's continuity equation). A field that predicts a score or the noise is turned into the
velocity ``v`` by the interpolant it was trained on; the SDE's score ``s`` comes from the
velocity the same way.

**Why not a** :class:`ebmcore.Sampler`. The sampler contract is a Markov kernel ``init`` /
``step`` run by one loop for ``n_steps`` kept steps, with burn-in, thinning, acceptance,
backends and an energy trace. A flow is none of these: it is one deterministic (or, as an
SDE, one time-inhomogeneous) map from noise to data whose every step depends on the time and
whose count is fixed by the integrator, and the field has no energy to trace. Running it
through that loop would need a clock in the state, burn-in and thinning that mean nothing,
and an energy it may not have. So :class:`FlowSampler` keeps the registry's door (kind
``sampler``, name ``flow``, built by ``ebmcore.create``) but has its own
:meth:`FlowSampler.sample`, whose result reports the field evaluations it spent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ebmcore.errors import IntegrationError
from ebmcore.field import Field, as_field
from ebmcore.integrator import CountedField, FixedStepIntegrator, Integrator
from ebmcore.interpolant import Interpolant, expand_like
from ebmcore.validation import check_int, check_positive, same_device
from ebmcore_samplers.flow_backend import CompiledFlow, resolve_backend

__all__ = ["PREDICTIONS", "FlowResult", "FlowSampler"]

#: What a field's output may mean (set by the loss that trained it).
PREDICTIONS = ("velocity", "score", "noise")


@dataclass
class FlowResult:
    """What :meth:`FlowSampler.sample` returns.

    Attributes:
        samples: The states at the end of the integration ``(n, *event_shape)``.
        nfe: Field evaluations spent (each one call of the field on the whole batch).
        steps: Integrator steps taken (accepted steps, for an adaptive integrator).
        trajectory: The states ``(steps + 1, n, *event_shape)`` at every step of a
            fixed-step integrator, the start included, when asked for; else ``None``.
        diagnostics: ``integrator`` (its repr, with the tolerances of an adaptive one),
            ``t_span``, ``prediction``, ``sde``, ``time_invariant``, ``final_step`` (the
            SDE's noise-free last step, or ``None``), ``backend`` (the one that ran:
            ``torch`` or ``compiled``) and ``seconds``.
    """

    samples: torch.Tensor
    nfe: int
    steps: int
    trajectory: torch.Tensor | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)


def _resolve(kind: str, value: Any, base: type, **params: Any) -> Any:
    """Return ``value`` when it is an instance of ``base``, else create it by name."""
    if isinstance(value, str):
        import ebmcore

        return ebmcore.create(kind, value, **params)
    if isinstance(value, base):
        if params:
            raise ValueError(f"{', '.join(params)} only apply when the {kind} is given by "
                             f"name; set them on the {kind} instance instead")
        return value
    raise TypeError(f"{kind} must be a registered {kind} name or an ebmcore "
                    f"{base.__name__}, got {type(value).__name__}")


class FlowSampler:
    """Samples a :class:`ebmcore.Field` by integrating it from noise to data.

    Args:
        integrator: An integrator name (``euler``, ``heun``, ``rk4``, ``dopri5``,
            ``euler_maruyama`` or a plugin's) or an :class:`ebmcore.integrator.Integrator`.
            Default ``"heun"`` (``"euler_maruyama"`` with ``sde=True``; ``"dopri5"`` when
            ``rtol`` or ``atol`` is given).
        steps: Steps of a fixed-step integrator given by name (default 100).
        rtol: Relative tolerance of an adaptive integrator given by name.
        atol: Absolute tolerance of an adaptive integrator given by name.
        prediction: What the field outputs: ``"velocity"``, ``"score"`` (``∇ log p_t``) or
            ``"noise"`` (``E[x0 | x_t]``), as the loss that trained it.
        interpolant: The path the field was trained on, by name or instance (default
            ``"linear"``); converts scores and noise into velocities.
        time_invariant: The field takes no time (equilibrium matching, or ``-∇E`` of an
            energy): it is always called with ``t = 0``.
        sde: Integrate the SDE with drift ``v + g^2 / 2 * s`` instead of the ODE; needs a
            stochastic integrator and a time-conditioned field.
        diffusion: ``g(t)`` of the SDE (``sde=True``), a non-negative number or a callable
            of the time.
        t_span: ``(start, end)`` of the integration, inside ``[0, 1]`` (a time-invariant
            field's end may pass 1: its span is only a length). Default ``(0, 1)``, with
            an end moved in by ``t_eps`` where the path makes the field's velocity
            undefined there (a score or noise conversion where ``alpha = 0``, a score where
            ``sigma = 0``, a non-finite path derivative as the VP path's at ``t = 1``).
        t_eps: How far a singular end moves in (default ``1e-3``).
        final_step: With ``sde=True``, the width of a last, noise-free step (default
            ``0.04``, as SiT and TorchEBM end): the SDE runs to ``t_span[1] - final_step``
            and one Euler step of the probability-flow velocity (no noise, and no score
            term, so the marginals stay those of the ODE) carries the points to the end.
            ``None`` ends with the integrator's own noisy step. Ignored by the ODE.
        backend: ``"torch"`` (eager), ``"compiled"`` (``torch.compile`` of each step of a
            fixed-step ODE integrator, field included, or of the field for any other
            integrator; see :mod:`ebmcore_samplers.flow_backend`) or ``"auto"`` (the
            default: eager, since compiling costs seconds that one run seldom repays).
    """

    def __init__(self, integrator: str | Integrator | None = None, *, steps: int | None = None,
                 rtol: float | None = None, atol: float | None = None,
                 prediction: str = "velocity", interpolant: str | Interpolant = "linear",
                 time_invariant: bool = False, sde: bool = False,
                 diffusion: float | Callable[[torch.Tensor], Any] = 1.0,
                 t_span: tuple[float, float] | None = None, t_eps: float = 1e-3,
                 final_step: float | None = 0.04, backend: str = "auto") -> None:
        for label, flag in (("time_invariant", time_invariant), ("sde", sde)):
            if not isinstance(flag, bool):
                raise TypeError(f"{label} must be True or False, got {flag!r}")
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, "
                             f"got {prediction!r}")
        if time_invariant and (prediction != "velocity" or sde):
            raise ValueError("time_invariant=True samples a time-free field (equilibrium "
                             "matching, -grad E) whose output is no path's velocity: it "
                             "takes neither prediction='score'/'noise' nor sde=True")
        self.prediction, self.time_invariant, self.sde = prediction, time_invariant, sde
        self.integrator = self._build_integrator(integrator, steps, rtol, atol, sde)
        if sde != self.integrator.stochastic:
            raise ValueError(f"sde={sde} needs {'a stochastic' if sde else 'an ODE'} "
                             f"integrator, got {self.integrator.name!r}"
                             + (" (use 'euler_maruyama')" if sde else " (or pass sde=True)"))
        self.interpolant = _resolve("interpolant", interpolant, Interpolant)
        self.diffusion = (diffusion if callable(diffusion)
                          else check_positive("diffusion", diffusion, allow_zero=True))
        self.t_eps = check_positive("t_eps", t_eps)
        if not self.t_eps < 0.5:
            raise ValueError(f"t_eps must be below 0.5, got {t_eps!r}")
        self.t_span = self._default_span() if t_span is None else self._check_span(t_span)
        self.final_step = None if final_step is None else check_positive("final_step",
                                                                          final_step)
        if sde and self.final_step is not None \
                and not self.final_step < self.t_span[1] - self.t_span[0]:
            raise ValueError(f"final_step={final_step!r} must be shorter than t_span "
                             f"{self.t_span}")
        self.backend = backend
        self._backend = resolve_backend(backend)
        self._compiled = CompiledFlow(self.integrator) if self._backend == "compiled" else None

    @staticmethod
    def _build_integrator(integrator: Any, steps: Any, rtol: Any, atol: Any,
                          sde: bool) -> Integrator:
        """Create the integrator from a name and its settings, or check an instance.

        ``steps`` goes to a fixed-step integrator (default 100), ``rtol``/``atol`` to an
        adaptive one; either given to the other kind is refused naming both.
        """
        tolerances = {k: v for k, v in (("rtol", rtol), ("atol", atol)) if v is not None}
        if tolerances and steps is not None:
            raise ValueError("give steps (a fixed-step integrator) or rtol/atol (an adaptive "
                             "one), not both")
        if integrator is None:
            integrator = "dopri5" if tolerances else "euler_maruyama" if sde else "heun"
        if not isinstance(integrator, str):
            return _resolve("integrator", integrator, Integrator,
                            **tolerances, **({} if steps is None else {"steps": steps}))
        import ebmcore

        target = ebmcore.get("integrator", integrator)
        fixed = isinstance(target, type) and issubclass(target, FixedStepIntegrator)
        params: dict[str, Any] = dict(tolerances)
        if fixed and tolerances:
            raise ValueError(f"integrator {integrator!r} takes fixed steps: give steps=, not "
                             f"{'/'.join(tolerances)} (those set an adaptive integrator such "
                             f"as 'dopri5')")
        if not fixed and steps is not None:
            raise ValueError(f"integrator {integrator!r} is not a fixed-step integrator: give "
                             f"rtol/atol, not steps (or name a fixed-step one such as 'heun')")
        if fixed:
            params["steps"] = 100 if steps is None else check_int("steps", steps, minimum=1)
        return _resolve("integrator", integrator, Integrator, **params)

    def _check_span(self, span: Any) -> tuple[float, float]:
        if not isinstance(span, (tuple, list)) or len(span) != 2 or any(
                isinstance(v, bool) or not isinstance(v, (int, float)) for v in span):
            raise TypeError(f"t_span must be a (start, end) pair of numbers, got {span!r}")
        start, end = float(span[0]), float(span[1])
        # A time-free field sees no time, so its span is only a length (a descent's budget).
        top = math.inf if self.time_invariant else 1.0
        if not (0.0 <= start < end <= top and math.isfinite(end)):
            raise ValueError(f"t_span needs 0 <= start < end <= {top:g} (noise to data), got "
                             f"{span!r}")
        return start, end

    def _default_span(self) -> tuple[float, float]:
        """``(0, 1)``, each end moved in by ``t_eps`` where the velocity is undefined."""
        if self.time_invariant:
            return 0.0, 1.0
        ends = torch.tensor([0.0, 1.0], dtype=torch.float64)
        alpha, sigma, d_alpha, d_sigma = self.interpolant.coefficients(ends)
        finite = torch.isfinite(torch.stack([alpha, sigma, d_alpha, d_sigma])).all(0)
        needs_alpha = self.prediction != "velocity"
        needs_sigma = self.prediction == "score" or self.sde
        # Zero up to rounding: cos(pi / 2) is 6e-17, not 0.
        bad = (~finite | (needs_alpha & (alpha.abs() < 1e-9))
               | (needs_sigma & (sigma.abs() < 1e-9)))
        return (self.t_eps if bool(bad[0]) else 0.0,
                1.0 - self.t_eps if bool(bad[1]) else 1.0)

    def g(self, t: torch.Tensor) -> torch.Tensor | float:
        """The SDE's diffusion ``g(t)``: the constant, or the callable's value at ``t``."""
        return self.diffusion(t) if callable(self.diffusion) else self.diffusion

    def drift(self, field: Field, *, sde: bool | None = None
              ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """Return ``f(x, t)``, what this sampler integrates for ``field``: the velocity
        (converted from a score or noise), plus ``g^2 / 2`` times the score for the SDE
        (``sde``, by default this sampler's own setting)."""
        path = self.interpolant
        stochastic = self.sde if sde is None else sde

        def f(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            out = field(x, torch.zeros_like(t) if self.time_invariant else t)
            if self.prediction == "velocity":
                v = out
            elif self.prediction == "score":
                v = path.score_to_velocity(out, x, t)
            else:
                v = path.noise_to_velocity(out, x, t)
            if not stochastic:
                return v
            if self.prediction == "score":
                score = out
            elif self.prediction == "noise":
                score = -out / expand_like(path.coefficients(t.to(x.dtype))[1], x)
            else:
                score = path.velocity_to_score(v, x, t)
            g = torch.as_tensor(self.g(t), dtype=x.dtype, device=x.device)
            return v + 0.5 * g * g * score

        return f

    def sample(self, field: Field, n: int | None = None, generator: torch.Generator | None = None,
               x0: torch.Tensor | None = None, *, return_trajectory: bool = False) -> FlowResult:
        """Draw samples by integrating ``field`` from noise at ``t_span[0]`` to ``t_span[1]``.

        Args:
            field: The trained :class:`ebmcore.Field` (an :class:`ebmcore.Energy` serves as
                the field ``-∇E``, through :func:`ebmcore.field.as_field`).
            n: How many samples; drawn from ``N(0, I)`` of the field's ``event_shape`` on
                its parameters' device and dtype. May be left out when ``x0`` is given.
            generator: The stream of the starting noise and of the SDE's noise; ``None``
                draws from a fresh, non-deterministically seeded one.
            x0: The starting noise ``(n, *event_shape)`` instead of drawing it; not modified.
            return_trajectory: Also return the state after every step (fixed-step
                integrators only).

        Returns:
            The samples with the field evaluations and steps spent.

        Raises:
            TypeError: When ``field`` is neither a field nor an energy.
            ebmcore.errors.IntegrationError: When the field turns non-finite (naming the
                field, the integrator and the time) or an adaptive integrator cannot meet
                its tolerance.
        """
        field = as_field(field)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got "
                            f"{type(generator).__name__}")
        if generator is None:
            # A private generator, so that sampling never advances torch's global RNG.
            generator = torch.Generator(device=self._device(field, x0))
            generator.seed()
        x0 = self._start(field, n, generator, x0)
        if return_trajectory and not isinstance(self.integrator, FixedStepIntegrator):
            raise ValueError(f"return_trajectory records every step of a fixed-step "
                             f"integrator; {self.integrator.name!r} is not one")
        start, end = self.t_span
        diffusion = self.g if self.sde else None
        last = self.final_step if self.sde else None
        if last is not None:
            end -= last
        drift = self.drift(field)
        # a recorded trajectory runs the integrator's own steps eagerly
        backend = "torch" if return_trajectory else self._backend
        began = time.perf_counter()
        try:
            with torch.no_grad():
                if return_trajectory:
                    samples, nfe, steps, trajectory = self._recorded(drift, x0, generator,
                                                                     diffusion, (start, end))
                else:
                    result = (self._compiled.integrate(field, drift, x0, start, end,
                                                       generator=generator,
                                                       diffusion=diffusion)
                              if backend == "compiled" and self._compiled is not None
                              else self.integrator.integrate(drift, x0, start, end,
                                                             generator=generator,
                                                             diffusion=diffusion))
                    samples, nfe, steps, trajectory = result.x, result.nfe, result.steps, None
                if last is not None:
                    samples = self._final_step(field, samples, end, last)
                    nfe, steps = nfe + 1, steps + 1
                    if trajectory is not None:
                        trajectory = torch.cat([trajectory, samples[None]])
        except IntegrationError as exc:
            raise self._field_error(field, exc) from exc
        diagnostics = {"integrator": repr(self.integrator), "t_span": self.t_span,
                       "prediction": self.prediction, "sde": self.sde,
                       "time_invariant": self.time_invariant, "final_step": last,
                       "backend": backend, "seconds": time.perf_counter() - began}
        return FlowResult(samples=samples, nfe=nfe, steps=steps, trajectory=trajectory,
                          diagnostics=diagnostics)

    def _final_step(self, field: Field, x: torch.Tensor, t: float, width: float
                    ) -> torch.Tensor:
        """The SDE's last, noise-free step: ``x + width * v(x, t)`` with the probability-flow
        velocity ``v``."""
        counted = CountedField(self.drift(field, sde=False), "final_step")
        t_ = torch.tensor(t, dtype=x.dtype, device=x.device)
        return x + width * counted(x, t_)

    def _field_error(self, field: Field, exc: IntegrationError) -> IntegrationError:
        """``exc`` with the field named and what to do about it."""
        if exc.time is None:  # a tolerance not met: the integrator says what to do
            advice = ""
        else:
            advice = (" (the field, as this sampler reads it with prediction="
                      f"{self.prediction!r}, is not finite there: check that the model was "
                      f"trained without diverging, that it is sampled with the prediction "
                      f"and interpolant its loss trained it with, and, for a score or noise "
                      f"prediction, keep t_span away from the path's singular ends)")
        return IntegrationError(f"flow sampler on field {type(field).__name__}: {exc}{advice}",
                                integrator=exc.integrator, time=exc.time)

    @staticmethod
    def _device(field: Field, x0: Any) -> torch.device:
        """Where the samples live: ``x0``'s device, else the field's parameters'."""
        if isinstance(x0, torch.Tensor):
            return x0.device
        param = next(iter(field.parameters()), None)
        return param.device if param is not None else torch.device("cpu")

    def _start(self, field: Field, n: Any, generator: torch.Generator,
               x0: torch.Tensor | None) -> torch.Tensor:
        """Check (or draw from ``generator``) the starting noise."""
        if x0 is not None:
            if not isinstance(x0, torch.Tensor) or not x0.is_floating_point() or x0.ndim < 2:
                raise TypeError("x0 must be a floating-point tensor (n, *event_shape)")
            if n is not None and check_int("n", n, minimum=1) != x0.shape[0]:
                raise ValueError(f"n={n} but x0 holds {x0.shape[0]} points; give one of them")
            if field.event_shape is not None and tuple(x0.shape[1:]) != tuple(field.event_shape):
                raise ValueError(f"x0 has event shape {tuple(x0.shape[1:])} but the field "
                                 f"expects {tuple(field.event_shape)}")
            start = x0
        else:
            if n is None:
                raise ValueError("give n (how many samples) or x0 (the starting noise)")
            check_int("n", n, minimum=1)
            if field.event_shape is None:
                raise ValueError(f"{type(field).__name__} declares no event_shape; pass x0 "
                                 f"(the starting noise) instead of n")
            param = next(iter(field.parameters()), None)
            dtype = param.dtype if param is not None else torch.get_default_dtype()
            start = torch.randn((n, *field.event_shape), generator=generator,
                                device=generator.device, dtype=dtype)
        if not same_device(generator.device, start.device):
            raise ValueError(f"generator is on {generator.device} but the samples are on "
                             f"{start.device}; create it with torch.Generator(device=...)")
        return start

    def _recorded(self, drift: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                  x: torch.Tensor, generator: torch.Generator, diffusion: Any,
                  span: tuple[float, float]) -> tuple[torch.Tensor, int, int, torch.Tensor]:
        """Run the fixed-step integrator's own steps over its grid, keeping every state."""
        integrator = self.integrator
        assert isinstance(integrator, FixedStepIntegrator)
        counted = CountedField(drift, integrator.name, defer=True)
        grid = torch.linspace(*span, integrator.steps + 1, dtype=torch.float64)
        times = grid.to(dtype=x.dtype, device=x.device)
        widths = grid.diff().to(dtype=x.dtype, device=x.device)
        states = [x]
        for k in range(integrator.steps):
            x = integrator.step(counted, x, times[k], widths[k], generator=generator,
                                diffusion=diffusion)
            states.append(x)
        counted.check()
        return x, counted.nfe, integrator.steps, torch.stack(states)

    def __repr__(self) -> str:
        return (f"FlowSampler(integrator={self.integrator!r}, prediction={self.prediction!r}, "
                f"interpolant={self.interpolant!r}, time_invariant={self.time_invariant}, "
                f"sde={self.sde}, t_span={self.t_span}, backend={self.backend!r})")
