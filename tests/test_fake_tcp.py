"""FakeCompute over loopback TCP, and the ``serve`` command."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import anyio
import httpx
import pytest

from ecs_rebuild_async.testing import FakeCompute


def _port_is_closed(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.anyio
async def test_tcp_server_answers_with_keep_alive_and_stops_cleanly() -> None:
    fake = FakeCompute(time_scale=0)
    sid = fake.add_server()
    async with fake.serve_tcp() as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        assert base_url.startswith("http://127.0.0.1:")
        assert fake.compute_url == f"{base_url}/v2.1/{fake.project_id}"
        headers = {"X-Auth-Token": fake.token}
        async with httpx.AsyncClient(base_url=fake.compute_url, headers=headers) as http:
            first = await http.get(f"/servers/{sid}")
            second = await http.post(
                f"/servers/{sid}/action", json={"rebuild": {"imageRef": fake.default_image}}
            )
            assert first.status_code == 200
            assert first.json()["server"]["links"][0]["href"].startswith(base_url)
            assert second.status_code == 202
            assert second.headers["location"].startswith(base_url)
        assert fake.stats.requests[("GET", "server")] == 1
    assert fake.base_url == "http://fake-compute.test"
    assert _port_is_closed(port)


@pytest.mark.anyio
async def test_tcp_lost_answer_closes_the_connection_after_acting() -> None:
    fake = FakeCompute(time_scale=0)
    sid = fake.add_server()
    fake.faults.script("POST", "rebuild", ["lost"])
    async with (
        fake.serve_tcp() as base_url,
        httpx.AsyncClient(base_url=base_url, headers={"X-Auth-Token": fake.token}) as http,
    ):
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(
                f"/v2.1/servers/{sid}/action",
                json={"rebuild": {"imageRef": fake.default_image}},
            )
        assert (await http.get(f"/v2.1/servers/{sid}")).status_code == 200
    assert fake.rebuilds_accepted(sid) == 1


@pytest.mark.anyio
async def test_tcp_refuses_non_loopback_hosts() -> None:
    fake = FakeCompute()
    with pytest.raises(ValueError, match="loopback"):
        async with fake.serve_tcp(host="0.0.0.0"):
            pass


def test_serve_command_prints_its_ready_line_and_stops_on_sigterm() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "ecs_rebuild_async.testing", "serve", "--servers", "3"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as proc:
        try:
            assert proc.stdout is not None
            ready = json.loads(proc.stdout.readline())
            fake_url = ready["compute_url"]
            assert fake_url == f"{ready['url']}/v2.1/{ready['project_id']}"
            assert len(ready["servers"]) == 3 + 5
            response = httpx.get(
                f"{fake_url}/servers/{ready['servers']['server-0']}",
                headers={"X-Auth-Token": ready["token"]},
                timeout=5,
            )
            assert response.status_code == 200
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert _port_is_closed(int(ready["url"].rsplit(":", 1)[1]))


def test_serve_command_refuses_a_public_host() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ecs_rebuild_async.testing", "serve", "--host", "0.0.0.0"],
        capture_output=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 2
    assert b"loopback" in done.stderr
    assert done.stdout == b""


@pytest.mark.anyio
async def test_fast_clock_finishes_a_rebuild_in_real_time() -> None:
    fake = FakeCompute(time_scale=200.0, rebuild_seconds=2.0)
    sid = fake.add_server()
    async with httpx.AsyncClient(
        transport=fake.transport(), base_url=fake.compute_url, headers={"X-Auth-Token": fake.token}
    ) as http:
        await http.post(
            f"/servers/{sid}/action", json={"rebuild": {"imageRef": fake.default_image}}
        )
        # A real sleep lasts at least this long, so the fake clock has moved >= 4 fake seconds.
        await anyio.sleep(0.02)
        assert (await http.get(f"/servers/{sid}")).json()["server"]["status"] == "ACTIVE"


@pytest.mark.anyio
async def test_tcp_stops_even_with_an_open_keep_alive_connection() -> None:
    fake = FakeCompute()
    sid = fake.add_server()
    async with httpx.AsyncClient(headers={"X-Auth-Token": fake.token}) as http:
        async with fake.serve_tcp() as base_url:
            assert (await http.get(f"{base_url}/v2.1/servers/{sid}")).http_version == "HTTP/1.1"
        with pytest.raises(httpx.ConnectError):
            await http.get(f"{base_url}/v2.1/servers/{sid}")


def test_serve_command_takes_slow_spawn_seconds_and_names_the_special_images() -> None:
    command = [
        sys.executable,
        "-m",
        "ecs_rebuild_async.testing",
        "serve",
        "--servers",
        "1",
        "--dialect",
        "nova",
        "--slow-spawn-seconds",
        "8",
        "--time-scale",
        "0",
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            assert proc.stdout is not None
            ready = json.loads(proc.stdout.readline())
            assert ready["images"]["fails-to-spawn"] == ready["failing_image"]
            assert ready["images"]["slow-to-spawn"] == ready["slow_image"]
            assert ready["failing_image"] == "70a5e0a4-0000-4000-8000-0000000000ff"
            assert ready["slow_image"] == "70a5e0a4-0000-4000-8000-0000000000ee"
            assert ready["slow_spawn_seconds"] == 8.0
            stopped = httpx.post(
                f"{ready['compute_url']}/servers/{ready['servers']['server-0']}/action",
                json={"os-stop": None},
                headers={"X-Auth-Token": ready["token"]},
                timeout=5,
            )
            assert stopped.status_code == 202
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
