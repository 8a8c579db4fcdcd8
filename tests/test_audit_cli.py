"""`goalledger audit …` end to end through the command line, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from projection_fixtures import at_start, days_ago, increase_kr, mark, plan
from test_chain import RawLedger, fresh_url
from test_cli import assert_one_line_error, run

from goalledger.api import cli
from goalledger.core.ledger import Ledger
from goalledger.core.settings import Settings

__all__ = ["fresh_url"]
KEY = "GOALLEDGER_ANCHOR_KEY"


@pytest.fixture
def objective_id(settings: Settings) -> str:
    """A ledger with a plan, a key result and check-ins, projected; the objective's id."""
    ledger = Ledger(settings)
    try:
        p = plan(ledger)
        kr = increase_kr(ledger, p.objective)
        ledger.check_in(kr.id, value=Decimal(30), confidence=Decimal("0.6"), actor="bob",
                        effective_at=days_ago(5))  # fmt: skip
        ledger.edit_objective(p.objective.id, title="Run a calm platform", actor="alice",
                              reason="sharper wording")  # fmt: skip
    finally:
        ledger.close()
    assert run(settings.database_url, "projections", "rebuild").exit_code == 0
    return str(p.objective.id)


def head_of(url: str) -> int:
    ledger = Ledger(Settings(database_url=url))
    try:
        return ledger.head_position()
    finally:
        ledger.close()


def tamper(settings: Settings, position: int) -> None:
    raw = RawLedger(settings)
    try:
        raw.flip_byte(position)
    finally:
        raw.close()


# -- verify and anchors --------------------------------------------------------------------


def test_verify_exits_0_while_the_chain_holds(database_url: str, objective_id: str) -> None:
    result = run(database_url, "audit", "verify")
    assert result.exit_code == 0, result.output
    assert "The chain holds over 6 events (head 6 " in result.stdout
    verdict = json.loads(run(database_url, "audit", "verify", "--json").stdout)
    assert verdict["ok"] and verdict["head"]["position"] == 6


def test_verify_names_the_broken_position_on_one_line(
    database_url: str, settings: Settings, objective_id: str
) -> None:
    tamper(settings, 4)
    result = run(database_url, "audit", "verify")
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "chain broken at position 4", "state changed")


def test_verify_refuses_events_nobody_chained_unless_asked_to_catch_up(
    database_url: str, objective_id: str
) -> None:
    assert run(database_url, "tokens", "create", "--role", "viewer").exit_code == 0
    result = run(database_url, "audit", "verify")
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "position 7", "unexpected extra event", "--catch-up")
    assert run(database_url, "audit", "verify", "--catch-up").exit_code == 0


def test_an_anchor_is_the_chain_head_as_one_json_object(
    database_url: str, objective_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY, raising=False)
    result = run(database_url, "audit", "anchor")
    assert result.exit_code == 0, result.output
    anchor = json.loads(result.stdout)
    assert set(anchor) == {"position", "hash", "at", "ledger"}
    verdict = json.loads(run(database_url, "audit", "verify", "--json").stdout)
    assert anchor["position"] == 6 and anchor["hash"] == verdict["head"]["hash"]


def test_verify_with_an_anchor_catches_a_rewrite_of_events_and_chain(
    database_url: str, settings: Settings, objective_id: str, tmp_path: Path
) -> None:
    anchor = tmp_path / "anchor.json"
    anchor.write_text(run(database_url, "audit", "anchor").stdout)
    assert run(database_url, "audit", "verify", "--anchor", str(anchor)).exit_code == 0
    tamper(settings, 2)
    assert run(database_url, "projections", "rebuild").exit_code == 0  # chain rewritten too
    assert run(database_url, "audit", "verify").exit_code == 0
    result = run(database_url, "audit", "verify", "--anchor", str(anchor))
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "position 6", "anchor mismatch", "rewritten")


def test_a_signed_anchor_is_checked_with_the_key(
    database_url: str, objective_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY, "s3cret")
    signed = json.loads(run(database_url, "audit", "anchor").stdout)
    assert signed["signature"].startswith("hmac-sha256:")
    anchor = tmp_path / "anchor.json"
    anchor.write_text(json.dumps(signed))
    assert run(database_url, "audit", "verify", "--anchor", str(anchor)).exit_code == 0
    anchor.write_text(json.dumps({**signed, "position": 5}))
    result = run(database_url, "audit", "verify", "--anchor", str(anchor))
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "bad signature")
    monkeypatch.delenv(KEY)
    result = run(database_url, "audit", "verify", "--anchor", str(anchor))
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, KEY)


# -- export and import ---------------------------------------------------------------------


def test_export_then_import_reproduces_the_ledger(
    database_url: str, fresh_url: str, objective_id: str, tmp_path: Path
) -> None:
    streamed = run(database_url, "audit", "export")
    assert streamed.exit_code == 0, streamed.output
    assert len(streamed.stdout.splitlines()) == 6
    export = tmp_path / "ledger.ndjson"
    assert run(database_url, "audit", "export", "--output", str(export)).exit_code == 0
    assert export.read_text() == streamed.stdout
    result = run(fresh_url, "audit", "import", str(export))
    assert result.exit_code == 0, result.output
    assert "Imported 6 events" in result.stdout and "the rebuilt chain matches" in result.stdout
    source = json.loads(run(database_url, "audit", "verify", "--json").stdout)["head"]
    copy = json.loads(run(fresh_url, "audit", "verify", "--json").stdout)["head"]
    assert source == copy
    again = run(fresh_url, "audit", "import", str(export))
    assert again.exit_code == 2
    assert_one_line_error(again.stderr, "import only into an empty ledger")


def test_a_tampered_ledger_exports_nothing_under_the_name(
    database_url: str, settings: Settings, objective_id: str, tmp_path: Path
) -> None:
    tamper(settings, 3)
    export = tmp_path / "ledger.ndjson"
    result = run(database_url, "audit", "export", "--output", str(export))
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "chain broken at position 3")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("ledger")]  # no part either


# -- history -------------------------------------------------------------------------------


def test_history_lists_every_change_field_by_field(database_url: str, objective_id: str) -> None:
    result = run(database_url, "audit", "history", objective_id, "--json")
    assert result.exit_code == 0, result.output
    defined, edited = json.loads(result.stdout)
    assert (defined["version"], edited["version"]) == (1, 2)
    assert edited["actor"] == "alice" and edited["reason"] == "sharper wording"
    assert edited["position"] == 6 and edited["recorded_at"]
    title = next(c for c in edited["changes"] if c["field"] == "title")
    assert (title["before"], title["after"]) == ("Run a reliable platform", "Run a calm platform")
    wide = CliRunner(env={"COLUMNS": "200"})
    table = wide.invoke(cli.goalledger, ["--database-url", database_url, "audit", "history",
                                         objective_id])  # fmt: skip
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert any("why: sharper wording" in line for line in lines)
    assert any("title" in line and "Run a calm platform" in line for line in lines)


def test_history_of_an_unknown_id_exits_4(database_url: str, objective_id: str) -> None:
    result = run(database_url, "audit", "history", "00000000-0000-0000-0000-000000000000")
    assert result.exit_code == 4
    assert_one_line_error(result.stderr, "no aggregate")


# -- replay --------------------------------------------------------------------------------


def board(result_stdout: str) -> dict:
    shown = json.loads(result_stdout)
    shown.pop("known_at")
    return shown


def test_replay_agrees_with_a_replay_of_the_truncated_ledger(
    database_url: str, settings: Settings, fresh_url: str, tmp_path: Path
) -> None:
    ledger = Ledger(settings)
    try:
        p = plan(ledger)
        kr = increase_kr(ledger, p.objective)
        ledger.check_in(kr.id, value=Decimal(20), actor="bob", effective_at=days_ago(9))
        then, position = mark(), ledger.head_position()
        ledger.check_in(kr.id, value=Decimal(80), actor="bob", effective_at=days_ago(8))
        ledger.change_key_result_target(kr.id, target=Decimal(200), actor="alice", reason="more")
    finally:
        ledger.close()
    cycle, as_of = str(p.cycle.id), days_ago(1).isoformat()
    common = ("--cycle", cycle, "--as-of", as_of, "--json")
    by_position = run(database_url, "audit", "replay", "--until", str(position), *common)
    assert by_position.exit_code == 0, by_position.output
    by_time = run(database_url, "audit", "replay", "--until", then.isoformat(), *common)
    assert by_time.exit_code == 0, by_time.output
    now = run(database_url, "scoreboard", *common)
    export = tmp_path / "ledger.ndjson"
    assert run(database_url, "audit", "export", "--output", str(export)).exit_code == 0
    truncated = tmp_path / "truncated.ndjson"
    truncated.write_text("".join(export.read_text().splitlines(keepends=True)[:position]))
    assert run(fresh_url, "audit", "import", str(truncated)).exit_code == 0
    replayed = run(fresh_url, "scoreboard", *common)
    assert board(by_position.stdout) == board(replayed.stdout) == board(by_time.stdout)
    assert board(by_position.stdout)["position"] == position
    assert board(now.stdout) != board(replayed.stdout)  # the later events do change it


def test_replay_defaults_to_the_moment_it_replays(database_url: str, objective_id: str) -> None:
    then = at_start().isoformat()
    result = run(database_url, "audit", "replay", "--until", "3", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["position"] == 3 and shown["known_at"] is None and shown["at"] > then
    bad = run(database_url, "audit", "replay", "--until", "yesterday")
    assert bad.exit_code == 2
    assert_one_line_error(bad.stderr, "RFC 3339")
    beyond = run(database_url, "audit", "replay", "--until", "99")
    assert beyond.exit_code == 2
    assert_one_line_error(beyond.stderr, "--until", "position 99 is beyond")


# -- what-if scoring (issue item 6) ----------------------------------------------------------


def test_a_what_if_scoreboard_names_its_rule_and_writes_nothing(
    database_url: str, objective_id: str
) -> None:
    head = head_of(database_url)
    result = run(database_url, "scoreboard", "--rule", "linear-v1", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["rule"] == "linear-v1" and shown["position"] == head
    assert {o["provenance"]["rule"] for o in shown["objectives"]} == {"linear-v1"}
    unknown = run(database_url, "scoreboard", "--rule", "no-such-rule")
    assert unknown.exit_code == 2
    assert_one_line_error(unknown.stderr, "rule", "linear-v1")
    assert head_of(database_url) == head
