"""The example plugin package, installed with pip into this environment, discovered
through its `goalledger` entry point, exercised, and uninstalled again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "goalledger-example-plugin"
DIST = "goalledger-example-plugin"


def pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """pip-install a copy of the example (setuptools leaves build/ and *.egg-info beside
    the sources; none of that in the repository), without build isolation when the local
    setuptools can build wheels, else with it; uninstall it whatever the tests did."""
    source = tmp_path_factory.mktemp("example") / EXAMPLE.name
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    done = pip("install", "--no-deps", "--no-build-isolation", "--quiet", str(source))
    if done.returncode != 0:
        done = pip("install", "--no-deps", "--quiet", str(source))
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        yield
    finally:
        gone = pip("uninstall", "--yes", "--quiet", DIST)
        assert gone.returncode == 0, gone.stderr


def run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter: entry points are discovered as at start-up."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GOALLEDGER_")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**environ, **env},
        cwd=ROOT,
    )


@pytest.mark.slow
def test_the_example_plugin_installs_and_works_through_its_entry_point(
    installed_example: None, tmp_path: Path
) -> None:
    listed = run(
        "import sys; sys.argv = ['goalledger', 'plugins', '--json'];"
        " from goalledger.api.cli import main; main()",
        GOALLEDGER_PLUGINS="example",
    )
    assert listed.returncode == 0, listed.stderr
    example = next(item for item in json.loads(listed.stdout) if item["name"] == "example")
    assert example == {
        "name": "example",
        "version": "0.1.0",
        "hooks": ["register_metric_sources", "register_notification_channels"],
        "status": "loaded",
        "reason": None,
        "builtin": False,
        "provides": {"metric_sources": ["countdown"], "notification_channels": ["jsonl-file"]},
    }
    outbox = tmp_path / "notifications.jsonl"
    exercised = run(
        f"""
        import json
        from datetime import UTC, datetime, timedelta
        from pathlib import Path
        from goalledger.plugins.testkit import SourceHarness, make_notification

        harness = SourceHarness(Path({str(tmp_path)!r}))
        deadline = (datetime.now(UTC) + timedelta(days=10)).date().isoformat()
        kpi_id = harness.define_kpi("countdown", {{"deadline": deadline}})
        first, second = harness.fetch(kpi_id), harness.fetch(kpi_id)
        sends = [harness.send("jsonl-file", {{"path": {str(outbox)!r}}}) for _ in range(2)]
        print(json.dumps({{
            "recorded": [first.recorded, second.recorded],
            "values": [str(r.value) for r in harness.readings(kpi_id)],
            "source": harness.readings(kpi_id)[0].source,
            "sent": [d.ok for d in sends],
        }}))
        harness.close()
        """
    )
    assert exercised.returncode == 0, exercised.stderr
    outcome = json.loads(exercised.stdout)
    assert len(outcome["recorded"][0]) == 1 and outcome["recorded"][1] == []
    assert outcome["values"] == ["10"] and outcome["source"] == "countdown"
    assert outcome["sent"] == [True, True]
    assert len(outbox.read_text().splitlines()) == 1  # the channel deduplicates by id
    # GOALLEDGER_PLUGINS can leave it out.
    without = run(
        "from goalledger.plugins.manager import load_plugins, enabled_from_env;"
        " print(sorted(load_plugins(enabled_from_env()).sources))",
        GOALLEDGER_PLUGINS="",
    )
    assert without.stdout.strip() == "['csv', 'http-json', 'prometheus', 'sql']"
