"""The fake compute service in a separate process on loopback, for tests whose client dies."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx


@contextmanager
def served_fake(args: Sequence[str]) -> Iterator[dict[str, Any]]:
    """``python -m ecs_rebuild_async.testing serve ARGS``: yields its ready line (parsed)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecs_rebuild_async.testing", "serve", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, "the fake did not start"
        yield json.loads(line)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def fake_record(ready: dict[str, Any]) -> dict[str, Any]:
    """What the served fake has done (``GET /_fake/record``)."""
    answer = httpx.get(ready["record_url"], timeout=10)
    answer.raise_for_status()
    record: dict[str, Any] = answer.json()
    return record
