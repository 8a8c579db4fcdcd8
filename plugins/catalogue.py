"""What plugins provide, by name: metric sources, channels, scoring rules.

The core side of the `register` callback: names, duplicates and validation are
decided here, not by plugins. Config validation turns msgspec errors into a
`DomainError` naming the field (`source.config.url`), so a bad binding is refused
when a KPI is defined, not when it is fetched.

A validated binding is what the ledger records, so its secret values (the fields the
plugin declares secret) come out sealed with the catalogue's `keyring`, and
`config_of`, which fetch and delivery use, opens them again (see core/secrets.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal, TypeVar

import msgspec

from goalledger.core.errors import DomainError
from goalledger.core.kpis import SourceBinding
from goalledger.core.scoring import ScoringRule
from goalledger.core.secrets import Keyring, is_sealed
from goalledger.plugins.contracts import (
    REDACTED,
    MetricSource,
    NotificationChannel,
    secret_fields,
)

Kind = Literal["metric_sources", "notification_channels", "scoring_rules"]
NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
LABELS: dict[str, str] = {
    "metric_sources": "metric source",
    "notification_channels": "notification channel",
    "scoring_rules": "scoring rule",
}


class PluginProblem(Exception):
    """A plugin is unusable; the message says why."""


class ChannelBinding(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A notification channel plugin and its (validated) config."""

    plugin: str
    config: dict[str, Any]


Binding = TypeVar("Binding", SourceBinding, ChannelBinding)


class Provided(msgspec.Struct, frozen=True):
    """Something a plugin registered, with the plugin that registered it."""

    plugin: str
    item: Any
    secrets: frozenset[str] = frozenset()


class Catalogue:
    """Registered sources, channels and rules, keyed by name (rules by `name-vN`)."""

    def __init__(self) -> None:
        # No key until the composition root sets one: secrets are then refused, never
        # recorded in plain text.
        self.keyring = Keyring()
        self.provided: dict[Kind, dict[str, Provided]] = {
            "metric_sources": {},
            "notification_channels": {},
            "scoring_rules": {},
        }

    @property
    def sources(self) -> dict[str, MetricSource]:
        """Metric sources by name."""
        return {k: p.item for k, p in self.provided["metric_sources"].items()}

    @property
    def channels(self) -> dict[str, NotificationChannel]:
        """Notification channels by name."""
        return {k: p.item for k, p in self.provided["notification_channels"].items()}

    @property
    def rules(self) -> dict[str, ScoringRule]:
        """Scoring rules by id (e.g. `linear-v1`)."""
        return {k: p.item for k, p in self.provided["scoring_rules"].items()}

    # -- registration (called through the hooks' `register` callback) ---------------------

    def check(self, kind: Kind, item: Any, plugin: str) -> str:
        """The name `item` registers under; raises if it is not a valid `kind`."""
        label = LABELS[kind]
        if kind == "scoring_rules":
            if not isinstance(item, ScoringRule):
                raise PluginProblem(f"registered {item!r}, which is not a ScoringRule")
            name = getattr(item, "name", None)
            versioned = isinstance(getattr(item, "version", None), int)
            key = item.id if isinstance(name, str) and NAME.match(name) and versioned else ""
        else:
            protocol = MetricSource if kind == "metric_sources" else NotificationChannel
            if not isinstance(item, protocol):
                method = "fetch" if kind == "metric_sources" else "send"
                raise PluginProblem(
                    f"registered {item!r}, which is not a {label} (name, config_type, {method})"
                )
            config_type = item.config_type
            if not (isinstance(config_type, type) and issubclass(config_type, msgspec.Struct)):
                raise PluginProblem(f"{label} {item.name!r}: config_type must be a msgspec Struct")
            key = item.name if isinstance(item.name, str) and NAME.match(item.name) else ""
        if not key:
            raise PluginProblem(
                f"{label} name {getattr(item, 'name', None)!r} must be lower case letters, "
                "digits and dashes"
            )
        return key

    def commit(self, plugin: str, staged: Iterable[tuple[Kind, str, Any]]) -> dict[str, list[str]]:
        """Add a plugin's registrations all at once, or none of them on a duplicate."""
        staged = list(staged)
        seen: set[tuple[Kind, str]] = set()
        for kind, key, _ in staged:
            held = self.provided[kind].get(key)
            if held is not None or (kind, key) in seen:
                owner = held.plugin if held else plugin
                raise PluginProblem(f"{LABELS[kind]} {key!r} is already registered by {owner}")
            seen.add((kind, key))
        provides: dict[str, list[str]] = {}
        for kind, key, item in staged:
            secrets = frozenset() if kind == "scoring_rules" else secret_fields(item.config_type)
            self.provided[kind][key] = Provided(plugin, item, secrets)
            provides.setdefault(kind, []).append(key)
        return provides

    # -- bindings -------------------------------------------------------------------------

    def source(self, name: str) -> MetricSource:
        """The metric source `name`, or a DomainError naming `source.plugin`."""
        return self._get("metric_sources", name, "source.plugin").item

    def channel(self, name: str) -> NotificationChannel:
        """The notification channel `name`, or a DomainError naming `channel.plugin`."""
        return self._get("notification_channels", name, "channel.plugin").item

    def validate_source(
        self, plugin: str, config: Any, *, previous: SourceBinding | None = None
    ) -> SourceBinding:
        """A checked binding with its secrets sealed, fit to record; a secret that reads
        `********` keeps `previous`'s value."""
        provided = self._get("metric_sources", plugin, "source.plugin")
        normal = self._validated(provided, config, "source.config", previous)
        return SourceBinding(plugin=plugin, config=normal)

    def validate_channel(
        self, plugin: str, config: Any, *, previous: ChannelBinding | None = None
    ) -> ChannelBinding:
        """A checked channel binding (same rules as `validate_source`)."""
        provided = self._get("notification_channels", plugin, "channel.plugin")
        normal = self._validated(provided, config, "channel.config", previous)
        return ChannelBinding(plugin=plugin, config=normal)

    def redact(self, binding: Binding) -> Binding:
        """The binding with secret values replaced by `********`, fit for any output.

        When the plugin is not loaded its secrets are unknown, so every value is hidden.
        """
        source = isinstance(binding, SourceBinding)
        kind: Kind = "metric_sources" if source else "notification_channels"
        provided = self.provided[kind].get(binding.plugin)
        config = {
            key: REDACTED
            if value not in (None, "") and (provided is None or key in provided.secrets)
            else value
            for key, value in binding.config.items()
        }
        return type(binding)(plugin=binding.plugin, config=config)

    def config_of(self, binding: SourceBinding | ChannelBinding) -> Any:
        """The binding's config as the plugin's Struct, secrets opened (for fetch/send)."""
        if isinstance(binding, SourceBinding):
            provided = self._get("metric_sources", binding.plugin, "source.plugin")
            prefix = "source.config"
        else:
            provided = self._get("notification_channels", binding.plugin, "channel.plugin")
            prefix = "channel.config"
        config = self._opened(binding.plugin, provided.secrets, binding.config, prefix)
        return _convert(provided.item.config_type, config, prefix)

    def secrets_in(self, binding: SourceBinding | ChannelBinding) -> frozenset[str]:
        """The binding's secret fields: those its plugin declares or, when the plugin is
        not loaded, those holding sealed values."""
        kind: Kind = (
            "metric_sources" if isinstance(binding, SourceBinding) else "notification_channels"
        )
        provided = self.provided[kind].get(binding.plugin)
        if provided is not None:
            return provided.secrets
        return frozenset(key for key, value in binding.config.items() if is_sealed(value))

    def reseal(self, binding: Binding) -> Binding:
        """The binding with every secret sealed under the current key (for rotation); values
        recorded in plain text before sealing existed are sealed too."""
        secrets = self.secrets_in(binding)
        prefix = "source.config" if isinstance(binding, SourceBinding) else "channel.config"
        opened = self._opened(binding.plugin, secrets, binding.config, prefix)
        config = self._sealed(binding.plugin, secrets, opened, prefix)
        return type(binding)(plugin=binding.plugin, config=config)

    def _validated(
        self,
        provided: Provided,
        config: Any,
        prefix: str,
        previous: SourceBinding | ChannelBinding | None,
    ) -> dict[str, Any]:
        if not isinstance(config, dict):
            raise DomainError(prefix, "must be an object")
        config = dict(config)
        name = provided.item.name
        if previous is not None and previous.plugin == name:
            for key in provided.secrets:
                if config.get(key) == REDACTED and key in previous.config:
                    kept = previous.config[key]
                    config[key] = self.keyring.open(kept, f"{name}.{key}", field=f"{prefix}.{key}")
        config_type = provided.item.config_type
        fields = [f.encode_name for f in msgspec.structs.fields(config_type)]
        for key in config:
            if key not in fields:
                raise DomainError(
                    f"{prefix}.{key}",
                    f"is not a field of {provided.item.name!r} ({', '.join(fields)})",
                )
        normal = msgspec.to_builtins(_convert(config_type, config, prefix))
        return self._sealed(name, provided.secrets, normal, prefix)

    def _sealed(
        self, plugin: str, secrets: frozenset[str], config: dict[str, Any], prefix: str
    ) -> dict[str, Any]:
        """`config` with each secret value sealed (None and "" hold nothing to hide)."""
        return {
            key: self.keyring.seal(value, f"{plugin}.{key}", field=f"{prefix}.{key}")
            if key in secrets and value not in (None, "")
            else value
            for key, value in config.items()
        }

    def _opened(
        self, plugin: str, secrets: frozenset[str], config: dict[str, Any], prefix: str
    ) -> dict[str, Any]:
        """`config` with its sealed secrets opened (`<plugin>.<field>` is bound into each
        seal); values recorded before sealing existed (plain text) pass as they are."""
        return {
            key: self.keyring.open(value, f"{plugin}.{key}", field=f"{prefix}.{key}")
            if key in secrets
            else value
            for key, value in config.items()
        }

    def _get(self, kind: Kind, name: str, field: str) -> Provided:
        try:
            return self.provided[kind][name]
        except KeyError:
            known = ", ".join(sorted(self.provided[kind])) or "none"
            raise DomainError(field, f"no {LABELS[kind]} named {name!r}; known: {known}") from None


def _convert(config_type: type[msgspec.Struct], config: dict[str, Any], prefix: str) -> Any:
    try:
        return msgspec.convert(config, config_type)
    except msgspec.ValidationError as error:
        field, message = _locate(str(error), config_type)
        raise DomainError(f"{prefix}.{field}" if field else prefix, message) from None


_AT = re.compile(r"^(?P<message>.*?) - at `\$(?P<path>[^`]*)`$")
_EXPECTED = re.compile(r"^Expected `([^`]+)`")
_NAMED = re.compile(r"^Object (?:missing required|contains unknown) field `(?P<name>[^`]+)`")


def _locate(text: str, config_type: type[msgspec.Struct]) -> tuple[str, str]:
    """(field path, message) from a msgspec validation error."""
    match = _AT.match(text)
    message, path = (match["message"], match["path"].lstrip(".")) if match else (text, "")
    named = _NAMED.match(message)
    if named:
        path = f"{path}.{named['name']}" if path else named["name"]
        message = "is required" if "missing" in message else "is not a known field"
        return path, message
    message = _EXPECTED.sub(r"must be \1", message).replace(", got `", ", got ").rstrip("`")
    if not path:  # a __post_init__ check: by convention "field: message"
        head, _, rest = message.partition(":")
        if rest and head in {f.encode_name for f in msgspec.structs.fields(config_type)}:
            return head, rest.strip()
    return path, message
