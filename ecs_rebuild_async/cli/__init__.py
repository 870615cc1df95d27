"""The ``ecs-rebuild`` command line, over the library's public API.

The parts, one job each: ``main`` (parsing and dispatch), ``config`` (the client and request
from options, files and the environment), ``run`` (driving a bulk run and its interruption),
``output`` (JSON lines, summaries, dry runs), ``display`` (the live progress) and ``demo`` (the
built-in fake service run). The library never imports this package.
"""

from __future__ import annotations

from .main import build_parser, main

__all__ = ["build_parser", "main"]
