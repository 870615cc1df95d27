"""Secret canaries: whole flows at DEBUG, and no secret in any log, repr or error text.

Every secret the flows handle is a recognizable canary: the Keystone password, the AK/SK secret
key, a fixed token, ``adminPass``, ``user_data`` (raw and base64), and every token the fake's
Keystone issues (``X-Subject-Token``, which httpcore logs with the response headers).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable

import pytest

from ecs_rebuild_async import (
    AkSkAuth,
    AsyncEcsClient,
    Auth,
    BulkReport,
    ClientSettings,
    EcsError,
    InvalidRequest,
    KeystoneAuth,
    RebuildRequest,
    TokenAuth,
    Unauthorized,
)
from ecs_rebuild_async.testing import DEFAULT_IMAGES, FakeCompute

NEW_IMAGE = DEFAULT_IMAGES["ubuntu-24.04"]
ADMIN_PASS = "AdminPassCanary-7f3a9c"
USER_DATA = "#cloud-config\nUserDataCanary: 5d21e8b4\n"
SK = "SecretKeyCanary-b81c04e9d2f7a6"
FAST = ClientSettings(
    poll_first_delay=0.02, poll_interval=0.05, poll_interval_max=0.1, backoff_initial=0.001
)


def user_data_forms() -> list[str]:
    encoded = base64.b64encode(USER_DATA.encode()).decode()
    return ["UserDataCanary", encoded, encoded[:24]]


def secrets_of(fake: FakeCompute, *extra: str) -> list[str]:
    found = [
        ADMIN_PASS,
        SK,
        fake.password,
        fake.token,
        *fake.issued_tokens,
        *user_data_forms(),
        *extra,
    ]
    return [secret for secret in found if secret]


def assert_clean(texts: Iterable[str], secrets: list[str]) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"a secret leaked into: {text[:200]!r}"


def keystone(fake: FakeCompute, password: str | None = None) -> KeystoneAuth:
    return KeystoneAuth(
        fake.identity_url,
        username=fake.username,
        password=password or fake.password,
        user_domain_name=fake.user_domain_name,
        project_name=fake.project_name,
        project_domain_name=fake.user_domain_name,
        refresh_margin=0,
    )


def request() -> RebuildRequest:
    return RebuildRequest(
        image_ref=NEW_IMAGE, name="canary", admin_pass=ADMIN_PASS, user_data=USER_DATA
    )


async def whole_flow(
    fake: FakeCompute, auth: Auth, *, transport: bool = True, expire: bool = False
) -> list[object]:
    """Rebuild and wait, a bulk run with a failure, reads and errors; every object it met.

    ``expire``: every token expires before each step (when no request is in flight), so the
    next request is refused and the client re-authenticates: tokens renewed at known points,
    not after a lifetime that a busy machine could spend between two requests."""

    def step() -> None:
        if expire:
            fake.expire_tokens()

    ok_id = fake.add_server(name="ok")
    bad_id = fake.add_server(name="bad", fail=True)
    fleet = fake.add_servers(3, prefix="fleet")
    fake.advance(30)
    seen: list[object] = [auth, request()]
    report = BulkReport()
    async with AsyncEcsClient(
        fake.compute_url,
        auth=auth,
        transport=fake.transport() if transport else None,
        settings=FAST,
    ) as ecs:
        seen.append(ecs)
        # prepare() returns the wire body itself, secrets included, by design (a dry run's
        # payload; the command line masks it): it is data the caller asked for, not a repr.
        step()
        prepared = await ecs.prepare(ok_id, request())
        assert prepared["body"]["rebuild"]["adminPass"] == ADMIN_PASS
        step()
        accepted = await ecs.rebuild(ok_id, request())
        assert accepted.admin_pass == ADMIN_PASS  # the 202 answer carried it: a real canary
        seen.append(accepted)
        step()
        seen.append(await ecs.wait_for_rebuild(ok_id, timeout=30))
        step()
        outcomes = await ecs.rebuild_many(
            [bad_id, *fleet], request(), timeout=30, report=report, on_event=seen.append
        )
        seen.extend(outcomes)
        seen.extend(o.error for o in outcomes if o.error is not None)
        seen.extend(o.server for o in outcomes if o.server is not None)
        assert [o.ok for o in outcomes] == [False, True, True, True]
        seen.append(report)
        step()
        try:
            await ecs.rebuild(bad_id, request())  # ERROR servers cannot be rebuilt on ECS
        except EcsError as error:
            seen.append(error)
        step()
        seen.append(await ecs.get_server(ok_id))
    assert len([s for s in seen if isinstance(s, EcsError)]) >= 2
    return seen


def texts_of(objects: Iterable[object]) -> list[str]:
    result: list[str] = []
    for item in objects:
        result.append(repr(item))
        result.append(str(item))
        if isinstance(item, BaseException):
            result.extend(str(arg) for arg in item.args)
    return result


def debug_everywhere(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: httpx, httpcore, aiohttp records too
    for name in ("httpx", "httpcore", "httpx_aiohttp", "aiohttp", "ecs_rebuild_async"):
        caplog.set_level(logging.DEBUG, logger=name)


@pytest.mark.anyio
async def test_keystone_flow_keeps_password_and_issued_tokens_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    debug_everywhere(caplog)
    fake = FakeCompute(time_scale=50, rebuild_seconds=4)
    seen = await whole_flow(fake, keystone(fake), expire=True)
    # Besides the pre-issued token, Keystone issued one, and renewed it after the steps that
    # expired it: every one of those tokens is checked for below.
    assert len(fake.issued_tokens) >= 6
    assert fake.stats.responses[401] >= 4
    assert caplog.records  # DEBUG logging really ran
    secrets = secrets_of(fake)
    assert_clean([caplog.text, *(r.getMessage() for r in caplog.records)], secrets)
    assert_clean(texts_of(seen), secrets)


@pytest.mark.anyio
async def test_aksk_flow_keeps_the_secret_key_secret(caplog: pytest.LogCaptureFixture) -> None:
    debug_everywhere(caplog)
    fake = FakeCompute(time_scale=50, rebuild_seconds=4, sk=SK)
    auth = AkSkAuth(fake.ak, SK, project_id=fake.project_id)
    seen = await whole_flow(fake, auth)
    secrets = secrets_of(fake)
    assert_clean([caplog.text], secrets)
    assert_clean(texts_of(seen), secrets)


@pytest.mark.anyio
async def test_token_flow_keeps_the_token_secret(caplog: pytest.LogCaptureFixture) -> None:
    debug_everywhere(caplog)
    fake = FakeCompute(time_scale=50, rebuild_seconds=4)
    token = fake.issue_token()
    seen = await whole_flow(fake, TokenAuth(token))
    secrets = secrets_of(fake, token)
    assert_clean([caplog.text], secrets)
    assert_clean(texts_of(seen), secrets)


@pytest.mark.anyio
async def test_default_transport_over_tcp_logs_no_secret(
    caplog: pytest.LogCaptureFixture, anyio_backend: str
) -> None:
    """The real HTTP stack logs at DEBUG: httpx and httpcore under trio; under asyncio, where
    aiohttp is driven directly and logs nothing of a request, the library's own request lines
    (and httpx's, for the Keystone catalog read through httpx's client)."""
    debug_everywhere(caplog)
    fake = FakeCompute(time_scale=50, rebuild_seconds=4)
    async with fake.serve_tcp():
        seen = await whole_flow(fake, keystone(fake), transport=False, expire=True)
    assert len(fake.issued_tokens) >= 6
    if anyio_backend == "trio":
        http_records = [r for r in caplog.records if r.name.startswith(("httpcore", "httpx"))]
    else:
        http_records = [
            r for r in caplog.records if r.name == "ecs_rebuild_async" and " -> " in r.getMessage()
        ]
    assert http_records  # what logs requests on this path really logged
    secrets = secrets_of(fake)
    assert_clean([caplog.text, *(r.getMessage() for r in caplog.records)], secrets)
    assert_clean(texts_of(seen), secrets)


@pytest.mark.anyio
async def test_failed_authentication_errors_name_no_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    debug_everywhere(caplog)
    fake = FakeCompute(time_scale=50, sk=SK)
    sid = fake.add_server()
    wrong_password = "WrongPasswordCanary-42"
    wrong_sk = "WrongSecretKeyCanary-42"
    errors: list[EcsError] = []
    for auth in (
        keystone(fake, wrong_password),
        AkSkAuth(fake.ak, wrong_sk, project_id=fake.project_id),
    ):
        async with AsyncEcsClient(
            fake.compute_url, auth=auth, transport=fake.transport(), settings=FAST
        ) as ecs:
            with pytest.raises(Unauthorized) as caught:
                await ecs.rebuild(sid, request())
            errors.append(caught.value)
    secrets = [*secrets_of(fake), wrong_password, wrong_sk]
    assert_clean([caplog.text], secrets)
    assert_clean(texts_of(errors), secrets)
    assert fake.rebuilds_accepted(sid) == 0


def test_refused_input_errors_name_no_secret() -> None:
    huge = "UserDataCanary" * 5000
    refusals: list[InvalidRequest] = []
    for make in (
        lambda: RebuildRequest(image_ref=NEW_IMAGE, user_data=huge).check(),
        lambda: RebuildRequest(image_ref=NEW_IMAGE, admin_pass=ADMIN_PASS, name="").check(),
        lambda: RebuildRequest(image_ref=NEW_IMAGE, user_data=ADMIN_PASS, user_data_base64=True),
    ):
        with pytest.raises(InvalidRequest) as caught:
            make()
        refusals.append(caught.value)
    assert_clean(texts_of(refusals), [ADMIN_PASS, "UserDataCanary"])
