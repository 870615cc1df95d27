"""``ecs-rebuild rebuild`` rolling a fleet: the rollout options, --where, --plan, --confirm and
--health-cmd, against the fake service (in process, and over loopback TCP for the health
endpoint that the health command asks)."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal

from ecs_rebuild_async.cli import main
from ecs_rebuild_async.testing import DEFAULT_IMAGES, FakeCompute

NEW = DEFAULT_IMAGES["ubuntu-24.04"]
OLD = DEFAULT_IMAGES["ubuntu-22.04"]
FAST = ["--poll-interval", "0.02"]


@pytest.fixture
def fake() -> FakeCompute:
    return FakeCompute(time_scale=50.0, rebuild_seconds=2.0)


def connect(fake: FakeCompute) -> list[str]:
    return ["--endpoint", fake.compute_url, "--token", fake.token]


def run(argv: list[str], fake: FakeCompute, *, tcp: bool = False) -> int:
    return main(argv, transport=None if tcp else fake.transport(), environ={})


def rebuild(fake: FakeCompute, *args: str) -> list[str]:
    return ["rebuild", "--image", NEW, *args, *connect(fake), *FAST, "--json"]


def records(text: str) -> dict[str, dict[str, Any]]:
    found = [json.loads(line) for line in text.splitlines() if line.strip()]
    by_id: dict[str, dict[str, Any]] = {}
    for record in found:
        by_id[record["server_id"]] = record  # a rolled-back server's last record wins
    return by_id


def posts(fake: FakeCompute) -> int:
    return fake.stats.requests[("POST", "rebuild")]


def test_plan_sends_no_request_and_prints_the_waves(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str]
) -> None:
    done = fake.add_server(name="done", image_id=NEW)
    ids = fake.add_servers(6)
    argv = rebuild(fake, done, *ids, "--plan", "--canary", "1", "--max-unavailable", "50%")
    code = run([*argv, "--skip-matching", "--checkpoint", "50%", "--max-failures", "1"], fake)
    out, err = capsys.readouterr()
    assert code == 0, err
    plan = json.loads(out)
    assert plan["skipped"] == [done]
    assert plan["canary"] == ids[:1]
    assert plan["waves"] == [ids[:1], ids[1:3], ids[3:6]]
    assert plan["checkpoints"] == [{"at": 0.5, "after_wave": 2}]
    assert plan["max_unavailable"] == 3
    assert plan["failure_budget"] == 1
    assert plan["requests"][ids[0]] == {"rebuild": {"imageRef": NEW}}
    assert posts(fake) == 0


def test_plan_for_people_with_secrets_masked(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ids = fake.add_servers(3)
    user_data = tmp_path / "init.sh"
    user_data.write_text("#!/bin/sh\necho secret-value\n")
    argv = rebuild(fake, *ids, "--plan", "--canary", "1", "--user-data", str(user_data))
    argv.remove("--json")
    assert run(argv, fake) == 0
    out = capsys.readouterr().out
    assert f"canary: {ids[0]}" in out
    assert f"wave 2: {ids[1]} {ids[2]}" in out
    assert '"user_data": "***"' in out
    assert "secret-value" not in out
    assert "IyEvYmluL3No" not in out  # nor its base64
    assert posts(fake) == 0


def test_where_chooses_the_servers(fake: FakeCompute, capsys: pytest.CaptureFixture[str]) -> None:
    web = fake.add_servers(3, prefix="web", metadata={"tier": "front", "env": "prod"})
    fake.add_servers(2, prefix="web-test", metadata={"tier": "front", "env": "test"})
    fake.add_servers(2, prefix="db", metadata={"tier": "back", "env": "prod"})
    fake.add_server(name="web-9", status="SHUTOFF", metadata={"tier": "front", "env": "prod"})
    where = ["--where", "name~^web-[0-9]$", "--where", "status=ACTIVE"]
    where += ["--where", "metadata.env=prod", "--where", f"image={OLD}"]
    code = run(rebuild(fake, *where), fake)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert set(records(out)) == set(web)
    assert "--where chose 3 servers" in err
    assert posts(fake) == 3


@pytest.mark.parametrize("mode", [["--json"], []])
def test_where_says_once_what_it_chose_and_a_plain_run_shows_no_rollout_phase(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str], mode: list[str]
) -> None:
    fake.add_servers(3, prefix="web")
    argv = [*rebuild(fake, "--where", "name~^web-"), *mode]
    argv.remove("--json")
    assert run([*argv, *mode], fake) == 0
    err = capsys.readouterr().err
    assert err.count("--where chose") == 1, err
    assert "--where chose 3 servers\n" in err
    # No rollout option: the run rebuilds, it does not "roll".
    assert "rollout:" not in err
    assert "rolling" not in err
    assert posts(fake) == 3


def test_a_status_no_server_has_is_a_usage_error(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.add_servers(2)
    assert run(rebuild(fake, "--where", "status=ACTIVEE"), fake) == 2
    err = capsys.readouterr().err
    assert "status 'ACTIVEE' is not a server status; one of: ACTIVE, " in err
    assert fake.requests == []


@pytest.mark.parametrize("table", [True, False])
def test_the_summary_adds_up_when_skipped_servers_are_on_both_sides(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str], table: bool
) -> None:
    done = fake.add_server(name="done", image_id=NEW)  # already matching: skipped, ok
    canary = fake.add_server(name="canary", fail_image=NEW)
    rest = fake.add_servers(2)  # never started once the canary failed: skipped, not ok
    argv = rebuild(fake, done, canary, *rest, "--skip-matching", "--canary", "1")
    if table:
        argv.remove("--json")
    assert run(argv, fake) == 1
    err = capsys.readouterr().err
    if table:
        rows = [
            (m.group(1).rstrip(), int(m.group(2)))
            for m in re.finditer(r"│ ([a-z ]+?)\s*│\s+(\d+) │", err.split("Requests sent")[0])
        ]
        assert rows == [
            ("ok", 1), ("  skipped", 1),
            ("not ok", 3), ("  failed", 1), ("  skipped", 2),
            ("total", 4),
        ], err  # fmt: skip
    else:
        assert "1 ok (1 skipped), 3 not ok (1 failed, 2 skipped) of 4 in " in err


@pytest.mark.parametrize(
    "argv",
    [
        ["--where", "colour=red"],
        ["--where", "name~"],
        ["--where", "name~a", "--where", "name~b"],
        ["--max-unavailable", "0"],
        ["--max-unavailable", "150%"],
        ["--max-failures", "x"],
        ["--checkpoint", "100%"],
        ["--confirm"],
        ["--canary", "1", "--checkpoint-delay", "5"],
        ["--checkpoint", "50%", "--confirm", "--checkpoint-delay", "1"],
        ["--canary", "1", "--no-wait"],
        ["--health-cmd", "'unclosed"],
        ["--health-cmd", "  "],
        ["--health-cmd", "no-such-command-anywhere {ip}"],
    ],
)
def test_bad_rollout_options_are_usage_errors(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    server_id = fake.add_server()
    ids = [] if "--where" in argv else [server_id]
    assert run(rebuild(fake, *ids, *argv), fake) == 2
    assert capsys.readouterr().err.startswith("ecs-rebuild: error:")
    assert posts(fake) == 0


def test_where_with_ids_is_a_usage_error(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str]
) -> None:
    server_id = fake.add_server()
    assert run(rebuild(fake, server_id, "--where", "status=ACTIVE"), fake) == 2
    assert "--where chooses the servers" in capsys.readouterr().err


def test_a_failing_canary_stops_the_run(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str]
) -> None:
    canary = fake.add_server(name="canary", fail_image=NEW)
    rest = fake.add_servers(4)
    code = run(rebuild(fake, canary, *rest, "--canary", "1"), fake)
    out, err = capsys.readouterr()
    assert code == 1
    found = records(out)
    assert found[canary]["kind"] == "failed"
    assert {found[sid]["kind"] for sid in rest} == {"skipped"}
    assert found[rest[0]]["reason"] == f"not started: canary {canary} did not pass"
    assert f"rollout stopped: canary {canary} did not pass" in err
    assert posts(fake) == 1


def test_max_failures_stops_the_run(fake: FakeCompute, capsys: pytest.CaptureFixture[str]) -> None:
    ids = fake.add_servers(6, fail_image=NEW)
    code = run(rebuild(fake, *ids, "--max-failures", "1", "--concurrency", "1"), fake)
    assert code == 1
    found = records(capsys.readouterr().out)
    assert [found[sid]["kind"] for sid in ids] == ["failed"] * 2 + ["skipped"] * 4
    assert posts(fake) == 2


def test_max_unavailable_as_a_percentage(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeCompute(time_scale=50.0, rebuild_seconds=10.0)  # 0.2 s each
    ids = fake.add_servers(8)
    assert run(rebuild(fake, *ids, "--max-unavailable", "25%"), fake) == 0
    assert fake.max_rebuilding == 2


def test_skip_matching_and_rollback(fake: FakeCompute, capsys: pytest.CaptureFixture[str]) -> None:
    nova = FakeCompute(time_scale=50.0, dialect="nova")
    done = nova.add_server(name="done", image_id=NEW)
    good = nova.add_servers(2, prefix="good")
    bad = nova.add_server(name="bad", fail_image=NEW)
    later = nova.add_server(name="later")
    argv = rebuild(nova, done, *good, bad, later, "--skip-matching", "--rollback")
    code = run([*argv, "--max-failures", "0", "--concurrency", "1", "--dialect", "nova"], nova)
    out, err = capsys.readouterr()
    assert code == 1, err
    found = records(out)
    assert found[done]["kind"] == "skipped"
    assert found[done]["reason"] == "already matches"
    assert [found[sid]["kind"] for sid in [*good, bad]] == ["rolled_back"] * 3
    assert found[later]["kind"] == "skipped"
    assert [nova.rebuilds_accepted(sid) for sid in [done, *good, bad, later]] == [0, 2, 2, 2, 0]
    assert all(nova.truth(sid).image_id == OLD for sid in [*good, bad])


@pytest.mark.parametrize(("answer", "code", "sent"), [("y\n", 0, 4), ("n\n", 1, 2), ("", 1, 2)])
def test_confirm_asks_at_each_checkpoint(
    fake: FakeCompute,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
    code: int,
    sent: int,
) -> None:
    ids = fake.add_servers(4)
    monkeypatch.setattr(sys, "stdin", io.StringIO(answer))
    assert run(rebuild(fake, *ids, "--checkpoint", "50%", "--confirm"), fake) == code
    err = capsys.readouterr().err
    assert "checkpoint 50%: 2 of 4 done, 0 failed. Go on? [y/N]" in err
    assert posts(fake) == sent


def test_checkpoint_delay(fake: FakeCompute, capsys: pytest.CaptureFixture[str]) -> None:
    ids = fake.add_servers(4)
    argv = rebuild(fake, *ids, "--checkpoint", "25%", "--checkpoint-delay", "0.01")
    assert run(argv, fake) == 0
    assert {r["kind"] for r in records(capsys.readouterr().out).values()} == {"ok"}


def test_the_live_display_names_the_phase_and_the_budget(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = fake.add_server(name="bad", fail_image=NEW)
    ids = fake.add_servers(2)
    argv = list(rebuild(fake, bad, *ids, "--canary", "1", "--max-failures", "2"))
    argv.remove("--json")
    assert run(argv, fake) == 1
    err = capsys.readouterr().err
    assert "stopped · failure budget left: 1" in err


@contextmanager
def served(fake: FakeCompute) -> Iterator[str]:
    """The fake on loopback TCP, served from a thread of its own while the CLI runs."""
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(fake.serve_tcp()) as base,
    ):
        yield base


PROBE = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10)"


def test_health_cmd_asks_each_server_and_unhealthy_ones_count_as_failures(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str]
) -> None:
    fine = fake.add_servers(2, prefix="fine")
    sick = fake.add_server(name="sick", health=False)
    with served(fake) as base:
        command = shlex.join([sys.executable, "-c", PROBE, f"{base}/health/{{id}}"])
        # One try each (no warmup), of up to 60 s: however slow the probe starts, the healthy
        # ones pass and the sick one fails.
        argv = rebuild(fake, *fine, sick, "--health-cmd", command, "--warmup", "0")
        code = run([*argv, "--health-timeout", "60"], fake, tcp=True)
    out, err = capsys.readouterr()
    assert code == 1, err
    found = records(out)
    assert [found[sid]["kind"] for sid in fine] == ["ok", "ok"]
    assert found[sick]["kind"] == "unhealthy"
    assert found[sick]["reason"] == "the health check did not pass within 0 s"


def test_health_cmd_runs_without_a_shell_and_a_name_stays_one_argument(
    fake: FakeCompute,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    names = ["web; touch pwned", "$(touch pwned2) {id}", "a b"]
    ids = [fake.add_server(name=name) for name in names]
    write = "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text(repr(sys.argv[2:]))"
    command = f"{shlex.quote(sys.executable)} -c {shlex.quote(write)} seen-{{id}} {{name}} {{ip}}"
    assert run(rebuild(fake, *ids, "--health-cmd", command), fake) == 0, capsys.readouterr()
    for server_id, name in zip(ids, names, strict=True):
        argv = (tmp_path / f"seen-{server_id}").read_text()
        assert argv.startswith(repr([name])[:-1])  # the name, exactly, as one argument
        assert "10.0." in argv  # {ip}: the server's address
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "pwned2").exists()


def test_ctrl_c_while_paused_at_a_checkpoint_stops_cleanly(fake: FakeCompute) -> None:
    ids = fake.add_servers(4)
    with served(fake) as base:
        argv = [sys.executable, "-m", "ecs_rebuild_async", "rebuild", *ids, "--image", NEW]
        argv += ["--endpoint", f"{base}/v2.1/{fake.project_id}", "--json", *FAST]
        argv += ["--checkpoint", "50%", "--checkpoint-delay", "600"]
        env = {**os.environ, "OS_TOKEN": fake.token}
        proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + 60
            while not all(fake.truth(sid).status == "ACTIVE" and fake.rebuilds_accepted(sid)
                          for sid in ids[:2]):  # fmt: skip
                assert time.monotonic() < deadline, "the first half was never rebuilt"
                time.sleep(0.05)
            time.sleep(0.3)  # the CLI sees them done and pauses (or is about to)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130, err
    assert posts(fake) == 2  # nothing was sent past the checkpoint
    assert "interrupted: 2 of 4 rebuilds had been submitted" in err
    assert fake.token not in out + err


def test_without_the_live_display_phase_changes_are_lines_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    slow = FakeCompute(time_scale=50.0, rebuild_seconds=50.0)  # each rebuild: 1 s
    canary = slow.add_server(name="canary", fail_image=NEW)
    rest = slow.add_servers(2)
    code = run(rebuild(slow, canary, *rest, "--canary", "1", "--max-failures", "3"), slow)
    err = capsys.readouterr().err
    assert code == 1
    assert "rollout: canary · failure budget left: 3\n" in err
    assert f"rollout stopped: canary {canary} did not pass\n" in err
