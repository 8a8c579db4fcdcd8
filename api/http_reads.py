"""Small read-model queries behind the API's lists (ids in order, check-in history).

Lists page through the read models (so pages are stable and gap-free); the items'
full state then comes from the ledger, which also gives each one its version.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import msgspec

from goalledger.api.bootstrap import System
from goalledger.core.tokens import Token
from goalledger.projections.queries import latest
from goalledger.projections.schema import from_dec, from_ts
from goalledger.projections.store import Tx


class CheckInOut(msgspec.Struct, frozen=True):
    """One check-in of a key result, as recorded."""

    position: int
    value: Decimal | None
    done: bool | None
    steps_done: int | None
    confidence: Decimal | None
    note: str
    actor: str
    effective_at: datetime
    recorded_at: datetime


def _in(column: str, values: Collection[str]) -> str:
    return f"{column} IN ({', '.join('?' for _ in values)})" if values else "1 = 0"


def cycle_ids(system: System, after: int, limit: int) -> list[tuple[str, int]]:
    """(id, defined position) of cycles after a defined position, oldest first."""
    with system.store.read() as tx:
        t = system.queries.tables(tx)
        return tx.all(
            f"SELECT id, defined_position FROM {t['cycles']} WHERE defined_position > ?"
            f" ORDER BY defined_position LIMIT {int(limit)}",
            (after,),
        )


def teams(tx: Tx, t: dict[str, str]) -> dict[str, str | None]:
    """Every projected team's current parent."""
    sql = f"SELECT id, parent_id FROM {latest(t['teams'], 'id, parent_id')} x"
    return dict(tx.all(sql, (2**62,)))


def subtree(parents: dict[str, str | None], root: UUID) -> set[str]:
    """A team and every team under it."""
    children: dict[str | None, list[str]] = {}
    for team_id, parent in parents.items():
        children.setdefault(parent, []).append(team_id)
    found, frontier = {str(root)}, [str(root)]
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in found:
                found.add(child)
                frontier.append(child)
    return found


def team_ids(system: System, after: str, limit: int, within: UUID | None) -> list[str]:
    """Projected team ids after `after`, in id order; only `within`'s subtree if given."""
    with system.store.read() as tx:
        t = system.queries.tables(tx)
        parents = teams(tx, t)
        ids = sorted(parents if within is None else subtree(parents, within) & set(parents))
    return [i for i in ids if i > after][:limit]


def kpi_ids(system: System, after: int, limit: int, within: UUID | None) -> list[tuple[str, int]]:
    """(id, defined position) of KPIs after a position; scoped: the subtree's and org-wide."""
    with system.store.read() as tx:
        t = system.queries.tables(tx)
        where, params = "defined_position > ?", [after]
        if within is not None:
            scope = sorted(subtree(teams(tx, t), within))
            where += f" AND (team_id IS NULL OR {_in('team_id', scope)})"
            params += scope
        return tx.all(
            f"SELECT id, defined_position FROM {t['kpis']} WHERE {where}"
            f" ORDER BY defined_position LIMIT {int(limit)}",
            params,
        )


def check_ins(system: System, kr_id: UUID, after: int, limit: int) -> list[CheckInOut]:
    """A key result's check-ins after a position, in recorded order."""
    with system.store.read() as tx:
        t = system.queries.tables(tx)
        rows = tx.all(
            f"SELECT position, value, done, steps_done, confidence, note, actor, effective_at,"
            f" recorded_at FROM {t['check_ins']} WHERE kr_id = ? AND position > ?"
            f" ORDER BY position LIMIT {int(limit)}",
            (str(kr_id), after),
        )
    return [
        CheckInOut(
            position=row[0], value=from_dec(row[1]),
            done=None if row[2] is None else bool(row[2]), steps_done=row[3],
            confidence=from_dec(row[4]), note=row[5], actor=row[6],
            effective_at=from_ts(row[7]), recorded_at=from_ts(row[8]),
        )  # type: ignore[arg-type]
        for row in rows
    ]  # fmt: skip


def token_ids(system: System, after: int, limit: int) -> list[tuple[str, int]]:
    """(id, position issued) of tokens issued after a position, oldest first."""
    with system.store.read() as tx:
        t = system.queries.tables(tx)
        return tx.all(
            f"SELECT aggregate_id, position FROM {t['events']} WHERE topic = ? AND position > ?"
            f" ORDER BY position LIMIT {int(limit)}",
            (Token.Issued.TOPIC, after),
        )
