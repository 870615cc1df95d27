"""Properties over arbitrary input: parsers and the request model fail only in their own ways."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecs_rebuild_async import (
    ECS,
    NOVA,
    UNSET,
    APIVersion,
    InvalidRequest,
    MicroversionError,
    PersonalityFile,
    RebuildRequest,
    ResponseError,
    Server,
    ServiceError,
    VersionRange,
)
from ecs_rebuild_async._errors import error_from_response
from ecs_rebuild_async._microversion import (
    FIELD_VERSIONS,
    LIBRARY_MAX,
    LIBRARY_MIN,
    check_fields,
    negotiate,
    parse_version,
)
from ecs_rebuild_async._serde import request_to_wire, server_from_wire, server_page_from_wire

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)

SERVER_KEYS = [
    "id", "status", "name", "OS-EXT-STS:task_state", "OS-EXT-STS:vm_state",
    "OS-EXT-STS:power_state", "updated", "created", "image", "flavor", "metadata", "addresses",
    "progress", "fault", "hostId", "accessIPv4", "OS-SRV-USG:launched_at", "locked", "tags",
    "links", "adminPass", "user_data", "trusted_image_certificates", "key_name",
]  # fmt: skip
SERVER_LIKE = st.fixed_dictionaries(
    {
        "id": st.text(max_size=8) | JSON_VALUES,
        "status": st.sampled_from(["ACTIVE", "X"]) | JSON_VALUES,
    },
    optional=dict.fromkeys(SERVER_KEYS[2:], JSON_VALUES),
)


def _server_bodies() -> st.SearchStrategy[Any]:
    return (
        JSON_VALUES
        | SERVER_LIKE
        | st.builds(lambda s: {"server": s}, SERVER_LIKE)
        | st.builds(lambda s: {"servers": s}, st.lists(SERVER_LIKE, max_size=3))
    )


@FAST
@given(_server_bodies())
def test_server_from_wire_gives_a_server_or_response_error(body: Any) -> None:
    try:
        server = server_from_wire(body)
    except ResponseError:
        return
    assert isinstance(server, Server)
    assert isinstance(server.id, str)
    repr(server)


@FAST
@given(_server_bodies(), JSON_VALUES)
def test_server_pages_give_servers_or_response_error(body: Any, links: Any) -> None:
    if isinstance(body, dict):
        body = {**body, "servers_links": links}
    try:
        page = server_page_from_wire(body)
    except ResponseError:
        return
    assert all(isinstance(server, Server) for server in page.servers)
    assert all(isinstance(error, ResponseError) for error in page.unreadable.values())
    entries = len(body["servers"])
    assert len(page.servers) + len(page.unreadable) + page.anonymous <= entries
    assert page.marker is None or isinstance(page.marker, str)


HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)


@FAST
@given(
    st.integers(min_value=100, max_value=599),
    st.dictionaries(
        st.sampled_from(["Retry-After", "X-OpenStack-Request-Id", "X-Request-Id", "Other"]),
        HEADER_TEXT,
    ),
    JSON_VALUES
    | st.dictionaries(st.sampled_from(["overLimit", "error", "badRequest"]), JSON_VALUES),
    st.booleans(),
)
def test_error_from_response_always_gives_a_service_error(
    status: int, headers: dict[str, str], body: Any, raw: bool
) -> None:
    content = json.dumps(body).encode() if not raw else json.dumps(body).encode()[:7] + b"\xff"
    error = error_from_response(status, headers, content)
    assert isinstance(error, ServiceError)
    assert error.status == status
    assert isinstance(error.message, str)
    assert error.retry_after is None or error.retry_after >= 0
    str(error)


@FAST
@given(st.binary(max_size=200))
def test_error_from_response_on_any_bytes(content: bytes) -> None:
    assert isinstance(error_from_response(500, {}, content), ServiceError)


# --- the request model -------------------------------------------------------------------------

ANYTHING = (
    st.none()
    | st.just(UNSET)
    | st.booleans()
    | st.integers()
    | st.text(max_size=40)
    | st.binary(max_size=40)
    | st.lists(st.text(max_size=8) | st.integers(), max_size=4)
    | st.dictionaries(st.text(max_size=8), st.text(max_size=8) | st.integers(), max_size=3)
    | st.sampled_from(["AUTO", "MANUAL", "ZWNobyAiaGVsbG8gd29ybGQi", "web-1", "1.2.3.4", "::1"])
)
IMAGE_REFS = (
    st.just("70a599e0-31e7-49b7-b260-868f441e862b")
    | st.uuids().map(str)
    | st.text(max_size=40)
    | ANYTHING
)
PERSONALITY = st.lists(
    st.builds(PersonalityFile, st.text(max_size=20), st.text(max_size=20) | st.binary(max_size=20),
              st.booleans()),
    max_size=2,
) | ANYTHING  # fmt: skip
OPTIONAL_FIELDS = {
    "name": ANYTHING,
    "metadata": ANYTHING,
    "admin_pass": ANYTHING,
    "disk_config": ANYTHING,
    "preserve_ephemeral": ANYTHING,
    "key_name": ANYTHING,
    "user_data": ANYTHING,
    "user_data_base64": ANYTHING,
    "description": ANYTHING,
    "personality": PERSONALITY,
    "trusted_image_certificates": ANYTHING,
    "hostname": ANYTHING,
    "access_ipv4": ANYTHING,
    "access_ipv6": ANYTHING,
}


@FAST
@given(IMAGE_REFS, st.fixed_dictionaries({}, optional=OPTIONAL_FIELDS))
def test_any_request_input_is_valid_or_invalid_request(image_ref: Any, kwargs: Any) -> None:
    try:
        request = RebuildRequest(image_ref=image_ref, **kwargs)
    except InvalidRequest:
        return
    wire = request_to_wire(request)
    assert set(wire) == {"rebuild"}
    assert set(wire["rebuild"]) == set(request.wire_fields())
    json.dumps(wire)  # always serializable
    repr(request)
    for dialect in (ECS, NOVA):
        with contextlib.suppress(InvalidRequest, MicroversionError):
            request.check(dialect=dialect, microversion=request.min_microversion())


# --- microversions -----------------------------------------------------------------------------


@FAST
@given(st.text(max_size=30) | st.from_regex(r"\A[0-9]{1,12}\.[0-9]{1,12}\Z") | ANYTHING)
def test_parse_version_raises_only_microversion_error(text: Any) -> None:
    try:
        version = parse_version(text)
    except MicroversionError:
        return
    assert isinstance(version, APIVersion)
    assert parse_version(str(version)) == version


VERSIONS = st.builds(APIVersion, st.integers(1, 3), st.integers(0, 120))
FIELDS = st.sets(st.sampled_from(["imageRef", "name", "metadata", *FIELD_VERSIONS]))


@FAST
@given(FIELDS, VERSIONS, VERSIONS)
def test_negotiate_stays_inside_every_bound(
    fields: set[str], low: APIVersion, high: APIVersion
) -> None:
    service = VersionRange(low, high)
    try:
        picked = negotiate(fields, service)
    except MicroversionError:
        return
    assert picked is not None
    assert picked in service
    assert LIBRARY_MIN <= picked <= LIBRARY_MAX
    check_fields(fields, picked)  # raises if a field is not accepted


@FAST
@given(st.sets(st.sampled_from(sorted(FIELD_VERSIONS))))
def test_negotiate_succeeds_whenever_a_common_version_exists(fields: set[str]) -> None:
    service = VersionRange(LIBRARY_MIN, LIBRARY_MAX)
    candidates = [
        APIVersion(2, minor)
        for minor in range(LIBRARY_MIN.minor, LIBRARY_MAX.minor + 1)
        if all(_accepts(name, APIVersion(2, minor)) for name in fields)
    ]
    if not candidates:
        try:
            negotiate(fields, service)
        except MicroversionError:
            return
        raise AssertionError("negotiate picked a version no field set allows")
    assert negotiate(fields, service) == max(candidates)


def _accepts(name: str, version: APIVersion) -> bool:
    try:
        check_fields([name], version)
    except MicroversionError:
        return False
    return True
