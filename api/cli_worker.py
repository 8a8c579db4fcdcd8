"""`goalledger worker`: projector, metric-source scheduler, alert clock and notification
dispatcher in one process apart from the API; one active worker at a time."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from goalledger.api.clikit import Cli

if TYPE_CHECKING:  # the command imports the system only when it runs
    from goalledger.api.bootstrap import System
    from goalledger.plugins.delivery import Sender
    from goalledger.plugins.dispatcher import Dispatcher
    from goalledger.plugins.outbox import RetryPolicy
    from goalledger.plugins.worker import Service


class Running:
    """A `Service` from a start and a stop function."""

    def __init__(self, start: Callable[[], object], stop: Callable[[], object]) -> None:
        self._start, self._stop = start, stop

    def start(self) -> None:
        self._start()

    def stop(self) -> None:
        self._stop()


def dispatcher_for(
    system: System, *, sender: Sender | None = None, policy: RetryPolicy | None = None
) -> Dispatcher:
    """A dispatcher over the system's outbox, sending through its plugins' channels."""
    from goalledger.plugins.dispatcher import Dispatcher
    from goalledger.plugins.outbox import TableOutbox
    from goalledger.projections.alert_store import OutboxTables

    outbox = TableOutbox(OutboxTables(system.store))
    return Dispatcher(outbox, system.ledger, sender or system.sender, policy=policy)


def delivery_services(
    system: System,
    *,
    dispatcher: Dispatcher | None = None,
    poll_interval: float = 0.5,
    clock_interval: float = 60.0,
    reclaim: bool = False,
) -> list[Service]:
    """The alert clock (time-based alerts) and the dispatcher, as services; `reclaim`
    (the active worker) takes over leases earlier dispatchers left behind."""
    from goalledger.plugins.worker import Ticker
    from goalledger.projections.alert_clock import AlertClock

    clock = AlertClock(system.store, system.queries)
    dispatcher = dispatcher or dispatcher_for(system)
    return [
        Ticker("goalledger-alert-clock", clock.tick, clock_interval),
        Running(lambda: dispatcher.start(poll_interval, reclaim=reclaim), dispatcher.stop),
    ]


def start_deliveries(system: System) -> Running:
    """Start the alert clock and the dispatcher beside the API (`goalledger serve`)."""
    services = delivery_services(system)
    for service in services:
        service.start()
    return Running(lambda: None, lambda: [service.stop() for service in reversed(services)])


@click.command()
@click.option(
    "--poll-interval",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0.01),
    help="Seconds between looks at the outbox when idle.",
)
@click.option(
    "--clock-interval",
    default=60.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds between checks for time-based alerts (overdue, cycle ending).",
)
@click.option(
    "--scheduler-interval",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds between metric-source scheduler ticks.",
)
@click.option(
    "--delivery-timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds one channel call may take.",
)
@click.option(
    "--max-attempts",
    default=8,
    show_default=True,
    type=click.IntRange(1),
    help="Attempts per delivery before it becomes a dead letter.",
)
@click.option(
    "--retry-delay",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds before the first retry; each later wait doubles (max 1 h).",
)
@click.option(
    "--standby-poll",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.05),
    help="Seconds between a standby worker's tries to become active.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
# For `goalledger serve`, which runs this command as its child (api/worker_process.py).
@click.option("--parent-fd", type=int, hidden=True, help="The server's wake pipe.")
@click.option("--without-scheduler", is_flag=True, hidden=True, help="The server runs it.")
@click.pass_obj
def worker(
    cli: Cli, poll_interval: float, clock_interval: float, scheduler_interval: float,
    delivery_timeout: float, max_attempts: int, retry_delay: float, standby_poll: float,
    log_level: str, parent_fd: int | None, without_scheduler: bool,
) -> None:  # fmt: skip
    """Run the projector, scheduler, alert clock and dispatcher until Ctrl-C or SIGTERM.

    Several workers may run: one is active (a database lock), the others stand by and
    take over within --standby-poll seconds when the active one stops or dies.
    """
    from goalledger.api.bootstrap import bootstrap
    from goalledger.api.worker_process import watch_parent
    from goalledger.plugins.delivery import Sender
    from goalledger.plugins.outbox import RetryPolicy
    from goalledger.plugins.worker import Worker, lock_for

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    settings = cli.settings()
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        with bootstrap(settings, check_secrets=True) as system:
            policy = RetryPolicy(
                max_attempts=max_attempts, first_delay=retry_delay,
                max_delay=max(3600.0, retry_delay),
            )  # fmt: skip
            sender = Sender(system.plugins, timeout=delivery_timeout)
            dispatcher = dispatcher_for(system, sender=sender, policy=policy)
            if parent_fd is not None:
                projector = system.projector
                watch_parent(
                    parent_fd, lambda hurry: projector.hurry() if hurry else projector.notify(),
                    stop.set,
                )  # fmt: skip
            scheduler = Running(
                lambda: system.scheduler.start(scheduler_interval), system.scheduler.stop
            )
            services: list[Service] = [
                Running(system.projector.start, system.projector.stop),
                *([] if without_scheduler else [scheduler]),
                *delivery_services(
                    system, dispatcher=dispatcher, poll_interval=poll_interval,
                    clock_interval=clock_interval, reclaim=True,
                ),
            ]  # fmt: skip
            click.echo(f"goalledger worker on {settings.storage().describe()}", err=True)
            Worker(
                services, lock_for(settings), standby_poll=standby_poll,
                on_state=lambda state: click.echo(f"worker {state}", err=True),
            ).run(stop)  # fmt: skip
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
