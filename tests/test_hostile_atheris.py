"""Coverage-guided fuzzing (atheris) of every parser we own, for a bounded time each.

Each target of tests/fuzz_atheris.py runs in its own process, seeded with valid inputs
(golden stored events, a real export, a CSV, JSON documents, request bodies), for
`GOALLEDGER_ATHERIS_SECONDS` (default 8) or `GOALLEDGER_ATHERIS_RUNS` inputs, whichever
comes first. A crash (an exception other than the parser's documented error) fails the
test with libFuzzer's report. atheris ships wheels for Linux x86-64 only; elsewhere the
test skips, saying so.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_chain import record_some

from goalledger.api.bootstrap import bootstrap
from goalledger.core.settings import Settings
from goalledger.projections.ledger_io import export_lines

atheris = pytest.importorskip(
    "atheris", reason="atheris is not installed (it has wheels for Linux x86-64 only)"
)

HARNESS = Path(__file__).parent / "fuzz_atheris.py"
GOLDEN = Path(__file__).parent / "golden" / "events.ndjson"
SECONDS = int(os.environ.get("GOALLEDGER_ATHERIS_SECONDS", "8"))
RUNS = int(os.environ.get("GOALLEDGER_ATHERIS_RUNS", "200000"))
NOW = "2026-03-14T15:45:00+00:00"


def seeds(tmp_path: Path) -> dict[str, list[bytes]]:
    """Valid inputs for each target: the fuzzer mutates from these."""
    url = f"sqlite:///{tmp_path}/seed.db"
    with bootstrap(Settings(database_url=url)) as system:
        record_some(system.ledger)
        system.catch_up()
        export = b"".join(export_lines(system.ledger, system.store))
    golden = [json.loads(line) for line in GOLDEN.read_text().splitlines()]
    topics = sorted({row["topic"] for row in golden})
    from fuzz_atheris import BODIES  # needs atheris: imported only once it is there

    def body_seed(name: str, document: object) -> bytes:
        index = [cls.__qualname__ for cls in BODIES].index(name)
        return bytes([index]) + json.dumps(document).encode()

    return {
        "body": [
            body_seed("CycleIn", {"name": "Q1", "starts_on": "2026-01-01",
                                  "ends_on": "2026-03-31"}),
            body_seed("KpiIn", {"name": "U", "direction": "target_band", "frequency": "daily",
                                "thresholds": {"green": [1, 2], "amber": [0, 3]},
                                "source": {"plugin": "csv", "config": {"path": "x"}}}),
            body_seed("CheckInIn", {"value": "1.5", "confidence": "0.7", "note": "n"}),
        ],
        "readings": [
            b"\x00" + json.dumps([{"kpi_id": "00000000-0000-4000-8000-000000000001",
                                   "reading_id": "r", "value": "1.5", "observed_at": NOW}]
                                 ).encode(),
            b"\x01" + json.dumps({"reading_id": "r", "value": 2.5, "observed_at": NOW}).encode(),
        ],
        "payload": [b"/data/0/n\n" + json.dumps({"data": [{"n": 1.5, "at": NOW}]}).encode(),
                    b"\n1710000000"],
        "prometheus": [json.dumps({"status": "success", "data": {
            "resultType": "vector", "result": [{"metric": {}, "value": [1710000000, "3.5"]}]}}
        ).encode()],
        "csv": [b"\x00day,ms\n2026-01-05,1.5\n2026-01-06T10:00:00+02:00,0.9\n",
                b"\x02day;ms\n05/01/2026 10:00+0100,7\n"],
        "stored-event": [bytes([topics.index(row["topic"])]) + base64.b64decode(row["state"])
                         for row in golden],
        "export": [export],
    }  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("target", ["body", "readings", "payload", "prometheus", "csv",
                                    "stored-event", "export"])  # fmt: skip
def test_atheris_finds_no_crash(target: str, tmp_path: Path) -> None:
    sys.path.insert(0, str(HARNESS.parent))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for number, seed in enumerate(seeds(tmp_path)[target]):
        (corpus / f"seed-{number}").write_bytes(seed)
    command = [
        sys.executable, str(HARNESS), target, str(corpus), f"-runs={RUNS}",
        f"-max_total_time={SECONDS}", "-rss_limit_mb=2048", "-timeout=10", "-max_len=8192",
        f"-artifact_prefix={tmp_path}/",
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=SECONDS + 120, cwd=tmp_path
    )
    report = "\n".join(
        line
        for line in (done.stdout + done.stderr).splitlines()
        if not line.startswith("INFO: Instrumenting")
    )[-4000:]
    assert done.returncode == 0, f"atheris found a crash in {target}:\n{report}"
    runs = int(re.search(r"Done (\d+) runs", done.stderr).group(1))
    coverage = re.findall(r"cov: (\d+)", done.stderr)
    print(f"atheris {target}: {runs:,} inputs, coverage {coverage[-1] if coverage else '?'}")
    assert runs > 0
