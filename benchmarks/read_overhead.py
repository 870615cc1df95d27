"""What the library adds to one request: client CPU per server read, ``get_server`` against a
bare aiohttp GET of the same server, on the aiohttp fake of Nova, in the same run.

    python -m benchmarks.read_overhead [--reads 3000] [--runs 3]

Reads are sequential (one in flight), after a warm-up, so that the figure is the CPU of one
request and its answer, not of queueing. Both clients send the token and the microversion
header; the bare GET reads the body and parses nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import aiohttp
import anyio

from ecs_rebuild_async import AsyncEcsClient, TokenAuth

from .run import fake_service

_WARMUP = 50


async def _bare(fake: dict[str, Any], reads: int) -> float:
    url = f"{fake['compute_url']}/servers/{fake['servers'][0]}"
    headers = {"X-Auth-Token": fake["token"], "OpenStack-API-Version": "compute 2.90"}
    async with aiohttp.ClientSession() as session:
        for _ in range(_WARMUP):
            async with session.get(url, headers=headers) as answer:
                await answer.read()
        started = time.process_time()
        for _ in range(reads):
            async with session.get(url, headers=headers) as answer:
                await answer.read()
        return (time.process_time() - started) / reads


async def _ours(fake: dict[str, Any], reads: int) -> float:
    server_id = fake["servers"][0]
    async with AsyncEcsClient(fake["compute_url"], auth=TokenAuth(fake["token"])) as ecs:
        for _ in range(_WARMUP):
            await ecs.get_server(server_id)
        started = time.process_time()
        for _ in range(reads):
            await ecs.get_server(server_id)
        return (time.process_time() - started) / reads


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    cfg = parser.parse_args(argv)
    results: dict[str, list[float]] = {"bare aiohttp GET": [], "ecs.get_server": []}
    with fake_service(8, 0.0, "aiohttp Nova") as fake:
        for _ in range(cfg.runs):
            results["bare aiohttp GET"].append(anyio.run(_bare, fake, cfg.reads))
            results["ecs.get_server"].append(anyio.run(_ours, fake, cfg.reads))
    bare = statistics.median(results["bare aiohttp GET"])
    print(f"{cfg.reads:,} sequential reads, {cfg.runs} runs each, alternating")
    print("| client | µs CPU per read | vs bare aiohttp |")
    print("| --- | --- | --- |")
    for name, values in results.items():
        median = statistics.median(values)
        spread = f"{min(values) * 1e6:.0f}-{max(values) * 1e6:.0f}"
        print(f"| {name} | {median * 1e6:.0f} ({spread}) | {median / bare:.2f}x |")


if __name__ == "__main__":
    main()
