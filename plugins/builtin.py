"""The built-in scoring rules, registered as a plugin like any other."""

from __future__ import annotations

from goalledger.core.scoring import BUILTIN_RULES
from goalledger.plugins.hookspecs import Register, hookimpl


@hookimpl
def register_scoring_rules(register: Register) -> None:
    for rule in BUILTIN_RULES:
        register(rule)
