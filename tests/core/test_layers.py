"""The core's layer rules, read from its source (no import needed):

- ``ebmcore/`` imports no ``ebmcore_*`` plugin package, statically or by ``import_module``;
- it creates no component by a literal name (``create("sampler", "mala")``): the user names
  components, the core takes what it needs from itself;
- it probes no plugin object with ``getattr``/``hasattr``: optional capabilities are declared
  on the contracts. The few ``getattr`` uses on objects that are not plugin components are
  listed in :data:`ALLOWED_PROBES`, each with its reason.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "ebmcore"

#: ``(file pattern, receiver pattern, attribute pattern, why)``: a ``getattr``/``hasattr``
#: call in a matching file whose first argument's source matches ``receiver`` and whose
#: second argument's source matches ``attribute`` is not a probe of a plugin object.
ALLOWED_PROBES: list[tuple[str, str, str, str]] = [
    ("ebmcore/cli/*.py", r"args", r".*", "argparse namespaces"),
    ("*", r"os", r".*", "the os module's platform-dependent features"),
    ("*", r"importlib\.import_module\(.*\)", r".*",
     "module objects: lazy top-level names and deprecation shims"),
    ("ebmcore/component.py", r"obj", r"part", "walking a 'module:attr' target's dotted path"),
    ("ebmcore/registry.py", r"ep|dist", r".*", "entry-point and distribution metadata"),
    ("ebmcore/registry.py", r"plugin", r"'EBMCORE_PLUGIN_API'|'__name__'",
     "a plugin module's API-version constant (documented in hookspecs) and its name"),
    ("ebmcore/registry.py", r"target|p\.annotation", r"'__qualname__'|'__name__'",
     "naming a callable or an annotation for display"),
    ("ebmcore/registry.py", r"self\._pm\.hook", r"hook_name", "pluggy's hook relay"),
    ("ebmcore/checkpoint.py", r"model", r"'_orig_mod'", "torch.compile's wrapper module"),
    ("ebmcore/progress.py", r"self\.stream", r"'isatty'", "a text stream"),
    ("ebmcore/launch.py", r"exc", r"'failures'", "torch.distributed's ChildFailedError"),
    ("ebmcore/training/loss_state.py", r"loss", r"name",
     "the int attributes a loss itself lists in its declared chain_counts"),
    ("ebmcore/testing/loss_checks.py", r"loss", r"attr",
     "the conformance kit checking the attributes a loss lists in its chain_counts"),
]

#: A registry lookup: ``create``/``get`` bare or on ``ebmcore``, a registry or the registry.
_REGISTRY_CALL = re.compile(r"((ebmcore|registry|_active|self|get_registry\(\))\.)?(create|get)")

#: The kinds a literal ``create``/``get`` call would name (plurals included).
_KINDS = {"energy", "sampler", "loss", "model", "dataset", "backend",
          "interpolant", "coupling", "integrator",
          "energies", "samplers", "losses", "models", "datasets", "backends",
          "interpolants", "couplings", "integrators"}


def _sources() -> list[tuple[str, ast.Module]]:
    return [(f"ebmcore/{path.relative_to(CORE).as_posix()}", ast.parse(path.read_text("utf-8")))
            for path in sorted(CORE.rglob("*.py"))]


def _plugin_imports(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("ebmcore_")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ebmcore_"):
            found.append(node.module)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) \
                and node.args[0].value.startswith("ebmcore_") \
                and ast.unparse(node.func).endswith(("import_module", "__import__")):
            found.append(node.args[0].value)
    return found


def test_the_core_imports_no_plugin_package():
    offenders = {name: found for name, tree in _sources() if (found := _plugin_imports(tree))}
    assert offenders == {}


def test_the_scan_finds_a_plugin_import_where_there_is_one():
    tree = ast.parse("import ebmcore_models\nfrom ebmcore_losses.nce import X\n"
                     "importlib.import_module('ebmcore_samplers.mala')\nimport ebmcore.sampler\n")
    assert _plugin_imports(tree) == ["ebmcore_models", "ebmcore_losses.nce",
                                     "ebmcore_samplers.mala"]


def _literal_creations(tree: ast.Module) -> list[str]:
    """Calls ``create(kind, "name")`` / ``get(kind, "name")`` with a literal component name."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and len(node.args) >= 2 \
                and _REGISTRY_CALL.fullmatch(ast.unparse(node.func)) \
                and all(isinstance(a, ast.Constant) and isinstance(a.value, str)
                        for a in node.args[:2]) and node.args[0].value in _KINDS:
            found.append(ast.unparse(node)[:80])
    return found


def test_the_literal_scan_finds_a_creation_by_name_and_skips_dict_lookups():
    tree = ast.parse("ebmcore.create('sampler', 'mala', step_size=0.1)\n"
                     "config.get('device', 'cpu')\ncreate('energy', name)\n")
    assert _literal_creations(tree) == ["ebmcore.create('sampler', 'mala', step_size=0.1)"]


def test_the_core_creates_no_component_by_a_literal_name():
    offenders = {name: found for name, tree in _sources() if (found := _literal_creations(tree))}
    assert offenders == {}


def _probes(name: str, tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr") and len(node.args) >= 2):
            continue
        receiver, attribute = ast.unparse(node.args[0]), ast.unparse(node.args[1])
        allowed = any(fnmatch.fnmatch(name, pattern) and re.fullmatch(who, receiver)
                      and re.fullmatch(what, attribute)
                      for pattern, who, what, _ in ALLOWED_PROBES)
        if not allowed:
            found.append(f"line {node.lineno}: {node.func.id}({receiver}, {attribute})")
    return found


def test_the_core_probes_no_plugin_object_with_getattr():
    offenders = {name: found for name, tree in _sources() if (found := _probes(name, tree))}
    assert offenders == {}


def test_the_probe_scan_flags_a_probe_and_respects_the_allow_list():
    probe = ast.parse("f = getattr(model, 'fit_confinement', None)\nhasattr(loss, 'buffer')\n")
    assert _probes("ebmcore/train.py", probe) == [
        "line 1: getattr(model, 'fit_confinement')", "line 2: hasattr(loss, 'buffer')"]
    namespace = ast.parse("getattr(args, 'dataset', None)\n")
    assert _probes("ebmcore/cli/train.py", namespace) == []
    assert _probes("ebmcore/train.py", namespace) == ["line 1: getattr(args, 'dataset')"]
