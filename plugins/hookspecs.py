"""Every goalledger hook, in one place; one-line docstring each.

Hooks receive a `register` callback rather than returning values, so the core owns
naming, duplicates and validation (the `llm` pattern):

    from goalledger.plugins import hookimpl

    @hookimpl
    def register_metric_sources(register):
        register(MySource())
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "goalledger"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[Any], None]


@hookspec
def register_metric_sources(register: Register) -> None:
    """Register metric sources (objects with `name`, `config_type` and `fetch`)."""


@hookspec
def register_notification_channels(register: Register) -> None:
    """Register notification channels (objects with `name`, `config_type` and `send`)."""


@hookspec
def register_scoring_rules(register: Register) -> None:
    """Register scoring rules (`goalledger.core.scoring.ScoringRule` instances)."""
