"""Rich renderings of projected state for the command line."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from goalledger.projections.shapes import (
    Scoreboard,
    ScoreboardKeyResult,
    ScoreboardObjective,
    TeamRollup,
)

STATUS_STYLES = {
    "on_track": "green",
    "at_risk": "yellow",
    "off_track": "red",
    "stale": "magenta",
}
GRADE_STYLES = {"green": "bold green", "yellow": "bold yellow", "red": "bold red"}
MISSING = "—"


def render_scoreboard(board: Scoreboard, console: Console) -> None:
    """Print a scoreboard: a table per objective, then the team roll-ups."""
    cycle = board.cycle
    console.print(
        Text.assemble(
            ("Scoreboard ", "bold"),
            (cycle.name, "bold cyan"),
            f"  {cycle.starts_on.isoformat()} → {cycle.ends_on.isoformat()} ({cycle.status})",
        )
    )
    known = f", as known at {board.known_at.isoformat()}" if board.known_at else ""
    console.print(
        Text(
            f"rule {board.rule} · as of {board.at.isoformat()}{known} · "
            f"ledger position {board.position}",
            style="dim",
        )
    )
    team_names = {team.team_id: team.name for team in board.teams}
    if not board.objectives:
        console.print("No objectives in this cycle yet.")
    for objective in board.objectives:
        console.print()
        console.print(_objective_table(objective, team_names))
    if board.teams:
        console.print()
        console.print(_teams_table(board.teams))


def _objective_table(objective: ScoreboardObjective, team_names: dict[UUID, str]) -> Table:
    title = Text.assemble(
        (objective.title, "bold"),
        "  ",
        _score(objective.score, objective.grade),
    )
    team = team_names.get(objective.team_id, str(objective.team_id))
    caption = f"{team} · {objective.kind} · {objective.status} · owner {objective.owner}"
    table = Table(
        title=title,
        caption=caption,
        title_justify="left",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
        expand=True,
    )
    table.add_column("Key result", ratio=1, min_width=20)
    table.add_column("Kind", no_wrap=True)
    table.add_column("Value", justify="right")
    table.add_column("Progress", justify="right", no_wrap=True)
    table.add_column("Pace", justify="right", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("Conf.", justify="right", no_wrap=True)
    for kr in objective.key_results:
        table.add_row(
            kr.title if kr.weight == 1 else f"{kr.title} (×{_plain(kr.weight)})",
            kr.kind,
            _value(kr),
            MISSING if kr.progress is None else percent(kr.progress.clamped),
            percent(kr.pace),
            status_text(kr.status),
            MISSING if kr.confidence is None else f"{kr.confidence:.2f}",
        )
    if not objective.key_results:
        table.add_row("no key results yet", *[""] * 6, style="dim")
    return table


def _teams_table(teams: list[TeamRollup]) -> Table:
    table = Table(title=Text("Teams", style="bold"), title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("Team")
    table.add_column("Objectives", justify="right")
    table.add_column("Score", justify="right")
    for team, depth in _tree_order(teams):
        table.add_row(
            "  " * depth + team.name, str(team.objectives), _score(team.score, team.grade)
        )
    return table


def _tree_order(teams: list[TeamRollup]) -> list[tuple[TeamRollup, int]]:
    """Teams depth-first under their parents, keeping the board's order among siblings."""
    known = {team.team_id for team in teams}
    children: dict[UUID | None, list[TeamRollup]] = {}
    for team in teams:
        parent = team.parent_id if team.parent_id in known else None
        children.setdefault(parent, []).append(team)
    ordered: list[tuple[TeamRollup, int]] = []

    def visit(parent: UUID | None, depth: int) -> None:
        for team in children.get(parent, []):
            ordered.append((team, depth))
            visit(team.team_id, depth + 1)

    visit(None, 0)
    return ordered


def _value(kr: ScoreboardKeyResult) -> str:
    if kr.kind == "milestone":
        if kr.done is None:
            return MISSING
        return "done" if kr.done else "not done"
    if kr.value is None:
        return MISSING
    return f"{_plain(kr.value)} {kr.unit}".rstrip()


def _score(score: Decimal | None, grade: str | None) -> Text:
    if score is None:
        return Text("no score", style="dim")
    return Text(f"{score:.2f} {grade or ''}".rstrip(), style=GRADE_STYLES.get(grade or "", ""))


def percent(share: Decimal) -> str:
    """A share as a whole percentage, limited to 0–100% as progress is displayed."""
    clamped = min(max(share, Decimal(0)), Decimal(1))
    return f"{clamped * 100:.0f}%"


def status_text(status: str) -> Text:
    """A KR status in words, coloured by how worrying it is."""
    return Text(status.replace("_", " "), style=STATUS_STYLES.get(status, ""))


def _plain(number: Decimal) -> str:
    """A decimal as recorded (99.80 stays 99.80), without exponent notation (1E+1 → 10)."""
    return f"{number:f}"
