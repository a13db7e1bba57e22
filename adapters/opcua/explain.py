"""`collector check --explain` for an OPC UA tag: which node, how it is read."""

from __future__ import annotations

from typing import Any


def explain_tag(source: Any, tag: Any) -> list[str]:
    node = f"node {tag.node}" if tag.node else f"browse path {tag.browse_path} (from Objects)"
    element = f", element {tag.index} of its array" if tag.index is not None else ""
    every = tag.sampling_interval or source.interval
    how = (f"subscribed: the server sends changes, sampled every {_seconds(every)}"
           if source.mode == "subscribe" else f"polled with a Read every {_seconds(every)}")
    return [f"reads {node}{element} from {source.endpoint} ({how})",
            "as the node's own type (number, true/false or text); the server's status code "
            "gives the quality, its source timestamp the time"]


def _seconds(value: float) -> str:
    return f"{value * 1000:g} ms" if value < 1 else f"{value:g} s"
