"""Benchmarks: ecs_rebuild_async side by side with openstacksdk on the same loopback fake.

Run ``.venv/bin/python -m benchmarks.run`` (add ``--quick`` for a short run, ``--profile`` to
append cProfile tops, ``--telemetry`` for OpenTelemetry in the workers). The fake service runs in
a process of its own, and every measurement runs in a fresh worker process, so that the client's
CPU time and memory are its own. Prints a table and writes it to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OURS = ("aiohttp", "httpx", "trio")  # transports: the default under asyncio, httpx's own, trio
# The project's fake (FakeCompute over TCP) and an independent one written for the benchmark.
FAKES = {"FakeCompute": "benchmarks._fakeproc", "aiohttp Nova": "benchmarks._novafake"}
# OpenTelemetry in a worker of ours: the extra absent (every opentelemetry import fails), its
# API with no provider configured (what a host without OpenTelemetry set up runs), or the SDK
# exporting every span and metric to the console.
TELEMETRY = {
    "absent": "the extra absent",
    "none": "API, no provider",
    "console": "SDK, console exporter",
}


@contextmanager
def fake_service(
    servers: int, rebuild_seconds: float, fake: str = "FakeCompute"
) -> Iterator[dict[str, Any]]:
    """The fake in its own process; after the block, ``info["service"]`` has its counters."""
    command = [
        sys.executable, "-m", FAKES[fake],
        "--servers", str(servers), "--rebuild-seconds", str(rebuild_seconds),
    ]  # fmt: skip
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        info: dict[str, Any] = json.loads(proc.stdout.readline())
        yield info
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    if out.strip():
        info["service"] = json.loads(out.strip().splitlines()[-1])


def worker(job: dict[str, Any], root: Path = ROOT) -> dict[str, Any]:
    """Run one job in a fresh worker process; ``root`` is the checkout whose library it uses."""
    command = [sys.executable, "-m", "benchmarks._worker"]
    done = subprocess.run(
        command, cwd=root, input=json.dumps(job), capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"worker failed ({job['scenario']}/{job.get('lib')}):\n{done.stderr}")
    if job.get("echo"):
        sys.stderr.write(done.stderr)  # the spans and metrics the worker exported, for a look
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(
    job: dict[str, Any], servers: int, rebuild_seconds: float, fake_name: str = "FakeCompute"
) -> dict[str, Any]:
    with fake_service(servers, rebuild_seconds, fake_name) as fake:
        result = worker({**job, "fake": fake})
    result["service"] = fake.get("service", {})
    return result


# -- statistics and formatting -------------------------------------------------------------


def stat(values: Sequence[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def fmt(values: Sequence[float], unit: str = "", digits: int = 2) -> str:
    med, lo, hi = stat(values)
    if len(values) == 1:
        return f"{med:.{digits}f}{unit}"
    return f"{med:.{digits}f}{unit} ({lo:.{digits}f}-{hi:.{digits}f})"


def counts_text(counts: dict[str, float]) -> str:
    keys = ("POST action", "GET server", "GET list", "GET versions", "GET other")
    return ", ".join(f"{k} {counts[k]:g}" for k in keys if counts.get(k))


def median_counts(results: list[dict[str, Any]], per: float = 1.0) -> dict[str, float]:
    keys = {k for r in results for k in r["counts"]}
    return {k: statistics.median(r["counts"].get(k, 0) for r in results) / per for k in keys}


def otel(cfg: argparse.Namespace, lib: str) -> dict[str, Any]:
    """A job's OpenTelemetry: for ours, the one mode given (several are compared in scenario 1
    alone; the other scenarios then run with the default)."""
    if lib == "sdk":
        return {}
    mode = cfg.telemetry[0] if len(cfg.telemetry) == 1 else "none"
    return {"telemetry": mode, "echo": mode == "console"}


def label(lib: str, transport: str | None) -> str:
    if lib == "sdk":
        return "openstacksdk"
    if lib == "ours-reuse":
        return f"ecs_rebuild_async ({transport}, before=)"
    if lib == "ours-at-once":
        return f"ecs_rebuild_async ({transport}, first read at once)"
    return f"ecs_rebuild_async ({transport})"


# -- scenarios -----------------------------------------------------------------------------


def scenario_telemetry(cfg: argparse.Namespace, out: list[str]) -> dict[str, Any]:
    """Scenario 1 with several OpenTelemetry modes: our default client once per mode on each
    fake, interleaved run by run; each mode's CPU against the extra absent, run by run."""
    ops, runs, interval, modes = cfg.single_ops, cfg.runs, cfg.single_interval, cfg.telemetry
    setups = [("FakeCompute", cfg.single_rebuild), ("aiohttp Nova", 0.0)]
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {
        (fake, mode): [] for fake, _ in setups for mode in modes
    }
    for _ in range(runs):
        for fake, rebuild in setups:
            for mode in modes:
                job = {"scenario": "single", "lib": "ours", "transport": "aiohttp", "ops": ops,
                       "interval": interval, "telemetry": mode}  # fmt: skip
                rows[fake, mode].append(measure(job, 8, rebuild, fake))
    base = "absent" if "absent" in modes else modes[0]
    out.append(
        f"### 1. One rebuild and wait, with and without OpenTelemetry\n\n"
        f"ecs_rebuild_async (aiohttp), as in scenario 1: on FakeCompute the rebuild lasts "
        f"{cfg.single_rebuild} s, on the aiohttp fake of Nova it is instant; poll interval "
        f"{interval} s. OpenTelemetry in the worker: "
        + "; ".join(f"*{mode}*: {TELEMETRY[mode]}" for mode in modes)
        + f". {ops} operations per run, {runs} runs, the modes interleaved in each run; CPU is "
        "the client process's (all threads: the batch exporter's too, but for its last batch, "
        "flushed after the measured part). Median (min-max) over runs; the last column is the "
        f"ratio of the medians to *{base}*'s, with the range of the per-run ratios (each run's "
        "modes measured one after the other).\n"
    )
    out.append(
        f"| fake | OpenTelemetry | CPU ms / op | wall ms / op | requests / op | CPU vs {base} |"
    )
    out.append("| --- | --- | --- | --- | --- | --- |")
    summary: dict[str, Any] = {}
    for fake, _ in setups:
        base_cpu = [r["cpu"] / ops for r in rows[fake, base]]
        for mode in modes:
            results = rows[fake, mode]
            cpu = [r["cpu"] / ops * 1000 for r in results]
            wall = [r["wall"] / ops * 1000 for r in results]
            per_run = [c / 1000 / b for c, b in zip(cpu, base_cpu, strict=True)]
            ratio = statistics.median(cpu) / 1000 / statistics.median(base_cpu)
            summary[fake, mode] = {"ratio": ratio, "range": (min(per_run), max(per_run))}
            spread = f" ({min(per_run):.3f}-{max(per_run):.3f})" if mode != base else ""
            out.append(
                f"| {fake} | {mode} ({TELEMETRY[mode]}) | {fmt(cpu)} | {fmt(wall)} "
                f"| {counts_text(median_counts(results, ops))} | {ratio:.3f}x{spread} |"
            )
    out.append("")
    return {"telemetry": summary, "base": base}


def scenario_single(cfg: argparse.Namespace, out: list[str], profiles: list[str]) -> dict[str, Any]:
    if len(cfg.telemetry) > 1:
        return scenario_telemetry(cfg, out)
    ops, runs, interval = cfg.single_ops, cfg.runs, cfg.single_interval
    # (fake, rebuild seconds, configurations): the independent fake answers at once, as the
    # harness that first measured it did; FakeCompute's rebuild lasts one poll interval.
    setups = [
        (
            "FakeCompute",
            cfg.single_rebuild,
            [("ours", t) for t in OURS]
            + [("ours-reuse", "aiohttp"), ("ours-at-once", "aiohttp"), ("sdk", None)],
        ),
        (
            "aiohttp Nova",
            0.0,
            [
                ("ours", "aiohttp"),
                ("ours-reuse", "aiohttp"),
                ("ours-at-once", "aiohttp"),
                ("sdk", None),
            ],
        ),
    ]
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {
        (fake, label(*c)): [] for fake, _, configs in setups for c in configs
    }
    for _ in range(runs):  # interleaved, so that load from other work hits every config alike
        for fake, rebuild, configs in setups:
            for lib, transport in configs:
                job = {"scenario": "single", "lib": lib.split("-")[0],
                       "reuse": lib == "ours-reuse", "transport": transport, "ops": ops,
                       "interval": interval, **otel(cfg, lib)}  # fmt: skip
                if lib == "ours-at-once":
                    job["first_delay"] = 0.0  # openstacksdk's schedule: read at once
                rows[fake, label(lib, transport)].append(measure(job, 8, rebuild, fake))
    out.append(
        f"### 1. One rebuild and wait\n\n"
        f"On FakeCompute the rebuild lasts {cfg.single_rebuild} s; on the independent aiohttp "
        f"fake of Nova it is instant (the next read shows ACTIVE). Poll interval {interval} s "
        "for both clients. openstacksdk: `conn.compute.rebuild_server(...)` then "
        "`conn.compute.wait_for_server(...)`, which reads at once, then every interval. Every "
        "rebuild is to a new image. Our first read comes one interval after the 202 "
        "(`poll_first_delay` = the interval), except in the *first read at once* rows, which "
        "read on openstacksdk's schedule: at once, then every interval. *before=*: each "
        "rebuild-and-wait is given the server its previous one on that server returned, in "
        "place of a read of its own. "
        f"{ops} operations per run, {runs} runs, interleaved; CPU is "
        "the client process's (all threads). Median (min-max) over runs; the ratio is of the "
        "medians, with the range of the per-run ratios.\n"
    )
    out.append(
        "| fake | client | CPU ms / op | wall ms / op | requests / op | CPU vs openstacksdk |"
    )
    out.append("| --- | --- | --- | --- | --- | --- |")
    summary = {}
    for fake, _, configs in setups:
        sdk_runs = [r["cpu"] / ops for r in rows[fake, "openstacksdk"]]
        sdk_cpu = statistics.median(sdk_runs)
        for lib, transport in configs:
            name = label(lib, transport)
            results = rows[fake, name]
            cpu = [r["cpu"] / ops * 1000 for r in results]
            wall = [r["wall"] / ops * 1000 for r in results]
            ratio = statistics.median(cpu) / 1000 / sdk_cpu
            per_run = [c / 1000 / s for c, s in zip(cpu, sdk_runs, strict=True)]
            summary[fake, name] = ratio
            spread = f" ({min(per_run):.2f}-{max(per_run):.2f})" if lib != "sdk" else ""
            out.append(
                f"| {fake} | {name} | {fmt(cpu)} | {fmt(wall)} "
                f"| {counts_text(median_counts(results, ops))} | {ratio:.2f}x{spread} |"
            )
    out.append("")
    if cfg.profile:
        for fake, rebuild, _ in setups:
            for lib, transport in (("ours", "aiohttp"), ("sdk", None)):
                job = {"scenario": "single", "lib": lib, "transport": transport, "ops": ops,
                       "interval": interval, "profile": True}  # fmt: skip
                result = measure(job, 8, rebuild, fake)
                profiles.append(
                    f"#### Scenario 1 on {fake}, {label(lib, transport)}\n\n"
                    f"```\n{result['profile']}```\n"
                )
    return summary


def scenario_bulk(cfg: argparse.Namespace, out: list[str], profiles: list[str]) -> dict[str, Any]:
    n, interval = cfg.bulk_servers, 2.0
    configs = [("ours", t) for t in OURS]
    rows: dict[str, list[dict[str, Any]]] = {label(*c): [] for c in configs}
    rows["openstacksdk"] = []
    for run in range(cfg.bulk_runs):
        for lib, transport in configs:
            job = {"scenario": "bulk", "lib": lib, "transport": transport, "interval": interval,
                   "first_delay": cfg.first_delay, **otel(cfg, lib)}  # fmt: skip
            rows[label(lib, transport)].append(measure(job, n, 2.0))
        if run < cfg.sdk_bulk_runs:
            job = {"scenario": "bulk", "lib": "sdk", "interval": interval, "threads": 50}
            rows["openstacksdk"].append(measure(job, n, 2.0))
    out.append(
        f"### 2. {n:,} servers, rebuild lasts 2 s on the service\n\n"
        f"ecs_rebuild_async: `rebuild_many(concurrency={n})`, `poll_interval=2`, "
        f"`poll_first_delay={cfg.first_delay}`. openstacksdk: 50 threads, each "
        "`rebuild_server` + `wait_for_server(interval=2)` per server (connection pool of 50). "
        "Requests counted at the client; the service's own counts agree (last column). "
        "Peak memory is the worker process's peak RSS (its RSS before the run in brackets).\n"
    )
    out.append(
        "| client | wall s | CPU s | requests (client) | status GETs | peak RSS MB | "
        "fake CPU s | service saw |"
    )
    out.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    summary: dict[str, Any] = {}
    for name, results in rows.items():
        if not results:
            continue
        counts = median_counts(results)
        status = counts.get("GET server", 0) + counts.get("GET list", 0)
        service = results[len(results) // 2]["service"].get("requests", {})
        seen = ", ".join(f"{k} {v}" for k, v in sorted(service.items()) if v)
        peak = [r["peak_rss"] / 2**20 for r in results]
        base = statistics.median(r["base_rss"] / 2**20 for r in results)
        fake_cpu = [r["service"].get("cpu", 0.0) for r in results]
        ok = min(r["ok"] for r in results)
        out.append(
            f"| {name} | {fmt([r['wall'] for r in results])} | {fmt([r['cpu'] for r in results])} "
            f"| {counts_text(counts)} | {status:g} | {fmt(peak, digits=0)} [{base:.0f}] "
            f"| {fmt(fake_cpu, digits=1)} | {seen} |"
        )
        summary[name] = {
            "wall": statistics.median(r["wall"] for r in results),
            "cpu": statistics.median(r["cpu"] for r in results),
            "status": status,
            "ticks": statistics.median(r["counts"].get("poll_ticks", 0) for r in results),
            "ok": ok,
        }
    out.append("")
    for name, s in summary.items():
        if s["ok"] != n:
            out.append(f"- {name}: only {s['ok']} of {n} rebuilds succeeded in some run.")
    out.append("")
    if cfg.profile:
        job = {"scenario": "bulk", "lib": "ours", "transport": "aiohttp", "interval": interval,
               "first_delay": cfg.first_delay, "profile": True}  # fmt: skip
        result = measure(job, n, 2.0)
        profiles.append(
            f"#### Scenario 2, ecs_rebuild_async (aiohttp)\n\n```\n{result['profile']}```\n"
        )
    return summary


def _latencies(result: dict[str, Any]) -> list[float]:
    """Seconds from each server's completion at the service to its outcome at the client."""
    done = result["service"].get("done", {})
    return [ended - done[sid] for sid, ended in result["ended"].items() if sid in done]


def _p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan")


def _fleet_row(results: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Per-run figures of a fleet: wall, service time, overhead, CPU, requests, memory, latency."""
    keys = ("wall", "service", "submit", "beyond", "cpu", "cpu_per", "status", "mem", "lat50",
            "lat99", "ok")  # fmt: skip
    row: dict[str, list[float]] = {k: [] for k in keys}
    for r in results:
        done = r["service"].get("done", {})
        last = max(done.values()) if done else r["started"]
        n = max(len(r["ended"]), 1)
        latencies = _latencies(r)
        row["wall"].append(r["wall"])
        row["service"].append(last - r["started"])
        accepted = r["service"].get("accepted") or [r["started"], r["started"]]
        row["submit"].append(accepted[1] - r["started"])
        row["beyond"].append(r["started"] + r["wall"] - last)
        row["cpu"].append(r["cpu"])
        row["cpu_per"].append(r["cpu"] / n * 1000)
        row["status"].append(r["counts"].get("GET list", 0) + r["counts"].get("GET server", 0))
        row["mem"].append((r["peak_rss"] - r["base_rss"]) / 2**20)
        row["lat50"].append(statistics.median(latencies) if latencies else float("nan"))
        row["lat99"].append(_p99(latencies))
        row["ok"].append(r["ok"])
    return row


def scenario_fleets(cfg: argparse.Namespace, out: list[str], profiles: list[str]) -> dict[str, Any]:
    """Scaling with fleet size, and the shared listing's tick against detection latency."""
    sizes, runs, fake = cfg.fleet_sizes, cfg.fleet_runs, "aiohttp Nova"
    base = {"scenario": "bulk", "lib": "ours", "transport": "aiohttp", "interval": 2.0,
            "first_delay": cfg.first_delay, **otel(cfg, "ours")}  # fmt: skip
    ours: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
    sdk: dict[int, list[dict[str, Any]]] = {n: [] for n in cfg.fleet_sdk_sizes}
    ticks: dict[str, list[dict[str, Any]]] = {str(t): [] for t in cfg.fleet_ticks}
    tick_size = cfg.fleet_tick_size
    for run in range(runs):  # interleaved: every size and setting in each run
        for n in sizes:
            ours[n].append(measure(base, n, 2.0, fake))
        for tick in cfg.fleet_ticks:
            job = {**base, "fleet_interval": tick}
            ticks[str(tick)].append(measure(job, tick_size, 2.0, fake))
        if run < cfg.fleet_sdk_runs:
            for n in cfg.fleet_sdk_sizes:
                job = {"scenario": "bulk", "lib": "sdk", "interval": 2.0, "threads": 50}
                sdk[n].append(measure(job, n, 2.0, fake))
    out.append(
        f"### 5. Fleets from {sizes[0]:,} to {sizes[-1]:,} servers, on the aiohttp fake of Nova\n\n"
        "Each rebuild lasts 2 s on the service. ecs_rebuild_async: `rebuild_many(concurrency=N)`, "
        f"`poll_interval=2`, `poll_first_delay={cfg.first_delay}`, the shared listing's tick "
        "`fleet_poll_interval=1` (the default). openstacksdk: 50 threads of `rebuild_server` + "
        "`wait_for_server(interval=2)` (only the smaller fleets: it needs about 40 s per 1,000 "
        "servers). *Submitted by* is when the service accepted the last rebuild, from the start of "
        "the run. *Service time* runs from the start of the run to the last completion at "
        "the service (so it includes how fast the client submits); *beyond* is the wall time "
        "after that last completion. Status requests count every page. Memory is the peak RSS "
        "over the RSS before the run. *Latency* is from each server's completion at the "
        f"service to its outcome at the client (median, p99). {runs} runs, interleaved; "
        "median (min-max).\n"
    )
    out.append(
        "| client | servers | wall s | submitted by s | service time s | beyond s | CPU s "
        "| CPU ms / server | status requests | memory MB | latency p50 s | latency p99 s |"
    )
    out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    summary: dict[str, Any] = {"sizes": sizes, "ours": {}, "sdk": {}}
    for name, table in (("ecs_rebuild_async (aiohttp)", ours), ("openstacksdk", sdk)):
        key = "sdk" if name == "openstacksdk" else "ours"
        for n, results in table.items():
            if not results:
                continue
            row = _fleet_row(results)
            summary[key][n] = {k: statistics.median(v) for k, v in row.items()}
            summary[key][n]["cpu_range"] = (min(row["cpu"]), max(row["cpu"]))
            out.append(
                f"| {name} | {n:,} | {fmt(row['wall'])} | {fmt(row['submit'])} "
                f"| {fmt(row['service'])} "
                f"| {fmt(row['beyond'])} | {fmt(row['cpu'])} | {fmt(row['cpu_per'])} "
                f"| {fmt(row['status'], digits=0)} | {fmt(row['mem'], digits=0)} "
                f"| {fmt(row['lat50'])} | {fmt(row['lat99'])} |"
            )
            if min(row["ok"]) != n:
                out.append(f"| {name}: only {min(row['ok']):g} of {n} succeeded in some run |")
    out.append("")
    for n in cfg.fleet_sdk_sizes:
        if n in summary["sdk"] and n in summary["ours"]:
            o, s_ = summary["ours"][n], summary["sdk"][n]
            out.append(
                f"- {n:,} servers, ours / openstacksdk's: "
                f"wall {o['wall']:.2f} / {s_['wall']:.2f} s "
                f"({o['wall'] / s_['wall']:.2f}x), CPU {o['cpu']:.2f} / {s_['cpu']:.2f} s "
                f"({o['cpu'] / s_['cpu']:.2f}x), status requests {o['status']:g} / "
                f"{s_['status']:g} ({o['status'] / s_['status']:.3f}x), latency p50 "
                f"{o['lat50']:.2f} / {s_['lat50']:.2f} s."
            )
    out.append("")
    out.append(
        f"#### The shared listing's tick against detection latency ({tick_size:,} servers)\n\n"
        "`fleet_poll_interval`: None paces the listing by the waits' own intervals (2 s, "
        "growing by 1.2x), as before; a number ticks the listing at that interval while waits "
        "are in flight. One listing request (a page per 1,000 changed servers) per tick, "
        "however many servers it serves.\n"
    )
    out.append(
        "| fleet_poll_interval | wall s | beyond s | status requests | CPU s "
        "| latency p50 s | latency p99 s |"
    )
    out.append("| --- | --- | --- | --- | --- | --- | --- |")
    summary["ticks"] = {}
    for tick, results in ticks.items():
        row = _fleet_row(results)
        summary["ticks"][tick] = {k: statistics.median(v) for k, v in row.items()}
        out.append(
            f"| {tick} | {fmt(row['wall'])} | {fmt(row['beyond'])} "
            f"| {fmt(row['status'], digits=0)} | {fmt(row['cpu'])} | {fmt(row['lat50'])} "
            f"| {fmt(row['lat99'])} |"
        )
    out.append("")
    if cfg.plot:
        plot_fleets(summary, cfg.output.parent / "scaling.png")
        out.append("![Wall time, client CPU, status requests and memory against fleet size]"
                   "(scaling.png)\n")  # fmt: skip
    if cfg.profile:
        job = {**base, "profile": True}
        result = measure(job, sizes[-1], 2.0, fake)
        profiles.append(
            f"#### Scenario 5, {sizes[-1]:,} servers, ecs_rebuild_async (aiohttp)\n\n"
            f"```\n{result['profile']}```\n"
        )
    return summary


def plot_fleets(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("wall", "wall time (s)"),
        ("cpu", "client CPU (s)"),
        ("status", "status requests"),
        ("mem", "memory over baseline (MB)"),
    )
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for ax, (key, title) in zip(axes.flat, panels, strict=True):
        for name, series, marker in (
            ("ecs_rebuild_async", summary["ours"], "o-"),
            ("openstacksdk", summary["sdk"], "s--"),
        ):
            sizes = sorted(series)
            if sizes:
                ax.plot(sizes, [series[n][key] for n in sizes], marker, label=name)
        if key == "wall" and summary["ours"]:
            sizes = sorted(summary["ours"])
            ax.plot(sizes, [summary["ours"][n]["service"] for n in sizes], ":",
                    label="service time")  # fmt: skip
        ax.set_xscale("log")
        if key in ("status", "cpu", "wall"):
            ax.set_yscale("log")
        ax.set_xlabel("servers")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("rebuild_many against fleet size (2 s rebuilds, aiohttp fake of Nova)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def scenario_waits(cfg: argparse.Namespace, out: list[str], profiles: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    out.append(
        f"### 3. Waits in flight at once\n\n"
        f"ecs_rebuild_async: {cfg.waits:,} `wait_for_rebuild` tasks on one client (servers whose "
        "rebuild lasts an hour), measured once the shared poller has read them all, then "
        f"cancelled. openstacksdk: {cfg.sdk_waits:,} threads in `wait_for_server(interval=30)` "
        "(a thread each, as a thread pool would need). tracemalloc counts Python allocations; "
        "what spawning as many sleeping tasks in an anyio task group costs is measured apart "
        "and taken out for the library's own share. RSS delta adds what the allocator and thread "
        "stacks hold (and the freed listing pages that the allocator keeps). Median (min-max).\n"
    )
    out.append(
        "| client | waits | tracemalloc KB / wait | spawning a task KB | library's own KB / wait "
        "| RSS delta KB / wait | tasks left |"
    )
    out.append("| --- | --- | --- | --- | --- | --- | --- |")
    for lib, waits in (("ours", cfg.waits), ("sdk", cfg.sdk_waits)):
        job = {"scenario": "waits", "lib": lib, "transport": "aiohttp", "interval": 30.0,
               **otel(cfg, lib)}  # fmt: skip
        results = [measure(job, waits, 3600.0) for _ in range(cfg.wait_runs)]
        traced = [r["traced"] / r["waits"] / 1024 for r in results]
        spawn = [r["spawn"] / r["waits"] / 1024 for r in results]
        net = [(r["traced"] - r["spawn"]) / r["waits"] / 1024 for r in results]
        rss = [r["rss"] / r["waits"] / 1024 for r in results]
        left = results[-1]["tasks_left"]
        name = label(lib, "aiohttp")
        out.append(
            f"| {name} | {waits:,} | {fmt(traced)} | {fmt(spawn)} | {fmt(net)} | {fmt(rss)} "
            f"| {'-' if left is None else left} |"
        )
        summary[name] = {
            "traced": statistics.median(traced),
            "net": statistics.median(net),
            "rss": statistics.median(rss),
        }
        if lib == "ours":
            profiles.append(
                f"#### Scenario 3, {name}: where the memory of the waits is "
                f"(tracemalloc, top lines)\n\n```\n{results[-1]['profile']}```\n"
            )
    out.append("")
    return summary


def scenario_serde(cfg: argparse.Namespace, out: list[str]) -> dict[str, Any]:
    results = [worker({"scenario": "serde", "seconds": cfg.serde_seconds}) for _ in range(3)]

    def col(key: str) -> str:
        return fmt([r[key] / 1000 for r in results], "k", 1)

    out.append(
        "### 4. Serialization (CPU, operations per second, best of 3 batches; median (min-max) "
        "of 3 processes)\n\n"
        f"Request: a RebuildRequest with name, metadata, description, key_name and user_data → "
        f"JSON bytes. Response: a {results[0]['body_bytes']}-byte `GET /servers/{{id}}` body "
        "(microversion 2.60) → a typed Server. openstacksdk has no separate request serializer "
        "(Server.rebuild builds the dict inline), so its column is that dict + json.dumps; its "
        "response path is `Server.existing(**body['server'])`, what `_translate_response` does.\n"
    )
    out.append("| direction | ecs_rebuild_async | openstacksdk | ratio |")
    out.append("| --- | --- | --- | --- |")
    for direction, key in (("RebuildRequest → JSON", "request"), ("JSON → Server", "response")):
        ours = statistics.median(r[f"ours_{key}"] for r in results)
        sdk = statistics.median(r[f"sdk_{key}"] for r in results)
        out.append(
            f"| {direction} | {col('ours_' + key)} | {col('sdk_' + key)} | {ours / sdk:.2f}x |"
        )
    out.append("")
    return {}


# -- main ----------------------------------------------------------------------------------


def _relative_paths(text: str, roots: list[Path]) -> str:
    """Profiles name files by absolute path: keep them relative to the checkout, the
    site-packages and the standard library, so that the results say nothing of the machine."""
    import sysconfig

    prefixes = [str(root.resolve()) + "/" for root in roots]
    prefixes += [sysconfig.get_paths()["purelib"] + "/", sysconfig.get_paths()["stdlib"] + "/"]
    for prefix in sorted(set(prefixes), key=len, reverse=True):
        text = text.replace(prefix, "")
    return re.sub(r"/\S*/site-packages/", "", text)


def environment() -> str:
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    names = (
        "ecs-rebuild-async",
        "openstacksdk",
        "keystoneauth1",
        "httpx",
        "httpx-aiohttp",
        "aiohttp",
        "trio",
        "anyio",
        "cattrs",
        "requests",
    )
    versions = ", ".join(f"{n} {version(n)}" for n in names)
    return (
        f"- Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC\n"
        f"- Machine: {cpu}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.1f} GiB, {platform.system()} "
        f"{platform.release()}; 1-minute load average at start {psutil.getloadavg()[0]:.2f}\n"
        f"- Python {platform.python_version()} ({platform.python_implementation()})\n"
        f"- Versions: {versions}\n"
    )


def targets(found: dict[str, Any], n: int) -> str:
    single, bulk, waits, fleets = (found.get(k, {}) for k in ("1", "2", "3", "5"))
    lines = ["### Targets\n", "| target | measured | met |", "| --- | --- | --- |"]

    def row(text: str, value: str, ok: bool) -> None:
        lines.append(f"| {text} | {value} | {'yes' if ok else '**no**'} |")

    otel_ratios = single.get("telemetry", {})
    if single.get("base") == "absent":
        for fake in FAKES:
            found_none = otel_ratios.get((fake, "none"))
            if found_none is not None:
                low, high = found_none["range"]
                row(
                    f"CPU per rebuild-and-wait with the API and no provider within 3 % of the "
                    f"extra absent ({fake})",
                    f"{found_none['ratio']:.3f}x (per run {low:.3f}-{high:.3f})",
                    found_none["ratio"] <= 1.03,
                )
    for fake in FAKES:
        for name, schedule in (
            ("ecs_rebuild_async (aiohttp)", "first read one interval after the 202"),
            ("ecs_rebuild_async (aiohttp, first read at once)", "openstacksdk's schedule"),
        ):
            ratio = single.get((fake, name))
            if ratio is not None:
                row(
                    f"client CPU per rebuild-and-wait ≤ 0.2x openstacksdk's ({fake}, {schedule})",
                    f"{ratio:.2f}x",
                    ratio <= 0.2,
                )
    ours = bulk.get("ecs_rebuild_async (aiohttp)")
    if ours:
        naive = n * max(ours["ticks"], 1)
        row(
            f"{n:,} servers on FakeCompute: status requests ≤ 1/10 of one GET per server per tick",
            f"{ours['status']:g} vs {naive:g} ({ours['status'] / naive:.3f})",
            ours["status"] <= naive / 10,
        )
    sizes = fleets.get("ours", {})
    for size, slack in ((1000, 1.0), (10000, 8.0)):
        f = sizes.get(size)
        if not f:
            continue
        row(
            f"{size:,} servers (2 s rebuilds): wall within service time + {slack:g} s",
            f"{f['wall']:.2f} s wall, service time {f['service']:.2f} s, beyond it "
            f"{f['beyond']:.2f} s",
            f["beyond"] <= slack,
        )
        row(
            f"{size:,} servers: wall within the 2 s rebuild + {slack:g} s (submission included)",
            f"{f['wall']:.2f} s (last rebuild accepted at {f['submit']:.2f} s)",
            f["wall"] <= 2 + slack,
        )
        if size == 10000:
            row("10,000 servers: ≤ 50 status requests", f"{f['status']:g}", f["status"] <= 50)
            row(
                "10,000 servers: ≤ 8 s client CPU (< 1 ms per server, POST included)",
                f"{f['cpu']:.2f} s ({f['cpu_per']:.2f} ms / server)",
                f["cpu"] <= 8,
            )
    mem = waits.get("ecs_rebuild_async (aiohttp)")
    if mem:
        row(
            "≤ 5 KB of memory per wait in flight (the library's own: the caller's task apart)",
            f"{mem['net']:.1f} KB own; {mem['traced']:.1f} KB traced with the anyio task that "
            f"runs it, {mem['rss']:.1f} KB RSS",
            mem["net"] <= 5,
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs and smaller fleets")
    parser.add_argument("--profile", action="store_true", help="append cProfile tops")
    parser.add_argument("--only", default="1,2,3,4,5", help="scenarios to run, e.g. 1,4")
    parser.add_argument("--no-plot", dest="plot", action="store_false", help="skip the PNG")
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="another checkout: append profiles of one rebuild-and-wait there and here",
    )
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument(
        "--telemetry",
        default="none",
        help="OpenTelemetry in our workers: none (the API, no provider: the default), absent "
        "(every opentelemetry import fails), console (the SDK, exporting to the console); "
        "several, e.g. absent,none,console, are compared in scenario 1",
    )
    parser.add_argument("--runs", type=int, help="runs of scenario 1 (default 5, quick 2)")
    cfg = parser.parse_args(argv)
    cfg.telemetry = cfg.telemetry.split(",")
    if not set(cfg.telemetry) <= TELEMETRY.keys() or len(set(cfg.telemetry)) != len(cfg.telemetry):
        parser.error(f"--telemetry takes some of {', '.join(TELEMETRY)}, each once")
    if cfg.runs is not None and cfg.runs < 1:
        parser.error("--runs must be at least 1")
    quick = cfg.quick
    runs_given = cfg.runs is not None
    cfg.runs = cfg.runs or (2 if quick else 5)
    cfg.single_ops = 30 if quick else 100
    cfg.single_rebuild = 0.02
    cfg.single_interval = 0.02
    cfg.bulk_servers = 200 if quick else 1000
    cfg.bulk_runs = 2 if quick else 3
    cfg.sdk_bulk_runs = 1
    cfg.first_delay = 1.0
    cfg.waits = 1000 if quick else 10000
    cfg.sdk_waits = 200 if quick else 1000
    cfg.wait_runs = 1 if quick else 3
    cfg.serde_seconds = 0.5 if quick else 1.5
    cfg.fleet_sizes = [100, 500] if quick else [100, 1000, 3000, 10000]
    cfg.fleet_runs = 1 if quick else 3
    cfg.fleet_sdk_sizes = [100] if quick else [100, 1000]
    cfg.fleet_sdk_runs = 1 if quick else 2
    cfg.fleet_ticks = [None, 1.0, 0.5]
    cfg.fleet_tick_size = 200 if quick else 1000
    only = set(cfg.only.split(","))

    started = time.perf_counter()
    out = [
        "# Benchmarks: ecs_rebuild_async and openstacksdk on the same loopback fake\n",
        "Generated by `python -m benchmarks.run"
        + (" --quick" if quick else "")
        + ("" if cfg.only == "1,2,3,4,5" else f" --only {cfg.only}")
        + ("" if cfg.telemetry == ["none"] else f" --telemetry {','.join(cfg.telemetry)}")
        + (f" --runs {cfg.runs}" if runs_given else "")
        + "`.\n",
        environment(),
    ]
    profiles: list[str] = []
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("1", lambda: scenario_single(cfg, out, profiles)),
        ("2", lambda: scenario_bulk(cfg, out, profiles)),
        ("3", lambda: scenario_waits(cfg, out, profiles)),
        ("4", lambda: scenario_serde(cfg, out)),
        ("5", lambda: scenario_fleets(cfg, out, profiles)),
    ]
    found: dict[str, Any] = {}
    for key, step in steps:
        if key in only:
            print(f"scenario {key}...", file=sys.stderr, flush=True)
            found[key] = step()
    out.append(targets(found, cfg.bulk_servers))
    if cfg.before is not None:
        from benchmarks.profile_single import profile

        print("profiles before and after...", file=sys.stderr, flush=True)
        profiles.append(
            f"#### One rebuild-and-wait before ({cfg.before.name}), 200 operations\n\n"
            + profile(cfg.before.resolve(), 200, cfg.single_interval).replace("#### ", "##### ")
        )
        profiles.append(
            "#### One rebuild-and-wait after (this checkout), 200 operations\n\n"
            + profile(ROOT, 200, cfg.single_interval).replace("#### ", "##### ")
        )
    if profiles:
        out.append("### Profiles (cProfile, sorted by own time)\n")
        out.extend(profiles)
    out.append(f"Total benchmark time: {time.perf_counter() - started:.0f} s.\n")
    text = _relative_paths("\n".join(out), [ROOT] + ([cfg.before] if cfg.before else []))
    cfg.output.write_text(text)
    try:
        from rich.console import Console
        from rich.markdown import Markdown

        Console().print(Markdown(text))
    except ImportError:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
