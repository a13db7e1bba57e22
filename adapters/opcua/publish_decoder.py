"""A lean decoder for publish responses carrying scalar data changes (the hot path).

asyncua decodes every notification into dataclasses (DataValue, Variant, two datetimes), which
is most of the CPU at thousands of changes a second. This decoder reads the common case
(scalar numbers, booleans and strings, no picoseconds, no diagnostics) straight from the bytes
into tuples; anything else makes it give up, and asyncua's own decoder handles the response.
It is installed on our own session only (`install`), never globally.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import extensionobject_from_binary, nodeid_from_binary, struct_from_binary

from .nodeid import node_id

_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_HANDLE_MASK = struct.Struct("<IB")
_SCALARS = {1: struct.Struct("<?"), 2: struct.Struct("<b"), 3: struct.Struct("<B"), 4: struct.Struct("<h"),
            5: struct.Struct("<H"), 6: struct.Struct("<i"), 7: struct.Struct("<I"), 8: struct.Struct("<q"),
            9: struct.Struct("<Q"), 10: struct.Struct("<f"), 11: struct.Struct("<d")}
_STRING = 12
_EPOCH_TICKS = 116_444_736_000_000_000  # 1601-01-01 -> 1970-01-01 in 100 ns ticks
_DATA_CHANGE = node_id(ua.ObjectIds.DataChangeNotification_Encoding_DefaultBinary)

# (client handle, value, variant type id, status code, source µs or 0, server µs or 0)
Change = tuple[int, Any, int, int, int, int]


@dataclass(slots=True)
class ScalarDataChange:
    """Stands in for ua.DataChangeNotification in NotificationData."""

    items: list[Change]


def install(session: Any) -> None:
    """Make this session's publish loop use the lean decoder (asyncua's as the fallback)."""

    async def publish(acks: list[ua.SubscriptionAcknowledgement]) -> ua.PublishResponse:
        request = ua.PublishRequest()
        request.Parameters.SubscriptionAcknowledgements = acks if acks else []
        data = await session._send_request(request, timeout=0)
        fast = decode_publish_response(data.copy())
        return fast if fast is not None else struct_from_binary(ua.PublishResponse, data)

    session.publish = publish


def decode_publish_response(buf: Buffer) -> ua.PublishResponse | None:
    """The response, or None when it holds anything the lean path does not handle."""
    try:
        return _decode(buf)
    except Exception:
        return None


def _u32(buf: Buffer) -> int:
    return _U32.unpack(buf.read(4))[0]


def _i32(buf: Buffer) -> int:
    return _I32.unpack(buf.read(4))[0]


def _decode(buf: Buffer) -> ua.PublishResponse | None:
    type_id = nodeid_from_binary(buf)
    header = struct_from_binary(ua.ResponseHeader, buf)
    subscription_id = _u32(buf)
    count = _i32(buf)
    available = [_u32(buf) for _ in range(max(count, 0))]
    more = buf.read(1) != b"\x00"
    sequence = _u32(buf)
    publish_time = ua.win_epoch_to_datetime(_I64.unpack(buf.read(8))[0])
    data: list[Any] = []
    for _ in range(max(_i32(buf), 0)):
        start = buf.cur_pos
        size = len(buf)
        ext_type = nodeid_from_binary(buf)
        encoding = buf.read(1)[0]
        if ext_type == _DATA_CHANGE and encoding == 1:
            length = _i32(buf)
            change = _data_change(bytes(buf.read(length)))
            if change is None:
                return None
            data.append(change)
        else:
            buf.rewind(start)
            buf._size = size  # rewind() assumes the buffer runs to the end of its bytes
            data.append(extensionobject_from_binary(buf))
    # asyncua annotates StatusCode.value as its UInt32 wire type; its own codes are plain ints
    results = [ua.StatusCode(_u32(buf)) for _ in range(max(_i32(buf), 0))]  # type: ignore[arg-type]
    if _i32(buf) > 0:  # diagnostic infos: leave them to asyncua
        return None
    message = ua.NotificationMessage(SequenceNumber=sequence, PublishTime=publish_time, NotificationData=data)
    result = ua.PublishResult(SubscriptionId=subscription_id, AvailableSequenceNumbers=available,
                              MoreNotifications=more, NotificationMessage=message, Results=results)
    return ua.PublishResponse(TypeId=type_id, ResponseHeader=header, Parameters=result)


def _data_change(body: bytes) -> ScalarDataChange | None:
    (count,) = _I32.unpack_from(body, 0)
    pos = 4
    items: list[Change] = []
    append = items.append
    scalars = _SCALARS
    for _ in range(count):
        handle, mask = _HANDLE_MASK.unpack_from(body, pos)
        pos += 5
        if mask & 0x30:  # picoseconds: rare, and asyncua orders them differently from the spec
            return None
        value: Any = None
        vtype = status = source = server = 0
        if mask & 1:
            enc = body[pos]
            pos += 1
            vtype = enc & 0x3F
            if enc & 0xC0:  # arrays and matrices
                return None
            fmt = scalars.get(vtype)
            if fmt is not None:
                value = fmt.unpack_from(body, pos)[0]
                pos += fmt.size
            elif vtype == _STRING:
                (length,) = _I32.unpack_from(body, pos)
                pos += 4
                if length >= 0:
                    value = body[pos:pos + length].decode("utf-8", errors="surrogateescape")
                    pos += length
            elif vtype != 0:
                return None
        if mask & 2:
            (status,) = _U32.unpack_from(body, pos)
            pos += 4
        if mask & 4:
            ticks = _I64.unpack_from(body, pos)[0]
            pos += 8
            source = (ticks - _EPOCH_TICKS) // 10 if ticks > 0 else 0
        if mask & 8:
            ticks = _I64.unpack_from(body, pos)[0]
            pos += 8
            server = (ticks - _EPOCH_TICKS) // 10 if ticks > 0 else 0
        append((handle, value, vtype, status, source, server))
    (diagnostics,) = _I32.unpack_from(body, pos)
    if diagnostics > 0:
        return None
    return ScalarDataChange(items)
