"""``import ebmcore`` must stay light: no numba, no torch, no entry-point scan."""

import subprocess
import sys


def run_python(code: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, text=True,
                          check=True)


def test_import_scans_nothing_and_imports_no_numba_or_torch():
    out = run_python(
        "import sys, ebmcore, ebmcore.registry as r;"
        "print(r.get_registry()._discovered, 'numba' in sys.modules, 'torch' in sys.modules)"
    ).stdout.split()
    assert out == ["False", "False", "False"]


def test_importtime_shows_no_numba():
    modules = [line.split("|")[-1].strip()
               for line in run_python("import ebmcore", "-X", "importtime").stderr.splitlines()]
    assert "ebmcore" in modules
    assert not [m for m in modules if m.startswith(("numba", "torch", "importlib_metadata"))]


def test_listing_components_imports_no_numba():
    out = run_python(
        "import sys, ebmcore; ebmcore.names('sampler'); ebmcore.plugins();"
        "print('numba' in sys.modules)"
    ).stdout.strip()
    assert out == "False"


def test_contracts_load_lazily():
    out = run_python(
        "import ebmcore, torch; print(issubclass(ebmcore.Energy, torch.nn.Module))"
    ).stdout.strip()
    assert out == "True"
