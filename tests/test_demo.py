"""The demo organisation loads through the ledger's commands, on both stores."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from goalledger.api.demo import LedgerNotEmpty, load_demo
from goalledger.core.cycles import Cycle
from goalledger.core.errors import DomainError
from goalledger.core.kpis import DIRECTIONS, Kpi, Reading
from goalledger.core.ledger import Ledger
from goalledger.core.model import day_start
from goalledger.core.objectives import KEY_RESULT_KINDS, OBJECTIVE_KINDS, KeyResult, Objective
from goalledger.core.settings import Settings
from goalledger.core.teams import Team

TODAY = datetime.now(UTC).date()


@pytest.fixture
def loaded(ledger: Ledger) -> tuple[Ledger, Any, list[tuple[int, Any]]]:
    summary = load_demo(ledger, today=TODAY)
    return ledger, summary, list(ledger.read_events())


def events_of(events: list[tuple[int, Any]], kind: type) -> list[tuple[int, Any]]:
    return [(position, event) for position, event in events if type(event) is kind]


def test_demo_loads_into_an_empty_ledger_and_reports_progress(ledger: Ledger, monkeypatch) -> None:
    batches: list[int] = []
    record_readings = ledger.record_readings

    def spy(readings, **kwargs):
        readings = list(readings)
        batches.append(len(readings))
        return record_readings(readings, **kwargs)

    monkeypatch.setattr(ledger, "record_readings", spy)
    reports: list[tuple[int, int, str]] = []
    summary = load_demo(ledger, today=TODAY, progress=lambda *report: reports.append(report))
    events = list(ledger.read_events())
    assert summary.events == len(events) > 400
    assert summary.position == ledger.head_position() == events[-1][0]
    assert reports[0][:2] == (0, summary.events)
    assert reports[-1][:2] == (summary.events, summary.events)
    done = [report[0] for report in reports]
    assert done == sorted(done) and all(report[1] == summary.events for report in reports)
    assert all(label for _, _, label in reports)
    # Readings go in batches through `record_readings`, not one command each.
    assert sum(batches) == summary.readings and max(batches) >= 10


def test_demo_has_a_company_and_three_teams_with_check_in_intervals(loaded) -> None:
    ledger, summary, _ = loaded
    teams = {name: ledger.load(team_id, Team) for name, team_id in summary.team_ids.items()}
    assert len(teams) == 4
    company = ledger.load(summary.company_id, Team)
    assert company.parent_id is None
    under_company = [t for t in teams.values() if t.parent_id == summary.company_id]
    assert len(under_company) == 3
    assert all(1 <= team.check_in_interval_days <= 31 for team in teams.values())


def test_demo_cycle_is_a_quarter_about_sixty_percent_through_today(loaded) -> None:
    ledger, summary, _ = loaded
    cycle = ledger.load(summary.cycle_id, Cycle)
    assert cycle.is_open
    assert cycle.starts_on <= TODAY <= cycle.ends_on
    length = (cycle.ends_on - cycle.starts_on).days + 1
    assert 89 <= length <= 92
    assert 0.5 <= (TODAY - cycle.starts_on).days / length <= 0.7


def test_demo_objectives_and_key_results_cover_every_kind_and_alignment(loaded) -> None:
    ledger, summary, _ = loaded
    cycle = ledger.load(summary.cycle_id, Cycle)
    objectives = [ledger.load(i, Objective) for i in summary.objective_ids.values()]
    krs = [ledger.load(i, KeyResult) for i in summary.key_result_ids.values()]
    assert {o.kind for o in objectives} == set(OBJECTIVE_KINDS)
    assert {kr.kind for kr in krs} == set(KEY_RESULT_KINDS)
    assert any(kr.kind == "milestone" and kr.steps for kr in krs)
    assert any(o.parent_objective_id in summary.objective_ids.values() for o in objectives)
    assert any(o.parent_key_result_id in summary.key_result_ids.values() for o in objectives)
    linked = [kr for kr in krs if kr.kpi_id is not None]
    assert len(linked) == 1 and linked[0].kpi_id in summary.kpi_ids.values()
    assert all(o.cycle_id == cycle.id for o in objectives)
    # Goals are effective from the cycle's start, whenever they were recorded.
    _, _, events = loaded
    defined = events_of(events, Objective.Defined) + events_of(events, KeyResult.Defined)
    assert {e.effective_at for _, e in defined} == {day_start(cycle.starts_on)}
    # A target change, with its reason and effective date, for the audit trail.
    (_, change), *_ = events_of(events, KeyResult.TargetChanged)
    assert change.reason and day_start(cycle.starts_on) < change.effective_at


def test_demo_check_ins_are_back_dated_onto_a_weekly_grid(loaded) -> None:
    ledger, summary, events = loaded
    cycle = ledger.load(summary.cycle_id, Cycle)
    check_ins = events_of(events, KeyResult.CheckedIn)
    assert summary.check_ins == len(check_ins) > 50
    now = datetime.now(UTC)
    for _, check_in in check_ins:
        assert check_in.effective_at < now
        offset = (check_in.effective_at.date() - cycle.starts_on).days
        assert offset > 0 and offset % 7 == 0
        assert check_in.confidence is not None and 0 <= check_in.confidence <= 1
        assert check_in.note
    # Check-ins spread over the weeks, not all on one day.
    assert len({c.effective_at for _, c in check_ins}) >= 6


def test_demo_kpis_have_ninety_days_of_readings_ending_today(loaded) -> None:
    ledger, summary, events = loaded
    kpis = {name: ledger.load(i, Kpi) for name, i in summary.kpi_ids.items()}
    assert {kpi.direction for kpi in kpis.values()} == set(DIRECTIONS)
    assert {kpi.frequency for kpi in kpis.values()} == {"daily"}
    days: dict[UUID, list[date]] = defaultdict(list)
    for _, reading in events_of(events, Reading.Recorded):
        days[reading.kpi_id].append(reading.observed_at.date())
    expected = [TODAY - timedelta(days=n) for n in range(89, -1, -1)]
    assert set(days) == {kpi.id for kpi in kpis.values()}
    for kpi_days in days.values():
        assert sorted(kpi_days) == expected
    assert summary.readings == 90 * len(kpis)
    # A threshold change with its own effective date.
    (_, change), *_ = events_of(events, Kpi.ThresholdsChanged)
    assert change.effective_from < day_start(TODAY) and change.reason


def test_demo_holds_a_correction_and_a_reading_recorded_after_later_ones(loaded) -> None:
    ledger, _, events = loaded
    corrections = events_of(events, Reading.Corrected)
    assert len(corrections) == 1
    position, correction = corrections[0]
    recorded = next(
        (p, e)
        for p, e in events_of(events, Reading.Recorded)
        if e.originator_id == correction.originator_id
    )
    assert recorded[0] < position and recorded[1].value != correction.value and correction.reason
    reading = ledger.load(correction.originator_id, Reading)
    assert reading.value == correction.value  # the correction supersedes the value...
    assert ledger.reading(reading.kpi_id, reading.reading_id).id == reading.id  # ...the same one

    latest: dict[UUID, datetime] = {}
    late = []
    for _, reading in events_of(events, Reading.Recorded):
        if reading.kpi_id in latest and reading.observed_at < latest[reading.kpi_id]:
            late.append(reading)
        latest[reading.kpi_id] = max(
            latest.get(reading.kpi_id, reading.observed_at), reading.observed_at
        )
    assert len(late) == 1
    assert late[0].observed_at < day_start(TODAY)


def test_a_second_load_is_refused_and_records_nothing(loaded) -> None:
    ledger, _, _ = loaded
    head = ledger.head_position()
    with pytest.raises(LedgerNotEmpty) as refused:
        load_demo(ledger, today=TODAY)
    assert isinstance(refused.value, DomainError) and refused.value.field == "ledger"
    assert "empty" in refused.value.message
    assert ledger.head_position() == head


def test_force_loads_the_demo_again_beside_what_is_there(loaded) -> None:
    ledger, first, _ = loaded
    second = load_demo(ledger, today=TODAY, force=True)
    assert second.position == ledger.head_position() == first.position + second.events
    assert second.cycle_id != first.cycle_id
    assert set(second.kpi_ids.values()).isdisjoint(first.kpi_ids.values())


def test_a_future_today_is_refused(ledger: Ledger) -> None:
    with pytest.raises(DomainError) as refused:
        load_demo(ledger, today=TODAY + timedelta(days=2))
    assert refused.value.field == "today"
    assert ledger.is_empty()


def test_the_demo_is_deterministic_apart_from_ids_and_timestamps(tmp_path) -> None:
    runs = []
    for name in ("one", "two"):
        ledger = Ledger(Settings(database_url=f"sqlite:///{tmp_path}/{name}.db"))
        try:
            load_demo(ledger, today=date(2026, 3, 2))
            runs.append(_normalised(ledger))
        finally:
            ledger.close()
    assert runs[0] == runs[1]


def _normalised(ledger: Ledger) -> list[tuple[str, dict[str, Any]]]:
    """Events with UUIDs replaced by their order of first appearance, timestamps dropped."""
    aliases: dict[UUID, int] = {}

    def alias(value: Any) -> Any:
        if isinstance(value, UUID):
            return f"id{aliases.setdefault(value, len(aliases))}"
        if isinstance(value, list):
            return [alias(item) for item in value]
        return value

    return [
        (
            type(event).__qualname__,
            {k: alias(v) for k, v in vars(event).items() if k not in ("timestamp", "secret_hash")},
        )
        for _, event in ledger.read_events()
    ]
