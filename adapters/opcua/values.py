"""OPC UA values, status codes and timestamps turned into the collector's reading fields.

Decisions (documented in the README):
- Boolean, integers (SByte..UInt64), Float, Double, String: stored as they are; a Float is
  stored as the shortest decimal that reads back as the same 32-bit float (21.3, not
  21.299999237060547).
- DateTime: RFC 3339 UTC text with microseconds, `2024-01-02T03:04:05.123456Z`.
- LocalizedText: its text; ByteString: lower-case hex; Guid, NodeId, QualifiedName: text;
  StatusCode: its numeric code; an enumeration arrives as its integer.
- Arrays: one tag per element with `index:`; an array without `index:` is rejected (bad
  reading and a health message naming the tag).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from asyncua import ua

from collector.model import BAD, GOOD, UNCERTAIN, Quality, Value
from collector.sources.float32 import shortest_float32

_SEVERITY = (GOOD, UNCERTAIN, BAD, BAD)
_FLOAT = ua.VariantType.Float
_DATETIME = ua.VariantType.DateTime


class ValueProblem(Exception):
    """The node's value cannot be stored for this tag; the message says what to change."""


def quality_of(status: ua.StatusCode | None) -> Quality:
    """Severity bits of a StatusCode: 00 good, 01 uncertain, 10/11 bad."""
    if status is None:
        return GOOD
    return _SEVERITY[(status.value >> 30) & 3]


def status_name(status: ua.StatusCode | None) -> str:
    if status is None:
        return "Good"
    try:
        return status.name
    except Exception:  # an unknown code from a vendor server
        return f"0x{status.value:08X}"


def format_datetime(dt: datetime) -> str:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def convert(variant: ua.Variant | None, index: int | None) -> Value:
    """A Variant's payload as a reading value; raises ValueProblem for what cannot be stored."""
    if variant is None:
        return None
    value = variant.Value
    vtype = variant.VariantType
    if variant.is_array or isinstance(value, list):
        if index is None:
            count = len(value) if isinstance(value, list) else "several"
            raise ValueProblem(f"the node holds an array of {count} values; add 'index: <n>' "
                               "(0-based) to the tag, one tag per element")
        if not isinstance(value, list) or index >= len(value):
            size = len(value) if isinstance(value, list) else 0
            raise ValueProblem(f"index {index} is outside the array of {size} values")
        value = value[index]
    elif index is not None:
        raise ValueProblem(f"'index: {index}' is set but the node holds a single value; remove 'index'")
    cls = type(value)
    if cls is float:
        return shortest_float32(value) if vtype is _FLOAT else value
    if cls is int or cls is bool or cls is str or value is None:
        return value
    return _convert_other(value, vtype)


def _convert_other(value: object, vtype: ua.VariantType) -> Value:
    if isinstance(value, bool | int | float | str):  # IntEnum and friends
        return value if isinstance(value, bool) else (int(value) if isinstance(value, int) else value)
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, ua.LocalizedText):
        return value.Text
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, ua.NodeId):
        return value.to_string()
    if isinstance(value, ua.QualifiedName):
        return value.to_string()
    if isinstance(value, ua.StatusCode):
        return value.value
    raise ValueProblem(f"values of type {vtype.name} ({type(value).__name__}) cannot be stored; "
                       "point the tag at a variable holding a number, boolean, text or date")
