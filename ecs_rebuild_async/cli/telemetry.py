"""``ecs-rebuild demo --trace``: collect the run's spans in memory with the OpenTelemetry SDK,
then print a short tree of one server's spans.

The library only speaks OpenTelemetry's API (in ``_telemetry``); the command line is an
application, so it may bring the SDK, when it is installed (``pip install opentelemetry-sdk``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .config import UsageError

__all__ = ["SpanCollector", "span_tree"]


class SpanCollector:
    """Keeps the spans finished while it is open, through the global SDK tracer provider."""

    def __init__(self) -> None:
        try:
            from opentelemetry import trace
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
                InMemorySpanExporter,
            )
        except ImportError:
            raise UsageError(
                "--trace needs the OpenTelemetry SDK: pip install opentelemetry-sdk"
            ) from None
        self._exporter = InMemorySpanExporter()
        self._processor = SimpleSpanProcessor(self._exporter)
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            if not isinstance(provider, trace.ProxyTracerProvider):
                raise UsageError("--trace: a tracer provider other than the SDK's is set")
            provider = TracerProvider()
            trace.set_tracer_provider(provider)
        # A provider set once per process (by an earlier run, or the host): add to it.
        provider.add_span_processor(self._processor)

    def close(self) -> Sequence[Any]:
        """The spans collected; nothing more is kept after this."""
        spans = self._exporter.get_finished_spans()
        self._processor.shutdown()
        return spans


def _ms(span: Any) -> str:
    if span.end_time is None or span.start_time is None:
        return ""
    return f"{(span.end_time - span.start_time) / 1e6:.1f} ms"


def _describe(span: Any) -> str:
    attributes = span.attributes or {}
    parts = [span.name, _ms(span)]
    for key, label in (
        ("http.response.status_code", ""),
        ("ecs_rebuild.outcome", "outcome="),
        ("ecs_rebuild.microversion", "microversion="),
        ("error.type", "error="),
    ):
        client = "url.template" in attributes  # an HTTP span: its microversion is its rebuild's
        if key in attributes and not (key == "ecs_rebuild.microversion" and client):
            parts.append(f"{label}{attributes[key]}")
    if span.events:
        parts.append("[" + ", ".join(event.name for event in span.events) + "]")
    return "  ".join(part for part in parts if part)


def span_tree(spans: Sequence[Any], *, server_id: str | None = None) -> str:
    """A text tree of one server's rebuild span and its descendants, and the shared listings
    linked to its wait. The first server whose rebuild ended well, unless ``server_id``."""
    rebuilds = [
        s
        for s in spans
        if s.name == "rebuild_and_wait"
        and (server_id is None or (s.attributes or {}).get("ecs_rebuild.server_id") == server_id)
    ]
    if not rebuilds:
        return "no rebuild span was recorded\n"
    ok = [s for s in rebuilds if (s.attributes or {}).get("ecs_rebuild.outcome") == "ok"]
    root = (ok or rebuilds)[0]
    children: dict[int, list[Any]] = {}
    for span in spans:
        if span.parent is not None:
            children.setdefault(span.parent.span_id, []).append(span)
    lines = [f"trace of server {(root.attributes or {}).get('ecs_rebuild.server_id')}:"]
    mine: set[int] = set()

    def walk(span: Any, prefix: str, last: bool, top: bool) -> None:
        mine.add(span.context.span_id)
        branch = "" if top else ("└─ " if last else "├─ ")
        lines.append(prefix + branch + _describe(span))
        kids = sorted(children.get(span.context.span_id, []), key=lambda s: s.start_time or 0)
        deeper = prefix + ("" if top else ("   " if last else "│  "))
        for index, kid in enumerate(kids):
            walk(kid, deeper, index == len(kids) - 1, False)

    walk(root, "", True, True)
    listings = [
        s for s in spans if s.name == "poll_listing" and any(
            link.context.span_id in mine for link in s.links
        )
    ]  # fmt: skip
    if listings:
        shared = max(len(s.links) for s in listings)
        lines.append(
            f"shared poller: {len(listings)} poll_listing span(s) linked to this wait "
            f"(each serving up to {shared} waits)"
        )
    return "\n".join(lines) + "\n"
