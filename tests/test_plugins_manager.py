"""Loading plugins: built-ins like third-party plugins, each entry point on its own,
failures listed with reasons, GOALLEDGER_PLUGINS, misspelt hooks, the listing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from click.testing import CliRunner

from goalledger.api import cli
from goalledger.api.bootstrap import bootstrap
from goalledger.core.scoring import LINEAR_V1, LinearRule
from goalledger.core.settings import Settings
from goalledger.plugins import hookimpl
from goalledger.plugins.manager import (
    BUILTIN_PLUGINS,
    PluginInfo,
    enabled_from_env,
    load_plugins,
)

GOOD_PLUGIN = """
import msgspec
from goalledger.plugins import hookimpl, Observation

class Config(msgspec.Struct):
    value: int = 1

class Constant:
    name = "{source}"
    config_type = Config
    def fetch(self, config, kpi, since):
        return []

@hookimpl
def register_metric_sources(register):
    register(Constant())
"""


def write_module(directory: Path, name: str, text: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(text))


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on sys.path for throw-away plugin modules."""
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def entry(name: str, module: str) -> EntryPoint:
    return EntryPoint(name=name, value=module, group="goalledger")


def by_name(plugins: list[PluginInfo]) -> dict[str, PluginInfo]:
    return {info.name: info for info in plugins}


def test_builtins_register_like_third_party_plugins() -> None:
    registry = load_plugins(entry_points_=[])
    listed = by_name(registry.plugins)
    assert [info.name for info in registry.plugins] == [
        m.replace(".plugins.", ".") for m in BUILTIN_PLUGINS
    ]
    assert all(info.builtin and info.status == "loaded" for info in listed.values())
    assert set(registry.sources) == {"http-json", "csv", "sql", "prometheus"}
    assert set(registry.channels) == {"webhook", "slack", "email", "log"}
    assert registry.rules == {"linear-v1": LINEAR_V1}
    assert listed["goalledger.channels"].hooks == ["register_notification_channels"]
    assert listed["goalledger.builtin"].provides == {"scoring_rules": ["linear-v1"]}
    # Each built-in is registered with pluggy under its name, like any plugin.
    assert registry.pm.has_plugin("goalledger.sources_csv")


def test_a_broken_plugin_is_listed_as_failed_and_the_others_still_load(plugin_dir: Path) -> None:
    write_module(plugin_dir, "good_plugin", GOOD_PLUGIN.format(source="constant"))
    write_module(plugin_dir, "raises_on_import", "raise RuntimeError('boom at import')\n")
    write_module(
        plugin_dir,
        "raises_in_hook",
        """
        from goalledger.plugins import hookimpl

        @hookimpl
        def register_metric_sources(register):
            raise ValueError("no config file")
        """,
    )
    registry = load_plugins(
        entry_points_=[
            entry("good", "good_plugin"),
            entry("import-error", "raises_on_import"),
            entry("missing", "no_such_module_anywhere"),
            entry("hook-error", "raises_in_hook"),
        ]
    )
    listed = by_name(registry.plugins)
    assert listed["good"].status == "loaded"
    assert listed["good"].provides == {"metric_sources": ["constant"]}
    assert listed["import-error"].status == "failed"
    assert listed["import-error"].reason == "RuntimeError: boom at import"
    assert (
        listed["missing"].reason == "ModuleNotFoundError: No module named 'no_such_module_anywhere'"
    )
    assert listed["hook-error"].reason == "ValueError: no config file"
    assert listed["hook-error"].hooks == ["register_metric_sources"]
    assert "constant" in registry.sources
    # A failed plugin is unregistered, so no later hook call reaches it.
    assert not registry.pm.has_plugin("hook-error")


def test_a_misspelt_hook_is_reported_at_start_up(plugin_dir: Path) -> None:
    write_module(
        plugin_dir,
        "misspelt",
        """
        from goalledger.plugins import hookimpl

        @hookimpl
        def register_metric_source(register):
            pass
        """,
    )
    write_module(
        plugin_dir,
        "forward_looking",
        """
        from goalledger.plugins import hookimpl

        @hookimpl(optionalhook=True)
        def register_dashboards(register):
            pass
        """,
    )
    registry = load_plugins(
        entry_points_=[entry("misspelt", "misspelt"), entry("optional", "forward_looking")]
    )
    assert by_name(registry.plugins)["optional"].status == "loaded"  # declared optional
    info = by_name(registry.plugins)["misspelt"]
    assert info.status == "failed"
    assert info.reason == (
        "implements unknown hook register_metric_source (did you mean register_metric_sources?)"
    )
    assert registry.check_pending() is None  # pluggy agrees nothing unknown is left


def test_a_plugin_that_registers_a_taken_name_or_a_bad_object_fails_whole(
    plugin_dir: Path,
) -> None:
    write_module(plugin_dir, "takes_csv", GOOD_PLUGIN.format(source="csv"))
    write_module(
        plugin_dir,
        "half_good",
        """
        from goalledger.plugins import hookimpl
        from goalledger.plugins.sources_csv import CsvSource

        class Renamed(CsvSource):
            name = "csv-two"

        @hookimpl
        def register_metric_sources(register):
            register(Renamed())

        @hookimpl
        def register_notification_channels(register):
            register(object())
        """,
    )
    write_module(plugin_dir, "bad_name", GOOD_PLUGIN.format(source="Bad Name"))
    registry = load_plugins(
        entry_points_=[
            entry("takes-csv", "takes_csv"),
            entry("half-good", "half_good"),
            entry("bad-name", "bad_name"),
        ]
    )
    listed = by_name(registry.plugins)
    assert listed["takes-csv"].reason == (
        "metric source 'csv' is already registered by goalledger.sources_csv"
    )
    assert "which is not a notification channel" in (listed["half-good"].reason or "")
    assert "csv-two" not in registry.sources  # nothing half-registered
    assert "must be lower case letters, digits and dashes" in (listed["bad-name"].reason or "")
    assert type(registry.sources["csv"]).__module__ == "goalledger.plugins.sources_csv"


def test_goalledger_plugins_restricts_which_third_party_plugins_load(plugin_dir: Path) -> None:
    write_module(plugin_dir, "one", GOOD_PLUGIN.format(source="one"))
    write_module(plugin_dir, "two", GOOD_PLUGIN.format(source="two"))
    points = [entry("one", "one"), entry("two", "two")]
    enabled = enabled_from_env({"GOALLEDGER_PLUGINS": " one , not_installed"})
    registry = load_plugins(enabled, entry_points_=points)
    listed = by_name(registry.plugins)
    assert "one" in registry.sources and "two" not in registry.sources
    assert "two" not in listed
    assert listed["not-installed"].reason == "not installed (named in GOALLEDGER_PLUGINS)"
    assert all(listed[m.replace(".plugins.", ".")].status == "loaded" for m in BUILTIN_PLUGINS)
    # Empty: no third-party plugin at all; unset: every one.
    assert enabled_from_env({"GOALLEDGER_PLUGINS": ""}) == frozenset()
    assert enabled_from_env({}) is None
    assert set(load_plugins(frozenset(), entry_points_=points).sources) == {
        "http-json",
        "csv",
        "sql",
        "prometheus",
    }


class GenerousRule(LinearRule):
    """Everyone is on track a little earlier."""

    name = "generous"
    version = 2
    on_track_margin = LinearRule.on_track_margin * 2


class RulePlugin:
    @hookimpl
    def register_scoring_rules(self, register):
        register(GenerousRule())


def test_hook_register_scoring_rules(sqlite_url: str) -> None:
    registry = load_plugins(entry_points_=[], extra=[("generous", RulePlugin())])
    assert set(registry.rules) == {"linear-v1", "generous-v2"}
    with bootstrap(Settings(database_url=sqlite_url), registry) as system:
        assert system.queries.rules == registry.rules
        assert system.queries.rule("generous-v2").on_track_margin == GenerousRule.on_track_margin
    refused = load_plugins(
        entry_points_=[], extra=[("again", RulePlugin()), ("twice", RulePlugin())]
    )
    assert by_name(refused.plugins)["twice"].reason == (
        "scoring rule 'generous-v2' is already registered by again"
    )


def test_the_system_builds_its_registry_from_the_environment(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALLEDGER_PLUGINS", "nothing_like_this")
    with bootstrap(Settings(database_url=sqlite_url)) as system:
        listed = by_name(system.plugins.plugins)
        assert listed["nothing-like-this"].status == "failed"
        assert system.queries.rules == {"linear-v1": LINEAR_V1}
        assert system.sources.catalogue is system.plugins


def test_cli_lists_plugins_as_text_and_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOALLEDGER_PLUGINS", "")
    result = CliRunner().invoke(cli.goalledger, ["plugins"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["PLUGIN", "VERSION", "STATUS", "HOOKS"]
    assert any(
        line.startswith("goalledger.channels ")
        and "register_notification_channels (webhook, slack, log)" in line
        for line in lines
    )
    assert (
        lines[-1] == f"{len(BUILTIN_PLUGINS)} plugins ({len(BUILTIN_PLUGINS)} built-in), 0 failed"
    )
    listed = json.loads(CliRunner().invoke(cli.goalledger, ["plugins", "--json"]).output)
    assert {"name", "version", "hooks", "status", "reason"} <= set(listed[0])
    assert {item["status"] for item in listed} == {"loaded"}


def test_cli_reports_a_failed_plugin_and_exits_non_zero() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOALLEDGER_")}
    env["GOALLEDGER_PLUGINS"] = "ghost"
    done = subprocess.run(
        [sys.executable, "-m", "goalledger.api.cli", "plugins"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 1
    assert "ghost" in done.stdout and "reason: not installed" in done.stdout
    assert done.stderr.strip() == "error: 1 plugin(s) failed to load: ghost"
