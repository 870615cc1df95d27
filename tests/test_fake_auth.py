"""FakeCompute: Keystone tokens, keystonemiddleware's 401, token expiry, AK/SK signatures."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from samples import load_sample

from ecs_rebuild_async._signing import sign
from ecs_rebuild_async.testing import FakeCompute

PROJECT = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def fake() -> FakeCompute:
    return FakeCompute(time_scale=0, token_lifetime=60)


@pytest.fixture
async def http(fake: FakeCompute) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=fake.transport(), base_url=fake.base_url) as client:
        yield client


def _password_auth(
    fake: FakeCompute, *, by_name: bool, password: str | None = None
) -> dict[str, Any]:
    user: dict[str, Any] = {"password": password or fake.password}
    project: dict[str, Any]
    if by_name:
        user |= {"name": fake.username, "domain": {"name": fake.user_domain_name}}
        project = {"name": fake.project_name, "domain": {"id": "default"}}
    else:
        user["id"] = fake.user_id
        project = {"id": fake.project_id}
    identity = {"methods": ["password"], "password": {"user": user}}
    return {"auth": {"identity": identity, "scope": {"project": project}}}


@pytest.mark.anyio
@pytest.mark.parametrize("by_name", [False, True])
async def test_password_token_flow(
    fake: FakeCompute, http: httpx.AsyncClient, by_name: bool
) -> None:
    issued = await http.post("/identity/v3/auth/tokens", json=_password_auth(fake, by_name=by_name))
    sample = load_sample("keystone/v3/samples/auth/responses/project-scoped-password.json")
    token = issued.json()["token"]
    assert issued.status_code == 201
    assert set(token) == set(sample["token"])
    compute = next(e for e in token["catalog"] if e["type"] == "compute")
    urls = {(e["interface"], e["region"]): e["url"] for e in compute["endpoints"]}
    assert urls[("public", "RegionOne")] == fake.compute_url
    assert ("internal", "RegionOne") in urls
    sid = fake.add_server()
    got = await http.get(
        f"{fake.compute_url}/servers/{sid}",
        headers={"X-Auth-Token": issued.headers["x-subject-token"]},
    )
    assert got.status_code == 200
    assert fake.stats.requests[("POST", "tokens")] == 1


@pytest.mark.anyio
async def test_application_credential(fake: FakeCompute, http: httpx.AsyncClient) -> None:
    body = {
        "auth": {
            "identity": {
                "methods": ["application_credential"],
                "application_credential": {"id": fake.app_cred_id, "secret": fake.app_cred_secret},
            }
        }
    }
    assert (await http.post("/identity/v3/auth/tokens", json=body)).status_code == 201


@pytest.mark.anyio
async def test_wrong_password_is_keystone_401(fake: FakeCompute, http: httpx.AsyncClient) -> None:
    refused = await http.post(
        "/identity/v3/auth/tokens", json=_password_auth(fake, by_name=True, password="wrong")
    )
    assert refused.status_code == 401
    assert refused.json()["error"]["title"] == "Unauthorized"
    assert "x-subject-token" not in refused.headers


@pytest.mark.anyio
@pytest.mark.parametrize("token", [None, "unknown"])
async def test_missing_or_unknown_token_is_keystonemiddleware_401(
    fake: FakeCompute, http: httpx.AsyncClient, token: str | None
) -> None:
    headers = {"X-Auth-Token": token} if token else {}
    response = await http.get(f"{fake.compute_url}/servers/detail", headers=headers)
    assert response.status_code == 401
    assert response.json() == load_sample("nova/errors/auth-401-keystonemiddleware.json")
    assert response.headers["www-authenticate"] == f'Keystone uri="{fake.identity_url}"'


@pytest.mark.anyio
async def test_tokens_expire_after_their_lifetime(
    fake: FakeCompute, http: httpx.AsyncClient
) -> None:
    issued = await http.post("/identity/v3/auth/tokens", json=_password_auth(fake, by_name=False))
    headers = {"X-Auth-Token": issued.headers["x-subject-token"]}
    url = f"{fake.compute_url}/servers"
    assert (await http.get(url, headers=headers)).status_code == 200
    fake.advance(60)
    assert (await http.get(url, headers=headers)).status_code == 401
    assert (await http.get(url, headers={"X-Auth-Token": fake.token})).status_code == 200
    fake.expire_tokens()
    assert (await http.get(url, headers={"X-Auth-Token": fake.token})).status_code == 401
    assert (await http.get(url, headers={"X-Auth-Token": fake.issue_token()})).status_code == 200


@pytest.mark.parametrize("name", ["ecs-nova-rebuild", "ecs-nova-list-detail-changes-since"])
def test_published_signature_vectors_are_accepted(name: str) -> None:
    vectors = load_sample("huaweicloud/signer/sdk-hmac-sha256-vectors.json")
    vector = next(v for v in vectors["vectors"] if v["name"] == name)
    fake = FakeCompute(time_scale=0, project_id=PROJECT, ak="AccessKey", sk="SecretKey")
    fake.add_server(server_id="a0a80a94-3d81-4a10-822a-daa0cf9e870b")
    fake.add_image("vector", "70a599e0-31e7-49b7-b260-868f441e862b")
    path, _, query = vector["request_uri_sent"].partition("?")
    headers = list(vector["headers_after_signing"].items())
    body = vector["request"]["body"].encode()
    status, _, _ = fake.handle(vector["request"]["method"], path, query, headers, body)
    assert status in (200, 202)
    tampered = body.replace(b"foobar", b"foobaz") if body else b""
    bad_query = query.replace("100", "101")
    assert fake.handle(vector["request"]["method"], path, bad_query, headers, tampered)[0] == 401


@pytest.mark.anyio
async def test_library_signer_round_trip(fake: FakeCompute, http: httpx.AsyncClient) -> None:
    sid = fake.add_server()
    url = f"{fake.compute_url}/servers/{sid}/action"
    body = json.dumps({"rebuild": {"imageRef": fake.default_image}}).encode()
    headers = {"Content-Type": "application/json", "X-Project-Id": fake.project_id}
    signed = sign("POST", url, headers, body, fake.ak, fake.sk)
    accepted = await http.post(url, content=body, headers={**headers, **signed})
    assert accepted.status_code == 202
    wrong = sign("POST", url, headers, body, fake.ak, "not-the-secret")
    refused = await http.post(url, content=body, headers={**headers, **wrong})
    assert refused.status_code == 401
    assert refused.json()["error_code"] == "APIGW.0301"
    assert fake.rebuilds_accepted(sid) == 1
