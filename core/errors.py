"""Errors the domain raises; each names the field it is about."""

from __future__ import annotations


class DomainError(Exception):
    """A command broke a rule of the domain; `field` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(DomainError):
    """The command refers to something the ledger does not hold."""


class Conflict(Exception):
    """A write was based on a stale version of an aggregate; nothing was recorded."""

    def __init__(self, message: str, *, aggregate_id: object = None) -> None:
        super().__init__(message)
        self.aggregate_id = aggregate_id


def require(condition: bool, field: str, message: str) -> None:
    """Raise a `DomainError` about `field` unless `condition` holds."""
    if not condition:
        raise DomainError(field, message)
