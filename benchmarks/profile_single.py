"""Profiles of one rebuild-and-wait after another, for this checkout and (optionally) another.

``python -m benchmarks.profile_single [--root OTHER_CHECKOUT] [--ops 200]`` profiles our client
(aiohttp transport) on both fakes with cProfile and prints the top functions by own time, with
the requests per operation and the CPU per operation measured without the profiler. ``--root``
runs the same jobs against the library in another checkout (say, the previous release
unpacked with ``git archive``), so the two profiles come from the same harness and moment.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.run import ROOT, fake_service, worker

FAKES = (("FakeCompute", 0.02), ("aiohttp Nova", 0.0))


def profile(root: Path, ops: int, interval: float) -> str:
    parts = []
    for fake_name, rebuild in FAKES:
        job = {"scenario": "single", "lib": "ours", "transport": "aiohttp", "ops": ops,
               "interval": interval}  # fmt: skip
        with fake_service(8, rebuild, fake_name) as fake:
            plain = worker({**job, "fake": fake}, root)
        with fake_service(8, rebuild, fake_name) as fake:
            profiled = worker({**job, "fake": fake, "profile": True}, root)
        counts = {k: v / ops for k, v in plain["counts"].items() if not k.startswith("poll_")}
        parts.append(
            f"#### {fake_name}: {plain['cpu'] / ops * 1000:.2f} ms CPU / op without the "
            f"profiler, requests / op {counts}\n\n```\n{profiled['profile']}```\n"
        )
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_single")
    parser.add_argument("--root", type=Path, default=None, help="another checkout to profile")
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.02)
    args = parser.parse_args()
    if args.root is not None:
        print(f"### Before (the library in {args.root.name})\n")
        print(profile(args.root.resolve(), args.ops, args.interval))
    print("### This checkout\n")
    print(profile(ROOT, args.ops, args.interval))
    return 0


if __name__ == "__main__":
    sys.exit(main())
