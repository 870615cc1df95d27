"""Bounds, typed errors and injection: the hostile server answers with what no service should.

Every bad answer must come out as a typed EcsError (ResponseError for answers), within the size
limit, and the service's text must reach no terminal or log line unescaped.
"""

from __future__ import annotations

import gzip
import io
import json
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from hostile_service import Reply, hostile_server
from scenes import (
    IMAGE,
    JSON,
    PROJECT,
    SERVER_ID,
    auth_of,
    json_reply,
    keystone_auth,
    play_compute,
    play_keystone,
    rebuild_request,
    server_reply,
)

from ecs_rebuild_async import (
    AsyncEcsClient,
    ClientSettings,
    EcsError,
    RebuildOutcomeUnknown,
    RebuildRequest,
    RebuildTimeout,
    ResponseError,
)
from ecs_rebuild_async.cli import main

CONTROL = "\x1b[2J\x1b]0;pwned\x07\r\nok         forged-server  ACTIVE  image x"


def endless(chunk: bytes = b"[" * 65536) -> AsyncIterator[bytes]:
    async def chunks() -> AsyncIterator[bytes]:
        while True:
            yield chunk

    return chunks()


# -- bounds --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_answer_declared_too_large_is_refused_before_it_is_read() -> None:
    async with hostile_server() as server:
        play_compute(server)
        huge = Reply(200, (*JSON, ("Content-Length", str(10**12))), chunks=lambda: endless())
        server.route("GET", f"/v2.1/{PROJECT}/servers/", lambda r: huge)
        async with AsyncEcsClient(
            f"{server.url}/v2.1/{PROJECT}",
            auth=auth_of("token", server),
            settings=ClientSettings(max_answer_bytes=1_000_000),
        ) as ecs:
            with pytest.raises(ResponseError, match="Content-Length 1000000000000") as caught:
                await ecs.get_server(SERVER_ID)
    assert caught.value.status == 200


@pytest.mark.anyio
@pytest.mark.parametrize("where", ["compute", "keystone"])
async def test_an_endless_answer_is_cut_at_max_answer_bytes(where: str) -> None:
    limit = 512 * 1024
    async with hostile_server() as server:
        play_compute(server)
        play_keystone(server)
        stream = Reply(200, JSON, chunks=lambda: endless())
        if where == "compute":
            server.route("GET", f"/v2.1/{PROJECT}/servers/", lambda r: stream)
        else:
            server.route("POST", "/identity/v3/auth/tokens", lambda r: stream)
        tracemalloc.start()
        try:
            async with AsyncEcsClient(
                auth=keystone_auth(server.url), settings=ClientSettings(max_answer_bytes=limit)
            ) as ecs:
                with pytest.raises(ResponseError, match="larger than 524288 bytes"):
                    await ecs.get_server(SERVER_ID)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 16 * limit  # read while streaming: never the whole (endless) body


@pytest.mark.anyio
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_compressed_answer_is_read_and_a_compressed_bomb_is_cut(encoding: str) -> None:
    """A service may compress its answers: they read as any other. One that decompresses to more
    than max_answer_bytes is refused as it is decoded, however small it is on the wire."""
    limit = 256 * 1024

    def compress(data: bytes) -> bytes:
        return gzip.compress(data) if encoding == "gzip" else zlib.compress(data)

    good = json.dumps({"server": {"id": SERVER_ID, "status": "ACTIVE", "name": "zipped"}})
    bomb = b'{"server": {"id": "' + b"0" * (64 * limit) + b'"}}'
    async with hostile_server() as server:
        play_compute(server)
        compressed = (*JSON, ("Content-Encoding", encoding))
        server.route(
            "GET",
            f"/v2.1/{PROJECT}/servers/",
            lambda r: Reply(200, compressed, compress(good.encode())),
        )
        async with AsyncEcsClient(
            f"{server.url}/v2.1/{PROJECT}",
            auth=auth_of("token", server),
            settings=ClientSettings(max_answer_bytes=limit),
        ) as ecs:
            read = await ecs.get_server(SERVER_ID)
            assert read.name == "zipped"
            small = compress(bomb)
            assert len(small) < limit  # small on the wire
            server.route(
                "GET", f"/v2.1/{PROJECT}/servers/", lambda r: Reply(200, compressed, small)
            )
            tracemalloc.start()
            try:
                with pytest.raises(ResponseError, match=f"larger than {limit} bytes"):
                    await ecs.get_server(SERVER_ID)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    assert peak < 16 * limit  # decoded chunk by chunk: never the whole bomb


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("encoding", "body", "said"),
    [
        ("br", b"\x0b\x02\x80{}\x03", "which was not asked for"),
        ("gzip", b"not gzip at all", "cannot be decoded"),
        ("deflate", b"\xff\xfe garbage", "cannot be decoded"),
    ],
)
async def test_an_answer_in_an_encoding_not_asked_for_or_broken_is_a_response_error(
    encoding: str, body: bytes, said: str
) -> None:
    async with hostile_server() as server:
        play_compute(server)
        reply = Reply(200, (*JSON, ("Content-Encoding", encoding)), body)
        server.route("GET", f"/v2.1/{PROJECT}/servers/", lambda r: reply)
        async with AsyncEcsClient(
            f"{server.url}/v2.1/{PROJECT}", auth=auth_of("token", server)
        ) as ecs:
            with pytest.raises(ResponseError, match=said):
                await ecs.get_server(SERVER_ID)
    asked = [r for r in server.seen if "/servers/" in r.path]
    assert asked
    assert all(r.headers.get("accept-encoding") == "gzip, deflate" for r in asked)


@pytest.mark.anyio
async def test_a_token_given_already_expired_is_warned_about_and_renewed_at_a_bounded_rate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("WARNING", logger="ecs_rebuild_async")
    async with hostile_server() as server:
        play_compute(server)
        keystone = play_keystone(
            server, expires_at="2001-01-01T00:00:00Z", issued_at="2001-01-01T01:00:00Z"
        )
        auth = keystone_auth(server.url, min_reauth_interval=3600)
        async with AsyncEcsClient(auth=auth) as ecs:
            for _ in range(5):
                await ecs.get_server(SERVER_ID)
    assert len(keystone.issued) == 1  # not one token request per API call
    warned = [r for r in caplog.records if "already expired" in r.getMessage()]
    assert len(warned) == 1


def dripped(seconds: float, every: float = 0.05) -> AsyncIterator[bytes]:
    """A JSON answer's bytes one at a time, ``every`` seconds apart, for ``seconds`` in all:
    each read gets a byte long before any read timeout, the whole never comes in time."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(int(seconds / every)):
            yield b" "
            await anyio.sleep(every)
        yield b"{}"

    return chunks()


@pytest.mark.anyio
@pytest.mark.parametrize("call", ["rebuild_and_wait", "rebuild"])
async def test_a_dripped_rebuild_answer_is_cut_at_request_timeout_and_the_deadline_holds(
    call: str,
) -> None:
    async with hostile_server() as server:
        play_compute(server)
        server.route(
            "POST",
            f"/v2.1/{PROJECT}/servers/",
            lambda r: Reply(202, JSON, chunks=lambda: dripped(60)),
        )
        settings = ClientSettings(request_timeout=1.0, reconcile_settle=0.05)
        async with AsyncEcsClient(
            f"{server.url}/v2.1/{PROJECT}", auth=auth_of("token", server), settings=settings
        ) as ecs:

            async def rebuild() -> object:
                if call == "rebuild":
                    return await ecs.rebuild(SERVER_ID, rebuild_request())
                return await ecs.rebuild_and_wait(SERVER_ID, rebuild_request(), timeout=3)

            started = anyio.current_time()
            # Were the drip awaited to its end, this would fail after 60 s, not pass.
            with anyio.fail_after(15), pytest.raises(EcsError) as caught:
                await rebuild()
            took = anyio.current_time() - started
    # The answer never came whole: sent, outcome unproven (never "not submitted").
    assert isinstance(caught.value, (RebuildOutcomeUnknown, RebuildTimeout)), caught.value
    assert "(not sent)" not in str(caught.value)
    posts = [seen for seen in server.seen if seen.method == "POST" and "/action" in seen.path]
    assert len(posts) == 1  # never sent again
    if call == "rebuild_and_wait":
        assert took < 3 + 1.0 + 1.0  # its deadline, the last read's budget, and some slack


# -- typed errors ----------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "document",
    [
        {"expires_at": "9999-12-31T23:59:59-23:59"},
        {"endpoints": 5},
        {"endpoints": True},
        {"compute_url": "http://[::1"},
        {"compute_url": "ftp://127.0.0.1/v2.1"},
    ],
    ids=["expires-after-the-calendar", "endpoints-5", "endpoints-true", "bad-url", "not-http"],
)
async def test_unreadable_token_answers_are_response_errors(document: dict[str, object]) -> None:
    async with hostile_server() as server:
        play_compute(server)
        play_keystone(server, **document)
        async with AsyncEcsClient(auth=keystone_auth(server.url)) as ecs:
            with pytest.raises(ResponseError):
                await ecs.get_server(SERVER_ID)


@pytest.mark.anyio
async def test_issued_at_before_the_calendar_falls_back_to_the_date() -> None:
    async with hostile_server() as server:
        play_compute(server)
        play_keystone(server, issued_at="0001-01-01T00:00:00+01:00")
        async with AsyncEcsClient(auth=keystone_auth(server.url)) as ecs:
            assert (await ecs.get_server(SERVER_ID)).id == SERVER_ID


@pytest.mark.anyio
async def test_a_deeply_nested_token_answer_is_a_response_error() -> None:
    async with hostile_server() as server:
        play_compute(server)
        deep = b'{"token": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
        server.route(
            "POST",
            "/identity/v3/auth/tokens",
            lambda r: Reply(201, (*JSON, ("X-Subject-Token", "t")), deep),
        )
        async with AsyncEcsClient(auth=keystone_auth(server.url)) as ecs:
            with pytest.raises(ResponseError, match="not JSON"):
                await ecs.get_server(SERVER_ID)


@pytest.mark.anyio
async def test_a_date_in_year_9999_then_a_rebuild_stays_typed() -> None:
    """The Date is garbage: ignored, and the rebuild is proven by what the server shows."""
    date = ("Date", "Fri, 31 Dec 9999 23:59:59 GMT")
    reads: list[int] = []

    def read(_: object) -> Reply:
        reads.append(1)
        if len(reads) == 1:
            status, task = "ACTIVE", None
        elif len(reads) == 2:
            status, task = "REBUILD", "rebuilding"
        else:
            status, task = "ACTIVE", None
        # `updated` moves on with each change, as Nova's does: a settled read later than the
        # read of it running is the proof (without a usable Date, no other proof is left).
        updated = f"2026-01-01T00:00:{min(len(reads), 3):02d}Z"
        reply = server_reply(status, **{"OS-EXT-STS:task_state": task, "updated": updated})
        return Reply(reply.status, (*reply.headers, date), reply.body)

    async with hostile_server() as server:
        play_compute(server)
        server.route("GET", f"/v2.1/{PROJECT}/servers/", read)
        accepted = server_reply("REBUILD", **{"OS-EXT-STS:task_state": "rebuilding"})
        server.route(
            "POST",
            f"/v2.1/{PROJECT}/servers/",
            lambda r: Reply(202, (*accepted.headers, date), accepted.body),
        )
        settings = ClientSettings(poll_first_delay=0.01, poll_interval=0.01, poll_interval_max=0.02)
        async with AsyncEcsClient(
            f"{server.url}/v2.1/{PROJECT}", auth=auth_of("token", server), settings=settings
        ) as ecs:
            try:
                done = await ecs.rebuild_and_wait(
                    SERVER_ID, RebuildRequest(image_ref=IMAGE), timeout=30
                )
            except EcsError:
                pass  # a typed outcome is acceptable; an OverflowError is not
            else:
                assert done.status == "ACTIVE"


# -- injection ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_poller_log_lines_escape_the_services_status(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="ecs_rebuild_async")
    reads: list[int] = []

    def read(_: object) -> Reply:
        reads.append(1)
        return server_reply("ACTIVE" if len(reads) > 3 else f"WEIRD{CONTROL}")

    async with hostile_server() as server:
        play_compute(server)
        server.route("GET", f"/v2.1/{PROJECT}/servers/", read)
        settings = ClientSettings(poll_first_delay=0.01, poll_interval=0.01, poll_interval_max=0.02)
        async with AsyncEcsClient(
            f"{server.url}/v2.1/{PROJECT}", auth=auth_of("token", server), settings=settings
        ) as ecs:
            with pytest.raises(EcsError):  # never proven rebuilt: a typed end
                await ecs.wait_for_rebuild(SERVER_ID, timeout=0.5)
    logged = [r.getMessage() for r in caplog.records if "WEIRD" in r.getMessage()]
    assert logged
    for line in logged:
        assert not any(char in line for char in "\x1b\r\n")
        assert "\\x1b" in line


def _cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("sys.stderr", err)
    code = main(argv, environ={})
    return code, out.getvalue(), err.getvalue()


def test_cli_output_escapes_the_services_text(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> tuple[int, str, str]:
        async with hostile_server() as server:
            play_compute(server)
            accepted = json_reply(
                202, {"server": {"id": SERVER_ID, "status": f"REBUILD{CONTROL}", "name": CONTROL}}
            )
            server.route("POST", f"/v2.1/{PROJECT}/servers/", lambda r: accepted)
            failing = f"{SERVER_ID[:-1]}0"
            server.route(  # read before its rebuild, as itself
                "GET",
                f"/v2.1/{PROJECT}/servers/{failing}",
                lambda r: json_reply(200, {"server": {"id": failing, "status": "ACTIVE"}}),
            )
            server.route(
                "POST",
                f"/v2.1/{PROJECT}/servers/{failing}",
                lambda r: json_reply(
                    409, {"conflictingRequest": {"code": 409, "message": CONTROL}}
                ),
            )
            argv = [
                "rebuild", "--no-wait", "--image", IMAGE, SERVER_ID, failing, "--token", "t",
                "--endpoint", f"{server.url}/v2.1/{PROJECT}", "--microversion", "2.1",
            ]  # fmt: skip
            import anyio

            return await anyio.to_thread.run_sync(lambda: _cli(argv, monkeypatch))

    import anyio

    code, out, err = anyio.run(scenario)
    lines = out.splitlines()
    assert len(lines) == 2, out + err  # one line per server: nothing forged
    assert all(not line.startswith("ok ") or SERVER_ID in line for line in lines)
    for text in (out, err):
        assert not any(char in text for char in "\x1b\r\x07")
    assert code == 1


# -- the command line's own inputs -----------------------------------------------------------------


def test_cli_bad_endpoint_is_a_usage_error_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argv = [
        "rebuild",
        "--image",
        IMAGE,
        SERVER_ID,
        "--endpoint",
        "http://[::1/v2.1",
        "--token",
        "t",
    ]
    code, _, err = _cli(argv, monkeypatch)
    assert code == 2
    assert "Traceback" not in err
    assert "endpoint" in err
    assert len(err.strip().splitlines()) == 1


def test_cli_from_file_that_is_not_utf8_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"\xff\xfe" + SERVER_ID.encode("utf-16-le"))
    argv = ["rebuild", "--image", IMAGE, "--from-file", str(ids), "--token", "t",
            "--endpoint", "http://127.0.0.1:9/v2.1"]  # fmt: skip
    code, _, err = _cli(argv, monkeypatch)
    assert code == 2
    assert "not UTF-8" in err
    assert "Traceback" not in err


def test_cli_at_debug_against_an_echoing_service_prints_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scenes import TOKEN, USER_DATA, assert_no_canary, echo

    user_data = tmp_path / "user-data.yaml"
    user_data.write_text(USER_DATA)

    async def scenario() -> tuple[int, str, str]:
        async with hostile_server() as server:
            play_compute(server)
            server.route("POST", f"/v2.1/{PROJECT}/servers/", echo(400, "rebuild"))
            argv = [
                "rebuild", "-vv", "--no-wait", "--image", IMAGE, SERVER_ID, "--token", TOKEN,
                "--user-data", str(user_data), "--endpoint", f"{server.url}/v2.1/{PROJECT}",
            ]  # fmt: skip
            import anyio

            result = await anyio.to_thread.run_sync(lambda: _cli(argv, monkeypatch))
            assert [r for r in server.seen if r.method == "POST"]  # the rebuild was echoed
            return result

    import anyio

    code, out, err = anyio.run(scenario)
    assert code == 1
    assert "DEBUG" in err  # the HTTP stack really logged
    assert "***" in out
    assert_no_canary([out, err])
