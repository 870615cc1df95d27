"""Error answers of every shape in the references become the right typed error."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from ecs_rebuild_async import (
    BadRequest,
    Conflict,
    EcsError,
    Forbidden,
    NotFound,
    RateLimited,
    ServerError,
    ServiceError,
    Unauthorized,
)
from ecs_rebuild_async._errors import (
    error_from_response,
    parse_retry_after,
    request_id_from_headers,
)

CONFORMANCE = Path(__file__).parent / "conformance"


def load_sample(relative: str) -> Any:
    """One JSON sample copied from the public references into tests/conformance."""
    return json.loads((CONFORMANCE / relative).read_text())


REQUEST_ID = "req-5b1a40e6-8c1f-4c39-a8c6-0a0e3f5a1d22"
INSTANCE = "a0a80a94-3d81-4a10-822a-daa0cf9e870b"

# file -> (class, code, message, retry_after, Conflict.state)
NOVA_EXPECTED: dict[str, tuple[type[ServiceError], str, str, float | None, str | None]] = {
    "errors/rebuild-409-task-state.json": (
        Conflict,
        "conflictingRequest",
        f"Cannot 'rebuild' instance {INSTANCE} while it is in task_state rebuilding",
        None,
        "task_state rebuilding",
    ),
    "errors/rebuild-409-vm-state.json": (
        Conflict,
        "conflictingRequest",
        f"Cannot 'rebuild' instance {INSTANCE} while it is in vm_state shelved_offloaded",
        None,
        "vm_state shelved_offloaded",
    ),
    "errors/rebuild-409-locked.json": (
        Conflict,
        "conflictingRequest",
        f"Instance {INSTANCE} is locked",
        None,
        "locked",
    ),
    "errors/rebuild-404-server.json": (
        NotFound,
        "itemNotFound",
        f"Instance {INSTANCE} could not be found.",
        None,
        None,
    ),
    "errors/rebuild-400-image-not-found.json": (
        BadRequest,
        "badRequest",
        "Cannot find image for rebuild",
        None,
        None,
    ),
    "errors/rebuild-400-bad-key-name.json": (
        BadRequest,
        "badRequest",
        "Invalid key_name provided.",
        None,
        None,
    ),
    "errors/rebuild-400-schema-additional-property.json": (
        BadRequest,
        "badRequest",
        "Invalid input for field/attribute rebuild. Value: {'imageRef': "
        "'70a599e0-31e7-49b7-b260-868f441e862b', 'key_name': 'k1'}. Additional properties are "
        "not allowed ('key_name' was unexpected)",
        None,
        None,
    ),
    "errors/rebuild-400-no-such-action.json": (
        BadRequest,
        "badRequest",
        "There is no such action: rebuid",
        None,
        None,
    ),
    "errors/rebuild-400-malformed-body.json": (
        BadRequest,
        "badRequest",
        "Malformed request body",
        None,
        None,
    ),
    "errors/rebuild-403-policy.json": (
        Forbidden,
        "forbidden",
        "Policy doesn't allow os_compute_api:servers:rebuild to be performed.",
        None,
        None,
    ),
    "errors/rebuild-403-metadata-quota.json": (
        Forbidden,
        "forbidden",
        "Maximum number of metadata items exceeds 128",
        None,
        None,
    ),
    "errors/version-406-unsupported.json": (
        ServiceError,
        "computeFault",
        "Version 2.200 is not supported by the API. Minimum is 2.1 and maximum is 2.104.",
        None,
        None,
    ),
    "errors/version-400-bad-format.json": (
        BadRequest,
        "badRequest",
        "API Version String 2.x is of invalid format. Must be of format MajorNum.MinorNum.",
        None,
        None,
    ),
    "errors/overlimit-413-retry-after.json": (RateLimited, "overLimit", "sorry", 4.0, None),
    "errors/overlimit-429-retry-after.json": (RateLimited, "overLimit", "sorry", 4.0, None),
    "errors/itemnotfound-api-guide.json": (
        NotFound,
        "itemNotFound",
        "Aggregate agg_h1 could not be found.",
        None,
        None,
    ),
    "errors/auth-401-keystonemiddleware.json": (
        Unauthorized,
        "Unauthorized",
        "The request you have made requires authentication.",
        None,
        None,
    ),
}

INDEX = load_sample("nova/errors/index.json")["cases"]


def _content(body: Any) -> bytes:
    return json.dumps(body).encode()


def test_every_indexed_case_has_an_expectation() -> None:
    assert {case["file"] for case in INDEX} == set(NOVA_EXPECTED)


@pytest.mark.parametrize("case", INDEX, ids=[case["file"] for case in INDEX])
def test_nova_error_sample(case: dict[str, Any]) -> None:
    cls, code, message, retry_after, state = NOVA_EXPECTED[case["file"]]
    headers = {**case["headers"], "X-OpenStack-Request-Id": REQUEST_ID}
    content = _content(load_sample("nova/" + case["file"]))
    error = error_from_response(case["status"], headers, content)
    assert type(error) is cls
    assert error.status == case["status"]
    assert error.code == code
    assert error.message == message
    assert error.request_id == REQUEST_ID
    assert error.retry_after == retry_after
    if isinstance(error, Conflict):
        assert error.state == state
    assert message in str(error)
    assert REQUEST_ID in str(error)


@pytest.mark.parametrize("status", [413, 429])
def test_overlimit_retry_after_from_the_body_alone(status: int) -> None:
    content = _content(load_sample(f"nova/errors/overlimit-{status}-retry-after.json"))
    error = error_from_response(status, {}, content)
    assert isinstance(error, RateLimited)
    assert error.retry_after == 4.0


def test_header_retry_after_wins_over_the_body() -> None:
    content = _content(load_sample("nova/errors/overlimit-429-retry-after.json"))
    error = error_from_response(429, {"retry-after": "12"}, content)
    assert error.retry_after == 12.0


def test_retry_after_as_http_date() -> None:
    now = datetime(2026, 11, 29, 12, 0, 0, tzinfo=timezone.utc)
    header = "Sun, 29 Nov 2026 12:00:30 GMT"
    error = error_from_response(429, {"Retry-After": header}, b"", now=now)
    assert isinstance(error, RateLimited)
    assert error.retry_after == 30.0
    assert parse_retry_after(header, now=now + timedelta(minutes=5)) == 0.0


def test_413_without_overlimit_is_not_rate_limiting() -> None:
    # A body-size refusal from webob: no Nova fault body, no Retry-After.
    error = error_from_response(413, {}, b"<html>Request Entity Too Large</html>")
    assert type(error) is ServiceError
    assert error.retry_after is None
    assert "Request Entity Too Large" in error.message


def test_406_compute_fault_is_a_service_error_not_a_server_error() -> None:
    content = _content(load_sample("nova/errors/version-406-unsupported.json"))
    error = error_from_response(406, {}, content)
    assert type(error) is ServiceError
    assert not isinstance(error, ServerError)
    assert error.code == "computeFault"


HUAWEI = load_sample("huaweicloud/errors/sdk-error-extraction-cases.json")


@pytest.mark.parametrize("case", HUAWEI["cases"], ids=range(len(HUAWEI["cases"])))
def test_huawei_sdk_extraction_case(case: dict[str, Any]) -> None:
    content = case["body_text"].encode() if "body_text" in case else _content(case["body"])
    error = error_from_response(HUAWEI["status"], HUAWEI["response_headers"], content)
    expect = case["expect"]
    assert type(error) is BadRequest
    assert error.message == expect["error_msg"]
    assert error.request_id == expect["request_id"]
    # The SDK puts the HTTP status in place of a missing code; the library leaves it None.
    has_code = "body" in case and expect["error_code"] != str(HUAWEI["status"])
    assert error.code == (expect["error_code"] if has_code else None)


def test_otc_ecs_native_error() -> None:
    content = _content(load_sample("otc/ecs/ecs-native-error-example.json"))
    error = error_from_response(400, {"X-Request-Id": REQUEST_ID}, content)
    assert type(error) is BadRequest
    assert error.code == "Ecs.0005"
    assert error.message == "request body is illegal."
    assert error.request_id == REQUEST_ID


def test_huawei_gateway_error_with_request_id_in_body() -> None:
    body = {"error_code": "APIGW.0301", "error_msg": "Incorrect IAM authentication information"}
    error = error_from_response(401, {"x-request-id": "gw-1"}, _content(body))
    assert type(error) is Unauthorized
    assert error.code == "APIGW.0301"
    assert error.request_id == "gw-1"


@pytest.mark.parametrize(
    ("status", "cls"),
    [(500, ServerError), (502, ServerError), (503, ServerError), (418, ServiceError)],
)
def test_status_without_a_known_body(status: int, cls: type[ServiceError]) -> None:
    error = error_from_response(status, {}, b"")
    assert type(error) is cls
    assert error.code is None
    assert str(status) in error.message
    assert isinstance(error, EcsError)


def test_long_html_page_is_shortened() -> None:
    error = error_from_response(502, {}, b"<html>" + b"x" * 5000 + b"</html>")
    assert len(error.message) <= 500


def test_request_id_header_precedence_and_case() -> None:
    headers = {"x-compute-request-id": "compute", "X-OPENSTACK-REQUEST-ID": "openstack"}
    assert request_id_from_headers(headers) == "openstack"
    assert request_id_from_headers({"X-Compute-Request-Id": "compute"}) == "compute"
    assert request_id_from_headers({}) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("4", 4.0),
        (" 2.5 ", 2.5),
        (7, 7.0),
        ("-3", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        (True, None),
        ("nan", None),
        ("inf", None),
        (10**400, None),
        ([1], None),
    ],
)
def test_parse_retry_after(value: object, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_conflict_state_is_none_for_other_messages() -> None:
    body = {"conflictingRequest": {"code": 409, "message": "Something else happened"}}
    error = error_from_response(409, {}, _content(body))
    assert isinstance(error, Conflict)
    assert error.state is None
