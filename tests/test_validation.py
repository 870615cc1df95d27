"""Bad input is refused before anything is sent, with an InvalidRequest naming the field."""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest

from ecs_rebuild_async import (
    ECS,
    NOVA,
    APIVersion,
    InvalidRequest,
    PersonalityFile,
    RebuildRequest,
)
from ecs_rebuild_async._serde import request_to_wire

IMAGE = "70a599e0-31e7-49b7-b260-868f441e862b"
SECRET = "s3cr3t-Pa55-do-not-show"


def _refused(field: str, **kwargs: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        RebuildRequest(**{"image_ref": IMAGE, **kwargs})
    assert caught.value.field == field
    return caught.value


# --- imageRef ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [IMAGE, IMAGE.upper(), IMAGE.replace("-", ""), "{" + IMAGE + "}", "urn:uuid:" + IMAGE,
     f" {IMAGE} ", f"https://glance.example.com/v2/images/{IMAGE}",
     f"http://example.com/6f70656e/images/{IMAGE}/"],
)  # fmt: skip
def test_image_ref_forms_are_sent_as_the_canonical_uuid(value: str) -> None:
    request = RebuildRequest(image_ref=value)
    assert request.image_ref == IMAGE
    assert request_to_wire(request)["rebuild"]["imageRef"] == IMAGE


@pytest.mark.parametrize(
    "value",
    ["", "not-a-uuid", IMAGE[:-1], IMAGE + "0", "+" + IMAGE.replace("-", "")[1:],
     "0000000_000000000000000000000000", "\u0660" * 32, f"ftp://example.com/images/{IMAGE}",
     "https://example.com/images/latest", 42, None, b"x"],
)  # fmt: skip
def test_image_ref_refused(value: object) -> None:
    _refused("imageRef", image_ref=value)


# --- name --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a", "web-1", "x" * 255, "名前", "a b", "ü" * 10])
def test_name_accepted(value: str) -> None:
    assert RebuildRequest(image_ref=IMAGE, name=value).name == value


@pytest.mark.parametrize(
    "value", ["", "x" * 256, " lead", "trail ", "tab\tinside", "new\nline", "\x00", "nbsp\u00a0",
              "emoji\U0001f600", 5]
)  # fmt: skip
def test_name_refused(value: object) -> None:
    _refused("name", name=value)


def test_ecs_name_limit_is_254() -> None:
    request = RebuildRequest(image_ref=IMAGE, name="x" * 255)
    request.check(dialect=NOVA, microversion=APIVersion(2, 1))
    with pytest.raises(InvalidRequest) as caught:
        request.check(dialect=ECS, microversion=APIVersion(2, 1))
    assert caught.value.field == "name"
    RebuildRequest(image_ref=IMAGE, name="x" * 254).check(dialect=ECS)


# --- metadata ----------------------------------------------------------------------------------


def test_metadata_accepted() -> None:
    metadata = {"k": "", "a-b_c:d. e": "v" * 255, "K" * 255: "x"}
    assert RebuildRequest(image_ref=IMAGE, metadata=metadata).metadata == metadata


@pytest.mark.parametrize(
    "metadata",
    [{"": "v"}, {"k" * 256: "v"}, {"bad/key": "v"}, {"key\n": "v"}, {"k": "v" * 256}, {"k": 1},
     {"k": None}, {1: "v"}, ["k", "v"], "k=v"],
)  # fmt: skip
def test_metadata_refused(metadata: object) -> None:
    _refused("metadata", metadata=metadata)


# --- user_data ---------------------------------------------------------------------------------


def test_user_data_text_and_bytes_are_encoded() -> None:
    text = RebuildRequest(image_ref=IMAGE, user_data="#!/bin/sh\necho hi\n")
    raw = RebuildRequest(image_ref=IMAGE, user_data=b"\x00\x01binary")
    assert request_to_wire(text)["rebuild"]["user_data"] == base64.b64encode(
        b"#!/bin/sh\necho hi\n"
    ).decode("ascii")
    assert request_to_wire(raw)["rebuild"]["user_data"] == "AAFiaW5hcnk="


@pytest.mark.parametrize("encoded", ["ZWNobyAiaGVsbG8gd29ybGQi", "", "aGk=", "aGk=\n", "aG k=\r\n"])
def test_pre_encoded_user_data_is_sent_as_given(encoded: str) -> None:
    request = RebuildRequest(image_ref=IMAGE, user_data=encoded, user_data_base64=True)
    assert request_to_wire(request)["rebuild"]["user_data"] == encoded


@pytest.mark.parametrize("encoded", ["aGk", "#!/bin/sh", "aGk=aGk=", "aGk===", "ä" * 4, b"aGk="])
def test_pre_encoded_user_data_is_checked(encoded: object) -> None:
    error = _refused("user_data", user_data=encoded, user_data_base64=True)
    assert str(encoded) not in str(error)


def test_user_data_nova_limit_is_65535_encoded_characters() -> None:
    fits = "A" * 65532  # a multiple of 4 under the limit
    RebuildRequest(image_ref=IMAGE, user_data=fits, user_data_base64=True).check(
        dialect=NOVA, microversion=APIVersion(2, 57)
    )
    _refused("user_data", user_data=b"x" * 49152)  # 65536 encoded characters


def test_user_data_ecs_limit_is_32_kib_before_encoding() -> None:
    at_limit = RebuildRequest(image_ref=IMAGE, user_data=b"x" * 32768)
    at_limit.check(dialect=ECS, microversion=APIVersion(2, 57))
    over = RebuildRequest(image_ref=IMAGE, user_data=b"x" * 32769)
    over.check(dialect=NOVA, microversion=APIVersion(2, 57))
    with pytest.raises(InvalidRequest) as caught:
        over.check(dialect=ECS, microversion=APIVersion(2, 57))
    assert caught.value.field == "user_data"
    assert "32768" in str(caught.value)


def test_user_data_of_a_wrong_type() -> None:
    _refused("user_data", user_data=123)
    _refused("user_data", user_data="aGk=", user_data_base64="yes")


# --- hostname ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hostname", "ok_290", "ok_294"),
    [("custom-hostname", True, True), ("ab", True, True), ("a", False, True),
     ("host.example.com", False, True), ("under_score", False, True), ("-lead", False, True),
     ("x" * 63, True, True), ("x" * 64, False, True), ("x" * 255, False, True)],
)  # fmt: skip
def test_hostname_rules_by_microversion(hostname: str, ok_290: bool, ok_294: bool) -> None:
    request = RebuildRequest(image_ref=IMAGE, hostname=hostname)
    for version, ok in ((APIVersion(2, 90), ok_290), (APIVersion(2, 93), ok_290),
                        (APIVersion(2, 94), ok_294), (APIVersion(2, 100), ok_294)):  # fmt: skip
        if ok:
            request.check(dialect=NOVA, microversion=version)
        else:
            with pytest.raises(InvalidRequest) as caught:
                request.check(dialect=NOVA, microversion=version)
            assert caught.value.field == "hostname"


@pytest.mark.parametrize("hostname", ["", "x" * 256, "bad host", "host\n", "a/b", 7])
def test_hostname_refused_at_any_version(hostname: object) -> None:
    _refused("hostname", hostname=hostname)


# --- trusted certificates ----------------------------------------------------------------------


def test_trusted_certificates() -> None:
    ids = [f"cert-{n}" for n in range(50)]
    request = RebuildRequest(image_ref=IMAGE, trusted_image_certificates=ids)
    assert request_to_wire(request)["rebuild"]["trusted_image_certificates"] == ids
    cleared = RebuildRequest(image_ref=IMAGE, trusted_image_certificates=None)
    assert request_to_wire(cleared)["rebuild"]["trusted_image_certificates"] is None


@pytest.mark.parametrize(
    "value",
    [[], [f"c{n}" for n in range(51)], ["a", "a"], ["a", ""], ["a", 1], "abc", {"a": "b"}],
)
def test_trusted_certificates_refused(value: object) -> None:
    _refused("trusted_image_certificates", trusted_image_certificates=value)


# --- disk config, preserve_ephemeral, adminPass and the ECS dialect ----------------------------


@pytest.mark.parametrize("value", ["AUTO", "MANUAL"])
def test_disk_config_accepted(value: str) -> None:
    request = RebuildRequest(image_ref=IMAGE, disk_config=value)  # type: ignore[arg-type]  # a wrong value on purpose
    assert request_to_wire(request)["rebuild"]["OS-DCF:diskConfig"] == value


@pytest.mark.parametrize("value", ["auto", "Manual", "", None, 1])
def test_disk_config_refused(value: object) -> None:
    _refused("OS-DCF:diskConfig", disk_config=value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"preserve_ephemeral": False}, "preserve_ephemeral"),
     ({"disk_config": "AUTO"}, "OS-DCF:diskConfig")],
)  # fmt: skip
def test_ecs_refuses_what_it_does_not_support(kwargs: dict[str, Any], field: str) -> None:
    request = RebuildRequest(image_ref=IMAGE, **kwargs)
    request.check(dialect=NOVA, microversion=APIVersion(2, 1))
    with pytest.raises(InvalidRequest) as caught:
        request.check(dialect=ECS, microversion=APIVersion(2, 1))
    assert caught.value.field == field


def test_preserve_ephemeral_must_be_a_bool() -> None:
    _refused("preserve_ephemeral", preserve_ephemeral="true")


def test_ecs_warns_about_admin_pass_without_showing_it(caplog: pytest.LogCaptureFixture) -> None:
    request = RebuildRequest(image_ref=IMAGE, admin_pass=SECRET)
    with caplog.at_level(logging.DEBUG, logger="ecs_rebuild_async"):
        request.check(dialect=NOVA, microversion=APIVersion(2, 1))
    assert not caplog.records
    with caplog.at_level(logging.DEBUG, logger="ecs_rebuild_async"):
        request.check(dialect=ECS, microversion=APIVersion(2, 1))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "adminPass" in warnings[0].getMessage()
    assert SECRET not in caplog.text


def test_admin_pass_must_be_text() -> None:
    _refused("adminPass", admin_pass=1234)


# --- the other fields --------------------------------------------------------------------------


def test_description_rules() -> None:
    assert RebuildRequest(image_ref=IMAGE, description=" spaced ").description == " spaced "
    assert RebuildRequest(image_ref=IMAGE, description="").description == ""
    _refused("description", description="x" * 256)
    _refused("description", description="two\nlines")
    _refused("description", description="tab\there")


def test_key_name_rules() -> None:
    _refused("key_name", key_name="")
    _refused("key_name", key_name="k" * 256)
    _refused("key_name", key_name=5)


def test_access_ips() -> None:
    request = RebuildRequest(image_ref=IMAGE, access_ipv4="1.2.3.4", access_ipv6="80fe::")
    assert request_to_wire(request)["rebuild"]["accessIPv6"] == "80fe::"
    _refused("accessIPv4", access_ipv4="")
    _refused("accessIPv4", access_ipv4="1.2.3")
    _refused("accessIPv6", access_ipv6="1.2.3.4")


def test_personality_rules() -> None:
    _refused("personality", personality=[("/etc/motd", "x")])
    _refused("personality", personality=[PersonalityFile("", "x")])
    _refused("personality", personality=[PersonalityFile("/x" * 128, "x")])
    _refused("personality", personality=[PersonalityFile("/etc/motd", 5)])  # type: ignore[arg-type]  # wrong type on purpose
    _refused("personality", personality=[PersonalityFile("/etc/motd", "not base64!", True)])
    _refused("personality", personality="/etc/motd")


def test_personality_contents_never_in_errors_or_reprs() -> None:
    error = _refused("personality", personality=[PersonalityFile("/etc/x", SECRET, True)])
    assert SECRET not in str(error)
    request = RebuildRequest(image_ref=IMAGE, personality=[PersonalityFile("/etc/x", SECRET)])
    assert SECRET not in repr(request)


@pytest.mark.parametrize("field", ["admin_pass", "user_data"])
def test_invalid_request_messages_never_echo_secrets(field: str) -> None:
    # Make the request fail on a different field, with the secret present.
    kwargs: dict[str, Any] = {field: SECRET}
    with pytest.raises(InvalidRequest) as caught:
        RebuildRequest(image_ref=IMAGE, name=" bad", **kwargs)
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)
    # And on the secret's own field.
    big = SECRET * 5000
    with pytest.raises(InvalidRequest) as caught:
        RebuildRequest(image_ref=IMAGE, user_data=big)
    assert SECRET not in str(caught.value)
    with pytest.raises(InvalidRequest) as caught:
        RebuildRequest(image_ref=IMAGE, user_data=SECRET + "!", user_data_base64=True)
    assert SECRET not in str(caught.value)
