"""Auth flows at the HTTP boundary: respx answers as Keystone and as the compute service."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
import respx
from samples import load_sample

from ecs_rebuild_async import InvalidRequest, ResponseError, Unauthorized
from ecs_rebuild_async._auth import AkSkAuth, Auth, KeystoneAuth, TokenAuth, build_auth
from ecs_rebuild_async._config import AuthKind, ClientConfig
from ecs_rebuild_async._errors import error_from_response
from ecs_rebuild_async._signing import sign

IDENTITY = "http://127.0.0.1:5000/identity/v3"
TOKENS = f"{IDENTITY}/auth/tokens"
COMPUTE = "http://127.0.0.1:8774/v2.1/a6944d763bf64ee6a275f1263fae0352"
SERVER = f"{COMPUTE}/servers/s-1"
PASSWORD = "devstacker"
SECRETS = (PASSWORD, "app-secret", "tok-1", "the-token", "the-sk", "the-ak", "sts-token")

WITH_COMPUTE = "keystone/v3/samples/admin/auth-password-project-scoped-response.json"
WITHOUT_COMPUTE = "keystone/v3/samples/auth/responses/project-scoped-password.json"


class Keystone:
    """Keystone's token endpoint: hands out tok-1, tok-2, ... and records each request."""

    def __init__(self, sample: str = WITH_COMPUTE, *, lifetime_zero_for: int = 0) -> None:
        self.body: dict[str, Any] = load_sample(sample)
        self.requests: list[httpx.Request] = []
        self.lifetime_zero_for = lifetime_zero_for
        self.waiting_tasks_seen: int | None = None
        self.started: list[int] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        # Let every other ready task run up to the lock before answering.
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        if self.waiting_tasks_seen is None:
            self.waiting_tasks_seen = len(self.started)
        body = copy.deepcopy(self.body)
        if len(self.requests) <= self.lifetime_zero_for:
            # Expires as it is issued (by Keystone's clock): due for refresh at once.
            body["token"]["expires_at"] = body["token"]["issued_at"]
        return httpx.Response(
            201, json=body, headers={"X-Subject-Token": f"tok-{len(self.requests)}"}
        )


class Compute:
    """The compute service: 200 for a token it accepts, 401 otherwise."""

    def __init__(self, rejected: set[str] | None = None) -> None:
        self.tokens: list[str | None] = []
        self.rejected = rejected or set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        token = request.headers.get("X-Auth-Token")
        self.tokens.append(token)
        if token is None or token in self.rejected:
            return httpx.Response(
                401, json=load_sample("nova/errors/auth-401-keystonemiddleware.json")
            )
        return httpx.Response(200, json={"server": {"id": "s-1"}})


@pytest.fixture
def router() -> respx.MockRouter:
    return respx.MockRouter(assert_all_called=False)


@pytest.fixture
async def client(router: respx.MockRouter) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(router.async_handler)) as http:
        yield http


def keystone_auth(**overrides: Any) -> KeystoneAuth:
    settings: dict[str, Any] = {
        "user_id": "ee4dfb6e5540447cb3741905149d9b6e",
        "password": PASSWORD,
        "project_id": "a6944d763bf64ee6a275f1263fae0352",
    }
    settings.update(overrides)
    return KeystoneAuth(IDENTITY, **settings)


# -- TokenAuth -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_token_auth_sets_header_and_returns_401_as_is(
    router: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    compute = Compute(rejected={"the-token"})
    router.get(SERVER).mock(side_effect=compute)
    response = await client.get(SERVER, auth=TokenAuth("the-token"))
    assert response.status_code == 401
    assert compute.tokens == ["the-token"]


def test_token_auth_refuses_sync_clients() -> None:
    with (
        httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200))) as http,
        pytest.raises(TypeError, match="AsyncClient"),
    ):
        http.get("http://127.0.0.1/x", auth=TokenAuth("the-token"))


def test_empty_token_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match="token"):
        TokenAuth("")


# -- Keystone request bodies -----------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("settings", "sample"),
    [
        (
            {
                "user_id": "ee4dfb6e5540447cb3741905149d9b6e",
                "project_id": "a6944d763bf64ee6a275f1263fae0352",
            },
            "project-id-password.json",
        ),
        (
            {
                "user_id": "ee4dfb6e5540447cb3741905149d9b6e",
                "project_name": "admin",
                "project_domain_id": "default",
            },
            "project-name-password.json",
        ),
    ],
)
async def test_password_request_body_matches_keystone_sample(
    router: respx.MockRouter, client: httpx.AsyncClient, settings: dict[str, Any], sample: str
) -> None:
    keystone = Keystone()
    router.post(TOKENS).mock(side_effect=keystone)
    router.get(SERVER).mock(side_effect=Compute())
    auth = KeystoneAuth(IDENTITY, password=PASSWORD, **settings)
    response = await client.get(SERVER, auth=auth)
    assert response.status_code == 200
    expected = load_sample(f"keystone/v3/samples/auth/requests/{sample}")
    assert json.loads(keystone.requests[0].content) == expected


@pytest.mark.anyio
async def test_password_by_names_with_domains(
    router: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    keystone = Keystone()
    router.post(TOKENS).mock(side_effect=keystone)
    router.get(SERVER).mock(side_effect=Compute())
    auth = KeystoneAuth(
        IDENTITY,
        username="admin",
        password=PASSWORD,
        user_domain_name="Default",
        project_name="demo",
        project_domain_name="Default",
    )
    await client.get(SERVER, auth=auth)
    assert json.loads(keystone.requests[0].content) == {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": "admin", "domain": {"name": "Default"}, "password": PASSWORD}
                },
            },
            "scope": {"project": {"domain": {"name": "Default"}, "name": "demo"}},
        }
    }


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("settings", "credential"),
    [
        (
            {"application_credential_id": "ac-1"},
            {"id": "ac-1", "secret": "app-secret"},
        ),
        (
            {
                "application_credential_name": "ci",
                "username": "bot",
                "user_domain_id": "default",
            },
            {
                "name": "ci",
                "secret": "app-secret",
                "user": {"name": "bot", "domain": {"id": "default"}},
            },
        ),
    ],
)
async def test_application_credential_body_has_no_scope(
    router: respx.MockRouter,
    client: httpx.AsyncClient,
    settings: dict[str, Any],
    credential: dict[str, Any],
) -> None:
    keystone = Keystone()
    router.post(TOKENS).mock(side_effect=keystone)
    router.get(SERVER).mock(side_effect=Compute())
    auth = KeystoneAuth(IDENTITY, application_credential_secret="app-secret", **settings)
    await client.get(SERVER, auth=auth)
    assert json.loads(keystone.requests[0].content) == {
        "auth": {
            "identity": {
                "methods": ["application_credential"],
                "application_credential": credential,
            }
        }
    }


@pytest.mark.anyio
async def test_auth_url_without_v3_gets_it(
    router: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    keystone = Keystone()
    router.post(TOKENS).mock(side_effect=keystone)
    router.get(SERVER).mock(side_effect=Compute())
    auth = KeystoneAuth(IDENTITY.removesuffix("/v3") + "/", user_id="u", password=PASSWORD)
    assert (await client.get(SERVER, auth=auth)).status_code == 200
    assert str(keystone.requests[0].url) == TOKENS


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"user_id": "u"}, "password"),
        ({"username": "u", "password": "pw-secret"}, "user_domain_name"),
        ({"password": "pw-secret"}, "username"),
        ({"user_id": "u", "password": "pw-secret", "project_name": "x"}, "project_domain_name"),
        ({"application_credential_id": "a"}, "application_credential_secret"),
        (
            {"application_credential_secret": "s-secret", "application_credential_name": "n"},
            "username",
        ),
    ],
)
def test_incomplete_keystone_settings_name_the_missing_piece(
    settings: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        KeystoneAuth(IDENTITY, **settings)
    assert caught.value.field == field
    assert "pw-secret" not in str(caught.value)
    assert "s-secret" not in str(caught.value)


# -- catalog ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_compute_endpoint_from_catalog(
    router: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    keystone = Keystone()
    router.post(TOKENS).mock(side_effect=keystone)
    auth = keystone_auth()
    assert await auth.compute_endpoint(client) == (
        "http://23.253.248.171:8774/v2.1/a6944d763bf64ee6a275f1263fae0352"
    )
    assert await auth.compute_endpoint(client, interface="internal", region="RegionOne") == (
        "http://23.253.248.171:8774/v2.1/a6944d763bf64ee6a275f1263fae0352"
    )
    # The token is reused for the later request: one token POST in all.
    router.get(SERVER).mock(side_effect=Compute())
    await client.get(SERVER, auth=auth)
    assert len(keystone.requests) == 1
    assert auth.project_id == "a6944d763bf64ee6a275f1263fae0352"


@pytest.mark.anyio
async def test_catalog_endpoint_matched_by_region_id_only(
    router: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    keystone = Keystone()
    keystone.body["token"]["catalog"] = [
        {
            "type": "compute",
            "endpoints": [
                {"interface": "public", "region_id": "eu-de", "url": "https://ecs.eu-de/v2.1"},
                {"interface": "public", "region_id": "eu-nl", "url": "https://ecs.eu-nl/v2.1"},
            ],
        }
    ]
    router.post(TOKENS).mock(side_effect=keystone)
    auth = keystone_auth(region="eu-nl")
    assert await auth.compute_endpoint(client) == "https://ecs.eu-nl/v2.1"
    assert await auth.compute_endpoint(client, region="eu-de") == "https://ecs.eu-de/v2.1"
    # A region the catalog lacks is the user's setting to fix: it names the regions there are.
    with pytest.raises(InvalidRequest, match=r"region 'eu-fr'.*regions are: eu-de, eu-nl"):
        await auth.compute_endpoint(client, region="eu-fr")


@pytest.mark.anyio
async def test_catalog_without_compute_is_a_response_error(
    router: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    router.post(TOKENS).mock(side_effect=Keystone(WITHOUT_COMPUTE))
    with pytest.raises(ResponseError, match="no 'compute' service"):
        await keystone_auth().compute_endpoint(client)


@pytest.mark.anyio
async def test_token_and_aksk_have_no_catalog(client: httpx.AsyncClient) -> None:
    assert await TokenAuth("the-token").compute_endpoint(client) is None
    assert await AkSkAuth("the-ak", "the-sk").compute_endpoint(client) is None


# -- single flight and refresh ---------------------------------------------------------------


@pytest.mark.anyio
async def test_hundred_concurrent_requests_cause_one_token_request(
    router: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    keystone = Keystone()
    compute = Compute()
    router.post(TOKENS).mock(side_effect=keystone)
    router.get(SERVER).mock(side_effect=compute)
    auth = keystone_auth()
    statuses: list[int] = []

    async def one(index: int) -> None:
        keystone.started.append(index)
        statuses.append((await client.get(SERVER, auth=auth)).status_code)

    async with anyio.create_task_group() as group:
        for index in range(100):
            group.start_soon(one, index)
    assert len(keystone.requests) == 1
    assert keystone.waiting_tasks_seen == 100  # they really were all waiting for it
    assert statuses == [200] * 100
    assert compute.tokens == ["tok-1"] * 100


@pytest.mark.anyio
async def test_expiring_token_is_refreshed_before_use(
    router: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    keystone = Keystone(lifetime_zero_for=1)
    compute = Compute()
    router.post(TOKENS).mock(side_effect=keystone)
    router.get(SERVER).mock(side_effect=compute)
    # No bound on re-authentication: a token given already expired is replaced at its next use.
    auth = keystone_auth(min_reauth_interval=0)
    for _ in range(3):
        assert (await client.get(SERVER, auth=auth)).status_code == 200
    assert compute.tokens == ["tok-1", "tok-2", "tok-2"]
    assert len(keystone.requests) == 2


@pytest.mark.anyio
async def test_token_given_already_expired_is_kept_for_the_reauth_interval(
    router: respx.MockRouter, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    keystone = Keystone(lifetime_zero_for=1)
    compute = Compute()
    router.post(TOKENS).mock(side_effect=keystone)
    router.get(SERVER).mock(side_effect=compute)
    auth = keystone_auth(min_reauth_interval=3600)  # cannot pass between two requests
    for _ in range(3):
        assert (await client.get(SERVER, auth=auth)).status_code == 200
    assert compute.tokens == ["tok-1"] * 3
    assert len(keystone.requests) == 1
    assert [r.levelname for r in caplog.records if "already expired" in r.getMessage()] == [
        "WARNING"
    ]


@pytest.mark.anyio
async def test_401_reauthenticates_once_and_repeats_the_request(
    router: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    keystone = Keystone()
    compute = Compute(rejected={"tok-1"})
    router.post(TOKENS).mock(side_effect=keystone)
    router.post(f"{SERVER}/action").mock(side_effect=compute)
    response = await client.post(f"{SERVER}/action", json={"rebuild": {}}, auth=keystone_auth())
    assert response.status_code == 200
    assert compute.tokens == ["tok-1", "tok-2"]
    assert len(keystone.requests) == 2
    # The same body both times (its spacing is httpx's: it changed in 0.28).
    bodies = [call.request.content for call in router.calls if "action" in str(call.request.url)]
    assert len(bodies) == 2
    assert bodies[0] == bodies[1]
    assert json.loads(bodies[0]) == {"rebuild": {}}


@pytest.mark.anyio
async def test_hundred_concurrent_401s_cause_one_reauthentication(
    router: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    keystone = Keystone()
    compute = Compute(rejected={"tok-1"})
    router.post(TOKENS).mock(side_effect=keystone)
    router.get(SERVER).mock(side_effect=compute)
    auth = keystone_auth()
    # Everyone holds tok-1 before the service starts refusing it.
    router.get(f"{COMPUTE}/warm").mock(return_value=httpx.Response(200))
    await client.get(f"{COMPUTE}/warm", auth=auth)
    statuses: list[int] = []

    async def one() -> None:
        statuses.append((await client.get(SERVER, auth=auth)).status_code)

    async with anyio.create_task_group() as group:
        for _ in range(100):
            group.start_soon(one)
    assert statuses == [200] * 100
    assert len(keystone.requests) == 2
    assert compute.tokens.count("tok-2") == 100


@pytest.mark.anyio
async def test_second_401_is_returned_not_looped(
    router: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    keystone = Keystone()
    compute = Compute(rejected={"tok-1", "tok-2", "tok-3"})
    router.post(TOKENS).mock(side_effect=keystone)
    router.get(SERVER).mock(side_effect=compute)
    response = await client.get(SERVER, auth=keystone_auth())
    assert response.status_code == 401
    assert compute.tokens == ["tok-1", "tok-2"]
    assert len(keystone.requests) == 2
    error = error_from_response(response.status_code, response.headers, response.content)
    assert isinstance(error, Unauthorized)


# -- bad answers from Keystone ---------------------------------------------------------------


@pytest.mark.anyio
async def test_keystone_401_raises_unauthorized(
    router: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    router.post(TOKENS).mock(
        return_value=httpx.Response(
            401,
            json={
                "error": {
                    "code": 401,
                    "title": "Unauthorized",
                    "message": "The request you have made requires authentication.",
                }
            },
            headers={"X-Openstack-Request-Id": "req-1"},
        )
    )
    compute = Compute()
    router.get(SERVER).mock(side_effect=compute)
    with pytest.raises(Unauthorized) as caught:
        await client.get(SERVER, auth=keystone_auth())
    assert caught.value.request_id == "req-1"
    assert PASSWORD not in str(caught.value)
    assert compute.tokens == []  # the request itself was never sent


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (httpx.Response(201, json=load_sample(WITH_COMPUTE)), "X-Subject-Token"),
        (
            httpx.Response(
                200,
                text="<html><body>Gateway login</body></html>",
                headers={"Content-Type": "text/html", "X-Subject-Token": "x"},
            ),
            "not JSON",
        ),
        (httpx.Response(201, json={"nope": 1}, headers={"X-Subject-Token": "x"}), "'token'"),
        (
            httpx.Response(201, json={"token": {"catalog": []}}, headers={"X-Subject-Token": "x"}),
            "expires_at",
        ),
        (
            httpx.Response(302, headers={"Location": "http://127.0.0.1/login"}),
            "302 Found, a redirect",
        ),
    ],
)
async def test_bad_token_answers_are_response_errors(
    router: respx.MockRouter, client: httpx.AsyncClient, answer: httpx.Response, message: str
) -> None:
    router.post(TOKENS).mock(return_value=answer)
    router.get(SERVER).mock(side_effect=Compute())
    with pytest.raises(ResponseError, match=message):
        await client.get(SERVER, auth=keystone_auth())


@pytest.mark.anyio
async def test_keystone_transport_error_propagates_with_the_token_request(
    router: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    router.post(TOKENS).mock(side_effect=httpx.ConnectError("refused"))
    compute = Compute()
    router.get(SERVER).mock(side_effect=compute)
    with pytest.raises(httpx.ConnectError) as caught:
        await client.get(SERVER, auth=keystone_auth())
    assert str(caught.value.request.url) == TOKENS
    assert compute.tokens == []


# -- AK/SK -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_aksk_signs_the_request_as_sent(
    router: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    route = router.post(f"{SERVER}/action").mock(return_value=httpx.Response(202))
    auth = AkSkAuth("the-ak", "the-sk", project_id="p-1", security_token="sts-token")
    response = await client.post(
        f"{SERVER}/action",
        params={"a": "x y", "b": "1"},
        json={"rebuild": {"imageRef": "i"}},
        headers={"X-OpenStack-Nova-API-Version": "2.60"},
        auth=auth,
    )
    assert response.status_code == 202
    sent = route.calls.last.request
    authorization = sent.headers["Authorization"]
    assert authorization.startswith("SDK-HMAC-SHA256 Access=the-ak, SignedHeaders=")
    signed = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    for name in ("host", "x-project-id", "x-security-token", "x-sdk-date", "content-type"):
        assert name in signed
    assert "x-openstack-nova-api-version" in signed
    assert sent.headers["X-Project-Id"] == "p-1"
    assert sent.headers["X-Security-Token"] == "sts-token"
    assert sent.url.query == b"a=x%20y&b=1"
    # Verify independently: re-sign exactly the signed headers of the request received.
    headers = {name: sent.headers[name] for name in signed}
    expected = sign("POST", str(sent.url), headers, sent.content, "the-ak", "the-sk")
    assert expected["Authorization"] == authorization


@pytest.mark.anyio
async def test_aksk_each_attempt_is_signed_afresh(
    router: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    route = router.get(SERVER).mock(return_value=httpx.Response(200))
    auth = AkSkAuth("the-ak", "the-sk")
    request = client.build_request("GET", SERVER)
    request.headers["X-Sdk-Date"] = "20000101T000000Z"
    await client.send(request, auth=auth)
    sent = route.calls.last.request
    assert sent.headers["X-Sdk-Date"] != "20000101T000000Z"
    assert len(sent.headers.get_list("Authorization")) == 1


def test_aksk_needs_both_keys() -> None:
    with pytest.raises(InvalidRequest):
        AkSkAuth("the-ak", "")


# -- reprs and redaction ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_reprs_never_show_secrets(
    router: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    router.post(TOKENS).mock(side_effect=Keystone())
    router.get(SERVER).mock(side_effect=Compute())
    keystone = keystone_auth()
    await client.get(SERVER, auth=keystone)  # holds a token now
    app = KeystoneAuth(
        IDENTITY, application_credential_id="a", application_credential_secret="app-secret"
    )
    auths: list[Auth] = [
        TokenAuth("the-token"),
        keystone,
        app,
        AkSkAuth("the-ak", "the-sk", project_id="p", security_token="sts-token"),
    ]
    for auth in auths:
        text = repr(auth)
        assert type(auth).__name__ in text
        for secret in SECRETS:
            assert secret not in text
        assert {"x-auth-token", "authorization", "x-security-token", "x-subject-token"} <= (
            auth.redacted_headers
        )


# -- build_auth ------------------------------------------------------------------------------


def test_build_auth_from_config() -> None:
    token = build_auth(ClientConfig(auth_kind=AuthKind.TOKEN, token="the-token", endpoint=COMPUTE))
    assert isinstance(token, TokenAuth)
    aksk = build_auth(
        ClientConfig(auth_kind=AuthKind.AKSK, ak="the-ak", sk="the-sk", project_id="p")
    )
    assert isinstance(aksk, AkSkAuth)
    assert aksk.project_id == "p"
    keystone = build_auth(
        ClientConfig(
            auth_kind=AuthKind.PASSWORD,
            auth_url=IDENTITY,
            user_id="u",
            password=PASSWORD,
            region="RegionOne",
            interface="internal",
        )
    )
    assert isinstance(keystone, KeystoneAuth)
    assert (keystone.region, keystone.interface) == ("RegionOne", "internal")


@pytest.mark.anyio
async def test_failed_token_request_is_shared_by_waiting_requests(
    router: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    # Repeating bad credentials once per waiting request could lock the account out.
    keystone_calls: list[httpx.Request] = []

    async def refuse(request: httpx.Request) -> httpx.Response:
        keystone_calls.append(request)
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        return httpx.Response(401, json={"error": {"code": 401, "message": "bad"}})

    router.post(TOKENS).mock(side_effect=refuse)
    router.get(SERVER).mock(side_effect=Compute())
    auth = keystone_auth()
    errors: list[BaseException] = []

    async def one() -> None:
        try:
            await client.get(SERVER, auth=auth)
        except Unauthorized as exc:
            errors.append(exc)

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(one)
    assert len(keystone_calls) == 1
    assert len(errors) == 20
    assert len({id(error) for error in errors}) == 20
    # A later request tries again.
    with pytest.raises(Unauthorized):
        await client.get(SERVER, auth=auth)
    assert len(keystone_calls) == 2
