"""What every `goalledger` command shares: exit codes, one-line errors, the ledger it
works on, timestamps, and a progress bar for long work."""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

import click
from eventsourcing.persistence import PersistenceError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Column
from rich.text import Text

from goalledger.core.errors import Conflict, DomainError, NotFound
from goalledger.core.ledger import Ledger
from goalledger.core.settings import Settings


class Timestamp(click.ParamType):
    """An RFC 3339 timestamp that must carry its UTC offset."""

    name = "timestamp"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not an RFC 3339 timestamp", param, ctx)
        if moment.tzinfo is None:
            self.fail(f"{value!r} has no UTC offset (add Z or +00:00)", param, ctx)
        return moment


TIMESTAMP = Timestamp()
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_CONFLICT = 3
EXIT_NOT_FOUND = 4

# (done, total, label); the projector reports (done, total) only.
ProgressReport = Callable[..., None]


class CommandFailed(click.ClickException):
    """A failure reported as `error: <reason>` on one line of stderr."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(one_line(message))
        self.exit_code = exit_code

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.message}", file=file, err=file is None)


def one_line(text: object) -> str:
    """`text` with its line breaks and runs of blanks folded into single spaces."""
    return " ".join(str(text).split())


class LedgerGroup(click.Group):
    """A command group whose commands fail with a one-line reason and an exit code."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as error:
            raise _usage_failure(error) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, click.exceptions.NoArgsIsHelpError):
            raise
        except click.UsageError as error:
            raise _usage_failure(error) from None
        except click.ClickException:
            raise
        except NotFound as error:
            raise CommandFailed(f"{error.field}: {error.message}", EXIT_NOT_FOUND) from None
        except DomainError as error:
            raise CommandFailed(f"{error.field}: {error.message}", EXIT_INVALID) from None
        except Conflict as error:
            raise CommandFailed(f"conflict: {error}", EXIT_CONFLICT) from None
        except PersistenceError as error:
            if _wants_traceback(ctx):
                raise
            raise CommandFailed(f"database: {error}", EXIT_FAILED) from None
        except Exception as error:
            if _wants_traceback(ctx):
                raise
            raise CommandFailed(f"{type(error).__name__}: {error}", EXIT_FAILED) from None


def _usage_failure(error: click.UsageError) -> CommandFailed:
    hint = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ""
    return CommandFailed(f"{error.format_message()}{hint}", EXIT_INVALID)


def _wants_traceback(ctx: click.Context) -> bool:
    return isinstance(ctx.obj, Cli) and ctx.obj.traceback


@dataclass(frozen=True)
class Cli:
    """What every command shares: where the ledger is, and who is acting."""

    database_url: str
    traceback: bool

    @property
    def actor(self) -> str:
        """The principal recorded on the events a command causes: the local user."""
        try:
            return f"cli:{getpass.getuser()}"
        except (KeyError, OSError):  # no user name in a bare container
            return "cli"

    def settings(self) -> Settings:
        """Settings from the environment, with this invocation's database URL."""
        return Settings.from_env(database_url=self.database_url)

    @contextmanager
    def ledger(self, settings: Settings | None = None) -> Iterator[Ledger]:
        """The ledger, closed when the command is done with it."""
        ledger = Ledger(settings or self.settings())
        try:
            yield ledger
        finally:
            ledger.close()


class EventRateColumn(ProgressColumn):
    """Events recorded per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("– events/s", style="progress.data.speed")
        return Text(f"{speed:,.0f} events/s", style="progress.data.speed")


@contextmanager
def event_progress(console: Console, description: str) -> Iterator[ProgressReport]:
    """A progress bar (count, events/s, ETA) fed by `(done, total[, label])` reports.

    The bar appears with the first report, so a command that fails before doing any
    work prints no bar at all.
    """
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        EventRateColumn(),
        TimeRemainingColumn(),
        TextColumn(
            "{task.fields[label]}",
            table_column=Column(max_width=24, no_wrap=True, overflow="ellipsis"),
        ),
    )
    bar = Progress(*columns, console=console)
    task = bar.add_task(description, total=None, label="")

    def report(done: int, total: int, label: str = "") -> None:
        if not bar.live.is_started:
            bar.start()
        bar.update(task, completed=done, total=total, label=label)

    try:
        yield report
    finally:
        if bar.live.is_started:
            bar.stop()
