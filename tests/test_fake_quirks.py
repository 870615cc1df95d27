"""FakeCompute's standing quirks: Date stripped, garbage or skewed; a page cap; broken paging;
an unreadable record; another server's body in a GET."""

from __future__ import annotations

import json
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from ecs_rebuild_async.testing import FakeCompute


def _get(fake: FakeCompute, path: str, query: str = "") -> tuple[int, dict[str, str], Any]:
    status, headers, body = fake.handle(
        "GET", f"/v2.1/{fake.project_id}/{path}", query, {"X-Auth-Token": fake.token}
    )
    return status, {k.lower(): v for k, v in headers}, json.loads(body)


def _next_query(body: dict[str, Any]) -> dict[str, list[str]] | None:
    for link in body.get("servers_links", []):
        if link["rel"] == "next":
            return parse_qs(urlsplit(link["href"]).query)
    return None


def test_date_header_is_the_fake_clock_by_default_and_can_be_skewed() -> None:
    fake = FakeCompute(time_scale=0)
    server = fake.add_server()
    _, headers, _ = _get(fake, f"servers/{server}")
    assert abs(parsedate_to_datetime(headers["date"]).timestamp() - fake.now()) < 1.0
    fake.date_skew = 90
    _, headers, body = _get(fake, f"servers/{server}")
    assert abs(parsedate_to_datetime(headers["date"]).timestamp() - (fake.now() + 90)) < 1.0
    # Only the header moves: the server's own times keep the service's clock.
    updated = datetime.fromisoformat(body["server"]["updated"].replace("Z", "+00:00"))
    assert abs(updated.timestamp() - fake.now()) < 1.0


@pytest.mark.parametrize(
    ("setting", "expected"), [("missing", None), ("garbage", "sometime last week")]
)
def test_date_header_can_be_stripped_or_garbage(setting: str, expected: str | None) -> None:
    fake = FakeCompute(time_scale=0, date_header=setting)  # type: ignore[arg-type]
    server = fake.add_server()
    _, headers, _ = _get(fake, f"servers/{server}")
    assert headers.get("date") == expected
    fake.date_header = "service"
    _, headers, _ = _get(fake, f"servers/{server}")
    assert parsedate_to_datetime(headers["date"]) is not None


def test_bad_quirk_values_are_refused() -> None:
    fake = FakeCompute(time_scale=0)
    with pytest.raises(ValueError, match="date_header"):
        fake.date_header = "sometimes"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="paging"):
        fake.paging = "random"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="max_limit"):
        fake.max_limit = 0
    with pytest.raises(ValueError, match="date_skew"):
        fake.date_skew = float("nan")
    with pytest.raises(KeyError):
        fake.corrupt_record("no-such-server")


def test_max_limit_caps_pages_and_full_pages_link_to_the_next() -> None:
    fake = FakeCompute(time_scale=0)
    ids = fake.add_servers(25)
    fake.max_limit = 10
    seen: list[str] = []
    query = "limit=1000"
    for _ in range(5):
        _, _, body = _get(fake, "servers/detail", query)
        seen.extend(s["id"] for s in body["servers"])
        following = _next_query(body)
        if following is None:
            break
        assert len(body["servers"]) == 10
        query = f"limit=1000&marker={following['marker'][0]}"
    assert sorted(seen) == sorted(ids)
    assert fake.stats.requests[("GET", "servers_detail")] == 3


def test_ignore_marker_repeats_the_first_page() -> None:
    fake = FakeCompute(time_scale=0, max_limit=5, paging="ignore_marker")
    fake.add_servers(12)
    _, _, first = _get(fake, "servers/detail")
    marker = _next_query(first)["marker"][0]  # type: ignore[index]
    _, _, second = _get(fake, "servers/detail", f"marker={marker}")
    assert second["servers"] == first["servers"]
    assert _next_query(second) == _next_query(first)


def test_next_to_self_links_a_full_page_to_itself() -> None:
    fake = FakeCompute(time_scale=0, max_limit=5, paging="next_to_self")
    ids = fake.add_servers(12)
    query = f"limit=5&marker={ids[-3]}"
    _, _, body = _get(fake, "servers/detail", query)
    assert len(body["servers"]) == 5
    assert body["servers_links"][0]["href"].endswith(f"/servers/detail?{query}")


def test_corrupt_record_spoils_listings_and_optionally_the_get() -> None:
    fake = FakeCompute(time_scale=0)
    good, bad = fake.add_servers(2)
    fake.corrupt_record(bad, listings_only=True)
    _, _, listing = _get(fake, "servers/detail")
    by_id = {s["id"]: s for s in listing["servers"]}
    assert by_id[bad]["metadata"] == {"count": 3}
    assert by_id[good]["metadata"] == {}
    _, _, alone = _get(fake, f"servers/{bad}")
    assert alone["server"]["metadata"] == {}
    fake.corrupt_record(bad, {"id": 17})
    _, _, alone = _get(fake, f"servers/{bad}")
    assert alone["server"]["id"] == 17
    fake.repair_record(bad)
    _, _, alone = _get(fake, f"servers/{bad}")
    assert alone["server"]["id"] == bad


def test_other_server_fault_answers_a_get_with_another_servers_body() -> None:
    fake = FakeCompute(time_scale=0)
    first, second = fake.add_servers(2)
    fake.faults.script("GET", "server", ["other_server", "other_server"])
    assert _get(fake, f"servers/{first}")[2]["server"]["id"] == second
    assert _get(fake, f"servers/{second}")[2]["server"]["id"] == first
    assert _get(fake, f"servers/{first}")[2]["server"]["id"] == first
    assert fake.stats.faults["other_server"] == 2
