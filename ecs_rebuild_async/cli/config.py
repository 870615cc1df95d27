"""The command line's inputs: the client (from flags, clouds.yaml or the environment), the
rebuild request, and the server ids (arguments, a file or standard input)."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

import httpx

from .._auth import Auth, TokenAuth
from .._client import AsyncEcsClient, options_from_config
from .._config import config_from_cloud, config_from_env
from .._models import ECS, NOVA, RebuildRequest
from .._settings import ClientSettings

__all__ = [
    "ClientSpec",
    "UsageError",
    "build_request",
    "client_spec",
    "read_server_ids",
    "user_data_file",
]

_DIALECTS = {"ecs": ECS, "nova": NOVA}


class UsageError(Exception):
    """Bad arguments or configuration: reported in one line, exit status 2."""


class ClientSpec:
    """Everything needed to open a client, resolved before anything is sent."""

    def __init__(self, endpoint: str | None, auth: Auth, options: dict[str, Any]) -> None:
        self.endpoint = endpoint
        self.auth = auth
        self.options = options

    def open(
        self,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        settings: ClientSettings | None = None,
    ) -> AsyncEcsClient:
        return AsyncEcsClient(
            self.endpoint, auth=self.auth, transport=transport, settings=settings, **self.options
        )


def _env(environ: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


def _token_spec(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[str, Auth]:
    endpoint = args.endpoint or _env(environ, "OS_COMPUTE_ENDPOINT", "OS_ENDPOINT_OVERRIDE")
    token = args.token or _env(environ, "OS_TOKEN", "OS_AUTH_TOKEN")
    if not endpoint:
        raise UsageError("--token needs --endpoint (or OS_COMPUTE_ENDPOINT)")
    if not token:
        raise UsageError("--endpoint needs a token: pass --token or set OS_TOKEN")
    return endpoint, TokenAuth(token)


def client_spec(args: argparse.Namespace, environ: Mapping[str, str]) -> ClientSpec:
    """``--endpoint``/``--token`` (or ``OS_TOKEN``), else ``--os-cloud``/``OS_CLOUD``'s
    clouds.yaml entry, else the ``OS_*`` / ``HUAWEICLOUD_SDK_*`` variables."""
    options: dict[str, Any] = {}
    endpoint: str | None
    if args.endpoint or args.token:
        endpoint, auth = _token_spec(args, environ)
    else:
        if args.os_cloud:
            config = config_from_cloud(args.os_cloud, environ)
        else:
            config = config_from_env(environ)
        endpoint, options = options_from_config(config)
        auth = options.pop("auth")
    if args.microversion:
        options["microversion"] = args.microversion
    if args.dialect:
        options["dialect"] = _DIALECTS[args.dialect]
    return ClientSpec(endpoint, auth, options)


def _metadata(pairs: Iterable[str]) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--metadata takes KEY=VALUE, got {pair!r}")
        metadata[key] = value
    return metadata


def user_data_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read --user-data {path}: {exc.strerror}") from None


def request_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The optional RebuildRequest fields the arguments set (left out: not sent)."""
    fields: dict[str, Any] = {}
    if args.name is not None:
        fields["name"] = args.name
    if args.metadata:
        fields["metadata"] = _metadata(args.metadata)
    if args.no_key_name:
        fields["key_name"] = None
    elif args.key_name is not None:
        fields["key_name"] = args.key_name
    if args.user_data is not None:
        fields["user_data"] = user_data_file(args.user_data)
    if args.description is not None:
        fields["description"] = args.description
    if args.hostname is not None:
        fields["hostname"] = args.hostname
    return fields


def build_request(args: argparse.Namespace) -> RebuildRequest | None:
    """The request the arguments describe; None when neither --image nor a field is given."""
    fields = request_fields(args)
    if args.image is None:
        if fields:
            raise UsageError("request fields need --image")
        return None
    return RebuildRequest(image_ref=args.image, **fields)


def _ids_from_lines(lines: Iterable[str]) -> list[str]:
    found: list[str] = []
    for line in lines:
        text = line.split("#", 1)[0].strip()
        found.extend(text.split())
    return found


def _read_file(path: str) -> list[str]:
    try:
        return _ids_from_lines(Path(path).read_text().splitlines())
    except OSError as exc:
        raise UsageError(f"cannot read --from-file {path}: {exc.strerror}") from None


def read_server_ids(args: argparse.Namespace, stdin: TextIO) -> tuple[list[str], list[str]]:
    """Server ids from the arguments, ``--from-file`` and ``-`` (standard input), in order.

    Returns (ids without repeats, the repeated ids).
    """
    raw: list[str] = []
    for item in args.server_ids:
        raw.extend(_ids_from_lines(stdin) if item == "-" else [item])
    for path in args.from_file or ():
        raw.extend(_read_file(path))
    if not raw:
        raise UsageError("no server ids: give SERVER_ID..., --from-file PATH or '-' for stdin")
    counts = Counter(raw)
    return list(counts), sorted(sid for sid, n in counts.items() if n > 1)
