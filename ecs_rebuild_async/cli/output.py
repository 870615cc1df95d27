"""What the command line writes: one record per server, dry-run requests, plain summaries.

Nothing here needs rich; the live display is in ``_cli_display``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol, TextIO

import httpx

from .._auth import Auth, KeystoneAuth
from .._bulk import BulkReport
from .._microversion import parse_version
from .._models import RebuildOutcome
from .._serde import wire_version_header
from .._session import USER_AGENT

__all__ = [
    "MASK",
    "LineSink",
    "OutcomeWriter",
    "dry_run_record",
    "mask_body",
    "outcome_record",
    "plain_summary",
    "print_dry_run",
    "tally",
]

MASK = "***"
_SECRET_BODY_FIELDS = frozenset({"adminPass", "user_data"})


def outcome_record(outcome: RebuildOutcome, *, submit_only: bool = False) -> dict[str, Any]:
    """One server's result as a JSON-ready mapping."""
    server = outcome.server
    error = outcome.error
    kind = outcome.kind.value
    if submit_only and outcome.ok:
        kind = "submitted"
    return {
        "server_id": outcome.server_id,
        "ok": outcome.ok,
        "kind": kind,
        "status": None if server is None else str(server.status),
        "task_state": None if server is None else server.task_state,
        "image_id": None if server is None else server.image_id,
        "error": None if error is None else {"type": type(error).__name__, "message": str(error)},
        "submitted": outcome.submitted,
        "reason": outcome.reason,
    }


def _human_line(record: Mapping[str, Any]) -> str:
    error = record["error"]
    detail = (
        f"image {record['image_id']}" if error is None else f"{error['type']}: {error['message']}"
    )
    if record["reason"]:
        detail = f"{detail}; {record['reason']}"
    return f"{record['kind']:<10} {record['server_id']}  {record['status'] or '-'}  {detail}"


class LineSink(Protocol):
    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


class OutcomeWriter:
    """Writes each outcome as it completes: a JSON object per line, or a line for people."""

    def __init__(self, stream: LineSink, *, as_json: bool, submit_only: bool = False) -> None:
        self._stream = stream
        self._as_json = as_json
        self._submit_only = submit_only

    def __call__(self, outcome: RebuildOutcome) -> None:
        record = outcome_record(outcome, submit_only=self._submit_only)
        line = json.dumps(record, sort_keys=True) if self._as_json else _human_line(record)
        self._stream.write(line + "\n")
        self._stream.flush()


def tally(report: BulkReport) -> dict[str, int]:
    """ok / failed / running counts of a bulk run, as it goes."""
    # ok outcomes: rebuilt, or skipped because the server already matched.
    ok = sum(1 for o in report.outcomes.values() if o.ok)
    finished_after_submit = sum(1 for o in report.outcomes.values() if o.submitted)
    return {
        "ok": ok,
        "failed": report.finished - ok,
        "running": max(0, len(report.submitted) - finished_after_submit),
    }


def _requests_text(stats: Mapping[str, int]) -> str:
    sent = [f"{kind} {count}" for kind, count in sorted(stats.items()) if kind[:1].isupper()]
    return ", ".join(sent) or "none"


def plain_summary(report: BulkReport, elapsed: float, stats: Mapping[str, int]) -> str:
    """One line: outcomes by kind, time taken, requests sent by kind."""
    counts = report.counts()
    parts = [f"{counts.pop('ok', 0)} ok"]
    parts += [f"{n} {kind.replace('_', ' ')}" for kind, n in sorted(counts.items())]
    return (
        f"{', '.join(parts)} of {report.total} in {elapsed:.1f} s; "
        f"requests: {_requests_text(stats)}"
    )


# -- dry run ------------------------------------------------------------------------------------


def mask_body(body: Any) -> Any:
    """The request body with adminPass and user_data values replaced by ``***``."""
    if isinstance(body, dict):
        return {
            key: (MASK if key in _SECRET_BODY_FIELDS and value is not None else mask_body(value))
            for key, value in body.items()
        }
    if isinstance(body, list):
        return [mask_body(item) for item in body]
    return body


async def _signed_headers(auth: Auth, request: httpx.Request) -> httpx.Headers:
    if isinstance(auth, KeystoneAuth):
        # Its token comes from Keystone when the request is sent; it would go here.
        request.headers["X-Auth-Token"] = MASK
        return request.headers
    flow = auth.async_auth_flow(request)
    try:
        signed = await flow.__anext__()
    finally:
        await flow.aclose()
    return signed.headers


def _named(headers: httpx.Headers) -> list[tuple[str, str]]:
    """Header names as they are sent (httpx's ``items()`` lower-cases them)."""
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers.raw]


async def dry_run_record(server_id: str, prepared: Mapping[str, Any], auth: Auth) -> dict[str, Any]:
    """The exact request a rebuild would send (secrets masked), built but not sent."""
    version = prepared["microversion"]
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    headers.update(wire_version_header(None if version is None else parse_version(version)))
    headers["Content-Type"] = "application/json"
    content = json.dumps(prepared["body"], separators=(",", ":")).encode()
    request = httpx.Request(prepared["method"], prepared["url"], headers=headers, content=content)
    signed = await _signed_headers(auth, request)
    secret = auth.redacted_headers
    return {
        "server_id": server_id,
        "method": prepared["method"],
        "url": prepared["url"],
        "microversion": version,
        "headers": {
            name: MASK if name.lower() in secret else value for name, value in _named(signed)
        },
        "body": mask_body(prepared["body"]),
    }


def print_dry_run(record: Mapping[str, Any], stream: TextIO, *, as_json: bool) -> None:
    if as_json:
        stream.write(json.dumps(record, sort_keys=True) + "\n")
        return
    version = record["microversion"] or "none (no microversion header)"
    lines = [f"{record['method']} {record['url']}", f"microversion: {version}", "headers:"]
    lines += [f"  {name}: {value}" for name, value in record["headers"].items()]
    lines += ["body:", json.dumps(record["body"], indent=2, sort_keys=True), ""]
    stream.write("\n".join(lines) + "\n")
