"""The composition root: the one place that wires settings, ledger, projector and queries."""

from __future__ import annotations

from collections.abc import Callable

from goalledger.core.ledger import Ledger
from goalledger.core.scoring import BUILTIN_RULES
from goalledger.core.settings import Settings
from goalledger.projections.projector import Projector
from goalledger.projections.queries import Views
from goalledger.projections.store import ViewStore, open_view_store


class System:
    """A whole goalledger: ledger, read models, projector and queries, built together."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ledger = Ledger(settings)
        self.store: ViewStore = open_view_store(settings)
        self.projector = Projector(self.ledger, self.store)
        self.queries = Views(self.store, rules={rule.id: rule for rule in BUILTIN_RULES})

    def catch_up(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Bring the read models up to the ledger's head; returns events applied."""
        return self.projector.catch_up(progress)

    def close(self) -> None:
        """Stop the projector and release every connection."""
        self.projector.stop()
        self.store.close()
        self.ledger.close()

    def __enter__(self) -> System:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def bootstrap(settings: Settings | None = None) -> System:
    """Build a whole system from settings (default: the `GOALLEDGER_*` environment)."""
    return System(settings or Settings.from_env())
