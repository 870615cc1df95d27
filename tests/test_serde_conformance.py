"""Every request and server sample of the public references, through the serializer."""

from __future__ import annotations

import ast
import copy
import json
import pickle
from collections.abc import Mapping
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest

from ecs_rebuild_async import (
    ECS,
    NOVA,
    APIVersion,
    PersonalityFile,
    RebuildRequest,
    ResponseError,
    ServerStatus,
)
from ecs_rebuild_async._microversion import parse_version
from ecs_rebuild_async._serde import request_to_wire, server_from_wire, server_page_from_wire

CONFORMANCE = Path(__file__).parent / "conformance"


def load_sample(relative: str) -> Any:
    """One JSON sample copied from the public references into tests/conformance."""
    return json.loads((CONFORMANCE / relative).read_text())


def _relative(path: Path) -> str:
    return path.relative_to(CONFORMANCE).as_posix()


REQUEST_SAMPLES = sorted(
    [_relative(p) for p in (CONFORMANCE / "nova" / "servers").rglob("server-action-rebuild.json")]
    + ["otc/ecs/server-action-rebuild.json"]
)
SERVER_SAMPLES = [
    *sorted(
        _relative(p)
        for p in CONFORMANCE.rglob("*.json")
        if p.name.endswith("-resp.json") and "servers-details" not in p.name
        if "server" in load_sample(_relative(p))
    ),
    "nova/api-guide/faults/server-error-state.json",
    "nova/api-guide/faults/server-get-error-fault.json",
]
LIST_SAMPLES = sorted(
    _relative(p) for p in CONFORMANCE.rglob("*.json") if p.name.startswith("servers-details")
)


# Wire name -> RebuildRequest attribute: the test's own copy of the contract, section (a).
REQUEST_ATTRIBUTES = {
    "imageRef": "image_ref",
    "name": "name",
    "metadata": "metadata",
    "adminPass": "admin_pass",
    "OS-DCF:diskConfig": "disk_config",
    "preserve_ephemeral": "preserve_ephemeral",
    "key_name": "key_name",
    "user_data": "user_data",
    "description": "description",
    "personality": "personality",
    "trusted_image_certificates": "trusted_image_certificates",
    "hostname": "hostname",
    "accessIPv4": "access_ipv4",
    "accessIPv6": "access_ipv6",
}

# Wire key of a server -> Server attribute: the test's own copy of the contract, section (b).
SERVER_ATTRIBUTES = {
    "id": "id",
    "status": "status",
    "name": "name",
    "OS-EXT-STS:task_state": "task_state",
    "OS-EXT-STS:vm_state": "vm_state",
    "OS-EXT-STS:power_state": "power_state",
    "updated": "updated",
    "created": "created",
    "image": "image",
    "flavor": "flavor",
    "metadata": "metadata",
    "addresses": "addresses",
    "progress": "progress",
    "fault": "fault",
    "tenant_id": "tenant_id",
    "user_id": "user_id",
    "hostId": "host_id",
    "accessIPv4": "access_ipv4",
    "accessIPv6": "access_ipv6",
    "OS-DCF:diskConfig": "disk_config",
    "key_name": "key_name",
    "description": "description",
    "locked": "locked",
    "locked_reason": "locked_reason",
    "tags": "tags",
    "trusted_image_certificates": "trusted_image_certificates",
    "OS-EXT-SRV-ATTR:hostname": "hostname",
    "OS-EXT-AZ:availability_zone": "availability_zone",
    "OS-SRV-USG:launched_at": "launched_at",
    "OS-SRV-USG:terminated_at": "terminated_at",
    "config_drive": "config_drive",
    "links": "links",
    "adminPass": "admin_pass",
    "user_data": "user_data",
    "OS-EXT-SRV-ATTR:user_data": "user_data",
}


def _sample_version(relative: str) -> APIVersion | None:
    for part in relative.split("/"):
        if part.startswith("v2."):
            return parse_version(part[1:])
    return None


def _request_from_wire(wire: dict[str, Any]) -> RebuildRequest:
    """The RebuildRequest a caller would write for this body (samples carry base64 already)."""
    kwargs: dict[str, Any] = {}
    for key, value in wire.items():
        attribute = REQUEST_ATTRIBUTES[key]  # a KeyError here is a field the model lacks
        if key == "personality":
            value = [
                PersonalityFile(item["path"], item["contents"], contents_base64=True)
                for item in value
            ]
        kwargs[attribute] = value
    if "user_data" in wire:
        kwargs["user_data_base64"] = True
    return RebuildRequest(**kwargs)


def test_samples_were_found() -> None:
    assert len(REQUEST_SAMPLES) == 16
    assert len(SERVER_SAMPLES) >= 20
    assert len(LIST_SAMPLES) == 3


@pytest.mark.parametrize("relative", REQUEST_SAMPLES)
def test_request_sample_is_reproduced_exactly(relative: str) -> None:
    sample = load_sample(relative)
    request = _request_from_wire(sample["rebuild"])
    assert request_to_wire(request) == sample


@pytest.mark.parametrize("relative", REQUEST_SAMPLES)
def test_request_sample_passes_its_own_version_and_dialect(relative: str) -> None:
    sample = load_sample(relative)
    request = _request_from_wire(sample["rebuild"])
    if relative.startswith("otc/"):
        request.check(dialect=ECS, microversion=APIVersion(2, 1))
        return
    version = _sample_version(relative) or APIVersion(2, 1)
    request.check(dialect=NOVA, microversion=version)
    assert request.min_microversion() <= version
    assert request.wire_fields() == frozenset(sample["rebuild"])


def test_request_sample_built_by_hand_matches_v257() -> None:
    request = RebuildRequest(
        image_ref="70a599e0-31e7-49b7-b260-868f441e862b",
        name="foobar",
        key_name="new-key",
        description="description of foobar",
        admin_pass="seekr3t",
        metadata={"meta_var": "meta_val"},
        user_data='echo "hello world"',
        access_ipv4="1.2.3.4",
        access_ipv6="80fe::",
    )
    assert request_to_wire(request) == load_sample("nova/servers/v2.57/server-action-rebuild.json")
    assert request.min_microversion() == APIVersion(2, 57)


def test_raw_personality_contents_are_encoded() -> None:
    request = RebuildRequest(
        image_ref="70a599e0-31e7-49b7-b260-868f441e862b",
        personality=[PersonalityFile("/etc/motd", "hi"), PersonalityFile("/bin/x", b"\x00\xff")],
    )
    assert request_to_wire(request)["rebuild"]["personality"] == [
        {"path": "/etc/motd", "contents": "aGk="},
        {"path": "/bin/x", "contents": "AP8="},
    ]


def _check_key_kept(server: Any, key: str, value: Any) -> None:
    if key in server.extra:
        assert server.extra[key] == value
        return
    assert key in SERVER_ATTRIBUTES, f"{key} is neither mapped nor kept in extra"
    parsed = getattr(server, SERVER_ATTRIBUTES[key])
    if key == "image" and value == "":
        assert parsed is None
    elif value is None or value == "":
        assert parsed in (None, "")
    elif isinstance(parsed, (tuple, Mapping)):
        assert len(parsed) == len(value), f"{key} lost items"
    else:
        assert parsed is not None, f"{key} was lost"


def _check_server(body: dict[str, Any], relative: str, server: Any) -> None:
    version = _sample_version(relative)
    assert server.id == body["id"]
    assert server.status == body["status"]
    assert isinstance(server.status, ServerStatus)
    assert server.task_state == body.get("OS-EXT-STS:task_state")
    image = body.get("image")
    assert server.image_id == (image["id"] if isinstance(image, dict) else None)
    if "updated" in body:
        assert server.updated is not None
        assert server.updated.tzinfo is not None
        assert server.updated.utcoffset() == timezone.utc.utcoffset(None)
    else:
        assert server.updated is None
    if "flavor" in body:
        if version is not None and version >= APIVersion(2, 47):
            assert server.flavor.id is None
            assert server.flavor.vcpus == body["flavor"]["vcpus"]
            assert server.flavor.ram == body["flavor"]["ram"]
            assert server.flavor.original_name == body["flavor"]["original_name"]
        else:
            assert server.flavor.id == body["flavor"]["id"]
            assert server.flavor.vcpus is None
    if body["status"] == "ERROR":
        assert server.fault is not None
        assert server.fault.message == body["fault"]["message"]
        assert server.fault.code == body["fault"]["code"]
        assert server.fault.created is not None
        assert server.fault.created.tzinfo is not None
    else:
        assert server.fault is None
    for key, value in body.items():
        _check_key_kept(server, key, value)


@pytest.mark.parametrize("relative", SERVER_SAMPLES)
def test_server_sample_parses(relative: str) -> None:
    sample = load_sample(relative)
    server = server_from_wire(sample)
    _check_server(sample["server"], relative, server)
    # The bare object reads the same as the wrapped one.
    assert server_from_wire(sample["server"]) == server


@pytest.mark.parametrize("relative", LIST_SAMPLES)
def test_server_list_sample_parses(relative: str) -> None:
    sample = load_sample(relative)
    page = server_page_from_wire(sample)
    assert [s.id for s in page.servers] == [item["id"] for item in sample["servers"]]
    assert not page.unreadable
    assert page.anonymous == 0
    for body, server in zip(sample["servers"], page.servers, strict=True):
        _check_server(body, relative, server)
    links = [link for link in sample.get("servers_links", []) if link["rel"] == "next"]
    assert page.has_next == bool(links)
    if links:  # Nova's next link names the page's last server as the marker
        assert page.marker == sample["servers"][-1]["id"]


def test_error_samples_carry_their_fault() -> None:
    server = server_from_wire(load_sample("nova/api-guide/faults/server-error-state.json"))
    assert server.status is ServerStatus.ERROR
    assert server.fault is not None
    assert server.fault.code == 500
    assert server.fault.details == "[snip]"
    assert server.fault.message.startswith("No valid host was found")
    minimal = server_from_wire(load_sample("nova/api-guide/faults/server-get-error-fault.json"))
    assert minimal.fault is not None
    assert minimal.fault.details is None
    assert minimal.name is None
    assert minimal.flavor is None


def test_down_cell_server_reads_with_missing_fields() -> None:
    sample = load_sample("nova/servers/v2.71/server-get-down-cell-resp.json")
    server = server_from_wire(sample)
    assert server.status == "UNKNOWN"
    assert server.name is None
    assert server.updated is None
    assert server.task_state is None
    assert server.addresses == {}
    assert server.power_state == 0
    assert server.availability_zone == "UNKNOWN"
    assert server.extra["server_groups"] == ["f3d86fe6-4246-4be8-b87c-eb894626c741"]


@pytest.mark.parametrize("image", ["", None])
def test_boot_from_volume_server_has_no_image(image: str | None) -> None:
    sample = copy.deepcopy(load_sample("nova/servers/v2.98/server-get-resp.json"))
    sample["server"]["image"] = image
    server = server_from_wire(sample)
    assert server.image is None
    assert server.image_id is None
    assert "image" not in server.extra


def test_flavor_shape_before_and_after_247() -> None:
    before = server_from_wire(load_sample("nova/servers/v2.26/server-action-rebuild-resp.json"))
    after = server_from_wire(load_sample("nova/servers/v2.47/server-action-rebuild-resp.json"))
    assert before.flavor is not None
    assert before.flavor.id == "1"
    assert before.flavor.links
    assert after.flavor is not None
    assert after.flavor.id is None
    assert (after.flavor.vcpus, after.flavor.ram, after.flavor.disk) == (1, 512, 1)
    assert after.flavor.original_name == "m1.tiny"


def test_otc_response_keeps_its_admin_pass_out_of_the_repr() -> None:
    server = server_from_wire(load_sample("otc/ecs/server-action-rebuild-resp.json"))
    assert server.status is ServerStatus.REBUILD
    assert server.admin_pass == "qGVjnEjY3ZoY"
    assert server.access_ipv4 is None  # "" means unset
    assert server.disk_config == "MANUAL"
    assert [a.addr for a in server.addresses["443dd9e3-c165-4764-ad92-b17fcf12a3eb"]] == [
        "192.168.0.119"
    ]
    assert "qGVjnEjY3ZoY" not in repr(server)


def test_image_properties_at_298() -> None:
    server = server_from_wire(load_sample("nova/servers/v2.98/server-get-resp.json"))
    assert server.image is not None
    assert server.image.properties is not None
    assert (
        dict(server.image.properties)
        == load_sample("nova/servers/v2.98/server-get-resp.json")["server"]["image"]["properties"]
    )


def test_v275_addresses_carry_mac_and_type() -> None:
    sample = load_sample("nova/servers/v2.75/server-action-rebuild-resp.json")
    server = server_from_wire(sample)
    network, entries = next(iter(sample["server"]["addresses"].items()))
    assert server.addresses[network][0].mac_addr == entries[0]["OS-EXT-IPS-MAC:mac_addr"]
    assert server.addresses[network][0].type == entries[0]["OS-EXT-IPS:type"]
    assert server.vm_state == sample["server"]["OS-EXT-STS:vm_state"]
    assert server.launched_at is not None
    assert server.launched_at.tzinfo is not None


@pytest.mark.parametrize("relative", SERVER_SAMPLES)
def test_links_and_metadata_are_the_service_s_json(relative: str) -> None:
    """Links and metadata are the JSON the service wrote: they compare, print, copy, pickle and
    serialize as such, and so does the whole server."""
    raw = load_sample(relative)["server"]
    server = server_from_wire(copy.deepcopy(raw))
    assert list(server.links) == raw.get("links", [])
    assert json.loads(json.dumps(server.links)) == raw.get("links", [])
    for link in server.links:
        assert ast.literal_eval(repr(link)) == link
    if isinstance(raw.get("metadata"), dict):
        assert json.loads(json.dumps(server.metadata)) == raw["metadata"]
    if server.image is not None and isinstance(raw.get("image"), dict):
        assert list(server.image.links) == raw["image"].get("links", [])
    assert pickle.loads(pickle.dumps(server)) == server
    assert copy.deepcopy(server) == server


def test_servers_of_one_image_and_flavor_share_them_and_only_then() -> None:
    sample = load_sample("nova/servers/v2.98/server-get-resp.json")
    first, second = (server_from_wire(copy.deepcopy(sample)) for _ in range(2))
    assert first.image is second.image
    assert first.flavor is second.flavor
    other = copy.deepcopy(sample)
    other["server"]["image"]["id"] = "70a5e0a4-0000-4000-8000-00000000000b"
    other["server"]["flavor"]["vcpus"] = 64
    third = server_from_wire(other)
    assert third.image is not None
    assert third.image.id == "70a5e0a4-0000-4000-8000-00000000000b"
    assert third.flavor is not None
    assert third.flavor.vcpus == 64
    assert first.flavor is not None
    assert first.flavor.vcpus != 64


def test_a_flavor_is_not_shared_with_one_whose_json_only_compares_equal() -> None:
    sample = load_sample("nova/servers/v2.98/server-get-resp.json")
    server_from_wire(copy.deepcopy(sample))  # its flavor (vcpus 1) is now known
    odd = copy.deepcopy(sample)
    odd["server"]["flavor"]["vcpus"] = True  # equal to 1 in Python, not an integer in JSON
    with pytest.raises(ResponseError):
        server_from_wire(odd)


def test_a_link_with_more_than_href_and_rel_is_kept_whole() -> None:
    sample = copy.deepcopy(load_sample("nova/servers/v2.98/server-get-resp.json"))
    typed = {"href": "https://glance.example/images/x", "rel": "alternate", "type": "x/y"}
    odd = {"href": 5, "rel": "self"}
    sample["server"]["links"] = [typed, odd]
    server = server_from_wire(sample)
    assert list(server.links) == [typed, odd]
    assert server.links[0]["type"] == "x/y"
