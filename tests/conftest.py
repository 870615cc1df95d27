"""Shared fixtures: every async test runs under both asyncio and trio."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

CONFORMANCE = Path(__file__).parent / "conformance"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def load_sample(relative: str) -> Any:
    """Read one JSON sample copied from the public references into tests/conformance."""
    return json.loads((CONFORMANCE / relative).read_text())
