"""Shared fixtures: every async test runs under both asyncio and trio."""

from __future__ import annotations

from typing import Any

import pytest


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
