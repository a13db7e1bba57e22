"""The lean publish decoder gives exactly what asyncua's decoder (and `make`) gives."""

from __future__ import annotations

from datetime import UTC, datetime

from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary

from adapters.opcua.config import OpcUaSourceConfig
from adapters.opcua.items import ReadingMaker, build_items
from adapters.opcua.publish_decoder import ScalarDataChange, decode_publish_response

T1 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
T2 = datetime(2026, 1, 2, 3, 4, 6, 1, tzinfo=UTC)
VALUES = [(ua.VariantType.Boolean, True), (ua.VariantType.SByte, -5), (ua.VariantType.Byte, 250),
          (ua.VariantType.Int16, -300), (ua.VariantType.UInt16, 60000), (ua.VariantType.Int32, -70000),
          (ua.VariantType.UInt32, 4000000000), (ua.VariantType.Int64, -2**40), (ua.VariantType.UInt64, 2**63),
          (ua.VariantType.Float, 21.3), (ua.VariantType.Double, 0.1), (ua.VariantType.String, "Läuft"),
          (ua.VariantType.String, None)]


def response(values, **dv) -> bytes:
    # asyncua annotates the timestamps and status codes with its wire types (DateTime, UInt32)
    # but takes a datetime and an int, as its own StatusCodes are
    items = [ua.MonitoredItemNotification(ClientHandle=i, Value=ua.DataValue(
        Value=ua.Variant(v, t), SourceTimestamp=T1 if i % 2 else None, ServerTimestamp=T2,  # type: ignore[arg-type]
        **dv))
        for i, (t, v) in enumerate(values)]
    message = ua.NotificationMessage(SequenceNumber=7, PublishTime=T2,
                                     NotificationData=[ua.DataChangeNotification(MonitoredItems=items)])
    return struct_to_binary(ua.PublishResponse(Parameters=ua.PublishResult(
        SubscriptionId=3, AvailableSequenceNumbers=[6, 7], NotificationMessage=message)))


def maker(n: int) -> ReadingMaker:
    source = OpcUaSourceConfig.model_validate({
        "id": "s", "protocol": "opcua", "endpoint": "opc.tcp://127.0.0.1:1",
        "tags": [{"name": f"t{i}", "node": f"ns=2;i={i}"} for i in range(n)]})
    return ReadingMaker("m", build_items(source), lambda item, msg: None, {})


def test_scalar_and_asyncua_decoders_agree() -> None:
    for status in (ua.StatusCode(0), ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue),  # type: ignore[arg-type]
                   ua.StatusCode(ua.StatusCodes.BadSensorFailure)):  # type: ignore[arg-type]
        raw = response(VALUES, StatusCode=status)
        fast = decode_publish_response(Buffer(raw))
        slow = struct_from_binary(ua.PublishResponse, Buffer(raw))
        assert fast is not None
        assert fast.Parameters.SubscriptionId == 3 and fast.Parameters.AvailableSequenceNumbers == [6, 7]
        assert fast.Parameters.NotificationMessage.SequenceNumber == 7
        change = fast.Parameters.NotificationMessage.NotificationData[0]
        assert isinstance(change, ScalarDataChange)
        notif = slow.Parameters.NotificationMessage.NotificationData[0]
        expected = maker(len(VALUES)).make(((m.ClientHandle, m.Value) for m in notif.MonitoredItems), 123)
        got = maker(len(VALUES)).make_scalars(change.items, 123)
        assert got == expected
        assert [type(r.value) for r in got] == [type(r.value) for r in expected]


def test_other_content_falls_back_to_asyncua() -> None:
    assert decode_publish_response(Buffer(response([(ua.VariantType.Int32, [1, 2])]))) is None
    assert decode_publish_response(Buffer(response([(ua.VariantType.DateTime, T1)]))) is None
    assert decode_publish_response(Buffer(b"\x01\x00")) is None
