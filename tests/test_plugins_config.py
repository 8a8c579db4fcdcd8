"""Source and channel configs: validated at definition time, field named; secrets
declared by the plugin and never echoed."""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec
import pytest

from goalledger.core.errors import DomainError
from goalledger.core.kpis import SourceBinding
from goalledger.core.secrets import Keyring, new_key
from goalledger.plugins import Secret, hookimpl
from goalledger.plugins.catalogue import ChannelBinding
from goalledger.plugins.contracts import REDACTED, secret_fields
from goalledger.plugins.manager import PluginRegistry, load_plugins


class Nested(msgspec.Struct, forbid_unknown_fields=True):
    port: int


class DeclaredConfig(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    """Secrets listed by name instead of annotated."""

    secret_fields: ClassVar[tuple[str, ...]] = ("api_key",)
    api_key: str
    region: str = "eu"
    servers: list[Nested] = []


class DeclaredSource:
    name = "declared"
    config_type = DeclaredConfig

    def fetch(self, config, kpi, since):
        return []


class DeclaredPlugin:
    @hookimpl
    def register_metric_sources(self, register):
        register(DeclaredSource())


@pytest.fixture(scope="module")
def registry() -> PluginRegistry:
    loaded = load_plugins(entry_points_=[], extra=[("declared", DeclaredPlugin())])
    loaded.keyring = Keyring.parse(new_key())  # secrets are sealed as they are validated
    return loaded


def refusal(call) -> tuple[str, str]:
    with pytest.raises(DomainError) as caught:
        call()
    return caught.value.field, caught.value.message


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({}, "source.config.url", "is required"),
        ({"url": 7}, "source.config.url", "must be str, got int"),
        ({"url": "ftp://x/"}, "source.config.url", "must be an http:// or https:// URL"),
        ({"url": "http://x/", "colour": 1}, "source.config.colour", "is not a field of"),
        ({"url": "http://x/", "timeout": 0}, "source.config.timeout", "must be float > 0.0"),
        ({"url": "http://x/", "pointer": "a/b"}, "source.config.pointer", "must be empty or"),
        ("http://x/", "source.config", "must be an object"),
    ],
)
def test_a_bad_config_is_refused_naming_the_field(
    registry: PluginRegistry, config: object, field: str, message: str
) -> None:
    got_field, got_message = refusal(lambda: registry.validate_source("http-json", config))
    assert got_field == field
    assert got_message.startswith(message)


def test_nested_fields_and_unknown_sources_are_named(registry: PluginRegistry) -> None:
    config = {"apiKey": "k", "servers": [{"port": 1}, {"port": "x"}]}
    assert refusal(lambda: registry.validate_source("declared", config)) == (
        "source.config.servers[1].port",
        "must be int, got str",
    )
    field, message = refusal(lambda: registry.validate_source("nope", {}))
    assert field == "source.plugin"
    assert (
        message == "no metric source named 'nope'; known: csv, declared, http-json, prometheus, sql"
    )
    field, _ = refusal(lambda: registry.validate_channel("webhook", {"url": "http://x/"}))
    assert field == "channel.config.secret"
    field, message = refusal(
        lambda: registry.validate_channel("webhook", {"url": "http://x/", "secret": "short"})
    )
    assert (field, message) == ("channel.config.secret", "must be str of length >= 16")


def test_a_valid_config_is_normalised_with_its_defaults(registry: PluginRegistry) -> None:
    binding = registry.validate_source("http-json", {"url": "http://x/", "pointer": "/v"})
    assert binding == SourceBinding(
        plugin="http-json",
        config={
            "url": "http://x/",
            "pointer": "/v",
            "observed_at_pointer": None,
            "token": None,
            "timeout": 10.0,
            "max_bytes": 1_000_000,
        },
    )
    assert registry.config_of(binding).pointer == "/v"


def test_secrets_are_declared_by_annotation_or_by_name(registry: PluginRegistry) -> None:
    class Annotated_(msgspec.Struct):
        url: str
        token: Annotated[str | None, Secret] = None

    assert secret_fields(Annotated_) == {"token"}
    assert secret_fields(DeclaredConfig) == {"apiKey"}  # the JSON name
    assert registry.provided["notification_channels"]["email"].secrets == {"password"}
    assert registry.provided["notification_channels"]["slack"].secrets == {"webhook_url"}
    assert registry.provided["metric_sources"]["sql"].secrets == {"password"}


def test_redact_hides_secret_values_only(registry: PluginRegistry) -> None:
    binding = registry.validate_source("http-json", {"url": "http://x/", "token": "s3cr3t"})
    shown = registry.redact(binding)
    assert shown.config["token"] == REDACTED
    assert shown.config["url"] == "http://x/"
    assert "s3cr3t" not in msgspec.json.encode(shown).decode()
    assert (
        registry.redact(registry.validate_source("http-json", {"url": "http://x/"})).config["token"]
        is None
    )  # nothing to hide
    declared = registry.redact(registry.validate_source("declared", {"apiKey": "k"}))
    assert declared.config == {"apiKey": REDACTED, "region": "eu", "servers": []}
    channel = registry.validate_channel("slack", {"webhook_url": "https://hooks.example/T/B/x"})
    assert registry.redact(channel) == ChannelBinding(
        plugin="slack", config={"webhook_url": REDACTED, "timeout": 10.0}
    )


def test_a_binding_whose_plugin_is_not_loaded_is_redacted_entirely() -> None:
    binding = SourceBinding(plugin="uninstalled", config={"url": "http://x/", "n": None})
    shown = load_plugins(entry_points_=[]).redact(binding)
    assert shown.config == {"url": REDACTED, "n": None}


def test_an_echoed_mask_keeps_the_previous_secret(registry: PluginRegistry) -> None:
    """A client that PATCHes back what it read (with `********`) does not lose the token."""
    before = registry.validate_source("http-json", {"url": "http://x/", "token": "s3cr3t"})
    echoed = dict(registry.redact(before).config, url="http://y/")
    after = registry.validate_source("http-json", echoed, previous=before)
    assert registry.config_of(after).token == "s3cr3t"
    assert after.config["url"] == "http://y/"
    replaced = registry.validate_source("http-json", dict(echoed, token="new"), previous=before)
    assert registry.config_of(replaced).token == "new"
    # Without a previous binding the mask is just a (wrong) token: it is kept as given.
    assert registry.config_of(registry.validate_source("http-json", echoed)).token == REDACTED
