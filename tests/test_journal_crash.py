"""Crash test: a real process drives 300 servers on the fake served by another process, and is
killed with SIGKILL at seeded random moments, 20 times, each time resumed. At the end every
server has exactly one outcome, the fake accepted no rebuild twice, and the outcomes are the
fake's truth. With lost answers and 5xx injected into the rebuilds too.

The kill points are drawn (seeded) as a number of journal records the process must have
written since it started, so that each kill lands in the middle of a run whatever the speed
of the machine; what is asserted does not depend on where they land.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from served_fake import fake_record, served_fake

from ecs_rebuild_async.cli import main

SERVERS = 300
KILLS = 20
# Bound on one process's life before it is killed anyway (it is killed long before).
ROUND_SECONDS = 20.0


def _events_written(journal: Path) -> int:
    """Records in the journal so far (0 before the run is created); read-only."""
    if not journal.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=1.0)
        try:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0  # not created yet


def _driver(command: list[str], ready: dict[str, Any]) -> subprocess.Popen[bytes]:
    connection = ["--endpoint", ready["compute_url"], "--token", ready["token"]]
    return subprocess.Popen(
        [sys.executable, "-m", "ecs_rebuild_async", *command, *connection, "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _drive_and_kill(
    command: list[str], ready: dict[str, Any], journal: Path, rng: random.Random
) -> bool:
    """Run the driver until it has written a drawn number of records, then SIGKILL it.
    True if it was killed, False if it finished first."""
    start = _events_written(journal)
    # About three records a server (intent, acceptance, outcome): twenty kills spread over
    # the first half of the run or so, each after a drawn amount of progress, so that the run
    # cannot end before it was killed twenty times (retries and reconciliation add records).
    target = start + rng.randint(1, 3 * SERVERS // KILLS)
    proc = _driver(command, ready)
    deadline = time.monotonic() + ROUND_SECONDS
    while proc.poll() is None and time.monotonic() < deadline:
        if _events_written(journal) >= target:
            break
        time.sleep(0.02)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def _audit(journal: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["journal", "show", str(journal), "--json"]) == 0
    record: dict[str, Any] = json.loads(capsys.readouterr().out)
    return record


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param([], id="clean"),
        pytest.param(
            ["--fault", "rebuild:lost:0.08", "--fault", "rebuild:500:0.08"], id="lost-and-5xx"
        ),
    ],
)
# Twenty-two processes started one after another: on a loaded machine this takes minutes.
@pytest.mark.timeout(900)
def test_killed_twenty_times_every_server_rebuilt_once_and_truly_reported(
    tmp_path: Path,
    faults: list[str],
    capsys: pytest.CaptureFixture[str],
    figures: list[str],
) -> None:
    rng = random.Random(1800 + len(faults))
    serve = ["--servers", str(SERVERS), "--time-scale", "20", "--seed", "18", *faults]
    with served_fake(serve) as ready:
        ids = [ready["servers"][f"server-{i}"] for i in range(SERVERS)]
        id_file = tmp_path / "ids.txt"
        id_file.write_text("\n".join(ids) + "\n")
        journal = tmp_path / "rollout.sqlite"
        image = ready["images"]["ubuntu-24.04"]
        rebuild = [
            "rebuild",
            "--image",
            image,
            "--from-file",
            str(id_file),
            "--journal",
            str(journal),
            "--concurrency",
            "50",
            "--poll-interval",
            "0.05",
            "--reconcile-settle",
            "0.1",
        ]
        resume = ["resume", str(journal), "--poll-interval", "0.05", "--reconcile-settle", "0.1"]
        kills = 0
        for round_ in range(KILLS + 10):
            # A run is continued either way: the same command again, or `resume`.
            command = resume if round_ % 2 and _events_written(journal) else rebuild
            if _drive_and_kill(command, ready, journal, rng):
                kills += 1
            if kills == KILLS:
                break
        assert kills == KILLS
        last = _driver(resume, ready)
        _, err = last.communicate(timeout=120)
        assert last.returncode in (0, 1), err.decode()

        audit = _audit(journal, capsys)
        record = fake_record(ready)

    servers = {entry["server_id"]: entry for entry in audit["servers"]}
    assert list(servers) == ids
    for server_id in ids:
        entry, truth = servers[server_id], record["servers"][server_id]
        outcome = entry["outcome"]
        assert outcome is not None, f"{server_id} has no outcome"
        assert entry["outcomes_recorded"] == 1, f"{server_id} has {entry['outcomes_recorded']}"
        # At most once, across 21 processes.
        assert truth["rebuilds"] <= 1, f"{server_id} was rebuilt {truth['rebuilds']} times"
        if outcome["kind"] == "ok":
            assert truth["rebuilds"] == 1
            assert truth["status"] == "ACTIVE"
            assert truth["image_id"] == image
        else:
            # Only a rebuild refused twice by a 5xx ends otherwise: never carried out.
            assert faults, f"{server_id} ended {outcome}"
            assert outcome["kind"] == "error", outcome
            assert truth["rebuilds"] == 0
        # Every request id the journal has for the server is one the fake accepted it with.
        accepted_ids = {
            sent["request_id"]
            for sent in entry["requests"]
            if sent["result"] == "accepted" and sent["request_id"]
        }
        assert accepted_ids <= set(truth["rebuild_request_ids"])
    reconciled = sum(
        any(sent.get("detail") == "reconciled" for sent in entry["requests"])
        for entry in servers.values()
    )
    retried = sum(len(entry["requests"]) > 1 for entry in servers.values())
    figures.append(
        f"crash test ({'faults' if faults else 'clean'}): {KILLS} SIGKILLs; {retried} servers "
        f"with a second attempt after the first was proven not carried out, {reconciled} "
        f"acceptances found by reconciliation; {audit['run']['requests_sent']} attempts "
        f"written for {SERVERS} servers"
    )
    if faults:
        assert record["faults"].get("lost", 0) > 0
        assert record["faults"].get("500", 0) > 0


def _rollback_intents(journal: Path) -> int:
    """Rebuilds back announced in the journal so far; read-only."""
    if not journal.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=1.0)
        try:
            query = (
                "SELECT count(*) FROM events WHERE kind = 'intent' "
                """AND record LIKE '%"phase":"rollback"%'"""
            )
            return int(conn.execute(query).fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def test_killed_while_rolling_back_each_server_is_rolled_back_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], figures: list[str]
) -> None:
    """A rollout stops on its budget and rolls back; its process is killed three times during
    the rollback (once a drawn number of rebuilds back is announced), each time resumed."""
    rng = random.Random(18_003)
    fleet = 20
    serve = ["--servers", str(fleet), "--time-scale", "40", "--seed", "5", "--dialect", "nova"]
    serve += ["--fault", "rebuild:lost:0.1"]  # some rebuilds back are in doubt when killed
    with served_fake(serve) as ready:
        # The failing server comes after 10 others: it stops the rollout, which then rolls
        # back those it had rebuilt (and, in flight then, a few more).
        ids = [ready["servers"][f"server-{i}"] for i in range(fleet)]
        ids.insert(10, ready["servers"]["server-fails"])
        journal = tmp_path / "rollout.sqlite"
        rebuild = [
            "rebuild", *ids, "--image", ready["images"]["ubuntu-24.04"],
            "--journal", str(journal), "--concurrency", "4", "--max-failures", "0",
            "--rollback", "--dialect", "nova", "--poll-interval", "0.05",
            "--reconcile-settle", "0.1",
        ]  # fmt: skip
        resume = ["resume", str(journal), "--poll-interval", "0.05", "--reconcile-settle", "0.1"]
        kills, announced = 0, 0
        for round_ in range(3):
            # Killed once a drawn number more of rebuilds back is announced (they are eleven
            # to fourteen in all): in the middle of the rollback, whatever the machine's speed.
            announced += rng.randint(1, 3)
            proc = _driver(rebuild if round_ == 0 else resume, ready)
            deadline = time.monotonic() + ROUND_SECONDS
            while proc.poll() is None and time.monotonic() < deadline:
                if _rollback_intents(journal) >= announced:
                    break
                time.sleep(0.01)
            assert proc.poll() is None, "the run ended before it was killed"
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        last = _driver(resume, ready)
        _, err = last.communicate(timeout=120)
        assert last.returncode == 1, err.decode()  # a rollout stopped is not a success

        audit = _audit(journal, capsys)
        record = fake_record(ready)

    old = record["servers"][ids[-1]]["image_id"]  # the last server was never started
    servers = {entry["server_id"]: entry for entry in audit["servers"]}
    assert list(servers) == ids
    kinds: dict[str, int] = {}
    for server_id in ids:
        entry, truth = servers[server_id], record["servers"][server_id]
        outcome = entry["outcome"]
        kinds[outcome["kind"]] = kinds.get(outcome["kind"], 0) + 1
        assert entry["outcomes_recorded"] == 1, entry
        # At most once forward and once back, across four processes.
        assert truth["rebuilds"] <= 2, f"{server_id} was rebuilt {truth['rebuilds']} times"
        if outcome["kind"] == "rolled_back":
            assert truth["rebuilds"] == 2
            assert (truth["image_id"], truth["status"]) == (old, "ACTIVE")
        elif outcome["kind"] == "rollback_failed":
            # The server whose rebuilds fail: its rebuild back failed too.
            assert server_id == ready["servers"]["server-fails"]
            assert truth["status"] == "ERROR"
        else:
            assert outcome["kind"] == "skipped", outcome
            assert outcome["reason"] == "not started: 1 failure, more than max_failures (0)"
            assert truth["rebuilds"] == 0
        accepted_ids = {
            sent["request_id"]
            for sent in entry["requests"]
            if sent["result"] == "accepted" and sent["request_id"]
        }
        assert accepted_ids <= set(truth["rebuild_request_ids"])
    assert kinds["rolled_back"] >= 10
    assert kills == 3
    back = [sent for entry in servers.values() for sent in entry["requests"]]
    back = [sent for sent in back if sent["phase"] == "rollback"]
    figures.append(
        f"crash test (rollback): {kills} SIGKILLs while rolling back; "
        f"{kinds['rolled_back']} servers rolled back once each, {len(back)} rebuilds back "
        f"written, {sum(sent.get('detail') == 'reconciled' for sent in back)} found by "
        "reconciliation"
    )
    changes = [entry["change"] for entry in audit["rollout"]]
    assert changes[:3] == ["began", "phase", "phase"]  # rolling; stopped; rolling back
    assert audit["rollout"][-1]["rollback_finished"] == audit["rollout"][-1]["rollback_total"]
