"""FakeCompute: version documents and microversion negotiation, as Nova answers them."""

from __future__ import annotations

import httpx
import pytest
from samples import load_sample

from ecs_rebuild_async.testing import FakeCompute


def _get(fake: FakeCompute, path: str, **headers: str) -> tuple[int, dict[str, list[str]], bytes]:
    status, pairs, body = fake.handle("GET", path, "", list(headers.items()))
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name.lower(), []).append(value)
    return status, grouped, body


def _shape(obj: object) -> object:
    """Keys and nesting of a JSON document, without the values."""
    if isinstance(obj, dict):
        return {k: _shape(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_shape(v) for v in obj]
    return type(obj).__name__


@pytest.mark.anyio
async def test_versions_document_matches_the_sample_shape() -> None:
    fake = FakeCompute(max_version="2.104", dialect="nova")
    async with httpx.AsyncClient(transport=fake.transport(), base_url=fake.base_url) as http:
        response = await http.get("/")
    assert response.status_code == 200
    assert _shape(response.json()) == _shape(load_sample("nova/versions/versions-get-resp.json"))
    v21 = response.json()["versions"][1]
    assert (v21["version"], v21["min_version"]) == ("2.104", "2.1")
    assert v21["links"][0]["href"] == "http://fake-compute.test/v2.1/"


@pytest.mark.parametrize(
    ("path", "sample"),
    [
        ("/v2.1/", "nova/versions/v21-version-get-resp.json"),
        ("/v2/", "nova/versions/v2-version-get-resp.json"),
    ],
)
def test_single_version_documents_match_the_samples(path: str, sample: str) -> None:
    status, _, body = _get(FakeCompute(), path)
    expected = load_sample(sample)
    got = httpx.Response(status, content=body).json()
    assert status == 200
    assert _shape(got) == _shape(expected)
    assert got["version"]["id"] == expected["version"]["id"]


def test_ecs_default_range_is_2_1_to_2_60() -> None:
    _, _, body = _get(FakeCompute(), "/v2.1/")
    doc = httpx.Response(200, content=body).json()["version"]
    assert (doc["min_version"], doc["version"]) == ("2.1", "2.60")


def _server_path(fake: FakeCompute) -> str:
    return f"/v2.1/{fake.project_id}/servers/{fake.add_server()}"


@pytest.mark.parametrize(
    ("headers", "echoed"),
    [
        ({}, "2.1"),
        ({"OpenStack-API-Version": "compute 2.54"}, "2.54"),
        ({"X-OpenStack-Nova-API-Version": "2.47"}, "2.47"),
        ({"OpenStack-API-Version": "compute 2.19", "X-OpenStack-Nova-API-Version": "2.47"}, "2.19"),
        ({"OpenStack-API-Version": "identity 3.0", "X-OpenStack-Nova-API-Version": "2.47"}, "2.47"),
        ({"OpenStack-API-Version": "compute 2.9, identity 3.0, COMPUTE 2.26"}, "2.26"),
        ({"OpenStack-API-Version": "compute latest"}, "2.60"),
    ],
)
def test_microversion_headers_are_read_like_microversion_parse(
    headers: dict[str, str], echoed: str
) -> None:
    fake = FakeCompute()
    status, got, _ = _get(fake, _server_path(fake), **{"X-Auth-Token": fake.token}, **headers)
    assert status == 200
    assert got["openstack-api-version"] == [f"compute {echoed}"]
    assert got["x-openstack-nova-api-version"] == [echoed]
    assert got["vary"] == ["OpenStack-API-Version", "X-OpenStack-Nova-API-Version"]


@pytest.mark.parametrize("value", ["2.01", "Latest", "2.x", "two"])
def test_malformed_microversion_is_400(value: str) -> None:
    fake = FakeCompute()
    status, _, body = _get(
        fake,
        _server_path(fake),
        **{"X-Auth-Token": fake.token, "OpenStack-API-Version": f"compute {value}"},
    )
    assert status == 400
    fault = httpx.Response(status, content=body).json()["badRequest"]
    assert fault["message"] == (
        f"API Version String {value} is of invalid format. Must be of format MajorNum.MinorNum."
    )


def test_out_of_range_microversion_is_406_compute_fault_with_echo() -> None:
    fake = FakeCompute()
    status, headers, body = _get(
        fake,
        _server_path(fake),
        **{"X-Auth-Token": fake.token, "OpenStack-API-Version": "compute 2.61"},
    )
    expected = load_sample("nova/errors/version-406-unsupported.json")
    got = httpx.Response(status, content=body).json()
    assert status == 406
    assert got.keys() == expected.keys()
    assert got["computeFault"] == {
        "code": 406,
        "message": "Version 2.61 is not supported by the API. Minimum is 2.1 and maximum is 2.60.",
    }
    assert headers["openstack-api-version"] == ["compute 2.61"]


def test_legacy_v2_endpoint_ignores_and_does_not_echo_versions() -> None:
    fake = FakeCompute()
    sid = fake.add_server()
    status, headers, body = _get(
        fake,
        f"/v2/{fake.project_id}/servers/{sid}",
        **{"X-Auth-Token": fake.token, "OpenStack-API-Version": "compute 2.54"},
    )
    server = httpx.Response(status, content=body).json()["server"]
    assert status == 200
    assert "openstack-api-version" not in headers
    assert "locked" not in server  # a 2.1 body


def test_version_documents_need_no_token_and_unknown_paths_get_300() -> None:
    fake = FakeCompute()
    assert _get(fake, "/")[0] == 200
    assert _get(fake, "/v2.1")[0] == 200
    assert _get(fake, "/nowhere")[0] == 300
