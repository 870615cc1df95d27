"""Faults that let the service act, then spoil its answer.

A gateway or a crashing API worker can answer badly *after* the service carried the request
out: a 5xx for a rebuild that Nova recorded, or a 2xx whose body is empty, cut short or an HTML
page. The client must count such a request as (maybe) accepted, never as refused.
"""

from __future__ import annotations

from ._replies import Reply, nova_fault

__all__ = ["AFTERMATH_KINDS", "spoil_answer"]

#: "500_after"/"503_after": the action IS carried out, then a 5xx replaces the answer.
#: "empty_2xx"/"truncated_2xx"/"html_2xx": the action IS carried out and its 2xx status kept,
#: but the body is empty, cut in the middle, or an HTML page (no effect on an answer that is
#: not 2xx).
AFTERMATH_KINDS = frozenset({"500_after", "503_after", "empty_2xx", "truncated_2xx", "html_2xx"})

_HTML = b"<html><body><h1>202 Accepted</h1><p>Your request is being processed.</p></body></html>"


def spoil_answer(kind: str, reply: Reply) -> Reply:
    """The answer the client gets instead of ``reply`` (which the service already acted on)."""
    if kind in ("500_after", "503_after"):
        status = int(kind[:3])
        message = "Service Unavailable" if status == 503 else "Unexpected API Error."
        spoiled = nova_fault(status, message, name="computeFault" if status == 500 else None)
        spoiled.headers.extend(h for h in reply.headers if h[0].lower().endswith("request-id"))
        return spoiled
    if not 200 <= reply.status < 300:
        return reply
    headers = [h for h in reply.headers if h[0].lower() != "content-type"]
    if kind == "empty_2xx":
        return Reply(reply.status, headers, b"", reply.delay, reply.lost)
    if kind == "truncated_2xx":
        body = reply.body[: max(1, len(reply.body) // 2)]
        return Reply(reply.status, [("Content-Type", "application/json"), *headers], body)
    return Reply(reply.status, [("Content-Type", "text/html"), *headers], _HTML)
