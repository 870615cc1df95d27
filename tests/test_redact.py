"""The scrubber and the escaping, table-tested: pure, no event loop."""

from __future__ import annotations

import base64

import pytest

from ecs_rebuild_async._escape import escape_control
from ecs_rebuild_async._redact import SecretStore, clean_text, request_secrets, scrub


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("X-Auth-Token: tok123; Accept: */*", "X-Auth-Token: ***; Accept: */*"),
        ("[(b'X-Subject-Token', b'gAAAAB'), (b'Accept', b'*/*')]",
         "[(b'X-Subject-Token', b'***'), (b'Accept', b'*/*')]"),
        ("Adding b'x-auth-token'=b'gAAAA' to the header table",
         "Adding b'x-auth-token'=b'***' to the header table"),
        ("authorization: Basic dXNlcjpwYXNz; user-agent: x",
         "authorization: *** ***; user-agent: x"),
        ("SDK-HMAC-SHA256 Access=AKID, SignedHeaders=host, Signature=abc",
         "SDK-HMAC-SHA256 Access=***, SignedHeaders=host, Signature=***"),
        ('{"auth": {"password": "p\\"w"}, "secret": "s"}',
         '{"auth": {"password": "***"}, "secret": "***"}'),
        ("Value: {'adminPass': 'hunter22', 'name': 'web'}",
         "Value: {'adminPass': \"***\", 'name': 'web'}"),
        ('{"user_data": "I2Nsb3Vk', '{"user_data": "***"'),  # cut off mid-value
        ("server web-1 is in task_state rebuilding", "server web-1 is in task_state rebuilding"),
    ],
)  # fmt: skip
def test_secrets_are_masked_by_shape(text: str, expected: str) -> None:
    assert scrub(text) == expected


def test_secrets_are_masked_by_value_in_every_echoed_form() -> None:
    store = SecretStore('pa"ss/wörd')
    for echoed in ('pa"ss/wörd', 'pa\\"ss/w\\u00f6rd', "pa%22ss%2Fw%C3%B6rd", 'pa\\"ss\\/wörd'):
        assert "***" in scrub(f"rejected {echoed} here"), echoed
    del store  # a holder gone: its secrets are no longer looked for


def test_user_data_is_known_encoded_decoded_and_by_line() -> None:
    store = SecretStore()
    raw = "#cloud-config\npassword_line: LineCanary123\n"
    request_secrets({"rebuild": {"user_data": base64.b64encode(raw.encode()).decode()}}, store)
    assert scrub("echo: password_line: LineCanary123 and more") == "echo: *** and more"
    assert "LineCanary123" not in scrub(f"whole: {raw}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text", "plain text"),
        ("ok\x1b[2J\r\nforged", "ok\\x1b[2J\\x0d\\x0aforged"),
        ("bidi \u202e override", "bidi \\u202e override"),
        ("tab\there", "tab\\x09here"),
        ("é ü 漢字", "é ü 漢字"),
    ],
)
def test_control_characters_are_escaped(text: str, expected: str) -> None:
    assert escape_control(text) == expected


def test_clean_text_is_idempotent() -> None:
    text = "X-Auth-Token: abc\x1b[0m"
    assert clean_text(clean_text(text)) == clean_text(text)


def test_log_records_of_child_loggers_are_scrubbed_whatever_the_handler() -> None:
    import logging

    import ecs_rebuild_async  # noqa: F401 (installs the scrubbing)

    store = SecretStore("ChildLoggerCanary-91")
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(self.format(record))

    child = logging.getLogger("hpack.hpack.some.future.child")
    handler = Keep()
    child.addHandler(handler)
    child.setLevel(logging.DEBUG)
    try:
        child.debug("Decoded %s", (b"x-subject-token", b"FreshTokenCanary-7"))
        child.debug("echo ChildLoggerCanary-91 \x1b[2J")
    finally:
        child.removeHandler(handler)
    assert seen
    assert not any("FreshTokenCanary" in text or "ChildLoggerCanary" in text for text in seen)
    assert not any("\x1b" in text for text in seen)
    del store
