"""`collector check --explain` for an MQTT tag: which topic, which part of the payload."""

from __future__ import annotations

import re
from typing import Any


def explain_tag(source: Any, tag: Any) -> list[str]:
    what = (f"the JSON field {tag.json_path!r} of each message" if tag.json_path
            else "each message's payload as a plain value")
    when = (f"the device's time from the JSON field {tag.timestamp!r}" if tag.timestamp
            else "the time the message arrives")
    broker = re.sub(r"//[^@/]*@", "//", source.broker)  # never a password
    return [f"takes {what} on topic {tag.topic!r} from the broker {broker} "
            f"(QoS {source.qos}), only when the device publishes",
            f"as {tag.type}, stamped with {when}"]
