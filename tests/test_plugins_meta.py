"""Meta-tests in the datasette manner: every hook is documented and tested, and so is
every built-in source and channel."""

from __future__ import annotations

import ast
import inspect
import re
import time
import types
from pathlib import Path

import pytest

from goalledger.plugins import hookspecs
from goalledger.plugins.channels import sign
from goalledger.plugins.manager import HOOK_KINDS, HOOKS, load_plugins
from goalledger.plugins.testkit import SourceHarness

TESTS = Path(__file__).resolve().parent
DOCS = TESTS.parent / "docs" / "writing-plugins.md"
SECRET = "0123456789abcdef-secret"


def hookspec_functions() -> dict[str, object]:
    return {
        name: function
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(function, "goalledger_spec")
    }


def plugin_test_names() -> set[str]:
    names: set[str] = set()
    for path in TESTS.glob("test_plugins_*.py"):
        tree = ast.parse(path.read_text())
        names |= {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    return names


def test_the_manager_knows_every_hookspec() -> None:
    assert set(HOOKS) == set(hookspec_functions()) == set(HOOK_KINDS)
    assert len(HOOKS) >= 3


@pytest.mark.parametrize("hook", sorted(hookspec_functions()))
def test_every_hookspec_has_a_one_line_docstring(hook: str) -> None:
    doc = inspect.getdoc(hookspec_functions()[hook]) or ""
    assert doc, f"{hook} has no docstring"
    assert "\n" not in doc.strip(), f"{hook}'s docstring is more than one line"


@pytest.mark.parametrize("hook", sorted(hookspec_functions()))
def test_every_hook_has_a_test(hook: str) -> None:
    assert f"test_hook_{hook}" in plugin_test_names()


def test_every_hook_is_documented_for_plugin_authors() -> None:
    text = DOCS.read_text()
    for hook in hookspec_functions():
        assert f"`{hook}" in text, f"{hook} is missing from {DOCS.name}"


@pytest.mark.parametrize(
    ("kind", "prefix"),
    [("metric_sources", "test_source_"), ("notification_channels", "test_channel_")],
)
def test_every_builtin_source_and_channel_is_tested_and_documented(kind: str, prefix: str) -> None:
    registry = load_plugins(entry_points_=[])
    names = {
        key for key, p in registry.provided[kind].items() if p.plugin.startswith("goalledger.")
    }
    tests = plugin_test_names()
    text = DOCS.read_text()
    for name in names:
        wanted = prefix + name.replace("-", "_")
        assert any(test.startswith(wanted) for test in tests), f"no {wanted}… test"
        assert f"`{name}`" in text, f"{name} is missing from {DOCS.name}"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)


def test_the_tutorial_in_the_docs_runs(tmp_path: Path) -> None:
    """The page's source, test and verification code, run as written."""
    config_code, source_code, test_code, verify_code = python_blocks()
    source_code = config_code + source_code  # one module, shown in two steps
    tickets = types.ModuleType("goalledger_tickets")
    exec(compile(source_code, "writing-plugins.md", "exec", dont_inherit=True), tickets.__dict__)
    harness = SourceHarness(tmp_path, [("tickets", tickets)])
    try:
        namespace: dict[str, object] = {}
        exec(compile(test_code, "writing-plugins.md", "exec", dont_inherit=True), namespace)
        namespace["test_open_tickets"](harness)  # type: ignore[operator]
    finally:
        harness.close()
    exec(compile(verify_code, "writing-plugins.md", "exec", dont_inherit=True), namespace)
    body, now = b'{"id": "n-1"}', str(int(time.time()))
    verify = namespace["verify"]
    assert verify(SECRET, body, now, sign(SECRET, int(now), body))  # type: ignore[operator]
    assert not verify(SECRET, body + b" ", now, sign(SECRET, int(now), body))  # type: ignore[operator]
