"""The public reference samples copied into tests/conformance, for the tests to read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONFORMANCE = Path(__file__).parent / "conformance"


def load_sample(relative: str) -> Any:
    """Read one JSON sample copied from the public references into tests/conformance."""
    return json.loads((CONFORMANCE / relative).read_text())
