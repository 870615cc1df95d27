"""FakeCompute: server bodies per microversion, lists with changes-since, instance actions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timezone

import httpx
import pytest
from samples import load_sample

from ecs_rebuild_async.testing import FakeCompute

# The samples were captured as admin; the fake answers as a project member, like an ECS tenant.
ADMIN_ONLY = {
    "OS-EXT-SRV-ATTR:host",
    "OS-EXT-SRV-ATTR:hypervisor_hostname",
    "OS-EXT-SRV-ATTR:instance_name",
    "OS-EXT-SRV-ATTR:kernel_id",
    "OS-EXT-SRV-ATTR:launch_index",
    "OS-EXT-SRV-ATTR:ramdisk_id",
    "OS-EXT-SRV-ATTR:reservation_id",
    "OS-EXT-SRV-ATTR:root_device_name",
    "OS-EXT-SRV-ATTR:user_data",
    "host_status",
}
REBUILD_SAMPLE_VERSIONS = [
    "2.1", "2.19", "2.26", "2.47", "2.54", "2.57", "2.63", "2.71", "2.73", "2.75", "2.90",
    "2.94", "2.96", "2.98", "2.100",
]  # fmt: skip


def _sample_dir(version: str) -> str:
    return "nova/servers/" if version == "2.1" else f"nova/servers/v{version}/"


def _keys(obj: dict[str, object], version: str) -> set[str]:
    keys = set(obj) - ADMIN_ONLY
    major, minor = (int(part) for part in version.split("."))
    if (major, minor) < (2, 90):
        keys.discard("OS-EXT-SRV-ATTR:hostname")  # admin-only before 2.90
    return keys


@pytest.fixture
def nova() -> FakeCompute:
    fake = FakeCompute(dialect="nova", max_version="2.100", time_scale=0)
    fake.add_keypair("new-key")
    return fake


async def _client(fake: FakeCompute) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"X-Auth-Token": fake.token}
    async with httpx.AsyncClient(
        transport=fake.transport(), base_url=fake.compute_url, headers=headers
    ) as http:
        yield http


@pytest.fixture
async def http(nova: FakeCompute) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(nova):
        yield client


def _v(version: str) -> dict[str, str]:
    return {"OpenStack-API-Version": f"compute {version}"}


@pytest.mark.anyio
@pytest.mark.parametrize("version", ["2.1", "2.98", "2.100"])
async def test_get_server_has_the_sample_keys(
    nova: FakeCompute, http: httpx.AsyncClient, version: str
) -> None:
    sid = nova.add_server(name="web-1", metadata={"a": "b"})
    response = await http.get(f"/servers/{sid}", headers=_v(version))
    sample = load_sample(_sample_dir(version) + "server-get-resp.json")["server"]
    server = response.json()["server"]
    assert response.status_code == 200
    assert set(server) == _keys(sample, version)
    assert (server["id"], server["name"], server["metadata"]) == (sid, "web-1", {"a": "b"})
    assert server["OS-EXT-STS:task_state"] is None


@pytest.mark.anyio
@pytest.mark.parametrize("version", REBUILD_SAMPLE_VERSIONS)
async def test_rebuild_answer_has_the_sample_keys(
    nova: FakeCompute, http: httpx.AsyncClient, version: str
) -> None:
    sid = nova.add_server()
    request = load_sample(_sample_dir(version) + "server-action-rebuild.json")
    request["rebuild"]["imageRef"] = nova.default_image
    request["rebuild"].pop("OS-DCF:diskConfig", None)
    response = await http.post(f"/servers/{sid}/action", json=request, headers=_v(version))
    sample = load_sample(_sample_dir(version) + "server-action-rebuild-resp.json")["server"]
    assert response.status_code == 202, response.text
    assert set(response.json()["server"]) == _keys(sample, version)


@pytest.mark.anyio
async def test_flavor_is_embedded_from_2_47(nova: FakeCompute, http: httpx.AsyncClient) -> None:
    sid = nova.add_server()
    old = (await http.get(f"/servers/{sid}", headers=_v("2.46"))).json()["server"]["flavor"]
    new = (await http.get(f"/servers/{sid}", headers=_v("2.47"))).json()["server"]["flavor"]
    assert set(old) == {"id", "links"}
    sample = load_sample("nova/servers/v2.47/server-action-rebuild-resp.json")
    assert set(new) == set(sample["server"]["flavor"])


@pytest.mark.anyio
async def test_unknown_server_is_item_not_found(http: httpx.AsyncClient) -> None:
    response = await http.get("/servers/a0a80a94-3d81-4a10-822a-daa0cf9e870b")
    assert response.status_code == 404
    assert response.json() == load_sample("nova/errors/rebuild-404-server.json")


@pytest.mark.anyio
async def test_urls_with_and_without_project_id(nova: FakeCompute) -> None:
    sid = nova.add_server()
    headers = {"X-Auth-Token": nova.token}
    async with httpx.AsyncClient(transport=nova.transport(), base_url=nova.base_url) as http:
        bare = await http.get(f"/v2.1/servers/{sid}", headers=headers)
        other = await http.get(f"/v2.1/0123abcd/servers/{sid}", headers=headers)
    assert bare.status_code == 200
    assert other.status_code == 400
    assert "doesn't match Context's project_id" in other.json()["badRequest"]["message"]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.mark.anyio
async def test_changes_since_is_inclusive_on_the_subsecond_update(
    nova: FakeCompute, http: httpx.AsyncClient
) -> None:
    nova.add_server(name="old")
    nova.advance(10)
    sid = nova.add_server(name="new")
    created = nova.truth(sid).updated_at
    whole_second = datetime.fromtimestamp(int(created), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    listed = await http.get("/servers/detail", params={"changes-since": whole_second})
    later = await http.get("/servers/detail", params={"changes-since": _iso(created + 0.001)})
    assert [s["name"] for s in listed.json()["servers"]] == ["new"]
    assert listed.json()["servers"][0]["updated"] == whole_second
    assert later.json()["servers"] == []


@pytest.mark.anyio
async def test_changes_since_rejects_a_bad_time(http: httpx.AsyncClient) -> None:
    response = await http.get("/servers/detail", params={"changes-since": "yesterday"})
    assert response.status_code == 400
    assert "changes-since" in response.json()["badRequest"]["message"]


@pytest.mark.anyio
async def test_changes_before_applies_from_2_66_only(
    nova: FakeCompute, http: httpx.AsyncClient
) -> None:
    nova.add_server()
    params = {"changes-before": "2000-01-01T00:00:00Z"}
    at_266 = await http.get("/servers/detail", params=params, headers=_v("2.66"))
    at_265 = await http.get("/servers/detail", params=params, headers=_v("2.65"))
    assert at_266.json()["servers"] == []
    assert len(at_265.json()["servers"]) == 1  # silently dropped below 2.66, as Nova does


@pytest.mark.anyio
async def test_paging_with_limit_marker_and_next_link(
    nova: FakeCompute, http: httpx.AsyncClient
) -> None:
    ids = nova.add_servers(5)
    first = (await http.get("/servers/detail", params={"limit": 2})).json()
    assert [s["id"] for s in first["servers"]] == [ids[4], ids[3]]  # newest first
    seen = [s["id"] for s in first["servers"]]
    link = first["servers_links"][0]
    while link:
        assert link["rel"] == "next"
        page = (await http.get(link["href"])).json()
        seen += [s["id"] for s in page["servers"]]
        link = (page.get("servers_links") or [None])[0]
    assert seen == ids[::-1]


@pytest.mark.anyio
async def test_unknown_marker_and_bad_limit_are_400(http: httpx.AsyncClient) -> None:
    marker = await http.get("/servers/detail", params={"marker": "nope"})
    limit = await http.get("/servers/detail", params={"limit": "x"})
    assert marker.status_code == 400
    assert marker.json()["badRequest"]["message"] == "marker [nope] not found"
    assert limit.status_code == 400


@pytest.mark.anyio
async def test_limit_is_capped_at_max_limit() -> None:
    fake = FakeCompute(max_limit=3, time_scale=0)
    fake.add_servers(5)
    async for http in _client(fake):
        page = (await http.get("/servers/detail", params={"limit": 100})).json()
        assert len(page["servers"]) == 3
        assert "limit=3" in page["servers_links"][0]["href"]


@pytest.mark.anyio
async def test_deleted_server_is_404_but_listed_as_deleted_with_changes_since(
    nova: FakeCompute, http: httpx.AsyncClient
) -> None:
    sid = nova.add_server()
    nova.add_server()
    since = _iso(nova.now() - 1)
    nova.advance(1)
    nova.delete_server(sid)
    assert (await http.get(f"/servers/{sid}")).status_code == 404
    plain = (await http.get("/servers/detail")).json()["servers"]
    changed = (await http.get("/servers/detail", params={"changes-since": since})).json()["servers"]
    assert sid not in [s["id"] for s in plain]
    assert [(s["id"], s["status"]) for s in changed if s["id"] == sid] == [(sid, "DELETED")]
    nova.advance(3601)
    again = (await http.get("/servers/detail", params={"changes-since": since})).json()["servers"]
    assert sid not in [s["id"] for s in again]


@pytest.mark.anyio
async def test_brief_list_has_id_name_links(nova: FakeCompute, http: httpx.AsyncClient) -> None:
    sid = nova.add_server(name="one")
    servers = (await http.get("/servers")).json()["servers"]
    assert servers == [{"id": sid, "name": "one", "links": servers[0]["links"]}]


@pytest.mark.anyio
async def test_instance_actions_record_each_rebuild(
    nova: FakeCompute, http: httpx.AsyncClient
) -> None:
    sid = nova.add_server()
    body = {"rebuild": {"imageRef": nova.default_image}}
    accepted = await http.post(f"/servers/{sid}/action", json=body, headers=_v("2.51"))
    request_id = accepted.headers["x-openstack-request-id"]
    assert accepted.headers["x-compute-request-id"] == request_id
    listed = (await http.get(f"/servers/{sid}/os-instance-actions")).json()["instanceActions"]
    assert [(a["action"], a["request_id"]) for a in listed] == [("rebuild", request_id)]
    assert {"instance_uuid", "message", "project_id", "start_time", "user_id"} <= set(listed[0])
    running = await http.get(f"/servers/{sid}/os-instance-actions/{request_id}", headers=_v("2.51"))
    assert running.json()["instanceAction"]["events"][0]["result"] is None
    nova.advance(5)
    done = await http.get(f"/servers/{sid}/os-instance-actions/{request_id}", headers=_v("2.51"))
    assert done.json()["instanceAction"]["events"][0]["result"] == "Success"
    missing = await http.get(f"/servers/{sid}/os-instance-actions/req-nope")
    assert missing.status_code == 404
