"""The neural energies trace whole under ``torch.compile`` (no graph breaks) on the CPU."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

import ebmcore


def _dynamo_supported() -> bool:
    try:
        import torch._dynamo as dynamo
    except Exception:  # pragma: no cover - platform without dynamo
        return False
    return hasattr(torch, "compile") and dynamo.is_dynamo_supported()


pytestmark = pytest.mark.skipif(not _dynamo_supported(),
                                reason="torch.compile (dynamo) is not supported on this platform")

# Spectral norm runs a power iteration (an in-place buffer update) in training mode only,
# so it is traced in both modes; without it the two modes are the same graph.
CASES = [
    ("mlp", {"dim": 2, "hidden": [16, 16]}, (2,), False),
    ("mlp", {"dim": 2, "hidden": [16, 16], "spectral_norm": True}, (2,), False),
    ("mlp", {"dim": 2, "hidden": [16, 16], "spectral_norm": True}, (2,), True),
    ("conv", {"channels": [4, 8]}, (1, 28, 28), False),
    ("conv", {"channels": [4, 8], "in_channels": 3, "image_size": 32, "spectral_norm": True},
     (3, 32, 32), True),
]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    import torch._dynamo as dynamo

    dynamo.reset()
    yield
    dynamo.reset()


@pytest.mark.parametrize("name, params, shape, train", CASES)
def test_fullgraph_trace_matches_eager_forward_and_gradient(name, params, shape, train):
    torch.manual_seed(0)
    eager = ebmcore.create("model", name, **params).train(train)
    twin = ebmcore.create("model", name, **params).train(train)
    twin.load_state_dict(eager.state_dict())
    # aot_eager runs dynamo and AOT autograd without a C++ toolchain; fullgraph=True makes
    # any graph break (data-dependent Python control flow) an error.
    compiled = torch.compile(twin, fullgraph=True, backend="aot_eager")
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(1))
    x_ = x.clone().requires_grad_()
    e = compiled(x_)
    (g,) = torch.autograd.grad(e.sum(), x_)
    e_ref, g_ref = eager.energy_and_grad(x)
    torch.testing.assert_close(e.detach(), e_ref)
    torch.testing.assert_close(g, g_ref)
    for key, value in eager.state_dict().items():  # spectral-norm state advanced alike
        torch.testing.assert_close(twin.state_dict()[key], value)


def test_compiled_model_rejects_wrong_shape():
    model = ebmcore.create("model", "mlp", dim=3, hidden=[8])
    compiled = torch.compile(model, backend="aot_eager")
    compiled(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"event shape \(3,\)"):
        compiled(torch.zeros(2, 4))
    # fullgraph=True forbids raising inside the graph, so dynamo wraps our message in its own
    # error; the right-shape path above stays one graph either way.
    strict = torch.compile(model, fullgraph=True, backend="aot_eager")
    with pytest.raises(Exception, match=r"event shape \(3,\)"):  # noqa: B017 - dynamo's type
        strict(torch.zeros(2, 5))


def _have_cxx() -> bool:
    return any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "clang++"))


@pytest.mark.slow
@pytest.mark.skipif(not _have_cxx(), reason="inductor needs a C++ compiler on the CPU")
def test_inductor_compiles_mlp_forward():
    torch.manual_seed(0)
    model = ebmcore.create("model", "mlp", dim=2, hidden=[16, 16]).eval()
    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))
