"""goalledger.plugins: hooks, the plugin registry, built-in sources and channels.

Plugin authors need `hookimpl` and the contract types, importable from here.
"""

from goalledger.plugins.contracts import (
    ChannelError,
    KpiRef,
    Notification,
    Observation,
    Secret,
    SourceError,
)
from goalledger.plugins.hookspecs import hookimpl

__all__ = [
    "ChannelError",
    "KpiRef",
    "Notification",
    "Observation",
    "Secret",
    "SourceError",
    "hookimpl",
]
