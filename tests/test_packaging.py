"""The wheel installs `goalledger.*` only: no top-level `core`, `api`, `plugins`, etc."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_holds_only_the_goalledger_package(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("goalledger-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/", 1)[0] for name in names}
    assert top_level == {"goalledger", next(t for t in top_level if t.endswith(".dist-info"))}
    for package in ("core", "plugins", "projections", "api"):
        assert f"goalledger/{package}/__init__.py" in names
    assert "goalledger/core/ledger.py" in names
    assert not any(name.startswith("tests/") for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert (
        "goalledger = goalledger.api.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    )
