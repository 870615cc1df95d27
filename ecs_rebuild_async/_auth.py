"""Authentication as httpx auth flows: a fixed token, Keystone v3 (and Keystone-compatible IAM),
and Huawei Cloud AK/SK signing.

Each class is an :class:`httpx.Auth` that only works with an ``httpx.AsyncClient``. Keystone's
token request is yielded from the flow, so httpx sends it through the same client and
transport as the request it authenticates, whatever that transport is.

Transport failures of the token request are not mapped here: httpx raises them from
``client.send`` like any other, and their ``.request`` is the token request, which tells the
caller that the request being authenticated was never sent.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncGenerator, Generator, Mapping
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import anyio
import attrs
import httpx

from ._bounded import (
    DEFAULT_MAX_ANSWER_BYTES,
    MAX_ANSWER_BYTES,
    answer_limit,
    read_body,
    redirect_error,
)
from ._config import AuthKind, ClientConfig
from ._errors import (
    EcsError,
    InvalidRequest,
    ResponseError,
    ServiceError,
    error_from_response,
    request_id_from_headers,
)
from ._redact import SecretStore
from ._signing import canonical_query_from_string, sign
from ._validation import check_no_userinfo

__all__ = ["AkSkAuth", "Auth", "KeystoneAuth", "TokenAuth", "build_auth"]

logger = logging.getLogger("ecs_rebuild_async")

# Every header that carries a credential, whichever auth produced it.
REDACTED_HEADERS: frozenset[str] = frozenset(
    {"x-auth-token", "x-subject-token", "authorization", "x-security-token", "proxy-authorization"}
)


class Auth(httpx.Auth):
    """The base of the library's auth flows: async only, secrets never in ``repr``."""

    #: Lowercase names of headers whose values must be masked wherever requests are logged.
    redacted_headers: frozenset[str] = REDACTED_HEADERS
    #: The flow yields the request once and never looks at its answer (it sets headers):
    #: the session's engine then builds no answer object for it.
    single_pass: bool = True

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        raise TypeError(f"{type(self).__name__} works only with httpx.AsyncClient")

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        raise TypeError(f"{type(self).__name__} works only with httpx.AsyncClient")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        yield request

    async def compute_endpoint(
        self,
        client: httpx.AsyncClient,
        *,
        interface: str | None = None,
        region: str | None = None,
        max_answer_bytes: int | None = None,
    ) -> str | None:
        """The compute endpoint from a service catalog, or None when this auth has none."""
        return None

    async def service_endpoint(
        self,
        client: httpx.AsyncClient,
        service_type: str,
        *,
        interface: str | None = None,
        region: str | None = None,
        max_answer_bytes: int | None = None,
    ) -> str | None:
        """Another service's endpoint (``image``...) from the catalog; None without one."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class TokenAuth(Auth):
    """A token obtained elsewhere, sent as ``X-Auth-Token``. A 401 is returned as it is:
    there is nothing to refresh."""

    def __init__(self, token: str) -> None:
        if not token:
            raise InvalidRequest("TokenAuth needs a non-empty token", field="token")
        self._token = token
        self._secrets = SecretStore(token)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["X-Auth-Token"] = self._token
        yield request

    def __repr__(self) -> str:
        return "TokenAuth(token=<redacted>)"


class AkSkAuth(Auth):
    """Huawei Cloud AK/SK: every request is signed with ``SDK-HMAC-SHA256``.

    ``project_id`` is sent (and signed) as ``X-Project-Id``; ``security_token`` (temporary
    credentials) as ``X-Security-Token``. Every pass through the flow, and so every retry,
    signs with a fresh ``X-Sdk-Date``: the gateway rejects a date more than 15 minutes off.
    A 401 is returned as it is; repeating it would count towards the gateway's lockout of an
    AK after five failures.
    """

    requires_request_body = True

    # Headers that the transport or a proxy may drop or rewrite on the way: signing them would
    # make a correct signature fail at the gateway.
    _UNSIGNED_HEADERS = frozenset(
        {
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "content-length",
            "accept-encoding",
            "expect",
        }
    )

    def __init__(
        self,
        ak: str,
        sk: str,
        *,
        project_id: str | None = None,
        security_token: str | None = None,
    ) -> None:
        if not ak or not sk:
            raise InvalidRequest(
                "AkSkAuth needs both an AK and an SK", field="ak" if not ak else "sk"
            )
        self._ak = ak
        self._sk = sk
        self.project_id = project_id
        self._security_token = security_token
        # The AK too: it names the account in the gateway's lockout, and is echoed back
        # from the Authorization header by some proxies.
        self._secrets = SecretStore(ak, sk, security_token)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        body = await request.aread()
        self._sign(request, body)
        yield request

    def _sign(self, request: httpx.Request, body: bytes) -> None:
        for stale in ("Authorization", "X-Sdk-Date", "X-Sdk-Content-Sha256"):
            request.headers.pop(stale, None)
        if self.project_id:
            request.headers["X-Project-Id"] = self.project_id
        if self._security_token:
            request.headers["X-Security-Token"] = self._security_token
        # The gateway checks the canonical query it rebuilds from what it receives; sending the
        # canonical form itself leaves no doubt about encodings such as "+" for a space.
        query = request.url.query.decode("ascii")
        if query:
            request.url = request.url.copy_with(query=canonical_query_from_string(query).encode())
        to_sign = {
            name: value
            for name, value in request.headers.items()
            if name.lower() not in self._UNSIGNED_HEADERS
        }
        target = request.url.raw_path.decode("ascii")
        added = sign(request.method, target, to_sign, body, self._ak, self._sk)
        request.headers.update(added)

    def __repr__(self) -> str:
        parts = ["ak=<redacted>", "sk=<redacted>"]
        if self.project_id:
            parts.append(f"project_id={self.project_id!r}")
        if self._security_token:
            parts.append("security_token=<redacted>")
        return f"AkSkAuth({', '.join(parts)})"


# Keystone's timestamps: "2015-11-07T02:58:43.578887Z", with or without fraction or "Z".
_ISO_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$"
)


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    match = _ISO_TIME.match(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro
        )
    except ValueError:
        return None
    if zone in (None, "Z"):
        return moment.replace(tzinfo=timezone.utc)
    sign_ = 1 if zone[0] == "+" else -1
    digits = zone[1:].replace(":", "")
    offset = sign_ * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    try:
        return moment.replace(tzinfo=timezone.utc) - timedelta(seconds=offset)
    except OverflowError:  # 9999-12-31T23:59:59-23:59 is after the last datetime in UTC
        return None


def _normal_interface(value: str) -> str:
    # keystoneauth accepts "publicURL" and friends from the v2 days.
    text = value.strip().lower()
    return text[:-3] if text.endswith("url") else text


@attrs.frozen
class _Token:
    value: str = attrs.field(repr=False)
    generation: int
    # Local monotonic times: the token's own lifetime, measured by Keystone's clock, mapped
    # onto ours, so a skewed local wall clock neither expires it early nor keeps it too long.
    refresh_at: float
    catalog: list[Any] = attrs.field(repr=False)
    project_id: str | None
    #: Keystone gave it with ``expires_at`` at or before its issue time.
    expired_on_arrival: bool = False


class KeystoneAuth(Auth):
    """Keystone v3 (or a Keystone-compatible IAM): password or application credential.

    One token is shared by every request. It is refreshed ahead of ``expires_at`` by
    ``refresh_margin`` seconds (at most half its lifetime), once for all concurrent requests.
    A 401 from the service re-authenticates once, again once for all requests that saw it
    with the same token, and the request is repeated once.

    A token that Keystone gives already expired (its clock, or a proxy, is wrong) is warned
    about, used, and replaced at most once every ``min_reauth_interval`` seconds, rather than
    costing a token request per API call.
    """

    requires_request_body = True

    single_pass = False  # a 401 is answered with a new token and the request again

    def __init__(
        self,
        auth_url: str,
        *,
        username: str | None = None,
        user_id: str | None = None,
        password: str | None = None,
        user_domain_name: str | None = None,
        user_domain_id: str | None = None,
        project_id: str | None = None,
        project_name: str | None = None,
        project_domain_name: str | None = None,
        project_domain_id: str | None = None,
        application_credential_id: str | None = None,
        application_credential_name: str | None = None,
        application_credential_secret: str | None = None,
        region: str | None = None,
        interface: str = "public",
        refresh_margin: float = 120.0,
        min_reauth_interval: float = 30.0,
    ) -> None:
        if not auth_url:
            raise InvalidRequest("KeystoneAuth needs auth_url", field="auth_url")
        _check_auth_url(auth_url)
        self.auth_url = auth_url
        self.min_reauth_interval = max(0.0, float(min_reauth_interval))
        self._secrets = SecretStore(password, application_credential_secret)
        self.region = region
        self.interface = _normal_interface(interface)
        self.refresh_margin = max(0.0, float(refresh_margin))
        self._user_label = user_id or username
        self._project_label = project_id or project_name
        self._token_url = _token_url(auth_url)
        self._body = _auth_body(
            username=username,
            user_id=user_id,
            password=password,
            user_domain_name=user_domain_name,
            user_domain_id=user_domain_id,
            project_id=project_id,
            project_name=project_name,
            project_domain_name=project_domain_name,
            project_domain_id=project_domain_id,
            application_credential_id=application_credential_id,
            application_credential_name=application_credential_name,
            application_credential_secret=application_credential_secret,
        )
        self._method = self._body["auth"]["identity"]["methods"][0]
        self._token: _Token | None = None
        self._generation = 0
        # Token requests made so far, and the error of the last one if it failed.
        self._attempts = 0
        self._failure: tuple[int, EcsError] | None = None
        self._lock = anyio.Lock()

    # -- the flow ---------------------------------------------------------------------------

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        # The body is read up front so that the request can be sent a second time after a 401.
        await request.aread()
        limit = answer_limit(request)
        rejected: int | None = None
        for attempt in (1, 2):
            if self._must_refresh(rejected):
                attempts_seen = self._attempts
                async with self._lock:
                    self._raise_shared_failure(attempts_seen)
                    # Whoever held the lock before may have refreshed already: check again.
                    if self._must_refresh(rejected):
                        self._attempts += 1
                        answer = yield self._token_request(limit)
                        self._accept(answer, await read_body(answer, limit))
            token = self._token
            assert token is not None  # _accept either stored one or raised
            request.headers["X-Auth-Token"] = token.value
            response = yield request
            if response.status_code != 401 or attempt == 2:
                return
            if token.expired_on_arrival and time.monotonic() < token.refresh_at:
                return  # the re-authentication rate is bounded: the 401 stands
            # httpx reads a rejected answer whole before sending the next request: read it
            # here first, within the size limit.
            await read_body(response, limit)
            rejected = token.generation

    def _must_refresh(self, rejected: int | None) -> bool:
        token = self._token
        if token is None:
            return True
        if rejected is not None and token.generation == rejected:
            return True
        return time.monotonic() >= token.refresh_at

    def _token_request(self, limit: int) -> httpx.Request:
        return httpx.Request(
            "POST",
            self._token_url,
            json=self._body,
            headers={"Accept": "application/json"},
            extensions={MAX_ANSWER_BYTES: limit},
        )

    def _raise_shared_failure(self, attempts_seen: int) -> None:
        """Fail like the token request that ran while this task waited for the lock.

        Repeating it once per waiting task would send a burst of bad credentials, and
        Keystone (like Huawei's gateway) locks an account out after a few failures.
        """
        if self._failure is not None and self._failure[0] > attempts_seen:
            raise _fresh_copy(self._failure[1])

    def _accept(self, answer: httpx.Response, content: bytes) -> None:
        received = time.monotonic()
        # Known as a secret before anything else reads it (an error message may echo it).
        self._secrets.add(answer.headers.get("x-subject-token"))
        try:
            value, body = _read_token_answer(answer, content)
            lifetime = _lifetime(body, answer.headers)
        except EcsError as exc:
            self._failure = (self._attempts, exc)
            raise
        self._failure = None
        expired = lifetime <= 0
        if expired:
            logger.warning(
                "Keystone at %s gave a token that has already expired (expires_at %.40s, "
                "issued_at %.40s): is a clock wrong? It is used, and replaced at most every "
                "%gs",
                self.auth_url,
                body.get("expires_at"),
                body.get("issued_at"),
                self.min_reauth_interval,
            )
            lifetime = self.min_reauth_interval
        margin = 0.0 if expired else min(self.refresh_margin, lifetime / 2)
        project = body.get("project")
        catalog = body.get("catalog")
        self._generation += 1
        self._token = _Token(
            value=value,
            generation=self._generation,
            refresh_at=received + lifetime - margin,
            catalog=catalog if isinstance(catalog, list) else [],
            project_id=str(project["id"])
            if isinstance(project, dict) and "id" in project
            else None,
            expired_on_arrival=expired,
        )

    # -- the catalog ------------------------------------------------------------------------

    async def compute_endpoint(
        self,
        client: httpx.AsyncClient,
        *,
        interface: str | None = None,
        region: str | None = None,
        max_answer_bytes: int | None = None,
    ) -> str | None:
        """The compute endpoint from the token's catalog, getting a token first if needed.

        ``interface`` and ``region`` default to the ones given to this auth. Raises
        ResponseError when the catalog has no matching compute endpoint.
        """
        token = await self._current_token(client, max_answer_bytes or DEFAULT_MAX_ANSWER_BYTES)
        return _find_compute(
            token.catalog,
            _normal_interface(interface) if interface else self.interface,
            region if region is not None else self.region,
        )

    async def service_endpoint(
        self,
        client: httpx.AsyncClient,
        service_type: str,
        *,
        interface: str | None = None,
        region: str | None = None,
        max_answer_bytes: int | None = None,
    ) -> str | None:
        token = await self._current_token(client, max_answer_bytes or DEFAULT_MAX_ANSWER_BYTES)
        return find_service_endpoint(
            token.catalog,
            service_type,
            interface or self.interface,
            region if region is not None else self.region,
        )

    @property
    def project_id(self) -> str | None:
        """The project the current token is scoped to, once a token has been obtained."""
        return self._token.project_id if self._token else None

    async def _current_token(self, client: httpx.AsyncClient, limit: int) -> _Token:
        if self._must_refresh(None):
            attempts_seen = self._attempts
            async with self._lock:
                self._raise_shared_failure(attempts_seen)
                if self._must_refresh(None):
                    self._attempts += 1
                    # No auth on the token request itself: it carries its own credentials;
                    # and no redirect, whatever the client's setting: they would go along.
                    answer = await client.send(
                        self._token_request(limit), auth=None, stream=True, follow_redirects=False
                    )
                    try:
                        self._accept(answer, await read_body(answer, limit))
                    finally:
                        await answer.aclose()
        assert self._token is not None
        return self._token

    def __repr__(self) -> str:
        parts = [f"auth_url={self.auth_url!r}", f"method={self._method!r}"]
        if self._user_label:
            parts.append(f"user={self._user_label!r}")
        if self._project_label:
            parts.append(f"project={self._project_label!r}")
        if self.region:
            parts.append(f"region={self.region!r}")
        return f"KeystoneAuth({', '.join(parts)})"


def _fresh_copy(error: EcsError) -> EcsError:
    # A new exception per task: one object raised in many tasks would share one traceback.
    if isinstance(error, ServiceError):
        return type(error)(
            error.message,
            status=error.status,
            code=error.code,
            request_id=error.request_id,
            retry_after=error.retry_after,
        )
    if isinstance(error, ResponseError):
        return ResponseError(str(error), status=error.status, request_id=error.request_id)
    return EcsError(str(error))


def _check_auth_url(auth_url: str) -> None:
    check_no_userinfo(auth_url, "auth_url")
    try:
        url = httpx.URL(auth_url)
    except (httpx.InvalidURL, TypeError, ValueError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise InvalidRequest(
            f"auth_url must be an http:// or https:// URL with a host, got {auth_url!r:.80}",
            field="auth_url",
        )


def _token_url(auth_url: str) -> str:
    base = auth_url.rstrip("/")
    if not base.endswith("/v3"):
        base += "/v3"
    return base + "/auth/tokens"


def _domain(name: str | None, id_: str | None) -> dict[str, str] | None:
    if id_:
        return {"id": id_}
    if name:
        return {"name": name}
    return None


def _user(
    user_id: str | None, username: str | None, domain: dict[str, str] | None, what: str
) -> dict[str, Any]:
    if user_id:
        return {"id": user_id}
    if not username:
        raise InvalidRequest(f"{what} needs user_id or username", field="username")
    if domain is None:
        raise InvalidRequest(
            "a username needs user_domain_name or user_domain_id", field="user_domain_name"
        )
    return {"name": username, "domain": domain}


def _auth_body(
    *,
    username: str | None,
    user_id: str | None,
    password: str | None,
    user_domain_name: str | None,
    user_domain_id: str | None,
    project_id: str | None,
    project_name: str | None,
    project_domain_name: str | None,
    project_domain_id: str | None,
    application_credential_id: str | None,
    application_credential_name: str | None,
    application_credential_secret: str | None,
) -> dict[str, Any]:
    """The body of ``POST /v3/auth/tokens``, as in Keystone's API reference samples."""
    user_domain = _domain(user_domain_name, user_domain_id)
    if application_credential_secret or application_credential_id or application_credential_name:
        if not application_credential_secret:
            raise InvalidRequest(
                "an application credential needs its secret",
                field="application_credential_secret",
            )
        credential: dict[str, Any] = {"secret": application_credential_secret}
        if application_credential_id:
            credential["id"] = application_credential_id
        elif application_credential_name:
            credential["name"] = application_credential_name
            credential["user"] = _user(
                user_id, username, user_domain, "an application credential given by name"
            )
        else:
            raise InvalidRequest(
                "an application credential needs application_credential_id or "
                "application_credential_name",
                field="application_credential_id",
            )
        # An application credential is bound to its project: no scope may be sent.
        identity = {"methods": ["application_credential"], "application_credential": credential}
        return {"auth": {"identity": identity}}
    if not password:
        raise InvalidRequest(
            "KeystoneAuth needs a password or an application credential", field="password"
        )
    user = _user(user_id, username, user_domain, "password authentication")
    user["password"] = password
    auth: dict[str, Any] = {"identity": {"methods": ["password"], "password": {"user": user}}}
    scope = _project_scope(project_id, project_name, project_domain_name, project_domain_id)
    if scope is not None:
        auth["scope"] = scope
    return {"auth": auth}


def _project_scope(
    project_id: str | None,
    project_name: str | None,
    project_domain_name: str | None,
    project_domain_id: str | None,
) -> dict[str, Any] | None:
    if project_id:
        return {"project": {"id": project_id}}
    if not project_name:
        return None
    domain = _domain(project_domain_name, project_domain_id)
    if domain is None:
        raise InvalidRequest(
            "a project_name needs project_domain_name or project_domain_id",
            field="project_domain_name",
        )
    return {"project": {"domain": domain, "name": project_name}}


def _read_token_answer(answer: httpx.Response, content: bytes) -> tuple[str, dict[str, Any]]:
    """The token and the ``token`` object of Keystone's answer, or a typed error."""
    status = answer.status_code
    request_id = request_id_from_headers(answer.headers)
    if status >= 400:
        raise error_from_response(status, answer.headers, content)
    if 300 <= status < 400:
        raise redirect_error("POST", answer.request.url, status, answer.headers)
    if status not in (200, 201):
        raise ResponseError(
            f"Keystone answered the token request with HTTP {status}, not 201",
            status=status,
            request_id=request_id,
        )
    try:
        document = json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        content_type = answer.headers.get("content-type", "no content type")
        raise ResponseError(
            f"Keystone's token answer is not JSON ({content_type[:60]})",
            status=status,
            request_id=request_id,
        ) from None
    body = document.get("token") if isinstance(document, dict) else None
    if not isinstance(body, dict):
        raise ResponseError(
            "Keystone's token answer has no 'token' object", status=status, request_id=request_id
        )
    value = answer.headers.get("x-subject-token", "").strip()
    if not value:
        raise ResponseError(
            "Keystone's token answer has no X-Subject-Token header",
            status=status,
            request_id=request_id,
        )
    return value, body


def _lifetime(body: Mapping[str, Any], headers: httpx.Headers) -> float:
    """Seconds the token lives, by Keystone's clock: expires_at minus issued_at (or Date)."""
    expires = _parse_time(body.get("expires_at"))
    if expires is None:
        shown = body.get("expires_at")
        raise ResponseError(
            "Keystone's token has no readable 'expires_at'"
            + (f" ({shown[:40]!r})" if isinstance(shown, str) else "")
        )
    issued = _parse_time(body.get("issued_at")) or _http_date(headers.get("date"))
    if issued is None:
        issued = datetime.now(timezone.utc)
    return max(0.0, (expires - issued).total_seconds())


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _find_compute(catalog: list[Any], interface: str, region: str | None) -> str:
    services = [
        entry for entry in catalog if isinstance(entry, dict) and entry.get("type") == "compute"
    ]
    if not services:
        raise ResponseError("the service catalog has no 'compute' service")
    return _find_endpoint(services, "compute", interface, region)


def _find_endpoint(
    services: list[dict[str, Any]], service_type: str, interface: str, region: str | None
) -> str:
    regions: set[str] = set()
    for service in services:
        endpoints = service.get("endpoints")
        if not isinstance(endpoints, list):  # 5, true, an object: nothing to choose from
            continue
        for endpoint in endpoints:
            if not isinstance(endpoint, dict) or not isinstance(endpoint.get("url"), str):
                continue
            if _normal_interface(str(endpoint.get("interface", ""))) != interface:
                continue
            where = endpoint.get("region_id") or endpoint.get("region")
            if isinstance(where, str):
                regions.add(where)
            if region is not None and region not in (
                endpoint.get("region_id"),
                endpoint.get("region"),
            ):
                continue
            return str(endpoint["url"])
    if region is not None and regions:
        # The user's setting, not the service, is wrong: say which regions there are.
        raise InvalidRequest(
            f"region {region!r} has no {service_type} endpoint in the service catalog; "
            f"its regions are: {', '.join(sorted(regions))} (set OS_REGION_NAME, "
            "region_name in clouds.yaml, or --os-region-name)",
            field="region",
        )
    where = f"interface {interface!r}" + (f" in region {region!r}" if region else "")
    raise ResponseError(f"the service catalog has no {service_type} endpoint for {where}")


def find_service_endpoint(
    catalog: list[Any], service_type: str, interface: str, region: str | None
) -> str | None:
    """The URL of ``service_type`` (``image``...) in a catalog, or None when it is not there."""
    services = [e for e in catalog if isinstance(e, dict) and e.get("type") == service_type]
    if not services:
        return None
    return _find_endpoint(services, service_type, _normal_interface(interface), region)


def build_auth(config: ClientConfig) -> Auth:
    """The auth object that a :class:`ClientConfig` describes."""
    if config.auth_kind is AuthKind.TOKEN:
        assert config.token is not None
        return TokenAuth(config.token)
    if config.auth_kind is AuthKind.AKSK:
        assert config.ak is not None
        assert config.sk is not None
        return AkSkAuth(
            config.ak,
            config.sk,
            project_id=config.project_id,
            security_token=config.security_token,
        )
    assert config.auth_url is not None
    return KeystoneAuth(
        config.auth_url,
        username=config.username,
        user_id=config.user_id,
        password=config.password,
        user_domain_name=config.user_domain_name,
        user_domain_id=config.user_domain_id,
        project_id=config.project_id,
        project_name=config.project_name,
        project_domain_name=config.project_domain_name,
        project_domain_id=config.project_domain_id,
        application_credential_id=config.application_credential_id,
        application_credential_name=config.application_credential_name,
        application_credential_secret=config.application_credential_secret,
        region=config.region,
        interface=config.interface,
    )
