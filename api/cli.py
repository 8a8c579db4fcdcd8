"""The `goalledger` command line.

Every command that fails exits non-zero with one line on stderr, never a traceback:
2 for input the domain refuses (or a usage error), 3 for a conflict, 4 for something
that is not there, 1 for anything else (a database that cannot be reached, say).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from uuid import UUID

import click
import msgspec
from rich.console import Console

from goalledger.api.cli_audit import audit
from goalledger.api.cli_plugins import plugins
from goalledger.api.cli_secrets import secrets
from goalledger.api.cli_serve import serve
from goalledger.api.cli_worker import worker
from goalledger.api.clikit import (
    EXIT_FAILED,
    EXIT_INVALID,
    TIMESTAMP,
    Cli,
    CommandFailed,
    LedgerGroup,
    event_progress,
)
from goalledger.api.demo import LedgerNotEmpty, load_demo
from goalledger.api.render import render_scoreboard
from goalledger.core.settings import DEFAULT_DATABASE_URL, Settings
from goalledger.core.tokens import ROLES, Token


@click.group(name="goalledger", cls=LedgerGroup)
@click.option(
    "--database-url",
    envvar="GOALLEDGER_DATABASE_URL",
    default=DEFAULT_DATABASE_URL,
    show_default=True,
    show_envvar=True,
    help="Where the ledger lives: sqlite:///path/to/file.db or postgresql://user@host/db.",
)
@click.option("--traceback", is_flag=True, help="Show the full traceback of an unexpected error.")
@click.version_option(package_name="goalledger")
@click.pass_context
def goalledger(ctx: click.Context, database_url: str, traceback: bool) -> None:
    """goalledger: an event-sourced ledger for OKRs and KPIs."""
    ctx.obj = Cli(database_url=database_url, traceback=traceback)


# -- demo ------------------------------------------------------------------------------


@goalledger.command()
@click.option(
    "--force",
    is_flag=True,
    help="Load the demo even into a ledger that already holds events (adds another copy).",
)
@click.pass_obj
def demo(cli: Cli, force: bool) -> None:
    """Load a demo organisation and print its scoreboard."""
    settings = cli.settings()
    out, err = Console(), Console(stderr=True)
    try:
        with cli.ledger(settings) as ledger, event_progress(err, "Loading demo") as progress:
            summary = load_demo(
                ledger,
                today=datetime.now(UTC).date(),
                actor=cli.actor,
                progress=progress,
                force=force,
            )
    except LedgerNotEmpty as error:
        raise CommandFailed(
            f"{error.field}: {error.message}; 'goalledger demo --force' adds the demo anyway",
            EXIT_INVALID,
        ) from None
    out.print(
        f"Loaded the demo: {summary.events} events ({len(summary.team_ids)} teams, "
        f"{len(summary.objective_ids)} objectives, {len(summary.key_result_ids)} key results, "
        f"{len(summary.kpi_ids)} KPIs with {summary.readings} readings, "
        f"{summary.check_ins} check-ins) up to ledger position {summary.position}.",
        highlight=False,
    )
    out.print(f"Ledger: {settings.storage().describe()}", highlight=False, soft_wrap=True)
    show_scoreboard(settings, summary.cycle_id, out, err)


def show_scoreboard(settings: Settings, cycle_id: UUID, out: Console, err: Console) -> None:
    """Bring the projections up to date and print one cycle's scoreboard.

    The one place the command line wires in the read side.
    """
    from goalledger.api.bootstrap import bootstrap  # the composition root

    with bootstrap(settings) as system:
        with event_progress(err, "Projecting") as progress:
            system.catch_up(progress=progress)
        board = system.queries.scoreboard(cycle_id=cycle_id)
    out.print()
    render_scoreboard(board, out)


# -- tokens ----------------------------------------------------------------------------


@goalledger.group()
def tokens() -> None:
    """Issue and revoke API tokens."""


@tokens.command("create")
@click.option("--role", required=True, help=f"One of {', '.join(ROLES)}.")
@click.option("--team", "team_id", type=click.UUID, help="Scope the token to this team's id.")
@click.option("--name", help="A label for the token (default: '<role> token').")
@click.option("--expires-at", type=TIMESTAMP, help="When the token stops working (RFC 3339).")
@click.option("--expires-in", type=click.FloatRange(min=0, min_open=True), help="Or: in DAYS.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the token as one line of JSON (the secret stays on the last line).",
)
@click.pass_obj
def create_token(
    cli: Cli,
    role: str,
    team_id: UUID | None,
    name: str | None,
    expires_at: datetime | None,
    expires_in: float | None,
    as_json: bool,
) -> None:
    """Issue a token; its secret is printed once, alone on the last line of stdout."""
    if expires_at is not None and expires_in is not None:
        raise click.UsageError("give --expires-at or --expires-in, not both")
    if expires_in is not None:
        expires_at = datetime.now(UTC) + timedelta(days=expires_in)
    with cli.ledger() as ledger:
        written, secret = ledger.issue_token(
            name=name or f"{role} token", role=role, team_id=team_id, expires_at=expires_at,
            actor=cli.actor,
        )  # fmt: skip
        token = ledger.load(written.id, Token)
    if as_json:
        record = {
            "id": str(token.id),
            "name": token.name,
            "role": token.role,
            "team_id": None if token.team_id is None else str(token.team_id),
            "expires_at": None if token.expires_at is None else token.expires_at.isoformat(),
            "position": written.position,
        }
        click.echo(json.dumps(record))
    else:
        scope = f"team {token.team_id}" if token.team_id else "all teams"
        until = f", until {token.expires_at.isoformat()}" if token.expires_at else ""
        click.echo(f"Issued token {token.id} ({token.name!r}, role {token.role}, {scope}{until}).")
        click.echo("Its secret is shown only this once; store it now:")
    click.echo(secret)


@tokens.command("revoke")
@click.argument("token_id", metavar="ID", type=click.UUID)
@click.option("--reason", help="Why the token is revoked (kept in the audit trail).")
@click.pass_obj
def revoke_token(cli: Cli, token_id: UUID, reason: str | None) -> None:
    """Revoke a token; it authenticates nothing from then on."""
    with cli.ledger() as ledger:
        written = ledger.revoke_token(token_id, actor=cli.actor, reason=reason)
    click.echo(f"Revoked token {written.id} at ledger position {written.position}.")


# -- projections and the scoreboard ----------------------------------------------------


@goalledger.group()
def projections() -> None:
    """Rebuild the read models or see how far they trail the ledger."""


@projections.command("rebuild")
@click.pass_obj
def rebuild_projections(cli: Cli) -> None:
    """Build every read model afresh beside the live ones, then swap them in."""
    from goalledger.api.bootstrap import bootstrap
    from goalledger.projections.projector import rebuild

    with bootstrap(cli.settings()) as system:
        head = system.ledger.head_position()
        started = datetime.now(UTC)
        with event_progress(Console(stderr=True), "Rebuilding") as progress:
            generation = rebuild(system.ledger, system.store, progress)
        seconds = max((datetime.now(UTC) - started).total_seconds(), 1e-9)
    click.echo(
        f"Rebuilt the read models from {head:,} events in {seconds:.1f}s "
        f"({head / seconds:,.0f} events/s); generation {generation} is live. "
        "No notification was sent."
    )


@projections.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
@click.pass_obj
def projection_status(cli: Cli, as_json: bool) -> None:
    """Show the ledger head, the projected position, the lag and any failure."""
    from goalledger.api.bootstrap import bootstrap

    with bootstrap(cli.settings()) as system:
        lag = system.projector.lag()
    if as_json:
        click.echo(json.dumps(msgspec.to_builtins(lag)))
    else:
        click.echo(
            f"head {lag.head}, projected {lag.position}, {lag.positions_behind} behind "
            f"({lag.seconds_behind:.1f}s)" + (f"; FAILED: {lag.failed}" if lag.failed else "")
        )
    if lag.failed:
        raise click.exceptions.Exit(EXIT_FAILED)


@goalledger.command()
@click.option("--cycle", "cycle_id", type=click.UUID, help="Cycle id (default: the current one).")
@click.option("--team", "team_id", type=click.UUID, help="Only this team and its sub-teams.")
@click.option("--as-of", "as_of", type=TIMESTAMP, help="Effective time (RFC 3339 with offset).")
@click.option("--known-at", "known_at", type=TIMESTAMP, help="What the ledger knew then.")
@click.option("--rule", help="Score under another registered rule (what-if; writes nothing).")
@click.option("--json", "as_json", is_flag=True, help="Print the scoreboard as JSON.")
@click.pass_obj
def scoreboard(
    cli: Cli,
    cycle_id: UUID | None,
    team_id: UUID | None,
    as_of: datetime | None,
    known_at: datetime | None,
    rule: str | None,
    as_json: bool,
) -> None:
    """Print a cycle's scoreboard, now or as it stood at another time."""
    from goalledger.api.bootstrap import bootstrap

    with bootstrap(cli.settings()) as system:
        with event_progress(Console(stderr=True), "Projecting") as progress:
            system.catch_up(progress=progress)
        board = system.queries.scoreboard(
            cycle_id=cycle_id, team_id=team_id, as_of=as_of, known_at=known_at, rule=rule
        )
    if as_json:
        click.echo(msgspec.json.encode(board).decode())
    else:
        render_scoreboard(board, Console())


goalledger.add_command(audit)
goalledger.add_command(plugins)
goalledger.add_command(secrets)
goalledger.add_command(serve)
goalledger.add_command(worker)


def main() -> None:
    """Console entry point."""
    goalledger(prog_name="goalledger")


if __name__ == "__main__":
    main()
