"""A rollout's traces and metrics: its span with the counts and the phases as events, each
server's span a child of it with the health gate's verdict, each rebuild back a span linked to
the rebuild it undoes; the rebuild counter by every outcome kind; no secret anywhere.

Read with the SDK's in-memory exporters (``otel_support``). Every rollout here runs one server
at a time, so the order of its phases is the scheduler's, not the machine's.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode
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
from test_canaries import ADMIN_PASS, USER_DATA, assert_clean, keystone, secrets_of
from test_docs_tables import names, table

from ecs_rebuild_async import (
    AsyncEcsClient,
    Auth,
    ClientSettings,
    OutcomeKind,
    RebuildOutcome,
    RebuildRequest,
    RolloutPolicy,
    RolloutProgress,
    Server,
    TokenAuth,
)
from ecs_rebuild_async.cli import main
from ecs_rebuild_async.cli.logs import JsonFormatter
from ecs_rebuild_async.testing import DEFAULT_IMAGES, FakeCompute

NEW = DEFAULT_IMAGES["ubuntu-24.04"]
REQUEST = RebuildRequest(image_ref=NEW)
FAST = ClientSettings(
    poll_first_delay=0.01,
    poll_interval=0.02,
    poll_interval_max=0.05,
    backoff_initial=0.001,
    retry_after_cap=0.05,
    reconcile_settle=0.01,
)
ROLLOUT = "ecs_rebuild.rollout."
ACTION = "POST /v2.1/{project_id}/servers/{server_id}/action"


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    install_providers()
    recorded = Telemetry()
    recorded.start()
    try:
        yield recorded
    finally:
        recorded.stop()


def client(fake: FakeCompute, auth: Auth | None = None) -> AsyncEcsClient:
    return AsyncEcsClient(
        fake.compute_url,
        auth=auth or TokenAuth(fake.token),
        transport=fake.transport(),
        settings=FAST,
    )


def health_of(fake: FakeCompute) -> Any:
    async def check(server: Server) -> bool:
        return fake.health(server.id)

    return check


def the_fleet(spans: list[ReadableSpan]) -> ReadableSpan:
    (fleet,) = [s for s in spans if s.name == "rebuild_many"]
    return fleet


def by_server(spans: list[ReadableSpan], name: str) -> dict[str, ReadableSpan]:
    found = {str(attrs_of(s)["ecs_rebuild.server_id"]): s for s in spans if s.name == name}
    assert len(found) == len([s for s in spans if s.name == name]), "one span per server"
    return found


def events_of(span: ReadableSpan) -> list[str]:
    return [event.name for event in span.events]


def phases(span: ReadableSpan) -> list[str]:
    """A rebuild's events without ``running``: a rebuild that ends before the wait's first read
    shows no REBUILD (its end is proven by its time instead), which a busy machine can cause."""
    return [name for name in events_of(span) if name != "running"]


def event_attrs(span: ReadableSpan) -> dict[str, dict[str, Any]]:
    return {event.name: dict(event.attributes or {}) for event in span.events}


@pytest.mark.anyio
async def test_span_tree_of_a_rollout_with_a_canary_an_unhealthy_server_and_a_rollback(
    telemetry: Telemetry,
) -> None:
    fake = FakeCompute(time_scale=50)
    canary = fake.add_server(name="canary")
    fine = fake.add_server(name="fine")
    sick = fake.add_server(name="sick", health=False)
    later = fake.add_servers(2, prefix="later")
    # The canary passes, a checkpoint after two servers passes, the sick one fails its health
    # gate: the budget (no failure) is spent, the last two never start, three are rolled back.
    policy = RolloutPolicy(
        canary=1,
        checkpoints=(0.4,),
        max_failures=0,
        health_check=health_of(fake),
        warmup=0.1,
        health_interval=0.02,
        rollback=True,
    )
    seen: list[RebuildOutcome] = []
    async with client(fake) as ecs:
        outcomes = await ecs.rebuild_many(
            [canary, fine, sick, *later],
            REQUEST,
            concurrency=1,
            policy=policy,
            on_outcome=seen.append,
            timeout=30,
        )
    assert [o.kind for o in outcomes] == [OutcomeKind.ROLLED_BACK] * 3 + [OutcomeKind.SKIPPED] * 2
    stopped = "1 failure, more than max_failures (0)"
    spans = telemetry.spans()

    # The rollout's span: the root of the run, with its counts and its phases in order.
    fleet = the_fleet(spans)
    assert fleet.parent is None
    assert attrs_of(fleet) == {
        "ecs_rebuild.fleet.total": 5,
        "ecs_rebuild.fleet.submitted": 3,
        "ecs_rebuild.fleet.outcomes.rolled_back": 3,
        "ecs_rebuild.fleet.outcomes.skipped": 2,
        ROLLOUT + "canary": 1,
        ROLLOUT + "failure_budget": 0,
        ROLLOUT + "checkpoints_passed": 1,
        ROLLOUT + "stopped_reason": stopped,
        ROLLOUT + "rollback.total": 3,
        ROLLOUT + "rollback.finished": 3,
    }
    # Every event of the README's table, in its order, with the attributes it lists.
    documented = {names(row[0])[0]: names(row[1]) for row in table("rollout event")}
    assert (
        events_of(fleet)
        == list(documented)
        == [
            "canary_started",
            "canary_passed",
            "checkpoint_reached",
            "checkpoint_passed",
            "budget_spent",
            "stopped",
            "rollback_started",
            "rollback_finished",
        ]
    )
    assert {name: [ROLLOUT + key for key in keys] for name, keys in documented.items()} == {
        name: list(found) for name, found in event_attrs(fleet).items()
    }
    assert event_attrs(fleet) == {
        "canary_started": {ROLLOUT + "canary": 1},
        "canary_passed": {ROLLOUT + "finished": 1},
        "checkpoint_reached": {ROLLOUT + "checkpoint": 0.4, ROLLOUT + "finished": 2},
        "checkpoint_passed": {ROLLOUT + "checkpoint": 0.4},
        "budget_spent": {ROLLOUT + "failures": 1, ROLLOUT + "failure_budget": 0},
        "stopped": {ROLLOUT + "stopped_reason": stopped},
        "rollback_started": {ROLLOUT + "rollback.total": 3},
        "rollback_finished": {ROLLOUT + "rollback.finished": 3},
    }
    # Every span of the run is in its trace (the shared poller's listings have their own).
    assert {s.context.trace_id for s in spans if s.name != "poll_listing"} == {
        fleet.context.trace_id
    }

    # Each server started is a child: its rebuild, wait and health gate, with its verdict.
    forward = by_server(spans, "rebuild_and_wait")
    assert forward.keys() == {canary, fine, sick}
    assert all(
        s.parent is not None and s.parent.span_id == fleet.context.span_id for s in forward.values()
    )
    for server_id in (canary, fine):
        assert attrs_of(forward[server_id])["ecs_rebuild.outcome"] == "ok"
        assert phases(forward[server_id]) == ["submitted", "done"]
        assert forward[server_id].status.status_code is StatusCode.UNSET
    assert attrs_of(forward[sick]) == {
        "ecs_rebuild.server_id": sick,
        "ecs_rebuild.microversion": "2.60",
        "ecs_rebuild.outcome": "unhealthy",
    }
    assert phases(forward[sick]) == ["submitted", "done", "unhealthy"]
    assert forward[sick].status.status_code is StatusCode.ERROR  # failed, with no exception
    # The canary came first: the others started once it had passed.
    passed_at = next(e.timestamp for e in fleet.events if e.name == "canary_passed")
    assert forward[canary].end_time is not None
    assert forward[canary].end_time <= passed_at
    assert all((forward[s].start_time or 0) >= passed_at for s in (fine, sick))

    # Each rebuild back is a span of its own under the rollout, linked to the rebuild it undoes.
    back = by_server(spans, "rollback")
    assert back.keys() == {canary, fine, sick}
    rollback_at = next(e.timestamp for e in fleet.events if e.name == "rollback_started")
    for server_id, span in back.items():
        assert span.parent is not None
        assert span.parent.span_id == fleet.context.span_id
        assert [link.context.span_id for link in span.links] == [forward[server_id].context.span_id]
        assert attrs_of(span) == {
            "ecs_rebuild.server_id": server_id,
            "ecs_rebuild.microversion": "2.60",
            "ecs_rebuild.outcome": "rolled_back",
        }
        assert phases(span) == ["submitted", "done", "rolled_back"]
        assert (span.start_time or 0) >= rollback_at
        assert [s.name for s in descendants(spans, span)].count(ACTION) == 1
    # Under the rollout, besides: the version document and the listing of the fleet before it
    # began. The servers never started have no span.
    assert [s.name for s in children(spans, fleet)][:2] == [
        "GET /v2.1",
        "GET /v2.1/{project_id}/servers/detail",
    ]
    assert {s.name for s in children(spans, fleet)[2:]} == {"rebuild_and_wait", "rollback"}
    for server_id in later:
        assert server_id not in {str(attrs_of(s).get("ecs_rebuild.server_id")) for s in spans}

    # The rebuild counter counts every outcome the caller received, by kind; the duration
    # histogram every rebuild (forward and back), the skipped servers having none.
    received = Counter(o.kind.value for o in seen)
    assert received == {"ok": 2, "unhealthy": 1, "skipped": 2, "rolled_back": 3}
    points = telemetry.points()
    assert sum_by(points["ecs_rebuild.rebuilds"], "ecs_rebuild.outcome") == dict(received)
    durations: Counter[str] = Counter()
    for point in points["ecs_rebuild.rebuild.duration"]:
        durations[str(point.attributes["ecs_rebuild.outcome"])] += point.count
    assert durations == {"ok": 2, "unhealthy": 1, "rolled_back": 3}
    assert sum(p.value for p in points["ecs_rebuild.waits.active"]) == 0


@pytest.mark.anyio
async def test_a_rollback_that_fails_and_servers_skipped_as_matching_are_traced_and_counted(
    telemetry: Telemetry,
) -> None:
    fake = FakeCompute(time_scale=50)  # ECS: a server in ERROR cannot be rebuilt back
    done = fake.add_server(name="done", image_id=NEW)
    fine = fake.add_server(name="fine")
    broken = fake.add_server(name="broken", fail_image=NEW)
    later = fake.add_server(name="later")
    policy = RolloutPolicy(skip_matching=True, max_failures=0, rollback=True)
    seen: list[RebuildOutcome] = []
    async with client(fake) as ecs:
        outcomes = await ecs.rebuild_many(
            [done, fine, broken, later],
            REQUEST,
            concurrency=1,
            policy=policy,
            on_outcome=seen.append,
            timeout=30,
        )
    assert [o.kind.value for o in outcomes] == [
        "skipped",
        "rolled_back",
        "rollback_failed",
        "skipped",
    ]
    spans = telemetry.spans()
    fleet = the_fleet(spans)
    assert attrs_of(fleet) == {
        "ecs_rebuild.fleet.total": 4,
        "ecs_rebuild.fleet.submitted": 2,
        "ecs_rebuild.fleet.outcomes.skipped": 2,
        "ecs_rebuild.fleet.outcomes.rolled_back": 1,
        "ecs_rebuild.fleet.outcomes.rollback_failed": 1,
        ROLLOUT + "failure_budget": 0,
        ROLLOUT + "skipped_matching": 1,
        ROLLOUT + "stopped_reason": "1 failure, more than max_failures (0)",
        ROLLOUT + "rollback.total": 2,
        ROLLOUT + "rollback.finished": 2,
    }
    assert events_of(fleet) == ["budget_spent", "stopped", "rollback_started", "rollback_finished"]

    forward = by_server(spans, "rebuild_and_wait")
    assert forward.keys() == {fine, broken}  # the matching server was only read
    assert attrs_of(forward[broken])["ecs_rebuild.outcome"] == "failed"
    assert attrs_of(forward[broken])["error.type"] == "RebuildFailed"
    assert events_of(forward[broken])[-1] == "failed"
    back = by_server(spans, "rollback")
    assert attrs_of(back[fine])["ecs_rebuild.outcome"] == "rolled_back"
    failed_back = back[broken]
    assert attrs_of(failed_back)["ecs_rebuild.outcome"] == "rollback_failed"
    assert attrs_of(failed_back)["error.type"] == "InvalidRequest"  # refused before sending
    assert failed_back.status.status_code is StatusCode.ERROR
    assert events_of(failed_back) == ["rollback_failed"]
    assert ACTION not in [s.name for s in descendants(spans, failed_back)]
    assert [link.context.span_id for link in failed_back.links] == [forward[broken].context.span_id]

    received = Counter(o.kind.value for o in seen)
    assert received == {
        "skipped": 2,
        "ok": 1,
        "failed": 1,
        "rolled_back": 1,
        "rollback_failed": 1,
    }
    points = telemetry.points()
    assert sum_by(points["ecs_rebuild.rebuilds"], "ecs_rebuild.outcome") == dict(received)


@pytest.mark.anyio
async def test_a_checkpoint_answered_no_is_a_stop_not_a_pass(telemetry: Telemetry) -> None:
    fake = FakeCompute(time_scale=50)
    servers = fake.add_servers(4)

    async def stop(progress: RolloutProgress) -> bool:
        return False

    policy = RolloutPolicy(checkpoints=(0.5,), on_checkpoint=stop)
    async with client(fake) as ecs:
        await ecs.rebuild_many(servers, REQUEST, concurrency=1, policy=policy, timeout=30)
    fleet = the_fleet(telemetry.spans())
    assert events_of(fleet) == ["checkpoint_reached", "stopped"]
    assert event_attrs(fleet)["stopped"] == {
        ROLLOUT + "stopped_reason": "stopped at checkpoint 50%"
    }
    assert attrs_of(fleet)[ROLLOUT + "checkpoints_passed"] == 1  # answered, though not passed
    assert attrs_of(fleet)["ecs_rebuild.fleet.outcomes.skipped"] == 2


@pytest.mark.anyio
async def test_a_plain_fleet_has_no_rollout_events_or_attributes(telemetry: Telemetry) -> None:
    fake = FakeCompute(time_scale=50)
    servers = fake.add_servers(3)
    async with client(fake) as ecs:
        await ecs.rebuild_many(servers, REQUEST, timeout=30)
    fleet = the_fleet(telemetry.spans())
    assert events_of(fleet) == []
    assert not [key for key in attrs_of(fleet) if key.startswith(ROLLOUT)]


@pytest.mark.anyio
async def test_a_journaled_run_has_its_span_too(telemetry: Telemetry, tmp_path: Path) -> None:
    fake = FakeCompute(time_scale=50)
    servers = fake.add_servers(3)
    async with client(fake) as ecs:
        await ecs.rebuild_many(servers, REQUEST, journal=tmp_path / "run.sqlite", timeout=30)
    spans = telemetry.spans()
    fleet = the_fleet(spans)
    assert attrs_of(fleet) == {
        "ecs_rebuild.fleet.total": 3,
        "ecs_rebuild.fleet.submitted": 3,
        "ecs_rebuild.fleet.outcomes.ok": 3,
    }
    forward = by_server(spans, "rebuild_and_wait")
    assert forward.keys() == set(servers)
    assert {s.parent.span_id if s.parent else None for s in forward.values()} == {
        fleet.context.span_id
    }


# -- secrets -----------------------------------------------------------------------------------


class _JsonLines(logging.Handler):
    """Formats every record as the command line's ``--log-format json`` does."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.mark.anyio
async def test_no_secret_canary_in_a_rollouts_spans_metrics_or_json_log_lines(
    telemetry: Telemetry,
) -> None:
    fake = FakeCompute(time_scale=50)
    canary = fake.add_server(name="canary")
    sick = fake.add_server(name="sick", health=False)
    rest = fake.add_servers(2, prefix="rest")
    request = RebuildRequest(
        image_ref=NEW, name="canary", admin_pass=ADMIN_PASS, user_data=USER_DATA
    )
    policy = RolloutPolicy(
        canary=1,
        max_failures=0,
        health_check=health_of(fake),
        warmup=0.1,
        health_interval=0.02,
        rollback=True,
    )
    handler = _JsonLines()
    loggers = [logging.getLogger(name) for name in ("ecs_rebuild_async", "httpx", "httpcore")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        async with client(fake, keystone(fake)) as ecs:  # the password and tokens: canaries too
            outcomes = await ecs.rebuild_many(
                [canary, sick, *rest], request, concurrency=1, policy=policy, timeout=30
            )
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
    assert [o.kind.value for o in outcomes] == ["rolled_back", "rolled_back", "skipped", "skipped"]
    assert fake.rebuilds_accepted(canary) == 2  # the secrets were really sent, then rolled back

    spans = telemetry.spans()
    names = {s.name for s in spans}
    assert {"rebuild_many", "rebuild_and_wait", "rollback", ACTION} <= names
    labels = metric_labels(telemetry.points())
    assert any("ecs_rebuild.outcome=unhealthy" in label for label in labels)
    entries = [json.loads(line) for line in handler.lines]
    assert {entry.get("server_id") for entry in entries} >= {canary, sick}
    assert {"submitted", "running"} & {entry.get("phase") for entry in entries}
    secrets = secrets_of(fake)
    assert_clean(span_texts(spans), secrets)
    assert_clean(labels, secrets)
    assert_clean(handler.lines, secrets)


def test_a_rollout_from_the_command_line_logs_json_lines_without_secrets(
    telemetry: Telemetry, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fake = FakeCompute(time_scale=50, rebuild_seconds=2)
    first = fake.add_server(name="first")
    broken = fake.add_server(name="broken", fail_image=NEW)
    rest = fake.add_server(name="rest")
    user_data = tmp_path / "init.yaml"
    user_data.write_text(USER_DATA)
    code = main(
        [
            "rebuild",
            first,
            broken,
            rest,
            "--image",
            NEW,
            "--user-data",
            str(user_data),
            "--password",
            ADMIN_PASS,
            "--max-failures",
            "0",
            "--rollback",
            "--concurrency",
            "1",
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
    assert code == 1
    out, err = capsys.readouterr()
    kinds = {json.loads(line)["server_id"]: json.loads(line)["kind"] for line in out.splitlines()}
    assert kinds == {first: "rolled_back", broken: "rollback_failed", rest: "skipped"}
    logged = [line for line in err.splitlines() if line.startswith("{")]
    assert len(logged) > 10
    assert any(json.loads(line).get("server_id") == broken for line in logged)
    spans = telemetry.spans()
    assert {"rebuild_many", "rollback"} <= {s.name for s in spans}
    secrets = secrets_of(fake)
    assert_clean([*err.splitlines(), *out.splitlines()], secrets)
    assert_clean(span_texts(spans), secrets)
    assert_clean(metric_labels(telemetry.points()), secrets)
