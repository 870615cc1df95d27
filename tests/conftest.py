"""Shared fixtures: every async test runs under both asyncio and trio."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run (a red CI is then a real, reproducible
# failure, not a lucky draw); HYPOTHESIS_PROFILE=explore draws new ones.
settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


_FIGURES: list[str] = []


@pytest.fixture
def figures() -> list[str]:
    """Lines a test wants shown in the run's summary (counts from the soak, for example)."""
    return _FIGURES


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Under pytest-xdist each worker hands its figures to the controller, which shows them all.
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["figures"] = list(_FIGURES)


def pytest_testnodedown(node: Any, error: object) -> None:  # a pytest-xdist hook
    _FIGURES.extend(getattr(node, "workeroutput", {}).get("figures", []))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        terminalreporter.section("figures")
        for line in sorted(_FIGURES):
            terminalreporter.write_line(line)
