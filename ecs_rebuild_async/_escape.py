"""Text from the service made safe for a terminal or a log line.

A server's name or status, or an error message, is the service's text: an ESC sequence in it
would drive the reader's terminal, and a ``\\r`` or ``\\n`` would forge a line of output (a fake
``ok  some-server  ACTIVE``). Every character that is not printable is shown as its escape.
"""

from __future__ import annotations

__all__ = ["escape_control"]


def _escaped(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape_control(text: str) -> str:
    """``text`` with control, format (bidi overrides), line and paragraph separator characters
    escaped as ``\\xNN`` / ``\\uNNNN``; plain text comes back as it was (the same object)."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escaped(char) for char in text)
