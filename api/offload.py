"""Large answers (pages as JSON or CSV, aggregates, the newest readings of every tag) built
in worker processes, so that they use the machine's other cores.

A page of 10,000 readings or a day of 1-minute buckets costs ~10 ms of CPU to read and write
out as JSON; in the collector's one event loop, eight dashboards asking at once queue behind
each other on one core while the others stay idle, and the sources and the ledger writer wait
with them. `Offload` keeps `api.workers` processes (default: one per CPU, at most four), each
with its own read-only connection to the ledger, and sends them such answers whole: the
worker reads the rows and returns the finished body as bytes; the loop only sends it. Workers
run at a lower priority (nice 10) than the collector process, so that however many answers
they build, the sources and the ledger writer get the CPU first. They start with the first
large answer (a box nobody asks keeps their 65-95 MB each) and stop again after `IDLE_STOP`
seconds without one.

A worker that dies (killed, out of memory) is replaced, and the answer it owed is built in
the collector process instead; an error inside a worker (the database down) reaches the
client as the same 503 it would have been in the collector process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple

from api.boundary import LedgerView

if TYPE_CHECKING:
    from collector.ledger import Ledger

log = logging.getLogger("api")

T = TypeVar("T")
Args = TypeVarTuple("Args")

# set in each worker process by `_start_worker`
_loop: asyncio.AbstractEventLoop | None = None
_ledger: Ledger | None = None


class WorkerError(Exception):
    """An error raised in a worker, carried back by name and text (the original exception
    may not survive pickling)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind

    def __reduce__(self) -> tuple[Any, ...]:
        return (WorkerError, (self.kind, str(self)))


# answers that may hold this many rows or more go to a worker when there are any; smaller
# ones cost less than the trip
OFFLOAD_ROWS = 1000
# Answers of many rows built in this process are made at most this many at a time, in
# arrival order; each yields to the event loop between chunks of rows. The loop also runs the
# sources and the ledger writer: with eight clients asking for 10,000-row pages at once,
# unbounded, its turns grew to ~160 ms and ingest fell to a tenth of its rate. Two at once:
# one can wait for the database while the other formats.
LARGE_AT_ONCE = 2
NICE = 10  # workers' priority below the collector's (Linux: ~1/10 of its CPU share)
BREAKS_ALLOWED = 3  # worker deaths within BREAK_WINDOW s before answers stay in-process
BREAK_WINDOW = 60.0


IDLE_STOP = 300.0  # seconds without a large answer before the workers stop (till the next)
WORKER_CACHE_KIB = 2_048  # a worker's SQLite page cache: the OS caches the file for all of them
DEFAULT_MOST = 4  # each worker holds 65-95 MB; more than four rarely pays on a box


def default_workers() -> int:
    """One per CPU this process may use, at most `DEFAULT_MOST`: the collector's own loop
    needs little CPU per large answer (sending it), and the workers' lower priority keeps its
    turns short."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(cpus, DEFAULT_MOST)


def shareable(ledger: LedgerView | None) -> bool:
    """Whether there is a ledger for other processes to open (a file or a server)."""
    return ledger is not None and isinstance(ledger.url, str)


class Offload:
    """Worker processes for large answers; `run(build, *args)` awaits `build(ledger, *args)`
    (a module-level coroutine function; its result is pickled back, so bytes travel best)
    in a worker, or in this process when there are none (`workers=0`) or when the worker
    building it died; `answer(rows, build, *args)` picks a worker or this process by size."""

    def __init__(self, ledger: LedgerView | None, workers: int | None = None,
                 idle_stop: float = IDLE_STOP):
        self.ledger = ledger
        wanted = default_workers() if workers is None else workers
        self.workers = wanted if wanted > 0 and shareable(ledger) else 0
        self.idle_stop = idle_stop
        self._pool: ProcessPoolExecutor | None = None
        self._idle: asyncio.Task[None] | None = None
        self._used = 0.0  # monotonic time of the last answer asked of the workers
        self._busy = 0  # answers the workers are building now
        self._closed = False
        self.replaced = 0  # workers found dead and replaced
        self.answers = 0  # answers built by workers
        self._breaks: list[float] = []
        self._slots = asyncio.Semaphore(LARGE_AT_ONCE)  # for large answers built here

    @property
    def enabled(self) -> bool:
        return self.workers > 0 and not self._closed

    def _make_pool(self) -> ProcessPoolExecutor:
        assert self.ledger is not None  # workers only with a ledger (`shareable`)
        return ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker, initargs=(self.ledger.url, self.ledger.schema))

    def _pool_now(self) -> ProcessPoolExecutor:
        """The pool, made now if there is none (its processes start with its first tasks),
        with the task that stops it once it is idle."""
        self._used = time.monotonic()
        if self._pool is None:
            self._pool = self._make_pool()
        if self._idle is None or self._idle.done():
            self._idle = asyncio.create_task(self._stop_when_idle(), name="api-workers-idle")
        return self._pool

    async def _stop_when_idle(self) -> None:
        while self._pool is not None and not self._closed:
            wait = self._used + self.idle_stop - time.monotonic()
            if wait > 0 or self._busy:
                await asyncio.sleep(max(wait, 1.0))
                continue
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
            log.debug("API workers stopped after %.0f s without a large answer", self.idle_stop)
            return

    async def start(self) -> None:
        """Starts the workers now (each imports and connects, ~1 s) rather than with the
        first large answer."""
        if not self.enabled:
            return
        pool = self._pool_now()
        loop = asyncio.get_running_loop()
        try:
            await asyncio.gather(*(loop.run_in_executor(pool, _ready)
                                   for _ in range(self.workers)))
        except Exception as exc:  # the pool is remade on the next answer
            log.warning("API workers did not start: %s: %s", type(exc).__name__, exc)

    def sends(self, rows: int) -> bool:
        """Whether an answer of up to `rows` rows goes to a worker."""
        return self.enabled and rows >= OFFLOAD_ROWS

    async def answer(self, rows: int, build: Callable[[LedgerView, *Args], Awaitable[T]],
                     *args: *Args) -> T:
        """`build(ledger, *args)` for an answer of up to `rows` rows: in a worker when it is
        large and there are any, else here, `LARGE_AT_ONCE` at a time."""
        if self.sends(rows):
            return await self.run(build, *args)
        async with self._slots:
            return await build(self._here(), *args)

    async def run(self, build: Callable[[LedgerView, *Args], Awaitable[T]], *args: *Args) -> T:
        if not self.enabled:
            return await build(self._here(), *args)
        pool = self._pool_now()
        self._busy += 1
        try:
            body = await asyncio.get_running_loop().run_in_executor(pool, _build, build, args)
            self.answers += 1
            return body
        except BrokenProcessPool:
            if self._pool is pool and not self._closed:
                self._replace(pool)
            return await build(self._here(), *args)
        finally:
            self._busy -= 1
            self._used = time.monotonic()

    def _here(self) -> LedgerView:
        """The ledger of this process, for answers built here."""
        if self.ledger is None:
            raise RuntimeError("this API has no ledger to answer from")
        return self.ledger

    def _replace(self, pool: ProcessPoolExecutor) -> None:
        """A worker died: start new ones, unless they keep dying (then answers are built
        in the collector process from now on)."""
        pool.shutdown(wait=False, cancel_futures=True)
        now = time.monotonic()
        self._breaks = [t for t in self._breaks if now - t < BREAK_WINDOW] + [now]
        if len(self._breaks) > BREAKS_ALLOWED:
            log.error("API worker processes died %d times within %.0f s; large answers are "
                      "built in the collector process from now on (restart the collector to "
                      "try workers again, or set api.workers: 0)", len(self._breaks),
                      BREAK_WINDOW)
            self._pool, self.workers = None, 0
            return
        self.replaced += 1
        log.warning("an API worker process died; starting a new one (the answers it owed are "
                    "built in the collector process)")
        self._pool = self._make_pool()

    def pids(self) -> list[int]:
        """The worker processes' ids (for health pages and tests)."""
        processes = getattr(self._pool, "_processes", None) or {}
        return sorted(processes)

    async def close(self) -> None:
        """Stops the workers (those still building an answer are waited for, ~10 ms)."""
        self._closed = True
        if self._idle is not None:
            self._idle.cancel()
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)


# --- in the worker process --------------------------------------------------------------------
def _start_worker(url: str, schema: str | None) -> None:
    global _loop, _ledger
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the collector's to handle
    with contextlib.suppress(OSError, AttributeError):
        os.nice(NICE)
    # a worker outlives a collector killed with SIGKILL (its queue's pipe never closes):
    # it exits as soon as the collector is gone
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True,
                         name="collector-watch").start()
    from collector.ledger import Ledger

    _loop = asyncio.new_event_loop()
    asyncio.set_event_loop(_loop)
    _ledger = Ledger(url, schema=schema, read_cache_kib=WORKER_CACHE_KIB)
    _loop.run_until_complete(_ledger.open(migrate=False))
    # what start-up made lives as long as the worker: out of the cyclic GC's reach, as in
    # the collector process
    gc.collect()
    gc.freeze()


def _exit_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(0)


def _ready() -> int:
    return os.getpid()


def _build(build: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T:
    assert _loop is not None and _ledger is not None
    try:
        return _loop.run_until_complete(build(_ledger, *args))
    except Exception as exc:
        raise WorkerError(type(exc).__name__, str(exc)) from None
