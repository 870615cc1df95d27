"""Leaks: a hostile service echoes everything back, redirects, and points the catalog elsewhere.

Every secret kind is a canary (see ``scenes``); every error's text, repr and traceback and every
log record (root logger at DEBUG, HTTP/1.1 and HTTP/2) is searched for each of them.
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import httpx
import pytest
from hostile_service import Reply, Seen, hostile_server
from scenes import (
    AK,
    PROJECT,
    SERVER_ID,
    SK,
    assert_no_canary,
    auth_of,
    debug_everything,
    echo,
    json_reply,
    keystone_auth,
    play_compute,
    play_keystone,
    rebuild_request,
    server_reply,
    texts_of_error,
    texts_of_logs,
    transport_of,
)
from signature import sdk_authorization

from ecs_rebuild_async import (
    AsyncEcsClient,
    BadRequest,
    ClientSettings,
    EcsError,
    RebuildFailed,
    ResponseError,
    ServerError,
    Unauthorized,
)

PROTOCOLS = ["http1", "http2"]
FAST = ClientSettings(retry_attempts=1, backoff_initial=0.001)


@pytest.mark.anyio
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("kind", ["password", "application_credential"])
async def test_keystone_echoing_the_token_request_leaks_no_credential(
    caplog: pytest.LogCaptureFixture, protocol: str, kind: str
) -> None:
    debug_everything(caplog)
    async with hostile_server() as server:
        play_compute(server)
        server.route("POST", "/identity/v3/auth/tokens", echo(401, "password"))
        async with AsyncEcsClient(
            f"{server.url}/v2.1/{PROJECT}",
            auth=auth_of(kind, server),
            transport=transport_of(protocol),
            settings=FAST,
        ) as ecs:
            with pytest.raises(Unauthorized) as caught:
                await ecs.get_server(SERVER_ID)
    # The service really echoed the credentials; none of them came through.
    assert "The password is invalid" in caught.value.message
    assert "***" in caught.value.message
    texts = [*texts_of_error(caught.value), *texts_of_logs(caplog)]
    assert_no_canary(texts)
    assert not [text for text in texts if "Odd" in text and "canary" in text]
    if protocol == "http2":
        assert any(record.name.startswith("hpack") for record in caplog.records)


@pytest.mark.anyio
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("kind", ["token", "aksk", "password"])
async def test_compute_echoing_headers_and_body_leaks_no_secret(
    caplog: pytest.LogCaptureFixture, protocol: str, kind: str
) -> None:
    debug_everything(caplog)
    async with hostile_server() as server:
        play_compute(server)
        keystone = play_keystone(server)
        server.route("POST", f"/v2.1/{PROJECT}/servers/", echo(400, "rebuild"))
        echo_read = echo(500, "read")
        reads: list[Seen] = []

        def read(request: Seen) -> Reply:
            # The rebuild reads the server first (its state before): that read is answered
            # as usual; the later one echoes the request back.
            reads.append(request)
            return server_reply() if len(reads) == 1 else echo_read(request)

        server.route("GET", f"/v2.1/{PROJECT}/servers/", read)
        async with AsyncEcsClient(
            f"{server.url}/v2.1/{PROJECT}",
            auth=auth_of(kind, server),
            transport=transport_of(protocol),
            settings=FAST,
        ) as ecs:
            with pytest.raises(BadRequest) as rebuild:
                await ecs.rebuild(SERVER_ID, rebuild_request())
            with pytest.raises(ServerError) as read:
                await ecs.get_server(SERVER_ID)
            seen = repr(ecs)
    if kind == "password":
        assert keystone.issued  # a token was given, and echoed back
    for error in (rebuild.value, read.value):
        assert "headers" in error.message
        assert_no_canary(texts_of_error(error))
    assert_no_canary([*texts_of_logs(caplog), seen])
    assert any(record.name.startswith(("httpcore", "hpack")) for record in caplog.records)


@pytest.mark.anyio
@pytest.mark.parametrize("follow", [True, False])
async def test_a_redirect_is_never_followed_with_credentials(
    caplog: pytest.LogCaptureFixture, follow: bool
) -> None:
    debug_everything(caplog)
    async with hostile_server() as server:
        play_compute(server)
        keystone = play_keystone(server)
        elsewhere = f"{server.other_url}/v2.1/{PROJECT}/servers/{SERVER_ID}/action"
        server.route(
            "POST", f"/v2.1/{PROJECT}/servers/", lambda r: Reply(307, (("Location", elsewhere),))
        )
        async with (
            httpx.AsyncClient(follow_redirects=follow) as given,
            AsyncEcsClient(
                f"{server.url}/v2.1/{PROJECT}",
                auth=keystone_auth(server.url),
                http_client=given,
                settings=FAST,
            ) as ecs,
        ):
            with pytest.raises(ResponseError) as caught:
                await ecs.rebuild(SERVER_ID, rebuild_request())
        assert server.seen_on(server.other_port) == []  # nothing went to the other host
    assert keystone.issued
    text = str(caught.value)
    assert "307 Temporary Redirect" in text
    assert server.other_url in text
    assert caught.value.status == 307
    assert_no_canary(texts_of_error(caught.value))


@pytest.mark.anyio
async def test_a_redirected_token_request_takes_the_password_nowhere() -> None:
    async with hostile_server() as server:
        play_compute(server)
        tokens = f"{server.other_url}/identity/v3/auth/tokens"
        server.route(
            "POST", "/identity/v3/auth/tokens", lambda r: Reply(308, (("Location", tokens),))
        )
        async with (
            httpx.AsyncClient(follow_redirects=True) as given,
            AsyncEcsClient(auth=keystone_auth(server.url), http_client=given) as ecs,
        ):
            with pytest.raises(ResponseError, match="308 Permanent Redirect") as caught:
                await ecs.get_server(SERVER_ID)
        assert server.seen_on(server.other_port) == []
    assert_no_canary(texts_of_error(caught.value))


@pytest.mark.anyio
async def test_catalog_https_to_http_downgrade_is_refused(tmp_path: Path) -> None:
    async with hostile_server(tls=True, tmp=tmp_path) as server:
        play_compute(server)
        # Keystone on https names a compute endpoint on plain http, on another host.
        play_keystone(server, compute_url=f"{server.other_url}/v2.1/{PROJECT}")
        auth = keystone_auth(server.https_url)
        async with AsyncEcsClient(auth=auth, verify=str(server.ca_path)) as ecs:
            with pytest.raises(ResponseError, match="plain http") as caught:
                await ecs.get_server(SERVER_ID)
        assert server.seen_on(server.other_port) == []
        assert "allow_http_from_catalog" in str(caught.value)

        # An explicit setting allows it, with a warning.
        allowing = ClientSettings(allow_http_from_catalog=True)
        play_compute(server, prefix="/v2.1")
        async with AsyncEcsClient(
            auth=keystone_auth(server.https_url), verify=str(server.ca_path), settings=allowing
        ) as ecs:
            assert (await ecs.get_server(SERVER_ID)).id == SERVER_ID
        assert server.seen_on(server.other_port)


@pytest.mark.anyio
async def test_catalog_endpoint_is_logged_once_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="ecs_rebuild_async")
    async with hostile_server() as server:
        play_compute(server)
        play_keystone(server)
        async with AsyncEcsClient(auth=keystone_auth(server.url)) as ecs:
            for _ in range(3):
                await ecs.get_server(SERVER_ID)
    chosen = [r for r in caplog.records if "from the service catalog" in r.getMessage()]
    assert [r.levelname for r in chosen] == ["INFO"]
    assert f"{server.url}/v2.1/{PROJECT}" in chosen[0].getMessage()


@pytest.mark.anyio
async def test_untrusted_clouds_yaml_is_not_paired_with_the_users_secure_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with hostile_server() as attacker:
        play_keystone(attacker)
        repo = tmp_path / "cloned-repo"
        repo.mkdir()
        (repo / "clouds.yaml").write_text(
            "clouds:\n  prod:\n    auth:\n"
            f"      auth_url: {attacker.url}/identity/v3\n"
            "      username: demo\n      user_domain_name: Default\n"
            f"      project_id: {PROJECT}\n"
        )
        user_dir = tmp_path / "home" / ".config" / "openstack"
        user_dir.mkdir(parents=True)
        (user_dir / "secure.yaml").write_text("clouds:\n  prod:\n    auth:\n      password: pw\n")
        monkeypatch.chdir(repo)
        environ = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_DIRS": str(tmp_path / "none")}
        with pytest.raises(EcsError, match="OS_CLIENT_SECURE_FILE") as caught:
            AsyncEcsClient.from_cloud("prod", environ=environ)
        assert str(repo / "clouds.yaml") in str(caught.value)
        assert attacker.seen == []  # the password went nowhere


@pytest.mark.anyio
async def test_turning_verification_off_warns_once_per_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("WARNING", logger="ecs_rebuild_async")
    async with hostile_server() as server:
        play_compute(server)
        for _ in range(2):
            async with AsyncEcsClient(
                f"{server.url}/v2.1/{PROJECT}", auth=auth_of("token", server), verify=False
            ) as ecs:
                await ecs.get_server(SERVER_ID)
                await ecs.get_server(SERVER_ID)
    warned = [r for r in caplog.records if "verification is off" in r.getMessage()]
    assert len(warned) == 2  # one per client, not per request


@pytest.mark.anyio
async def test_clouds_yaml_insecure_and_verify_path_are_obeyed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="ecs_rebuild_async")
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(
        "clouds:\n"
        "  lax:\n    insecure: true\n    auth_type: token\n    auth: {token: t}\n"
        "    compute_endpoint_override: https://127.0.0.1:1/v2.1\n"
        "  pinned:\n    verify: " + str(tmp_path / "missing-ca.pem") + "\n"
        "    auth_type: token\n    auth: {token: t}\n"
        "    compute_endpoint_override: https://127.0.0.1:1/v2.1\n"
    )
    environ = {"OS_CLIENT_CONFIG_FILE": str(clouds)}
    async with AsyncEcsClient.from_cloud("lax", environ=environ):
        pass
    assert [r for r in caplog.records if "verification is off" in r.getMessage()]
    with pytest.raises(EcsError, match=r"missing-ca\.pem"):
        async with AsyncEcsClient.from_cloud("pinned", environ=environ):
            pass  # the CA bundle named by 'verify' is used: here it does not exist


@pytest.mark.anyio
async def test_aksk_signs_a_double_slash_endpoint_as_huaweis_sdk_does() -> None:
    async with hostile_server() as server:

        def check(request: Seen) -> Reply:
            if sdk_authorization(request, AK, SK) != request.headers.get("authorization"):
                return json_reply(401, {"error_msg": "signature mismatch", "error_code": "0301"})
            return server_reply()

        server.route("GET", "//v2.1", check)
        server.route("GET", "/v2.1", lambda r: json_reply(404, {}))
        async with AsyncEcsClient(
            f"{server.url}//v2.1/{PROJECT}", auth=auth_of("aksk", server), microversion="2.1"
        ) as ecs:
            assert (await ecs.get_server(SERVER_ID)).id == SERVER_ID
        signed = [r for r in server.seen if r.path.startswith("//v2.1/")]
        assert signed


ODD_PASSWORD = 'Odd"Pass\\uote/\u00e9-canary'


@pytest.mark.anyio
@pytest.mark.parametrize("quoting", ["as sent", "as a JSON string"])
async def test_a_fault_quoting_the_rebuild_request_leaks_no_secret(
    caplog: pytest.LogCaptureFixture, quoting: str
) -> None:
    """The service accepts the rebuild, then reports ERROR with a fault whose message and
    details quote the request it was sent, headers and body (the body as it came, or
    JSON-encoded once more as a string, which escapes the password's quote, backslash and é
    twice)."""
    debug_everything(caplog)
    quoted: list[str] = []
    request = attrs.evolve(rebuild_request(), admin_pass=ODD_PASSWORD)

    def accept(seen: Seen) -> Reply:
        headers = "; ".join(f"{k}: {v}" for k, v in seen.headers.items())
        body = seen.body.decode()
        if quoting != "as sent":
            body = json.dumps({"body": body})
        quoted.append(f"{body} headers {headers}")
        return json_reply(202, {"server": {"id": SERVER_ID, "status": "REBUILD"}})

    def read(request: Seen) -> Reply:
        if not quoted:
            return server_reply()
        fault = {"code": 500, "message": f"boom: {quoted[0]}", "details": quoted[0]}
        return server_reply(
            "ERROR", fault=fault, updated="2030-01-01T00:00:00Z", **{"OS-EXT-STS:vm_state": "error"}
        )

    async with hostile_server() as server:
        play_compute(server)
        server.route("GET", f"/v2.1/{PROJECT}/servers/", read)
        server.route("POST", f"/v2.1/{PROJECT}/servers/", accept)
        settings = ClientSettings(poll_first_delay=0.01, poll_interval=0.02)
        async with AsyncEcsClient(
            f"{server.url}/v2.1/{PROJECT}", auth=auth_of("token", server), settings=settings
        ) as ecs:
            with pytest.raises(RebuildFailed) as caught:
                await ecs.rebuild_and_wait(SERVER_ID, request, timeout=10)
    assert quoted  # the request was quoted back
    assert caught.value.server is not None
    assert caught.value.server.fault is not None
    assert caught.value.server.fault.message.startswith("boom: ")
    texts = [*texts_of_error(caught.value), *texts_of_logs(caplog)]
    assert_no_canary(texts)
    assert not [text for text in texts if "Odd" in text and "canary" in text]
