"""``python -m ecs_rebuild_async``: the ``ecs-rebuild`` command line."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
