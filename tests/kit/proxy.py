"""A TCP proxy between a client under test and its peer that can cut every connection in the
middle of a message: the next chunk from the peer is passed on only halfway, then both sides
are closed, as a flaky switch or a NAT that forgets a connection would."""

from __future__ import annotations

import asyncio
import contextlib

from .ports import free_port


class CuttingProxy:
    """Listens on 127.0.0.1:`port` and forwards to 127.0.0.1:`target`; `cut()` arms a cut."""

    def __init__(self, target: int):
        self.target = target
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.connections = 0
        self.cuts = 0  # connections cut in the middle of a chunk
        self._armed = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> CuttingProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for w in list(self._writers):
            w.close()
        if self.server is not None:
            await self.server.wait_closed()
            self.server = None

    def cut(self) -> None:
        """Cut the open connections in the middle of the next chunk the peer sends."""
        self._armed.set()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            peer_r, peer_w = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            client_w.close()
            return
        self.connections += 1
        self._writers |= {client_w, peer_w}
        armed = self._armed

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, cutting: bool) -> None:
            while chunk := await src.read(65536):
                if cutting and armed.is_set() and len(chunk) > 1:
                    dst.write(chunk[: len(chunk) // 2])  # half a message, then nothing
                    await dst.drain()
                    self.cuts += 1
                    armed.clear()
                    return
                dst.write(chunk)
                await dst.drain()

        tasks = [asyncio.create_task(pipe(client_r, peer_w, False)),
                 asyncio.create_task(pipe(peer_r, client_w, True))]
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        for w in (client_w, peer_w):
            self._writers.discard(w)
            w.close()
