"""The plugin registry: built-ins and entry-point plugins, loaded one at a time.

Built in the composition root (there is no module-global manager). Each plugin is
registered with pluggy, checked for misspelt hooks, then asked to register what it
provides; a plugin that fails anywhere is listed as `failed` with its reason and
contributes nothing, while every other plugin loads.
"""

from __future__ import annotations

import difflib
import importlib
import os
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import EntryPoint, entry_points
from importlib.metadata import version as dist_version
from typing import Any

import msgspec
import pluggy

from goalledger.plugins import hookspecs
from goalledger.plugins.catalogue import Catalogue, Kind, PluginProblem
from goalledger.plugins.hookspecs import PROJECT

ENTRY_POINT_GROUP = "goalledger"
HOOKS = tuple(name for name in dir(hookspecs) if name.startswith("register_"))
# Built-in features are plugins like any other; these modules carry their @hookimpls.
BUILTIN_PLUGINS = (
    "goalledger.plugins.builtin",
    "goalledger.plugins.sources_http",
    "goalledger.plugins.sources_csv",
    "goalledger.plugins.sources_sql",
    "goalledger.plugins.sources_prometheus",
    "goalledger.plugins.channels",
    "goalledger.plugins.channels_email",
)
# Which kind of thing each hook registers.
HOOK_KINDS: Mapping[str, Kind] = {
    "register_metric_sources": "metric_sources",
    "register_notification_channels": "notification_channels",
    "register_scoring_rules": "scoring_rules",
}


class PluginInfo(msgspec.Struct, frozen=True):
    """One plugin as `goalledger plugins` and `GET /v1/plugins` show it."""

    name: str
    version: str | None
    hooks: list[str]
    status: str  # "loaded" | "failed"
    reason: str | None = None
    builtin: bool = False
    provides: dict[str, list[str]] = {}


def enabled_from_env(environ: Mapping[str, str] | None = None) -> frozenset[str] | None:
    """`GOALLEDGER_PLUGINS` as a set of plugin names; None (unset) means all of them."""
    value = (os.environ if environ is None else environ).get("GOALLEDGER_PLUGINS")
    if value is None:
        return None
    return frozenset(_normal(name) for name in value.split(",") if name.strip())


class PluginRegistry(Catalogue):
    """What the loaded plugins provide, and how each plugin fared."""

    def __init__(self, project: str = PROJECT) -> None:
        super().__init__()
        self.pm = pluggy.PluginManager(project)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: list[PluginInfo] = []

    def add(
        self, name: str, load: Callable[[], object], *, version: str | None, builtin: bool
    ) -> PluginInfo:
        """Import (via `load`), register and run one plugin; never raises."""
        hooks: list[str] = []
        try:
            if any(info.name == name for info in self.plugins):
                raise PluginProblem(f"another plugin is already named {name!r}")
            plugin = load()
            self.pm.register(plugin, name=name)
            try:
                hooks = self._check_hooks(plugin)
                provided = self._run_hooks(name, plugin)
            except BaseException:
                self.pm.unregister(plugin)
                raise
        except (Exception, SystemExit) as error:  # a broken plugin is reported, never fatal
            info = PluginInfo(name, version, hooks, "failed", _reason(error), builtin)
        else:
            info = PluginInfo(name, version, hooks, "loaded", None, builtin, provided)
        self.plugins.append(info)
        return info

    def _check_hooks(self, plugin: object) -> list[str]:
        """The hooks `plugin` implements; a misspelt one fails the plugin."""
        hooks: list[str] = []
        for caller in self.pm.get_hookcallers(plugin) or []:
            if caller.spec is None:
                mine = [impl for impl in caller.get_hookimpls() if impl.plugin is plugin]
                if all(impl.optionalhook for impl in mine):
                    continue  # declared optional: for a hook of a newer goalledger
                close = difflib.get_close_matches(caller.name, HOOKS, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise PluginProblem(f"implements unknown hook {caller.name}{hint}")
            hooks.append(caller.name)
        return sorted(hooks)

    def _run_hooks(self, name: str, plugin: object) -> dict[str, list[str]]:
        """Call each of the plugin's hooks on its own; commit its registrations only if all
        of them succeed, so a failing plugin leaves nothing half-registered."""
        staged: list[tuple[Kind, str, Any]] = []
        for hook in HOOKS:
            kind = HOOK_KINDS[hook]
            for impl in getattr(self.pm.hook, hook).get_hookimpls():
                if impl.plugin is not plugin:
                    continue

                def register(item: Any, kind: Kind = kind) -> None:
                    staged.append((kind, self.check(kind, item, name), item))

                arguments = {"register": register}
                impl.function(*(arguments[arg] for arg in impl.argnames))
        return self.commit(name, staged)

    def check_pending(self) -> str | None:
        """pluggy's own check for implementations of unknown hooks; the reason, or None."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as error:
            return _reason(error)
        return None


def load_plugins(
    enabled: Iterable[str] | None = None,
    *,
    entry_points_: Iterable[EntryPoint] | None = None,
    extra: Iterable[tuple[str, object]] = (),
) -> PluginRegistry:
    """Built-ins, then each `goalledger` entry point (only `enabled` ones when given),
    then `extra` (name, plugin object) pairs, which tests and embedders use."""
    registry = PluginRegistry()
    goalledger_version = _version("goalledger")
    for module in BUILTIN_PLUGINS:
        registry.add(
            module.replace(".plugins.", "."),  # goalledger.sources_csv
            lambda module=module: importlib.import_module(module),
            version=goalledger_version,
            builtin=True,
        )
    wanted = None if enabled is None else {_normal(name) for name in enabled}
    found = {_normal(info.name) for info in registry.plugins}
    group = entry_points(group=ENTRY_POINT_GROUP) if entry_points_ is None else entry_points_
    for entry_point in sorted(group, key=lambda ep: ep.name):
        dist = getattr(entry_point, "dist", None)
        names = {_normal(entry_point.name)} | ({_normal(dist.name)} if dist else set())
        if wanted is not None and not names & wanted:
            continue
        found |= names
        registry.add(
            entry_point.name,
            entry_point.load,
            version=dist.version if dist else None,
            builtin=False,
        )
    for name, plugin in extra:
        found.add(_normal(name))
        registry.add(name, lambda plugin=plugin: plugin, version=None, builtin=False)
    for missing in sorted((wanted or set()) - found):
        reason = "not installed (named in GOALLEDGER_PLUGINS)"
        registry.plugins.append(PluginInfo(missing, None, [], "failed", reason))
    pending = registry.check_pending()
    if pending is not None:  # unreachable while add() checks hooks; kept as a safety net
        registry.plugins.append(PluginInfo("pluggy", None, [], "failed", pending))
    return registry


def _normal(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def _version(dist: str) -> str | None:
    try:
        return dist_version(dist)
    except Exception:
        return None


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if isinstance(error, PluginProblem):
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
