"""The integration suite's settings: a Nova-compatible endpoint described by ECS_IT_* variables.

Without ``ECS_IT_COMPUTE_URL`` every test here is skipped with a one-line reason. The variables
are described in ``tests/integration/README.md``.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import anyio
import httpx
import pytest

from ecs_rebuild_async import (
    ECS,
    NOVA,
    APIVersion,
    AsyncEcsClient,
    Auth,
    ClientSettings,
    Dialect,
    Fault,
    KeystoneAuth,
    Server,
    TokenAuth,
)

SKIP_REASON = (
    "ECS_IT_COMPUTE_URL is not set: the integration suite needs a Nova-compatible endpoint "
    "(see tests/integration/README.md)"
)

#: Fast polling: the suite waits for many short rebuilds.
SETTINGS = ClientSettings(
    poll_first_delay=0.2,
    poll_interval=0.3,
    poll_interval_max=1.0,
    backoff_initial=0.2,
    request_timeout=60.0,
)


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())


def _keystone_auth(environ: Mapping[str, str]) -> KeystoneAuth:
    def get(name: str) -> str | None:
        return environ.get(f"ECS_IT_{name}") or environ.get(f"OS_{name}") or None

    return KeystoneAuth(
        get("AUTH_URL") or "",
        username=get("USERNAME"),
        user_id=get("USER_ID"),
        password=get("PASSWORD"),
        user_domain_name=get("USER_DOMAIN_NAME"),
        user_domain_id=get("USER_DOMAIN_ID"),
        project_id=get("PROJECT_ID"),
        project_name=get("PROJECT_NAME"),
        project_domain_name=get("PROJECT_DOMAIN_NAME"),
        project_domain_id=get("PROJECT_DOMAIN_ID"),
        application_credential_id=get("APPLICATION_CREDENTIAL_ID"),
        application_credential_name=get("APPLICATION_CREDENTIAL_NAME"),
        application_credential_secret=get("APPLICATION_CREDENTIAL_SECRET"),
    )


@dataclass
class Target:
    """The endpoint under test and the resources it lets the suite use."""

    compute_url: str
    dialect: Dialect
    environ: Mapping[str, str]
    servers: tuple[str, ...]
    image: str | None
    image_alt: str | None
    failing_image: str | None
    slow_image: str | None
    paused_server: str | None
    locked_server: str | None
    error_server: str | None
    keypair: str | None
    admin_token: str | None
    wait_timeout: float
    fleet_size: int
    _taken: int = field(default=0)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Target:
        dialect_name = (environ.get("ECS_IT_DIALECT") or "nova").strip().lower()
        if dialect_name not in ("nova", "ecs"):
            raise pytest.UsageError("ECS_IT_DIALECT must be 'nova' or 'ecs'")
        return cls(
            compute_url=environ["ECS_IT_COMPUTE_URL"].rstrip("/"),
            dialect=NOVA if dialect_name == "nova" else ECS,
            environ=environ,
            servers=_split(environ.get("ECS_IT_SERVERS")),
            image=environ.get("ECS_IT_IMAGE") or None,
            image_alt=environ.get("ECS_IT_IMAGE_ALT") or None,
            failing_image=environ.get("ECS_IT_FAILING_IMAGE") or None,
            slow_image=environ.get("ECS_IT_SLOW_IMAGE") or None,
            paused_server=environ.get("ECS_IT_PAUSED_SERVER") or None,
            locked_server=environ.get("ECS_IT_LOCKED_SERVER") or None,
            error_server=environ.get("ECS_IT_ERROR_SERVER") or None,
            keypair=environ.get("ECS_IT_KEYPAIR") or None,
            admin_token=environ.get("ECS_IT_ADMIN_TOKEN") or None,
            wait_timeout=float(environ.get("ECS_IT_WAIT_TIMEOUT") or 300),
            fleet_size=int(environ.get("ECS_IT_FLEET_SIZE") or 20),
        )

    # -- credentials --

    def auth(self) -> Auth:
        """A new auth object (one per client: an auth's locks belong to one event loop)."""
        token = self.environ.get("ECS_IT_TOKEN")
        if token:
            return TokenAuth(token)
        if self.environ.get("ECS_IT_AUTH_URL") or self.environ.get("OS_AUTH_URL"):
            return _keystone_auth(self.environ)
        pytest.skip("neither ECS_IT_TOKEN nor ECS_IT_AUTH_URL / OS_AUTH_URL is set")

    def client(
        self,
        *,
        microversion: str | APIVersion | None = None,
        dialect: Dialect | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        admin: bool = False,
    ) -> AsyncEcsClient:
        if admin and self.admin_token is None:
            pytest.skip("ECS_IT_ADMIN_TOKEN is not set")
        return AsyncEcsClient(
            self.compute_url,
            auth=TokenAuth(self.admin_token) if admin and self.admin_token else self.auth(),
            microversion=microversion,
            dialect=self.dialect if dialect is None else dialect,
            settings=SETTINGS,
            transport=transport,
        )

    def raw(self, *, admin: bool = False) -> httpx.AsyncClient:
        """Plain httpx on the same endpoint, for what the library does not do (stop a server)."""
        auth: httpx.Auth
        if admin:
            if self.admin_token is None:
                pytest.skip("ECS_IT_ADMIN_TOKEN is not set")
            auth = TokenAuth(self.admin_token)
        else:
            auth = self.auth()
        return httpx.AsyncClient(
            base_url=self.compute_url + "/",
            auth=auth,
            headers={"Accept": "application/json"},
            timeout=60.0,
        )

    # -- resources --

    def need(self, name: str) -> str:
        value = getattr(self, name)
        if value is None:
            pytest.skip(f"ECS_IT_{name.upper()} is not set")
        return str(value)

    def take_servers(self, count: int) -> list[str]:
        """Servers of the test's own: each rebuild test uses servers no other test touches."""
        if self._taken + count > len(self.servers):
            pytest.skip(
                f"ECS_IT_SERVERS has too few servers left for this test "
                f"(needs {count}, {len(self.servers) - self._taken} left)"
            )
        chosen = list(self.servers[self._taken : self._taken + count])
        self._taken += count
        return chosen

    def take_server(self) -> str:
        return self.take_servers(1)[0]

    # -- the wire, read directly --

    async def raw_server(
        self,
        server_id: str,
        version: APIVersion | str | None,
        *,
        admin: bool = False,
        http: httpx.AsyncClient | None = None,
    ) -> dict[str, Any]:
        """The server object exactly as the service sends it at ``version``."""
        if http is None:
            async with self.raw(admin=admin) as own:
                return await self.raw_server(server_id, version, http=own)
        answer = await http.get(f"servers/{server_id}", headers=version_headers(version))
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()["server"]
        return body

    async def service_range(self) -> tuple[APIVersion, APIVersion]:
        """(min_version, version) from the service's own version document."""
        root = self.compute_url.split("/v2.1", 1)[0] + "/v2.1/"
        async with httpx.AsyncClient(timeout=60.0) as http:
            document = (await http.get(root)).json()["version"]
        low, high = (document["min_version"], document["version"])
        return _version(low), _version(high)


def _version(text: str) -> APIVersion:
    major, minor = text.split(".")
    return APIVersion(int(major), int(minor))


def version_headers(version: APIVersion | str | None) -> dict[str, str]:
    if version is None:
        return {}
    return {"OpenStack-API-Version": f"compute {version}"}


@dataclass
class Exchange:
    """One request the library sent and the answer it got, as bytes on the wire."""

    method: str
    url: str
    request_headers: httpx.Headers
    request_body: Any
    status: int
    response_headers: httpx.Headers
    response_body: Any


class RecordingTransport(httpx.AsyncBaseTransport):
    """httpx's own transport, keeping a copy of every exchange."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.exchanges: list[Exchange] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        sent = await request.aread()
        response = await self._inner.handle_async_request(request)
        received = await response.aread()
        self.exchanges.append(
            Exchange(
                method=request.method,
                url=str(request.url),
                request_headers=request.headers,
                request_body=json.loads(sent) if sent else None,
                status=response.status_code,
                response_headers=response.headers,
                response_body=json.loads(received) if received else None,
            )
        )
        return response

    async def aclose(self) -> None:
        # Each client closes its transport; a fresh engine lets the next client reuse this one.
        inner, self._inner = self._inner, httpx.AsyncHTTPTransport()
        await inner.aclose()

    def posts(self) -> list[Exchange]:
        return [exchange for exchange in self.exchanges if exchange.method == "POST"]

    def last_read_of(self, server_id: str) -> Any:
        """The server's body in the last GET answer that showed it (a server read or a list)."""
        for exchange in reversed(self.exchanges):
            body = exchange.response_body
            if exchange.method != "GET" or not isinstance(body, dict):
                continue
            if isinstance(body.get("server"), dict) and body["server"].get("id") == server_id:
                return body["server"]
            for item in body.get("servers") or ():
                if isinstance(item, dict) and item.get("id") == server_id:
                    return item
        raise AssertionError(f"no GET answer showed server {server_id}")


@pytest.fixture(scope="session")
def target() -> Iterator[Target]:
    if not os.environ.get("ECS_IT_COMPUTE_URL"):
        pytest.skip(SKIP_REASON)
    described = Target.from_environ(os.environ)
    if described.keypair is not None:
        yield described
        return
    # No key pair named: make one for the run (before 2.92 Nova can generate the key) and
    # delete it afterwards.
    name = f"ecs-it-{uuid.uuid4().hex[:12]}"
    headers = {"OpenStack-API-Version": "compute 2.2"}

    async def create() -> int:
        async with described.raw() as http:
            body = {"keypair": {"name": name, "type": "ssh"}}
            return (await http.post("os-keypairs", json=body, headers=headers)).status_code

    async def delete() -> None:
        async with described.raw() as http:
            await http.delete(f"os-keypairs/{name}", headers=headers)

    status = anyio.run(create)
    if status not in (200, 201):
        pytest.fail(f"creating key pair {name} failed: HTTP {status}")
    described.keypair = name
    try:
        yield described
    finally:
        anyio.run(delete)


@pytest.fixture
def anyio_backend() -> str:
    # The target answers about 40 requests per second and every rebuild takes seconds, so the
    # suite runs once, under asyncio (the library's default aiohttp engine); test_trio.py runs
    # a rebuild under trio (httpx's own engine) to prove that path against the same service.
    return "asyncio"


# -- the strict-model check ----------------------------------------------------------------------

#: Nova's server keys and the Server attribute each one maps to.
WIRE_TO_ATTRIBUTE: dict[str, str] = {
    "id": "id",
    "status": "status",
    "name": "name",
    "OS-EXT-STS:task_state": "task_state",
    "OS-EXT-STS:vm_state": "vm_state",
    "OS-EXT-STS:power_state": "power_state",
    "updated": "updated",
    "created": "created",
    "image": "image",
    "flavor": "flavor",
    "metadata": "metadata",
    "addresses": "addresses",
    "progress": "progress",
    "fault": "fault",
    "tenant_id": "tenant_id",
    "user_id": "user_id",
    "hostId": "host_id",
    "accessIPv4": "access_ipv4",
    "accessIPv6": "access_ipv6",
    "OS-DCF:diskConfig": "disk_config",
    "key_name": "key_name",
    "description": "description",
    "locked": "locked",
    "locked_reason": "locked_reason",
    "tags": "tags",
    "trusted_image_certificates": "trusted_image_certificates",
    "OS-EXT-SRV-ATTR:hostname": "hostname",
    "OS-EXT-AZ:availability_zone": "availability_zone",
    "OS-SRV-USG:launched_at": "launched_at",
    "OS-SRV-USG:terminated_at": "terminated_at",
    "config_drive": "config_drive",
    "links": "links",
    "adminPass": "admin_pass",
    "user_data": "user_data",
    "OS-EXT-SRV-ATTR:user_data": "user_data",
}
#: Each attribute and the wire keys it may come from (user_data has two: the rebuild answer's
#: ``user_data`` and the admin view's ``OS-EXT-SRV-ATTR:user_data``).
_ATTRIBUTE_TO_WIRE: dict[str, tuple[str, ...]] = {}
for _wire, _attribute in WIRE_TO_ATTRIBUTE.items():
    _ATTRIBUTE_TO_WIRE[_attribute] = (*_ATTRIBUTE_TO_WIRE.get(_attribute, ()), _wire)
_EMPTY_MEANS_NONE = {
    "accessIPv4",
    "accessIPv6",
    "hostId",
    "OS-SRV-USG:launched_at",
    "OS-SRV-USG:terminated_at",
}
_FLAVOR_KEYS = {
    "id",
    "links",
    "original_name",
    "vcpus",
    "ram",
    "disk",
    "ephemeral",
    "swap",
    "extra_specs",
}
_ADDRESS_KEYS = {"addr", "version", "OS-EXT-IPS-MAC:mac_addr", "OS-EXT-IPS:type"}
_FAULT_KEYS = {"message", "code", "details", "created"}


def parse_wire_time(raw: Any) -> datetime:
    """Nova writes UTC times, with ``Z``, ``+00:00`` or (``launched_at``) no zone at all."""
    text = str(raw)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def _same_time(parsed: datetime | None, raw: Any) -> bool:
    return parsed is not None and parsed == parse_wire_time(raw)


def _fault_problems(fault: Fault | None, raw: Any) -> list[str]:
    if fault is None:
        return ["fault: missing"]
    problems = [f"fault.{key}: unknown key lost" for key in raw if key not in _FAULT_KEYS]
    if fault.message != raw.get("message"):
        problems.append(f"fault.message: {fault.message!r} != {raw.get('message')!r}")
    if fault.code != raw.get("code"):
        problems.append(f"fault.code: {fault.code!r} != {raw.get('code')!r}")
    if fault.details != raw.get("details"):
        problems.append("fault.details differs")
    if "created" in raw and not _same_time(fault.created, raw["created"]):
        problems.append(f"fault.created: {fault.created!r} != {raw['created']!r}")
    return problems


def _value_problems(server: Server, wire: str, raw: Any) -> list[str]:
    attribute = WIRE_TO_ATTRIBUTE[wire]
    value = getattr(server, attribute)
    if raw == "" and wire in _EMPTY_MEANS_NONE:
        return [] if value is None else [f"{wire}: '' read as {value!r}"]
    if raw is None:
        return [] if value is None else [f"{wire}: null read as {value!r}"]
    problems: list[str] = []
    if wire in ("updated", "created", "OS-SRV-USG:launched_at", "OS-SRV-USG:terminated_at"):
        if not _same_time(value, raw):
            problems.append(f"{wire}: {value!r} != {raw!r}")
    elif wire == "status":
        if str(value) != raw:
            problems.append(f"status: {value!r} != {raw!r}")
    elif wire == "image":
        if raw == "":
            problems.extend([] if value is None else [f"image: '' read as {value!r}"])
        elif value is None or value.id != raw.get("id") or list(value.links) != raw.get("links"):
            problems.append(f"image: {value!r} != {raw!r}")
        else:
            problems.extend(
                f"image.{key}: lost" for key in raw if key not in ("id", "links", "properties")
            )
            got = None if value.properties is None else dict(value.properties)
            if got != raw.get("properties"):
                problems.append(f"image.properties: {got!r} != {raw.get('properties')!r}")
    elif wire == "flavor":
        problems.extend(f"flavor.{key}: lost" for key in raw if key not in _FLAVOR_KEYS)
        for key in _FLAVOR_KEYS & raw.keys():
            part: Any = getattr(value, key)
            if key == "links":
                part = list(part)
            elif key == "extra_specs" and part is not None:
                part = dict(part)
            if part != raw[key]:
                problems.append(f"flavor.{key}: {part!r} != {raw[key]!r}")
    elif wire == "addresses":
        if set(value) != set(raw):
            problems.append(f"addresses: networks {set(value)} != {set(raw)}")
        for network, entries in raw.items():
            parsed = value.get(network, ())
            if len(parsed) != len(entries):
                problems.append(f"addresses[{network}]: {len(parsed)} != {len(entries)} entries")
                continue
            for got, entry in zip(parsed, entries, strict=True):
                problems.extend(
                    f"addresses.{key}: lost" for key in entry if key not in _ADDRESS_KEYS
                )
                wanted = (
                    entry.get("addr"),
                    entry.get("version"),
                    entry.get("OS-EXT-IPS-MAC:mac_addr"),
                    entry.get("OS-EXT-IPS:type"),
                )
                if (got.addr, got.version, got.mac_addr, got.type) != wanted:
                    problems.append(f"addresses[{network}]: {got!r} != {entry!r}")
    elif wire == "fault":
        problems.extend(_fault_problems(value, raw))
    elif wire in ("links",):
        if list(value) != raw:
            problems.append(f"links: {value!r} != {raw!r}")
    elif wire in ("tags", "trusted_image_certificates"):
        if value is None or list(value) != raw:
            problems.append(f"{wire}: {value!r} != {raw!r}")
    elif wire == "metadata":
        if dict(value) != raw:
            problems.append(f"metadata: {value!r} != {raw!r}")
    elif value != raw or type(value) is not type(raw):
        secret = wire in ("adminPass", "user_data", "OS-EXT-SRV-ATTR:user_data")
        shown = "***" if secret else f"{value!r} != {raw!r}"
        problems.append(f"{wire}: {shown}")
    return problems


def model_problems(server: Server, raw: Mapping[str, Any]) -> list[str]:
    """Every way ``server`` differs from the wire object ``raw`` it was read from.

    No field lost: each key maps to an attribute with the same value, or is kept in ``extra``.
    None invented: each attribute with a value, and each ``extra`` key, comes from a key of ``raw``.
    """
    problems: list[str] = []
    for wire, raw_value in raw.items():
        if wire in WIRE_TO_ATTRIBUTE:
            if wire in server.extra:
                problems.append(f"{wire}: both an attribute and in extra")
            problems.extend(_value_problems(server, wire, raw_value))
        elif wire not in server.extra:
            problems.append(f"{wire}: lost (neither an attribute nor in extra)")
        elif server.extra[wire] != raw_value:
            problems.append(f"{wire}: extra holds a different value")
    for key in server.extra:
        if key not in raw:
            problems.append(f"extra[{key!r}]: invented")
    for attribute, wires in _ATTRIBUTE_TO_WIRE.items():
        value = getattr(server, attribute)
        if value not in (None, {}, ()) and not any(wire in raw for wire in wires):
            problems.append(f"{attribute}: invented (none of {wires!r} in the body)")
    return problems


@pytest.fixture
def recorder() -> RecordingTransport:
    """A transport to give the client, to see what it sent and got."""
    return RecordingTransport()


@pytest.fixture(name="model_problems")
def model_problems_fixture() -> Any:
    return model_problems
