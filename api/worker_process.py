"""`goalledger serve`'s worker child: the projector, alert clock and dispatcher in a
process of their own, so that their work does not share the API's interpreter lock.

The server starts `goalledger worker` with its own database URL and environment and
keeps it running: a child that dies is started again (after 0.5 s, doubling up to
30 s while it keeps dying young), and stopping the server stops it. The two share a
pipe: the server writes a byte to it after a write (`w`, at most one per 3 ms) or
when a reader waits for a position (`h`: do not linger), and the child's end reads
end-of-file the moment the server is gone, even by SIGKILL, and then the child
stops. (The kernel closes a dead process's descriptors; PR_SET_PDEATHSIG would fire
when the *thread* that started the child ends, and a restart starts it from the
supervising thread.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

log = logging.getLogger("goalledger.serve")
child_log = logging.getLogger("goalledger.worker")
RESTART_FIRST_SECONDS = 0.5
RESTART_MAX_SECONDS = 30.0
HEALTHY_SECONDS = 60.0  # a child that lived this long restarts without backoff
STOP_SECONDS = 40.0  # the worker finishes the batch in hand (its projector joins in 30 s)
WAKE, HURRY = b"w", b"h"
# Each byte wakes a thread in the child, which costs the writer's event loop tens of µs
# on this VM. Woken, the child's projector applies a batch and, the batch being small,
# gathers the next one for LINGER_SECONDS (5 ms): writes in the meantime need no wake.
WAKE_GAP_SECONDS = 0.003


class WorkerProcess:
    """A supervised `goalledger worker` child of this process."""

    def __init__(self, database_url: str, *, log_level: str = "info") -> None:
        self.command = [
            sys.executable, "-m", "goalledger.api.cli", "--database-url", database_url,
            "worker", "--log-level", log_level, "--without-scheduler",
        ]  # fmt: skip
        # Non-blocking: a child too busy to read lets the pipe fill, and a wake is dropped
        # (it has unread ones). Only the read end is passed on: when this process dies,
        # no write end is left open, and the child reads end-of-file.
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._pipe = threading.Lock()
        self._woken = 0.0
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # process and restarts, between start/stop and the loop
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        process = self.process
        return None if process is None else process.pid

    def start(self) -> None:
        """Start the child and the thread that restarts it when it dies."""
        self._stopping.clear()
        self._spawn()
        self._thread = threading.Thread(
            target=self._supervise, name="goalledger-worker-supervisor", daemon=True
        )
        self._thread.start()

    def wake(self, hurry: bool) -> None:
        """Tell the child's projector that something was written (or someone waits)."""
        now = time.monotonic()
        if not hurry and now - self._woken < WAKE_GAP_SECONDS:
            return  # the child is awake: it projects what came since in its next batch
        self._woken = now
        with self._pipe:  # never a write to a descriptor stop() closed (and reused)
            if self._write_fd < 0:
                return
            # Full: the child has wakes to read (or is being restarted, and reads them then).
            with contextlib.suppress(BlockingIOError):
                os.write(self._write_fd, HURRY if hurry else WAKE)

    def stop(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL after STOP_SECONDS) and its supervisor."""
        self._stopping.set()
        with self._lock:
            process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                log.error("worker child %d did not stop in %g s: killed", process.pid, STOP_SECONDS)
                process.kill()
                process.wait()
        if self._thread is not None:
            self._thread.join(STOP_SECONDS)
            self._thread = None
        with self._pipe:
            if self._write_fd >= 0:
                os.close(self._write_fd)
                os.close(self._read_fd)
                self._write_fd = self._read_fd = -1

    def _spawn(self) -> None:
        command = [*self.command, "--parent-fd", str(self._read_fd)]
        with self._lock:
            if self._stopping.is_set():
                return
            # Its own process group: a Ctrl-C in the terminal reaches the server, which
            # stops the child in order, rather than both at once.
            self.process = subprocess.Popen(
                command, pass_fds=(self._read_fd,), process_group=0, stdin=subprocess.DEVNULL
            )
        log.info("worker child started (pid %d)", self.process.pid)

    def _supervise(self) -> None:
        delay = RESTART_FIRST_SECONDS
        started = time.monotonic()
        while not self._stopping.is_set():
            process = self.process
            assert process is not None
            code = process.wait()
            if self._stopping.is_set():
                return
            lived = time.monotonic() - started
            if lived >= HEALTHY_SECONDS:
                delay = RESTART_FIRST_SECONDS
            log.warning(
                "worker child %d exited with %s after %.1f s; restarting in %.1f s",
                process.pid, _describe(code), lived, delay,
            )  # fmt: skip
            if self._stopping.wait(delay):
                return
            delay = min(RESTART_MAX_SECONDS, delay * 2)
            started = time.monotonic()
            try:
                self._spawn()
            except OSError:
                log.exception("could not start the worker child; trying again")
                continue
            self.restarts += 1


def _describe(code: int) -> str:
    return f"signal {-code}" if code < 0 else f"status {code}"


def watch_parent(fd: int, wake: Callable[[bool], object], gone: Callable[[], object]) -> None:
    """In the child: read the server's wakes from `fd` on a daemon thread, and call `gone`
    when the server is gone (end of file)."""

    def read() -> None:
        while True:
            try:
                data = os.read(fd, 4096)
            except InterruptedError:
                continue
            except OSError:
                data = b""
            if not data:
                child_log.warning("the server that started this worker is gone: stopping")
                gone()
                return
            wake(HURRY in data)

    threading.Thread(target=read, name="goalledger-parent-watch", daemon=True).start()
