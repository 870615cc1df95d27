"""The README's example of a user's own test, run as written (kept in sync by this test)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _example(marker: str) -> str:
    text = README.read_text()
    match = re.search(rf"<!-- {marker} -->\s*```python\n(.*?)```", text, re.DOTALL)
    assert match, f"README has no example marked {marker}"
    return match.group(1)


@pytest.mark.anyio
async def test_the_readme_user_test_example_passes() -> None:
    namespace: dict[str, object] = {}
    exec(compile(_example("example-user-test"), "README.md", "exec"), namespace)
    test = namespace["test_my_orchestrator_rebuilds_the_fleet"]
    await test()  # type: ignore[operator]  # the example defines an async test function


def test_the_readme_observability_example_runs() -> None:
    # Its own assertions check the span tree; it runs in this process, where the telemetry
    # tests may already have set the global providers (the example adds to them).
    exec(compile(_example("example-observability"), "README.md", "exec"), {})
