"""One fleet size, this checkout against another, side by side: client CPU and its garbage
collector's share, wall time and status requests, runs alternating between the two.

    python -m benchmarks.fleet_before_after --before ../older-checkout --servers 10000 \\
        --rebuild-seconds 40 --runs 2

Each run is a fresh aiohttp fake of Nova and a fresh worker (``benchmarks._worker``) whose
library is the given checkout's, as in ``benchmarks.run``'s scenario 5.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from .run import ROOT, fake_service, worker


def _one(root: Path, servers: int, rebuild_seconds: float) -> dict[str, Any]:
    job = {"scenario": "bulk", "lib": "ours", "transport": "aiohttp", "interval": 2.0,
           "first_delay": 1.0}  # fmt: skip
    with fake_service(servers, rebuild_seconds, "aiohttp Nova") as fake:
        return worker({**job, "fake": fake}, root=root)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the other checkout")
    parser.add_argument("--servers", type=int, default=10_000)
    parser.add_argument("--rebuild-seconds", type=float, default=40.0)
    parser.add_argument("--runs", type=int, default=2)
    cfg = parser.parse_args(argv)
    rows: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    for _ in range(cfg.runs):
        for name, root in (("before", cfg.before.resolve()), ("after", ROOT)):
            rows[name].append(_one(root, cfg.servers, cfg.rebuild_seconds))
    print(f"{cfg.servers:,} servers, {cfg.rebuild_seconds:g} s rebuilds, {cfg.runs} runs each")
    print("| checkout | CPU s | of it GC s | wall s | status requests | ok |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, results in rows.items():
        cpu = [r["cpu"] for r in results]
        gc = [r["gc"] for r in results]
        wall = [r["wall"] for r in results]
        status = [r["counts"].get("GET list", 0) for r in results]
        print(
            f"| {name} | {statistics.median(cpu):.2f} ({min(cpu):.2f}-{max(cpu):.2f}) "
            f"| {statistics.median(gc):.2f} | {statistics.median(wall):.2f} "
            f"| {statistics.median(status):.0f} | {min(r['ok'] for r in results):,} |"
        )


if __name__ == "__main__":
    main()
