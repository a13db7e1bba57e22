"""Response models of the read endpoints, with the examples shown at `/docs`.

Field names and shapes follow CONTRACT.md §3; fields beyond it are additions, never renames.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from collector.model import Value


def _example(example: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example]})


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
    state: str | None = Field(description="`offline` when every source of the machine is down; "
                              "finer states come from the machine-state derivation")
    tags: list[str]


class MachineList(BaseModel):
    items: list[Machine]


class LatestValue(BaseModel):
    model_config = _example({"tag": "motor_current", "ts": "2026-11-22T02:00:00.123Z",
                             "value": 12.5, "quality": "good", "unit": "A"})
    tag: str
    ts: str = Field(description="RFC 3339 UTC with milliseconds")
    value: Value = Field(description="number, true/false, text, or null when quality is bad")
    quality: str = Field(description="good | uncertain | bad")
    unit: str | None


class LatestList(BaseModel):
    items: list[LatestValue]


class LastReading(BaseModel):
    ts: str
    value: Value
    quality: str


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
    value: Value
    quality: str


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
    min: float | None = Field(description="over numeric values; null for text tags")
    max: float | None
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
