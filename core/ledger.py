"""The ledger: one eventsourcing Application that owns every aggregate.

One application means one notification log, so every event in goalledger has
one global position. Commands here are what the API, the CLI, the demo loader
and the plugins call; each returns where its events landed in that log. They are
grouped by subject in `ledger_goals`, `ledger_kpis` and `ledger_access`, on the
storage and recording of `ledger_base`.
"""

from __future__ import annotations

from goalledger.core.ledger_access import AccessCommands
from goalledger.core.ledger_base import UNCHANGED, LedgerBase, Unchanged, Written
from goalledger.core.ledger_goals import MAX_ALIGNMENT_DEPTH, GoalCommands
from goalledger.core.ledger_kpis import KpiCommands, ReadingInput, ReadingsWritten

__all__ = [
    "MAX_ALIGNMENT_DEPTH",
    "UNCHANGED",
    "Ledger",
    "LedgerBase",
    "ReadingInput",
    "ReadingsWritten",
    "Unchanged",
    "Written",
]


class Ledger(GoalCommands, KpiCommands, AccessCommands):
    """goalledger's single event-sourced application."""

    name = "goalledger"
