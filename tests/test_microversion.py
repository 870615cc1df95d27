"""Microversion parsing, the fields each version allows, and negotiation."""

from __future__ import annotations

import pytest

from ecs_rebuild_async import (
    ECS,
    NOVA,
    APIVersion,
    MicroversionError,
    PersonalityFile,
    RebuildRequest,
    VersionRange,
)
from ecs_rebuild_async._microversion import (
    FIELD_VERSIONS,
    LIBRARY_MAX,
    LIBRARY_MIN,
    check_fields,
    negotiate,
    parse_version,
)

IMAGE = "70a599e0-31e7-49b7-b260-868f441e862b"
NOVA_RANGE = VersionRange(APIVersion(2, 1), APIVersion(2, 104))
ECS_RANGE = VersionRange(APIVersion(2, 1), APIVersion(2, 60))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2.1", APIVersion(2, 1)), ("2.54", APIVersion(2, 54)), ("2.0", APIVersion(2, 0)),
     (" 2.60 ", APIVersion(2, 60)), ("10.100", APIVersion(10, 100))],
)  # fmt: skip
def test_parse_version(text: str, expected: APIVersion) -> None:
    assert parse_version(text) == expected
    assert str(parse_version(text)) == text.strip()


@pytest.mark.parametrize(
    "text",
    ["2.01", "02.1", "2", "2.", ".1", "latest", "Latest", "2.x", "2.1.1", "", "2,1", "v2.1",
     "2.1\n1", "2.\u0661", "2." + "1" * 5000],
)  # fmt: skip
def test_parse_version_rejects_malformed(text: str) -> None:
    with pytest.raises(MicroversionError):
        parse_version(text)


@pytest.mark.parametrize("value", [2.1, None, 2, b"2.1", ["2.1"]])
def test_parse_version_rejects_non_strings(value: object) -> None:
    with pytest.raises(MicroversionError):
        parse_version(value)


def test_versions_order_numerically() -> None:
    assert APIVersion(2, 9) < APIVersion(2, 10) < APIVersion(2, 100) < APIVersion(3, 0)
    assert APIVersion(2, 60) in ECS_RANGE
    assert APIVersion(2, 61) not in ECS_RANGE
    assert "2.60" not in ECS_RANGE


@pytest.mark.parametrize(
    ("field", "too_low", "first"),
    [("description", "2.18", "2.19"), ("key_name", "2.53", "2.54"), ("user_data", "2.56", "2.57"),
     ("trusted_image_certificates", "2.62", "2.63"), ("hostname", "2.89", "2.90")],
)  # fmt: skip
def test_field_needs_its_version(field: str, too_low: str, first: str) -> None:
    with pytest.raises(MicroversionError) as caught:
        check_fields([field], parse_version(too_low))
    assert caught.value.field == field
    assert caught.value.required == first
    assert field in str(caught.value)
    assert first in str(caught.value)
    check_fields([field], parse_version(first))
    check_fields([field], LIBRARY_MAX)


def test_personality_is_gone_from_257() -> None:
    check_fields(["personality"], APIVersion(2, 56))
    with pytest.raises(MicroversionError) as caught:
        check_fields(["personality"], APIVersion(2, 57))
    assert caught.value.field == "personality"
    assert "2.57" in str(caught.value)


def test_request_key_name_at_253_refused_at_254_fine() -> None:
    request = RebuildRequest(image_ref=IMAGE, key_name="k1")
    with pytest.raises(MicroversionError) as caught:
        request.check(dialect=NOVA, microversion=APIVersion(2, 53))
    assert caught.value.field == "key_name"
    assert caught.value.required == "2.54"
    request.check(dialect=NOVA, microversion=APIVersion(2, 54))
    request.check(dialect=ECS, microversion=APIVersion(2, 54))


def test_request_personality_refused_from_257() -> None:
    request = RebuildRequest(image_ref=IMAGE, personality=[PersonalityFile("/etc/motd", "x")])
    request.check(dialect=NOVA, microversion=APIVersion(2, 56))
    with pytest.raises(MicroversionError, match="personality"):
        request.check(dialect=NOVA, microversion=APIVersion(2, 57))


def test_without_microversions_only_21_fields_pass() -> None:
    RebuildRequest(image_ref=IMAGE, name="x").check(dialect=NOVA, microversion=None)
    with pytest.raises(MicroversionError, match="description"):
        RebuildRequest(image_ref=IMAGE, description="d").check(dialect=NOVA, microversion=None)


def test_min_microversion() -> None:
    assert RebuildRequest(image_ref=IMAGE).min_microversion() == LIBRARY_MIN
    assert RebuildRequest(image_ref=IMAGE, key_name=None).min_microversion() == APIVersion(2, 54)
    both = RebuildRequest(image_ref=IMAGE, user_data="x", hostname="h1")
    assert both.min_microversion() == APIVersion(2, 90)


def test_negotiate_picks_the_highest_common_version() -> None:
    assert negotiate(["imageRef"], NOVA_RANGE) == LIBRARY_MAX
    assert negotiate(["imageRef", "key_name"], ECS_RANGE) == APIVersion(2, 60)
    assert negotiate(["imageRef", "personality"], NOVA_RANGE) == APIVersion(2, 56)


def test_negotiate_fails_when_the_service_is_too_old() -> None:
    with pytest.raises(MicroversionError) as caught:
        negotiate(["imageRef", "hostname"], ECS_RANGE)
    assert caught.value.field == "hostname"
    assert caught.value.required == "2.90"


def test_negotiate_fails_for_fields_with_no_common_version() -> None:
    with pytest.raises(MicroversionError):
        negotiate(["personality", "user_data"], NOVA_RANGE)


def test_negotiate_with_a_pin() -> None:
    assert negotiate(["key_name"], ECS_RANGE, pinned=APIVersion(2, 54)) == APIVersion(2, 54)
    with pytest.raises(MicroversionError, match="key_name"):
        negotiate(["key_name"], ECS_RANGE, pinned=APIVersion(2, 53))
    with pytest.raises(MicroversionError, match="offers"):
        negotiate([], ECS_RANGE, pinned=APIVersion(2, 61))


def test_negotiate_without_microversions() -> None:
    assert negotiate(["imageRef", "name"], None) is None
    with pytest.raises(MicroversionError):
        negotiate(["imageRef", "key_name"], None)
    with pytest.raises(MicroversionError, match="/v2"):
        negotiate(["imageRef"], None, pinned=APIVersion(2, 54))


def test_field_table_matches_the_contract() -> None:
    assert {
        "description": (APIVersion(2, 19), None),
        "key_name": (APIVersion(2, 54), None),
        "user_data": (APIVersion(2, 57), None),
        "personality": (APIVersion(2, 1), APIVersion(2, 57)),
        "trusted_image_certificates": (APIVersion(2, 63), None),
        "hostname": (APIVersion(2, 90), None),
        # Not fields: from 2.93 Nova reimages a volume-backed server's root volume, always.
        "reimage_boot_volume": (APIVersion(2, 93), None),
        "no_reimage_boot_volume": (APIVersion(2, 1), APIVersion(2, 93)),
    } == FIELD_VERSIONS


@pytest.mark.parametrize("left", [(2, 1), (2, 53), (2, 100), (3, 0)])
@pytest.mark.parametrize("right", [(2, 1), (2, 9), (2, 53), (3, 0)])
def test_versions_order_by_major_then_minor(left: tuple[int, int], right: tuple[int, int]) -> None:
    a, b = APIVersion(*left), APIVersion(*right)
    assert (a < b, a <= b, a > b, a >= b, a == b) == (
        left < right,
        left <= right,
        left > right,
        left >= right,
        left == right,
    )
    assert max(a, b) == APIVersion(*max(left, right))


def test_a_version_does_not_order_against_text() -> None:
    with pytest.raises(TypeError):
        assert APIVersion(2, 1) < "2.2"  # type: ignore[operator]  # the error under test
