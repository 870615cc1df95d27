"""The command line's durable runs: rebuild --journal, resume, journal show, and Ctrl-C."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from served_fake import fake_record, served_fake

from ecs_rebuild_async.cli import main
from ecs_rebuild_async.testing import FakeCompute

FAST = ["--poll-interval", "0.02"]


@pytest.fixture
def fake() -> FakeCompute:
    return FakeCompute(time_scale=50.0, rebuild_seconds=2.0)


def connect(fake: FakeCompute) -> list[str]:
    return ["--endpoint", fake.compute_url, "--token", fake.token]


def run(argv: list[str], fake: FakeCompute | None = None) -> int:
    return main(argv, transport=None if fake is None else fake.transport(), environ={})


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_journal_show_is_the_audit_record_of_every_server_and_request(
    fake: FakeCompute, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = fake.add_servers(4)
    bad = fake.add_server(name="locked", locked=True)
    image = fake.images["ubuntu-24.04"]
    journal = str(tmp_path / "run.sqlite")
    argv = ["rebuild", *ids, bad, "--image", image, "--journal", journal, "--json", *FAST]
    assert run([*argv, *connect(fake)], fake) == 1
    capsys.readouterr()

    assert run(["journal", "show", journal, "--json"]) == 0
    audit = json.loads(capsys.readouterr().out)
    assert audit["run"]["servers"] == 5
    assert audit["run"]["finished"] == 5
    assert audit["run"]["outcomes"] == {"ok": 4, "conflict": 1}
    assert audit["run"]["endpoint"] == fake.compute_url
    record = fake.record()["servers"]
    by_id = {entry["server_id"]: entry for entry in audit["servers"]}
    assert list(by_id) == [*ids, bad]
    for server_id in ids:
        (sent,) = by_id[server_id]["requests"]
        assert sent["result"] == "accepted"
        assert sent["request_id"] in record[server_id]["rebuild_request_ids"]
        assert sent["service_time"] is not None
        assert sent["sent_after"] is not None
        assert by_id[server_id]["outcome"]["kind"] == "ok"
        assert by_id[server_id]["outcome"]["image"] == image
    (refused,) = by_id[bad]["requests"]
    assert refused["result"] == "not sent"  # a 409: the service refused it
    assert refused["request_id"]
    assert by_id[bad]["outcome"]["kind"] == "conflict"

    assert run(["journal", "show", journal]) == 0
    text = capsys.readouterr().out
    assert "servers: 5, finished: 5 (1 conflict, 4 ok), rebuild requests sent: 5" in text
    for server_id in [*ids, bad]:
        assert server_id in text
    for server_id in ids:
        assert by_id[server_id]["requests"][0]["request_id"] in text


def test_rebuild_again_with_the_journal_sends_nothing_and_prints_every_outcome(
    fake: FakeCompute, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = fake.add_servers(3)
    image = fake.images["ubuntu-24.04"]
    journal = str(tmp_path / "run.sqlite")
    argv = ["rebuild", *ids, "--image", image, "--journal", journal, "--json", *FAST]
    assert run([*argv, *connect(fake)], fake) == 0
    capsys.readouterr()
    fake.stats.reset()
    assert run([*argv, *connect(fake)], fake) == 0
    assert run(["resume", journal, "--json", *FAST, *connect(fake)], fake) == 0
    records = json_lines(capsys.readouterr().out)
    assert sorted(r["server_id"] for r in records) == sorted(ids * 2)
    assert all(r["ok"] and r["image_after"] == image for r in records)
    assert fake.stats.requests[("POST", "rebuild")] == 0


def test_journal_usage_errors(
    fake: FakeCompute, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = fake.add_servers(1)
    image = fake.images["ubuntu-24.04"]
    journal = str(tmp_path / "run.sqlite")
    argv = ["rebuild", *ids, "--image", image, "--journal", journal, "--no-wait"]
    assert run([*argv, *connect(fake)], fake) == 2
    assert "--no-wait" in capsys.readouterr().err
    assert run(["journal", "show", str(tmp_path / "missing.sqlite")]) == 1
    assert "no journal" in capsys.readouterr().err
    assert run(["resume", str(tmp_path / "missing.sqlite"), *connect(fake)], fake) == 1
    assert fake.stats.requests[("POST", "rebuild")] == 0


def test_ctrl_c_then_resume_rebuilds_each_server_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Rebuilds of 1 s (10 fake seconds at 10x): the run is far from done when Ctrl-C comes.
    serve = ["--servers", "60", "--time-scale", "10", "--rebuild-seconds", "10", "--seed", "3"]
    with served_fake(serve) as ready:
        ids = [ready["servers"][f"server-{i}"] for i in range(60)]
        journal = tmp_path / "run.sqlite"
        connection = ["--endpoint", ready["compute_url"], "--token", ready["token"]]
        image = ready["images"]["ubuntu-24.04"]
        first = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ecs_rebuild_async",
                "rebuild",
                *ids,
                "--image",
                image,
                "--journal",
                str(journal),
                "--concurrency",
                "10",
                "--json",
                "--poll-interval",
                "0.05",
                *connection,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert first.stdout is not None
        # Ctrl-C once some servers have finished (their outcome lines came out).
        for _ in range(5):
            assert first.stdout.readline()
        first.send_signal(signal.SIGINT)
        _out, err = first.communicate(timeout=60)
        assert first.returncode == 130, err
        assert "interrupted" in err
        before = fake_record(ready)["servers"]
        started = sum(before[s]["rebuilds"] for s in ids)
        assert 5 <= started < 60

        resumed = subprocess.run(
            [
                sys.executable,
                "-m",
                "ecs_rebuild_async",
                "resume",
                str(journal),
                "--json",
                "--poll-interval",
                "0.05",
                *connection,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert resumed.returncode == 0, resumed.stderr
        after = fake_record(ready)["servers"]
    records = json_lines(resumed.stdout)
    assert sorted(r["server_id"] for r in records) == sorted(ids)
    assert all(r["ok"] for r in records)
    assert all(after[s]["rebuilds"] == 1 and after[s]["image_id"] == image for s in ids)


def test_a_rollout_journal_resumed_after_its_budget_stop_and_continued_on_request(
    fake: FakeCompute, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = fake.images["ubuntu-24.04"]
    ids = fake.add_servers(2)
    broken = fake.add_server(name="broken", fail_image=image)
    later = fake.add_servers(3, prefix="later")
    servers = [*ids, broken, *later]
    journal = str(tmp_path / "run.sqlite")
    rollout = ["--max-failures", "0", "--concurrency", "1"]
    argv = ["rebuild", *servers, "--image", image, "--journal", journal, *rollout, "--json"]
    assert run([*argv, *FAST, *connect(fake)], fake) == 1
    out, err = capsys.readouterr()
    stop = "1 failure, more than max_failures (0)"
    assert f"rollout stopped: {stop}" in err
    first = {r["server_id"]: r for r in json_lines(out)}
    assert [first[s]["kind"] for s in later] == ["skipped"] * 3

    # Resumed: reported from the journal, stop reason and all; nothing is sent.
    fake.stats.reset()
    assert run(["resume", journal, "--json", *FAST, *connect(fake)], fake) == 1
    out, err = capsys.readouterr()
    assert sum(fake.stats.requests.values()) == 0
    assert f"rollout stopped: {stop}" in err
    again = {r["server_id"]: r for r in json_lines(out)}
    assert {s: (r["kind"], r["reason"]) for s, r in again.items()} == {
        s: (r["kind"], r["reason"]) for s, r in first.items()
    }
    assert again[later[0]]["reason"] == f"not started: {stop}"

    # Options that are not the run's are refused before anything is sent.
    assert run(["resume", journal, "--health-cmd", "true", *connect(fake)], fake) == 2
    assert "without --health-cmd" in capsys.readouterr().err
    # Asked to go on: the three left are rebuilt (the failure so far still counts).
    resume = ["resume", journal, "--continue-stopped", "--json", *FAST, *connect(fake)]
    assert run(resume, fake) == 1
    out, err = capsys.readouterr()
    assert "rollout stopped" not in err
    records = {r["server_id"]: r for r in json_lines(out)}
    assert [records[s]["kind"] for s in servers] == ["ok", "ok", "failed", "ok", "ok", "ok"]
    assert [fake.rebuilds_accepted(s) for s in servers] == [1] * 6

    assert run(["journal", "show", journal]) == 0
    text = capsys.readouterr().out
    assert "policy: canary=0 checkpoint_delay=0.0 checkpoints=[] health_check=False" in text
    assert f"stopped: {stop}" in text
    assert " restarted; phase rolling" in text


def test_resuming_a_rollout_with_a_health_command_needs_it_again(
    fake: FakeCompute, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = fake.images["ubuntu-24.04"]
    ids = fake.add_servers(2)
    journal = str(tmp_path / "run.sqlite")
    check = [sys.executable, "-c", "pass"]
    health = ["--health-cmd", shlex.join(check), "--warmup", "5"]
    argv = ["rebuild", *ids, "--image", image, "--journal", journal, *health, "--json"]
    assert run([*argv, *FAST, *connect(fake)], fake) == 0
    capsys.readouterr()
    assert run(["resume", journal, *connect(fake)], fake) == 2
    assert "started with --health-cmd, which the journal does not store" in (
        capsys.readouterr().err
    )
    fake.stats.reset()
    assert run(["resume", journal, "--health-cmd", shlex.join(check), *connect(fake)], fake) == 0
    assert fake.stats.requests[("POST", "rebuild")] == 0
