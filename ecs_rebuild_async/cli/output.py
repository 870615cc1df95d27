"""What the command line writes: one record per server, dry-run requests, plain summaries.

Nothing here needs rich; the live display is in ``_cli_display``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import httpx

from .._auth import Auth, KeystoneAuth
from .._bulk import BulkReport
from .._errors import EcsError
from .._escape import escape_control
from .._microversion import parse_version
from .._models import RebuildEvent, RebuildOutcome, Server
from .._serde import wire_version_header
from .._session import USER_AGENT
from .config import UsageError

__all__ = [
    "MASK",
    "RECORD_FIELDS",
    "DryRunWriter",
    "LineSink",
    "OutcomeWriter",
    "check_columns",
    "dry_run_failure",
    "dry_run_record",
    "dry_run_text",
    "format_record",
    "mask_body",
    "outcome_record",
    "plain_summary",
    "table_line",
    "tally",
]

MASK = "***"
_SECRET_BODY_FIELDS = frozenset({"adminPass", "user_data"})


#: The fields of a result record, in the order tables and ``-f value`` show them. The JSON
#: schema is exactly these keys; it is documented in the README and kept stable by a test.
RECORD_FIELDS = (
    "server_id",
    "name",
    "ok",
    "kind",
    "status",
    "task_state",
    "image_before",
    "image_after",
    "seconds",
    "http_status",
    "error_code",
    "request_id",
    "fault_code",
    "fault_message",
    "error",
    "submitted",
    "reason",
)


def _error_fields(error: EcsError | None) -> dict[str, Any]:
    status = getattr(error, "status", None)
    code = getattr(error, "code", None)
    fault = getattr(error, "fault", None)
    return {
        "http_status": status if isinstance(status, int) else None,
        "error_code": code if isinstance(code, str) else None,
        "request_id": getattr(error, "request_id", None),
        "fault_code": getattr(fault, "code", None),
        "fault_message": getattr(fault, "message", None),
        "error": None if error is None else {"type": type(error).__name__, "message": str(error)},
    }


def outcome_record(
    outcome: RebuildOutcome,
    *,
    submit_only: bool = False,
    before: Server | None = None,
    seconds: float | None = None,
) -> dict[str, Any]:
    """One server's result as a JSON-ready mapping (the keys of RECORD_FIELDS).

    ``before`` is the server as read before its rebuild: it gives the name, the image before,
    and the status when the outcome carries no server (a conflict, for instance).
    """
    error = outcome.error
    server = outcome.server or getattr(error, "server", None)
    known = server or before
    kind = outcome.kind.value
    if submit_only and outcome.ok:
        kind = "submitted"
    record: dict[str, Any] = {
        "server_id": outcome.server_id,
        "name": None if known is None else known.name,
        "ok": outcome.ok,
        "kind": kind,
        "status": None if known is None else str(known.status),
        "task_state": None if known is None else known.task_state,
        "image_before": None if before is None else before.image_id,
        "image_after": None if server is None else server.image_id,
        "seconds": None if seconds is None else round(seconds, 3),
        **_error_fields(error),
        "submitted": outcome.submitted,
        "reason": outcome.reason,
    }
    return record


def _text(value: Any) -> str:
    """A value shown to people. What the service chose (a status, a name, an error message) is
    escaped: an ESC sequence or a ``\\r`` / ``\\n`` in it must not drive the terminal or forge
    a line of output (JSON and YAML escape them by themselves)."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        return escape_control(f"{value.get('type')}: {value.get('message')}")
    return escape_control(str(value))


#: The columns of the text table, and their widths (the last one takes the rest of the line).
_TABLE = (("kind", 9), ("server_id", 36), ("name", 20), ("status", 7), ("detail", 0))


def _detail(record: Mapping[str, Any]) -> str:
    reason = f"; {record['reason']}" if record.get("reason") else ""
    if record["error"] is not None:
        return _text(record["error"]) + reason
    took = "" if record["seconds"] is None else f" in {record['seconds']:.1f} s"
    return f"image {_text(record['image_after'])}{took}{reason}"


def table_line(record: Mapping[str, Any], id_width: int = 36) -> str:
    """One aligned line for people: kind, id, name, status, what happened."""
    cells = []
    for column, width in _TABLE:
        text = _detail(record) if column == "detail" else _text(record[column])
        if column == "server_id":
            width = id_width
        if width and len(text) > width:
            text = text[: width - 1] + "\u2026"
        cells.append(text.ljust(width) if width else text)
    return "  ".join(cells).rstrip()


class LineSink(Protocol):
    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


def _yaml_document(record: Mapping[str, Any]) -> str:
    import yaml

    return "---\n" + yaml.safe_dump(dict(record), sort_keys=False, default_flow_style=False)


def format_record(
    record: Mapping[str, Any], fmt: str, columns: Sequence[str] | None, id_width: int = 36
) -> str:
    """The record in ``fmt`` (table, json, value, yaml), limited to ``columns`` when given."""
    if columns:
        record = {column: record.get(column) for column in columns}
    if fmt == "json":
        return json.dumps(record, sort_keys=not columns) + "\n"
    if fmt == "yaml":
        return _yaml_document(record)
    if fmt == "value" or columns:
        return " ".join(_text(value) for value in record.values()) + "\n"
    return table_line(record, id_width) + "\n"


def check_columns(columns: Sequence[str] | None, known: Sequence[str] = RECORD_FIELDS) -> None:
    for column in columns or ():
        if column not in known:
            raise UsageError(f"no column {column!r}; the columns are: {', '.join(known)}")


class OutcomeWriter:
    """Writes each outcome as it completes, in the chosen format; JSON is one object a line.

    ``before`` (servers read before the run) and the submit times seen by :meth:`on_event`
    fill in names, the image before and the time taken. A closed output (``| head``) calls
    ``on_closed`` once and writes nothing more.
    """

    def __init__(
        self,
        stream: LineSink,
        *,
        as_json: bool = False,
        fmt: str | None = None,
        columns: Sequence[str] | None = None,
        submit_only: bool = False,
        before: Mapping[str, Server] | None = None,
        id_width: int = 36,
        on_closed: Callable[[], object] | None = None,
    ) -> None:
        self._stream = stream
        self._format = fmt or ("json" if as_json else "table")
        self._columns = columns
        self._submit_only = submit_only
        self._before = before or {}
        self._id_width = id_width
        self._started: dict[str, float] = {}
        self._on_closed = on_closed
        self.closed = False

    def on_event(self, event: RebuildEvent) -> None:
        if event.phase == "submitted":
            self._started.setdefault(event.server_id, time.monotonic())

    def record(self, outcome: RebuildOutcome) -> dict[str, Any]:
        started = self._started.get(outcome.server_id)
        return outcome_record(
            outcome,
            submit_only=self._submit_only,
            before=self._before.get(outcome.server_id),
            seconds=None if started is None else time.monotonic() - started,
        )

    def __call__(self, outcome: RebuildOutcome) -> None:
        if self.closed:
            return
        text = format_record(self.record(outcome), self._format, self._columns, self._id_width)
        write_or_close(self, text)


def write_or_close(writer: OutcomeWriter | DryRunWriter, text: str) -> None:
    """Write a piece of output; a closed pipe marks the writer closed instead of raising."""
    try:
        writer._stream.write(text)
        writer._stream.flush()
    except BrokenPipeError:
        writer.closed = True
        if writer._on_closed is not None:
            writer._on_closed()


def tally(report: BulkReport) -> dict[str, int]:
    """ok / not ok / running counts of a bulk run, as it goes: the progress line and the
    summaries all show these, so that their counts agree."""
    # ok outcomes: rebuilt, or skipped because the server already matched.
    ok = sum(1 for o in report.outcomes.values() if o.ok)
    finished_after_submit = sum(1 for o in report.outcomes.values() if o.submitted)
    return {
        "ok": ok,
        "not_ok": report.finished - ok,
        "running": max(0, len(report.submitted) - finished_after_submit),
    }


def kinds_by_verdict(report: BulkReport) -> tuple[dict[str, int], dict[str, int]]:
    """The outcomes' kinds, counted under the verdict each outcome has: the ok ones, then the
    not-ok ones. A kind can be on both sides (``skipped``: already matching is ok, never started
    is not), so each side's rows add up to its own count in :func:`tally`. The ok side is empty
    when every ok outcome is a plain ``ok`` (it would only repeat the count)."""
    ok: dict[str, int] = {}
    not_ok: dict[str, int] = {}
    for outcome in report.outcomes.values():
        side = ok if outcome.ok else not_ok
        kind = "rebuilt" if outcome.kind.value == "ok" else outcome.kind.value
        side[kind] = side.get(kind, 0) + 1
    if set(ok) <= {"rebuilt"}:
        ok = {}
    return dict(sorted(ok.items())), dict(sorted(not_ok.items()))


def _requests_text(stats: Mapping[str, int]) -> str:
    sent = [f"{kind} {count}" for kind, count in sorted(stats.items()) if kind[:1].isupper()]
    return ", ".join(sent) or "none"


def plain_summary(report: BulkReport, elapsed: float, stats: Mapping[str, int]) -> str:
    """One line: ok and not ok (by kind), time taken, requests sent by kind."""
    counted = tally(report)
    parts = [f"{counted['ok']} ok", f"{counted['not_ok']} not ok"]
    for index, kinds in enumerate(kinds_by_verdict(report)):
        if kinds:
            words = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in kinds.items())
            parts[index] += f" ({words})"
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


async def dry_run_record(
    server_id: str,
    prepared: Mapping[str, Any],
    auth: Auth,
    *,
    checks: Sequence[str] = (),
) -> dict[str, Any]:
    """The exact request a rebuild would send (secrets masked), built but not sent; ``checks``
    says what was checked to build it."""
    version = prepared["microversion"]
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    headers.update(wire_version_header(None if version is None else parse_version(version)))
    headers["Content-Type"] = "application/json"
    content = json.dumps(prepared["body"], separators=(",", ":")).encode()
    request = httpx.Request(prepared["method"], prepared["url"], headers=headers, content=content)
    signed = await _signed_headers(auth, request)
    secret = auth.redacted_headers
    masked = mask_body(prepared["body"])
    shown = {name: MASK if name.lower() in secret else value for name, value in _named(signed)}
    if masked != prepared["body"]:
        # The real length would tell the length of the password (or user_data) masked in the
        # body: show the length of the body as shown, and say so, rather than either number
        # posing as the header that is sent.
        size = len(json.dumps(masked, separators=(",", ":")).encode())
        shown = {
            name: f"({size} bytes, secrets masked)" if name.lower() == "content-length" else value
            for name, value in shown.items()
        }
    return {
        "server_id": server_id,
        "method": prepared["method"],
        "url": prepared["url"],
        "microversion": version,
        "headers": shown,
        "body": masked,
        "ok": True,
        "checks": list(checks),
        "error": None,
    }


def dry_run_failure(server_id: str, error: Exception, checks: Sequence[str]) -> dict[str, Any]:
    """A dry run's record for a server that a check refused: nothing would be sent to it."""
    return {
        "server_id": server_id,
        "ok": False,
        "checks": list(checks),
        "error": {"type": type(error).__name__, "message": " ".join(str(error).split())},
    }


class DryRunWriter:
    """Prints dry-run records; a closed output marks it closed (see write_or_close)."""

    def __init__(self, stream: LineSink, *, as_json: bool) -> None:
        self._stream = stream
        self._as_json = as_json
        self._on_closed: Callable[[], object] | None = None
        self.closed = False

    def __call__(self, record: Mapping[str, Any]) -> None:
        if not self.closed:
            write_or_close(self, dry_run_text(record, as_json=self._as_json))


def dry_run_text(record: Mapping[str, Any], *, as_json: bool) -> str:
    if as_json:
        return json.dumps(record, sort_keys=True) + "\n"
    checked = f"checked: {', '.join(record['checks'])}"
    if not record["ok"]:
        error = record["error"]
        lines = [f"{_text(record['server_id'])}: not sent: {_text(error)}", checked]
        return "\n".join(lines) + "\n\n"
    version = record["microversion"] or "none (no microversion header)"
    lines = [f"{record['method']} {_text(record['url'])}", f"microversion: {version}", checked]
    lines += ["headers:"]
    lines += [f"  {_text(name)}: {_text(value)}" for name, value in record["headers"].items()]
    lines += ["body:", json.dumps(record["body"], indent=2, sort_keys=True), ""]
    return "\n".join(lines) + "\n"
