"""Settings from what users already have: ``clouds.yaml`` / ``secure.yaml``, ``OS_*`` variables
and Huawei Cloud's ``HUAWEICLOUD_SDK_*`` variables.

Pure readers: they take the environment as a mapping and return a frozen :class:`ClientConfig`;
nothing here talks to the network. A missing or contradictory piece raises
:class:`InvalidRequest` naming the variable or key to set, never its value.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import yaml

from ._errors import InvalidRequest, MicroversionError
from ._microversion import parse_version
from ._models import ECS, NOVA, Dialect

__all__ = [
    "AuthKind",
    "ClientConfig",
    "clouds_search_paths",
    "config_from_cloud",
    "config_from_env",
]


class AuthKind(str, enum.Enum):
    """Which auth object a configuration describes."""

    TOKEN = "token"
    PASSWORD = "password"
    APPLICATION_CREDENTIAL = "application_credential"
    AKSK = "aksk"


def _secret() -> Any:
    return attrs.field(default=None, repr=False)


@attrs.frozen(kw_only=True)
class ClientConfig:
    """Everything needed to build a client. Secret fields are left out of ``repr``."""

    auth_kind: AuthKind
    endpoint: str | None = None
    auth_url: str | None = None
    username: str | None = None
    user_id: str | None = None
    password: str | None = _secret()
    user_domain_name: str | None = None
    user_domain_id: str | None = None
    project_id: str | None = None
    project_name: str | None = None
    project_domain_name: str | None = None
    project_domain_id: str | None = None
    application_credential_id: str | None = None
    application_credential_name: str | None = None
    application_credential_secret: str | None = _secret()
    token: str | None = _secret()
    ak: str | None = _secret()
    sk: str | None = _secret()
    security_token: str | None = _secret()
    region: str | None = None
    interface: str = "public"
    microversion: str | None = None
    #: Whose rules apply, when the settings say so (a Huawei Cloud or OTC host, AK/SK); None
    #: leaves the client's default.
    dialect: Dialect | None = None
    #: TLS verification: True, False (insecure) or the path of a CA bundle.
    verify: bool | str = True
    cloud: str | None = None


# Hosts of clouds that follow ECS rules rather than upstream Nova's.
logger = logging.getLogger("ecs_rebuild_async")

_ECS_DOMAINS = ("myhuaweicloud.com", "huaweicloud.com", "otc.t-systems.com", "t-systems.com")

_TRUE = frozenset({"1", "true", "yes", "on"})


def _get(environ: Mapping[str, str], *names: str) -> str | None:
    """The first of ``names`` set to a non-blank value."""
    for name in names:
        value = environ.get(name)
        if value is not None and value.strip():
            return value.strip()
    return None


def _dialect_of(*urls: str | None) -> Dialect | None:
    for url in urls:
        if not url:
            continue
        host = (urlsplit(url).hostname or "").lower()
        if any(host == domain or host.endswith("." + domain) for domain in _ECS_DOMAINS):
            return ECS
    return None


def _microversion(value: object, source: str) -> str | None:
    """A pinned microversion, or None to negotiate: ``2``, ``latest`` and ``auto`` pin none."""
    if value is None:
        return None
    text = str(value).strip()
    if text in ("", "2", "2.0", "latest", "auto"):
        return None
    try:
        return str(parse_version(text))
    except MicroversionError:
        raise InvalidRequest(
            f"{source} must be a microversion like '2.60', not {text[:20]!r}", field=source
        ) from None


def _interface(value: str | None) -> str:
    text = (value or "public").strip().lower()
    return text[:-3] if text.endswith("url") else text


def _endpoint_with_project(endpoint: str, project_id: str | None) -> str:
    """Complete a bare host (how Huawei's SDKs take endpoints) with ``/v2.1/{project_id}``."""
    if project_id and urlsplit(endpoint).path.strip("/") == "":
        return f"{endpoint.rstrip('/')}/v2.1/{project_id}"
    return endpoint


# -- environment variables -------------------------------------------------------------------


def config_from_env(environ: Mapping[str, str]) -> ClientConfig:
    """Settings from the environment.

    In order: ``OS_CLOUD`` selects a cloud in ``clouds.yaml``; otherwise
    ``HUAWEICLOUD_SDK_AK``/``_SK`` give AK/SK signing; otherwise the ``OS_*`` variables of an
    openrc file (token, application credential or password).
    """
    if _get(environ, "OS_CLOUD"):
        return config_from_cloud(None, environ)
    if _get(environ, "HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK"):
        return _aksk_from_env(environ)
    return _openstack_from_env(environ)


def _aksk_from_env(environ: Mapping[str, str]) -> ClientConfig:
    ak = _get(environ, "HUAWEICLOUD_SDK_AK")
    sk = _get(environ, "HUAWEICLOUD_SDK_SK")
    if ak is None or sk is None:
        missing = "HUAWEICLOUD_SDK_AK" if ak is None else "HUAWEICLOUD_SDK_SK"
        raise InvalidRequest(f"AK/SK signing needs {missing} as well", field=missing)
    project_id = _get(environ, "HUAWEICLOUD_SDK_PROJECT_ID", "OS_PROJECT_ID")
    endpoint = _get(
        environ, "HUAWEICLOUD_SDK_ECS_ENDPOINT", "OS_COMPUTE_ENDPOINT", "OS_ENDPOINT_OVERRIDE"
    )
    if endpoint is None:
        raise InvalidRequest(
            "AK/SK signing has no service catalog: set HUAWEICLOUD_SDK_ECS_ENDPOINT to the ECS "
            "endpoint (such as https://ecs.eu-de.otc.t-systems.com)",
            field="HUAWEICLOUD_SDK_ECS_ENDPOINT",
        )
    return ClientConfig(
        auth_kind=AuthKind.AKSK,
        endpoint=_endpoint_with_project(endpoint, project_id),
        ak=ak,
        sk=sk,
        security_token=_get(environ, "HUAWEICLOUD_SDK_SECURITY_TOKEN"),
        project_id=project_id,
        region=_get(environ, "HUAWEICLOUD_SDK_REGION", "OS_REGION_NAME"),
        microversion=_microversion(
            _get(environ, "OS_COMPUTE_API_VERSION"), "OS_COMPUTE_API_VERSION"
        ),
        dialect=ECS,
        verify=_verify_from_env(environ),
    )


def _verify_from_env(environ: Mapping[str, str]) -> bool | str:
    if (_get(environ, "OS_INSECURE") or "").lower() in _TRUE:
        return False
    return _get(environ, "OS_CACERT") or True


# openrc names to ClientConfig fields; the first name set wins.
_OS_FIELDS: dict[str, tuple[str, ...]] = {
    "auth_url": ("OS_AUTH_URL",),
    "username": ("OS_USERNAME",),
    "user_id": ("OS_USER_ID",),
    "password": ("OS_PASSWORD",),
    "user_domain_name": ("OS_USER_DOMAIN_NAME", "OS_DEFAULT_DOMAIN_NAME"),
    "user_domain_id": ("OS_USER_DOMAIN_ID", "OS_DEFAULT_DOMAIN_ID", "OS_DEFAULT_DOMAIN"),
    "project_id": ("OS_PROJECT_ID", "OS_TENANT_ID"),
    "project_name": ("OS_PROJECT_NAME", "OS_TENANT_NAME"),
    "project_domain_name": ("OS_PROJECT_DOMAIN_NAME", "OS_DEFAULT_DOMAIN_NAME"),
    "project_domain_id": ("OS_PROJECT_DOMAIN_ID", "OS_DEFAULT_DOMAIN_ID", "OS_DEFAULT_DOMAIN"),
    "application_credential_id": ("OS_APPLICATION_CREDENTIAL_ID",),
    "application_credential_name": ("OS_APPLICATION_CREDENTIAL_NAME",),
    "application_credential_secret": ("OS_APPLICATION_CREDENTIAL_SECRET",),
    "token": ("OS_TOKEN", "OS_AUTH_TOKEN"),
}


def _openstack_from_env(environ: Mapping[str, str]) -> ClientConfig:
    values = {field: _get(environ, *names) for field, names in _OS_FIELDS.items()}
    settings: dict[str, Any] = {
        "auth_type": _get(environ, "OS_AUTH_TYPE"),
        "endpoint": _get(environ, "OS_COMPUTE_ENDPOINT", "OS_ENDPOINT_OVERRIDE"),
        "region": _get(environ, "OS_REGION_NAME"),
        "interface": _get(environ, "OS_INTERFACE", "OS_ENDPOINT_TYPE"),
        "microversion": _get(environ, "OS_COMPUTE_API_VERSION"),
        "verify": _verify_from_env(environ),
    }
    names = _EnvNames()
    return _build(values, settings, names, cloud=None)


@attrs.frozen
class _EnvNames:
    """How to name a missing piece in an error: by variable or by clouds.yaml key."""

    prefix: str = ""

    def __call__(self, field: str) -> str:
        if self.prefix:
            return f"{self.prefix}{_YAML_KEYS.get(field, field)}"
        return {
            "auth_url": "OS_AUTH_URL",
            "username": "OS_USERNAME or OS_USER_ID",
            "password": "OS_PASSWORD",
            "user_domain": "OS_USER_DOMAIN_NAME or OS_USER_DOMAIN_ID",
            "project_domain": "OS_PROJECT_DOMAIN_NAME or OS_PROJECT_DOMAIN_ID",
            "endpoint": "OS_COMPUTE_ENDPOINT (or OS_ENDPOINT_OVERRIDE)",
            "credentials": (
                "OS_CLOUD (a clouds.yaml entry); or OS_AUTH_URL with OS_USERNAME and "
                "OS_PASSWORD (or OS_APPLICATION_CREDENTIAL_ID and _SECRET); or OS_TOKEN with "
                "OS_COMPUTE_ENDPOINT; or HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK"
            ),
            "application_credential_secret": "OS_APPLICATION_CREDENTIAL_SECRET",
            "application_credential": (
                "OS_APPLICATION_CREDENTIAL_ID or OS_APPLICATION_CREDENTIAL_NAME"
            ),
            "token": "OS_TOKEN",
            "microversion": "OS_COMPUTE_API_VERSION",
            "auth_type": "OS_AUTH_TYPE",
            "ak": "ak and sk",
        }.get(field, field)


_YAML_KEYS = {
    "username": "auth.username (or auth.user_id)",
    "password": "auth.password",
    "auth_url": "auth.auth_url",
    "user_domain": "auth.user_domain_name (or auth.user_domain_id)",
    "project_domain": "auth.project_domain_name (or auth.project_domain_id)",
    "endpoint": "compute_endpoint_override",
    "credentials": "auth.password, auth.application_credential_secret or auth.token",
    "application_credential_secret": "auth.application_credential_secret",
    "application_credential": "auth.application_credential_id (or _name)",
    "token": "auth.token",
    "microversion": "compute_api_version",
    "auth_type": "auth_type",
    "ak": "auth.ak and auth.sk",
}


# auth_type values (keystoneauth's names and their v3 forms) to the kind of auth.
_AUTH_TYPES = {
    "password": AuthKind.PASSWORD,
    "v3password": AuthKind.PASSWORD,
    "applicationcredential": AuthKind.APPLICATION_CREDENTIAL,
    "v3applicationcredential": AuthKind.APPLICATION_CREDENTIAL,
    "token": AuthKind.TOKEN,
    "v3token": AuthKind.TOKEN,
    "admin_token": AuthKind.TOKEN,
    "aksk": AuthKind.AKSK,
}


def _kind(values: Mapping[str, str | None], auth_type: str | None, name: _EnvNames) -> AuthKind:
    if auth_type:
        kind = _AUTH_TYPES.get(auth_type.strip().lower().replace("-", ""))
        if kind is None:
            known = ", ".join(sorted(_AUTH_TYPES))
            raise InvalidRequest(
                f"{name('auth_type')} {auth_type[:40]!r} is not supported (known: {known})",
                field=name("auth_type"),
            )
        return kind
    if values.get("ak") or values.get("sk"):
        return AuthKind.AKSK
    if values.get("application_credential_secret") or values.get("application_credential_id"):
        return AuthKind.APPLICATION_CREDENTIAL
    if values.get("token") and not values.get("password"):
        return AuthKind.TOKEN
    if values.get("password"):
        return AuthKind.PASSWORD
    raise InvalidRequest(
        f"no credentials found: set {name('credentials')}", field=name("credentials")
    )


def _require(values: Mapping[str, Any], field: str, name: _EnvNames, why: str) -> None:
    if not values.get(field):
        raise InvalidRequest(f"{why} needs {name(field)}", field=name(field))


def _check_keystone(values: Mapping[str, str | None], kind: AuthKind, name: _EnvNames) -> None:
    _require(values, "auth_url", name, "Keystone authentication")
    if kind is AuthKind.APPLICATION_CREDENTIAL:
        _require(values, "application_credential_secret", name, "an application credential")
        if not values.get("application_credential_id"):
            if not values.get("application_credential_name"):
                raise InvalidRequest(
                    f"an application credential needs {name('application_credential')}",
                    field=name("application_credential"),
                )
            _check_user(values, name, "an application credential given by name")
        return
    _require(values, "password", name, "password authentication")
    _check_user(values, name, "password authentication")
    named_project = values.get("project_name") and not values.get("project_id")
    if named_project and not (values.get("project_domain_name") or values.get("project_domain_id")):
        raise InvalidRequest(
            f"a project name needs {name('project_domain')}", field=name("project_domain")
        )


def _check_user(values: Mapping[str, str | None], name: _EnvNames, why: str) -> None:
    if values.get("user_id"):
        return
    _require(values, "username", name, why)
    if not (values.get("user_domain_name") or values.get("user_domain_id")):
        raise InvalidRequest(f"a user name needs {name('user_domain')}", field=name("user_domain"))


def _build(
    values: dict[str, str | None],
    settings: Mapping[str, Any],
    name: _EnvNames,
    *,
    cloud: str | None,
) -> ClientConfig:
    """Check the pieces for the kind of auth they describe and freeze them."""
    kind = _kind(values, settings.get("auth_type"), name)
    endpoint: str | None = settings.get("endpoint")
    if kind in (AuthKind.PASSWORD, AuthKind.APPLICATION_CREDENTIAL):
        _check_keystone(values, kind, name)
    elif kind is AuthKind.TOKEN:
        _require(values, "token", name, "token authentication")
        if not endpoint:
            raise InvalidRequest(
                f"a token alone has no service catalog: set {name('endpoint')}",
                field=name("endpoint"),
            )
    else:
        if not (values.get("ak") and values.get("sk")):
            raise InvalidRequest(f"AK/SK signing needs {name('ak')}", field=name("ak"))
        if not endpoint:
            raise InvalidRequest(
                f"AK/SK signing has no service catalog: set {name('endpoint')}",
                field=name("endpoint"),
            )
        endpoint = _endpoint_with_project(endpoint, values.get("project_id"))
    return ClientConfig(
        auth_kind=kind,
        endpoint=endpoint,
        region=settings.get("region"),
        interface=_interface(settings.get("interface")),
        microversion=_microversion(settings.get("microversion"), name("microversion")),
        dialect=settings.get("dialect") or _dialect_of(endpoint, values.get("auth_url")),
        verify=settings.get("verify", True),
        cloud=cloud,
        **_relevant(values, kind),
    )


def _relevant(values: Mapping[str, str | None], kind: AuthKind) -> dict[str, str | None]:
    """Only the fields the kind of auth uses, so that no stray secret is carried along."""
    keep = {
        AuthKind.TOKEN: {"token", "project_id"},
        AuthKind.AKSK: {"ak", "sk", "security_token", "project_id"},
        AuthKind.APPLICATION_CREDENTIAL: {
            "auth_url",
            "application_credential_id",
            "application_credential_name",
            "application_credential_secret",
            "username",
            "user_id",
            "user_domain_name",
            "user_domain_id",
        },
        AuthKind.PASSWORD: {
            "auth_url",
            "username",
            "user_id",
            "password",
            "user_domain_name",
            "user_domain_id",
            "project_id",
            "project_name",
            "project_domain_name",
            "project_domain_id",
        },
    }[kind]
    return {field: values.get(field) for field in keep}


# -- clouds.yaml -------------------------------------------------------------------------------


def clouds_search_paths(environ: Mapping[str, str]) -> list[Path]:
    """The directories searched for ``clouds.yaml`` and ``secure.yaml``, in openstacksdk's order:
    the current directory, the user's (``$XDG_CONFIG_HOME/openstack``, ``~/.config/openstack``),
    the site's (``$XDG_CONFIG_DIRS/openstack``, by default ``/etc/xdg/openstack``), and
    ``/etc/openstack``."""
    home = Path(environ["HOME"]) if environ.get("HOME") else Path.home()
    real_home = Path(environ["SNAP_REAL_HOME"]) if environ.get("SNAP_REAL_HOME") else home
    config_home = Path(environ["XDG_CONFIG_HOME"]) if environ.get("XDG_CONFIG_HOME") else None
    site_dirs = [
        Path(entry) / "openstack"
        for entry in (environ.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(":")
        if entry.strip()
    ]
    found: list[Path] = []
    for directory in [
        Path.cwd(),
        (config_home or home / ".config") / "openstack",
        real_home / ".config" / "openstack",
        *site_dirs,
        Path("/etc/openstack"),
    ]:
        if directory not in found:
            found.append(directory)
    return found


_SUFFIXES = (".yaml", ".yml", ".json")


def _files_in(dirs: Sequence[Path], stem: str) -> list[Path]:
    """Every ``stem.yaml`` / ``.yml`` / ``.json`` that exists in ``dirs``, in search order."""
    return [
        directory / f"{stem}{suffix}"
        for directory in dirs
        for suffix in _SUFFIXES
        if (directory / f"{stem}{suffix}").is_file()
    ]


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise InvalidRequest(f"cannot read {path}: {reason}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # The parser's own message may quote the file, secrets included: give the place only.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InvalidRequest(f"{path} is not valid YAML{where}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise InvalidRequest(f"{path} must hold a mapping with a 'clouds' key")
    return document


def _clouds_of(path: Path) -> dict[str, Any]:
    clouds = _load_yaml(path).get("clouds") or {}
    if not isinstance(clouds, dict):
        raise InvalidRequest(f"'clouds' in {path} must be a mapping of cloud names")
    return clouds


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@attrs.frozen
class _Sources:
    """Where a cloud's settings were found."""

    clouds: dict[str, Any]
    clouds_file: Path
    dirs: tuple[Path, ...]
    explicit_secure: Path | None


def _find_clouds(environ: Mapping[str, str], search_paths: Sequence[Path | str] | None) -> _Sources:
    dirs = tuple(
        [Path(p) for p in search_paths]
        if search_paths is not None
        else clouds_search_paths(environ)
    )
    explicit = _get(environ, "OS_CLIENT_CONFIG_FILE")
    candidates = [Path(explicit).expanduser()] if explicit else _files_in(dirs, "clouds")
    if not candidates:
        looked = ", ".join(str(d) for d in dirs) or "nowhere"
        raise InvalidRequest(
            f"no clouds.yaml found: set OS_CLIENT_CONFIG_FILE or create one (looked in: {looked})",
            field="OS_CLIENT_CONFIG_FILE",
        )
    secure = _get(environ, "OS_CLIENT_SECURE_FILE")
    return _Sources(
        clouds=_clouds_of(candidates[0]),
        clouds_file=candidates[0],
        dirs=dirs,
        explicit_secure=Path(secure).expanduser() if secure else None,
    )


def _with_secrets(sources: _Sources, cloud: str) -> dict[str, Any]:
    """The cloud's entry, completed from ``secure.yaml``.

    openstacksdk takes the first ``secure.yaml`` found anywhere in its search path, whichever
    directory its ``clouds.yaml`` came from: an untrusted ``./clouds.yaml`` (a cloned
    repository's) would pair its own ``auth_url`` with the user's password from
    ``~/.config/openstack/secure.yaml``. Here the secure file is the one beside the
    ``clouds.yaml`` used, or the one named by ``OS_CLIENT_SECURE_FILE``; a secure file elsewhere
    that holds this cloud is refused, with the way to allow it.
    """
    entry: dict[str, Any] = sources.clouds[cloud]
    beside = _files_in([sources.clouds_file.parent], "secure")
    secure = sources.explicit_secure or (beside[0] if beside else None)
    if secure is not None:
        secure_entry = _clouds_of(secure).get(cloud)
        if isinstance(secure_entry, Mapping):
            if secure.parent.resolve() != sources.clouds_file.parent.resolve():
                logger.info(
                    "cloud %r: settings from %s, secrets from %s (OS_CLIENT_SECURE_FILE)",
                    cloud,
                    sources.clouds_file,
                    secure,
                )
            return _merge(entry, secure_entry)
    elsewhere = [
        path
        for path in _files_in(sources.dirs, "secure")
        if path != secure and isinstance(_clouds_of(path).get(cloud), Mapping)
    ]
    if elsewhere:
        raise InvalidRequest(
            f"cloud {cloud!r} is read from {sources.clouds_file}, and its secrets would come from "
            f"{elsewhere[0]}, another place: files from different places are not combined, "
            "so that a clouds.yaml you did not write cannot send your password to its own "
            f"auth_url. If both files are yours, set OS_CLIENT_SECURE_FILE={elsewhere[0]}",
            field="OS_CLIENT_SECURE_FILE",
        )
    return entry


def config_from_cloud(
    name: str | None,
    environ: Mapping[str, str],
    search_paths: Sequence[Path | str] | None = None,
) -> ClientConfig:
    """Settings for cloud ``name`` (default ``OS_CLOUD``) from ``clouds.yaml`` + ``secure.yaml``.

    ``search_paths`` replaces the standard directories (see :func:`clouds_search_paths`);
    ``OS_CLIENT_CONFIG_FILE`` and ``OS_CLIENT_SECURE_FILE`` name files directly. The first
    ``clouds.yaml`` (or ``.yml``, ``.json``) found is used, with the ``secure.yaml`` beside it
    (or the one ``OS_CLIENT_SECURE_FILE`` names). Vendor ``profile`` entries are not expanded.
    """
    sources = _find_clouds(environ, search_paths)
    clouds = sources.clouds
    source = str(sources.clouds_file)
    chosen = name or _get(environ, "OS_CLOUD")
    if chosen is None:
        if len(clouds) != 1:
            raise InvalidRequest(
                f"{source} defines {len(clouds)} clouds: name one (or set OS_CLOUD)",
                field="OS_CLOUD",
            )
        chosen = next(iter(clouds))
    entry = clouds.get(chosen)
    if not isinstance(entry, dict):
        known = ", ".join(sorted(map(str, clouds))) or "none"
        raise InvalidRequest(
            f"cloud {chosen!r} is not in {source} (clouds: {known})", field="OS_CLOUD"
        )
    return _config_from_entry(str(chosen), _with_secrets(sources, str(chosen)))


def _text(value: object) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text or None


def _config_from_entry(cloud: str, entry: Mapping[str, Any]) -> ClientConfig:
    raw_auth = entry.get("auth")
    auth: Mapping[str, Any] = raw_auth if isinstance(raw_auth, dict) else {}
    values: dict[str, str | None] = {field: _text(auth.get(field)) for field in _OS_FIELDS}
    values["project_id"] = values["project_id"] or _text(auth.get("tenant_id"))
    values["project_name"] = values["project_name"] or _text(auth.get("tenant_name"))
    default_domain_id = _text(auth.get("default_domain_id"))
    default_domain_name = _text(auth.get("default_domain_name"))
    for kind in ("user", "project"):
        values[f"{kind}_domain_id"] = values[f"{kind}_domain_id"] or default_domain_id
        values[f"{kind}_domain_name"] = values[f"{kind}_domain_name"] or default_domain_name
    for field in ("ak", "sk", "security_token"):
        values[field] = _text(auth.get(field))
    values["token"] = values["token"] or _text(auth.get("auth_token"))
    regions = entry.get("regions")
    first_region = regions[0] if isinstance(regions, list) and regions else None
    if isinstance(first_region, dict):
        first_region = first_region.get("name")
    settings: dict[str, Any] = {
        "auth_type": _text(entry.get("auth_type")),
        "endpoint": _text(entry.get("compute_endpoint_override") or entry.get("endpoint_override")),
        "region": _text(entry.get("region_name")) or _text(first_region),
        "interface": _text(entry.get("interface") or entry.get("endpoint_type")),
        "microversion": entry.get("compute_api_version"),
        "dialect": _dialect_key(entry.get("dialect"), cloud),
        "verify": _verify_from_entry(entry),
    }
    return _build(values, settings, _EnvNames(prefix=f"clouds.{cloud}."), cloud=cloud)


def _dialect_key(value: object, cloud: str) -> Dialect | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in ("ecs", "huaweicloud", "otc"):
        return ECS
    if text in ("nova", "openstack"):
        return NOVA
    raise InvalidRequest(
        f"clouds.{cloud}.dialect must be 'ecs' or 'nova'", field=f"clouds.{cloud}.dialect"
    )


def _flag(value: object) -> bool:
    """A clouds.yaml boolean as openstacksdk reads it: true, or the text "true" in any case."""
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.strip().lower() in _TRUE


def _verify_from_entry(entry: Mapping[str, Any]) -> bool | str:
    """TLS verification as openstacksdk derives it: ``insecure: true`` wins (no verification);
    then ``verify: false``; then ``cacert`` (a CA bundle) when verifying; ``verify`` may itself
    be the path of a CA bundle."""
    verify = entry.get("verify", True)
    cacert = _text(entry.get("cacert"))
    if (
        _flag(entry.get("insecure"))
        or verify is False
        or (isinstance(verify, str) and verify.strip().lower() in ("false", "no", "0", "off"))
    ):
        if cacert:
            logger.warning("cacert %s is ignored: TLS verification is turned off", cacert)
        return False
    if cacert:
        return str(Path(cacert).expanduser())
    if isinstance(verify, str) and verify.strip().lower() not in ("true", "yes", "1", "on", ""):
        return str(Path(verify.strip()).expanduser())
    return True
