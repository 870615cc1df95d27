"""Microversions against the real service: negotiation, the strict models at every version,
and rebuilds whose wire requests the service accepts unchanged (Nova rejects unknown fields)."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest

from ecs_rebuild_async import (
    NOVA,
    APIVersion,
    MicroversionError,
    PersonalityFile,
    RebuildRequest,
    ServerStatus,
    VersionRange,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

HIGHEST = APIVersion(2, 100)
USER_DATA = "#!/bin/sh\necho rebuilt by the integration suite\n"


def v(text: str) -> APIVersion:
    major, minor = text.split(".")
    return APIVersion(int(major), int(minor))


def full_request(target: Any, version: APIVersion, image: str, label: str) -> RebuildRequest:
    """Every field the rebuild schema accepts at ``version`` (and the dialect allows)."""
    fields: dict[str, Any] = {
        "image_ref": image,
        "name": f"it-{label}",
        "metadata": {"suite": "integration", "microversion": str(version)},
    }
    if target.dialect is NOVA:
        fields.update(
            admin_pass="it-Secret-1",
            preserve_ephemeral=False,
            disk_config="MANUAL",
            access_ipv4="192.0.2.10",
            access_ipv6="2001:db8::10",
        )
        if version < v("2.57"):
            fields["personality"] = [PersonalityFile("/etc/ecs-it.txt", "integration")]
    if version >= v("2.19"):
        fields["description"] = f"rebuilt at {version}"
    if version >= v("2.54"):
        fields["key_name"] = target.keypair
    if version >= v("2.57"):
        fields["user_data"] = USER_DATA
    if version >= v("2.63"):
        fields["trusted_image_certificates"] = None
    if version >= v("2.90"):
        fields["hostname"] = f"it-host-{version.minor}"
    return RebuildRequest(**fields)


async def in_range(target: Any, version: APIVersion) -> None:
    low, high = await target.service_range()
    if not low <= version <= high:
        pytest.skip(f"the service offers {low}-{high}, not {version}")


async def test_versions_and_negotiation_follow_the_service(target: Any) -> None:
    low, high = await target.service_range()
    image = target.need("image")
    async with target.client() as ecs:
        assert await ecs.versions() == VersionRange(low, high)
        top = min(high, HIGHEST)
        assert await ecs.negotiate(RebuildRequest(image_ref=image)) == top
        assert await ecs.negotiate(RebuildRequest(image_ref=image, key_name="k")) == top
        if low <= v("2.56") <= high:
            with_files = RebuildRequest(image_ref=image, personality=[PersonalityFile("/a", "b")])
            assert await ecs.negotiate(with_files) == v("2.56")
        with pytest.raises(MicroversionError):
            await ecs.negotiate(
                RebuildRequest(
                    image_ref=image, personality=[PersonalityFile("/a", "b")], user_data="x"
                )
            )
    beyond = APIVersion(high.major, high.minor + 1)
    async with target.client(microversion=beyond) as pinned:
        with pytest.raises(MicroversionError):
            await pinned.rebuild(str(uuid.uuid4()), RebuildRequest(image_ref=image))


async def test_every_microversion_parses_with_the_strict_models(
    target: Any, model_problems: Any
) -> None:
    """Every server body at every microversion: no field lost, none invented."""
    low, high = await target.service_range()
    servers = [s for s in (target.paused_server, target.locked_server) if s is not None]
    if not servers:
        pytest.skip("ECS_IT_PAUSED_SERVER or ECS_IT_LOCKED_SERVER is needed to read servers")
    problems: list[str] = []
    async with target.raw() as http:
        for minor in range(low.minor, min(high, HIGHEST).minor + 1):
            version = APIVersion(2, minor)
            async with target.client(microversion=version) as ecs:
                for server_id in servers:
                    server = await ecs.get_server(server_id)
                    raw = await target.raw_server(server_id, version, http=http)
                    problems += [f"{version} {server_id}: {p}" for p in model_problems(server, raw)]
    assert problems == []


ADMIN_VERSIONS = ["2.1", "2.3", "2.9", "2.16", "2.19", "2.26", "2.47", "2.54", "2.63", "2.73"]
ADMIN_VERSIONS += ["2.75", "2.90", "2.96", "2.98", "2.100"]


async def test_admin_views_parse_with_the_strict_models(target: Any, model_problems: Any) -> None:
    """The admin view adds the extended attributes (host, user_data...): kept, not lost."""
    low, high = await target.service_range()
    servers = [
        s
        for s in (target.paused_server, target.locked_server, target.error_server)
        if s is not None
    ]
    if not servers:
        pytest.skip("ECS_IT_PAUSED_SERVER, _LOCKED_SERVER or _ERROR_SERVER is needed")
    problems: list[str] = []
    async with target.raw(admin=True) as http:
        for text in ADMIN_VERSIONS:
            version = v(text)
            if not low <= version <= high:
                continue
            async with target.client(microversion=version, admin=True) as ecs:
                for server_id in servers:
                    server = await ecs.get_server(server_id)
                    raw = await target.raw_server(server_id, version, http=http)
                    problems += [f"{version} {server_id}: {p}" for p in model_problems(server, raw)]
    assert problems == []


# 2.1 is the lowest; 2.54 key_name; 2.57 user_data (personality gone); 2.63 trusted certificates;
# 2.75 the full server in the rebuild answer; 2.90 hostname; None: negotiated, which is the
# highest the library supports (2.100) when the service offers it.
PINNED = ["2.1", "2.54", "2.57", "2.63", "2.75", "2.90", None]


@pytest.mark.parametrize("pinned", PINNED, ids=lambda p: p or "negotiated")
async def test_rebuild_and_wait_at_microversion(
    pinned: str | None, target: Any, recorder: Any, model_problems: Any
) -> None:
    image = target.image_alt or target.need("image")
    _, high = await target.service_range()
    version = v(pinned) if pinned else min(high, HIGHEST)
    await in_range(target, version)
    server_id = target.take_server()
    request = full_request(target, version, image, f"{pinned or 'negotiated'}-{server_id[:8]}")

    async with target.client(microversion=pinned, transport=recorder) as ecs:
        if pinned is None:
            assert await ecs.negotiate(request) == version
        prepared = await ecs.prepare(server_id, request)
        accepted = await ecs.rebuild(server_id, request)
        done = await ecs.wait_for_rebuild(server_id, timeout=target.wait_timeout)

    # The wire request went out exactly as prepared, at the version asked, and was accepted.
    posts = [e for e in recorder.posts() if e.url.endswith("/action")]
    assert len(posts) == 1
    post = posts[0]
    assert post.request_body == prepared["body"]
    assert post.request_headers["OpenStack-API-Version"] == f"compute {version}"
    assert post.request_headers["X-OpenStack-Nova-API-Version"] == str(version)
    assert post.status == 202
    assert post.response_headers["OpenStack-API-Version"] == f"compute {version}"
    # The 202 body and the final GET parse with nothing lost or invented.
    assert model_problems(accepted, post.response_body["server"]) == []
    assert accepted.status is ServerStatus.REBUILD
    gets = [e for e in recorder.exchanges if e.method == "GET" and "/servers/" in e.url]
    assert gets
    assert all(e.request_headers["OpenStack-API-Version"] == f"compute {version}" for e in gets)
    # The server returned is the one the last read showed (a later read may differ: Nova keeps
    # saving the instance after the rebuild, which moves its ``updated``).
    assert model_problems(done, recorder.last_read_of(server_id)) == []

    # The server is what was asked.
    assert done.status is ServerStatus.ACTIVE
    assert done.task_state is None
    assert done.name == request.name
    assert done.image_id == image
    assert dict(done.metadata) == dict(request.metadata)  # type: ignore[arg-type]  # set by this test, never UNSET
    if version >= v("2.19"):
        assert done.description == request.description
    if version >= v("2.54"):
        assert done.key_name == target.keypair
    if version >= v("2.90"):
        assert done.hostname == request.hostname
    if target.dialect is NOVA:
        assert done.access_ipv4 == "192.0.2.10"
    if version >= v("2.57") and target.admin_token is not None:
        admin_view = await target.raw_server(server_id, version, admin=True)
        sent = base64.b64encode(USER_DATA.encode()).decode()
        assert admin_view["OS-EXT-SRV-ATTR:user_data"] == sent


SWEEP = ["2.18", "2.19", "2.53", "2.56", "2.62", "2.89", "2.93", "2.94", "2.99"]


async def test_wire_requests_are_accepted_unchanged_at_each_boundary(
    target: Any, recorder: Any
) -> None:
    """One server, rebuilt at the versions on each side of every field's boundary."""
    # Each rebuild changes the image, so that each can be proven finished by the image it
    # shows, however quickly the fake virt driver finishes (a same-image rebuild that ends in
    # the second it was accepted cannot be told from the state before it: see the README).
    images = [target.need("image_alt"), target.need("image")]
    low, high = await target.service_range()
    versions = [v(text) for text in SWEEP if low <= v(text) <= min(high, HIGHEST)]
    if not versions:
        pytest.skip(f"the service offers {low}-{high}, none of {SWEEP}")
    server_id = target.take_server()
    for index, version in enumerate(versions):
        image = images[index % 2]
        request = full_request(target, version, image, f"sweep-{index}")
        async with target.client(microversion=version, transport=recorder) as ecs:
            prepared = await ecs.prepare(server_id, request)
            done = await ecs.rebuild_and_wait(server_id, request, timeout=target.wait_timeout)
        post = [e for e in recorder.posts() if e.url.endswith("/action")][-1]
        assert (post.status, post.request_body) == (202, prepared["body"]), version
        assert post.request_headers["OpenStack-API-Version"] == f"compute {version}"
        assert (done.status, done.name, done.image_id) == (ServerStatus.ACTIVE, request.name, image)
