"""The composition root: the one place that wires settings, ledger, projector, plugins
and queries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from goalledger.core.breaker import Breaker, guard_datastore
from goalledger.core.kpis import SourceBinding
from goalledger.core.ledger import Ledger
from goalledger.core.secrets import Keyring
from goalledger.core.settings import Settings
from goalledger.core.subscriptions import Channel
from goalledger.plugins.delivery import Sender
from goalledger.plugins.fetch import SourceRunner
from goalledger.plugins.manager import PluginRegistry, enabled_from_env, load_plugins
from goalledger.plugins.rekey import check_keys, warn_of_stale
from goalledger.plugins.scheduler import Scheduler
from goalledger.projections.projector import Projector
from goalledger.projections.queries import Views
from goalledger.projections.store import PostgresViewStore, ViewStore, open_view_store


class System:
    """A whole goalledger: ledger, read models, projector, plugins and queries, built
    together. `plugins` defaults to the built-ins plus the installed entry points that
    `GOALLEDGER_PLUGINS` allows."""

    def __init__(self, settings: Settings, plugins: PluginRegistry | None = None) -> None:
        self.settings = settings
        self.plugins = plugins if plugins is not None else load_plugins(enabled_from_env())
        # Plugin-config secrets are sealed and opened with these (docs/secrets.md).
        self.plugins.keyring = Keyring.parse(settings.secret_key, settings.secret_keys_previous)
        self.ledger = Ledger(settings)
        self.store: ViewStore = open_view_store(settings)
        # PostgreSQL: one breaker for the ledger's pool and the read models' connections,
        # so that an outage answers 503 at once rather than after eventsourcing's retries.
        self.breaker: Breaker | None = None
        if isinstance(self.store, PostgresViewStore):
            self.breaker = Breaker.for_storage(settings.storage())
            guard_datastore(self.ledger.factory.datastore, self.breaker)  # type: ignore[attr-defined]
            self.store.breaker = self.breaker
        self.projector = Projector(self.ledger, self.store)
        self.sources = SourceRunner(self.ledger, self.plugins)
        self.sender = Sender(self.plugins)
        self.scheduler = Scheduler(self.ledger, self.sources)  # started by serve/worker
        self.queries = Views(self.store, rules=self.plugins.rules)

    def redact(self, value: Any) -> Any:
        """`value` fit for output: a plugin binding's secret config values masked."""
        if isinstance(value, (SourceBinding, Channel)):
            return self.plugins.redact(value)
        return value

    def catch_up(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Bring the read models up to the ledger's head; returns events applied."""
        return self.projector.catch_up(progress)

    def close(self) -> None:
        """Stop the projector and release every connection."""
        self.scheduler.stop()
        self.projector.stop()
        self.store.close()
        self.ledger.close()
        if self.breaker is not None:
            self.breaker.close()

    def __enter__(self) -> System:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def bootstrap(
    settings: Settings | None = None,
    plugins: PluginRegistry | None = None,
    *,
    check_secrets: bool = False,
) -> System:
    """Build a whole system from settings (default: the `GOALLEDGER_*` environment).

    With `check_secrets` (serve and worker), refuse to start (`SecretKeyProblem`) unless
    every key that the secrets in use were sealed with is set.
    """
    system = System(settings or Settings.from_env(), plugins)
    if check_secrets:
        try:
            warn_of_stale(check_keys(system.ledger, system.plugins), system.plugins.keyring)
        except BaseException:
            system.close()
            raise
    return system
