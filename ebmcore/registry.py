"""Plugin discovery and component lookup.

The registry finds plugins through the ``ebmcore`` entry-point group the first time anything
is looked up (never at import), loads each in its own ``try`` so one broken plugin cannot break
the host, collects the :class:`~ebmcore.Component` descriptors each returns, and resolves names.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import inspect
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pluggy

from ebmcore import hookspecs
from ebmcore.component import KINDS, Component, normalize_name
from ebmcore.errors import (  # InvalidParametersError: importable from here, as before
    AmbiguousComponentError,
    InvalidParametersError,
    PluginLoadError,
    UnknownComponentError,
    UnknownKindError,
)

#: Major version of the plugin API. A plugin declaring ``EBMCORE_PLUGIN_API`` with another
#: major version is marked ``incompatible`` and not loaded.
PLUGIN_API_VERSION = 1

ENTRY_POINT_GROUP = "ebmcore"
BUILTIN_DISTRIBUTION = "ebmcore"

ENV_DISABLE_AUTOLOAD = "EBMCORE_DISABLE_PLUGIN_AUTOLOAD"
ENV_ALLOW = "EBMCORE_PLUGINS"
ENV_BLOCK = "EBMCORE_DISABLED_PLUGINS"
ENV_STRICT = "EBMCORE_STRICT_PLUGINS"

_KIND_ALIASES = {"energies": "energy", "samplers": "sampler", "losses": "loss",
                 "models": "model", "datasets": "dataset", "backends": "backend",
                 "interpolants": "interpolant", "couplings": "coupling",
                 "integrators": "integrator"}
_PLURALS = {v: k for k, v in _KIND_ALIASES.items()}


@dataclass
class PluginRecord:
    """What the registry knows about one plugin.

    Attributes:
        name: The entry-point name (or the name given to :meth:`Registry.register`).
        distribution: The installed distribution that provides it, if any.
        version: That distribution's version.
        builtin: Whether it ships inside the ``ebmcore`` distribution.
        status: ``active``, ``failed``, ``blocked``, ``disabled`` or ``incompatible``.
        error: Why the plugin is not active, when it is not.
        components: Component names by kind.
        replaces: ``kind:name`` of each built-in component this plugin replaces.
        notes: Name clashes and other things a user should know.
    """

    name: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    status: str = "active"
    error: str | None = None
    components: dict[str, list[str]] = field(default_factory=dict)
    replaces: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the record as plain JSON-ready data."""
        return asdict(self)


@dataclass
class _Provided:
    """One component as one plugin provides it."""

    kind: str
    component: Component
    plugin: PluginRecord
    resolved: Any = None
    is_resolved: bool = False


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def _env_list(name: str) -> set[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return {normalize_name(part) for part in raw.split(",") if part.strip()}


def normalize_kind(kind: str) -> str:
    """Return the canonical kind for ``kind`` (plurals accepted) or raise UnknownKindError."""
    key = normalize_name(str(kind))
    key = _KIND_ALIASES.get(key, key)
    if key not in KINDS:
        close = difflib.get_close_matches(key, [*KINDS, *_KIND_ALIASES], n=1, cutoff=0.6)
        hint = f" Did you mean {_KIND_ALIASES.get(close[0], close[0])!r}?" if close else ""
        raise UnknownKindError(
            f"Unknown component kind {kind!r}.{hint} Expected one of: {', '.join(KINDS)}."
        )
    return key


def _iter_entry_points() -> list[Any]:
    try:
        import importlib_metadata as metadata  # de-duplicates distributions on sys.path
    except ImportError:  # pragma: no cover - the backport is a dependency before 3.12
        from importlib import metadata
    seen: set[tuple[str, str]] = set()
    found = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        key = (ep.name, ep.value)
        if key not in seen:
            seen.add(key)
            found.append(ep)
    return found


class Registry:
    """A set of plugins and the components they provide.

    Args:
        entry_points: Discover plugins from installed entry points on first use. An isolated
            registry (``entry_points=False``) starts empty; add plugins with :meth:`register`.
    """

    def __init__(self, *, entry_points: bool = True) -> None:
        self._use_entry_points = entry_points
        self._lock = threading.RLock()
        self._discovered = False
        self._plugins: dict[str, PluginRecord] = {}
        self._provided: dict[str, dict[str, list[_Provided]]] = {k: {} for k in KINDS}
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)

    # -- discovery -------------------------------------------------------------------------

    def _ensure_discovered(self) -> None:
        if self._discovered:
            return
        with self._lock:
            if self._discovered:
                return
            if self._use_entry_points:
                self._discover_entry_points()
            self._annotate_clashes()
            self._discovered = True

    def _discover_entry_points(self) -> None:
        strict = _env_flag(ENV_STRICT)
        autoload = not _env_flag(ENV_DISABLE_AUTOLOAD)
        allowed = _env_list(ENV_ALLOW)
        blocked = _env_list(ENV_BLOCK) or set()
        for ep in _iter_entry_points():
            dist = getattr(ep, "dist", None)
            dist_name = getattr(dist, "name", None)
            record = PluginRecord(
                name=ep.name,
                distribution=dist_name,
                version=getattr(dist, "version", None),
                builtin=dist_name is not None
                and normalize_name(dist_name) == BUILTIN_DISTRIBUTION,
            )
            key = normalize_name(ep.name)
            if key in blocked:
                record.status, record.error = "blocked", f"listed in {ENV_BLOCK}"
            elif not record.builtin and not autoload:
                record.status, record.error = "disabled", f"{ENV_DISABLE_AUTOLOAD} is set"
            elif not record.builtin and allowed is not None and key not in allowed:
                record.status, record.error = "disabled", f"not listed in {ENV_ALLOW}"
            if record.status != "active":
                self._add_record(record)
                continue
            clash = self._name_clash(record)
            if clash is not None:
                self._fail(record, clash, None, strict)
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # any import-time failure stays inside the plugin
                self._fail(record, f"import failed: {type(exc).__name__}: {exc}", exc, strict)
                continue
            self._load(plugin, record, strict)

    def _add_record(self, record: PluginRecord) -> None:
        key, n = record.name, 1
        while key in self._plugins:  # a duplicate name was already marked failed
            n += 1
            key = f"{record.name}#{n}"
        self._plugins[key] = record

    def _name_clash(self, record: PluginRecord) -> str | None:
        """Return why ``record`` cannot load when an active plugin already has its name."""
        for other in self._plugins.values():
            if other.status == "active" and \
                    normalize_name(other.name) == normalize_name(record.name):
                return (f"another plugin named {other.name!r} (distribution "
                        f"{other.distribution!r}) is already loaded; plugin names must be unique")
        return None

    def _fail(self, record: PluginRecord, message: str, exc: BaseException | None,
              strict: bool) -> None:
        record.status, record.error = "failed", message
        record.components = {}
        self._add_record(record)
        if strict:
            raise PluginLoadError(f"Plugin {record.name!r} failed to load: {message}") from exc

    def _load(self, plugin: Any, record: PluginRecord, strict: bool) -> None:
        api = getattr(plugin, "EBMCORE_PLUGIN_API", PLUGIN_API_VERSION)
        try:
            api_major = int(str(api).split(".")[0])
        except ValueError:
            api_major = -1
        if api_major != PLUGIN_API_VERSION:
            record.status = "incompatible"
            record.error = (f"built for plugin API {api}, this ebmcore speaks "
                            f"{PLUGIN_API_VERSION}")
            self._add_record(record)
            return
        try:
            self._pm.register(plugin, name=record.name)
        except Exception as exc:
            self._fail(record, f"registration failed: {type(exc).__name__}: {exc}", exc, strict)
            return
        try:
            self._pm.check_pending()
            provided = self._collect(record)
        except Exception as exc:
            self._pm.unregister(name=record.name)
            self._fail(record, f"{type(exc).__name__}: {exc}", exc, strict)
            return
        self._add_record(record)
        for item in provided:
            self._add_provided(item)

    def _collect(self, record: PluginRecord) -> list[_Provided]:
        provided: list[_Provided] = []
        for hook_name, kind in hookspecs.HOOK_KINDS.items():
            impls = [i for i in getattr(self._pm.hook, hook_name).get_hookimpls()
                     if i.plugin_name == record.name]
            seen: set[str] = set()
            for impl in impls:
                for component in impl.function() or ():
                    if not isinstance(component, Component):
                        raise TypeError(
                            f"hook {hook_name} returned {type(component).__name__}, "
                            f"expected ebmcore.Component"
                        )
                    clash = seen.intersection(component.keys)
                    if clash:
                        raise ValueError(f"{kind} name {sorted(clash)[0]!r} is given twice")
                    seen.update(component.keys)
                    provided.append(_Provided(kind, component, record))
                    record.components.setdefault(kind, []).append(component.name)
        return provided

    def _add_provided(self, item: _Provided) -> None:
        for key in item.component.keys:
            self._provided[item.kind].setdefault(key, []).append(item)

    def _annotate_clashes(self) -> None:
        """Record, on each third-party plugin, the built-in names it replaces or collides with."""
        for record in self._plugins.values():
            record.replaces, record.notes = [], []
        for kind, table in self._provided.items():
            for key, providers in table.items():
                builtin = next((p for p in providers if p.plugin.builtin), None)
                if builtin is None:
                    continue
                for item in providers:
                    if item.plugin.builtin:
                        continue
                    if item.component.replaces:
                        entry = f"{kind}:{key}"
                        if entry not in item.plugin.replaces:
                            item.plugin.replaces.append(entry)
                    else:
                        item.plugin.notes.append(
                            f"{kind} name {key!r} is reserved by built-in plugin "
                            f"{builtin.plugin.name!r}; reach this one as "
                            f"'{item.plugin.name}:{key}' or declare replaces=True"
                        )

    # -- public API ------------------------------------------------------------------------

    def register(self, plugin: Any, name: str | None = None, *, builtin: bool = False,
                 distribution: str | None = None, version: str | None = None) -> PluginRecord:
        """Register a plugin object in-process (tests, notebooks) and return its record.

        Args:
            plugin: A module, class or instance with ``@ebmcore.hookimpl`` functions.
            name: The plugin's name; defaults to the object's ``__name__``.
            builtin: Treat it as a built-in (its names become reserved).
            distribution: Distribution name shown in listings.
            version: Version shown in listings.
        """
        self._ensure_discovered()
        plugin_name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        with self._lock:
            record = PluginRecord(name=plugin_name, distribution=distribution,
                                  version=version, builtin=builtin)
            clash = self._name_clash(record)
            if clash is not None:
                raise PluginLoadError(f"Plugin {plugin_name!r} cannot be registered: {clash}")
            self._load(plugin, record, strict=True)
            self._annotate_clashes()
            return record

    def plugins(self) -> list[PluginRecord]:
        """Return one record per plugin seen, built-ins first, then by name."""
        self._ensure_discovered()
        return sorted(self._plugins.values(), key=lambda r: (not r.builtin, r.name))

    def names(self, kind: str) -> list[str]:
        """Return the sorted names of every component of ``kind``."""
        kind = normalize_kind(kind)
        self._ensure_discovered()
        names = set()
        for key, providers in self._provided[kind].items():
            if any(key == p.component.keys[0] for p in providers):
                names.add(providers[0].component.name)
        return sorted(names, key=str.lower)

    def _failed_note(self) -> str:
        failed = [p for p in self._plugins.values() if p.status == "failed"]
        if not failed:
            return ""
        listed = "; ".join(f"{p.name} ({p.error})" for p in failed)
        return f" Plugins that failed to load: {listed}; run 'ebmcore plugins' for details."

    def _unknown(self, kind: str, name: str, keys: list[str]) -> UnknownComponentError:
        close = difflib.get_close_matches(normalize_name(name), keys, n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        available = ", ".join(self.names(kind)) or "none"
        return UnknownComponentError(
            f"Unknown {kind} {name!r}.{hint} Available {_PLURALS[kind]}: {available}."
            f"{self._failed_note()}"
        )

    def _find(self, kind: str, name: str) -> _Provided:
        kind = normalize_kind(kind)
        self._ensure_discovered()
        if not isinstance(name, str) or not name.strip():
            raise UnknownComponentError(f"A {kind} name must be a non-empty string, got {name!r}")
        table = self._provided[kind]
        plugin_name, sep, component_name = name.partition(":")
        if sep:
            return self._find_in_plugin(kind, plugin_name, component_name)
        providers = table.get(normalize_name(name), [])
        if not providers:
            raise self._unknown(kind, name, list(table))
        replacing = [p for p in providers if not p.plugin.builtin and p.component.replaces]
        builtin = [p for p in providers if p.plugin.builtin]
        third_party = [p for p in providers if not p.plugin.builtin]
        candidates = replacing or builtin or third_party
        if len(candidates) > 1:
            who = " and ".join(
                f"plugin {p.plugin.name!r} (distribution {p.plugin.distribution!r})"
                for p in candidates
            )
            choose = " or ".join(f"'{p.plugin.name}:{name}'" for p in candidates)
            raise AmbiguousComponentError(
                f"The {kind} name {name!r} is provided by {who}; choose one with {choose}, "
                f"or disable one with {ENV_BLOCK}."
            )
        return candidates[0]

    def _find_in_plugin(self, kind: str, plugin_name: str, name: str) -> _Provided:
        record = next((r for r in self._plugins.values()
                       if normalize_name(r.name) == normalize_name(plugin_name)), None)
        if record is None:
            known = ", ".join(sorted(self._plugins)) or "none"
            raise UnknownComponentError(
                f"Unknown plugin {plugin_name!r} in {kind} name '{plugin_name}:{name}'. "
                f"Plugins: {known}."
            )
        if record.status != "active":
            raise UnknownComponentError(
                f"Plugin {record.name!r} is {record.status} ({record.error}); its {kind} "
                f"{name!r} is unavailable."
            )
        keys = [k for k, ps in self._provided[kind].items()
                if any(p.plugin is record for p in ps)]
        for p in self._provided[kind].get(normalize_name(name), []):
            if p.plugin is record:
                return p
        close = difflib.get_close_matches(normalize_name(name), keys, n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return_names = ", ".join(record.components.get(kind, [])) or "none"
        raise UnknownComponentError(
            f"Plugin {record.name!r} has no {kind} {name!r}.{hint} "
            f"Its {_PLURALS[kind]}: {return_names}."
        )

    def component(self, kind: str, name: str) -> tuple[Component, PluginRecord]:
        """Return the descriptor of ``name`` and the plugin providing it, importing nothing."""
        provided = self._find(kind, name)
        return provided.component, provided.plugin

    def get(self, kind: str, name: str) -> Any:
        """Return the class or factory registered as ``name`` for ``kind``."""
        provided = self._find(kind, name)
        if not provided.is_resolved:
            with self._lock:
                try:
                    provided.resolved = provided.component.resolve()
                except Exception as exc:
                    raise PluginLoadError(
                        f"{provided.kind} {provided.component.name!r} from plugin "
                        f"{provided.plugin.name!r} failed to import "
                        f"{provided.component.target!r}: {type(exc).__name__}: {exc}"
                    ) from exc
                provided.is_resolved = True
        return provided.resolved

    def create(self, kind: str, name: str, /, **params: Any) -> Any:
        """Build an instance of the component ``name`` with keyword ``params``."""
        target = self.get(kind, name)
        try:
            signature = inspect.signature(target)
        except (TypeError, ValueError):
            signature = None
        if signature is not None:
            try:
                signature.bind(**params)
            except TypeError as exc:
                accepted = ", ".join(
                    p.name for p in signature.parameters.values()
                    if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                ) or "none"
                raise InvalidParametersError(
                    f"{kind} {name!r}: {exc}. Accepted parameters: {accepted}."
                ) from None
        return target(**params)

    def recipe(self, kind: str, name: str) -> dict[str, Any] | None:
        """Return a copy of the run recipe the component ``name`` declares, or ``None``."""
        recipe = self._find(kind, name).component.recipe
        return None if recipe is None else copy.deepcopy(dict(recipe))

    def recipes(self, kind: str) -> dict[str, dict[str, Any]]:
        """Return a copy of every recipe declared by a component of ``kind``, by name."""
        found = {}
        for name in self.names(kind):
            with contextlib.suppress(AmbiguousComponentError):
                recipe = self.recipe(kind, name)
                if recipe is not None:
                    found[name] = recipe
        return found

    def provenance(self, kind: str, name: str) -> dict[str, Any]:
        """Return where the component ``name`` comes from: ``kind``, ``name`` (as the plugin
        spells it), ``plugin``, ``distribution`` and ``version`` (``None`` when the plugin
        was registered in-process without them) and ``builtin``."""
        provided = self._find(kind, name)
        record = provided.plugin
        return {"kind": provided.kind, "name": provided.component.name,
                "plugin": record.name, "distribution": record.distribution,
                "version": record.version, "builtin": record.builtin}

    def require(self, kind: str, name: str,
                provenance: Mapping[str, Any] | None = None) -> Component:
        """Return the descriptor of ``name``; when it is missing, the error also says which
        distribution and version supplied it (``provenance``, as :meth:`provenance` gave it
        when the run was made) and the command that installs it."""
        try:
            return self._find(kind, name).component
        except UnknownComponentError as exc:
            if not provenance:
                raise
            raise UnknownComponentError(f"{exc} {install_hint(provenance)}") from None

    def describe(self, kind: str, name: str) -> dict[str, Any]:
        """Return summary, provider, aliases and parameters of one component."""
        provided = self._find(kind, name)
        target = self.get(kind, name)
        return {
            "kind": provided.kind,
            "name": provided.component.name,
            "summary": provided.component.summary,
            "aliases": list(provided.component.aliases),
            "plugin": provided.plugin.name,
            "distribution": provided.plugin.distribution,
            "target": provided.component.target if isinstance(provided.component.target, str)
            else f"{target.__module__}:{getattr(target, '__qualname__', target)}",
            "parameters": describe_parameters(target),
        }


def install_hint(provenance: Mapping[str, Any]) -> str:
    """Say which distribution supplied a component (a :meth:`Registry.provenance` record)
    and how to get it back: ``pip install NAME==VERSION``."""
    what = f"{provenance.get('kind', 'component')} {provenance.get('name')!r}"
    dist, version = provenance.get("distribution"), provenance.get("version")
    plugin = provenance.get("plugin")
    if not dist:
        return (f"The run used {what} from plugin {plugin!r}, registered in-process (no "
                f"installed distribution): register it again before loading the run.")
    pinned = f"{dist}=={version}" if version else dist
    if provenance.get("builtin") or normalize_name(dist) == BUILTIN_DISTRIBUTION:
        return (f"The run used {what} from ebmcore's built-in plugin {plugin!r} "
                f"({dist} {version}); it is blocked or missing here: check {ENV_BLOCK} and "
                f"{ENV_ALLOW}, or reinstall with: pip install {pinned}")
    return (f"The run used {what} from {dist} {version} (plugin {plugin!r}); install it "
            f"with: pip install {pinned}")


def describe_parameters(target: Any) -> list[dict[str, str | None]]:
    """List a callable's keyword parameters with defaults, annotations and docstring lines."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return []
    docs = _parameter_docs(inspect.getdoc(target) or "")
    result = []
    for p in signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name == "self":
            continue
        result.append({
            "name": p.name,
            "default": None if p.default is p.empty else repr(p.default),
            "annotation": None if p.annotation is p.empty else
            (p.annotation if isinstance(p.annotation, str) else
             getattr(p.annotation, "__name__", str(p.annotation))),
            "doc": docs.get(p.name),
        })
    return result


def _parameter_docs(doc: str) -> dict[str, str]:
    """Parse the ``Args:`` section of a Google-style docstring."""
    docs: dict[str, str] = {}
    in_args, current = False, None
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            in_args = True
            continue
        if not in_args:
            continue
        if stripped and not line.startswith(" "):
            break
        if ":" in stripped and line.startswith("    ") and not line.startswith("     "):
            head, _, text = stripped.partition(":")
            current = head.split("(")[0].strip()
            docs[current] = text.strip()
        elif current and stripped:
            docs[current] = f"{docs[current]} {stripped}"
    return docs


# -- the process-wide registry ------------------------------------------------------------

_active: Registry = Registry()


def get_registry() -> Registry:
    """Return the registry that :func:`ebmcore.get` and friends use."""
    return _active


@contextlib.contextmanager
def use_registry(registry: Registry) -> Iterator[Registry]:
    """Make ``registry`` the active one inside a ``with`` block (tests use this)."""
    global _active
    previous, _active = _active, registry
    try:
        yield registry
    finally:
        _active = previous


def reset_registry() -> Registry:
    """Forget every discovered plugin; the next lookup discovers them again."""
    global _active
    _active = Registry()
    return _active


def kinds() -> tuple[str, ...]:
    """Return the component kinds: energy, sampler, loss, model, dataset, backend,
    interpolant, coupling, integrator."""
    return KINDS


def names(kind: str) -> list[str]:
    """Return the sorted component names of ``kind``."""
    return _active.names(kind)


def get(kind: str, name: str) -> Any:
    """Return the class or factory registered as ``name`` (``plugin:name`` picks a provider)."""
    return _active.get(kind, name)


def create(kind: str, name: str, /, **params: Any) -> Any:
    """Look up ``name`` of ``kind`` and build it with ``params``."""
    return _active.create(kind, name, **params)


def plugins() -> list[PluginRecord]:
    """Return one :class:`PluginRecord` per discovered plugin."""
    return _active.plugins()


def describe(kind: str, name: str) -> dict[str, Any]:
    """Return what ``ebmcore info`` shows about one component."""
    return _active.describe(kind, name)


def provenance(kind: str, name: str) -> dict[str, Any]:
    """Return the distribution, version and plugin that supply ``name`` of ``kind``
    (:meth:`Registry.provenance`)."""
    return _active.provenance(kind, name)


def require(kind: str, name: str, provenance: Mapping[str, Any] | None = None) -> Component:
    """Return the descriptor of ``name``, or raise an error that names the distribution to
    install when ``provenance`` says where it came from (:meth:`Registry.require`)."""
    return _active.require(kind, name, provenance)


def recipe(kind: str, name: str) -> dict[str, Any] | None:
    """Return the run recipe the component ``name`` declares, or ``None``."""
    return _active.recipe(kind, name)
