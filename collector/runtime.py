"""Starts and supervises everything `collector run` does, in one asyncio process.

One task per source (from the adapter registry, restarted with backoff if it crashes), the
pipeline writer, the ledger connection (retried in the background, so a database that is down
at boot only means readings wait in the spool), the retention sweep, and the API server that
the command line hands it (`api.server.ApiServer`: the core never imports the API).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from adapters.base import AdapterContext, AdapterSpec, registry
from collector.config import CollectorConfig, MachineConfig, SourceConfig
from collector.derive.engine import Derivation
from collector.derive.rules import compile_rules
from collector.ledger import (
    Ledger,
    LedgerSchemaMissing,
    MachineClaimedError,
    MachineInfo,
    SeriesInfo,
)
from collector.model import SourceHealth, now_us
from collector.pipeline import Pipeline, TagRule
from collector.sources.backoff import Backoff
from collector.spool import Spool
from collector.taghealth import TagWatch, WatchedSink

log = logging.getLogger("collector.runtime")

RESTART_MIN = 1.0  # first wait before restarting a crashed adapter; doubles up to the max
RESTART_MAX = 60.0
LEDGER_RETRY_MIN = 1.0  # first wait before reaching the ledger again at start-up; doubles ...
LEDGER_RETRY_MAX = 30.0
# how long a stop waits for the sources to finish once cancelled; one that has not is left
# behind (named in the log), so that what the pipeline holds is still written or spooled
# before a service manager's own stop timeout kills the process
SOURCE_STOP_SECONDS = 10.0
# Python's cyclic garbage collector runs on a clock while the service runs, not on its own
# allocation count (only a burst still sets one off, see below): every reading is a tuple the
# count includes, and readings live until their batch is written, so the count's collections
# kept finding the same live readings and promoting them, and the full collections that
# promotion set off traversed them again. 2,000 tags at 1 Hz: 5.8 collections a second,
# 0.85 ms of CPU a second; 20,000 tags: 78 a second, 38 of them full a minute, 13 ms of CPU a
# second, a tenth of the collector's CPU. Reference counting frees every reading either way;
# the clock only bounds how long cyclic garbage waits.
GC_YOUNG_EVERY = 5.0  # seconds between collections of the young generations
GC_FULL_EVERY = 12  # ... and every this many of them, a full collection
# The count still sets a collection off once this many more objects are alive than at the
# last one: the larger of GC_COUNT_LIMIT and GC_OBJECTS_PER_READING per reading of a full
# batch (`pipeline.batch_size`), since while a batch is made into rows its readings and their
# rows are alive and the next batch comes in. Below that the count went off at every batch of
# 50,000 (20,000 tags): a collection of 9-11 ms that found nothing.
GC_COUNT_LIMIT = 100_000
GC_OBJECTS_PER_READING = 3


T = TypeVar("T")
EVENT_LOOP_ENV = "COLLECTOR_EVENT_LOOP"


async def collect_garbage_on_a_clock(young_every: float | None = None,
                                     full_every: int | None = None,
                                     count_limit: int | None = None) -> None:
    """Python's cyclic garbage collector on a clock: the young generations every
    `GC_YOUNG_EVERY` seconds and everything every `GC_FULL_EVERY`th time, until cancelled.
    Meanwhile it runs on its own count only once `count_limit` (`GC_COUNT_LIMIT`) more
    objects are alive than at its last collection (Python's default is 700): the bound on what
    a burst of cyclic garbage may take between two ticks. Its thresholds are restored when
    cancelled."""
    young_every = GC_YOUNG_EVERY if young_every is None else young_every
    full_every = GC_FULL_EVERY if full_every is None else full_every
    thresholds = gc.get_threshold()
    gc.set_threshold(GC_COUNT_LIMIT if count_limit is None else count_limit, *thresholds[1:])
    try:
        turn = 0
        while True:
            await asyncio.sleep(young_every)
            turn += 1
            gc.collect(2 if turn % full_every == 0 else 1)
    finally:
        gc.set_threshold(*thresholds)


class EventLoopChoiceError(ValueError):
    """COLLECTOR_EVENT_LOOP asks for something this machine cannot give."""


def run_service(main: Coroutine[Any, Any, T]) -> T:
    """Run a long-lived service coroutine on uvloop (libuv's event loop, in C: the MQTT
    client, the HTTP server and asyncpg spend much less CPU in the loop) when it is installed,
    otherwise on asyncio's own loop. `COLLECTOR_EVENT_LOOP=asyncio` forces asyncio's loop."""
    choice = os.environ.get(EVENT_LOOP_ENV, "auto").strip().lower()
    problem = None
    if choice not in ("auto", "uvloop", "asyncio"):
        problem = f"{EVENT_LOOP_ENV}={choice!r}: use auto, uvloop or asyncio"
    elif choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                problem = f"{EVENT_LOOP_ENV}=uvloop, but uvloop is not installed (pip install uvloop)"
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(main)
    if problem:
        main.close()
        raise EventLoopChoiceError(problem)
    return asyncio.run(main)


def tag_rules(config: CollectorConfig) -> dict[tuple[str, str], TagRule]:
    rules = {}
    for machine in config.machines:
        for source in machine.sources:
            for tag in source.tags:
                if tag.deadband is not None or tag.heartbeat is not None:
                    heartbeat = int(tag.heartbeat * 1e6) if tag.heartbeat is not None else None
                    rules[(machine.id, tag.name)] = TagRule(tag.deadband, heartbeat)
    return rules


def configured_series(config: CollectorConfig) -> list[SeriesInfo]:
    out = []
    for machine in config.machines:
        for source in machine.sources:
            for tag in source.tags:
                if "{" in tag.name or getattr(tag, "is_template", False):  # bound at run time
                    continue
                out.append(SeriesInfo(machine.id, tag.name, tag.unit, source.id, source.protocol))
    return out


class Server(Protocol):
    """What the runtime serves beside its sources when `api.enabled`: the API."""

    port: int | None  # the port bound, once started

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Runtime:
    """Everything one collector process runs; `async with Runtime(config) as rt:`. `api`
    makes the API server of a runtime (`collector run` passes `api.server.ApiServer`);
    without it nothing is served."""

    def __init__(self, config: CollectorConfig, *, ledger_schema: str | None = None,
                 box: str | None = None, api: Callable[[Runtime], Server] | None = None):
        self.config = config
        self.ledger = Ledger(config.ledger.url, schema=ledger_schema or config.ledger.db_schema,
                             box=box or config.box, future_margin=config.pipeline.future_margin)
        self.spool = Spool(config.spool_path(), config.spool.max_size, config.spool.drop)
        self.pipeline = Pipeline(self.ledger, self.spool, config.pipeline, tag_rules(config))
        rules = [r for r in map(compile_rules, config.machines) if r is not None]
        self.derivation = Derivation(rules, self.ledger)
        if rules:  # nothing to look at in each batch otherwise
            self.pipeline.on_commit.append(self.derivation.committed)
        self.health: list[SourceHealth] = []
        self.started_at = now_us()
        self._tasks: list[asyncio.Task[Any]] = []
        self._source_tasks: list[asyncio.Task[Any]] = []
        self._make_api = api
        self.api: Server | None = None
        self._stop = asyncio.Event()
        self._schema_missing_told = False  # said once: an administrator has to act

    @property
    def api_port(self) -> int | None:
        """The port the API listens on (None when it is not served)."""
        return self.api.port if self.api is not None else None

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    def health_of(self, machine: str, source: str) -> SourceHealth:
        for h in self.health:
            if h.machine == machine and h.source == source:
                return h
        raise KeyError((machine, source))

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        await self.spool.open()
        await self._connect_ledger(first=True)
        await self.pipeline.start()
        await self.derivation.start()
        specs = registry()
        for machine in self.config.machines:
            for source in machine.sources:
                health = SourceHealth(machine.id, source.id, source.protocol)
                self.health.append(health)
                if source.enabled:
                    health.tags = TagWatch(source, health)
                    self._source_tasks.append(asyncio.create_task(
                        self._supervise(specs[source.protocol], machine, source, health),
                        name=f"source {machine.id}/{source.id}"))
        if self.config.ledger.retention:
            self._tasks.append(asyncio.create_task(self._retention(), name="retention"))
        if self.config.api.enabled and self._make_api is not None:
            self.api = self._make_api(self)
            await self.api.start()
        counts = zip(self.config.counts(), ("machine", "source", "tag"), strict=True)
        log.info("collector box %r running: %s", self.config.box,
                 ", ".join(f"{n} {word}{'' if n == 1 else 's'}" for n, word in counts))

    async def stop(self) -> None:
        """Stop sources, write or spool everything held, close the ledger; idempotent."""
        for task in self._source_tasks:
            task.cancel()
        if self._source_tasks:
            _, stuck = await asyncio.wait(self._source_tasks, timeout=SOURCE_STOP_SECONDS)
            for task in stuck:
                log.warning("%s did not stop within %.0f s of being asked to (its protocol "
                            "library is stuck, most often on a connection that does not "
                            "close); stopping without it", task.get_name(),
                            SOURCE_STOP_SECONDS)
        self._source_tasks.clear()
        await self.pipeline.stop()
        await self.derivation.stop()
        if self.api is not None:
            await self.api.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.spool.close()
        await self.ledger.close()

    async def run_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self._stop.set)
        async with self:
            # everything made at start-up lives as long as the process: out of the cyclic
            # GC's reach, its full collections (which the tuples of large API answers
            # trigger) stop stalling the loop for ~50 ms every few large answers
            gc.collect()
            gc.freeze()
            limit = max(GC_COUNT_LIMIT,
                        GC_OBJECTS_PER_READING * self.config.pipeline.batch_size)
            pacer = asyncio.create_task(collect_garbage_on_a_clock(count_limit=limit),
                                        name="gc")
            try:
                await self._stop.wait()
            finally:
                pacer.cancel()
                await asyncio.gather(pacer, return_exceptions=True)
            log.info("stopping: flushing readings to the ledger")

    def request_stop(self) -> None:
        self._stop.set()

    # ledger ------------------------------------------------------------------------------
    async def _connect_ledger(self, first: bool = False) -> None:
        try:
            await self.ledger.open()
            machines = [MachineInfo(m.id, m.name, m.area, m.line) for m in self.config.machines]
            await self.ledger.sync_config(machines, configured_series(self.config))
        except MachineClaimedError:
            raise  # a configuration conflict: waiting will not fix it
        except Exception as exc:
            self.ledger.ready = False
            message = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            where = self.ledger.url.split("@")[-1]
            if isinstance(exc, LedgerSchemaMissing):
                message = str(exc)
                self.pipeline.last_error = message
                if not self._schema_missing_told:  # also when it shows only on a retry
                    self._schema_missing_told = True
                    log.error("ledger %s: %s; readings are spooled until the schema exists",
                              where, message)
            elif first:
                log.error("ledger %s not reachable (%s); readings are spooled until it is",
                          where, message)
            if first:
                self.pipeline.ledger_ok = False
                self.pipeline.last_error = message
                self._tasks.append(asyncio.create_task(self._reconnect_ledger(), name="ledger"))
                return
            raise
        self.ledger.ready = True

    async def _reconnect_ledger(self) -> None:
        backoff = Backoff(LEDGER_RETRY_MIN, LEDGER_RETRY_MAX)
        while not self.ledger.ready:
            await asyncio.sleep(backoff.next())
            with contextlib.suppress(Exception):
                await self._connect_ledger()
        log.info("ledger reachable; replaying the spool")
        self.pipeline.ledger_ok = True

    async def _retention(self) -> None:
        retention = self.config.ledger.retention or 0
        while True:
            if self.ledger.ready:
                cutoff = now_us() - int(retention * 1e6)
                try:
                    deleted = await self.ledger.delete_older_than(cutoff)
                    if deleted:
                        log.info("retention: deleted %d readings older than %s", deleted,
                                 time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(cutoff / 1e6)))
                except Exception as exc:
                    log.warning("retention sweep failed: %s", exc)
            await asyncio.sleep(self.config.ledger.retention_interval)

    # sources -----------------------------------------------------------------------------
    async def _supervise(self, spec: AdapterSpec, machine: MachineConfig, source: SourceConfig,
                         health: SourceHealth) -> None:
        backoff = Backoff(RESTART_MIN, RESTART_MAX)
        sink = self.pipeline if health.tags is None else WatchedSink(self.pipeline, health.tags)
        context = AdapterContext(machine, source, sink, health)
        while True:
            started = time.monotonic()
            crash: Exception | None = None
            try:
                adapter = spec.factory(context)
                await adapter.run()
                message = "adapter stopped unexpectedly"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                crash = exc
                message = f"adapter crashed: {type(exc).__name__}: {exc}"
            health.error(message, connected=False)
            health.restarts += 1
            if time.monotonic() - started > 5 * RESTART_MAX:
                backoff.reset()  # it ran a good while: this is a new failure, not the same one
            delay = backoff.next()
            if crash is not None:
                log.error("%s/%s: %s; restarting in %.0f s", machine.id, source.id, message, delay,
                          exc_info=crash)
            await asyncio.sleep(delay)
