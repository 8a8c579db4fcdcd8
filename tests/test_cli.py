"""The command line, run in-process (click's CliRunner) and as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from io import StringIO
from uuid import UUID, uuid4

import click
import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from goalledger.api import cli
from goalledger.api.render import render_scoreboard
from goalledger.core.errors import Conflict, DomainError, NotFound
from goalledger.core.ledger import Ledger
from goalledger.core.settings import Settings
from goalledger.core.tokens import Token
from goalledger.projections.shapes import (
    CycleSummary,
    ProgressFigure,
    Provenance,
    Scoreboard,
    ScoreboardKeyResult,
    ScoreboardObjective,
    TeamRollup,
)

D = Decimal


def run(database_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli.goalledger, ["--database-url", database_url, *args])


def run_process(database_url: str, *args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOALLEDGER_")}
    return subprocess.run(
        [sys.executable, "-m", "goalledger.api.cli", "--database-url", database_url, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
    )


def assert_one_line_error(stderr: str, *words: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in stderr
    for word in words:
        assert word in lines[0]


def authenticates(database_url: str, secret: str) -> Token | None:
    ledger = Ledger(Settings(database_url=database_url))
    try:
        return ledger.authenticate(secret)
    finally:
        ledger.close()


# -- tokens, in-process ------------------------------------------------------------------


def test_tokens_create_prints_the_secret_alone_on_the_last_line(database_url: str) -> None:
    result = run(database_url, "tokens", "create", "--role", "manager", "--name", "ci bot")
    assert result.exit_code == 0, result.output
    *_, secret = result.stdout.splitlines()
    assert secret == secret.strip() and " " not in secret
    token = authenticates(database_url, secret)
    assert token is not None
    assert (token.role, token.name, token.team_id) == ("manager", "ci bot", None)
    assert str(token.id) in result.stdout
    assert result.stderr == ""


def test_tokens_create_json_puts_data_first_and_the_secret_last(database_url: str) -> None:
    ledger = Ledger(Settings(database_url=database_url))
    try:
        team = ledger.form_team(name="Sales", actor="test")
    finally:
        ledger.close()
    result = run(
        database_url, "tokens", "create", "--role", "viewer", "--team", str(team.id), "--json"
    )
    assert result.exit_code == 0, result.output
    first, secret = result.stdout.splitlines()
    record = json.loads(first)
    assert record["role"] == "viewer" and record["team_id"] == str(team.id)
    assert record["position"] > team.position
    assert "secret" not in record
    token = authenticates(database_url, secret)
    assert token is not None and str(token.id) == record["id"] and token.team_id == team.id


def test_tokens_revoke_stops_the_secret_authenticating(sqlite_url: str) -> None:
    created = run(sqlite_url, "tokens", "create", "--role", "admin")
    secret = created.stdout.splitlines()[-1]
    token_id = str(authenticates(sqlite_url, secret).id)
    revoked = run(sqlite_url, "tokens", "revoke", token_id, "--reason", "rotated")
    assert revoked.exit_code == 0, revoked.output
    assert token_id in revoked.stdout
    assert authenticates(sqlite_url, secret) is None
    again = run(sqlite_url, "tokens", "revoke", token_id)
    assert again.exit_code == 2
    assert_one_line_error(again.stderr, "already revoked")


def test_a_bad_role_fails_with_one_line_naming_the_field(sqlite_url: str) -> None:
    result = run(sqlite_url, "tokens", "create", "--role", "overlord")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert_one_line_error(result.stderr, "role", "viewer")


def test_an_unknown_team_or_token_is_not_found(sqlite_url: str) -> None:
    team = run(sqlite_url, "tokens", "create", "--role", "viewer", "--team", str(uuid4()))
    assert team.exit_code == 4
    assert_one_line_error(team.stderr, "team_id", "no team")
    token = run(sqlite_url, "tokens", "revoke", str(uuid4()))
    assert token.exit_code == 4
    assert_one_line_error(token.stderr, "no token")


def test_usage_errors_are_one_line_too(sqlite_url: str) -> None:
    result = run(sqlite_url, "tokens", "create", "--role", "viewer", "--team", "sales")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "--team", "--help")
    missing = run(sqlite_url, "tokens", "create")
    assert missing.exit_code == 2
    assert_one_line_error(missing.stderr, "--role")


def test_a_malformed_database_url_names_the_setting() -> None:
    result = run("mysql://db/goals", "tokens", "create", "--role", "admin")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "GOALLEDGER_DATABASE_URL")


def test_the_database_url_comes_from_the_environment(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/env.db"
    result = CliRunner(env={"GOALLEDGER_DATABASE_URL": url}).invoke(
        cli.goalledger, ["tokens", "create", "--role", "auditor"]
    )
    assert result.exit_code == 0, result.output
    assert authenticates(url, result.stdout.splitlines()[-1]).role == "auditor"


@pytest.mark.parametrize(
    ("error", "code", "words"),
    [
        (DomainError("weight", "must be greater than 0"), 2, ["weight: must be greater than 0"]),
        (NotFound("kpi_id", "no KPI with id x"), 4, ["kpi_id: no KPI"]),
        (Conflict("objective changed since it was read"), 3, ["conflict", "changed"]),
        (RuntimeError("disk on fire\nsecond line"), 1, ["RuntimeError", "disk on fire second"]),
    ],
)
def test_failures_map_to_exit_codes_with_one_line(error, code, words) -> None:
    @click.group(cls=cli.LedgerGroup)
    def group() -> None:
        pass

    @group.command()
    def fail() -> None:
        raise error

    result = CliRunner().invoke(group, ["fail"])
    assert result.exit_code == code
    assert_one_line_error(result.stderr, *words)


def test_help_lists_the_commands_and_the_database_setting() -> None:
    result = CliRunner().invoke(cli.goalledger, ["--help"])
    assert result.exit_code == 0
    for word in ("demo", "tokens", "--database-url", "GOALLEDGER_DATABASE_URL"):
        assert word in result.stdout
    create = CliRunner().invoke(cli.goalledger, ["tokens", "create", "--help"])
    assert create.exit_code == 0 and "--role" in create.stdout and "admin" in create.stdout


# -- the same, as a real process -------------------------------------------------------


def test_process_tokens_create_secret_authenticates(database_url: str, tmp_path) -> None:
    done = run_process(database_url, "tokens", "create", "--role", "contributor", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    secret = done.stdout.splitlines()[-1]
    assert done.stdout.endswith(secret + "\n")
    token = authenticates(database_url, secret)
    assert token is not None and token.role == "contributor"


def test_process_bad_role_is_one_line_without_traceback(sqlite_url: str, tmp_path) -> None:
    done = run_process(sqlite_url, "tokens", "create", "--role", "overlord", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert_one_line_error(done.stderr, "role")


def test_process_help(tmp_path) -> None:
    done = run_process("sqlite:///unused.db", "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Usage: goalledger" in done.stdout and "tokens" in done.stdout
    assert not (tmp_path / "unused.db").exists()  # help touches no database


# -- demo -------------------------------------------------------------------------------


def test_demo_loads_prints_where_and_refuses_a_second_load(sqlite_url, monkeypatch) -> None:
    shown = []
    monkeypatch.setattr(cli, "show_scoreboard", lambda *args: shown.append(args))
    result = run(sqlite_url, "demo")
    assert result.exit_code == 0, result.output
    settings, cycle_id = shown[0][:2]
    assert settings.database_url == sqlite_url and isinstance(cycle_id, UUID)
    assert settings.storage().describe() in result.stdout.replace("\n", "")
    assert "Loading demo" in result.stderr and "events/s" in result.stderr

    ledger = Ledger(Settings(database_url=sqlite_url))
    try:
        head = ledger.head_position()
    finally:
        ledger.close()
    again = run(sqlite_url, "demo")
    assert again.exit_code == 2
    assert_one_line_error(again.stderr, "ledger", "--force")
    assert len(shown) == 1
    ledger = Ledger(Settings(database_url=sqlite_url))
    try:
        assert ledger.head_position() == head
    finally:
        ledger.close()


def test_demo_projects_and_prints_the_scoreboard(sqlite_url: str) -> None:
    result = CliRunner(env={"COLUMNS": "160"}).invoke(
        cli.goalledger, ["--database-url", sqlite_url, "demo"]
    )
    assert result.exit_code == 0, result.output
    assert "Projecting" in result.stderr
    for words in ("Scoreboard", "Ship single sign-on", "Customer Success", "stale", "Teams"):
        assert words in result.stdout


# -- rendering --------------------------------------------------------------------------

COMPANY, ENGINEERING = uuid4(), uuid4()
AT = datetime(2026, 2, 20, 12, tzinfo=UTC)
PROVENANCE = Provenance(rule="linear-v1", position=42)


def kr(title: str, kind: str, **fields) -> ScoreboardKeyResult:
    values = {
        "id": uuid4(),
        "title": title,
        "kind": kind,
        "unit": "",
        "weight": D(1),
        "value": None,
        "done": None,
        "progress": None,
        "pace": D("0.5500"),
        "status": "on_track",
        "confidence": None,
        "last_check_in_at": None,
        "provenance": PROVENANCE,
    }
    values.update(fields)
    return ScoreboardKeyResult(**values)


BOARD = Scoreboard(
    cycle=CycleSummary(uuid4(), "2026-Q1", date(2026, 1, 1), date(2026, 3, 31), "open", None),
    rule="linear-v1",
    at=AT,
    known_at=None,
    position=42,
    objectives=[
        ScoreboardObjective(
            id=uuid4(),
            title="Run a platform customers can rely on",
            team_id=ENGINEERING,
            owner="Priya",
            kind="committed",
            status="active",
            score=D("0.6250"),
            grade="yellow",
            key_results=[
                kr(
                    "Cut p95 latency",
                    "decrease_to",
                    unit="ms",
                    value=D("310"),
                    progress=ProgressFigure(D("1.3000"), D("1.0000")),
                    status="on_track",
                    confidence=D("0.8"),
                    weight=D(2),
                ),
                kr(
                    "Grow signups",
                    "increase_to",
                    unit="users",
                    value=D("90"),
                    progress=ProgressFigure(D("-0.2000"), D("0.0000")),
                    status="off_track",
                    confidence=D("0.15"),
                ),
                kr(
                    "Keep uptime",
                    "stay_above",
                    unit="%",
                    value=D("99.80"),
                    progress=ProgressFigure(D("0.7500"), D("0.7500")),
                    status="at_risk",
                ),
                kr(
                    "Ship SSO",
                    "milestone",
                    done=False,
                    progress=ProgressFigure(D("0.4000"), D("0.4000")),
                    status="stale",
                ),
                kr("Keep spend in budget", "stay_within"),
            ],
            provenance=PROVENANCE,
        )
    ],
    teams=[
        TeamRollup(ENGINEERING, "Engineering", COMPANY, 1, D("0.6250"), "yellow"),
        TeamRollup(COMPANY, "Acme", None, 1, D("0.7200"), "green"),
    ],
)


def rendered(board: Scoreboard, **console) -> str:
    out = StringIO()
    render_scoreboard(board, Console(file=out, width=140, **console))
    return out.getvalue()


def test_render_scoreboard_shows_each_key_result_and_the_objective_grade() -> None:
    text = rendered(BOARD, color_system=None)
    assert "2026-Q1" in text and "linear-v1" in text and "position 42" in text
    assert "Run a platform customers can rely on" in text and "0.62 yellow" in text
    lines = {line.split("  ")[0].strip(): line for line in text.splitlines() if "  " in line}
    latency = lines["Cut p95 latency (×2)"]
    assert "decrease_to" in latency and "310 ms" in latency and "100%" in latency
    assert "55%" in latency and "on track" in latency and "0.80" in latency
    signups = lines["Grow signups"]
    assert "0%" in signups and "-20%" not in signups and "off track" in signups
    assert "99.80 %" in lines["Keep uptime"] and "at risk" in lines["Keep uptime"]
    assert "not done" in lines["Ship SSO"] and "40%" in lines["Ship SSO"]
    assert "stale" in lines["Ship SSO"]
    assert "—" in lines["Keep spend in budget"]


def test_render_scoreboard_rolls_teams_up_under_their_parents() -> None:
    text = rendered(BOARD, color_system=None)
    rows = [line for line in text.splitlines() if "Acme" in line or "Engineering " in line]
    acme = next(i for i, line in enumerate(rows) if line.strip().startswith("Acme"))
    engineering = next(i for i, line in enumerate(rows) if "  Engineering" in line)
    assert acme < engineering  # the parent first, its team indented beneath
    assert "0.72 green" in rows[acme] and "0.62 yellow" in rows[engineering]


def test_render_scoreboard_colours_statuses_and_grades() -> None:
    text = rendered(BOARD, color_system="standard", force_terminal=True)
    assert "\x1b[32mon track" in text  # green
    assert "\x1b[31moff track" in text  # red
    assert "\x1b[33mat risk" in text  # yellow
    assert "\x1b[1;33m0.62 yellow" in text  # bold yellow grade


def test_render_an_empty_scoreboard() -> None:
    empty = Scoreboard(
        cycle=BOARD.cycle, rule="linear-v1", at=AT, known_at=AT, position=0, objectives=[], teams=[]
    )
    text = rendered(empty, color_system=None)
    assert "No objectives" in text and "as known at" in text
