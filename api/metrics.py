"""`GET /metrics`: the collector's state in Prometheus text format, read live at scrape time.

Nothing here is counted twice: sources, pipeline and spool keep their own counters (cheap in
the hot path) and this collector turns them into metric families when Prometheus asks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.process_collector import ProcessCollector

from api.boundary import RuntimeView
from api.deps import runtime_of
from api.offload import Offload

router = APIRouter(tags=["metrics"])

SOURCE_LABELS = ["machine", "source", "protocol"]


class RuntimeCollector:
    """Exposes one runtime's sources, pipeline, spool and ledger writer."""

    def __init__(self, runtime: RuntimeView, offload: Offload | None = None):
        self.runtime = runtime
        self.offload = offload

    def collect(self) -> Iterator[Metric]:
        rt = self.runtime
        connected = GaugeMetricFamily("collector_source_connected", "1 when the source is connected", labels=SOURCE_LABELS)
        reads = CounterMetricFamily("collector_source_reads", "Successful reads, messages or notifications", labels=SOURCE_LABELS)
        errors = CounterMetricFamily("collector_source_errors", "Failed reads, bad payloads, connection errors", labels=SOURCE_LABELS)
        readings = CounterMetricFamily("collector_source_readings", "Readings handed to the pipeline", labels=SOURCE_LABELS)
        restarts = CounterMetricFamily("collector_source_restarts", "Adapter restarts after a crash", labels=SOURCE_LABELS)
        last_ok = GaugeMetricFamily("collector_source_last_ok_timestamp_seconds", "Time of the last good read", labels=SOURCE_LABELS)
        scans = HistogramMetricFamily("collector_source_scan_seconds", "Time one poll of a source took", labels=SOURCE_LABELS)
        bad_payloads = CounterMetricFamily("collector_source_bad_payloads", "Messages rejected as bad payloads (also counted in collector_source_errors_total)", labels=[*SOURCE_LABELS, "tag"])
        for h in rt.health:
            labels = [h.machine, h.source, h.protocol]
            connected.add_metric(labels, 1.0 if h.connected else 0.0)
            reads.add_metric(labels, h.reads)
            errors.add_metric(labels, h.errors)
            readings.add_metric(labels, h.readings)
            restarts.add_metric(labels, h.restarts)
            if h.last_ok:
                last_ok.add_metric(labels, h.last_ok / 1e6)
            if h.scan_seconds.count:
                scans.add_metric(labels, h.scan_seconds.cumulative(), h.scan_seconds.sum)
            bad = h.extra.get("bad_payloads")  # per tag, kept by the MQTT adapter
            if isinstance(bad, dict):
                for tag, count in bad.items():
                    bad_payloads.add_metric([*labels, tag], count)
        yield from (connected, reads, errors, readings, restarts, last_ok, scans, bad_payloads)

        p = rt.pipeline.stats()
        yield _gauge("collector_pipeline_queue_readings", "Readings waiting in memory", _figure(p, "queued"))
        yield _gauge("collector_pipeline_queue_capacity_readings", "Bound of the in-memory queue", _figure(p, "queue_size"))
        yield _counter("collector_pipeline_received_readings", "Readings received from sources", _figure(p, "received"))
        yield _counter("collector_pipeline_suppressed_readings", "Readings dropped by deadband/heartbeat rules", _figure(p, "suppressed"))
        yield _counter("collector_pipeline_spilled_readings", "Readings sent to the spool because the queue was full", _figure(p, "spilled"))
        yield _gauge("collector_spool_backlog_readings", "Readings in the spool waiting for the ledger", _figure(p, "backlog"))
        yield _counter("collector_spool_spooled_readings", "Readings spooled because a ledger write failed", _figure(p, "spooled"))
        yield _counter("collector_spool_replayed_readings", "Readings replayed from the spool into the ledger", _figure(p, "replayed"))
        yield _counter("collector_spool_dropped_readings", "Readings dropped because the spool was full", _figure(p, "dropped"))
        yield _counter("collector_pipeline_future_readings", "Readings stamped more than pipeline.future_margin ahead of the box's clock, stored as uncertain", _figure({"future": 0, **p}, "future"))
        yield _gauge("collector_ledger_up", "1 when the last ledger write succeeded", _figure(p, "ok"))
        yield _counter("collector_ledger_rows_written", "Readings written to the ledger", _figure(p, "written"))
        yield _counter("collector_ledger_write_errors", "Failed ledger writes", _figure(p, "write_errors"))
        write_seconds = rt.pipeline.write_seconds
        writes = HistogramMetricFamily("collector_ledger_write_seconds", "Time one batch write to the ledger took")
        writes.add_metric([], write_seconds.cumulative(), write_seconds.sum)
        yield writes

        derivation = rt.derivation
        if derivation is not None and derivation.rules:  # the production ledger (collector.derive)
            stats = derivation.stats
            yield _gauge("collector_production_up", "1 when derivation is running and committing",
                         1.0 if derivation.ready and derivation.last_error is None else 0.0)
            yield _counter("collector_production_readings", "Readings taken in by derivation", stats["readings"])
            yield _counter("collector_production_intervals", "State intervals closed", stats["intervals"])
            yield _counter("collector_production_count_events", "Readings that showed new parts", stats["count_events"])
            events = CounterMetricFamily("collector_production_events", "Counter wraps, resets, noise, late readings, clock jumps, derivations again", labels=["event"])
            for event in ("counter_wrap", "counter_reset", "counter_noise", "late_readings",
                          "rederived", "clock_future", "clock_past", "errors"):
                events.add_metric([event], stats[event])
            yield events
            yield _gauge("collector_production_buffered_readings", "Readings waiting to be taken in", sum(len(b) for b in derivation.buffers.values()))

        try:  # scraped from the collector's own loop: its tasks (a leak shows as growth)
            yield _gauge("collector_asyncio_tasks", "Asyncio tasks of the collector process",
                         len(asyncio.all_tasks()))
        except RuntimeError:  # collected outside a running loop
            pass

        if self.offload is not None:  # the API's worker processes (api.offload)
            o = self.offload
            yield _gauge("collector_api_workers", "Worker processes building large API answers", o.workers)
            yield _counter("collector_api_worker_answers", "Large answers built by worker processes", o.answers)
            yield _counter("collector_api_worker_replacements", "Worker processes found dead and replaced", o.replaced)


def _figure(stats: Mapping[str, object], name: str) -> float:
    """A figure of the pipeline's `stats()` (a flag as 1.0 or 0.0)."""
    value = stats[name]
    if not isinstance(value, int | float):
        raise TypeError(f"the pipeline's {name} is {value!r}, not a number")
    return float(value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def registry_for(runtime: RuntimeView, offload: Offload | None = None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RuntimeCollector(runtime, offload))
    ProcessCollector(registry=registry)  # process memory, CPU, open files
    return registry


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(request: Request) -> Response:
    registry = getattr(request.app.state, "metrics_registry", None)
    if registry is None:
        registry = request.app.state.metrics_registry = registry_for(
            runtime_of(request), request.app.state.offload)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
