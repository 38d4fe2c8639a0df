"""Write a new plugin distribution: one documented component per kind, its entry point, tests.

The component modules and tests are template files shipped beside this module
(``templates/*.tmpl``, ``string.Template`` syntax); the root module, ``pyproject.toml`` and
README are assembled here because they list the chosen kinds.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ebmcore.component import KINDS, normalize_name

_SLUG = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class KindTemplate:
    """What the scaffold writes for one component kind.

    Attributes:
        hook: The hook the root module implements (see :mod:`ebmcore.hookspecs`).
        cls: The class in the component's module.
        suffix: The component name is ``<plugin>_<suffix>``.
        summary: The component's one-line summary.
    """

    hook: str
    cls: str
    suffix: str
    summary: str


#: The component the scaffold writes for each kind, in :data:`ebmcore.KINDS` order.
KIND_TEMPLATES: dict[str, KindTemplate] = {
    "energy": KindTemplate("ebmcore_energies", "GaussianWell", "well",
                           "Isotropic Gaussian well: closed-form gradient, log Z, exact samples."),
    "sampler": KindTemplate("ebmcore_samplers", "MetropolisAdjustedLangevin", "mala",
                            "Metropolis-adjusted Langevin (MALA) with a cached gradient."),
    "loss": KindTemplate("ebmcore_losses", "DenoisingLoss", "dsm",
                         "Denoising score matching at one noise level."),
    "model": KindTemplate("ebmcore_models", "WalledMLP", "mlp",
                          "Small MLP energy inside a fixed quadratic wall."),
    "dataset": KindTemplate("ebmcore_datasets", "Banana", "banana",
                            "Banana-shaped 2-D density with exact log_prob and evaluation box."),
    "interpolant": KindTemplate("ebmcore_interpolants", "PowerPath", "power",
                                "Power path: alpha = t^p, sigma = 1 - t^p (linear for p = 1)."),
    "coupling": KindTemplate("ebmcore_couplings", "GreedyCoupling", "greedy",
                             "Greedy nearest-neighbour pairing, a cheap minibatch-OT stand-in."),
    "integrator": KindTemplate("ebmcore_integrators", "Ralston", "ralston",
                               "Ralston's second-order Runge-Kutta method, two evaluations."),
}

#: The kinds the scaffold can write, in :data:`ebmcore.KINDS` order.
SCAFFOLD_KINDS: tuple[str, ...] = tuple(k for k in KINDS if k in KIND_TEMPLATES)

#: What a generated data set's recipe names for a kind the plugin does not bring: built-ins.
_BUILTIN_FALLBACK = {
    "model": {"name": "mlp", "params": {}},
    "loss": {"name": "pcd", "params": {}},
    "sampler": {"name": "langevin", "params": {"step_size": 0.01}},
}


@dataclass(frozen=True)
class PluginNames:
    """The names a plugin called ``name`` gets.

    Attributes:
        plugin: The entry-point name users type before the colon in ``plugin:name``.
        distribution: The distribution (what ``pip install`` takes): ``ebmcore-<plugin>``.
        package: The import package: ``ebmcore_<plugin>``.
    """

    plugin: str
    distribution: str
    package: str

    @classmethod
    def from_name(cls, name: str) -> PluginNames:
        """Derive the names from ``name`` (``"toy"``, ``"ebmcore-toy"`` and ``"Toy"`` agree).

        Raises:
            ValueError: When ``name`` is not letters, digits, ``-`` and ``_`` starting with
                a letter.
        """
        if not isinstance(name, str):
            raise TypeError(f"name must be a string, got {type(name).__name__}")
        slug = normalize_name(name)
        if slug.startswith("ebmcore_"):
            slug = slug[len("ebmcore_"):]
        if not _SLUG.match(slug):
            raise ValueError(f"name must be letters, digits, '-' or '_' starting with a letter "
                             f"(an optional 'ebmcore-' prefix is dropped), got {name!r}")
        return cls(plugin=slug, distribution="ebmcore-" + slug.replace("_", "-"),
                   package="ebmcore_" + slug)

    def component(self, kind: str) -> str:
        """The name of the component the scaffold writes for ``kind``."""
        return f"{self.plugin}_{KIND_TEMPLATES[kind].suffix}"


def parse_kinds(kinds: str | Iterable[str] | None) -> tuple[str, ...]:
    """Return the kinds asked for, in :data:`ebmcore.KINDS` order, from a comma-separated
    string or an iterable; ``None`` means every kind in :data:`SCAFFOLD_KINDS`.

    Raises:
        ValueError: When a kind is unknown, has no template, or none is given.
    """
    if kinds is None:
        return SCAFFOLD_KINDS
    items = kinds.split(",") if isinstance(kinds, str) else list(kinds)
    asked = {normalize_name(str(k)) for k in items if str(k).strip()}
    unknown = sorted(asked - set(KINDS))
    if unknown:
        raise ValueError(f"kinds: unknown kind(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(SCAFFOLD_KINDS)}")
    untemplated = sorted(asked - set(SCAFFOLD_KINDS))
    if untemplated:
        raise ValueError(f"kinds: no template for {', '.join(untemplated)} (write it by hand, "
                         f"see docs/writing-a-plugin.md); choose from "
                         f"{', '.join(SCAFFOLD_KINDS)}")
    if not asked:
        raise ValueError(f"kinds must name at least one of {', '.join(SCAFFOLD_KINDS)}")
    return tuple(k for k in KINDS if k in asked)


def write_plugin(name: str, *, kinds: str | Iterable[str] | None = None,
                 directory: str | Path = ".", overwrite: bool = False) -> Path:
    """Write a working plugin distribution and return its project directory.

    The project, ``directory/ebmcore-<name>``, holds ``pyproject.toml`` (with the ``ebmcore``
    entry point), ``src/ebmcore_<name>/`` (a light root module registering one documented
    component per kind by lazy ``"module:attr"`` targets, and one module per component), a
    README and ``tests/`` that use :mod:`ebmcore.testing`. Installed, it passes its own tests,
    and when it has a data set, ``ebmcore train --dataset <name>_banana`` trains on it.

    Args:
        name: The plugin's name (see :class:`PluginNames`).
        kinds: The component kinds to write (default: all of :data:`SCAFFOLD_KINDS`).
        directory: Where the project directory is created.
        overwrite: Write into an existing non-empty project directory.

    Raises:
        FileExistsError: When the project directory exists, is not empty and ``overwrite``
            is false.
    """
    names = PluginNames.from_name(name)
    chosen = parse_kinds(kinds)
    project = Path(directory) / names.distribution
    if project.exists() and any(project.iterdir()) and not overwrite:
        raise FileExistsError(f"{project} exists and is not empty; choose another directory "
                              f"or pass overwrite=True to write into it")
    for path, text in render_plugin(names, chosen).items():
        target = project / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return project


def render_plugin(names: PluginNames, kinds: Sequence[str]) -> dict[str, str]:
    """Return every file of the plugin, relative path -> text, without writing anything."""
    values = _values(names)
    src = f"src/{names.package}"
    files = {
        "pyproject.toml": _pyproject(names),
        "README.md": _readme(names, kinds),
        f"{src}/__init__.py": _root_module(names, kinds),
        "tests/conftest.py": _template("conftest.py", values),
    }
    for kind in kinds:
        files[f"{src}/{kind}.py"] = _template(f"{kind}.py", values)
        files[f"tests/test_{kind}.py"] = _template(f"test_{kind}.py", values)
    files["tests/test_plugin.py"] = _plugin_test(names, kinds)
    return files


# -- assembling ------------------------------------------------------------------------------

def _values(names: PluginNames) -> dict[str, str]:
    values = {"plugin": names.plugin, "package": names.package,
              "distribution": names.distribution}
    for kind in KIND_TEMPLATES:
        values[f"{kind}_name"] = names.component(kind)
    return values


def _template(name: str, values: dict[str, str]) -> str:
    text = resources.files("ebmcore.scaffold").joinpath("templates", name + ".tmpl").read_text(
        encoding="utf-8")
    return string.Template(text).substitute(values)


def _pyproject(names: PluginNames) -> str:
    return _template("pyproject.toml", _values(names))


def _recipe(names: PluginNames, kinds: Sequence[str]) -> dict[str, Any]:
    recipe: dict[str, Any] = {}
    for kind, fallback in _BUILTIN_FALLBACK.items():
        recipe[kind] = ({"name": names.component(kind), "params": {}} if kind in kinds
                        else fallback)
    if "sampler" in kinds:
        recipe["sampler"]["params"] = {"step_size": 0.05}
    if "loss" in kinds:
        recipe["loss"]["params"] = {"sigma": 0.1}
        recipe["train"] = {"lr": 1e-3}
    return recipe


def _literal(value: Any) -> str:
    """Python source for ``value``: a recipe holds only strings, numbers, lists and dicts, for
    which JSON's text (double quotes, as the generated code is written) is Python's too."""
    return json.dumps(value)


def _component_call(names: PluginNames, kind: str, kinds: Sequence[str]) -> str:
    spec = KIND_TEMPLATES[kind]
    lines = ["        ebmcore.Component(",
             f"            {_literal(names.component(kind))},",
             f"            {_literal(f'{names.package}.{kind}:{spec.cls}')},",
             f"            {_literal(spec.summary)},"]
    if kind == "model":
        lines.append("            data_shape=\"dim\",  # a run passes the data's flat size as dim=")
    if kind == "dataset":
        lines.append("            # what `ebmcore train --dataset NAME` starts from")
        lines.append("            recipe={")
        for section, value in _recipe(names, kinds).items():
            lines.append(f"                {_literal(section)}: {_literal(value)},")
        lines.append("            },")
    lines.append("        ),")
    return "\n".join(lines)


def _root_module(names: PluginNames, kinds: Sequence[str]) -> str:
    hooks = []
    for kind in kinds:
        spec = KIND_TEMPLATES[kind]
        hooks.append(
            f"@ebmcore.hookimpl\n"
            f"def {spec.hook}() -> list[ebmcore.Component]:\n"
            f"    \"\"\"Return the {kind} components this plugin contributes.\"\"\"\n"
            f"    return [\n{_component_call(names, kind, kinds)}\n    ]\n")
    values = {**_values(names), "hooks": "\n\n".join(hooks)}
    return _template("__init__.py", values)


def _readme(names: PluginNames, kinds: Sequence[str]) -> str:
    rows = "\n".join(f"| {kind} | `{names.component(kind)}` | `{KIND_TEMPLATES[kind].cls}` | "
                     f"{KIND_TEMPLATES[kind].summary} |" for kind in kinds)
    train = ""
    if "dataset" in kinds:
        train = (f"\nTrain on its data set with what its recipe names:\n\n```bash\n"
                 f"ebmcore train --dataset {names.component('dataset')} --set train.steps=200\n"
                 f"```\n")
    values = {**_values(names), "rows": rows, "train": train}
    return _template("README.md", values)


def _plugin_test(names: PluginNames, kinds: Sequence[str]) -> str:
    expected = ",\n".join(f"        ({kind!r}, {names.component(kind)!r})" for kind in kinds)
    return _template("test_plugin.py", {**_values(names), "expected": expected})
