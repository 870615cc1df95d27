"""``openstack server rebuild``'s spelling of every option sends exactly what ours sends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ecs_rebuild_async.cli import main
from ecs_rebuild_async.testing import FakeCompute


def _rebuild_requests(fake: FakeCompute) -> list[dict[str, Any]]:
    return [
        {
            "path": r.path,
            "body": r.body,
            "version": r.header("OpenStack-API-Version"),
        }
        for r in fake.requests
        if r.method == "POST" and r.path.endswith("/action")
    ]


def _run(fake: FakeCompute, argv: list[str], environ: dict[str, str]) -> int:
    return main(argv, transport=fake.transport(), environ=environ)


@pytest.mark.parametrize(
    ("ours", "osc"),
    [
        (
            ["--metadata", "role=web", "--metadata", "tier=1", "--key-name", "k1"],
            ["--property", "role=web", "--property", "tier=1", "--key-name", "k1", "--wait"],
        ),
        (
            ["--no-key-name", "--description", "d", "--name", "web-9", "--microversion", "2.57"],
            ["--key-unset", "--description", "d", "--name", "web-9",
             "--os-compute-api-version", "2.57"],
        ),
    ],
)  # fmt: skip
def test_osc_spelling_sends_the_same_requests(
    ours: list[str], osc: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    sent = []
    for spelling in (ours, osc):
        fake = FakeCompute(time_scale=50.0, seed=1)
        fake.add_keypair("k1")
        server_id = fake.add_server(name="web-1", server_id="a0a80a94-3d81-4a10-822a-daa0cf9e870b")
        argv = ["rebuild", server_id, "--image", fake.images["centos-9"], "--json",
                "--poll-interval", "0.02", *spelling]  # fmt: skip
        environ = {"OS_TOKEN": fake.token, "OS_COMPUTE_ENDPOINT": fake.compute_url}
        assert _run(fake, argv, environ) == 0, capsys.readouterr().err
        sent.append(_rebuild_requests(fake))

    assert sent[0] == sent[1]
    assert len(sent[0]) == 1


def test_every_osc_request_option_and_connection_option_matches_ours(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Upstream Nova at 2.96, password auth: every request option in both spellings."""
    user_data = tmp_path / "cloud-init.yaml"
    user_data.write_text("#cloud-config\n")
    sent = []
    for spelling in ("ours", "osc"):
        fake = FakeCompute(dialect="nova", max_version="2.96", time_scale=50.0, seed=1)
        server_id = fake.add_server(name="web-1", server_id="a0a80a94-3d81-4a10-822a-daa0cf9e870b")
        common = ["rebuild", "web-1", "--image", "centos-9", "--json", "--poll-interval", "0.02",
                  "--name", "web-2", "--description", "d", "--hostname", "web-2",
                  "--user-data", str(user_data), "--dialect", "nova"]  # fmt: skip
        connection = [
            "--os-auth-url", fake.identity_url, "--os-username", fake.username,
            f"--os-password={fake.password}", "--os-user-domain-name", fake.user_domain_name,
            "--os-project-id", fake.project_id, "--os-region-name", fake.region,
        ]  # fmt: skip
        shared = ["--password", "s3cret", "--preserve-ephemeral", "--trusted-image-cert", "c1",
                  "--trusted-image-cert", "c2", "--reimage-boot-volume"]  # fmt: skip
        if spelling == "ours":
            extra = ["--metadata", "a=1", *shared, "--microversion", "2.96"]
        else:
            extra = ["--property", "a=1", *shared, "--os-compute-api-version", "2.96", "--wait"]
        code = _run(fake, [*common, *extra, *connection], {})
        assert code == 0, capsys.readouterr().err
        sent.append(_rebuild_requests(fake))
        assert server_id in sent[-1][0]["path"]

    assert sent[0] == sent[1]
    body = sent[0][0]["body"]["rebuild"]
    assert body["metadata"] == {"a": "1"}
    assert body["adminPass"] == "s3cret"
    assert body["preserve_ephemeral"] is True
    assert body["trusted_image_certificates"] == ["c1", "c2"]
    assert body["imageRef"] == FakeCompute().images["centos-9"]
    assert sent[0][0]["version"] == "compute 2.96"


@pytest.mark.parametrize(
    ("ours", "osc", "field", "value"),
    [
        ([], ["--no-user-data"], "user_data", None),
        ([], ["--no-trusted-image-certs"], "trusted_image_certificates", None),
        ([], ["--no-preserve-ephemeral"], "preserve_ephemeral", False),
    ],
)
def test_the_unset_options_send_null_or_false(
    ours: list[str], osc: list[str], field: str, value: object
) -> None:
    fake = FakeCompute(dialect="nova", max_version="2.90", time_scale=50.0)
    server_id = fake.add_server()
    environ = {"OS_TOKEN": fake.token, "OS_COMPUTE_ENDPOINT": fake.compute_url}
    argv = ["rebuild", server_id, "--image", fake.default_image, "--dialect", "nova", "--json",
            "--poll-interval", "0.02", *ours, *osc]  # fmt: skip

    assert _run(fake, argv, environ) == 0
    (request,) = _rebuild_requests(fake)
    assert request["body"]["rebuild"][field] == value


def test_without_image_the_server_is_rebuilt_with_its_current_image(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeCompute(time_scale=50.0)
    server_id = fake.add_server(image_id=fake.images["centos-9"])
    environ = {"OS_TOKEN": fake.token, "OS_COMPUTE_ENDPOINT": fake.compute_url}

    assert _run(fake, ["rebuild", server_id, "--json", "--poll-interval", "0.02"], environ) == 0
    (request,) = _rebuild_requests(fake)
    assert request["body"]["rebuild"]["imageRef"] == fake.images["centos-9"]
    # One read before the POST: the current image, the state to return to, the credentials.
    assert fake.stats.requests[("GET", "server")] >= 1
    gets_before_post = _gets_before_first_post(fake)
    assert gets_before_post == 1


def _gets_before_first_post(fake: FakeCompute) -> int:
    count = 0
    for request in fake.requests:
        if request.method == "POST":
            return count
        if request.method == "GET" and "/servers/" in request.path:
            count += 1
    return count


def test_a_single_server_run_reads_the_server_once_before_its_post() -> None:
    fake = FakeCompute(time_scale=50.0)
    server_id = fake.add_server()
    environ = {"OS_TOKEN": fake.token, "OS_COMPUTE_ENDPOINT": fake.compute_url}
    argv = ["rebuild", server_id, "--image", fake.images["centos-9"], "--json",
            "--poll-interval", "0.02"]  # fmt: skip

    assert _run(fake, argv, environ) == 0
    assert _gets_before_first_post(fake) == 1
