"""Properties of the AK/SK signer over arbitrary input: it signs, or refuses with InvalidRequest.

The lifecycle table has its properties in test_lifecycle.py, and version parsing and negotiation
theirs in test_properties.py; they are not repeated here.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime, timezone

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ecs_rebuild_async import InvalidRequest
from ecs_rebuild_async._signing import (
    ALGORITHM,
    canonical_query_from_string,
    canonical_request,
    sign,
    string_to_sign,
)

BOUNDED = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Lone surrogates too: text read from the environment with surrogateescape carries them.
ANY_TEXT = st.text(max_size=40) | st.text(
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"]) | st.characters(),
    max_size=8,
)
PRINTABLE = st.characters(codec="ascii", categories=["L", "N", "P", "S", "Zs"])
URL_CHARS = st.characters(codec="ascii") | st.sampled_from(list("%/?&=+#[]@:;é\x00 \t"))
URL_LIKE = st.one_of(
    ANY_TEXT,
    st.text(URL_CHARS, max_size=40),
    st.builds(
        lambda scheme, host, path, query: f"{scheme}://{host}{path}?{query}",
        st.sampled_from(["http", "https", "HTTP", ""]),
        st.text(URL_CHARS, max_size=15),
        st.text(URL_CHARS, max_size=20),
        st.text(URL_CHARS, max_size=20),
    ),
)
HEADER_NAMES = st.sampled_from(
    [
        "Host",
        "host",
        "X-Sdk-Date",
        "Content-Type",
        "X-Sdk-Content-Sha256",
        "X_Under",
        "X-Project-Id",
    ]
) | st.text(max_size=12)
HEADERS = st.dictionaries(HEADER_NAMES, ANY_TEXT, max_size=6)
SDK_DATES = (
    st.none()
    | ANY_TEXT
    | st.sampled_from(["20200608T023900Z", "2020-06-08", ""])
    | st.datetimes(timezones=st.none() | st.just(timezone.utc))
)


@BOUNDED
@given(
    method=ANY_TEXT,
    url=URL_LIKE,
    headers=HEADERS,
    body=st.binary(max_size=64),
    ak=ANY_TEXT,
    sk=ANY_TEXT.map(lambda text: "sk-canary-" + text),
    sdk_date=SDK_DATES,
)
@example("GET", "https://[", {}, b"", "ak", "sk-canary-x", None)
@example("GET", "https://ecs.example.com/v2.1/servers", {}, b"", "ak", "sk-canary-\udcff", None)
@example(
    "GET", "https://ecs.example.com/\udcff", {"X-A": "\udcff"}, b"{}", "ak", "sk-canary-", None
)
def test_sign_gives_headers_or_invalid_request(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    ak: str,
    sk: str,
    sdk_date: str | datetime | None,
) -> None:
    refusal: str | None = None
    try:
        added = sign(method, url, headers, body, ak, sk, sdk_date=sdk_date)
    except InvalidRequest as exc:
        refusal = str(exc)
    if refusal is not None:
        assert refusal  # a refusal says why
        assert sk not in refusal  # the refusal never repeats the secret key
        return
    assert isinstance(added, dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in added.items())
    assert added["Authorization"].startswith(f"{ALGORITHM} Access=")
    assert re.search(r"Signature=[0-9a-f]{64}$", added["Authorization"])
    assert sk not in "".join(added.values())


@BOUNDED
@given(
    path=st.text(PRINTABLE, max_size=30),
    query=st.text(PRINTABLE, max_size=30),
    extra=st.dictionaries(
        st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=8),
        st.text(PRINTABLE, max_size=20),
        max_size=4,
    ),
    body=st.binary(max_size=64),
    sk=st.text(min_size=1, max_size=30),
)
def test_a_signature_verifies_against_the_canonical_request(
    path: str, query: str, extra: dict[str, str], body: bytes, sk: str
) -> None:
    """Whatever it signs, a verifier that rebuilds the canonical request gets the same HMAC."""
    headers = {**extra, "Host": "ecs.example.com", "X-Sdk-Date": "20200608T023900Z"}
    path, query = path.replace("?", "").replace("#", ""), query.replace("#", "")
    target = "/" + path.lstrip("/") + (f"?{query}" if query else "")
    try:
        added = sign("POST", target, headers, body, "AK", sk)
    except InvalidRequest:
        return
    complete = {**headers, **added}
    complete.pop("Authorization")
    split_path, _, split_query = target.partition("?")
    canonical, names = canonical_request("POST", split_path, split_query, complete, body)
    expected = hmac.new(
        sk.encode("utf-8", "surrogatepass"),
        string_to_sign(canonical, "20200608T023900Z").encode("utf-8", "surrogatepass"),
        hashlib.sha256,
    ).hexdigest()
    assert added["Authorization"].endswith(f"SignedHeaders={names}, Signature={expected}")


@BOUNDED
@given(query=st.text(max_size=40))
def test_canonical_query_is_a_fixed_point(query: str) -> None:
    """Signing the canonical query sent as the query gives the same canonical query back."""
    once = canonical_query_from_string(query)
    assert canonical_query_from_string(once) == once
