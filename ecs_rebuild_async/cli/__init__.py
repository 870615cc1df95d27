"""The ``ecs-rebuild`` command line, over the library's public API.

The parts, one job each: ``parse`` (the arguments, as option groups), ``main`` (the commands
and exit statuses), ``config`` (the client and request from options, files and the
environment), ``targets`` (servers and images by id or name), ``run`` (driving a bulk run and
its interruption), ``output`` (result records, formats, summaries), ``dryrun`` (the checks and
requests of a dry run), ``display`` (the live progress) and ``demo`` (the built-in fake
service run). The library never imports this package.
"""

from __future__ import annotations

from .main import main
from .parse import build_parser

__all__ = ["build_parser", "main"]
