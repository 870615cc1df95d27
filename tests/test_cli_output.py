"""What ``ecs-rebuild`` tells people and scripts: the JSON schema's fields, aligned text,
counts that agree, -v, formats and columns, names, dry runs, and messages for common mistakes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from ecs_rebuild_async.cli import main
from ecs_rebuild_async.testing import FakeCompute

FAST = ["--poll-interval", "0.02"]


@pytest.fixture
def fake() -> FakeCompute:
    return FakeCompute(time_scale=50.0, rebuild_seconds=2.0)


def env(fake: FakeCompute) -> dict[str, str]:
    return {"OS_TOKEN": fake.token, "OS_COMPUTE_ENDPOINT": fake.compute_url}


def keystone(fake: FakeCompute) -> list[str]:
    return [
        "--os-auth-url", fake.identity_url, "--os-username", fake.username,
        f"--os-password={fake.password}", "--os-user-domain-name", fake.user_domain_name,
        "--os-project-id", fake.project_id,
    ]  # fmt: skip


def run(fake: FakeCompute, argv: list[str], environ: dict[str, str] | None = None) -> int:
    return main(argv, transport=fake.transport(), environ=env(fake) if environ is None else environ)


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_lines_carry_names_errors_faults_images_and_time(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str]
) -> None:
    ok = fake.add_server(name="web-ok", image_id=fake.images["centos-9"])
    failing = fake.add_server(name="web-fails", fail=True)
    locked = fake.add_server(name="web-locked", locked=True)
    missing = "0f0f0f0f-3d81-4a10-822a-daa0cf9e870b"
    image = fake.images["ubuntu-24.04"]

    code = run(fake, ["rebuild", ok, failing, locked, missing, "--image", image, "--json", *FAST])

    records = {r["server_id"]: r for r in lines(capsys.readouterr().out)}
    assert code == 1
    assert records[ok] | {"seconds": 0} == records[ok] | {
        "name": "web-ok", "kind": "ok", "status": "ACTIVE", "image_before": fake.images["centos-9"],
        "image_after": image, "http_status": None, "error": None, "seconds": 0,
    }  # fmt: skip
    assert isinstance(records[ok]["seconds"], float)
    assert records[failing]["kind"] == "failed"
    assert records[failing]["status"] == "ERROR"
    assert records[failing]["fault_message"]
    assert records[failing]["fault_code"] == 500
    assert records[locked] | {"request_id": "x"} == records[locked] | {
        "kind": "conflict", "name": "web-locked", "status": "ACTIVE", "http_status": 409,
        "request_id": "x",
    }  # fmt: skip
    assert records[locked]["request_id"].startswith("req-")
    assert records[locked]["error_code"]
    assert records[missing]["kind"] == "not_found"
    assert records[missing]["http_status"] == 404


def test_text_lines_are_aligned_columns_with_names(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = [fake.add_server(name="a"), fake.add_server(name="a-much-longer-name", fail=True)]
    ids.append(fake.add_server(name="locked-one", locked=True))

    run(fake, ["rebuild", *ids, "--image", fake.images["centos-9"], *FAST])

    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3
    # Every column starts at the same place on every line.
    starts = [[m.start() for m in re.finditer(r"(?<=  )\S", line)][:3] for line in out]
    assert len({tuple(s) for s in starts}) == 1, out
    assert {line.split()[2] for line in out} == {"a", "a-much-longer-name", "locked-one"}


def test_the_summary_counts_agree_with_the_progress_counts(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = [*fake.add_servers(3), fake.add_server(fail=True), fake.add_server(locked=True)]

    run(fake, ["rebuild", *ids, "--image", fake.images["centos-9"], *FAST])

    err = capsys.readouterr().err
    # The progress line ends on "3 ok  2 not ok"; the table says the same, then by kind.
    assert re.search(r"3 ok\s+2 not ok", err), err
    assert re.search(r"│ ok\s+│\s+3 │", err), err
    assert re.search(r"│ not ok\s+│\s+2 │", err), err
    assert re.search(r"│   failed\s+│\s+1 │", err), err
    assert re.search(r"│   conflict\s+│\s+1 │", err), err


def test_value_yaml_and_columns(fake: FakeCompute, capsys: pytest.CaptureFixture[str]) -> None:
    server_id = fake.add_server(name="web-1")
    image = fake.images["centos-9"]

    run(fake, ["rebuild", server_id, "--image", image, "-f", "value", "-c", "name", "-c", "kind",
               *FAST])  # fmt: skip
    assert capsys.readouterr().out == "web-1 ok\n"
    run(fake, ["rebuild", server_id, "--image", image, "-f", "json", "-c", "server_id", *FAST])
    assert capsys.readouterr().out == json.dumps({"server_id": server_id}) + "\n"
    run(fake, ["rebuild", server_id, "--image", image, "-f", "yaml", *FAST])
    out = capsys.readouterr().out
    assert out.startswith("---\nserver_id: ")
    assert "name: web-1\n" in out
    code = run(fake, ["rebuild", server_id, "--image", image, "-c", "nope", *FAST])
    assert code == 2
    assert "no column 'nope'; the columns are: server_id, name" in capsys.readouterr().err


def test_verbose_shows_each_change_of_state_and_vv_the_http_requests(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str]
) -> None:
    server_id = fake.add_server(name="web-1")
    image = fake.images["centos-9"]

    run(fake, ["rebuild", server_id, "--image", image, "--json", "-v", *FAST])
    err = capsys.readouterr().err
    assert "web-1: submitted REBUILD" in err
    assert re.search(r"web-1: done ACTIVE/-", err), err
    assert "HTTP" not in err
    assert "GET http" not in err
    run(fake, ["rebuild", server_id, "--image", image, "--json", "-vv", *FAST])
    assert re.search(r"POST \S+/action -> 202", capsys.readouterr().err)


def test_servers_and_images_by_name(fake: FakeCompute, capsys: pytest.CaptureFixture[str]) -> None:
    web = fake.add_server(name="web-1")
    fake.add_servers(2, prefix="twin")
    fake.add_server(name="twin-0")

    code = run(fake, ["rebuild", "web-1", "--image", "centos-9", "--json", *FAST,
                      *keystone(fake)], environ={})  # fmt: skip
    (record,) = lines(capsys.readouterr().out)
    assert code == 0
    assert record["server_id"] == web
    assert record["image_after"] == fake.images["centos-9"]

    code = run(fake, ["rebuild", "twin-0", "--image", "centos-9", *keystone(fake)], environ={})
    err = capsys.readouterr().err
    assert code == 2
    assert "server name 'twin-0' matches 2 servers: " in err
    code = run(fake, ["rebuild", "no-such", "--image", "centos-9", *keystone(fake)], environ={})
    assert code == 2
    assert "no server is named 'no-such'" in capsys.readouterr().err
    code = run(fake, ["rebuild", web, "--image", "centos-9"])  # a token: no catalog
    assert code == 2
    assert "give the image id instead" in capsys.readouterr().err
    assert fake.stats.requests[("POST", "rebuild")] == 1


def test_an_online_dry_run_reads_each_server_and_says_what_it_checked(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str]
) -> None:
    server_id = fake.add_server()
    missing = "0f0f0f0f-3d81-4a10-822a-daa0cf9e870b"

    code = run(fake, ["rebuild", server_id, missing, "--image", fake.images["centos-9"],
                      "--dry-run", "--json"])  # fmt: skip

    good, bad = lines(capsys.readouterr().out)
    assert code == 1
    assert good["ok"] is True
    assert "the server exists" in good["checks"]
    assert bad == {**bad, "server_id": missing, "ok": False}
    assert bad["error"]["type"] == "NotFound"
    assert fake.stats.requests[("POST", "rebuild")] == 0


def test_a_dry_run_with_a_pinned_microversion_sends_nothing_at_all(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeCompute()
    argv = ["rebuild", "a0a80a94-3d81-4a10-822a-daa0cf9e870b", "--image", fake.default_image,
            "--dry-run", "--microversion", "2.54", "--key-name", "k"]  # fmt: skip

    code = run(fake, argv)

    out = capsys.readouterr().out
    assert code == 0
    assert fake.requests == []
    assert "microversion: 2.54" in out
    assert "offline: nothing read" in out
    code = run(fake, [*argv[:4], "--dry-run", "--offline"])
    assert code == 2
    assert "an offline dry run needs --microversion" in capsys.readouterr().err
    assert fake.requests == []  # refused, rather than made online


def test_no_credentials_names_every_way_to_give_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["rebuild", "web-1"], environ={"HOME": str(tmp_path)})

    err = capsys.readouterr().err
    assert code == 2
    for way in ("--endpoint", "--token", "OS_TOKEN", "--os-cloud", "OS_AUTH_URL",
                "HUAWEICLOUD_SDK_AK"):  # fmt: skip
        assert way in err


def test_a_region_the_catalog_lacks_lists_the_regions_it_has(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str]
) -> None:
    server_id = fake.add_server()

    code = run(fake, ["rebuild", server_id, "--image", fake.default_image, *keystone(fake),
                      "--os-region-name", "Atlantis"], environ={})  # fmt: skip

    err = capsys.readouterr().err
    assert code == 2
    assert "region 'Atlantis' has no compute endpoint" in err
    assert f"its regions are: {fake.region}" in err


def test_a_token_cloud_with_an_endpoint_and_an_endpoint_override(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server_id = fake.add_server()
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(
        f"clouds:\n  lab:\n    auth_type: token\n    auth:\n      token: {fake.token}\n"
        "    compute_endpoint_override: https://elsewhere.example.com/v2.1/p\n"
    )
    environ = {"OS_CLIENT_CONFIG_FILE": str(clouds)}
    argv = ["rebuild", server_id, "--image", fake.default_image, "--os-cloud", "lab", "--json",
            *FAST]  # fmt: skip

    code = run(fake, [*argv, "--endpoint", fake.compute_url], environ=environ)

    assert code == 0, capsys.readouterr().err
    assert fake.stats.requests[("POST", "rebuild")] == 1
    # And the entry's own endpoint, without --endpoint.
    clouds.write_text(
        clouds.read_text().replace("https://elsewhere.example.com/v2.1/p", fake.compute_url)
    )
    assert run(fake, argv, environ=environ) == 0, capsys.readouterr().err
    assert fake.stats.requests[("POST", "rebuild")] == 2


def test_an_endpoint_without_its_version_says_how_to_write_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["rebuild", "web-1", "--endpoint", "https://ecs.example.com", "--token", "t"],
                environ={})  # fmt: skip

    err = capsys.readouterr().err
    assert code == 2
    assert "https://ecs.example.com/v2.1/<project_id>" in err


def test_os_compute_api_version_pins_the_microversion(
    fake: FakeCompute, capsys: pytest.CaptureFixture[str]
) -> None:
    server_id = fake.add_server()

    code = run(fake, ["rebuild", server_id, "--image", fake.default_image, "--json", *FAST],
               environ={**env(fake), "OS_COMPUTE_API_VERSION": "2.19"})  # fmt: skip

    assert code == 0, capsys.readouterr().err
    (post,) = [r for r in fake.requests if r.method == "POST"]
    assert post.header("OpenStack-API-Version") == "compute 2.19"


def test_a_401_says_what_was_refused(fake: FakeCompute, capsys: pytest.CaptureFixture[str]) -> None:
    server_id = fake.add_server()
    wrong = [a.replace(fake.password, "wrong-password") for a in keystone(fake)]

    code = run(fake, ["rebuild", server_id, "--image", fake.default_image, *wrong], environ={})
    err = capsys.readouterr().err
    assert code == 2
    assert "HTTP 401: Keystone refused the credentials" in err
    assert "wrong-password" not in err

    fake.expire_tokens()
    code = run(fake, ["rebuild", server_id, "--image", fake.default_image])
    err = capsys.readouterr().err
    assert code == 2
    assert "the token was refused: it has expired or been revoked" in err
    assert fake.token not in err
    assert fake.stats.requests[("POST", "rebuild")] == 0
