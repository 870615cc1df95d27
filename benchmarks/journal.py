"""The cost of a journal: a fleet rebuild with and without ``journal=``, side by side, and a
journaled rollout (a canary, a failure budget and a checkpoint), gone through or stopped at
its checkpoint and rolled back.

Run ``.venv/bin/python -m benchmarks.journal`` (``--servers 1000 --runs 3`` by default; add
``--concurrency 50``; ``--no-rollout`` for the first two rows only). The same loopback fake in
its own process and a fresh worker process per measurement as ``benchmarks.run`` (scenario 2),
runs interleaved. Prints the wall time, the client's CPU time and the journal records written
per server.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .run import fmt, measure


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.journal", description=__doc__)
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=0, help="0: every server at once")
    parser.add_argument("--rebuild-seconds", type=float, default=2.0)
    parser.add_argument("--no-rollout", action="store_true", help="skip the rollout rows")
    cfg = parser.parse_args(argv)
    rollout = {"canary": 10, "max_failures": 0.05, "checkpoints": [0.5]}
    kinds: dict[str, dict[str, object] | None] = {"no journal": None, "journal": None}
    if not cfg.no_rollout:
        kinds["journal, rollout"] = rollout
        kinds["journal, rollout stopped at 50 % and rolled back"] = {
            **rollout,
            "stop_at_checkpoint": True,
        }
    rows: dict[str, list[dict[str, object]]] = {name: [] for name in kinds}
    with tempfile.TemporaryDirectory() as folder:
        for run in range(cfg.runs):
            for number, (name, policy) in enumerate(kinds.items()):
                journal = str(Path(folder) / f"run-{run}-{number}.sqlite") if number else None
                job = {
                    "scenario": "bulk", "lib": "ours", "transport": "aiohttp", "interval": 2.0,
                    "first_delay": 2.0, "journal": journal, "concurrency": cfg.concurrency,
                    "rollout": policy,
                }  # fmt: skip
                rows[name].append(measure(job, cfg.servers, cfg.rebuild_seconds))
    n = cfg.servers
    print(
        f"{n:,} servers, rebuild {cfg.rebuild_seconds} s on the service, concurrency "
        f"{cfg.concurrency or n}, {cfg.runs} runs (median [min-max])\n"
    )
    print("| run | wall s | CPU s | CPU ms per server | journal records per server |")
    print("| --- | --- | --- | --- | --- |")
    for name, results in rows.items():
        walls = [float(r["wall"]) for r in results]  # type: ignore[arg-type]
        cpus = [float(r["cpu"]) for r in results]  # type: ignore[arg-type]
        records = [
            sum(v for k, v in r["counts"].items() if k.startswith("journal "))  # type: ignore[union-attr]
            / n
            for r in results
        ]
        first = results[0]["counts"]
        detail = ", ".join(
            f"{k.removeprefix('journal ')} {v / n:g}"
            for k, v in sorted(first.items())  # type: ignore[union-attr]
            if k.startswith("journal ")
        )
        print(
            f"| {name} | {fmt(walls)} | {fmt(cpus)} | {statistics.median(cpus) / n * 1000:.2f} "
            f"| {statistics.median(records):g} {f'({detail})' if detail else ''} |"
        )
    ok = {name: min(int(r["ok"]) for r in results) for name, results in rows.items()}  # type: ignore[call-overload]
    if any(v != n for v in ok.values()):
        print(f"\nnot every rebuild succeeded: {ok}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
