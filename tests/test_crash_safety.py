"""A projector killed with SIGKILL mid-batch resumes without loss or double application."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from goalledger.api.bootstrap import bootstrap
from goalledger.core.kpis import thresholds_for
from goalledger.core.ledger import ReadingInput
from goalledger.core.settings import Settings
from goalledger.projections.projector import rebuild, view_state

READINGS = 8_000
RUNNER = """
import sys
from goalledger.api.bootstrap import bootstrap
from goalledger.core.settings import Settings
system = bootstrap(Settings(database_url=sys.argv[1]))
system.projector.batch_size = int(sys.argv[2])
system.catch_up()
"""


def _fill(settings: Settings) -> int:
    """A ledger with a cycle, KRs with check-ins, a KPI with readings and corrections."""
    with bootstrap(settings) as system:
        ledger = system.ledger
        now = datetime.now(UTC)
        cycle = ledger.define_cycle(
            name="2026-Q4", starts_on=date(2026, 10, 1), ends_on=date(2026, 12, 31), actor="t"
        )
        team = ledger.form_team(name="Ops", actor="t")
        objective = ledger.define_objective(
            title="Stay up", cycle_id=cycle.id, team_id=team.id, owner="o", kind="committed",
            actor="t",
        )  # fmt: skip
        kr = ledger.define_key_result(
            objective.id, title="Tickets", kind="decrease_to", start=Decimal(100),
            target=Decimal(10), actor="t",
        )  # fmt: skip
        kpi = ledger.define_kpi(
            name="Latency", direction="lower_is_better", frequency="hourly", actor="t",
            thresholds=thresholds_for("lower_is_better", 200, 400),
        )  # fmt: skip
        for step in range(40):
            ledger.check_in(kr.id, value=Decimal(100 - step), actor="t")
        readings = [
            ReadingInput(kpi.id, f"r{i}", Decimal(150 + i % 300), now - timedelta(minutes=i))
            for i in range(READINGS)
        ]
        for start in range(0, READINGS, 2000):
            ledger.record_readings(readings[start : start + 2000], source="test", actor="t")
        for i in range(0, 200, 10):
            ledger.correct_reading(kpi.id, f"r{i}", value=Decimal(999), reason="fix", actor="t")
        return ledger.head_position()


def _run_projector(url: str, batch_size: int, log: Path) -> subprocess.Popen:
    with log.open("ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-c", RUNNER, url, str(batch_size)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


@pytest.mark.slow
def test_sigkilled_projector_resumes_exactly_once(settings: Settings, tmp_path: Path) -> None:
    log = tmp_path / "projector.log"
    head = _fill(settings)
    system = bootstrap(settings)
    try:
        rng = random.Random(7)
        kills = 0
        for _ in range(3):
            process = _run_projector(settings.database_url, 300, log)
            target = system.projector.position() + rng.randint(1500, 4000)
            deadline = time.monotonic() + 60
            while system.projector.position() < min(target, head - 1000):
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "projector made no progress"
                time.sleep(0.01)
            os.kill(process.pid, signal.SIGKILL)  # most of its time is inside a batch
            process.wait(timeout=10)
            kills += 1
            assert system.projector.position() < head
        process = _run_projector(settings.database_url, 300, log)
        assert process.wait(timeout=120) == 0, log.read_text()
        assert kills == 3
        assert system.projector.position() == head

        live = view_state(system.store)
        positions = [row[0] for row in live["events"]]
        assert len(positions) == len(set(positions)) == head  # nothing applied twice
        rebuild(system.ledger, system.store)
        assert view_state(system.store) == live
    finally:
        system.close()
