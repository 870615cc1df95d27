"""Credentials written into a URL (``user:password@host``) are refused before anything is sent,
and the refusal does not repeat them; a service catalog naming such a URL is a ResponseError."""

from __future__ import annotations

import copy
import logging

import httpx
import pytest
import respx
from samples import load_sample

from ecs_rebuild_async import (
    AsyncEcsClient,
    InvalidRequest,
    KeystoneAuth,
    RebuildRequest,
    ResponseError,
    TokenAuth,
)

IDENTITY = "http://127.0.0.1:5000/identity/v3"
SERVER_ID = "a0a80a94-3d81-4a10-822a-daa0cf9e870b"
REQUEST = RebuildRequest(image_ref="70a5e0a4-0000-4000-8000-00000000000b")
PASSWORD = "s3cret-in-url"


@pytest.mark.parametrize(
    "endpoint",
    [
        f"http://alice:{PASSWORD}@127.0.0.1:8774/v2.1/p",
        f"https://alice:{PASSWORD}@compute.example/v2.1/p?x=1",
        f"alice:{PASSWORD}@compute.example/v2.1/p",  # no scheme either
        f"https://{PASSWORD}@compute.example/v2.1",
    ],
)
def test_an_endpoint_with_credentials_is_refused_without_repeating_them(endpoint: str) -> None:
    with respx.mock(assert_all_called=False) as router:
        with pytest.raises(InvalidRequest) as caught:
            AsyncEcsClient(endpoint, auth=TokenAuth("tok"))
        assert not router.calls
    assert caught.value.field == "endpoint"
    assert "credentials" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(caught.value)


def test_an_auth_url_with_credentials_is_refused_without_repeating_them() -> None:
    with pytest.raises(InvalidRequest) as caught:
        KeystoneAuth(
            f"https://bob:{PASSWORD}@keystone.example/v3",
            username="bob",
            password="other",
            project_name="p",
            user_domain_name="Default",
            project_domain_name="Default",
        )
    assert caught.value.field == "auth_url"
    assert PASSWORD not in str(caught.value)


@pytest.mark.anyio
async def test_a_catalog_endpoint_with_credentials_is_a_response_error_and_not_used(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = copy.deepcopy(
        load_sample("keystone/v3/samples/admin/auth-password-project-scoped-response.json")
    )
    for service in body["token"]["catalog"]:
        if service["type"] == "compute":
            for endpoint in service["endpoints"]:
                endpoint["url"] = f"http://eve:{PASSWORD}@127.0.0.1:8774/v2.1/p"
    caplog.set_level(logging.DEBUG)
    async with respx.mock(assert_all_called=False) as router:
        router.post(f"{IDENTITY}/auth/tokens").mock(
            return_value=httpx.Response(201, json=body, headers={"X-Subject-Token": "tok-1"})
        )
        compute = router.route(host="127.0.0.1", port=8774).mock(return_value=httpx.Response(500))
        auth = KeystoneAuth(
            IDENTITY,
            user_id="ee4dfb6e5540447cb3741905149d9b6e",
            password="devstacker",
            project_id="a6944d763bf64ee6a275f1263fae0352",
        )
        async with AsyncEcsClient(auth=auth, transport=httpx.AsyncHTTPTransport()) as ecs:
            with pytest.raises(ResponseError) as caught:
                await ecs.rebuild(SERVER_ID, REQUEST)
    assert "credentials" in str(caught.value)
    assert not compute.called
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in caplog.text
