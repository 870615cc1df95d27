"""The ``ecs-rebuild`` command line, run against the fake service: in process through
``main(argv, transport=...)``, and as a subprocess over loopback TCP."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ecs_rebuild_async.cli import main
from ecs_rebuild_async.testing import FakeCompute

# The JSON schema of a result line, as the README documents it: changing it breaks scripts.
RECORD_KEYS = {
    "server_id",
    "name",
    "ok",
    "kind",
    "status",
    "task_state",
    "image_before",
    "image_after",
    "seconds",
    "http_status",
    "error_code",
    "request_id",
    "fault_code",
    "fault_message",
    "error",
    "submitted",
    "reason",
}
FAST = ["--poll-interval", "0.02"]


@pytest.fixture
def fake() -> FakeCompute:
    # 50x time: a 2 s rebuild takes 40 ms.
    return FakeCompute(time_scale=50.0, rebuild_seconds=2.0)


def connect(fake: FakeCompute) -> list[str]:
    return ["--endpoint", fake.compute_url, "--token", fake.token]


def run(
    argv: list[str], fake: FakeCompute | None = None, environ: dict[str, str] | None = None
) -> int:
    transport = fake.transport() if fake is not None else None
    return main(argv, transport=transport, environ={} if environ is None else environ)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def posts(fake: FakeCompute) -> int:
    return fake.stats.requests[("POST", "rebuild")]


# -- rebuild ------------------------------------------------------------------------------------


def test_rebuild_json_writes_one_parsable_line_per_server_and_exits_0(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = fake.add_servers(3)
    image = fake.images["ubuntu-24.04"]

    code = run(["rebuild", *ids, "--image", image, "--json", *FAST, *connect(fake)], fake)

    out, err = capsys.readouterr()
    records = json_lines(out)
    assert code == 0
    assert sorted(r["server_id"] for r in records) == sorted(ids)
    for record in records:
        assert set(record) == RECORD_KEYS
        assert record["ok"] is True
        assert record["kind"] == "ok"
        assert record["status"] == "ACTIVE"
        assert record["task_state"] is None
        assert record["image_after"] == image
        assert record["error"] is None
        assert record["submitted"] is True
    assert all(fake.rebuilds_accepted(sid) == 1 for sid in ids)
    assert "3 ok, 0 not ok of 3" in err
    assert fake.token not in out + err


def test_rebuild_exits_1_when_a_server_fails_and_says_why(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str]
) -> None:
    good = fake.add_server(name="good")
    bad = fake.add_server(name="bad", fail=True)

    code = run(
        ["rebuild", good, bad, "--image", fake.default_image, "--json", *FAST, *connect(fake)], fake
    )

    records = {r["server_id"]: r for r in json_lines(capsys.readouterr().out)}
    assert code == 1
    assert records[good]["ok"] is True
    assert records[bad]["ok"] is False
    assert records[bad]["kind"] == "failed"
    assert records[bad]["status"] == "ERROR"
    assert records[bad]["error"]["type"] == "RebuildFailed"
    assert "spawn failed" in records[bad]["error"]["message"]
    assert records[bad]["submitted"] is True


def test_rebuild_human_output_and_summary_table(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = fake.add_servers(2)

    code = run(["rebuild", *ids, "--image", fake.default_image, *FAST, *connect(fake)], fake)

    out, err = capsys.readouterr()
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2
    assert all(line.startswith("ok ") and "ACTIVE" in line for line in lines)
    assert "Outcomes" in err
    assert "Requests sent" in err
    assert "POST action" in err


def test_no_wait_submits_and_reports_without_waiting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeCompute(time_scale=0)  # frozen clock: the rebuild never finishes
    server_id = fake.add_server()

    code = run(
        [
            "rebuild",
            server_id,
            "--image",
            fake.default_image,
            "--no-wait",
            "--json",
            *connect(fake),
        ],
        fake,
    )

    (record,) = json_lines(capsys.readouterr().out)
    assert code == 0
    assert record["kind"] == "submitted"
    assert record["ok"] is True
    assert record["status"] == "REBUILD"
    assert fake.rebuilds_accepted(server_id) == 1


def test_server_ids_from_a_file_and_standard_input_each_rebuilt_once(
    fake: FakeCompute,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    a, b, c = fake.add_servers(3)
    listing = tmp_path / "servers.txt"
    listing.write_text(f"# fleet\n{a}\n\n{b}  # the second\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{c}\n{a}\n"))

    code = run(
        [
            "rebuild",
            "-",
            "--from-file",
            str(listing),
            "--image",
            fake.default_image,
            "--json",
            *FAST,
            *connect(fake),
        ],
        fake,
    )

    out, err = capsys.readouterr()
    assert code == 0
    assert sorted(r["server_id"] for r in json_lines(out)) == sorted([a, b, c])
    assert f"{a} is listed more than once" in err
    assert [fake.rebuilds_accepted(s) for s in (a, b, c)] == [1, 1, 1]


def test_request_options_reach_the_service(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fake.add_keypair("ops")
    server_id = fake.add_server(name="old")
    user_data = tmp_path / "init.sh"
    user_data.write_text("#!/bin/sh\necho hi\n")

    code = run(
        [
            "rebuild",
            server_id,
            "--image",
            fake.default_image,
            "--name",
            "new",
            "--metadata",
            "role=web",
            "--metadata",
            "tier=1",
            "--key-name",
            "ops",
            "--user-data",
            str(user_data),
            "--description",
            "rebuilt",
            "--json",
            *FAST,
            *connect(fake),
        ],
        fake,
    )

    assert code == 0, capsys.readouterr().err
    truth = fake.truth(server_id)
    assert truth.name == "new"
    assert truth.metadata == {"role": "web", "tier": "1"}
    assert truth.key_name == "ops"


# -- configuration -------------------------------------------------------------------------------


def test_token_from_os_token_with_endpoint_flag(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str]
) -> None:
    server_id = fake.add_server()

    code = run(
        [
            "rebuild",
            server_id,
            "--image",
            fake.default_image,
            "--json",
            *FAST,
            "--endpoint",
            fake.compute_url,
        ],
        fake,
        environ={"OS_TOKEN": fake.token},
    )

    assert code == 0
    assert json_lines(capsys.readouterr().out)[0]["ok"] is True


def test_configuration_from_environment(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str]
) -> None:
    server_id = fake.add_server()
    environ = {"OS_COMPUTE_ENDPOINT": fake.compute_url, "OS_TOKEN": fake.token}

    code = run(["rebuild", server_id, "--image", fake.default_image, *FAST], fake, environ)

    assert code == 0
    assert fake.rebuilds_accepted(server_id) == 1


def test_configuration_from_clouds_yaml(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server_id = fake.add_server()
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(
        "clouds:\n  lab:\n    auth_type: token\n"
        f"    auth:\n      token: {fake.token}\n"
        f"    compute_endpoint_override: {fake.compute_url}\n"
    )
    environ = {"OS_CLIENT_CONFIG_FILE": str(clouds)}

    code = run(
        ["rebuild", server_id, "--image", fake.default_image, "--os-cloud", "lab", *FAST],
        fake,
        environ,
    )

    assert code == 0, capsys.readouterr().err
    assert fake.rebuilds_accepted(server_id) == 1


# -- dry run ------------------------------------------------------------------------------------


def test_dry_run_prints_the_request_masked_and_posts_nothing(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server_id = fake.add_server()
    user_data = tmp_path / "init.sh"
    user_data.write_text("secret-bootstrap")

    code = run(
        [
            "rebuild",
            server_id,
            "--image",
            fake.default_image,
            "--user-data",
            str(user_data),
            "--dry-run",
            *connect(fake),
        ],
        fake,
    )

    out, err = capsys.readouterr()
    assert code == 0
    assert out.startswith(f"POST {fake.compute_url}/servers/{server_id}/action\n")
    assert "microversion: 2.60" in out
    assert "X-Auth-Token: ***" in out
    assert "OpenStack-API-Version: compute 2.60" in out
    assert '"user_data": "***"' in out
    assert fake.token not in out + err
    assert "c2VjcmV0" not in out  # base64 of the user data
    assert posts(fake) == 0
    assert fake.rebuilds_accepted(server_id) == 0


def test_dry_run_does_not_tell_the_length_of_a_masked_password(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str]
) -> None:
    server_id = fake.add_server()
    argv = ["rebuild", server_id, "--image", fake.default_image, "--dry-run", *connect(fake)]

    shown = []
    for password in ("short", "a-much-longer-password-than-that"):
        assert run([*argv, "--password", password], fake) == 0
        out = capsys.readouterr().out
        assert password not in out
        shown.append(out)

    # The output is the same whatever the password's length; the length it gives is that of
    # the body as shown, and says so.
    assert shown[0] == shown[1]
    masked = json.dumps({"rebuild": {"adminPass": "***", "imageRef": fake.default_image}})
    size = len(masked.replace(": ", ":").replace(", ", ","))
    assert f"  Content-Length: ({size} bytes, secrets masked)\n" in shown[0]
    # Without a secret in the body, the real Content-Length is shown.
    assert run(argv, fake) == 0
    plain = json.dumps({"rebuild": {"imageRef": fake.default_image}}, separators=(",", ":"))
    assert f"  Content-Length: {len(plain)}\n" in capsys.readouterr().out
    assert posts(fake) == 0


def test_dry_run_json_for_each_server(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = fake.add_servers(2)

    code = run(
        [
            "rebuild",
            *ids,
            "--image",
            fake.default_image,
            "--no-key-name",
            "--dry-run",
            "--json",
            *connect(fake),
        ],
        fake,
    )

    records = json_lines(capsys.readouterr().out)
    assert code == 0
    assert [r["server_id"] for r in records] == ids
    first = records[0]
    assert first["method"] == "POST"
    assert first["url"] == f"{fake.compute_url}/servers/{ids[0]}/action"
    assert first["microversion"] == "2.60"
    assert first["headers"]["X-Auth-Token"] == "***"
    assert first["body"] == {"rebuild": {"imageRef": fake.default_image, "key_name": None}}
    assert posts(fake) == 0


def test_dry_run_with_ak_sk_masks_the_signature(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str]
) -> None:
    server_id = fake.add_server()
    environ = {
        "HUAWEICLOUD_SDK_AK": fake.ak,
        "HUAWEICLOUD_SDK_SK": fake.sk,
        "HUAWEICLOUD_SDK_PROJECT_ID": fake.project_id,
        "HUAWEICLOUD_SDK_ECS_ENDPOINT": fake.compute_url,
    }

    code = run(
        ["rebuild", server_id, "--image", fake.default_image, "--dry-run", "--json"], fake, environ
    )

    out = capsys.readouterr().out
    (record,) = json_lines(out)
    assert code == 0
    assert record["headers"]["Authorization"] == "***"
    assert "X-Sdk-Date" in record["headers"]
    assert fake.sk not in out
    assert fake.ak not in out
    assert posts(fake) == 0


# -- errors: one line, exit 2 --------------------------------------------------------------------

IMAGE = "70a5e0a4-0000-4000-8000-00000000000a"
SERVER = "e3e70682-c209-4cac-a29f-6fbed82c07cd"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: command"),
        (["frobnicate"], "invalid choice"),
        (["rebuild", SERVER], "no credentials: give --endpoint URL with --token"),
        (["rebuild", SERVER, "--image", IMAGE, "--concurrency", "0"], "--concurrency"),
        (["rebuild", SERVER, "--image", IMAGE, "--key-name", "a", "--no-key-name"], "not allowed"),
        (["rebuild", SERVER, "--image", IMAGE, "--metadata", "novalue"], "KEY=VALUE"),
        (["rebuild", SERVER, "--image", IMAGE, "--user-data", "/nonexistent/x"], "--user-data"),
        (["rebuild", SERVER, "--image", IMAGE, "--from-file", "/nonexistent/x"], "--from-file"),
        (["rebuild", SERVER, "--image", IMAGE], "--os-cloud NAME"),
        (["rebuild", SERVER, "--image", IMAGE, "--token", "t"], "--token needs --endpoint"),
        (["rebuild", SERVER, "--image", IMAGE, "--os-cloud", "x"], "clouds.yaml"),
        (["demo", "--fail-rate", "2"], "--fail-rate"),
        (["demo", "--servers", "0"], "--servers"),
        (["versions", "--name", "x"], "need --image"),
    ],
)
def test_bad_arguments_and_missing_configuration_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    environ = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}

    code = main(argv, environ=environ)

    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("ecs-rebuild: error: ")
    assert message in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--image", "not-an-image"], "InvalidRequest"),
        (["--image", IMAGE, "--hostname", "web-1"], "2.90"),
        (["--image", IMAGE, "--microversion", "2.90"], "MicroversionError"),
        (["--image", IMAGE, "--name", "x" * 300], "name"),
    ],
)
def test_requests_the_endpoint_cannot_take_exit_2_before_anything_is_sent(
    extra: list[str], message: str, fake: FakeCompute, capsys: pytest.CaptureFixture[str]
) -> None:
    server_id = fake.add_server()

    code = run(["rebuild", server_id, *extra, *connect(fake)], fake)

    _out, err = capsys.readouterr()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert message in err
    assert posts(fake) == 0


def test_a_rejected_token_is_a_configuration_error(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str]
) -> None:
    server_id = fake.add_server()

    code = run(
        [
            "rebuild",
            server_id,
            "--image",
            IMAGE,
            "--endpoint",
            fake.compute_url,
            "--token",
            "not-a-valid-token",
        ],
        fake,
    )

    err = capsys.readouterr().err
    assert code == 2
    assert "HTTP 401: the token was refused" in err
    assert len(err.splitlines()) == 1
    assert "not-a-valid-token" not in err
    assert posts(fake) == 0


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rebuild", "--help"]) == 0
    assert "--dry-run" in capsys.readouterr().out


# -- versions -----------------------------------------------------------------------------------


def test_versions_shows_the_offer_and_the_negotiated_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeCompute(max_version="2.58")

    code = run(["versions", "--image", IMAGE, "--no-key-name", "--json", *connect(fake)], fake)

    (record,) = json_lines(capsys.readouterr().out)
    assert code == 0
    assert record["offered"] == {"min": "2.1", "max": "2.58"}
    assert record["request_fields"] == ["imageRef", "key_name"]
    assert record["request_needs"] == "2.54"
    assert record["negotiated"] == "2.58"
    assert posts(fake) == 0


def test_versions_text(fake: FakeCompute, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["versions", *connect(fake)], fake)

    out = capsys.readouterr().out
    assert code == 0
    assert "service offers: 2.1 to 2.60" in out
    assert "would send: 2.60" in out


# -- demo ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fail_rate", "ok_count"), [("0", "20"), ("1", "0")])
def test_demo_finishes_with_a_summary_checked_against_the_truth(
    fail_rate: str, ok_count: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["demo", "--servers", "20", "--duration", "0.5", "--fail-rate", fail_rate], environ={}
    )

    err = capsys.readouterr().err
    # The failures are the demo's own: it succeeds when it reported each one truthfully.
    assert code == 0
    assert "Outcomes" in err
    assert "Requests sent" in err
    assert "20/20" in err
    ok_row = next(line for line in err.splitlines() if "│ ok " in line)
    assert ok_row.split("│")[2].strip() == ok_count
    assert "20 of 20 outcomes are the truth" in err


# -- without rich --------------------------------------------------------------------------------


def test_display_without_rich_fails_in_one_line_naming_the_extra(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "rich.console", None)
    server_id = fake.add_server()

    code = run(["rebuild", server_id, "--image", IMAGE, *connect(fake)], fake)

    err = capsys.readouterr().err
    assert code == 2
    assert (
        err.strip() == "ecs-rebuild: error: this needs rich: pip install 'ecs-rebuild-async[cli]'"
    )
    assert posts(fake) == 0


def test_library_and_json_mode_work_without_rich(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "sys.modules['rich'] = None\n"
        "import ecs_rebuild_async, ecs_rebuild_async.cli\n"
        "from ecs_rebuild_async.testing import FakeCompute\n"
        "fake = FakeCompute(time_scale=50)\n"
        "sid = fake.add_server()\n"
        "sys.exit(ecs_rebuild_async.cli.main(['rebuild', sid, '--image', fake.default_image,\n"
        "    '--json', '--poll-interval', '0.02', '--endpoint', fake.compute_url,\n"
        "    '--token', fake.token], transport=fake.transport(), environ={}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True


# -- as a subprocess over loopback TCP -----------------------------------------------------------


def _env(token: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "HUAWEICLOUD_"))}
    return {**keep, "OS_TOKEN": token}


def _serve(rebuild_seconds: str, time_scale: str) -> Iterator[dict[str, Any]]:
    """``python -m ecs_rebuild_async.testing serve`` on a free loopback port."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ecs_rebuild_async.testing",
            "serve",
            "--servers",
            "2",
            "--rebuild-seconds",
            rebuild_seconds,
            "--time-scale",
            time_scale,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield json.loads(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def served() -> Iterator[dict[str, Any]]:
    """Rebuilds take 30 fake seconds at 60x: half a second."""
    yield from _serve("30", "60")


@pytest.fixture
def served_slow() -> Iterator[dict[str, Any]]:
    """Rebuilds take a minute: long enough to interrupt one."""
    yield from _serve("60", "1")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ecs_rebuild_async", *args]


def test_subprocess_rebuild_over_tcp(served: dict[str, Any]) -> None:
    servers = served["servers"]
    argv = _cli(
        "rebuild",
        servers["server-0"],
        servers["server-fails"],
        "--image",
        served["images"]["ubuntu-24.04"],
        "--endpoint",
        served["compute_url"],
        "--json",
        "--poll-interval",
        "0.05",
    )

    done = subprocess.run(
        argv, env=_env(served["token"]), capture_output=True, text=True, timeout=60, check=False
    )

    records = {r["server_id"]: r for r in json_lines(done.stdout)}
    assert done.returncode == 1, done.stderr
    assert records[servers["server-0"]]["kind"] == "ok"
    assert records[servers["server-fails"]]["kind"] == "failed"
    assert served["token"] not in done.stdout + done.stderr


def test_subprocess_dry_run_over_tcp_sends_no_rebuild(served: dict[str, Any]) -> None:
    server_id = served["servers"]["server-1"]
    argv = _cli(
        "rebuild", server_id, "--image", served["images"]["centos-9"],
        "--endpoint", served["compute_url"], "--dry-run", "--json",
    )  # fmt: skip

    done = subprocess.run(
        argv, env=_env(served["token"]), capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["body"]["rebuild"]["imageRef"] == served["images"]["centos-9"]
    server = _read_server(served, server_id)
    assert server["image"]["id"] != served["images"]["centos-9"]
    assert server["status"] == "ACTIVE"


def _read_server(served: dict[str, Any], server_id: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{served['compute_url']}/servers/{server_id}",
        headers={"X-Auth-Token": served["token"]},
        timeout=10,
    )
    answer.raise_for_status()
    server: dict[str, Any] = answer.json()["server"]
    return server


def test_subprocess_ctrl_c_stops_cleanly_and_lists_what_was_submitted(
    served_slow: dict[str, Any],
) -> None:
    served = served_slow
    server_id = served["servers"]["server-0"]
    proc = subprocess.Popen(
        _cli(
            "rebuild", server_id, "--image", served["images"]["ubuntu-24.04"],
            "--endpoint", served["compute_url"], "--json", "--poll-interval", "0.05",
        ),
        env=_env(served["token"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        # Generous: a loaded machine may take long to start the process.
        deadline = time.monotonic() + 120
        while _read_server(served, server_id)["status"] != "REBUILD":
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the rebuild was never submitted"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert proc.returncode == 130, err
    assert "interrupted: 1 of 1 rebuilds had been submitted" in err
    assert server_id in err
    (record,) = json_lines(out)
    assert record == {**record, "server_id": server_id, "kind": "cancelled", "submitted": True}


def test_a_ca_bundle_from_clouds_yaml_is_used_and_a_missing_one_is_a_configuration_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(
        "clouds:\n  lab:\n    auth_type: token\n"
        "    auth:\n      token: not-sent\n"
        "    compute_endpoint_override: https://127.0.0.1:9/v2.1/6f70656e\n"
        f"    cacert: {tmp_path / 'no-such-ca.pem'}\n"
    )
    environ = {"OS_CLIENT_CONFIG_FILE": str(clouds)}
    argv = ["rebuild", "a0a80a94-3d81-4a10-822a-daa0cf9e870b", "--image", IMAGE, "--os-cloud"]

    code = main([*argv, "lab"], environ=environ)

    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "no-such-ca.pem" in err


def test_the_readme_documents_exactly_the_json_fields() -> None:
    from ecs_rebuild_async.cli.output import RECORD_FIELDS

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## The command line", 1)[1].split("\n## ", 1)[0]
    table = section.split("| field | meaning |", 1)[1].split("\n\n", 1)[0]
    documented = [line.split("`")[1] for line in table.splitlines() if line.startswith("| `")]

    assert documented == list(RECORD_FIELDS)
    assert set(RECORD_FIELDS) == RECORD_KEYS
