"""OpenTelemetry traces and metrics, and the fields of log records about a server.

Spans and metrics are read with the SDK's in-memory span exporter and metric reader, set as the
process's providers once (``otel_support``: OpenTelemetry allows one provider per process).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry.trace import SpanKind, StatusCode
from otel_support import (
    Telemetry,
    attrs_of,
    children,
    descendants,
    install_providers,
    metric_labels,
    span_texts,
    sum_by,
)
from test_canaries import USER_DATA, assert_clean, keystone, secrets_of, whole_flow

from ecs_rebuild_async import (
    AsyncEcsClient,
    BulkReport,
    ClientSettings,
    RebuildFailed,
    RebuildRequest,
    TokenAuth,
)
from ecs_rebuild_async._telemetry import url_template
from ecs_rebuild_async.cli import main
from ecs_rebuild_async.testing import DEFAULT_IMAGES, FakeCompute, InjectedFault

NEW_IMAGE = DEFAULT_IMAGES["ubuntu-24.04"]
FAST = ClientSettings(
    poll_first_delay=0.02,
    poll_interval=0.05,
    poll_interval_max=0.1,
    backoff_initial=0.001,
    retry_after_cap=0.05,
    reconcile_settle=0.01,
)


@pytest.fixture(scope="module")
def providers() -> None:
    install_providers()


@pytest.fixture
def telemetry(providers: None) -> Iterator[Telemetry]:
    recorded = Telemetry()
    recorded.start()
    try:
        yield recorded
    finally:
        recorded.stop()


def client(fake: FakeCompute, settings: ClientSettings = FAST) -> AsyncEcsClient:
    return AsyncEcsClient(
        fake.compute_url, auth=TokenAuth(fake.token), transport=fake.transport(), settings=settings
    )


SERVER_URL = "/v2.1/{project_id}/servers/{server_id}"


# -- one rebuild and wait ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_span_tree_of_one_rebuild_and_wait(telemetry: Telemetry) -> None:
    # The fake's clock stands still until a read has seen the rebuild running, so the
    # "running" event comes however slow the machine.
    fake = FakeCompute(time_scale=0, rebuild_seconds=1.0)
    server_id = fake.add_server()

    def on_event(event: Any) -> None:
        if event.phase == "running":
            fake.advance(2.0)

    async with client(fake) as ecs:
        await ecs.rebuild_and_wait(
            server_id, RebuildRequest(image_ref=NEW_IMAGE), on_event=on_event, timeout=30
        )
    spans = telemetry.spans()
    roots = [s for s in spans if s.parent is None]
    assert [s.name for s in roots] == ["rebuild_and_wait"]
    root = roots[0]
    assert attrs_of(root) == {
        "ecs_rebuild.server_id": server_id,
        "ecs_rebuild.microversion": "2.60",
        "ecs_rebuild.outcome": "ok",
    }
    assert root.status.status_code is not StatusCode.ERROR
    assert [event.name for event in root.events] == ["submitted", "running", "done"]

    # The version document, the read before, the rebuild, then the wait and its reads.
    kids = children(spans, root)
    assert [s.name for s in kids] == [
        "GET /v2.1",
        f"GET {SERVER_URL}",
        f"POST {SERVER_URL}/action",
        "wait_for_rebuild",
    ]
    post = kids[2]
    assert post.kind is SpanKind.CLIENT
    post_attrs = attrs_of(post)
    assert post_attrs["http.request.method"] == "POST"
    assert post_attrs["url.template"] == f"{SERVER_URL}/action"
    assert post_attrs["http.response.status_code"] == 202
    assert post_attrs["server.address"] == "fake-compute.test"
    assert str(post_attrs["ecs_rebuild.request_id"]).startswith("req-")
    wait = kids[3]
    assert attrs_of(wait) == {"ecs_rebuild.server_id": server_id}
    reads = children(spans, wait)
    assert reads, "the wait's reads are its children"
    assert {s.name for s in reads} == {f"GET {SERVER_URL}"}
    assert all(attrs_of(s)["http.response.status_code"] == 200 for s in reads)
    # Every span is in this one trace, and no id is in any span's name or URL.
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    for span in spans:
        assert server_id not in span.name
        assert fake.project_id not in str(attrs_of(span).get("url.template", ""))


@pytest.mark.anyio
async def test_a_failed_rebuild_has_its_outcome_error_type_and_failed_event(
    telemetry: Telemetry,
) -> None:
    fake = FakeCompute(rebuild_seconds=0.1)
    server_id = fake.add_server(fail=True)
    async with client(fake) as ecs:
        with pytest.raises(RebuildFailed) as raised:
            await ecs.rebuild_and_wait(server_id, RebuildRequest(image_ref=NEW_IMAGE))
    root = next(s for s in telemetry.spans() if s.name == "rebuild_and_wait")
    assert attrs_of(root)["ecs_rebuild.outcome"] == "failed"
    assert attrs_of(root)["error.type"] == type(raised.value).__name__ == "RebuildFailed"
    assert root.status.status_code is StatusCode.ERROR
    assert [e.name for e in root.events][-1] == "failed"


@pytest.mark.anyio
async def test_a_lost_answer_is_reconciled_and_traced(telemetry: Telemetry) -> None:
    fake = FakeCompute(rebuild_seconds=0.1)
    server_id = fake.add_server()
    fake.faults.script("POST", "rebuild", ["lost"])
    settings = ClientSettings(
        poll_first_delay=0.02, poll_interval=0.05, reconcile_settle=0.01, request_timeout=0.5
    )
    async with client(fake, settings) as ecs:
        await ecs.rebuild_and_wait(server_id, RebuildRequest(image_ref=NEW_IMAGE))
    spans = telemetry.spans()
    root = next(s for s in spans if s.name == "rebuild_and_wait")
    events = [e.name for e in root.events]
    assert events[:2] == ["submitted", "reconciled"]
    assert events[-1] == "done"
    assert fake.rebuilds_accepted(server_id) == 1
    posts = [s for s in descendants(spans, root) if s.name.startswith("POST")]
    assert len(posts) == 1
    assert attrs_of(posts[0])["error.type"] == "TransportError"
    assert "http.response.status_code" not in attrs_of(posts[0])


# -- a fleet -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_span_tree_of_a_50_server_fleet_links_listings_to_many_waits(
    telemetry: Telemetry,
) -> None:
    fake = FakeCompute(rebuild_seconds=0.3)
    server_ids = fake.add_servers(50)
    settings = ClientSettings(poll_first_delay=0.2, poll_interval=0.1, poll_interval_max=0.1)
    async with client(fake, settings) as ecs:
        outcomes = await ecs.rebuild_many(server_ids, RebuildRequest(image_ref=NEW_IMAGE))
    assert all(outcome.ok for outcome in outcomes)
    spans = telemetry.spans()
    fleet = [s for s in spans if s.name == "rebuild_many"]
    assert len(fleet) == 1
    assert fleet[0].parent is None
    assert attrs_of(fleet[0]) == {
        "ecs_rebuild.fleet.total": 50,
        "ecs_rebuild.fleet.submitted": 50,
        "ecs_rebuild.fleet.outcomes.ok": 50,
    }
    rebuilds = [s for s in children(spans, fleet[0]) if s.name == "rebuild_and_wait"]
    assert sorted(attrs_of(s)["ecs_rebuild.server_id"] for s in rebuilds) == sorted(server_ids)
    waits = {
        s.context.span_id: s
        for r in rebuilds
        for s in children(spans, r)
        if s.name == "wait_for_rebuild"
    }
    assert len(waits) == 50
    listings = [s for s in spans if s.name == "poll_listing"]
    assert listings, "the shared poller listed the fleet"
    for listing in listings:
        assert listing.parent is None  # its own trace, not the trace of the wait that ran it
        assert {s.name for s in children(spans, listing)} == {
            "GET /v2.1/{project_id}/servers/detail"
        }
        assert {link.context.span_id for link in listing.links} <= waits.keys()
    # One listing served many waits; together, every wait was served by a listing.
    assert max(len(listing.links) for listing in listings) >= 25
    linked = {link.context.span_id for listing in listings for link in listing.links}
    assert linked == waits.keys()
    # With the listings serving them, the waits read no server on their own.
    assert all(not children(spans, wait) for wait in waits.values())


# -- metrics -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_metric_values_after_mixed_outcomes_equal_the_outcomes(
    telemetry: Telemetry,
) -> None:
    # The slow rebuild lasts long enough for a poll to see it running on a loaded machine.
    fake = FakeCompute(rebuild_seconds=0.1, retry_after="0.01", slow_spawn_seconds=5.0)
    ok = fake.add_servers(5, prefix="ok")
    slow = fake.add_server(name="slow")  # its wait is surely in flight while it runs
    failing = [fake.add_server(name=f"bad-{i}", fail=True) for i in range(2)]
    locked = fake.add_server(name="locked")
    fake.set_locked(locked)
    missing = "00000000-0000-4000-8000-00000000dead"
    fake.faults.script("GET", "servers_detail", [InjectedFault("429", retry_after="0.01")])
    in_flight: list[float] = []

    def on_event(event: Any) -> None:
        if event.server_id == slow and event.phase == "running" and not in_flight:
            points = telemetry.points()  # drains: what is left is counted at the end
            in_flight.append(sum(p.value for p in points.get("ecs_rebuild.waits.active", [])))
            captured.append(points)

    captured: list[dict[str, list[Any]]] = []
    async with client(fake) as ecs:
        outcomes = await ecs.rebuild_many(
            [*ok, (slow, RebuildRequest(image_ref=fake.slow_image)), *failing, locked, missing],
            RebuildRequest(image_ref=NEW_IMAGE),
            on_event=on_event,
            timeout=30,
        )
        stats = ecs.stats
    kinds = Counter(outcome.kind.value for outcome in outcomes)
    assert kinds == {"ok": 6, "failed": 2, "conflict": 1, "not_found": 1}
    end = telemetry.points()
    points = {
        name: [*captured[0].get(name, []), *end.get(name, [])] for name in {*captured[0], *end}
    }

    assert sum_by(points["ecs_rebuild.rebuilds"], "ecs_rebuild.outcome") == dict(kinds)
    durations: Counter[str] = Counter()
    for point in points["ecs_rebuild.rebuild.duration"]:
        durations[point.attributes["ecs_rebuild.outcome"]] += point.count
        assert point.min >= 0
    assert durations == kinds

    # Requests by kind and status: every request the client counted, and each status right.
    requests = points["ecs_rebuild.requests"]
    by_kind: Counter[str] = Counter()
    for point in requests:
        attributes = point.attributes
        by_kind[
            f"{attributes['http.request.method']} {attributes['ecs_rebuild.request.kind']}"
        ] += point.value
    sent = {key: value for key, value in stats.items() if key.startswith(("GET ", "POST "))}
    assert dict(by_kind) == sent
    statuses = Counter()
    for point in requests:
        statuses[
            (
                point.attributes["ecs_rebuild.request.kind"],
                point.attributes.get("http.response.status_code"),
            )
        ] += point.value
    assert statuses[("action", 202)] == 8  # six fine, two that go to ERROR
    assert statuses[("action", 409)] == 1
    assert statuses[("server", 404)] >= 1
    assert statuses[("list", 429)] == 1
    durations_count = sum(p.count for p in points["http.client.request.duration"])
    assert durations_count == sum(sent.values())

    # The 429 paused every request once, for about its Retry-After.
    assert (
        sum(p.value for p in points["ecs_rebuild.rate_limit.pauses"]) == 1 == stats["rate_limited"]
    )
    paused = sum(p.value for p in points["ecs_rebuild.rate_limit.pause_duration"])
    assert 0.01 <= paused <= 0.0121  # Retry-After 0.01 s, plus up to 20 % jitter

    # Waits in flight: some while the fleet ran, none after.
    assert in_flight
    assert in_flight[0] >= 1
    assert sum(p.value for p in points["ecs_rebuild.waits.active"]) == 0


# -- log records about a server ---------------------------------------------------------------


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.anyio
async def test_log_records_about_a_server_carry_its_fields() -> None:
    # No provider is needed for these: they are the library's own, OpenTelemetry or not.
    fake = FakeCompute(rebuild_seconds=0.1)
    server_id = fake.add_server()
    fake.faults.script("POST", "rebuild", ["lost"])
    settings = ClientSettings(
        poll_first_delay=0.02, poll_interval=0.05, reconcile_settle=0.01, request_timeout=0.5
    )
    handler = _Records()
    logger = logging.getLogger("ecs_rebuild_async")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        async with client(fake, settings) as ecs:
            await ecs.rebuild_and_wait(server_id, RebuildRequest(image_ref=NEW_IMAGE))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    about = [
        r for r in handler.records if server_id in r.getMessage() or "servers/" in r.getMessage()
    ]
    warning = next(r for r in handler.records if "no clear answer" in r.getMessage())
    assert warning.server_id == server_id  # type: ignore[attr-defined]
    assert warning.phase == "submitted"  # type: ignore[attr-defined]
    assert warning.microversion == "2.60"  # type: ignore[attr-defined]
    assert about
    for record in about:
        assert record.server_id == server_id  # type: ignore[attr-defined]
        for field in ("request_id", "phase", "microversion"):
            assert hasattr(record, field)
    later = [r for r in about if r.getMessage().startswith("GET") and "200" in r.getMessage()]
    assert later
    for record in later:  # each request's own id, from the answer the line is about
        assert f"request_id={record.request_id} " in record.getMessage()  # type: ignore[attr-defined]


def test_a_records_own_extra_fields_are_kept() -> None:
    handler = _Records()
    logger = logging.getLogger("ecs_rebuild_async")
    logger.addHandler(handler)
    try:
        logger.warning("given", extra={"server_id": "mine"})
    finally:
        logger.removeHandler(handler)
    assert handler.records[0].server_id == "mine"  # type: ignore[attr-defined]


# -- URL templates: pure -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "template"),
    [
        ("https://ecs.example.com/v2.1/abc123/servers/s-1/action", f"{SERVER_URL}/action"),
        ("https://ecs.example.com/v2.1/abc123/servers/s-1", SERVER_URL),
        ("https://ecs.example.com/v2.1/abc123/servers/detail", "/v2.1/{project_id}/servers/detail"),
        (
            "https://ecs.example.com/v2.1/abc123/servers/s-1/os-instance-actions",
            f"{SERVER_URL}/os-instance-actions",
        ),
        ("https://ecs.example.com/v2.1/servers/s-1", "/v2.1/servers/{server_id}"),  # no project
        (
            "https://ecs.example.com/compute/v2/p/servers/s-1",
            "/compute/v2/{project_id}/servers/{server_id}",
        ),
        ("https://ecs.example.com/v2.1/", "/v2.1"),
        (
            "https://ecs.example.com/v2.1/p/servers/detail?changes-since=x&token=t",
            "/v2.1/{project_id}/servers/detail",
        ),
    ],
)
def test_url_templates_have_no_ids_and_no_query(url: str, template: str) -> None:
    assert url_template(url) == template


# -- secrets -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_no_secret_canary_in_any_span_event_or_metric_label(telemetry: Telemetry) -> None:
    fake = FakeCompute(time_scale=50, rebuild_seconds=4, token_lifetime=10)
    await whole_flow(fake, keystone(fake))
    spans = telemetry.spans()
    assert len({s.name for s in spans}) >= 5  # the flow was really traced
    labels = metric_labels(telemetry.points())
    assert labels
    secrets = secrets_of(fake)
    assert_clean(span_texts(spans), secrets)
    assert_clean(labels, secrets)


def test_json_log_lines_carry_server_fields_and_no_secret(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fake = FakeCompute(time_scale=50, rebuild_seconds=2)
    server_ids = [fake.add_server(), fake.add_server(fail=True)]
    fake.faults.script("POST", "rebuild", ["lost"])  # a warning about a server, at least
    user_data = tmp_path / "init.yaml"
    user_data.write_text(USER_DATA)
    code = main(
        [
            "rebuild",
            *server_ids,
            "--image",
            NEW_IMAGE,
            "--user-data",
            str(user_data),
            "--endpoint",
            fake.compute_url,
            "--poll-interval",
            "0.02",
            "--json",
            "-vv",
            "--log-format",
            "json",
        ],
        transport=fake.transport(),
        environ={"OS_TOKEN": fake.token},
    )
    assert code == 1  # one server goes to ERROR
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    # Every log line is one JSON object; the others are the command's own progress lines
    # and summary, none of them a text log line.
    others = [line for line in lines if not line.startswith("{")]
    assert not [line for line in others if line.startswith(("DEBUG ", "INFO ", "WARNING "))]
    logged = [line for line in lines if line.startswith("{")]
    assert len(logged) > 10
    entries = [json.loads(line) for line in logged]
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)
    about = [e for e in entries if any(s in e["message"] for s in server_ids)]
    assert about
    for entry in about:
        assert entry["server_id"] in server_ids
        assert entry["server_id"] in entry["message"]
    warning = next(e for e in entries if "no clear answer" in e["message"])
    assert warning["level"] == "warning"
    assert warning["phase"] == "submitted"
    assert warning["microversion"] == "2.60"
    assert_clean(lines, secrets_of(fake))


def test_demo_trace_prints_one_servers_span_tree(
    providers: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Rebuilds of a second: a read sees each running, however slow the machine.
    code = main(["demo", "--servers", "3", "--duration", "1", "--fail-rate", "0", "--trace"])
    assert code == 0
    err = capsys.readouterr().err
    tree = err[err.index("trace of server ") :].splitlines()
    assert tree[1].startswith("rebuild_and_wait ")
    assert "outcome=ok" in tree[1]
    assert "[submitted, running, done]" in tree[1]
    assert any(
        line.startswith("├─ POST /v2.1/{project_id}/servers/{server_id}/action") for line in tree
    )
    assert any(line.startswith("└─ wait_for_rebuild") for line in tree)
    assert tree[-1].startswith("shared poller: ")  # three waits: the listings served them


@pytest.mark.anyio
async def test_a_cancelled_fleet_ends_its_spans_and_leaves_no_wait_counted(
    telemetry: Telemetry,
) -> None:
    fake = FakeCompute(rebuild_seconds=30)  # nothing finishes before the cancellation
    server_ids = fake.add_servers(20)
    report = BulkReport()

    def cancel_once_all_are_submitted(event: Any) -> None:
        if len(report.submitted) == len(server_ids):
            scope.cancel()

    async with client(fake) as ecs:
        with anyio.CancelScope() as scope:
            await ecs.rebuild_many(
                server_ids,
                RebuildRequest(image_ref=NEW_IMAGE),
                report=report,
                on_event=cancel_once_all_are_submitted,
            )
    assert scope.cancelled_caught
    spans = telemetry.spans()
    fleet = next(s for s in spans if s.name == "rebuild_many")
    assert attrs_of(fleet)["error.type"] in {"CancelledError", "Cancelled"}
    rebuilds = [s for s in spans if s.name == "rebuild_and_wait"]
    assert len(rebuilds) == 20  # every one ended, as cancelled
    assert {attrs_of(s)["ecs_rebuild.outcome"] for s in rebuilds} == {"cancelled"}
    points = telemetry.points()
    assert sum_by(points["ecs_rebuild.rebuilds"], "ecs_rebuild.outcome") == {"cancelled": 20}
    assert sum(p.value for p in points["ecs_rebuild.waits.active"]) == 0


@pytest.mark.anyio
async def test_a_wait_on_its_own_has_its_span_and_the_phase_events(telemetry: Telemetry) -> None:
    fake = FakeCompute(rebuild_seconds=0.1)
    server_id = fake.add_server()
    async with client(fake) as ecs:
        await ecs.rebuild(server_id, RebuildRequest(image_ref=NEW_IMAGE))
        await ecs.wait_for_rebuild(server_id)
    spans = telemetry.spans()
    waits = [s for s in spans if s.name == "wait_for_rebuild"]
    assert len(waits) == 1
    wait = waits[0]
    assert wait.parent is None
    assert attrs_of(wait) == {"ecs_rebuild.server_id": server_id}
    assert [e.name for e in wait.events][-1] == "done"
    assert {s.name for s in children(spans, wait)} == {f"GET {SERVER_URL}"}
    assert not [s for s in spans if s.name == "rebuild_and_wait"]
