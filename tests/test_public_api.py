"""The public names are a contract: exactly these, sorted, and every one importable."""

from __future__ import annotations

import importlib

import ecs_rebuild_async

EXPECTED = [
    "APIVersion",
    "AkSkAuth",
    "AsyncEcsClient",
    "Auth",
    "BadRequest",
    "BulkReport",
    "ClientClosed",
    "ClientSettings",
    "Conflict",
    "Dialect",
    "ECS",
    "EcsError",
    "Fault",
    "Forbidden",
    "InvalidRequest",
    "JournalError",
    "JournalInUse",
    "JournalMismatch",
    "KeystoneAuth",
    "MicroversionError",
    "NOVA",
    "NotFound",
    "OutcomeKind",
    "PersonalityFile",
    "RateLimited",
    "RebuildEvent",
    "RebuildFailed",
    "RebuildOutcome",
    "RebuildOutcomeUnknown",
    "RebuildRequest",
    "RebuildTimeout",
    "ResponseError",
    "RolloutPhase",
    "RolloutPlan",
    "RolloutPolicy",
    "RolloutProgress",
    "RolloutState",
    "Server",
    "ServerError",
    "ServerStatus",
    "ServiceError",
    "TokenAuth",
    "TransportError",
    "UNSET",
    "Unauthorized",
    "VersionRange",
    "__version__",
]


def test_all_is_sorted() -> None:
    assert list(ecs_rebuild_async.__all__) == sorted(ecs_rebuild_async.__all__)


def test_all_is_exactly_the_public_names() -> None:
    assert list(ecs_rebuild_async.__all__) == EXPECTED


def test_every_public_name_is_importable() -> None:
    module = importlib.import_module("ecs_rebuild_async")
    for name in EXPECTED:
        assert getattr(module, name) is not None, name
    namespace: dict[str, object] = {}
    exec("from ecs_rebuild_async import *", namespace)
    assert set(EXPECTED) <= set(namespace)


def test_errors_share_one_root() -> None:
    for name in EXPECTED:
        value = getattr(ecs_rebuild_async, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert issubclass(value, ecs_rebuild_async.EcsError), name


def test_version_is_a_string() -> None:
    assert isinstance(ecs_rebuild_async.__version__, str)
    assert ecs_rebuild_async.__version__
