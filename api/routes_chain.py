"""The hash chain over HTTP, for auditors: verify it, read its head, export the ledger."""

from __future__ import annotations

from collections.abc import Iterator

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.response import Stream

from goalledger.api.auth import TeamScope, requires
from goalledger.api.bootstrap import System
from goalledger.api.problems import ApiError, FieldError, problem_responses
from goalledger.projections import chain
from goalledger.projections.ledger_io import ChainBroken, export_lines

# How long a check waits for the embedded projector to chain the newest events.
CATCH_UP_SECONDS = 5.0


class ChainIsBroken(ApiError):
    """The chain does not hold: nothing can be vouched for past its first break."""

    status, kind = 409, "chain-broken"


def _refuse(broken: chain.Break | None) -> ChainIsBroken:
    where = "unknown" if broken is None else f"{broken.position}: {broken.reason}"
    return ChainIsBroken(
        f"the hash chain is broken at position {where}",
        [FieldError("chain", broken.detail if broken else "broken")],
    )


class ChainController(Controller):
    """Chain verification, the anchor and the export (auditor or admin)."""

    path = "/v1/audit"
    tags = ("audit",)
    guards = (requires("audit"),)

    @get("/verify", operation_id="auditVerify", sync_to_thread=True)
    def verify(
        self, system: NamedDependency[System], access: NamedDependency[TeamScope]
    ) -> chain.Verdict:
        """Recompute the chain from the ledger: ok with its head, or the first break and why."""
        access.check_unscoped("verifying the ledger")
        return chain.verify(system.ledger, system.store, wait=CATCH_UP_SECONDS)

    @get(
        "/anchor", operation_id="auditAnchor", sync_to_thread=True,
        responses=problem_responses(409),
    )  # fmt: skip
    def anchor(
        self, system: NamedDependency[System], access: NamedDependency[TeamScope]
    ) -> chain.Link:
        """The verified head of the chain (position and hash), to keep somewhere else."""
        access.check_unscoped("anchoring the ledger")
        verdict = chain.verify(system.ledger, system.store, wait=CATCH_UP_SECONDS)
        if not verdict.ok or verdict.head is None:
            raise _refuse(verdict.broken)
        return verdict.head

    @get(
        "/export", operation_id="auditExport", sync_to_thread=True,
        responses=problem_responses(409),
    )  # fmt: skip
    def export(self, system: NamedDependency[System], access: NamedDependency[TeamScope]) -> Stream:
        """The whole ledger as NDJSON, one event per line with its chain link.

        The chain is verified first, so a broken ledger is refused (409) rather than cut
        off part-way through a download.
        """
        access.check_unscoped("exporting the ledger")
        verdict = chain.verify(system.ledger, system.store, wait=CATCH_UP_SECONDS)
        if not verdict.ok:
            raise _refuse(verdict.broken)

        def lines() -> Iterator[bytes]:
            try:
                yield from export_lines(system.ledger, system.store)
            except ChainBroken:  # changed since the check: end the stream, never lie
                return

        return Stream(
            lines(),
            media_type="application/x-ndjson",
            headers={"Content-Disposition": 'attachment; filename="goalledger-ledger.ndjson"'},
        )
