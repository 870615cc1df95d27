"""The models: UNSET against None, secrets kept out of reprs, statuses from newer services."""

from __future__ import annotations

import json

import attrs
import pytest

from ecs_rebuild_async import (
    ECS,
    NOVA,
    UNSET,
    Dialect,
    Fault,
    NotFound,
    OutcomeKind,
    RebuildOutcome,
    RebuildRequest,
    Server,
    ServerStatus,
)
from ecs_rebuild_async._serde import request_to_wire, server_from_wire

IMAGE = "70a599e0-31e7-49b7-b260-868f441e862b"
PASSWORD = "Adm1n-Pa55-w0rd"
USER_DATA = "#!/bin/sh\necho top-secret-user-data\n"


def test_unset_is_left_out_and_none_is_sent_as_null() -> None:
    left_out = request_to_wire(RebuildRequest(image_ref=IMAGE))
    assert left_out == {"rebuild": {"imageRef": IMAGE}}
    nulls = request_to_wire(
        RebuildRequest(image_ref=IMAGE, key_name=None, user_data=None, description=None)
    )
    assert nulls == {
        "rebuild": {"imageRef": IMAGE, "key_name": None, "user_data": None, "description": None}
    }
    assert json.loads(json.dumps(nulls)) == nulls
    assert '"key_name": null' in json.dumps(nulls)


def test_unset_is_distinct_from_none() -> None:
    assert UNSET is not None
    assert not UNSET
    assert repr(UNSET) == "UNSET"
    request = RebuildRequest(image_ref=IMAGE)
    assert request.key_name is UNSET
    assert "key_name" not in request.wire_fields()
    assert "key_name" in RebuildRequest(image_ref=IMAGE, key_name=None).wire_fields()


def test_request_repr_hides_secrets() -> None:
    request = RebuildRequest(image_ref=IMAGE, admin_pass=PASSWORD, user_data=USER_DATA)
    text = repr(request)
    assert PASSWORD not in text
    assert "top-secret-user-data" not in text
    encoded = request_to_wire(request)["rebuild"]["user_data"]
    assert encoded not in text
    assert "admin_pass='***'" in text
    assert IMAGE in text


def test_request_repr_of_pre_encoded_user_data_hides_it() -> None:
    encoded = "ZWNobyAiaGVsbG8gd29ybGQi"
    request = RebuildRequest(image_ref=IMAGE, user_data=encoded, user_data_base64=True)
    assert encoded not in repr(request)
    assert "user_data=None" in repr(RebuildRequest(image_ref=IMAGE, user_data=None))


def test_server_repr_hides_secrets() -> None:
    server = server_from_wire(
        {
            "server": {
                "id": "s1",
                "status": "ACTIVE",
                "adminPass": PASSWORD,
                "user_data": "IyEvYmluL3NoCmVjaG8gdG9wLXNlY3JldA==",
            }
        }
    )
    assert server.admin_pass == PASSWORD
    assert server.user_data == "IyEvYmluL3NoCmVjaG8gdG9wLXNlY3JldA=="
    assert PASSWORD not in repr(server)
    assert "IyEvYmluL3NoCmVjaG8gdG9wLXNlY3JldA==" not in repr(server)
    assert PASSWORD not in str(server)
    direct = Server(id="s2", status=ServerStatus.ACTIVE, admin_pass=PASSWORD, user_data=USER_DATA)
    assert PASSWORD not in repr(direct)
    assert "top-secret" not in repr(direct)


def test_outcome_repr_hides_a_servers_secrets() -> None:
    server = Server(id="s1", status=ServerStatus.ACTIVE, admin_pass=PASSWORD)
    outcome = RebuildOutcome(server_id="s1", ok=True, kind=OutcomeKind.OK, server=server)
    assert PASSWORD not in repr(outcome)


def test_unknown_status_is_kept() -> None:
    status = ServerStatus("MIGRATING_TO_MARS")
    assert status.known is False
    assert status.value == "MIGRATING_TO_MARS"
    assert str(status) == "MIGRATING_TO_MARS"
    assert status == "MIGRATING_TO_MARS"
    assert status == ServerStatus("MIGRATING_TO_MARS")
    assert ServerStatus("ACTIVE") is ServerStatus.ACTIVE
    assert ServerStatus.ACTIVE.known is True
    assert ServerStatus.UNKNOWN.known is True


def test_unknown_status_reads_from_the_wire() -> None:
    server = server_from_wire({"server": {"id": "s1", "status": "HIBERNATED"}})
    assert server.status == "HIBERNATED"
    assert server.status.known is False


def test_lowercase_status_is_not_mistaken_for_a_known_one() -> None:
    assert ServerStatus("active").known is False
    assert ServerStatus("active") != ServerStatus.ACTIVE


def test_server_status_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="not a valid"):
        ServerStatus(5)


def test_dialects() -> None:
    assert ECS is Dialect.ECS
    assert NOVA is Dialect.NOVA
    assert {ECS, NOVA} == set(Dialect)


def test_models_are_frozen() -> None:
    request = RebuildRequest(image_ref=IMAGE, metadata={"a": "b"})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        request.name = "x"  # type: ignore[misc]  # frozen: must raise
    server = Server(id="s1", status=ServerStatus.ACTIVE)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        server.status = ServerStatus.ERROR  # type: ignore[misc]  # frozen: must raise


def test_metadata_is_copied_from_the_callers_dict() -> None:
    metadata = {"a": "b"}
    request = RebuildRequest(image_ref=IMAGE, metadata=metadata)
    metadata["c"] = "d"
    assert request_to_wire(request)["rebuild"]["metadata"] == {"a": "b"}


def test_evolve_rechecks_values() -> None:
    request = RebuildRequest(image_ref=IMAGE, name="ok")
    with pytest.raises(ValueError, match="name"):
        attrs.evolve(request, name=" bad ")


def test_fault_and_outcome() -> None:
    fault = Fault(message="No valid host was found.", code=500)
    assert fault.details is None
    error = NotFound("gone", status=404)
    outcome = RebuildOutcome(server_id="s1", ok=False, kind=OutcomeKind.NOT_FOUND, error=error)
    assert outcome.error is error
    assert outcome.submitted is False
    assert OutcomeKind("ok") is OutcomeKind.OK


def test_server_image_id() -> None:
    server = server_from_wire({"id": "s1", "status": "ACTIVE", "image": {"id": IMAGE}})
    assert server.image_id == IMAGE
    assert server_from_wire({"id": "s1", "status": "ACTIVE", "image": ""}).image_id is None
