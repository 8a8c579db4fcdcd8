"""A TCP proxy on 127.0.0.1 that a test can sever (every connection closed, new ones
refused) and restore: a database outage without stopping the database server."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine
from typing import Any

CHUNK = 65536
CONTROL_SECONDS = 10


class SeverableProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target_port` from a thread of its own."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.connections_served = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.restore()

    def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CONTROL_SECONDS)

    def restore(self) -> None:
        """Listen again: new connections reach the target."""
        self._call(self._listen())

    def sever(self) -> None:
        """Stop listening (connections are refused) and close every open connection."""
        self._call(self._sever())

    def close(self) -> None:
        self.sever()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CONTROL_SECONDS)
        self._loop.close()

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _sever(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            writer.transport.abort()
            return
        self.connections_served += 1
        pair = {writer, upstream_writer}
        self._writers |= pair
        try:
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            for end in pair:
                end.transport.abort()
            self._writers -= pair


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.transport.abort()
