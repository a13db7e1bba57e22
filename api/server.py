"""The HTTP server of a running collector: the API and the status page served by uvicorn in
the collector's own event loop, with the worker processes that build large answers (started
by the first large answer, see `api.offload`).

`collector run` and `collector demo` pass `ApiServer` to the `Runtime`, which starts it after
its sources and stops it before closing the ledger; the runtime itself never imports the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn

from api.app import create_app
from api.boundary import RuntimeView
from api.hardening import quiet_uvicorn
from api.offload import Offload

log = logging.getLogger("api")


class _Server(uvicorn.Server):
    """uvicorn's server, woken once a second (for its `date` header) or when asked to stop,
    instead of ten times a second to look at `should_exit`: on an edge box those wake-ups
    were a tenth of what a collector with nothing to poll spends."""

    def __init__(self, config: uvicorn.Config):
        super().__init__(config)
        self.exit_now = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the runtime owns the signals
        yield

    async def main_loop(self) -> None:
        ticks = 0  # uvicorn's counter of tenths of a second: its header changes at each 10th
        while not await self.on_tick(ticks):
            ticks = (ticks + 10) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.exit_now.wait(), 1.0)


class ApiServer:
    """The API of `runtime` on `runtime.config.api`'s host and port; `port` is the one bound
    (port 0 in the config picks a free one)."""

    def __init__(self, runtime: RuntimeView):
        self.runtime = runtime
        self.port: int | None = None
        self.offload: Offload | None = None
        self._server: _Server | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        cfg = self.runtime.config.api
        sock = socket.socket(socket.AF_INET6 if ":" in cfg.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((cfg.host, cfg.port))
        except OSError as exc:
            sock.close()
            raise OSError(f"the API cannot listen on {cfg.host}:{cfg.port}: {exc.strerror} "
                          "(change api.port, or stop what uses it)") from None
        sock.listen(128)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        app = create_app(self.runtime)
        self._server = _Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                              lifespan="off", **quiet_uvicorn()))
        self.offload = app.state.offload
        self._tasks = [asyncio.create_task(self._server.serve(sockets=[sock]), name="api")]
        log.info("API and status page on http://%s:%s/", cfg.host, self.port)

    async def stop(self) -> None:
        """Lets the answers under way finish, then stops the worker processes."""
        if self._server is not None:
            self._server.should_exit = True
            self._server.exit_now.set()
        for task in self._tasks:
            if task.get_name() != "api":
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.offload is not None:
            await self.offload.close()
