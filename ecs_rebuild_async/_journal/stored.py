"""A stored request body back into a :class:`RebuildRequest`, with the secrets given again."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._errors import InvalidRequest
from .._models import UNSET, PersonalityFile, RebuildRequest, Unset

__all__ = ["request_from_body"]

# Wire name -> RebuildRequest attribute, for the fields stored as they are.
_PLAIN = {
    "name": "name",
    "OS-DCF:diskConfig": "disk_config",
    "preserve_ephemeral": "preserve_ephemeral",
    "key_name": "key_name",
    "description": "description",
    "hostname": "hostname",
    "accessIPv4": "access_ipv4",
    "accessIPv6": "access_ipv6",
}


def request_from_body(
    body: Mapping[str, Any],
    *,
    admin_pass: str | Unset = UNSET,
    user_data: str | bytes | Unset | None = UNSET,
) -> RebuildRequest:
    """The request a stored body (secrets removed) was made from, with the secrets given."""
    fields: dict[str, Any] = {"image_ref": body.get("imageRef")}
    for wire, attribute in _PLAIN.items():
        if wire in body:
            fields[attribute] = body[wire]
    if "metadata" in body:
        fields["metadata"] = body["metadata"]
    if "personality" in body:
        files = body["personality"]
        if not isinstance(files, list):
            raise InvalidRequest("the journal's request has a malformed personality list")
        fields["personality"] = [
            PersonalityFile(item["path"], item["contents"], contents_base64=True) for item in files
        ]
    if "trusted_image_certificates" in body:
        certs = body["trusted_image_certificates"]
        fields["trusted_image_certificates"] = None if certs is None else tuple(certs)
    fields["admin_pass"] = admin_pass
    fields["user_data"] = user_data
    return RebuildRequest(**fields)
