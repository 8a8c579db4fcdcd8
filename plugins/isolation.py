"""Running plugin code so that a raising or hanging plugin cannot hurt the host."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from goalledger.core.errors import DomainError
from goalledger.plugins.contracts import ChannelError, SourceError

T = TypeVar("T")


class TimedOut(Exception):
    """Plugin code did not return in time; its thread was abandoned."""


class Isolated:
    """Calls plugin code in daemon threads with a timeout, one call per key at a time.

    A call that overruns is abandoned (Python cannot kill a thread): its thread is a
    daemon, so it never holds up exit, and its key stays busy until it really ends,
    so a hanging plugin cannot pile up threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[Any, threading.Thread] = {}

    def busy(self, key: Any) -> bool:
        """Whether an earlier call for `key` is still running (abandoned or not)."""
        with self._lock:
            thread = self._running.get(key)
            return thread is not None and thread.is_alive()

    def call(self, key: Any, timeout: float, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)`, or its exception, or `TimedOut` after `timeout` seconds."""
        outcome: dict[str, Any] = {}
        finished = threading.Event()

        def run() -> None:
            try:
                outcome["value"] = function(*args)
            except BaseException as error:  # carried back to the caller's thread
                outcome["error"] = error
            finally:
                finished.set()
                with self._lock:
                    if self._running.get(key) is threading.current_thread():
                        del self._running[key]

        with self._lock:
            running = self._running.get(key)
            if running is not None and running.is_alive():
                raise TimedOut("an earlier call is still running (it overran its timeout)")
            thread = threading.Thread(target=run, name=f"goalledger-plugin:{key}", daemon=True)
            self._running[key] = thread
        thread.start()
        if not finished.wait(timeout):
            raise TimedOut(f"timed out after {timeout:g}s")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]


def reason(error: BaseException) -> str:
    """A one-line description of why plugin code failed, fit for users."""
    text = " ".join(str(error).split())
    if isinstance(error, (SourceError, ChannelError, TimedOut)):
        return text or type(error).__name__
    if isinstance(error, DomainError):
        return f"{error.field}: {error.message}"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
