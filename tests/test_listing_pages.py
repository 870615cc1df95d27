"""A ``/servers/detail`` page is read entry by entry: one bad entry spoils only itself."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from ecs_rebuild_async import ResponseError
from ecs_rebuild_async._serde import server_page_from_wire


def entry(server_id: Any, updated: str = "2026-11-29T12:00:00Z", **fields: Any) -> dict[str, Any]:
    return {"id": server_id, "status": "ACTIVE", "updated": updated, **fields}


def page(*entries: Any, links: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"servers": list(entries)}
    if links is not None:
        body["servers_links"] = links
    return body


def next_link(href: str) -> list[dict[str, str]]:
    return [{"rel": "next", "href": href}]


def test_an_unreadable_entry_is_kept_under_its_id_and_spoils_nothing_else() -> None:
    read = server_page_from_wire(
        page(entry("a"), entry("b", metadata={"count": 3}), entry("c", status=None))
    )
    assert [s.id for s in read.servers] == ["a"]
    assert set(read.unreadable) == {"b", "c"}
    assert all(isinstance(error, ResponseError) for error in read.unreadable.values())
    assert read.anonymous == 0
    assert read.ids == ["a", "b", "c"]


@pytest.mark.parametrize("bad", [{"id": 17}, {"name": "no id"}, "not an object", None, {"id": ""}])
def test_an_entry_without_a_readable_id_could_be_anyone(bad: Any) -> None:
    read = server_page_from_wire(page(entry("a"), bad))
    assert [s.id for s in read.servers] == ["a"]
    assert read.anonymous == 1
    assert not read.unreadable


def test_read_for_wanted_ids_only_their_servers_are_kept_but_every_time_counts() -> None:
    read = server_page_from_wire(
        page(
            entry("a", "2026-11-29T12:00:00Z"),
            entry("b", "2026-11-29T12:05:00Z", metadata={"count": 3}),
            entry("c", "2026-11-29T12:01:00Z"),
        ),
        wanted={"c"},
    )
    assert [s.id for s in read.servers] == ["c"]
    assert not read.unreadable  # b's record is bad, but nobody asked for b
    assert read.newest == datetime(2026, 11, 29, 12, 5, tzinfo=timezone.utc)


# (servers_links, has next, marker of the next page)
LINKS = [
    (None, False, None),
    ([], False, None),
    ([{"rel": "self", "href": "http://x/servers"}], False, None),
    (next_link("http://x/v2.1/p/servers/detail?limit=2&marker=m-2"), True, "m-2"),
    # Without a marker in the link, the page's last entry is where the next page starts.
    (next_link("http://x/v2.1/p/servers/detail?limit=2"), True, "b"),
]


@pytest.mark.parametrize(("links", "has_next", "marker"), LINKS)
def test_the_next_link(links: Any, has_next: bool, marker: str | None) -> None:
    read = server_page_from_wire(page(entry("a"), entry("b"), links=links))
    assert read.has_next is has_next
    if has_next:
        assert read.marker == marker


@pytest.mark.parametrize(
    "links",
    [
        {"rel": "next"},  # not a list
        [{"rel": "next", "href": 5}],  # a next link without a usable href
        [{"rel": "next", "href": "http://[::1/servers/detail?marker=a"}],  # not a URL
    ],
)
def test_a_next_link_that_cannot_be_read_makes_the_listing_unreadable(links: Any) -> None:
    with pytest.raises(ResponseError):
        server_page_from_wire(page(entry("a"), links=links))


@pytest.mark.parametrize("body", [None, [], {"servers": {}}, {"servers": "x"}, "<html>"])
def test_a_page_without_a_servers_list_is_a_response_error(body: Any) -> None:
    with pytest.raises(ResponseError, match="'servers' list"):
        server_page_from_wire(body)


@pytest.mark.parametrize(
    ("updated", "newest"),
    [
        ("2026-11-29T12:00:00+01:00", datetime(2026, 11, 29, 11, 0, tzinfo=timezone.utc)),
        ("9999-12-31T23:59:59-23:59", None),  # past what UTC can hold
        ("0001-01-01T00:00:00+01:00", None),  # before it
        ("yesterday", None),
        (5, None),
    ],
)
def test_an_entrys_time_counts_only_when_utc_can_hold_it(updated: Any, newest: Any) -> None:
    read = server_page_from_wire(page({"id": "x", "updated": updated}))
    assert read.newest == newest
