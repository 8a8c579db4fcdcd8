"""`goalledger serve`: the HTTP API on uvicorn, with the projector, alert clock and
dispatcher in a child process it supervises by default (api/worker_process.py)."""

from __future__ import annotations

import gc
import logging
import signal
from datetime import UTC, datetime

import click
import uvicorn
from rich.console import Console

from goalledger.api.clikit import Cli, event_progress
from goalledger.core.settings import Storage

STREAM_GRACE_SECONDS = 3
PROJECTOR_MODES = ("process", "thread", "off")
YOUNG_COLLECTION_THRESHOLD = 7_000
STARTUP_CATCH_UP_SECONDS = 15.0


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, envvar="GOALLEDGER_HOST")
@click.option("--port", default=8000, show_default=True, type=int, envvar="GOALLEDGER_PORT")
@click.option(
    "--demo",
    is_flag=True,
    help="Load the demo organisation into an empty ledger; print an admin token.",
)
@click.option(
    "--projector",
    "mode",
    type=click.Choice(PROJECTOR_MODES),
    default="process",
    show_default=True,
    help="Where the projector, alert clock and dispatcher run: a child process this "
    "command starts and supervises, a thread of this process (the only choice for an "
    "in-memory ledger), or off (a separate `goalledger worker` runs them).",
)
@click.option("--no-projector", is_flag=True, help="The same as --projector off.")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
@click.pass_obj
def serve(
    cli: Cli, host: str, port: int, demo: bool, mode: str, no_projector: bool, log_level: str
) -> None:
    """Serve the HTTP API until Ctrl-C or SIGTERM."""
    from goalledger.api.app import create_app
    from goalledger.api.bootstrap import bootstrap
    from goalledger.api.cli_worker import start_deliveries
    from goalledger.api.demo import load_demo
    from goalledger.api.render import render_scoreboard
    from goalledger.api.worker_process import WorkerProcess

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    settings = cli.settings()
    if no_projector:
        mode = "off"
    if mode == "process" and _in_memory(settings.storage()):
        mode = "thread"  # another process would open an empty database of its own
    with bootstrap(settings, check_secrets=True) as system:
        admin_secret = None
        if demo:
            if system.ledger.is_empty():
                with event_progress(Console(stderr=True), "Loading demo") as progress:
                    summary = load_demo(
                        system.ledger, today=datetime.now(UTC).date(), actor=cli.actor,
                        progress=progress,
                    )  # fmt: skip
                with event_progress(Console(stderr=True), "Projecting") as progress:
                    system.catch_up(progress=progress)
                render_scoreboard(system.queries.scoreboard(cycle_id=summary.cycle_id), Console())
            else:
                click.echo("The ledger already holds events: the demo was not loaded again.")
            # A demo server hands out an admin token on every start, so a reader can try
            # the API at once; a real deployment issues tokens with `goalledger tokens`.
            _, admin_secret = system.ledger.issue_token(
                name="demo admin", role="admin", actor=cli.actor
            )
        deliveries = child = None
        if mode != "off":
            # Here whatever the mode: it polls bound metric sources at their frequency,
            # and its sources' health is what /metrics and a manual fetch report.
            system.scheduler.start()
        if mode == "thread":
            system.projector.start()
            deliveries = start_deliveries(system)  # the alert clock and the dispatcher
        app = create_app(system)
        url = f"http://{_display_host(host)}:{port}"
        click.echo(f"goalledger API on {url} ({settings.storage().describe()})")
        click.echo(f"API docs: {url}/schema  ·  OpenAPI: {url}/schema/openapi.json")
        if admin_secret is not None:
            click.echo("Admin token (shown once; send it as 'Authorization: Bearer <token>'):")
            click.echo(admin_secret)
        if mode == "process":  # after the lines above: its output never comes between them
            child = WorkerProcess(cli.database_url, log_level=log_level)
            system.projector.runs_elsewhere(child.wake)
            child.start()
            # Before answering: what the ledger held at start is readable (the embedded
            # projector caught up in milliseconds; a child first starts Python), unless
            # a backlog takes longer, which /ready then reports as lag.
            head = system.ledger.head_position()
            if not system.projector.wait_for(head, STARTUP_CATCH_UP_SECONDS):
                logging.getLogger("goalledger.serve").warning(
                    "serving before the worker child projected up to position %d", head
                )
        # What is built by now lives as long as the server: frozen, it is left out of
        # the collector's full passes, which otherwise held the event loop (and the
        # committer, waiting for the interpreter lock) for 40-80 ms every few seconds
        # under a stream of check-ins: p99 44-47 ms -> 22-25 ms on the bench harness.
        gc.collect()
        gc.freeze()
        # Requests allocate and free thousands of objects: counted from 700, young
        # collections ran ~60 times a second and found little (refcounts free almost
        # all); from 7,000 they all but stop (GC time 0.5 s -> 0.04 s per bench run).
        gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])
        config = uvicorn.Config(
            app, host=host, port=port, log_level=log_level, lifespan="on", server_header=False,
            # Event streams never end by themselves: give them this long, then close them.
            timeout_graceful_shutdown=STREAM_GRACE_SECONDS,
        )  # fmt: skip
        try:
            _run_until_stopped(uvicorn.Server(config))
        finally:
            if child is not None:
                system.projector.runs_elsewhere(None)
                child.stop()
            if deliveries is not None:
                deliveries.stop()
    click.echo("goalledger API stopped.")


def _run_until_stopped(server: uvicorn.Server) -> None:
    """Run until Ctrl-C or SIGTERM, then shut down gracefully and return normally.

    uvicorn re-raises the signal it caught once it has shut down, to the handler it
    found on entry; that handler is this one, so the command ends with exit status 0
    after closing the ledger, rather than dying by the signal.
    """
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in stops}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _in_memory(storage: Storage) -> bool:
    return storage.kind == "sqlite" and (
        storage.path == ":memory:" or "mode=memory" in storage.path
    )


def _display_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
