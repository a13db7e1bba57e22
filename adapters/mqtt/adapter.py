"""The MQTT source: subscribe, decode, hand over, acknowledge after commit, reconnect.

Messages go from paho's read callback into a plain list (no task or future per message); one
consumer turns each burst into readings. With QoS >= 1 and a persistent session, a burst is
handed over with `put(wait=True)` in its own task and its messages are acknowledged, in arrival
order, only once the readings are in the ledger or the spool: a crash before that makes the
broker deliver them again. At most `max_inflight` messages are unacknowledged at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import aiomqtt

from adapters.base import AdapterContext
from collector.model import BAD, GOOD, UNCERTAIN, Reading
from collector.sources.normalise import normaliser_of

from .config import MqttSourceConfig, MqttTagConfig
from .connection import buffer_reads, explain, make_client, paho_logger, paho_of
from .payload import PayloadError, TagDecoder, parse_json
from .stats import PayloadStats
from .topics import Router, covers, machine_id, minimal_filters, render_name

log = logging.getLogger("adapters.mqtt")

BURST = 1_000  # most messages decoded in one go (a few ms: other tasks get their turn)
DRAIN_SECONDS = 5.0  # on shutdown, how long to wait for in-flight readings to become durable
FLUSH_POKE = 0.01  # seconds between requests to write while acknowledgements wait
_UNSET: Any = object()


@dataclass(frozen=True, eq=False)
class Route:
    """One configured tag, ready to decode."""

    tag: MqttTagConfig
    decoder: TagDecoder
    binds_machine: bool


@dataclass(frozen=True, slots=True)
class Target:
    """A route resolved for one topic: where its readings go."""

    decoder: TagDecoder
    machine: str
    name: str
    key: str  # how health counts it: the tag name, or machine/tag for bound machines


class _Batch:
    __slots__ = ("acks", "done", "ok")

    def __init__(self, acks: list[tuple[int, int]]):
        self.acks = acks
        self.done = False
        self.ok = False


class _Session:
    """What belongs to one broker connection: acknowledgements are only valid on it."""

    def __init__(self, client: aiomqtt.Client):
        self.client = client
        self.inflight: deque[_Batch] = deque()
        self.unacked = 0
        self.open = True
        self.tasks: set[asyncio.Task[None]] = set()


class MqttAdapter:
    """Reads one MQTT source until cancelled; see the module docstring."""

    def __init__(self, ctx: AdapterContext):
        self.ctx = ctx
        self.cfg: MqttSourceConfig = ctx.source  # type: ignore[assignment]
        self.machine = ctx.machine.id
        self.health = ctx.health
        self.stats = PayloadStats(ctx.health, self.machine, self.cfg.id)
        routes = [(t.template, Route(t, TagDecoder(t.json_path, t.timestamp, t.type,
                                                   normaliser_of(t), t.timestamp_unit),
                                     "machine" in t.template.variables))
                  for t in self.cfg.tags]
        self.router: Router[Route] = Router(routes)
        self.filters = minimal_filters(template.filter for template, _ in routes)
        self.manual = self.cfg.qos >= 1 and self.cfg.persistent
        self._targets: dict[str, list[Target]] = {}
        self._pending: list[Any] = []
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._lost: BaseException | None = None
        self._session: _Session | None = None
        self._late_pubcomp: list[int] = []
        self._last_ts = 0
        self._seen: dict[tuple[str, str], None] = {}
        self._down_marked = False
        self._flushing = False
        self._refused = False  # the broker refused a subscription of this connection
        self.drain_seconds = DRAIN_SECONDS
        self._paho_log, self._recorder = paho_logger(self.machine, self.cfg.id)

    # public -------------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, subscribe and consume; on any connection failure mark tags bad once,
        wait with capped exponential backoff, and connect again."""
        backoff = self.cfg.reconnect_backoff()
        while True:
            try:
                await self._connect_and_consume()
                message = "the broker closed the connection"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure is explained, counted and retried
                message = explain(exc, self.cfg, self._recorder.last)
            if self.health.connected:
                backoff.reset()  # it worked for a while: start backoff again
            self.health.error(message, connected=False)  # health logs it, at most once a minute
            delay = backoff.next()
            self.health.extra["retry_in_s"] = round(delay, 3)
            await self._mark_down()
            await asyncio.sleep(delay)

    # connection ---------------------------------------------------------------------------
    def _arrived(self, _client: Any, _userdata: Any, message: Any) -> None:
        """paho's on_message, in the event loop's thread: keep the message for the consumer.
        (Set on paho directly: aiomqtt's own message objects and queue cost more than the
        decoding of a small payload.)"""
        if message.dup:
            self.stats.redelivered += 1
        if not self.manual and message.qos == 0 and len(self._pending) >= 4 * BURST + 100_000:
            self.stats.dropped += 1  # QoS 0 faster than we can decode: the protocol allows loss
            return
        self._pending.append(message)
        self._wake.set()

    async def _connect_and_consume(self) -> None:
        self._recorder.last = None
        client = make_client(self.cfg, self.machine, logger=self._paho_log)
        inner = paho_of(client)
        inner.on_message = self._arrived
        if self.manual:
            inner.manual_ack_set(True)  # before connecting: a resumed session delivers at once
        self._lost = None
        async with client:
            buffer_reads(client)
            session = _Session(client)
            self._session = session
            watcher = asyncio.create_task(self._watch(client))
            try:
                await self._subscribe(client)
                self._on_connected()
                await self._consume(session)
            except asyncio.CancelledError:
                await self._drain(session)
                raise
            finally:
                session.open = False
                self._session = None
                self._pending.clear()  # unacknowledged: the broker delivers them again
                watcher.cancel()
                with contextlib.suppress(BaseException):
                    await watcher
                lost = getattr(client, "_disconnected", None)  # read it, or asyncio logs it as unretrieved
                if lost is not None and lost.done() and not lost.cancelled():
                    lost.exception()

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        if not self.filters:
            return
        wanted: list[tuple[str, int]] = [(f, self.cfg.qos) for f in self.filters]
        granted: Any = await client.subscribe(wanted)
        refused = [f for f, code in zip(self.filters, granted, strict=False)
                   if (code.is_failure if hasattr(code, "is_failure") else int(code) >= 0x80)]
        self._refused = bool(refused)
        if refused:
            self.health.error(f"broker {self.cfg.broker} refused the subscription to "
                              f"{', '.join(refused)} (check the broker's ACL for this user)")
            # their tags will get nothing: say so in the ledger once, as a gap, not silence
            ts = self._now()
            blind = [Reading(self.machine, t.name, ts, None, BAD) for t in self.cfg.tags
                     if not t.is_template and any(covers(f, t.template.filter) for f in refused)]
            if blind:
                await self.ctx.sink.put(blind)

    async def _watch(self, client: aiomqtt.Client) -> None:
        """Wait for the connection to drop (aiomqtt ends its message iterator then)."""
        try:
            async for _ in client.messages:  # never fed (see _arrived); it only ends on disconnect
                pass
        except aiomqtt.MqttError as exc:
            self._lost = exc
        else:
            self._lost = aiomqtt.MqttError("the broker closed the connection")
        self._wake.set()
        self._room.set()

    def _on_connected(self) -> None:
        self.health.connected = True
        self.health.extra.pop("retry_in_s", None)
        self.health.last_ok = int(time.time_ns() // 1000)
        self._down_marked = False
        if not self._refused:
            self.health.failures.recovered()
        self.stats.publish(subscriptions=list(self.filters), inflight=0,
                           session="persistent" if self.cfg.persistent else "clean")
        if self._late_pubcomp and self._session is not None:
            late, self._late_pubcomp = self._late_pubcomp, []
            for mid in late:
                paho_of(self._session.client).ack(mid, 2)
        log.info("%s/%s: connected to %s, subscribed to %s", self.machine, self.cfg.id,
                 self.cfg.broker, ", ".join(self.filters) or "nothing")

    async def _mark_down(self) -> None:
        """One BAD reading per known tag when the broker goes away: a visible gap."""
        if self._down_marked:
            return
        self._down_marked = True
        keys = dict.fromkeys((self.machine, t.name) for t in self.cfg.tags if not t.is_template)
        keys.update(self._seen)
        ts = self._now()
        readings = [Reading(m, n, ts, None, BAD) for m, n in keys]
        if readings:
            await self.ctx.sink.put(readings)

    # consuming ----------------------------------------------------------------------------
    async def _consume(self, session: _Session) -> None:
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
            if self._lost is not None:
                raise self._lost
            if self.manual and session.unacked >= self.cfg.max_inflight:
                self._room.clear()
                await self._room.wait()
                continue
            limit = BURST if not self.manual else min(BURST, self.cfg.max_inflight - session.unacked)
            burst = self._pending[:limit]
            del self._pending[:limit]
            readings, acks = self.decode(burst)
            self.health.reads += len(burst)
            self.health.readings += len(readings)
            self.health.last_ok = self._last_ts
            if acks:
                batch = _Batch(acks)
                session.inflight.append(batch)
                session.unacked += len(acks)
                task = asyncio.create_task(self._commit(session, batch, readings))
                session.tasks.add(task)
                task.add_done_callback(session.tasks.discard)
                self._nudge_flush(session)
            elif readings:
                await self.ctx.sink.put(readings)
            self.stats.publish(inflight=session.unacked)

    async def _commit(self, session: _Session, batch: _Batch, readings: list[Reading]) -> None:
        try:
            await self.ctx.sink.put(readings, wait=True)
            batch.ok = True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # not durable: do not acknowledge; reconnect to get them again
            log.error("%s/%s: readings could not be stored (%s); the broker will deliver them again",
                      self.machine, self.cfg.id, exc)
            if session.open and self._lost is None:
                self._lost = aiomqtt.MqttError(f"readings could not be stored: {exc}")
                self._wake.set()
        finally:
            batch.done = True
            self._release(session)

    def _release(self, session: _Session) -> None:
        """Acknowledge finished batches in arrival order (MQTT wants PUBACKs in order)."""
        inner = paho_of(session.client)
        while session.inflight and session.inflight[0].done:
            batch = session.inflight.popleft()
            session.unacked -= len(batch.acks)
            if session.open:
                if batch.ok:
                    for mid, qos in batch.acks:
                        inner.ack(mid, qos)
                    self.stats.acked += len(batch.acks)
            else:
                # a QoS 2 message is never sent again, only its PUBREL: complete it on the next connection
                self._late_pubcomp.extend(mid for mid, qos in batch.acks if qos == 2)
        self.health.extra["acked"] = self.stats.acked
        self.health.extra["inflight"] = session.unacked
        self._room.set()

    def _nudge_flush(self, session: _Session) -> None:
        """Ask the pipeline to write now rather than at its next flush interval, and again
        while readings still wait: unacknowledged messages hold back the broker's next ones."""
        flush = getattr(self.ctx.sink, "flush", None)
        if flush is None or self._flushing:
            return
        self._flushing = True

        async def run() -> None:
            try:
                while session.open and any(not b.done for b in session.inflight):
                    await asyncio.sleep(0)  # let the current burst's put() queue first
                    # ask again every 10 ms rather than only when the last flush returned: a
                    # flush can wait a whole flush interval behind a longer queue
                    poke = asyncio.ensure_future(flush())
                    await asyncio.wait({poke}, timeout=FLUSH_POKE)
            finally:
                self._flushing = False

        task = asyncio.get_running_loop().create_task(run())
        session.tasks.add(task)
        task.add_done_callback(session.tasks.discard)

    async def _drain(self, session: _Session) -> None:
        """On shutdown: let in-flight readings become durable and acknowledge them."""
        if not session.tasks:
            return
        flush = getattr(self.ctx.sink, "flush", None)
        with contextlib.suppress(BaseException):
            if flush is not None:
                await asyncio.wait_for(flush(), self.drain_seconds)
            await asyncio.wait(set(session.tasks), timeout=self.drain_seconds)

    def _now(self) -> int:
        """Receive time in epoch µs, strictly increasing so no two readings share a key."""
        ts = time.time_ns() // 1000
        if ts <= self._last_ts:
            ts = self._last_ts + 1
        self._last_ts = ts
        return ts

    # decoding -----------------------------------------------------------------------------
    def targets(self, topic: str) -> list[Target]:
        """Where a topic's readings go; cached per topic."""
        found = self._targets.get(topic)
        if found is not None:
            return found
        found = []
        for route, bound in self.router.lookup(topic):
            machine = machine_id(bound["machine"]) if route.binds_machine else self.machine
            name = render_name(route.tag.name, bound)
            if not machine or not name:
                continue  # a bound level that is empty after normalising: nothing to name
            key = name if machine == self.machine else f"{machine}/{name}"
            found.append(Target(route.decoder, machine, name, key))
            if route.tag.is_template and len(self._seen) < 10_000:
                self._seen[(machine, name)] = None  # marked BAD too when the broker goes away
        if len(self._targets) >= 50_000:
            self._targets.clear()
        self._targets[topic] = found
        return found

    def decode(self, messages: list[Any]) -> tuple[list[Reading], list[tuple[int, int]]]:
        """Readings of a burst of messages, and the (mid, qos) pairs to acknowledge after."""
        out: list[Reading] = []
        acks: list[tuple[int, int]] = []
        manual = self.manual
        retained = self.cfg.retained
        max_payload = self.cfg.max_payload
        stats = self.stats
        for message in messages:
            if manual and message.qos:
                acks.append((message.mid, message.qos))
            stats.messages += 1
            if message.retain and not retained:
                continue
            try:
                topic = message.topic
            except UnicodeDecodeError:  # a topic that is not UTF-8 matches no filter of ours
                stats.unmatched += 1
                continue
            targets = self._targets.get(topic) or self.targets(topic)
            if not targets:
                stats.unmatched += 1
                continue
            raw = message.payload
            if not raw:
                stats.empty += 1  # an empty retained message only clears the broker's copy
                continue
            ts = self._now()
            if len(raw) > max_payload:
                error = f"payload of {len(raw)} bytes is larger than max_payload ({max_payload})"
                for t in targets:
                    stats.bad_payload(t.key, topic, raw, error)
                    out.append(Reading(t.machine, t.name, ts, None, BAD))
                continue
            doc = _UNSET
            for t in targets:
                decoder = t.decoder
                try:
                    if decoder.path is not None:
                        if doc is _UNSET:
                            try:
                                doc = parse_json(raw)
                            except PayloadError as exc:
                                doc = exc
                        if doc.__class__ is PayloadError:
                            raise doc
                    value = decoder.value(raw, doc)
                except PayloadError as exc:
                    stats.bad_payload(t.key, topic, raw, str(exc))
                    out.append(Reading(t.machine, t.name, ts, None, BAD))
                    continue
                if value is None:  # the tag's nan_value: the device says it has no value
                    out.append(Reading(t.machine, t.name, ts, None, BAD))
                    continue
                if decoder.ts_path is None:
                    out.append(Reading(t.machine, t.name, ts, value, GOOD))
                else:
                    try:
                        out.append(Reading(t.machine, t.name, decoder.timestamp(doc), value, GOOD))
                    except PayloadError as exc:
                        stats.bad_payload(t.key, topic, raw, str(exc), timestamp=True)
                        out.append(Reading(t.machine, t.name, ts, value, UNCERTAIN))
        return out, acks


def create_adapter(ctx: AdapterContext) -> MqttAdapter:
    """The registry's factory."""
    return MqttAdapter(ctx)
