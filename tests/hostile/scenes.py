"""The behaviours the hostile server plays, and the canaries it tries to make leak."""

from __future__ import annotations

import base64
import json
import logging
import traceback
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hostile_service import HostileServer, Reply, Seen

from ecs_rebuild_async import AkSkAuth, Auth, KeystoneAuth, RebuildRequest, TokenAuth

PROJECT = "0123456789abcdef0123456789abcdef"
SERVER_ID = "b1d0c0a8-6d5e-4f7e-9c1b-2a3b4c5d6e7f"
IMAGE = "d2e1a8c0-36b1-4a3a-a7c5-2f0e7a8d1b11"
JSON = (("Content-Type", "application/json"),)

# Every kind of secret the client holds, each a recognizable canary.
PASSWORD = "PasswordCanary-3e1f9a"
APP_SECRET = "AppCredSecretCanary-77c2d1"
TOKEN = "FixedTokenCanary-a90b2c"
ISSUED = "IssuedTokenCanary-"  # + a number: every token the hostile Keystone gives
AK = "AccessKeyCanaryQ7TXZ2"
SK = "SecretKeyCanary-5b8e3f0c1d"
SECURITY_TOKEN = "SecurityTokenCanary-e4d2c1"
ADMIN_PASS = "AdminPassCanary-0f6a2b"
USER_DATA = "#cloud-config\nuser_data_line: UserDataCanary-8c1e7d\n"
USER_DATA_B64 = base64.b64encode(USER_DATA.encode()).decode()
CANARIES = (
    PASSWORD,
    APP_SECRET,
    TOKEN,
    ISSUED,
    AK,
    SK,
    SECURITY_TOKEN,
    ADMIN_PASS,
    "UserDataCanary",
    USER_DATA_B64,
    USER_DATA_B64[:24],
)


def rebuild_request() -> RebuildRequest:
    return RebuildRequest(image_ref=IMAGE, name="web-1", admin_pass=ADMIN_PASS, user_data=USER_DATA)


def json_reply(status: int, document: Any, *headers: tuple[str, str]) -> Reply:
    return Reply(status, (*JSON, *headers), json.dumps(document).encode())


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000000Z")


# -- Keystone ----------------------------------------------------------------------------------


def token_document(
    server: HostileServer,
    *,
    compute_url: str | None = None,
    expires_at: str | None = None,
    issued_at: str | None = None,
    endpoints: Any = None,
) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    url = compute_url or f"{server.url}/v2.1/{PROJECT}"
    return {
        "token": {
            "methods": ["password"],
            "expires_at": expires_at or iso(now + timedelta(hours=1)),
            "issued_at": issued_at or iso(now),
            "project": {"id": PROJECT, "name": "demo"},
            "catalog": [
                {
                    "type": "compute",
                    "name": "nova",
                    "endpoints": endpoints
                    if endpoints is not None
                    else [{"interface": "public", "region_id": "RegionOne", "url": url}],
                }
            ],
        }
    }


class Keystone:
    """Gives tokens ``IssuedTokenCanary-N``; ``document`` changes what the answer says."""

    def __init__(self, server: HostileServer, **document: Any) -> None:
        self.server = server
        self.document = document
        self.issued: list[str] = []

    def __call__(self, request: Seen) -> Reply:
        token = f"{ISSUED}{len(self.issued) + 1}"
        self.issued.append(token)
        return json_reply(
            201, token_document(self.server, **self.document), ("X-Subject-Token", token)
        )


def echo(status: int, what: str = "request") -> Any:
    """An error answer quoting the whole request back: headers, body, and user_data decoded."""

    def handler(request: Seen) -> Reply:
        body = request.body.decode("utf-8", "replace")
        decoded = ""
        try:
            wire = json.loads(body)["rebuild"]["user_data"]
            decoded = base64.b64decode(wire).decode()
        except (ValueError, KeyError, TypeError):
            pass
        headers = "; ".join(f"{k}: {v}" for k, v in request.headers.items())
        message = f"The {what} is invalid: {body} headers {headers} user_data {decoded}"
        return json_reply(
            status,
            {"error": {"code": status, "title": "Rejected", "message": message}},
            ("X-Openstack-Request-Id", request.headers.get("x-auth-token", "req-1")),
        )

    return handler


# -- compute -------------------------------------------------------------------------------------


def versions(request: Seen) -> Reply:
    return json_reply(
        200,
        {"version": {"id": "v2.1", "status": "CURRENT", "version": "2.60", "min_version": "2.1"}},
    )


def server_reply(status: str = "ACTIVE", **fields: Any) -> Reply:
    return json_reply(200, {"server": {"id": SERVER_ID, "status": status, "name": "web", **fields}})


def play_compute(server: HostileServer, prefix: str = "/v2.1") -> None:
    server.route("GET", prefix, versions)
    server.route("GET", f"{prefix}/{PROJECT}/servers/", lambda r: server_reply())


def play_keystone(server: HostileServer, **document: Any) -> Keystone:
    keystone = Keystone(server, **document)
    server.route("POST", "/identity/v3/auth/tokens", keystone)
    return keystone


# -- clients ---------------------------------------------------------------------------------------


def keystone_auth(base: str, *, application_credential: bool = False, **extra: Any) -> KeystoneAuth:
    if application_credential:
        return KeystoneAuth(
            f"{base}/identity/v3",
            application_credential_id="app-1",
            application_credential_secret=APP_SECRET,
            **extra,
        )
    return KeystoneAuth(
        f"{base}/identity/v3", user_id="u-1", password=PASSWORD, project_id=PROJECT, **extra
    )


def auth_of(kind: str, server: HostileServer) -> Auth:
    if kind == "token":
        return TokenAuth(TOKEN)
    if kind == "aksk":
        return AkSkAuth(AK, SK, project_id=PROJECT, security_token=SECURITY_TOKEN)
    if kind == "application_credential":
        return keystone_auth(server.url, application_credential=True)
    return keystone_auth(server.url)


def transport_of(protocol: str) -> httpx.AsyncBaseTransport:
    """HTTP/1.1, or HTTP/2 with prior knowledge (hpack then logs every header it codes)."""
    if protocol == "http2":
        return httpx.AsyncHTTPTransport(http1=False, http2=True)
    return httpx.AsyncHTTPTransport()


# -- canary checks ---------------------------------------------------------------------------------


def debug_everything(caplog: pytest.LogCaptureFixture) -> None:
    """The root logger at DEBUG: every logger of the HTTP stack, children included, records."""
    caplog.set_level(logging.DEBUG)


def texts_of_error(error: BaseException) -> list[str]:
    texts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    texts += [str(arg) for arg in error.args]
    for name in ("message", "code", "request_id", "evidence", "server", "fault"):
        if hasattr(error, name):
            texts.append(repr(getattr(error, name)))
    # The fault's own values, as a program would print them, not only its repr.
    server = getattr(error, "server", None)
    for fault in (getattr(error, "fault", None), getattr(server, "fault", None)):
        if fault is not None:
            texts += [fault.message, str(fault.details)]
    return texts


def texts_of_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    texts = [caplog.text]
    for record in caplog.records:
        texts.append(record.getMessage())
        texts.append(record.exc_text or "")
    return texts


def assert_no_canary(texts: Iterable[str]) -> None:
    for text in texts:
        for canary in CANARIES:
            assert canary not in text, f"{canary!r} leaked into {text[:300]!r}"
