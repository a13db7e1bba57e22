"""The OPC UA source: one session per endpoint, subscriptions (default) or fixed-rate polling.

Lifecycle: connect (security, login) -> resolve nodes -> subscribe or poll -> watch for loss
(socket closed, the client's watchdog read failing, no publish/keepalive, a bad subscription
status) -> one BAD reading per tag -> reconnect with capped exponential backoff, building a new
session and every monitored item from scratch, so nothing stale survives a server restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math

from asyncua import Client, ua

from adapters.base import AdapterContext
from collector.model import now_us

from . import publish_decoder
from .config import OpcUaSourceConfig
from .errors import ConnectionLost, describe
from .items import Item, ReadingMaker, build_items
from .nodeid import BrowsePath, format_node_id, node_id
from .publish_decoder import ScalarDataChange
from .security import ClientCertificate, configure_security, ensure_client_certificate

log = logging.getLogger(__name__)

KEEPALIVE_S = 2.0  # the server sends an empty publish at least this often
SESSION_TIMEOUT_MS = 60_000  # a session we lost track of is dropped by the server after this
NODE_ERRORS = {
    "BadNodeIdUnknown": "does not exist on the server",
    "BadNodeIdInvalid": "is not a valid node id for this server",
    "BadAttributeIdInvalid": "is not a variable (it has no value)",
    "BadNotReadable": "cannot be read",
    "BadUserAccessDenied": "may not be read by this user",
    "BadNoMatch": "was not found",
}
_FILTER_ERRORS = {"BadFilterNotAllowed", "BadMonitoredItemFilterUnsupported", "BadDeadbandFilterInvalid"}


class OpcUaAdapter:
    """Reads one `protocol: opcua` source until cancelled; see the module docstring."""

    def __init__(self, ctx: AdapterContext):
        assert isinstance(ctx.source, OpcUaSourceConfig)
        self.ctx = ctx
        self.source: OpcUaSourceConfig = ctx.source
        self.machine = ctx.machine.id
        self.items: list[Item] = build_items(self.source)
        self.statuses: dict[str, str] = {}
        self.tag_errors: dict[str, str] = {}
        self.maker = ReadingMaker(self.machine, self.items, self._item_problem, self.statuses)
        self.cert: ClientCertificate | None = None
        self._outage_marked = False
        self._lost = asyncio.Event()
        self._loss_reason = ""
        self._last_publish = 0.0
        self._keepalive_s = KEEPALIVE_S
        self._pending: list = []
        health = ctx.health
        health.extra.update(endpoint=self.source.endpoint, mode=self.source.mode,
                            tag_status=self.statuses, tag_errors=self.tag_errors)

    # ---- lifecycle -------------------------------------------------------------------

    async def run(self) -> None:
        backoff = self.source.reconnect_backoff()
        while True:
            client: Client | None = None
            connected = False
            try:
                client = await self._client()
                await client.connect()
                connected = True
                await self._start(client)
                backoff.reset()
                await self._watch(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._outage(self._describe(exc))
            finally:
                if client is not None:
                    await self._close(client, connected)
            delay = backoff.next()
            self.ctx.health.extra["retry_in_s"] = round(delay, 3)
            await asyncio.sleep(delay)

    async def _client(self) -> Client:
        src = self.source
        client = Client(src.endpoint, timeout=src.timeout, watchdog_intervall=max(2.0, src.timeout))
        client.session_timeout = SESSION_TIMEOUT_MS
        client.name = client.description = f"retrofit-collector {self.machine}/{src.id}"
        client.connection_lost_callback = self._on_connection_lost
        if src.security_policy != "None" and self.cert is None:
            assert src.certificate and src.private_key
            self.cert = await asyncio.to_thread(
                ensure_client_certificate, src.certificate, src.private_key, src.application_uri)
            if self.cert.generated:
                msg = (f"machine {self.machine}, source {src.id}: generated client certificate "
                       f"{self.cert.cert_path} (thumbprint {self.cert.thumbprint}, application URI "
                       f"{self.cert.application_uri}); the server admin must trust it")
                print(msg, flush=True)
                log.warning(msg)
        await configure_security(client, src, self.cert)
        return client

    async def _start(self, client: Client) -> None:
        self._lost = asyncio.Event()
        self._loss_reason = ""
        self.tag_errors.clear()
        for item in self.items:
            item.problem = None
        active = await self._resolve(client)
        health = self.ctx.health
        if self.source.mode == "subscribe":
            await self._subscribe(client, active)
        else:
            self._pending.append(asyncio.create_task(self._poll(client, active)))
        self._outage_marked = False
        health.connected = True
        health.extra.pop("retry_in_s", None)
        health.extra["nodes"] = len(active)
        log.info("machine %s, source %s: connected to %s, %d nodes (%s)", self.machine,
                 self.source.id, self.source.endpoint, len(active), self.source.mode)

    async def _watch(self, client: Client | None = None) -> None:
        """Return only by raising ConnectionLost (or the poll task's error)."""
        loop = asyncio.get_running_loop()
        self._last_publish = loop.time()
        while not self._lost.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._lost.wait()
            for task in self._pending:
                if task.done():
                    task.result()  # re-raises what stopped polling
            if self.source.mode == "subscribe" and client is not None:
                publishing = getattr(client.uaclient.session, "_publish_task", None)
                if publishing is not None and publishing.done():  # asyncua stops on BadNoSubscription
                    raise ConnectionLost(f"{self.source.endpoint} dropped our subscription; subscribing again")
                silent = loop.time() - self._last_publish
                if silent > 2 * self._keepalive_s + self.source.timeout:
                    raise ConnectionLost(f"no data and no keepalive from {self.source.endpoint} for {silent:.0f}s")
        raise ConnectionLost(self._loss_reason)

    async def _close(self, client: Client, connected: bool) -> None:
        for task in self._pending:
            task.cancel()
        for task in self._pending:
            with contextlib.suppress(BaseException):
                await task
        self._pending.clear()
        client.connection_lost_callback = None
        healthy = connected and not self._lost.is_set() and client.uaclient.state.name == "CONNECTED"
        try:
            async with asyncio.timeout(2.0):
                if healthy:
                    await client.disconnect()
                elif connected:
                    await client.close_session()  # stops asyncua's watchdog tasks; the socket is gone
        except Exception as exc:  # the server may be gone already; nothing left to tell it
            log.debug("closing the session failed: %r", exc)
        publish = getattr(client.uaclient.session, "_publish_task", None)
        if publish is not None:
            publish.cancel()
        client.disconnect_socket()

    async def _on_connection_lost(self, exc: Exception) -> None:
        self._lose(f"lost the connection to {self.source.endpoint} ({self._describe(exc)})")

    def _lose(self, reason: str) -> None:
        if not self._lost.is_set():
            self._loss_reason = reason
            self._lost.set()

    async def _outage(self, message: str) -> None:
        """Report the failure and, once per outage, one BAD reading per tag (a visible gap)."""
        full = f"machine {self.machine}, source {self.source.id}: {message}"
        self.ctx.health.error(full, connected=False)  # health logs it, at most once a minute
        if not self._outage_marked:
            self._outage_marked = True
            readings = self.maker.outage()
            if readings:
                await self.ctx.sink.put(readings)

    def _describe(self, exc: BaseException) -> str:
        src = self.source
        return describe(exc, src.endpoint, username=src.username, certificate=src.certificate,
                        thumbprint=self.cert.thumbprint if self.cert else None, timeout=src.timeout)

    def _item_problem(self, item: Item, message: str) -> None:
        if item.problem == message:
            return
        item.problem = message
        for b in item.tags:
            self.tag_errors[b.name] = message
        full = f"machine {self.machine}, source {self.source.id}, {message}"
        self.ctx.health.error(full)

    # ---- nodes -------------------------------------------------------------------------

    async def _resolve(self, client: Client) -> list[tuple[int, Item]]:
        """Node ids for every item (nsu= and browse paths need the server); bad ones reported."""
        namespaces = None
        if any(b.tag.node and b.tag.node.startswith("nsu=") for item in self.items for b in item.tags):
            namespaces = await client.get_namespace_array()
        active: list[tuple[int, Item]] = []
        by_path: list[tuple[int, Item, BrowsePath]] = []
        failed: list[Item] = []
        for handle, item in enumerate(self.items):
            tag = item.tags[0].tag
            ref = tag.node_ref()
            if ref is None:
                path = tag.path()
                assert path is not None  # the config gives every tag a node or a browse path
                by_path.append((handle, item, path))
                continue
            try:
                item.node_id = ref.resolve(namespaces)
            except LookupError as exc:
                self._item_problem(item, f"{self._names(item)} ({item.key}): {exc}; check the nsu= part")
                failed.append(item)
                continue
            active.append((handle, item))
        size = self.source.batch_size
        objects = node_id(ua.ObjectIds.ObjectsFolder)
        for start in range(0, len(by_path), size):
            batch = by_path[start:start + size]
            paths = [path.relative_path() for _, _, path in batch]
            results = await client.translate_browsepaths(objects, paths)
            for (handle, item, _), result in zip(batch, results, strict=True):
                if result.StatusCode.is_good() and result.Targets:
                    target = result.Targets[0].TargetId
                    item.node_id = ua.NodeId(target.Identifier, target.NamespaceIndex, target.NodeIdType)
                    active.append((handle, item))
                else:
                    name = result.StatusCode.name
                    self._item_problem(item, f"{self._names(item)}: browse path {item.tags[0].tag.browse_path} "
                                       f"was not found ({name}); find the right path with `collector opcua-browse`")
                    failed.append(item)
        if failed and not self._outage_marked:
            await self.ctx.sink.put(self.maker.outage(failed))
        active.sort(key=lambda pair: pair[0])
        return active

    def _names(self, item: Item) -> str:
        names = [b.name for b in item.tags]
        return f"tag {names[0]!r}" if len(names) == 1 else f"tags {', '.join(map(repr, names))}"

    def _node_failed(self, item: Item, status: ua.StatusCode) -> None:
        name = status.name
        what = NODE_ERRORS.get(name, f"was refused by the server ({name})")
        self._item_problem(item, f"{self._names(item)}: node {item.key} {what} ({name}); "
                           "check it with `collector opcua-browse`")

    # ---- subscribe ---------------------------------------------------------------------

    async def _subscribe(self, client: Client, active: list[tuple[int, Item]]) -> None:
        session = client.uaclient.session
        interval = self.source.interval
        keepalive = max(1, math.ceil(KEEPALIVE_S / interval))
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=interval * 1000, RequestedLifetimeCount=keepalive * 6,
            RequestedMaxKeepAliveCount=keepalive, MaxNotificationsPerPublish=0,
            PublishingEnabled=True, Priority=0)
        publish_decoder.install(session)
        result = await session.create_subscription(params, callback=self._on_publish)
        self._keepalive_s = max(result.RevisedPublishingInterval / 1000 * result.RevisedMaxKeepAliveCount, 1.0)
        self._last_publish = asyncio.get_running_loop().time()
        numeric = await self._numeric_items(client, active)
        failed: list[Item] = []
        size = self.source.batch_size
        for start in range(0, len(active), size):
            batch = active[start:start + size]
            requests = [self._request(h, item, item.deadband is not None and h in numeric) for h, item in batch]
            results = await self._create_items(session, result.SubscriptionId, requests)
            retry = []
            for (handle, item), res in zip(batch, results, strict=True):
                if res.StatusCode.is_good():
                    continue
                if res.StatusCode.name in _FILTER_ERRORS:  # server cannot filter: the pipeline still does
                    retry.append((handle, item))
                    continue
                self._node_failed(item, res.StatusCode)
                failed.append(item)
            if retry:
                results = await self._create_items(session, result.SubscriptionId,
                                                   [self._request(h, item, False) for h, item in retry])
                for (_, item), res in zip(retry, results, strict=True):
                    if not res.StatusCode.is_good():
                        self._node_failed(item, res.StatusCode)
                        failed.append(item)
        if failed:
            await self.ctx.sink.put(self.maker.outage(failed))
        self.ctx.health.extra["monitored_items"] = len(active) - len(failed)

    async def _create_items(self, session, subscription_id: int, requests: list) -> list:
        params = ua.CreateMonitoredItemsParameters(SubscriptionId=subscription_id, ItemsToCreate=requests,
                                                   TimestampsToReturn=ua.TimestampsToReturn.Both)
        return await session.create_monitored_items(params)

    def _request(self, handle: int, item: Item, with_deadband: bool) -> ua.MonitoredItemCreateRequest:
        mparams = ua.MonitoringParameters(ClientHandle=handle, SamplingInterval=item.sampling_interval * 1000,
                                          QueueSize=item.queue_size, DiscardOldest=True)
        if with_deadband:
            mparams.Filter = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValue,
                                                 DeadbandType=ua.DeadbandType.Absolute, DeadbandValue=item.deadband)
        return ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=item.node_id, AttributeId=ua.AttributeIds.Value),
            MonitoringMode=ua.MonitoringMode.Reporting, RequestedParameters=mparams)

    async def _numeric_items(self, client: Client, active: list[tuple[int, Item]]) -> set[int]:
        """Handles of items with a deadband whose value is numeric (a deadband on text is refused)."""
        wanted = [(h, item.node_id) for h, item in active
                  if item.deadband is not None and item.node_id is not None]
        if not wanted:
            return set()
        values = await client.uaclient.read_attributes([node for _, node in wanted], ua.AttributeIds.Value)
        numeric = set()
        for (handle, _), dv in zip(wanted, values, strict=True):
            v = dv.Value.Value if dv.Value is not None else None
            if isinstance(v, int | float) and not isinstance(v, bool):
                numeric.add(handle)
        return numeric

    async def _on_publish(self, result: ua.PublishResult) -> None:
        """Called by asyncua's publish loop for every publish response (data or keepalive)."""
        self._last_publish = asyncio.get_running_loop().time()
        data = result.NotificationMessage.NotificationData
        if not data:
            return
        for notif in data:
            if type(notif) is ScalarDataChange:
                readings = self.maker.make_scalars(notif.items, now_us())
                if readings:
                    await self.ctx.sink.put(readings)
                    self.ctx.health.ok(len(readings), clean=not self.tag_errors)
            elif type(notif) is ua.DataChangeNotification:
                readings = self.maker.make(((m.ClientHandle, m.Value) for m in notif.MonitoredItems), now_us())
                if readings:
                    await self.ctx.sink.put(readings)
                    self.ctx.health.ok(len(readings), clean=not self.tag_errors)
            elif isinstance(notif, ua.StatusChangeNotification) and not notif.Status.is_good():
                self._lose(f"the server ended the subscription ({notif.Status.name})")

    # ---- poll --------------------------------------------------------------------------

    async def _poll(self, client: Client, active: list[tuple[int, Item]]) -> None:
        """Read every node in batches on a fixed-rate grid; an overrun skips the missed slots."""
        session = client.uaclient.session
        size = self.source.batch_size
        batches = []
        for start in range(0, len(active), size):
            batch = active[start:start + size]
            params = ua.ReadParameters(TimestampsToReturn=ua.TimestampsToReturn.Both, NodesToRead=[
                ua.ReadValueId(NodeId=item.node_id, AttributeId=ua.AttributeIds.Value) for _, item in batch])
            batches.append(([h for h, _ in batch], params))
        health = self.ctx.health
        loop = asyncio.get_running_loop()
        period = self.source.interval
        due = loop.time()
        overruns = 0
        while True:
            started = loop.time()
            received = now_us()
            readings = []
            for handles, params in batches:
                results = await session.read(params)
                for (handle, dv) in zip(handles, results, strict=True):
                    if dv.StatusCode is not None and dv.StatusCode.name in NODE_ERRORS:
                        self._node_failed(self.items[handle], dv.StatusCode)
                readings += self.maker.make(zip(handles, results, strict=True), received)
            health.scan_time = loop.time() - started
            if readings:
                await self.ctx.sink.put(readings)
            health.ok(len(readings), clean=not self.tag_errors)
            due += period
            now = loop.time()
            if due < now:
                missed = math.floor((now - due) / period) + 1
                due += missed * period
                overruns += missed
                health.extra["overruns"] = overruns
            await asyncio.sleep(due - now)

    @staticmethod
    def node_text(node_id: ua.NodeId) -> str:
        return format_node_id(node_id)
