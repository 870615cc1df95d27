"""Server representations per microversion, as a non-admin project member sees them.

Two shapes: the GET/list view (``server_view``) and the rebuild response
(``rebuild_view``), which from 2.75 is the GET view plus ``adminPass``/``user_data``.
Admin-only keys (``OS-EXT-SRV-ATTR:host`` and the like, ``host_status``) are never shown.
"""

from __future__ import annotations

from typing import Any

from ._clock import iso_naive_micro, iso_seconds
from ._state import POWER_STATE, Observed, ServerRecord
from ._versioning import Version

__all__ = ["FLAVOR", "server_view", "rebuild_view", "Links"]

FLAVOR_ID = "1"
FLAVOR: dict[str, Any] = {
    "original_name": "m1.tiny",
    "vcpus": 1,
    "ram": 512,
    "disk": 1,
    "ephemeral": 0,
    "swap": 0,
    "extra_specs": {},
}
_PROGRESS_STATUSES = frozenset(
    {"ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING"}
)


class Links:
    """URL prefixes for one request's base URL and project (links follow the Host used)."""

    __slots__ = ("bookmark", "compute")

    def __init__(self, base: str, project_id: str) -> None:
        self.compute = f"{base}/v2.1/{project_id}"
        self.bookmark = f"{base}/{project_id}"

    def server(self, server_id: str) -> list[dict[str, str]]:
        return [
            {"href": f"{self.compute}/servers/{server_id}", "rel": "self"},
            {"href": f"{self.bookmark}/servers/{server_id}", "rel": "bookmark"},
        ]

    def image(self, image_id: str) -> dict[str, Any]:
        href = f"{self.bookmark}/images/{image_id}"
        return {"id": image_id, "links": [{"href": href, "rel": "bookmark"}]}


def _flavor(version: Version, links: Links) -> dict[str, Any]:
    if version >= (2, 47):
        return {**FLAVOR, "extra_specs": {}}
    href = f"{links.bookmark}/flavors/{FLAVOR_ID}"
    return {"id": FLAVOR_ID, "links": [{"href": href, "rel": "bookmark"}]}


def _address(record: ServerRecord, extended: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"addr": f"10.0.{record.index // 250}.{record.index % 250 + 2}"}
    entry["version"] = 4
    if extended:
        entry["OS-EXT-IPS-MAC:mac_addr"] = (
            f"fa:16:3e:00:{record.index // 256 % 256:02x}:{record.index % 256:02x}"
        )
        entry["OS-EXT-IPS:type"] = "fixed"
    return {"private": [entry]}


def _fault(seen: Observed) -> dict[str, Any] | None:
    if seen.fault is None or seen.status not in ("ERROR", "DELETED"):
        return None
    # details go only to admins or when the code is not 500 (views/servers.py _get_fault).
    body: dict[str, Any] = {
        "code": seen.fault.code,
        "created": iso_seconds(seen.fault.created),
        "message": seen.fault.message,
    }
    if seen.fault.code != 500:
        body["details"] = seen.fault.details
    return body


def _common(
    seen: Observed, version: Version, links: Links, project_id: str, user_id: str, *, extended: bool
) -> dict[str, Any]:
    record = seen.record
    status = seen.status
    image = links.image(record.image_id)
    if version >= (2, 98):
        image["properties"] = {}
    body: dict[str, Any] = {
        "id": record.id,
        "name": record.name,
        "status": status,
        "tenant_id": project_id,
        "user_id": user_id,
        "metadata": dict(record.metadata),
        "hostId": "c0ffee" + record.id.replace("-", "")[:22],
        "image": image,
        "flavor": _flavor(version, links),
        "created": iso_seconds(record.created_at),
        "updated": iso_seconds(seen.updated_at),
        "addresses": _address(record, extended),
        "accessIPv4": record.access_ipv4,
        "accessIPv6": record.access_ipv6,
        "links": links.server(record.id),
        "OS-DCF:diskConfig": record.disk_config,
    }
    if status in _PROGRESS_STATUSES:
        body["progress"] = 0
    fault = _fault(seen)
    if fault is not None:
        body["fault"] = fault
    if version >= (2, 9):
        body["locked"] = record.locked
    if version >= (2, 19):
        body["description"] = record.description
    if version >= (2, 26):
        body["tags"] = list(record.tags)
    return body


def server_view(
    seen: Observed, version: Version, links: Links, project_id: str, user_id: str
) -> dict[str, Any]:
    """The ``GET /servers/{id}`` and ``/servers/detail`` representation."""
    record = seen.record
    body = _common(seen, version, links, project_id, user_id, extended=True)
    body["key_name"] = record.key_name
    body["config_drive"] = ""
    body["OS-EXT-AZ:availability_zone"] = "nova"
    power = 0 if seen.task_state == "rebuild_spawning" else POWER_STATE.get(seen.vm_state, 0)
    body["OS-EXT-STS:power_state"] = power
    body["OS-EXT-STS:task_state"] = seen.task_state
    body["OS-EXT-STS:vm_state"] = seen.vm_state
    body["os-extended-volumes:volumes_attached"] = []
    launched = record.launched_at if seen.launched_at is None else seen.launched_at
    body["OS-SRV-USG:launched_at"] = iso_naive_micro(launched)
    body["OS-SRV-USG:terminated_at"] = (
        iso_naive_micro(record.deleted_at) if record.deleted_at is not None else None
    )
    body["security_groups"] = [{"name": "default"}]
    if version >= (2, 63):
        body["trusted_image_certificates"] = record.trusted_certs
    if version >= (2, 71):
        body["server_groups"] = []
    if version >= (2, 73):
        body["locked_reason"] = None
    if version >= (2, 90):
        body["OS-EXT-SRV-ATTR:hostname"] = record.hostname
    if version >= (2, 96):
        body["pinned_availability_zone"] = None
    if version >= (2, 100):
        body["scheduler_hints"] = {}
    return body


def rebuild_view(
    seen: Observed,
    version: Version,
    links: Links,
    project_id: str,
    user_id: str,
    admin_pass: str,
) -> dict[str, Any]:
    """The body of the 202 answer to a rebuild."""
    record = seen.record
    if version >= (2, 75):
        body = server_view(seen, version, links, project_id, user_id)
    else:
        body = _common(seen, version, links, project_id, user_id, extended=False)
        if version >= (2, 54):
            body["key_name"] = record.key_name
        if version >= (2, 63):
            body["trusted_image_certificates"] = record.trusted_certs
        if version >= (2, 71):
            body["server_groups"] = []
        if version >= (2, 73):
            body["locked_reason"] = None
    if version >= (2, 57):
        body["user_data"] = record.user_data
    body["adminPass"] = admin_pass
    return body
