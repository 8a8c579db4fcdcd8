"""`goalledger audit`: prove what the ledger holds, carry it elsewhere, and read its past.

verify, anchor and export judge the hash chain the projector keeps, so they never
project anything themselves unless told to (`--catch-up`): an event nobody chained yet
looks exactly like a row forged into the log. history and replay are reports over the
read models and bring them up to date first, as `goalledger scoreboard` does.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import click
import msgspec
from rich import box
from rich.console import Console
from rich.table import Table

from goalledger.api.bootstrap import System, bootstrap
from goalledger.api.clikit import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    TIMESTAMP,
    Cli,
    CommandFailed,
    event_progress,
)
from goalledger.api.render import render_scoreboard
from goalledger.core.errors import DomainError
from goalledger.projections import chain, ledger_io
from goalledger.projections.audit import Change, FieldChange, aggregate_history
from goalledger.projections.projector import rebuild
from goalledger.projections.queries import Moment, Views
from goalledger.projections.schema import from_ts
from goalledger.projections.store import Tx

ANCHOR_KEY = "GOALLEDGER_ANCHOR_KEY"
# Ledgers smaller than this finish before a progress bar would tell anyone anything.
PROGRESS_FROM = 10_000


class Anchor(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A chain head to keep elsewhere: position, hash, when it was taken, which ledger."""

    position: int
    hash: str
    at: str
    ledger: str
    signature: str | None = None


def _signature(anchor: Anchor, key: str) -> str:
    signed = msgspec.json.encode([chain.ALGORITHM, anchor.position, anchor.hash, anchor.at])
    signed += msgspec.json.encode(anchor.ledger)
    return "hmac-sha256:" + hmac.new(key.encode(), signed, hashlib.sha256).hexdigest()


def _read_anchor(path: Path) -> Anchor:
    try:
        anchor = msgspec.json.decode(path.read_bytes(), type=Anchor)
    except (OSError, msgspec.DecodeError) as error:
        raise CommandFailed(f"--anchor: {path} is not an anchor: {error}", EXIT_INVALID) from None
    key = os.environ.get(ANCHOR_KEY)
    if anchor.signature is not None and not key:
        message = f"--anchor: {path} is signed; set {ANCHOR_KEY} to check it"
        raise CommandFailed(message, EXIT_INVALID)
    if key and anchor.signature is None:
        message = f"--anchor: {path} is not signed, yet {ANCHOR_KEY} is set"
        raise CommandFailed(message, EXIT_FAILED)
    if key and not hmac.compare_digest(anchor.signature or "", _signature(anchor, key)):
        raise CommandFailed(f"--anchor: {path} has a bad signature (altered?)", EXIT_FAILED)
    return anchor


@contextmanager
def _system(cli: Cli, catch_up: bool) -> Iterator[System]:
    with bootstrap(cli.settings()) as system:
        if catch_up:
            with event_progress(Console(stderr=True), "Projecting") as progress:
                system.catch_up(progress=progress)
        yield system


def _progress(report: Any, total: int) -> Any:
    return report if total >= PROGRESS_FROM else None


def _verdict(system: System, anchor: chain.Link | None = None, wait: float = 0) -> chain.Verdict:
    head = system.ledger.head_position()
    with event_progress(Console(stderr=True), "Verifying") as report:
        return chain.verify(
            system.ledger, system.store, anchor=anchor, wait=wait, progress=_progress(report, head)
        )


def _broken(broken: chain.Break) -> CommandFailed:
    hint = " (--catch-up chains pending events)" if "beyond the chain head" in broken.detail else ""
    return CommandFailed(
        f"chain broken at position {broken.position}: {broken.reason}: {broken.detail}{hint}",
        EXIT_FAILED,
    )


CATCH_UP = click.option(
    "--catch-up", is_flag=True, help="Project (and so chain) events not yet chained, first."
)


@click.group()
def audit() -> None:
    """Verify the hash chain, anchor it, export/import the ledger, read its past.

    verify, anchor and export never chain events themselves unless given --catch-up:
    an event the projector has not chained yet looks just like a forged one.
    """


@audit.command("verify")
@click.option(
    "--anchor", "anchor_file", type=click.Path(path_type=Path),
    help="An anchor from 'goalledger audit anchor': its link must match too.",
)  # fmt: skip
@click.option(
    "--wait", type=float, default=0.0, metavar="SECONDS",
    help="Let a running projector this long to chain the newest events.",
)  # fmt: skip
@CATCH_UP
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as one JSON object.")
@click.pass_obj
def verify(cli: Cli, anchor_file: Path | None, wait: float, catch_up: bool, as_json: bool) -> None:
    """Recompute the chain from the ledger; exit 0 only if it holds (and matches the anchor)."""
    anchor = _read_anchor(anchor_file) if anchor_file is not None else None
    link = None if anchor is None else chain.Link(anchor.position, anchor.hash)
    with _system(cli, catch_up) as system:
        verdict = _verdict(system, link, wait)
    if as_json:
        click.echo(msgspec.json.encode(verdict).decode())
    if verdict.broken is not None:
        raise _broken(verdict.broken)
    if not as_json:
        top = verdict.head
        where = "empty ledger" if top is None else f"head {top.position} {top.hash}"
        anchored = f"; matches the anchor at position {anchor.position}" if anchor else ""
        click.echo(f"The chain holds over {verdict.checked:,} events ({where}){anchored}.")


@audit.command("anchor")
@CATCH_UP
@click.pass_obj
def anchor(cli: Cli, catch_up: bool) -> None:
    """Verify the chain and print its head as one JSON object (HMAC-signed if a key is set)."""
    settings = cli.settings()
    with _system(cli, catch_up) as system:
        verdict = _verdict(system)
    if verdict.broken is not None:
        raise _broken(verdict.broken)
    top = verdict.head
    if top is None:
        message = "ledger: nothing is chained yet, so there is no head to anchor"
        raise CommandFailed(message, EXIT_NOT_FOUND)
    made = Anchor(
        position=top.position,
        hash=top.hash,
        at=datetime.now(UTC).isoformat(timespec="seconds"),
        ledger=settings.storage().describe(),
    )
    key = os.environ.get(ANCHOR_KEY)
    if key:
        made = msgspec.structs.replace(made, signature=_signature(made, key))
    click.echo(msgspec.json.encode(made).decode())


@audit.command("export")
@click.option("--output", type=click.Path(path_type=Path), help="Write here (default: stdout).")
@CATCH_UP
@click.pass_obj
def export(cli: Cli, output: Path | None, catch_up: bool) -> None:
    """Stream every event as NDJSON with its chain link, checking the chain as it goes."""
    with _system(cli, catch_up) as system:
        head = system.ledger.head_position()
        with event_progress(Console(stderr=True), "Exporting") as report:
            lines = ledger_io.export_lines(
                system.ledger, system.store, progress=_progress(report, head)
            )
            try:
                if output is None:
                    with click.open_file("-", "wb") as out:
                        out.writelines(lines)
                else:
                    _write_whole(output, lines)
            except ledger_io.ChainBroken as error:
                raise _broken(error.broken) from None


def _write_whole(output: Path, lines: Iterator[bytes]) -> None:
    """Write to a side file renamed into place at the end: only a whole export gets the name.

    (click's `open_file(atomic=True)` renames even when the writing fails.)
    """
    partial = output.with_name(output.name + ".partial")
    try:
        with partial.open("wb") as file:
            file.writelines(lines)
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)


@audit.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def import_(cli: Cli, file: Path) -> None:
    """Load an export into an empty ledger (same positions), then rebuild the read models."""
    err = Console(stderr=True)
    with bootstrap(cli.settings()) as system:
        with event_progress(err, "Importing") as report:
            imported = ledger_io.import_ledger(system.ledger, file, progress=report)
        with event_progress(err, "Projecting") as report:
            generation = rebuild(system.ledger, system.store, report)
        if chain.head(system.store) != imported.head:
            raise CommandFailed(
                "chain: the rebuilt chain head differs from the file's", EXIT_FAILED
            )
    top = imported.head
    where = "nothing" if top is None else f"positions up to {top.position}, head {top.hash}"
    click.echo(
        f"Imported {imported.events:,} events ({where}); the rebuilt chain matches the file. "
        f"Read models rebuilt (generation {generation})."
    )


@audit.command("history")
@click.argument("aggregate_id", metavar="ID", type=click.UUID)
@click.option("--json", "as_json", is_flag=True, help="Print the changes as a JSON array.")
@click.pass_obj
def history(cli: Cli, aggregate_id: UUID, as_json: bool) -> None:
    """Every change to one aggregate: who, why, when (both times), field by field."""
    with _system(cli, catch_up=True) as system:
        changes = aggregate_history(system.ledger, system.queries, aggregate_id, system.redact)
    if as_json:
        click.echo(msgspec.json.encode(changes).decode())
    else:
        render_history(aggregate_id, changes, Console())


def render_history(aggregate_id: UUID, changes: list[Change], console: Console) -> None:
    """Print an aggregate's events as a table: who, when and why, then each field's change."""
    rows = Table(
        title=f"History of {aggregate_id} (times UTC; --json for full precision)",
        box=box.SIMPLE_HEAD, title_justify="left",
    )  # fmt: skip
    rows.add_column("event", overflow="fold", min_width=26)
    rows.add_column("field", style="cyan", overflow="fold")
    rows.add_column("before", overflow="fold")
    rows.add_column("after", overflow="fold")
    for change in changes:
        about = [
            f"[bold]#{_shown(change.position)}[/] v{change.version} "
            f"{change.topic.removeprefix('goalledger/')}",
            f"by {change.actor}",
            f"recorded {_shown(change.recorded_at)}",
        ]
        if change.effective_at is not None:
            about.append(f"effective {_shown(change.effective_at)}")
        if change.reason:
            about.append(f"why: {change.reason}")
        fields = change.changes or [FieldChange("(no field changed)", None, None)]
        for index, field in enumerate(fields):
            rows.add_row(
                "\n".join(about) if index == 0 else "", field.field,
                _shown(field.before), _shown(field.after), end_section=index == len(fields) - 1,
            )  # fmt: skip
    console.print(rows)


def _shown(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, str | int | Decimal | UUID):
        return str(value)
    return msgspec.json.encode(value).decode()


# -- replay ----------------------------------------------------------------------------------


class Until(click.ParamType):
    """A ledger position (a whole number) or an RFC 3339 timestamp with its offset."""

    name = "position|timestamp"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int | datetime):
            return value
        if str(value).isdigit():
            return int(value)
        return TIMESTAMP.convert(value, param, ctx)


class PositionViews(Views):
    """The read models as they stood at a ledger position: every read is bounded by it."""

    def __init__(self, views: Views, position: int) -> None:
        super().__init__(views.store, views.rules, views.default_rule)
        self.bound = position

    def moment(
        self, tx: Tx, t: dict[str, str], as_of: datetime | None, known_at: datetime | None
    ) -> Moment:
        found = super().moment(tx, t, as_of, known_at)
        return Moment(
            at=found.at, known_at=found.known_at, position=min(found.position, self.bound)
        )


def recorded_at(system: System, position: int) -> datetime | None:
    """When the ledger recorded its last event at or before `position`."""
    with system.store.read() as tx:
        t = system.queries.tables(tx)
        micros = tx.scalar(
            f"SELECT recorded_at FROM {t['events']} WHERE position <= ?"
            " ORDER BY position DESC LIMIT 1",
            (position,),
        )
    return from_ts(micros)


@audit.command("replay")
@click.option(
    "--until", "until", type=Until(), required=True,
    help="A ledger position (1200) or a recorded time (2026-03-31T23:59:59Z).",
)  # fmt: skip
@click.option("--cycle", "cycle_id", type=click.UUID, help="Cycle id (default: the current one).")
@click.option("--team", "team_id", type=click.UUID, help="Only this team and its sub-teams.")
@click.option("--as-of", "as_of", type=TIMESTAMP, help="Effective time (default: --until's).")
@click.option("--rule", help="Score under another registered rule (what-if).")
@click.option("--json", "as_json", is_flag=True, help="Print the scoreboard as JSON.")
@click.pass_obj
def replay(
    cli: Cli,
    until: int | datetime,
    cycle_id: UUID | None,
    team_id: UUID | None,
    as_of: datetime | None,
    rule: str | None,
    as_json: bool,
) -> None:
    """Print the scoreboard as the ledger stood at a position or a recorded time."""
    with _system(cli, catch_up=True) as system:
        if isinstance(until, datetime):
            views, known_at, moment = system.queries, until, until
        else:
            head = system.ledger.head_position()
            if until > head:
                raise DomainError("--until", f"position {until} is beyond the ledger's {head}")
            views, known_at = PositionViews(system.queries, until), None
            moment = recorded_at(system, until)
        board = views.scoreboard(
            cycle_id=cycle_id, team_id=team_id, as_of=as_of or moment, known_at=known_at,
            rule=rule,
        )  # fmt: skip
    if as_json:
        click.echo(msgspec.json.encode(board).decode())
    else:
        render_scoreboard(board, Console())
