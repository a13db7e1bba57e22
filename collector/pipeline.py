"""The only path into the ledger: filter, queue, batch, write; spool when the ledger fails.

    adapters --put()--> [deadband/heartbeat] --> bounded queue --> writer task --> ledger
                                                     | full                | write fails
                                                     v                     v
                                                   spool  <----------------+
                                                     '--- replayed in order once writes succeed

Memory is bounded by `pipeline.queue_size` readings: a batch that does not fit goes straight
to the spool. A `put(..., wait=True)` returns once its readings are durable (in the ledger or
the spool); MQTT acknowledges QoS 1 messages only then. When the spool cannot be written either
(its disk is full), batches the writer holds stay queued and are retried; a batch that finds
the queue full is refused (`wait=True`: the error reaches the caller, who does not
acknowledge) or, from a polling source, dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from collector.config import PipelineConfig
from collector.ledger import Ledger
from collector.model import SECONDS_BUCKETS, UNCERTAIN, BucketCounts, Reading, Value, now_us
from collector.sources.backoff import Backoff
from collector.spool import Spool

log = logging.getLogger("collector.pipeline")

RETRY_MIN = 0.5
RETRY_MAX = 30.0
FUTURE_LOG_EVERY = 60.0  # seconds between log lines about readings stamped in the future
# readings a spool replay takes per transaction, at least (`batch_size` when larger): bigger
# ones write little less, and all of one is in memory at once
REPLAY_READINGS = 80_000


@dataclass(frozen=True)
class TagRule:
    deadband: float | None = None
    heartbeat_us: int | None = None


class ChangeFilter:
    """Per-tag deadband and heartbeat: keeps a reading when its value moved more than the
    deadband, its quality changed, or the heartbeat has passed since the last one kept."""

    def __init__(self, rules: dict[tuple[str, str], TagRule]):
        self.rules = rules
        self._last: dict[tuple[str, str], tuple[Value, int, int]] = {}
        self.suppressed = 0

    def __call__(self, readings: Sequence[Reading]) -> Sequence[Reading]:
        if not self.rules:
            return readings
        out: list[Reading] = []
        rules = self.rules
        last = self._last
        for r in readings:
            key = (r.machine, r.tag)
            rule = rules.get(key)
            if rule is None:
                out.append(r)
                continue
            prev = last.get(key)
            if prev is None or self._keep(rule, prev, r):
                last[key] = (r.value, r.quality, r.ts)
                out.append(r)
            else:
                self.suppressed += 1
        return out

    @staticmethod
    def _keep(rule: TagRule, prev: tuple[Value, int, int], r: Reading) -> bool:
        value, quality, ts = prev
        if r.quality != quality:
            return True
        if rule.heartbeat_us is not None and r.ts - ts >= rule.heartbeat_us:
            return True
        v = r.value
        if (rule.deadband is not None and isinstance(v, int | float) and not isinstance(v, bool)
                and isinstance(value, int | float) and not isinstance(value, bool)):
            return abs(v - value) > rule.deadband
        return v != value or type(v) is not type(value)


class _Entry:
    __slots__ = ("readings", "done")

    def __init__(self, readings: Sequence[Reading], done: asyncio.Future[None] | None):
        self.readings = readings
        self.done = done


class Pipeline:
    """Bounded queue, batching writer, and store-and-forward through the spool."""

    def __init__(self, ledger: Ledger, spool: Spool, config: PipelineConfig | None = None,
                 rules: dict[tuple[str, str], TagRule] | None = None):
        self.ledger = ledger
        self.spool = spool
        self.config = config or PipelineConfig()
        self.filter = ChangeFilter(rules or {})
        self._queue: deque[_Entry] = deque()
        self.queued = 0  # readings in memory
        self.max_queued = 0  # high-water mark, for tests and health
        self._wake = asyncio.Event()
        self._flush_now = False
        self._waiters = 0  # queued entries whose producer awaits durability
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.ledger_ok = True
        self.last_error: str | None = None
        self.spool_error: str | None = None  # set while the spool cannot be written either
        self._retry = Backoff(RETRY_MIN, RETRY_MAX)  # between write attempts while failing
        # counters
        self.received = 0
        self.written = 0
        self.spilled = 0  # readings sent to the spool because the queue was full
        self.spooled = 0  # readings sent to the spool because a write failed
        self.replayed = 0
        self.write_errors = 0
        self.spool_errors = 0
        self.future = 0  # readings stamped more than future_margin ahead, stored as uncertain
        self._future_margin_us = int(self.config.future_margin * 1e6)
        self._future_logged: float | None = None
        self.lost = 0  # readings neither the ledger nor the spool could take (counted as dropped)
        self.last_write_seconds = 0.0
        self.write_seconds_total = 0.0
        self.batches_written = 0
        self.write_seconds = BucketCounts(SECONDS_BUCKETS)
        # called with every batch the ledger committed (derivations follow the ledger)
        self.on_commit: list[Callable[[Sequence[Reading]], None]] = []

    # producer side -------------------------------------------------------------------------
    async def put(self, readings: Sequence[Reading], *, wait: bool = False) -> None:
        """Queue readings (deadband/heartbeat applied); with `wait`, return once durable."""
        self.received += len(readings)
        if readings and max(r.ts for r in readings) > now_us() + self._future_margin_us:
            readings = self._flag_future(readings)
        kept = self.filter(readings)
        if not kept and not wait:
            return
        if self.queued + len(kept) > self.config.queue_size:
            # the writer is behind: keep memory bounded and the readings safe on disk
            if await self._to_spool(kept):
                self.spilled += len(kept)
                return
            if wait:
                raise OSError(f"neither the ledger nor the spool can take readings now: "
                              f"{self.spool_error}")
            self.lost += len(kept)
            return
        done = asyncio.get_running_loop().create_future() if wait else None
        first = not self._queue
        self._queue.append(_Entry(kept, done))
        self.queued += len(kept)
        if self.queued > self.max_queued:
            self.max_queued = self.queued
        if done is not None:
            # someone waits for durability (an MQTT ack): write at the next turn; whatever
            # arrives while that write runs goes into the following one (group commit)
            self._waiters += 1
            self._flush_now = True
            self._wake.set()
        elif first or self.queued >= self.config.batch_size:
            self._wake.set()  # first entry starts the flush timer; a full batch goes at once
        if done is not None:
            await asyncio.shield(done)

    def _flag_future(self, readings: Sequence[Reading]) -> list[Reading]:
        """Readings stamped too far ahead of this box's clock (a device clock that is wrong)
        become uncertain: stored, but never passed off as a good newest value."""
        limit = now_us() + self._future_margin_us
        out = []
        for r in readings:
            if r.ts > limit and r.quality < UNCERTAIN:
                self.future += 1
                now = time.monotonic()
                if self._future_logged is None or now - self._future_logged >= FUTURE_LOG_EVERY:
                    self._future_logged = now
                    log.warning("%s/%s: a reading stamped %.0f s ahead of this box's clock is "
                                "stored as uncertain (check the device's and the box's clocks; "
                                "%d so far)", r.machine, r.tag, (r.ts - limit) / 1e6
                                + self.config.future_margin, self.future)
                r = r._replace(quality=UNCERTAIN)
            out.append(r)
        return out

    async def flush(self) -> None:
        """Write everything queued now and return when it is durable."""
        if self._task is None or self._task.done():
            await self._drain_all()
            return
        done = asyncio.get_running_loop().create_future()
        self._queue.append(_Entry([], done))
        self._waiters += 1
        self._flush_now = True
        self._wake.set()
        await asyncio.shield(done)

    # writer side ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pipeline-writer")

    async def stop(self, timeout: float = 15.0) -> None:
        """Stop taking new work from the queue after writing (or spooling) all of it."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout)
            except TimeoutError:
                log.warning("ledger writes did not finish within %.0f s; spooling the rest", timeout)
            except Exception:  # pragma: no cover - logged by _run
                pass
        await self._spool_queue()

    async def _run(self) -> None:
        interval = self.config.flush_interval
        while True:
            if not self._queue and not self._stopping:
                self._wake.clear()
                # sleep until there is work, or until a spool replay is due
                wait = interval if self.spool.backlog else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
            if self._queue and not self._stopping and not self._flush_now \
                    and self.queued < self.config.batch_size:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), interval)
            self._flush_now = False
            try:
                await self._cycle()
            except Exception as exc:  # never let the writer die: the spool is the safety net
                log.exception("pipeline writer error: %s", exc)
                await asyncio.sleep(0.5)
            if self._stopping and (not self._queue or self.spool_error is not None):
                return  # (stop() tries the spool once more with what is left)
            if self.spool_error is not None and self._queue:
                await asyncio.sleep(max(interval, 0.1))  # nowhere to put them yet: no spinning

    async def _cycle(self) -> None:
        if self.spool.backlog and not self._retry.retry_in:
            await self._replay()
        while self._queue:
            entries = self._take(self.config.batch_size)
            batch = _concat(e.readings for e in entries)
            # with the spool failing too, the ledger is tried again once its retry is due
            try_ledger = self.ledger_ok or self._stopping or (
                self.spool_error is not None and not self._retry.retry_in)
            if not (try_ledger and await self._write(batch)):
                if not await self._to_spool(batch):
                    self._requeue(entries)  # kept in memory (bounded) until one can take it
                    break
                self.spooled += len(batch)
            for e in entries:
                if e.done is not None and not e.done.done():
                    e.done.set_result(None)
            if (not self._flush_now and not self._stopping and not self._waiters
                    and self.queued < self.config.batch_size):
                break

    async def _write(self, batch: list[Reading]) -> bool:
        if not batch:
            return True
        started = time.perf_counter()
        try:
            await self.ledger.write(batch)
        except Exception as exc:
            self._failed(exc)
            return False
        elapsed = time.perf_counter() - started
        self.last_write_seconds = elapsed
        self.write_seconds_total += elapsed
        self.write_seconds.observe(elapsed)
        self.batches_written += 1
        self.written += len(batch)
        for hook in self.on_commit:
            try:
                hook(batch)
            except Exception:  # a derivation's bug must not cost the readings their ledger
                log.exception("after-commit step failed")
        if not self.ledger_ok:
            log.info("ledger writable again")
        self.ledger_ok = True
        self.last_error = None
        self._retry.reset()
        return True

    def _failed(self, exc: BaseException) -> None:
        self.write_errors += 1
        message = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        if self.ledger_ok:
            log.error("ledger write failed, spooling until it recovers: %s", message)
        self.ledger_ok = False
        self.last_error = message
        self._retry.next()

    async def _replay(self) -> None:
        """Move spooled batches into the ledger, oldest first, until the spool is empty or a
        write fails; leaves room for live data by yielding between chunks."""
        while self.spool.backlog:
            chunk = await self.spool.peek(max(self.config.batch_size, REPLAY_READINGS))
            if not chunk:
                return
            batch = _concat(readings for _, readings in chunk)
            if not await self._write(batch):
                return
            try:
                await self.spool.remove([batch_id for batch_id, _ in chunk])
            except Exception as exc:  # its disk is full: kept, replayed again (the key dedupes)
                self._spool_failed(exc)
                self._retry.next()  # not again at once: each replay writes the ledger too
                return
            if self.spool_error is not None:
                log.info("spool writable again")
                self.spool_error = None
            self.replayed += len(batch)
            if self.queued >= self.config.batch_size and not self._stopping:
                return  # live data first; the replay goes on next cycle

    async def _to_spool(self, batch: list[Reading] | Sequence[Reading]) -> bool:
        """Append to the spool; False (counted, logged once until it works again) when its
        disk cannot take the batch either."""
        try:
            await self.spool.append(batch)
        except Exception as exc:
            self._spool_failed(exc)
            return False
        if self.spool_error is not None:
            log.info("spool writable again")
            self.spool_error = None
        return True

    def _spool_failed(self, exc: BaseException) -> None:
        self.spool_errors += 1
        message = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        if self.spool_error is None:
            log.error("the spool cannot be written either (%s); holding readings in memory "
                      "up to pipeline.queue_size and retrying", message)
        self.spool_error = message

    def _requeue(self, entries: list[_Entry]) -> None:
        """Put taken entries back at the front, in their order."""
        for entry in reversed(entries):
            self._queue.appendleft(entry)
            self.queued += len(entry.readings)
            if entry.done is not None:
                self._waiters += 1

    def _take(self, limit: int) -> list[_Entry]:
        taken: list[_Entry] = []
        count = 0
        while self._queue and (count < limit or not taken):
            entry = self._queue.popleft()
            taken.append(entry)
            count += len(entry.readings)
            if entry.done is not None:
                self._waiters -= 1
        self.queued -= count
        return taken

    async def _spool_queue(self) -> None:
        while self._queue:
            entries = self._take(self.config.batch_size)
            batch = _concat(e.readings for e in entries)
            if await self._to_spool(batch):
                self.spooled += len(batch)
                error = None
            else:  # shutting down with nowhere to put them: counted, and not acknowledged
                self.lost += len(batch)
                error = OSError(f"readings could not be stored: {self.spool_error}")
                log.error("shutting down with %d readings neither the ledger nor the spool "
                          "could take (%s)", len(batch), self.spool_error)
            for e in entries:
                if e.done is not None and not e.done.done():
                    if error is None:
                        e.done.set_result(None)
                    else:
                        e.done.set_exception(error)

    async def _drain_all(self) -> None:
        self._flush_now = True
        await self._cycle()
        while self._queue:
            await self._cycle()

    # health ----------------------------------------------------------------------------------
    def stats(self) -> dict[str, object]:
        return {
            "ok": self.ledger_ok,
            "backlog": self.spool.backlog,
            "queued": self.queued,
            "queue_size": self.config.queue_size,
            "received": self.received,
            "suppressed": self.filter.suppressed,
            "written": self.written,
            "spilled": self.spilled,
            "spooled": self.spooled,
            "replayed": self.replayed,
            "dropped": self.spool.dropped + self.lost,
            "write_errors": self.write_errors,
            "future": self.future,
            "spool_ok": self.spool_error is None,
            "spool_errors": self.spool_errors,
            "last_error": "; ".join(e for e in (
                self.last_error, self.spool_error and f"spool: {self.spool_error}") if e) or None,
            "last_write_seconds": round(self.last_write_seconds, 6),
        }


def _concat(parts: Iterable[Sequence[Reading]]) -> list[Reading]:
    out: list[Reading] = []
    for part in parts:
        out.extend(part)
    return out
