"""The OpenTelemetry SDK's in-memory exporters, shared by the test modules that read spans and
metrics (OpenTelemetry allows one tracer and one meter provider per process, so every module
in a process must record through the same ones).

Spans are kept only while a test records, and metrics are read as deltas, so each test sees
its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import (
    Counter as SdkCounter,
)
from opentelemetry.sdk.metrics import (
    Histogram as SdkHistogram,
)
from opentelemetry.sdk.metrics import (
    MeterProvider,
)
from opentelemetry.sdk.metrics import (
    UpDownCounter as SdkUpDownCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class _Recorder(SpanProcessor):
    """Keeps finished spans only while a test records."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.recording = False

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if self.recording:
            self.exporter.export([span])


_RECORDER = _Recorder()
_READER = InMemoryMetricReader(
    preferred_temporality={
        SdkCounter: AggregationTemporality.DELTA,
        SdkHistogram: AggregationTemporality.DELTA,
        SdkUpDownCounter: AggregationTemporality.DELTA,
    }
)
_installed = False


def install_providers() -> None:
    """The process's tracer and meter providers, recording into this module (once)."""
    global _installed
    if _installed:
        return
    tracer_provider = trace.get_tracer_provider()
    if not isinstance(tracer_provider, TracerProvider):
        tracer_provider = TracerProvider()
        trace.set_tracer_provider(tracer_provider)
    tracer_provider.add_span_processor(_RECORDER)
    metrics.set_meter_provider(MeterProvider(metric_readers=[_READER]))
    _installed = True


class Telemetry:
    """What one test recorded: finished spans, and metric points since the test began."""

    def spans(self) -> list[ReadableSpan]:
        return list(_RECORDER.exporter.get_finished_spans())

    def points(self) -> dict[str, list[Any]]:
        """Data points by metric name, since the last call (delta temporality)."""
        found: dict[str, list[Any]] = {}
        data = _READER.get_metrics_data()
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                if scope.scope.name != "ecs_rebuild_async":
                    continue
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found

    def start(self) -> None:
        _READER.get_metrics_data()  # what came before this test is not its own
        _RECORDER.exporter.clear()
        _RECORDER.recording = True

    def stop(self) -> None:
        _RECORDER.recording = False
        _RECORDER.exporter.clear()


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    found = [
        s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id
    ]
    return sorted(found, key=lambda s: s.start_time or 0)


def descendants(spans: Sequence[ReadableSpan], root: ReadableSpan) -> list[ReadableSpan]:
    found: list[ReadableSpan] = []
    todo = [root]
    while todo:
        kids = children(spans, todo.pop())
        found.extend(kids)
        todo.extend(kids)
    return found


def attrs_of(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def sum_by(points: list[Any], key: str) -> dict[str, float]:
    """The values of counter points, summed by one attribute."""
    found: Counter[str] = Counter()
    for point in points:
        found[str(point.attributes.get(key))] += point.value
    return dict(found)


def span_texts(spans: Sequence[ReadableSpan]) -> list[str]:
    """Every text a span carries: its name, attributes, status, events and links."""
    texts: list[str] = []
    for span in spans:
        texts.append(span.name)
        texts.extend(f"{key}={value}" for key, value in (span.attributes or {}).items())
        texts.append(str(span.status.description or ""))
        for event in span.events:
            texts.append(event.name)
            texts.extend(f"{key}={value}" for key, value in (event.attributes or {}).items())
        for link in span.links:
            texts.extend(f"{key}={value}" for key, value in (link.attributes or {}).items())
    return texts


def metric_labels(points: dict[str, list[Any]]) -> list[str]:
    """Every label of every metric point, as ``name key=value``."""
    return [
        f"{name} {key}={value}"
        for name, found in points.items()
        for point in found
        for key, value in point.attributes.items()
    ]
