"""Replay determinism: rebuilding every read model from the log gives the live projector's state.

Random command sequences are applied to a ledger while a small-batch projector follows
them live; afterwards a rebuild from scratch must produce exactly the same rows.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol, TypeVar
from uuid import UUID

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from projection_fixtures import notification_ids

from goalledger.api.bootstrap import System, bootstrap
from goalledger.core.errors import DomainError
from goalledger.core.kpis import DIRECTIONS, FREQUENCIES, thresholds_for
from goalledger.core.ledger import ReadingInput
from goalledger.core.objectives import OBJECTIVE_STATUSES
from goalledger.core.settings import Settings
from goalledger.projections.history import audit_events
from goalledger.projections.projector import Projector, rebuild, view_state

T = TypeVar("T")
# Odd but exact decimals: exponents, trailing zeros and negative zero must survive as written.
# Bounded by PostgreSQL's per-commit cost here (~20 ms a command or a batch).
LONG_SEQUENCE = 150
ODD_DECIMALS = [Decimal("1E+2"), Decimal("0.10"), Decimal("-0"), Decimal("99.999999")]


class Chooser(Protocol):
    """Where a command sequence gets its random choices: hypothesis or a seeded Random."""

    def pick(self, options: Sequence[T]) -> T: ...
    def integer(self, low: int, high: int) -> int: ...


class DrawChooser:
    """Choices drawn by hypothesis, so failures shrink to short sequences."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def pick(self, options: Sequence[T]) -> T:
        return self.data.draw(st.sampled_from(options))

    def integer(self, low: int, high: int) -> int:
        return self.data.draw(st.integers(low, high))


class SeededChooser:
    """Choices from a seeded `random.Random`, for one long reproducible sequence."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def pick(self, options: Sequence[T]) -> T:
        return self.random.choice(list(options))

    def integer(self, low: int, high: int) -> int:
        return self.random.randint(low, high)


class Scenario:
    """Issues random but mostly valid commands against a ledger, remembering what exists."""

    def __init__(self, system: System, choose: Chooser) -> None:
        self.ledger = system.ledger
        self.c = choose
        self.cycles: list[UUID] = []
        self.teams: list[UUID] = []
        self.objectives: list[UUID] = []
        self.key_results: list[tuple[UUID, str]] = []
        self.kpis: list[tuple[UUID, str]] = []
        self.readings: list[tuple[UUID, str]] = []
        self.tokens: list[UUID] = []
        self.refused = 0

    # -- random values --------------------------------------------------------------------

    def back_dated(self) -> datetime:
        return datetime.now(UTC) - timedelta(minutes=self.c.integer(0, 90 * 24 * 60))

    def number(self) -> Decimal:
        if self.c.integer(0, 9) == 0:
            return self.c.pick(ODD_DECIMALS)
        return Decimal(self.c.integer(-2000, 20000)) / 100

    def maybe(self, options: Sequence[T]) -> T | None:
        return self.c.pick([None, *options]) if options else None

    # -- commands ---------------------------------------------------------------------------

    def step(self) -> None:
        """Issue one command; a refused one (DomainError) must record nothing."""
        commands: list[Callable[[], Any]] = [self.define_cycle, self.form_team, self.define_kpi]
        if self.teams:
            commands.append(self.change_team)
        if self.cycles and self.teams:
            commands += [self.define_objective] * 2
        if self.objectives:
            commands += [self.define_key_result] * 2
            commands += [self.align_objective, self.change_objective, self.close_cycle]
        if self.key_results:
            commands += [self.check_in] * 4 + [self.change_target]
        if self.kpis:
            commands += [self.record_readings] * 4 + [self.change_kpi]
        if self.readings:
            commands += [self.correct_reading] * 2
        commands.append(self.token)
        command = self.c.pick(commands)
        head = self.ledger.head_position()
        try:
            command()
        except DomainError:
            self.refused += 1
            assert self.ledger.head_position() == head, f"{command.__name__} was refused"

    def define_cycle(self) -> None:
        starts_on = datetime.now(UTC).date() - timedelta(days=self.c.integer(0, 90))
        ends_on = starts_on + timedelta(days=self.c.integer(1, 120))
        name = f"cycle-{len(self.cycles)}"
        self.cycles.append(
            self.ledger.define_cycle(name=name, starts_on=starts_on, ends_on=ends_on, actor="a").id
        )

    def close_cycle(self) -> None:
        cycle = self.c.pick(self.cycles)
        self.ledger.close_cycle(cycle, rule="linear-v1", actor="a", reason="quarter end")

    def form_team(self) -> None:
        team = self.ledger.form_team(
            name=f"team-{len(self.teams)}", parent_id=self.maybe(self.teams),
            check_in_interval_days=self.c.integer(1, 30), actor="a",
        )  # fmt: skip
        self.teams.append(team.id)

    def change_team(self) -> None:
        team = self.c.pick(self.teams)
        changes: dict[str, Any] = self.c.pick(
            [
                {"name": f"renamed-{self.c.integer(0, 99)}"},
                {"parent_id": self.c.pick(self.teams)},
                {"clear_parent": True},
                {"check_in_interval_days": self.c.integer(1, 30)},
            ]
        )
        self.ledger.change_team(team, actor="a", reason="reorg", **changes)

    def define_objective(self) -> None:
        parent_objective = self.maybe(self.objectives)
        parent_kr = self.maybe([kr for kr, _ in self.key_results]) if not parent_objective else None
        objective = self.ledger.define_objective(
            title=f"objective-{len(self.objectives)}", cycle_id=self.c.pick(self.cycles),
            team_id=self.c.pick(self.teams), owner=self.c.pick(["bob", "eve"]),
            kind=self.c.pick(["committed", "aspirational"]),
            status=self.c.pick(["draft", "active"]), parent_objective_id=parent_objective,
            parent_key_result_id=parent_kr, effective_at=self.back_dated(), actor="a",
        )  # fmt: skip
        self.objectives.append(objective.id)

    def align_objective(self) -> None:
        objective = self.c.pick(self.objectives)
        parent_objective = self.maybe(self.objectives)
        parent_kr = self.maybe([kr for kr, _ in self.key_results]) if not parent_objective else None
        self.ledger.align_objective(
            objective, parent_objective_id=parent_objective, parent_key_result_id=parent_kr,
            effective_at=self.back_dated(), actor="a", reason="re-aligned",
        )  # fmt: skip

    def change_objective(self) -> None:
        objective = self.c.pick(self.objectives)
        if self.c.integer(0, 1):
            status = self.c.pick(OBJECTIVE_STATUSES)
            self.ledger.change_objective_status(objective, status=status, actor="a")
        else:
            self.ledger.edit_objective(
                objective, title=f"edited-{self.c.integer(0, 99)}", owner="dana", actor="a",
                reason="wording",
            )  # fmt: skip

    def define_key_result(self) -> None:
        kind = self.c.pick(
            ["increase_to", "decrease_to", "stay_above", "stay_below", "stay_within", "milestone"]
        )
        low, high = sorted((self.number(), self.number()))
        shape: dict[str, Any] = {
            "increase_to": {"start": low, "target": high},
            "decrease_to": {"start": high, "target": low},
            "stay_above": {"target": low},
            "stay_below": {"target": high},
            "stay_within": {"band_low": low, "band_high": high},
            "milestone": {"steps": ["design", "build", "ship"][: self.c.integer(0, 3)]},
        }[kind]
        kpi = self.maybe([k for k, _ in self.kpis]) if kind != "milestone" else None
        kr = self.ledger.define_key_result(
            self.c.pick(self.objectives), title=f"kr-{len(self.key_results)}", kind=kind,
            weight=Decimal(self.c.integer(1, 5)), kpi_id=kpi, effective_at=self.back_dated(),
            actor="a", **shape,
        )  # fmt: skip
        self.key_results.append((kr.id, kind))

    def change_target(self) -> None:
        kr, kind = self.c.pick(self.key_results)
        changes: dict[str, Any] = {"weight": Decimal(self.c.integer(1, 9))}
        if kind in ("stay_above", "stay_below"):
            changes["target"] = self.number()
        elif kind == "stay_within":
            changes["band_low"], changes["band_high"] = sorted((self.number(), self.number()))
        self.ledger.change_key_result_target(
            kr, actor="a", reason="re-planned", effective_at=self.back_dated(), **changes
        )

    def check_in(self) -> None:
        kr, kind = self.c.pick(self.key_results)
        progress: dict[str, Any] = (
            {"done": self.c.pick([True, False])}
            if kind == "milestone"
            else {"value": self.number()}
        )
        self.ledger.check_in(
            kr, confidence=self.c.pick([None, Decimal("0.1"), Decimal("0.45"), Decimal("0.9")]),
            note=self.c.pick(["", "steady", "blocked"]), effective_at=self.back_dated(),
            actor=self.c.pick(["bob", "eve"]), **progress,
        )  # fmt: skip

    def define_kpi(self) -> None:
        direction = self.c.pick(DIRECTIONS)
        low, high = sorted((self.number(), self.number()))
        if direction == "target_band":
            thresholds = thresholds_for(direction, [low, high], [low - 1, high + 1])
        elif direction == "higher_is_better":
            thresholds = thresholds_for(direction, high, low)
        else:
            thresholds = thresholds_for(direction, low, high)
        kpi = self.ledger.define_kpi(
            name=f"kpi-{len(self.kpis)}", direction=direction, thresholds=thresholds,
            frequency=self.c.pick(FREQUENCIES), team_id=self.maybe(self.teams),
            target=self.maybe([high]), effective_at=self.back_dated(), actor="a",
        )  # fmt: skip
        self.kpis.append((kpi.id, direction))

    def change_kpi(self) -> None:
        kpi, direction = self.c.pick(self.kpis)
        what = self.c.integer(0, 2)
        if what == 0:
            low, high = sorted((self.number(), self.number()))
            green, amber = {
                "target_band": ([low, high], [low - 5, high + 5]),
                "higher_is_better": (high, low),
                "lower_is_better": (low, high),
            }[direction]
            self.ledger.change_kpi_thresholds(
                kpi, thresholds=thresholds_for(direction, green, amber),
                effective_from=self.back_dated(), actor="a", reason="new SLO",
            )  # fmt: skip
        elif what == 1:
            self.ledger.change_kpi(kpi, name=f"renamed-{self.c.integer(0, 99)}", actor="a")
        else:
            self.ledger.bind_kpi_source(kpi, source=None, actor="a", reason="manual entry")

    def record_readings(self) -> None:
        batch = []
        for _ in range(self.c.integer(1, 4)):
            kpi, _direction = self.c.pick(self.kpis)
            reading_id = f"r{self.c.integer(0, 6)}"  # a small pool: duplicates are common
            batch.append(ReadingInput(kpi, reading_id, self.number(), self.back_dated()))
        written = self.ledger.record_readings(batch, source="hypothesis", actor="bot")
        for item in batch:
            if item.reading_id in written.recorded:
                self.readings.append((item.kpi_id, item.reading_id))

    def correct_reading(self) -> None:
        kpi, reading_id = self.c.pick(self.readings)
        self.ledger.correct_reading(
            kpi, reading_id, value=self.number(), reason="corrected", actor="carol"
        )

    def token(self) -> None:
        if self.tokens and self.c.integer(0, 1):
            self.ledger.revoke_token(self.tokens.pop(), actor="admin", reason="rotated")
        else:
            written, _secret = self.ledger.issue_token(name="t", role="viewer", actor="admin")
            self.tokens.append(written.id)


def run_and_compare(system: System, choose: Chooser, *, steps: int, rebuild_batch: int) -> Scenario:
    """Apply `steps` commands with a 3-event-batch projector following live; then rebuild."""
    live = Projector(system.ledger, system.store, batch_size=3)
    scenario = Scenario(system, choose)
    for _ in range(steps):
        scenario.step()
        for _ in range(choose.integer(0, 2)):
            live.run_batch()
    live.catch_up()
    assert live.position() == system.ledger.head_position()
    ids = notification_ids(system.ledger)
    assert [e.position for e in audit_events(system.queries, limit=len(ids) + 1)] == ids
    live_state = view_state(system.store)
    rebuild(system.ledger, system.store, batch_size=rebuild_batch)
    assert view_state(system.store) == live_state
    return scenario


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
@given(st.data())
def test_rebuild_equals_live_projection(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{directory}/ledger.db"
        with bootstrap(Settings(database_url=url, sqlite_synchronous="normal")) as system:
            run_and_compare(
                system,
                DrawChooser(data),
                steps=data.draw(st.integers(1, 40)),
                rebuild_batch=data.draw(st.sampled_from([1, 7, 5000])),
            )


def test_long_sequence_rebuild_equals_live_projection(settings: Settings) -> None:
    with bootstrap(settings) as system:
        # Rebuilt in batches of 4, so batch boundaries differ from the live run's 3.
        scenario = run_and_compare(
            system, SeededChooser(20261122), steps=LONG_SEQUENCE, rebuild_batch=4
        )
        # The sequence exercised what it was meant to.
        assert scenario.readings and scenario.key_results and scenario.objectives
        topics = {e.topic for e in audit_events(system.queries, limit=100_000)}
        assert {
            "goalledger/reading/corrected", "goalledger/kpi/thresholds-changed",
            "goalledger/objective/aligned", "goalledger/cycle/closed",
            "goalledger/key-result/checked-in", "goalledger/token/revoked",
        } <= topics  # fmt: skip
