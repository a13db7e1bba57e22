"""Response models of the read endpoints, with the examples shown at `/docs`.

Field names and shapes follow CONTRACT.md §3; fields beyond it are additions, never renames.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from collector.model import Value


def _example(example: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example]})


_STATUS = ("the source's status of the reading by name (an OPC UA StatusCode such as "
           "BadSensorFailure), only on readings whose source gave one other than Good")
_STATUS_CODE = "the same status as its number (OPC UA StatusCode, 32 bits)"


class Error(BaseModel):
    """Every 4xx answer: one sentence saying which parameter and what is accepted."""

    model_config = _example({"detail": "tag 'spindle_rpm' not found on machine 'press07'"})
    detail: str


class Machine(BaseModel):
    model_config = _example({"id": "press07", "name": "Press 07", "area": "stamping",
                             "line": "line2", "state": None,
                             "tags": ["motor_current", "temperature", "door_open"]})
    id: str
    name: str | None
    area: str | None
    line: str | None
    state: str | None = Field(description="running | idle | stopped | offline, from the "
                              "machine's production rules; null without rules")
    tags: list[str]


class MachineList(BaseModel):
    items: list[Machine]


class LatestValue(BaseModel):
    model_config = _example({"tag": "motor_current", "ts": "2026-11-22T02:00:00.123Z",
                             "value": 12.5, "quality": "good", "unit": "A"})
    tag: str
    ts: str = Field(description="RFC 3339 UTC with milliseconds")
    value: Value = Field(description="number (an integer exact to 64 bits; a string of its "
                         "digits with int_as=string), true/false, text, or null when quality "
                         "is bad")
    quality: str = Field(description="good | uncertain | bad")
    unit: str | None
    status: str | None = Field(None, description=_STATUS)
    status_code: int | None = Field(None, description=_STATUS_CODE)


class LatestList(BaseModel):
    items: list[LatestValue]


class LastReading(BaseModel):
    ts: str
    value: Value
    quality: str
    status: str | None = Field(None, description=_STATUS)
    status_code: int | None = Field(None, description=_STATUS_CODE)


class TagInfo(BaseModel):
    model_config = _example({
        "machine": "press07", "tag": "motor_current", "unit": "A", "source": "io",
        "protocol": "modbus", "kind": "number", "description": "main drive current",
        "latest": {"ts": "2026-11-22T02:00:00.123Z", "value": 12.5, "quality": "good"}})
    machine: str
    tag: str
    unit: str | None
    source: str | None
    protocol: str | None
    kind: str | None = Field(description="number | bool | text, from the first value stored")
    description: str | None = None
    latest: LastReading | None = Field(description="the newest reading, null when none yet")


class TagList(BaseModel):
    items: list[TagInfo]


class ReadingItem(BaseModel):
    model_config = _example({"machine": "press07", "tag": "motor_current",
                             "ts": "2026-11-22T02:00:00.123Z", "value": 12.5, "quality": "good"})
    machine: str
    tag: str
    ts: str
    value: Value = Field(description="number (an integer exact to 64 bits; a string of its "
                         "digits with int_as=string), true/false, text, or null")
    quality: str
    status: str | None = Field(None, description=_STATUS)
    status_code: int | None = Field(None, description=_STATUS_CODE)


class ReadingPage(BaseModel):
    model_config = _example({
        "items": [{"machine": "press07", "tag": "motor_current",
                   "ts": "2026-11-22T02:00:00.123Z", "value": 12.5, "quality": "good"}],
        "next": "MToxNzk1MzIwODAwMTIzMDAwOjE6MTc5NTMxNzIwMDAwMDAwMDoxNzk1MzIwODAwMDAwMDAwOmFiYw"})
    items: list[ReadingItem]
    next: str | None = Field(description="pass as `cursor` to get the next page; null on the "
                             "last page")


class AggregateItem(BaseModel):
    model_config = _example({"machine": "press07", "tag": "motor_current",
                             "start": "2026-11-22T02:00:00.000Z", "count": 60, "min": 11.9,
                             "max": 13.2, "avg": 12.48, "last": 12.5})
    machine: str
    tag: str
    start: str = Field(description="start of the bucket, RFC 3339 UTC")
    count: int = Field(description="readings in the bucket, bad ones included")
    min: int | float | str | None = Field(description="over numeric values, integers exact "
                                          "(strings with int_as=string); null for text tags")
    max: int | float | str | None
    avg: float | None
    last: Value = Field(description="the newest reading's value in the bucket")


class AggregateList(BaseModel):
    items: list[AggregateItem]


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "a parameter is invalid; `detail` says which"},
    401: {"model": Error, "description": "API keys are configured and none valid was given"},
    404: {"model": Error, "description": "unknown machine or tag; `detail` names it"},
    503: {"model": Error, "description": "the ledger database did not answer; retry later"},
}


# --- the production ledger ---------------------------------------------------------------------
class StateItem(BaseModel):
    model_config = _example({"state": "running", "start": "2026-11-22T06:00:00.000Z",
                             "end": "2026-11-22T06:42:10.500Z", "duration_s": 2530.5})
    state: str = Field(description="running | idle | stopped | offline")
    start: str
    end: str
    duration_s: float
    code: int | None = Field(None, description="with codes=umh: 10000 running, 30000 offline "
                             "(unknown), 40000 stopped, 40100 idle, 50000 micro-stop")


class StateList(BaseModel):
    items: list[StateItem]


class CountItem(BaseModel):
    start: str
    end: str
    shift: str | None = None  # with bucket=shift
    date: str | None = None  # with bucket=shift or day: the local date
    total: int
    good: int
    reject: int


class ProductionCounts(BaseModel):
    model_config = _example({"start": "2026-11-22T06:00:00.000Z",
                             "end": "2026-11-22T14:00:00.000Z", "total": 1210, "good": 1196,
                             "reject": 14})
    start: str | None = None
    end: str | None = None
    total: int
    good: int
    reject: int
    items: list[CountItem] | None = None


class Oee(BaseModel):
    model_config = _example({
        "start": "2026-11-22T06:00:00.000Z", "end": "2026-11-22T14:00:00.000Z",
        "planned_s": 27900.0, "running_s": 23100.0, "idle_s": 2400.0, "stopped_s": 2100.0,
        "offline_s": 1200.0, "total": 10900, "good": 10790, "reject": 110,
        "ideal_cycle_s": 2.0, "availability": 0.827957, "performance": 0.943723,
        "quality": 0.989908, "oee": 0.773493, "energy_kwh": 412.7})
    start: str
    end: str
    planned_s: float
    running_s: float
    idle_s: float
    stopped_s: float
    offline_s: float
    total: int
    good: int
    reject: int
    ideal_cycle_s: float | None
    availability: float | None
    performance: float | None
    quality: float | None
    oee: float | None
    energy_kwh: float
    running_planned_s: float = Field(0.0, description="running time inside planned time: "
                                     "availability = running_planned_s / planned_s")


class LineOee(Oee):
    line: str
    machines: list[str]


class DowntimeItem(BaseModel):
    model_config = _example({
        "id": "press07@1795327200000000", "machine": "press07",
        "start": "2026-11-22T06:00:00.000Z", "end": "2026-11-22T06:25:00.000Z",
        "duration_s": 1500.0, "states": ["stopped"], "reason": "no_material",
        "reason_label": "No material", "planned": False, "comment": "coil late",
        "ongoing": False})
    id: str
    machine: str
    start: str
    end: str
    duration_s: float
    states: list[str]
    reason: str | None
    reason_label: str | None = None
    planned: bool = False
    comment: str | None
    ongoing: bool = False


class ReasonItem(BaseModel):
    code: str
    label: str
    planned: bool


class DowntimeList(BaseModel):
    micro_stops: int
    items: list[DowntimeItem]
    reasons: list[ReasonItem] = []


class DowntimeUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"reason": "tool_change", "comment": "die 4 changed"}]})
    reason: str | None = Field(None, description="a code of plant.downtime_reasons, or null")
    comment: str | None = None


class LedgerRow(BaseModel):
    date: str
    machine: str
    name: str | None = None
    shift: str
    start: str | None = None
    end: str | None = None
    planned_s: float
    running_s: float
    idle_s: float
    stopped_s: float
    offline_s: float
    downtimes: int
    micro_stops: int
    longest_downtime_s: float
    total: int
    good: int
    reject: int
    availability: float | None
    performance: float | None
    quality: float | None
    oee: float | None
    energy_kwh: float


class ShiftInfo(BaseModel):
    name: str
    start: str
    end: str
    planned_s: float


class DailyLedger(BaseModel):
    date: str
    timezone: str
    shifts: list[ShiftInfo]
    items: list[LedgerRow]
    totals: list[LedgerRow]
    labels: dict[str, str] | None = None


class MachineConnectivity(BaseModel):
    machine: str
    share: float | None = Field(description="share of the window with good data, 0..1")
    connected: bool = Field(description="share >= threshold")


class ConnectivityReport(BaseModel):
    start: str
    end: str
    threshold: float
    rate: float | None = Field(description="share of configured machines at or above threshold")
    machines: list[MachineConnectivity]
