"""The AK/SK signer reproduces every published SDK-HMAC-SHA256 vector. Pure: no event loop."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

import pytest
from samples import load_sample

from ecs_rebuild_async import InvalidRequest
from ecs_rebuild_async._signing import (
    EMPTY_SHA256,
    canonical_query,
    canonical_request,
    canonical_uri,
    format_sdk_date,
    sign,
    string_to_sign,
)

VECTORS: dict[str, Any] = load_sample("huaweicloud/signer/sdk-hmac-sha256-vectors.json")
AK = VECTORS["credentials"]["ak"]
SK = VECTORS["credentials"]["sk"]
CASES = VECTORS["vectors"]


def _query_string(vector: dict[str, Any]) -> str:
    # Encode the way an HTTP client would put the query on the wire.
    return urlencode([(key, str(value)) for key, value in vector["request"]["query"]])


def _full_url(vector: dict[str, Any]) -> str:
    request = vector["request"]
    query = _query_string(vector)
    return f"{request['scheme']}://{request['host']}{request['path']}" + (
        f"?{query}" if query else ""
    )


def test_vector_file_has_all_six_vectors() -> None:
    assert len(CASES) == 6
    assert VECTORS["algorithm"] == "SDK-HMAC-SHA256"


@pytest.mark.parametrize("vector", CASES, ids=[case["name"] for case in CASES])
def test_sign_reproduces_headers_after_signing(vector: dict[str, Any]) -> None:
    request = vector["request"]
    added = sign(
        request["method"],
        _full_url(vector),
        request["headers"],
        request["body"].encode(),
        AK,
        SK,
    )
    assert added["Authorization"] == vector["authorization"]
    assert {**request["headers"], **added} == vector["headers_after_signing"]


@pytest.mark.parametrize("vector", CASES, ids=[case["name"] for case in CASES])
def test_canonical_request_and_string_to_sign(vector: dict[str, Any]) -> None:
    request = vector["request"]
    headers = dict(vector["headers_after_signing"])
    del headers["Authorization"]
    canonical, signed = canonical_request(
        request["method"], request["path"], _query_string(vector), headers, request["body"].encode()
    )
    assert canonical == vector["canonical_request"]
    assert signed == vector["authorization"].split("SignedHeaders=")[1].split(",")[0]
    assert string_to_sign(canonical, request["headers"]["X-Sdk-Date"]) == vector["string_to_sign"]


@pytest.mark.parametrize("vector", CASES, ids=[case["name"] for case in CASES])
def test_sign_with_path_and_host_header(vector: dict[str, Any]) -> None:
    # The same signature when the target is a path plus query and Host is already a header.
    request = vector["request"]
    query = _query_string(vector)
    headers = {**request["headers"], "Host": request["host"]}
    added = sign(
        request["method"],
        request["path"] + (f"?{query}" if query else ""),
        headers,
        request["body"].encode(),
        AK,
        SK,
    )
    assert "Host" not in added
    assert added["Authorization"] == vector["authorization"]


def test_sign_date_given_as_argument_when_header_missing() -> None:
    vector = CASES[0]
    request = vector["request"]
    headers = {k: v for k, v in request["headers"].items() if k != "X-Sdk-Date"}
    when = datetime(2020, 6, 8, 10, 39, tzinfo=timezone(timedelta(hours=8)))
    added = sign("GET", _full_url(vector), headers, b"", AK, SK, sdk_date=when)
    assert added["X-Sdk-Date"] == "20200608T023900Z"
    assert added["Authorization"] == vector["authorization"]


def test_sign_defaults_to_current_utc_date() -> None:
    before = datetime.now(timezone.utc).replace(microsecond=0)
    added = sign("GET", "https://h.example.com/x", {}, b"", AK, SK)
    stamped = datetime.strptime(added["X-Sdk-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    assert stamped >= before
    assert stamped - before < timedelta(minutes=5)


def test_canonical_query_upstream_vector() -> None:
    case = VECTORS["canonical_query_string_vector"]
    pairs = [(key, value) for key, value in case["query"]]
    assert canonical_query(pairs) == case["expected"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v2.1/p/servers/s/action", "/v2.1/p/servers/s/action/"),
        ("/", "/"),
        ("/a b/c%2Fd/", "/a%20b/c/d/"),
        ("/caf%C3%A9", "/caf%C3%A9/"),
    ],
)
def test_canonical_uri(path: str, expected: str) -> None:
    assert canonical_uri(path) == expected


def test_underscore_headers_are_not_signed_but_json_content_type_is() -> None:
    canonical, signed = canonical_request(
        "post",
        "/x",
        "",
        {
            "Host": "h",
            "X-Sdk-Date": "20240102T030405Z",
            "A_B": "1",
            "Content-Type": "application/json",
        },
        b"{}",
    )
    assert signed == "content-type;host;x-sdk-date"
    assert canonical.startswith("POST\n/x/\n\n")
    assert canonical.endswith(hashlib.sha256(b"{}").hexdigest())


def test_header_values_are_trimmed_not_collapsed() -> None:
    canonical, _ = canonical_request(
        "GET", "/", "", {"Host": "h", "X-Sdk-Date": "20240102T030405Z", "X-A": "  a   b  "}, b""
    )
    assert "x-a:a   b\n" in canonical
    assert canonical.endswith(EMPTY_SHA256)


def test_signature_is_plain_hmac_of_string_to_sign() -> None:
    headers = {"Host": "h", "X-Sdk-Date": "20240102T030405Z"}
    added = sign("GET", "/p?b=2&a=1", headers, b"", "ak", "sk")
    canonical, _ = canonical_request("GET", "/p", "a=1&b=2", headers, b"")
    expected = hmac.new(
        b"sk", string_to_sign(canonical, "20240102T030405Z").encode(), hashlib.sha256
    ).hexdigest()
    assert added["Authorization"].endswith(f"Signature={expected}")


def test_plus_in_query_means_space() -> None:
    headers = {"Host": "h", "X-Sdk-Date": "20240102T030405Z"}
    assert sign("GET", "/p?a=x+y", headers, b"", AK, SK) == sign(
        "GET", "/p?a=x%20y", headers, b"", AK, SK
    )


def test_bad_sdk_date_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match="X-Sdk-Date"):
        sign("GET", "https://h/x", {"X-Sdk-Date": "2024-01-02"}, b"", AK, SK)


def test_missing_host_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match="host"):
        sign("GET", "/x", {}, b"", AK, SK)


def test_format_sdk_date_converts_to_utc() -> None:
    local = datetime(2024, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1)))
    assert format_sdk_date(local) == "20240102T030405Z"
