"""A user's script over the whole public API passes ``mypy --strict``; a mistyped keyword is a
type error, not a surprise at run time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parent.parent / "examples" / "rebuild_fleet.py"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache for the module: the library is checked once, not once per test."""
    return tmp_path_factory.mktemp("mypy-cache")


def _mypy(path: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--cache-dir",
         str(cache), str(path)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def test_the_example_script_passes_mypy_strict_and_runs(cache: Path) -> None:
    checked = _mypy(EXAMPLE, cache)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    ran = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert "3 ok of 3" in ran.stdout


MISTYPED = [
    'AsyncEcsClient.from_env({}, microversoin="2.60")',
    'AsyncEcsClient.from_cloud("lab", regoin="eu-de")',
    "AsyncEcsClient.from_env({}, verify=3)",
]


def test_a_mistyped_keyword_is_a_type_error(tmp_path: Path, cache: Path) -> None:
    # One mypy run over one user script per mistake: a cold mypy costs seconds of CPU.
    for number, line in enumerate(MISTYPED):
        script = tmp_path / f"user_{number}.py"
        script.write_text(f"from ecs_rebuild_async import AsyncEcsClient\n\n{line}\n")

    checked = _mypy(tmp_path, cache)

    assert checked.returncode == 1
    for number, line in enumerate(MISTYPED):
        assert f"user_{number}.py:3: error:" in checked.stdout, (line, checked.stdout)
