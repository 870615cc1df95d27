"""The command line as a process: a closed standard output, an unreachable service, demo's
JSON. Run as subprocesses, since these are about exit statuses and pipes."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

SERVER = "a0a80a94-3d81-4a10-822a-daa0cf9e870b"
IMAGE = "70a5e0a4-0000-4000-8000-00000000000b"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ecs_rebuild_async", *args]


def _env(**extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "HUAWEICLOUD_"))}
    return {**keep, **extra}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served() -> Iterator[dict[str, Any]]:
    """Four servers whose rebuilds take 30 fake seconds at 60x: half a second each."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecs_rebuild_async.testing", "serve", "--servers", "4",
         "--rebuild-seconds", "30", "--time-scale", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        yield json.loads(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _read_one_line_then_close(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """What ``argv | head -1`` does: read a line, close the pipe, wait for the end."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        first = proc.stdout.readline().decode()
        proc.stdout.close()
        err = proc.stderr.read().decode()
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, first, err


def test_a_closed_output_ends_a_rebuild_like_ctrl_c_without_a_traceback(
    served: dict[str, Any],
) -> None:
    ids = [served["servers"][f"server-{n}"] for n in range(4)]
    argv = _cli("rebuild", *ids, "--image", IMAGE, "--endpoint", served["compute_url"],
                "--json", "--concurrency", "1", "--poll-interval", "0.05")  # fmt: skip

    code, first, err = _read_one_line_then_close(argv, _env(OS_TOKEN=served["token"]))

    assert json.loads(first)["kind"] == "ok"
    assert code == 141, err
    assert "Traceback" not in err
    assert "Exception ignored" not in err
    assert re.search(r"output closed: \d of 4 rebuilds had been submitted", err), err


def test_a_closed_output_ends_a_dry_run_without_a_traceback() -> None:
    ids = [f"{n:08x}-3d81-4a10-822a-daa0cf9e870b" for n in range(3000)]
    argv = _cli("rebuild", *ids, "--image", IMAGE, "--endpoint", "https://ecs.example.com/v2.1/p",
                "--token", "t", "--microversion", "2.60", "--dry-run", "--json")  # fmt: skip

    code, first, err = _read_one_line_then_close(argv, _env())

    assert json.loads(first)["server_id"] == ids[0]
    assert code == 141, err
    assert "Traceback" not in err
    assert "Exception ignored" not in err


def test_an_unreachable_endpoint_exits_3_at_once_naming_what_happened() -> None:
    endpoint = f"http://127.0.0.1:{_free_port()}/v2.1/abc"
    started = time.monotonic()

    done = subprocess.run(
        _cli("rebuild", SERVER, "--image", IMAGE, "--endpoint", endpoint, "--token", "t"),
        env=_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("ecs-rebuild: error: cannot reach the service: ")
    assert "connection refused" in done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert time.monotonic() - started < 20  # one try, not six with back-off


def test_demo_json_writes_one_line_per_server_on_stdout() -> None:
    done = subprocess.run(
        _cli("demo", "--json", "--servers", "5", "--duration", "0.2", "--fail-rate", "0",
             "--seed", "1"),
        env=_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0, done.stderr
    assert len(records) == 5
    assert all(record["kind"] == "ok" and record["name"] for record in records)
    assert "outcomes are the truth" in done.stderr
