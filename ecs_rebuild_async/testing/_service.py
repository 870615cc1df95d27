"""The fake's settings and in-memory world: servers, images, key pairs, tokens, counters."""

from __future__ import annotations

import random
import string
import uuid
from collections import deque
from typing import Literal

import attrs

from ._clock import FakeClock
from ._faults import FaultPlan
from ._identity import Identity, TokenStore
from ._quirks import Quirks
from ._replies import Request
from ._state import (
    IMAGE_FAULT,
    VM_STATE_OF_STATUS,
    FaultInfo,
    InstanceAction,
    RebuildTask,
    ServerRecord,
    observe,
    plan_power,
    plan_rebuild,
)
from ._stats import Stats
from ._versioning import Version

__all__ = ["DEFAULT_IMAGES", "FAILING_IMAGE", "SLOW_IMAGE", "Settings", "Service"]

#: A rebuild to the image of this name fails to spawn: REBUILD, then ERROR with a fault.
FAILING_IMAGE = "fails-to-spawn"
#: A rebuild to the image of this name spawns for ``slow_spawn_seconds`` (REBUILD meanwhile).
SLOW_IMAGE = "slow-to-spawn"

#: Fixed image ids, so tests and demos can name them.
DEFAULT_IMAGES = {
    "ubuntu-22.04": "70a5e0a4-0000-4000-8000-00000000000a",
    "ubuntu-24.04": "70a5e0a4-0000-4000-8000-00000000000b",
    "centos-9": "70a5e0a4-0000-4000-8000-00000000000c",
    SLOW_IMAGE: "70a5e0a4-0000-4000-8000-0000000000ee",
    FAILING_IMAGE: "70a5e0a4-0000-4000-8000-0000000000ff",
}


@attrs.frozen
class Settings:
    dialect: Literal["ecs", "nova"]
    min_version: Version
    max_version: Version
    rebuild_seconds: float
    jitter: float
    fail_rate: float
    read_lag: float
    accepted_body: Literal["rebuild", "stale"]
    token_lifetime: float
    deleted_retention: float
    max_limit: int
    max_body: int
    metadata_items: int
    lost_error: Literal["timeout", "disconnect"]
    slow_spawn_seconds: float = 600.0


class Service:
    """Everything the handler reads and writes. Single-threaded: no locks needed."""

    def __init__(
        self, settings: Settings, identity: Identity, clock: FakeClock, seed: int | None
    ) -> None:
        self.settings = settings
        self.identity = identity
        self.clock = clock
        self.rng = random.Random(seed)
        self.servers: dict[str, ServerRecord] = {}
        # Newest first is Nova's default order (created_at desc); appending keeps it O(1).
        self.order: list[ServerRecord] = []
        self.position: dict[str, int] = {}
        self.images: dict[str, str] = {v: k for k, v in DEFAULT_IMAGES.items()}
        self.keypairs: set[str] = set()
        # The latest requests, for tests that compare what two runs sent.
        self.log: deque[Request] = deque(maxlen=10_000)
        self.tokens = TokenStore()
        self.faults = FaultPlan(self.rng)
        self.quirks = Quirks()
        self.stats = Stats()
        #: When each accepted rebuild ran: (accepted, ended) in fake seconds.
        self.rebuild_spans: list[tuple[float, float]] = []

    def new_uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def new_request_id(self) -> str:
        return f"req-{self.new_uuid()}"

    def new_password(self) -> str:
        alphabet = string.ascii_letters + string.digits
        return "".join(self.rng.choice(alphabet) for _ in range(12))

    def add_server(
        self,
        *,
        name: str,
        status: str,
        image_id: str,
        metadata: dict[str, str],
        key_name: str | None,
        locked: bool,
        server_id: str | None,
        fail: bool,
        rebuild_seconds: float | None,
        fail_image: str | None = None,
        tags: list[str] | None = None,
    ) -> str:
        if status not in VM_STATE_OF_STATUS:
            raise ValueError(f"status must be one of {sorted(VM_STATE_OF_STATUS)}")
        sid = server_id or self.new_uuid()
        if sid in self.servers:
            raise ValueError(f"server {sid} exists")
        now = self.clock.now()
        record = ServerRecord(
            id=sid,
            name=name,
            index=len(self.order),
            created_at=now,
            updated_at=now,
            vm_state=VM_STATE_OF_STATUS[status],
            image_id=image_id,
            metadata=dict(metadata),
            key_name=key_name,
            locked=locked,
            fail=fail,
            rebuild_seconds=rebuild_seconds,
            fail_image=fail_image,
            tags=list(tags or ()),
            hostname=name.lower().replace(" ", "-")[:63] or "server",
            launched_at=now,
        )
        if status == "ERROR":
            record.fault = FaultInfo(500, "Unknown error", "set up in ERROR", now)
        self.servers[sid] = record
        self.position[sid] = len(self.order)
        self.order.append(record)
        return sid

    def delete_server(self, server_id: str) -> None:
        record = self.servers[server_id]
        if record.deleted_at is None:
            now = self.clock.now()
            observe(record, now)  # settle a finished rebuild before freezing the record
            record.task = None
            record.deleted_at = now

    def visible(self, server_id: str, now: float) -> ServerRecord | None:
        """The server unless it is deleted (a deleted server is a 404 to GET and actions)."""
        record = self.servers.get(server_id)
        if record is None or record.deleted_at is not None:
            return None
        return record

    def _duration(self, record: ServerRecord) -> float:
        duration = record.rebuild_seconds
        if duration is None:
            duration = self.settings.rebuild_seconds
        if self.settings.jitter:
            jitter = self.settings.jitter
            duration *= 1 + self.rng.uniform(-jitter, jitter)
        return max(duration, 0.0)

    def accept_rebuild(
        self, record: ServerRecord, fields: dict[str, object], now: float, request_id: str
    ) -> None:
        """Record an accepted rebuild: new fields now, the timeline computed lazily later."""
        settings = self.settings
        record.previous = record.snapshot() if settings.read_lag > 0 else None
        record.lag_until = now + settings.read_lag
        image_name = self.images.get(str(fields["imageRef"]))
        fail = record.fail or (settings.fail_rate > 0 and self.rng.random() < settings.fail_rate)
        fail = fail or (record.fail_image is not None and fields["imageRef"] == record.fail_image)
        duration = self._duration(record)
        if image_name == FAILING_IMAGE:
            plan = plan_rebuild(
                was=record.vm_state, duration=duration, fail=True, fault_message=IMAGE_FAULT
            )
        else:
            slow = settings.slow_spawn_seconds if image_name == SLOW_IMAGE else None
            plan = plan_rebuild(
                was=record.vm_state, duration=duration, fail=fail, spawn_seconds=slow
            )
        action = InstanceAction(request_id, now, self.identity.user_id, self.identity.project_id)
        record.actions.append(action)
        record.task = RebuildTask(
            now, plan.phases, plan.fault_message, action, plan.launched_offset
        )
        self.rebuild_spans.append((now, record.task.ends_at))
        record.updated_at = now
        record.rebuilds += 1
        record.image_id = str(fields["imageRef"])
        record.rebuilt_images.append(record.image_id)
        _apply(record, fields)

    def accept_power(
        self, record: ServerRecord, *, start: bool, now: float, request_id: str
    ) -> None:
        """Record an accepted ``os-start`` (``start``) or ``os-stop``."""
        settings = self.settings
        record.previous = record.snapshot() if settings.read_lag > 0 else None
        record.lag_until = now + settings.read_lag
        plan = plan_power(was=record.vm_state, start=start, duration=self._duration(record))
        action = InstanceAction(
            request_id,
            now,
            self.identity.user_id,
            self.identity.project_id,
            name="start" if start else "stop",
        )
        record.actions.append(action)
        record.task = RebuildTask(now, plan.phases, None, action)
        record.updated_at = now


_FIELD_ATTRS = {
    "name": "name",
    "key_name": "key_name",
    "user_data": "user_data",
    "description": "description",
    "accessIPv4": "access_ipv4",
    "accessIPv6": "access_ipv6",
    "OS-DCF:diskConfig": "disk_config",
    "hostname": "hostname",
    "trusted_image_certificates": "trusted_certs",
}


def _apply(record: ServerRecord, fields: dict[str, object]) -> None:
    for wire, attr in _FIELD_ATTRS.items():
        if wire in fields:
            setattr(record, attr, fields[wire])
    if "metadata" in fields:
        # Replaced, not merged (nova/compute/api.py rebuild).
        metadata = fields["metadata"]
        # The request's schema was checked: metadata is an object of strings.
        record.metadata = dict(metadata) if isinstance(metadata, dict) else {}


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most spans overlapping at one instant (a span ending as another starts: no overlap)."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = running = 0
    for _, step in events:  # at equal times the end (-1) sorts before the start (+1)
        running += step
        most = max(most, running)
    return most


def healthy(record: ServerRecord, now: float) -> bool:
    """What a health probe of the server answers at ``now``."""
    seen = observe(record, now, lagged=False)
    if seen.status != "ACTIVE" or seen.task_state is not None:
        return False
    if isinstance(record.health, bool):
        return record.health
    return now >= record.launched_at + record.health
