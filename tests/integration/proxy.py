"""A small round-robin TCP reverse proxy for tests, standing in for nginx in
front of several API processes: each client connection goes to the next
backend, and a backend that refuses the connection (its process is dead or
restarting) is skipped for the next one, like nginx's
``proxy_next_upstream error``. A connection already piped to a backend that
then dies is cut, as nginx cuts it: the client sees a reset and retries.

It runs its own event loop in a thread, so a test that blocks its loop (say on
a store read) does not stall the traffic it proxies."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections import Counter
from types import TracebackType

CHUNK = 64 * 1024


class RoundRobinProxy:
    def __init__(self, backends: list[int], host: str = "127.0.0.1") -> None:
        self.host = host
        self.backends = backends
        self.connections: Counter[int] = Counter()  # per backend port, connections piped to it
        self.refused: Counter[int] = Counter()  # per backend port, connections it refused
        self._next = itertools.cycle(range(len(backends)))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> RoundRobinProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, self.host, 0), self._loop
        ).result()
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The next backend that accepts a connection, trying each once."""
        for _ in self.backends:
            port = self.backends[next(self._next)]
            try:
                streams = await asyncio.open_connection(self.host, port)
            except OSError:
                self.refused[port] += 1
                continue
            self.connections[port] += 1
            return streams
        return None

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream = await self._connect()
        if upstream is None:  # every backend is down: the client sees the connection closed
            client_writer.close()
            return
        up_reader, up_writer = upstream
        pipes = [
            asyncio.create_task(_pipe(client_reader, up_writer)),
            asyncio.create_task(_pipe(up_reader, client_writer)),
        ]
        try:
            # One side ending (the client done, the backend dead) ends both.
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
            for writer in (up_writer, client_writer):
                with contextlib.suppress(OSError, RuntimeError):
                    writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
