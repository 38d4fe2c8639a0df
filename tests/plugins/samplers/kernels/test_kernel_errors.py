"""Every reason a fused backend cannot run gives a BackendUnavailableError that says why."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ebmcore_energies.gaussian import gaussian_energy, gaussian_grad
from ebmcore_samplers.kernels import auto_backend, dispatch, fused_reasons
from kernel_helpers import fused, gaussian2

import ebmcore
from ebmcore.energy import Energy, NumbaFace
from ebmcore.errors import BackendUnavailableError


class Neural(Energy):
    """An autograd-only energy (no numba face)."""

    event_shape = (2,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x.square().sum(1)


class CustomFace(Energy):
    """A Gaussian whose numba face the test chooses."""

    event_shape = (2,)

    def __init__(self, face: object) -> None:
        super().__init__()
        self.face = face

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x.square().sum(1)

    def numba_face(self) -> object:
        return self.face


def std_params(d: int = 2) -> np.ndarray:
    # [D, μ, P, Pμ], the dense Gaussian face's layout (μ = 0, P = I).
    return np.concatenate([[d], np.zeros(d), np.eye(d).ravel(), np.zeros(d)])


X = torch.zeros(8, 2, dtype=torch.float64)


def expect(sampler: object, energy: Energy, x: torch.Tensor, backend: str,
           *fragments: str, burn_in: int = 0) -> None:
    with pytest.raises(BackendUnavailableError) as info:
        sampler.sample(energy, x, 2, backend=backend, generator=torch.Generator(),
                       burn_in=burn_in)
    msg = str(info.value)
    assert f"backend={backend!r} cannot run here" in msg
    assert "torch" in msg  # says what would work
    for fragment in fragments:
        assert fragment in msg, msg


@pytest.mark.parametrize("backend", ["numba", "cuda"])
def test_neural_energy_has_no_face(backend: str) -> None:
    expect(fused("langevin", step_size=0.1), Neural(), X, backend, "no numba face",
           "backend='torch'")


def test_mala_and_hmc_need_a_numba_energy_but_langevin_does_not() -> None:
    energy = CustomFace(NumbaFace(energy=None, grad=gaussian_grad, params=std_params(), dim=2))
    for method, kw in (("mala", {"step_size": 0.1}), ("hmc", {"step_size": 0.1})):
        expect(fused(method, **kw), energy, X, "numba", f"{method} needs the energy's numba "
               "energy function", "langevin works with a gradient alone")
    assert fused_reasons("langevin", energy, X)["numba"] is None


def test_langevin_runs_with_a_gradient_only_face() -> None:
    energy = CustomFace(NumbaFace(energy=None, grad=gaussian_grad, params=std_params(), dim=2))
    res = fused("langevin", step_size=0.1).sample(energy, X, 5, backend="numba",
                                                  generator=torch.Generator().manual_seed(0))
    assert res.samples.shape == (8, 2) and res.diagnostics["energy_trace"].numel() == 0


def test_x_requiring_grad_is_refused() -> None:
    x = X.clone().requires_grad_(True)
    expect(fused("mala", step_size=0.1), gaussian2(), x, "numba", "requires grad",
           "x0.detach()")


def test_cpu_tensor_for_cuda_and_cuda_missing_are_explained() -> None:
    reason = fused_reasons("mala", gaussian2(), X)["cuda"]
    assert reason is not None
    assert any(s in reason for s in ("no CUDA GPU", "cannot be imported", "no usable GPU",
                                     "runs CUDA tensors"))
    expect(fused("mala", step_size=0.1), gaussian2(), X, "cuda", reason)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_unsupported_dtype(dtype: torch.dtype) -> None:
    energy = gaussian2().to(dtype)
    reasons = fused_reasons("langevin", energy, X.to(dtype))
    assert f"dtype {dtype}" in reasons["numba"] and "float32 or float64" in reasons["numba"]


def test_event_size_mismatch_with_the_face() -> None:
    energy = CustomFace(NumbaFace(gaussian_energy, gaussian_grad, std_params(3), dim=3))
    expect(fused("langevin", step_size=0.1), energy, X, "numba", "expects points of 3",
           "x0 has 2 per chain")


def test_params_not_representable() -> None:
    p = std_params()
    p[1] = np.nan
    energy = CustomFace(NumbaFace(gaussian_energy, gaussian_grad, p, dim=2))
    expect(fused("langevin", step_size=0.1), energy, X, "numba", "not representable",
           "finite float64")


def test_face_that_is_not_a_numbaface_and_face_that_raises() -> None:
    assert "must return ebmcore.NumbaFace" in fused_reasons(
        "mala", CustomFace(("not", "a face")), X)["numba"]

    class Raising(Neural):
        def numba_face(self) -> NumbaFace:
            raise RuntimeError("boom")

    assert "numba_face() failed: RuntimeError: boom" in fused_reasons("mala", Raising(), X)["numba"]


def test_hmc_dense_mass_and_mass_adaptation_are_refused() -> None:
    dense = fused("hmc", step_size=0.1, mass=[[2.0, 0.5], [0.5, 1.0]])
    expect(dense, gaussian2(), X, "numba", "diagonal mass only")
    adapting = fused("hmc", step_size=0.1, adapt_mass="diag")
    # mass adaptation acts during burn-in: refused with one, not without
    expect(adapting, gaussian2(), X, "numba", "adapt_mass=None", burn_in=2)
    assert adapting.sample(gaussian2(), X, 2, backend="numba").diagnostics["backend"] == "numba"


def test_unknown_method_has_no_kernel() -> None:
    reasons = fused_reasons("nuts", gaussian2(), X)
    assert "no fused kernel for 'nuts'" in reasons["numba"] and reasons["cuda"] == reasons["numba"]


def test_a_face_numba_cannot_compile_gives_a_clear_error() -> None:
    lookup = {"scale": 1.0}

    def bad_grad(x, p, out):  # a dict of Python objects captured as a global: not numba code
        for i in range(2):
            out[i] = x[i] * lookup["scale"]

    energy = CustomFace(NumbaFace(gaussian_energy, bad_grad, std_params(), dim=2))
    with pytest.raises(BackendUnavailableError, match="failed to compile for backend='numba'"):
        fused("langevin", step_size=0.1).sample(energy, X, 2, backend="numba",
                                                generator=torch.Generator())


def test_run_fused_refuses_wrong_devices_and_grads_itself() -> None:
    face = gaussian2().numba_face()
    kw = dict(n_steps=1, burn_in=0, thin=1, params={"step_size": 0.1},
              generator=torch.Generator(), return_trajectory=False)
    with pytest.raises(BackendUnavailableError, match="requires grad"):
        dispatch.run_fused("langevin", "numba", face, X.clone().requires_grad_(True), **kw)
    with pytest.raises(ValueError, match="backend must be one of numba, cuda"):
        dispatch.run_fused("langevin", "torch", face, X, **kw)
    if not dispatch.simulated():
        with pytest.raises(BackendUnavailableError, match="runs CUDA tensors"):
            dispatch.run_fused("langevin", "cuda", face, X, **kw)


def test_auto_is_torch_without_a_face_and_never_cuda_for_cpu_tensors() -> None:
    assert auto_backend("langevin", Neural(), X) == "torch"
    assert auto_backend("nuts", gaussian2(), X) == "torch"
    assert auto_backend("langevin", gaussian2(), X) in ("torch", "numba")


def test_auto_follows_the_measured_rule() -> None:
    # See dispatch.auto_backend for the measurements behind each branch.
    x = torch.zeros(100_000, 2)
    well = ebmcore.create("energy", "double_well")
    means = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mixture = ebmcore.create("energy", "gaussian_mixture", means=means)
    # Cheap energy, float32, many chains: torch's vectorised RNG wins.
    assert auto_backend("langevin", well, x) == "torch"
    # torch's float64 randn is not vectorised: the fused kernel wins.
    assert auto_backend("langevin", well, x.double()) == "numba"
    # A heavy energy in few dimensions: the fused kernel wins whatever the dtype.
    assert auto_backend("langevin", mixture, x) == "numba"
    # Few chains: torch's fixed cost per step dominates.
    assert auto_backend("langevin", well, x[:100]) == "numba"
    # Deterministic: the same inputs give the same choice.
    assert {auto_backend("mala", well, x) for _ in range(3)} == {"torch"}


def dense_gaussian(d: int) -> Energy:
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(d), dtype=torch.float64)
    return ebmcore.create("energy", "gaussian", mean=torch.zeros(d, dtype=torch.float64),
                          cov=a @ a.T / d + 0.5 * torch.eye(d, dtype=torch.float64))


def test_auto_sends_costly_faces_with_many_chains_to_torch() -> None:
    # Issue #13: the old rule sent every face packing >= 8 parameters per coordinate to the
    # fused kernel, which was up to 10x slower on dense Gaussians and 32-D mixtures.
    dense = dense_gaussian(100)
    assert dense.numba_face().dense and dense.numba_face().cost > 10_000
    x = torch.zeros(10_000, 100)
    assert auto_backend("langevin", dense, x) == "torch"
    assert auto_backend("hmc", dense, x[:100]) == "torch"        # 100 x (100 + 10201/16)
    assert auto_backend("mala", dense_gaussian(32), x[:100, :32]) == "numba"  # = 10,000
    assert auto_backend("mala", dense_gaussian(32), x[:1000, :32]) == "torch"
    # float64: dense faces fused, others up to FLOAT64_FUSED_COST multiply-adds.
    assert auto_backend("langevin", dense, x.double()) == "numba"
    mix32 = ebmcore.create("energy", "gaussian_mixture",
                           means=torch.randn(8, 32, generator=torch.Generator().manual_seed(1),
                                             dtype=torch.float64))
    assert mix32.numba_face().cost == 2 * 8 * 32 * 33
    assert auto_backend("langevin", mix32, torch.zeros(100, 32, dtype=torch.float64)) == "torch"
    # A heavy face in more than HEAVY_LOW_DIM dimensions follows the batch rule.
    assert auto_backend("langevin", mix32, torch.zeros(100, 32)) == "torch"


def test_the_cuda_rule_keeps_costly_dense_faces_on_torch() -> None:
    # The rule itself, checked without a GPU (auto_backend reaches it for CUDA tensors).
    well = ebmcore.create("energy", "double_well").numba_face()
    assert dispatch.measured_choice(well, 1_000_000, torch.float32, "cuda") == "cuda"
    assert dispatch.measured_choice(dense_gaussian(2).numba_face(), 10**6, torch.float32,
                                    "cuda") == "cuda"
    assert dispatch.measured_choice(dense_gaussian(100).numba_face(), 100_000, torch.float32,
                                    "cuda") == "torch"


def test_a_face_cost_must_be_a_positive_integer() -> None:
    face = NumbaFace(gaussian_energy, gaussian_grad, std_params(), dim=2)
    assert face.cost == std_params().size and not face.dense
    assert NumbaFace(gaussian_energy, gaussian_grad, std_params(), dim=2, cost=40).cost == 40
    for bad in (0, -3, 2.5, True, "10"):
        with pytest.raises(ValueError, match="cost must be a positive integer"):
            NumbaFace(gaussian_energy, gaussian_grad, std_params(), dim=2, cost=bad)


def test_auto_is_reported_in_the_diagnostics() -> None:
    energy = gaussian2()
    sampler = fused("mala", step_size=0.3)
    res = sampler.sample(energy, X, 3, backend="auto", generator=torch.Generator().manual_seed(0))
    assert res.diagnostics["backend"] == auto_backend("mala", energy, X,
                                                      sampler._fused_params()[1])
    assert res.diagnostics["backend_requested"] == "auto"


ROW_STACK = AttributeError("module 'numpy' has no attribute 'row_stack'")


def _broken_cuda_toolchain(monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """Make the cuda backend look usable, then fail the way numba-cuda 0.30.4 does on NumPy 2.5.

    ``where`` is ``"compile"`` (building the kernel) or ``"launch"`` (numba.cuda compiles
    lazily, at the first launch). Runs on CPU tensors without the simulator: the cuda
    backend is told the tensors may run (as under the simulator) and never reaches a kernel.
    """
    from ebmcore_samplers.kernels import cuda as cuda_source
    from ebmcore_samplers.kernels import factory

    def fail(*args: object, **kwargs: object) -> None:
        raise ROW_STACK

    monkeypatch.setattr(dispatch, "simulated", lambda: True)
    monkeypatch.setattr(dispatch, "cuda_reason", lambda: None)
    if where == "compile":
        monkeypatch.setattr(factory, "cuda_kernel", fail)
    else:
        monkeypatch.setattr(factory, "cuda_kernel", lambda *args: object())
        monkeypatch.setattr(cuda_source, "launch", fail)


@pytest.mark.parametrize("where", ["compile", "launch"])
def test_a_cuda_toolchain_that_cannot_compile_names_the_cause_and_fix(
        monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    _broken_cuda_toolchain(monkeypatch, where)
    with pytest.raises(BackendUnavailableError) as info:
        fused("langevin", step_size=0.1).sample(gaussian2(), X, 2, backend="cuda",
                                                generator=torch.Generator())
    msg = str(info.value)
    assert "cuda backend cannot import or compile with numba-cuda" in msg
    assert "row_stack" in msg and "numpy<2.5" in msg
    assert isinstance(info.value.__cause__, AttributeError)


@pytest.mark.parametrize("method", ["langevin", "mala", "hmc"])
def test_auto_falls_back_to_torch_when_the_cuda_toolchain_cannot_compile(
        monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    from ebmcore_samplers.kernels.backend import CudaBackend, NumbaBackend

    sampler = fused(method, step_size=0.1)
    energy = gaussian2()
    want = sampler.sample(energy, X, 3, backend="torch",
                          generator=torch.Generator().manual_seed(5))
    _broken_cuda_toolchain(monkeypatch, "launch")
    # The rule picks cuda, as it does for CUDA tensors.
    monkeypatch.setattr(CudaBackend, "rule_picks", lambda *args: True)
    monkeypatch.setattr(NumbaBackend, "rule_picks", lambda *args: False)
    res = sampler.sample(energy, X, 3, backend="auto", generator=torch.Generator().manual_seed(5))
    assert res.diagnostics["backend"] == "torch"
    assert res.diagnostics["backend_requested"] == "auto"
    why = res.diagnostics["backend_fallback"]
    assert "backend 'cuda' could not run" in why and "row_stack" in why and "numpy<2.5" in why
    # The fused attempt's seed draw is undone: the same bits as backend='torch'.
    assert torch.equal(res.samples, want.samples)


def test_an_import_failure_other_than_a_missing_module_names_the_toolchain_fix(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def importer(name: str, *args: object, **kwargs: object) -> object:
        if name == "numba" and args and args[2] and "cuda" in args[2]:
            raise ROW_STACK
        return real_import(name, *args, **kwargs)

    dispatch.cuda_reason.cache_clear()
    monkeypatch.setattr(builtins, "__import__", importer)
    try:
        why = dispatch.cuda_reason()
    finally:
        monkeypatch.undo()
        dispatch.cuda_reason.cache_clear()
    assert why is not None and "row_stack" in why and "numpy<2.5" in why
