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
    "NO_CREDENTIALS",
    "ClientSpec",
    "UsageError",
    "build_request",
    "client_spec",
    "effective_environ",
    "read_server_ids",
    "request_fields",
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


#: ``--os-*`` options and the OS_* variables they stand for (the option wins, as in OSC).
_OS_OPTIONS = {
    "os_auth_url": "OS_AUTH_URL",
    "os_auth_type": "OS_AUTH_TYPE",
    "os_username": "OS_USERNAME",
    "os_user_id": "OS_USER_ID",
    "os_password": "OS_PASSWORD",
    "os_user_domain_name": "OS_USER_DOMAIN_NAME",
    "os_user_domain_id": "OS_USER_DOMAIN_ID",
    "os_project_name": "OS_PROJECT_NAME",
    "os_project_id": "OS_PROJECT_ID",
    "os_project_domain_name": "OS_PROJECT_DOMAIN_NAME",
    "os_project_domain_id": "OS_PROJECT_DOMAIN_ID",
    "os_application_credential_id": "OS_APPLICATION_CREDENTIAL_ID",
    "os_application_credential_secret": "OS_APPLICATION_CREDENTIAL_SECRET",
    "os_region_name": "OS_REGION_NAME",
    "os_interface": "OS_INTERFACE",
    "os_cacert": "OS_CACERT",
}

_CREDENTIAL_VARIABLES = (
    "OS_CLOUD",
    "OS_TOKEN",
    "OS_AUTH_TOKEN",
    "OS_AUTH_URL",
    "OS_PASSWORD",
    "OS_APPLICATION_CREDENTIAL_SECRET",
    "HUAWEICLOUD_SDK_AK",
    "HUAWEICLOUD_SDK_SK",
)

NO_CREDENTIALS = (
    "no credentials: give --endpoint URL with --token TOKEN (or OS_TOKEN); or --os-cloud NAME "
    "(a clouds.yaml entry; or OS_CLOUD); or --os-auth-url with --os-username/--os-password "
    "(or OS_AUTH_URL, OS_USERNAME, OS_PASSWORD..., as an openrc file sets them); or "
    "HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK with HUAWEICLOUD_SDK_ECS_ENDPOINT"
)


def effective_environ(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment as the ``--os-*`` options amend it."""
    merged = dict(environ)
    for option, variable in _OS_OPTIONS.items():
        value = getattr(args, option, None)
        if value:
            merged[variable] = value
    if getattr(args, "insecure", False):
        merged["OS_INSECURE"] = "true"
    if args.os_cloud:
        merged["OS_CLOUD"] = args.os_cloud
    return merged


def _pinned(args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    """--microversion, else OS_COMPUTE_API_VERSION; '2', 'latest' and 'auto' pin nothing."""
    value = args.microversion or _env(environ, "OS_COMPUTE_API_VERSION")
    if value is None or value.strip().lower() in ("", "2", "2.0", "latest", "auto"):
        return None
    return value.strip()


def _verify(environ: Mapping[str, str]) -> bool | str | None:
    if (_env(environ, "OS_INSECURE") or "").lower() in ("1", "true", "yes", "on"):
        return False
    return _env(environ, "OS_CACERT")


def client_spec(args: argparse.Namespace, environ: Mapping[str, str]) -> ClientSpec:
    """``--endpoint`` with a token; else ``--os-cloud``/``OS_CLOUD``'s clouds.yaml entry (which
    ``--endpoint`` overrides); else the ``--os-*`` options and ``OS_*`` / ``HUAWEICLOUD_SDK_*``
    variables. Options win over variables, variables over clouds.yaml, as in OSC."""
    env = effective_environ(args, environ)
    token = args.token or (None if args.os_cloud else _env(env, "OS_TOKEN", "OS_AUTH_TOKEN"))
    options: dict[str, Any] = {}
    endpoint: str | None
    if args.token or (args.endpoint and token and not _env(env, "OS_CLOUD")):
        endpoint = args.endpoint or _env(env, "OS_COMPUTE_ENDPOINT", "OS_ENDPOINT_OVERRIDE")
        if not endpoint:
            raise UsageError("--token needs --endpoint (or OS_COMPUTE_ENDPOINT)")
        assert token is not None
        auth: Auth = TokenAuth(token)
        verify = _verify(env)
        if verify is not None:
            options["verify"] = verify
    else:
        if not any(_env(env, name) for name in _CREDENTIAL_VARIABLES):
            if args.endpoint:
                raise UsageError("--endpoint needs a token: pass --token or set OS_TOKEN")
            raise UsageError(NO_CREDENTIALS)
        config = config_from_cloud(None, env) if _env(env, "OS_CLOUD") else config_from_env(env)
        endpoint, options = options_from_config(config)
        auth = options.pop("auth")
        endpoint = args.endpoint or endpoint
        region = _env(env, "OS_REGION_NAME") if args.os_region_name else None
        if region:
            options["region"] = region
        if args.os_cacert or args.insecure:
            options["verify"] = _verify(env)
    pinned = _pinned(args, env)
    if pinned:
        options["microversion"] = pinned
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
    if args.admin_pass is not None:
        fields["admin_pass"] = args.admin_pass
    if args.preserve_ephemeral is not None:
        fields["preserve_ephemeral"] = args.preserve_ephemeral
    if args.no_key_name:
        fields["key_name"] = None
    elif args.key_name is not None:
        fields["key_name"] = args.key_name
    if args.no_user_data:
        fields["user_data"] = None
    elif args.user_data is not None:
        fields["user_data"] = user_data_file(args.user_data)
    if args.no_trusted_image_certs:
        fields["trusted_image_certificates"] = None
    elif args.trusted_image_certs:
        fields["trusted_image_certificates"] = list(args.trusted_image_certs)
    if args.description is not None:
        fields["description"] = args.description
    if args.hostname is not None:
        fields["hostname"] = args.hostname
    if args.reimage_boot_volume is not None:
        fields["reimage_boot_volume"] = args.reimage_boot_volume
    return fields


def build_request(args: argparse.Namespace, image: str | None = None) -> RebuildRequest | None:
    """The request the arguments describe, with ``image`` (an id) or ``--image``; None when
    neither an image nor a field is given."""
    fields = request_fields(args)
    image = image or args.image
    if image is None:
        if fields:
            raise UsageError("request fields need --image")
        return None
    return RebuildRequest(image_ref=image, **fields)


def _ids_from_lines(lines: Iterable[str]) -> list[str]:
    found: list[str] = []
    for line in lines:
        text = line.split("#", 1)[0].strip()
        found.extend(text.split())
    return found


def _read_file(path: str) -> list[str]:
    try:
        return _ids_from_lines(Path(path).read_text(encoding="utf-8").splitlines())
    except OSError as exc:
        raise UsageError(f"cannot read --from-file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"cannot read --from-file {path}: not UTF-8 text (byte {exc.start})"
        ) from None


def read_server_ids(args: argparse.Namespace, stdin: TextIO) -> tuple[list[str], list[str]]:
    """Server ids from the arguments, ``--from-file`` and ``-`` (standard input), in order.

    Returns (ids without repeats, the repeated ids).
    """
    raw: list[str] = []
    for item in args.servers:
        raw.extend(_ids_from_lines(stdin) if item == "-" else [item])
    for path in args.from_file or ():
        raw.extend(_read_file(path))
    if not raw:
        raise UsageError("no servers: give SERVER..., --from-file PATH or '-' for stdin")
    counts = Counter(raw)
    return list(counts), sorted(sid for sid, n in counts.items() if n > 1)
