"""In-memory servers and their lazily computed rebuild timelines.

A rebuild stores when it was accepted and its planned phases; what a reader sees is
computed from the fake clock at read time (``observe``). Nothing runs in the background.
"""

from __future__ import annotations

import copy

import attrs

__all__ = [
    "POWER_TASK_STATES",
    "REBUILD_TASK_STATES",
    "FaultInfo",
    "InstanceAction",
    "Observed",
    "Phase",
    "Plan",
    "RebuildTask",
    "ServerRecord",
    "ServerTruth",
    "observe",
    "plan_power",
    "plan_rebuild",
    "status_of",
    "truth_of",
]

REBUILD_TASK_STATES = frozenset({"rebuilding", "rebuild_block_device_mapping", "rebuild_spawning"})
POWER_TASK_STATES = frozenset({"powering-off", "powering-on"})

# vm_state -> status when no rebuild task runs (nova/api/openstack/common.py _STATE_MAP).
_STATUS = {
    "active": "ACTIVE",
    "stopped": "SHUTOFF",
    "error": "ERROR",
    "paused": "PAUSED",
    "deleted": "DELETED",
}
# vm_state -> OS-EXT-STS:power_state (nova/compute/power_state.py).
POWER_STATE = {"active": 1, "stopped": 4, "error": 4, "paused": 3, "deleted": 0}
#: The public status names accepted by ``add_server``, mapped to vm_state.
VM_STATE_OF_STATUS = {
    "ACTIVE": "active",
    "SHUTOFF": "stopped",
    "ERROR": "error",
    "PAUSED": "paused",
}

# Share of the rebuild spent in ``rebuilding`` before ``rebuild_spawning``; and how long a
# stopped server sits in ACTIVE/powering-off afterwards, as a share of the rebuild time.
_SPAWN_AT = 0.5
_POWER_OFF_SHARE = 0.25
# Short steps, as a share of the rebuild time: a stopped server's ACTIVE with no task before
# powering-off (nova/compute/manager.py _update_instance_after_spawn saves vm_state active
# and task_state None, then the manager saves powering-off), and a failed rebuild's REBUILD
# with vm_state error while task_state is still set (_error_out_instance_on_exception sets
# the vm_state; reverts_task_state clears the task afterwards).
_STEP_SHARE = 0.05
#: The fault message of a spawn that raised a non-Nova exception: Nova shows only the class
#: name to users (nova/compute/utils.py exception_to_dict).
IMAGE_FAULT = "RuntimeError"
SERVER_FAULT = "RuntimeError: spawn failed"


def status_of(vm_state: str, task_state: str | None) -> str:
    if task_state in REBUILD_TASK_STATES:
        return "REBUILD"
    return _STATUS.get(vm_state, vm_state.upper())


@attrs.frozen
class Phase:
    """From ``offset`` fake seconds after acceptance on, the server shows these states."""

    offset: float
    vm_state: str
    task_state: str | None


@attrs.frozen
class FaultInfo:
    code: int
    message: str
    details: str
    created: float


@attrs.define(eq=False)
class InstanceAction:
    request_id: str
    start_time: float
    user_id: str
    project_id: str
    finish_time: float | None = None
    failed: bool = False
    #: ``rebuild``, ``stop`` or ``start`` (nova/compute/instance_actions.py).
    name: str = "rebuild"


@attrs.define(eq=False)
class RebuildTask:
    """A task in flight: a rebuild, or a stop or start (``os-stop`` / ``os-start``)."""

    accepted_at: float
    phases: tuple[Phase, ...]
    fault_message: str | None
    action: InstanceAction
    #: Fake seconds after acceptance at which the guest spawned (``launched_at``); None when
    #: the task does not spawn one (a failed rebuild, a stop or a start).
    launched_offset: float | None = None

    @property
    def ends_at(self) -> float:
        return self.accepted_at + self.phases[-1].offset


@attrs.define(eq=False)
class ServerRecord:
    """One server. Mutable: a rebuild rewrites its fields at the moment it is accepted."""

    id: str
    name: str
    index: int
    created_at: float
    updated_at: float
    vm_state: str
    image_id: str
    metadata: dict[str, str]
    key_name: str | None
    locked: bool
    fail: bool
    rebuild_seconds: float | None
    #: A rebuild to this image fails (ERROR); rebuilds to any other image succeed.
    fail_image: str | None = None
    #: What a health probe answers: healthy, unhealthy, or healthy this many fake seconds
    #: after the last rebuild spawned the guest.
    health: bool | float = True
    tags: list[str] = attrs.Factory(list)
    #: The image of each accepted rebuild, in order (the fake's record of what ran).
    rebuilt_images: list[str] = attrs.Factory(list)
    user_data: str | None = None
    description: str | None = None
    hostname: str = ""
    access_ipv4: str = ""
    access_ipv6: str = ""
    disk_config: str = "AUTO"
    trusted_certs: list[str] | None = None
    launched_at: float = 0.0
    fault: FaultInfo | None = None
    task: RebuildTask | None = None
    deleted_at: float | None = None
    rebuilds: int = 0
    actions: list[InstanceAction] = attrs.Factory(list)
    # What readers saw just before the last accepted rebuild (served during ``read_lag``).
    previous: ServerRecord | None = None
    lag_until: float = 0.0

    def snapshot(self) -> ServerRecord:
        twin = copy.copy(self)
        twin.metadata = dict(self.metadata)
        twin.previous = None
        return twin


@attrs.frozen
class Observed:
    """The server as a reader sees it at one instant."""

    record: ServerRecord
    vm_state: str
    task_state: str | None
    updated_at: float
    fault: FaultInfo | None
    #: ``launched_at`` when it differs from the record's (a rebuild's spawn already saved it).
    launched_at: float | None = None

    @property
    def status(self) -> str:
        return status_of(self.vm_state, self.task_state)


@attrs.frozen
class Plan:
    """The phases of one task, its fault message if it fails, and when the guest spawned."""

    phases: tuple[Phase, ...]
    fault_message: str | None = None
    launched_offset: float | None = None


def plan_rebuild(
    *,
    was: str,
    duration: float,
    fail: bool,
    spawn_seconds: float | None = None,
    fault_message: str = SERVER_FAULT,
) -> Plan:
    """The phases of one rebuild.

    ``spawn_seconds`` overrides how long ``rebuild_spawning`` lasts (a slow image); the other
    steps keep their share of ``duration``.
    """
    spawn = duration * _SPAWN_AT
    spawned = duration if spawn_seconds is None else spawn + max(spawn_seconds, 0.0)
    step = min(duration * _STEP_SHARE, (spawned - spawn) / 2)
    # While the task runs the vm_state stays what it was (active, stopped or error).
    phases = [Phase(0.0, was, "rebuilding"), Phase(spawn, was, "rebuild_spawning")]
    if fail:
        # The vm_state turns to error a moment before the task clears (status still REBUILD).
        phases.append(Phase(spawned - step, "error", "rebuild_spawning"))
        phases.append(Phase(spawned, "error", None))
        return Plan(tuple(phases), fault_message)
    phases.append(Phase(spawned, "active", None))
    if was == "stopped":
        power_off = duration * _POWER_OFF_SHARE
        phases.append(Phase(spawned + min(step, power_off / 2), "active", "powering-off"))
        phases.append(Phase(spawned + power_off, "stopped", None))
    return Plan(tuple(phases), None, spawned)


def plan_power(*, was: str, start: bool, duration: float) -> Plan:
    """``os-stop`` (``powering-off``, then stopped) or ``os-start`` (``powering-on``, then
    active); ``duration`` is the rebuild time, of which powering takes a share."""
    seconds = max(duration, 0.0) * _POWER_OFF_SHARE
    if start:
        phases = (Phase(0.0, was, "powering-on"), Phase(seconds, "active", None))
    else:
        phases = (Phase(0.0, was, "powering-off"), Phase(seconds, "stopped", None))
    return Plan(phases)


def _settle(record: ServerRecord, task: RebuildTask) -> None:
    """Fold a finished rebuild into the record, so later reads skip the timeline."""
    last = task.phases[-1]
    end = task.ends_at
    record.vm_state = last.vm_state
    record.updated_at = end
    record.task = None
    task.action.finish_time = end
    if task.fault_message is not None:
        task.action.failed = True
        record.fault = FaultInfo(
            code=500,
            message=task.fault_message,
            details="Traceback (most recent call last):\n  ...\nRuntimeError: spawn failed",
            created=end,
        )
    elif task.launched_offset is not None:
        record.fault = None
        record.launched_at = task.accepted_at + task.launched_offset


def _current(record: ServerRecord, now: float) -> Observed:
    task = record.task
    if task is not None:
        if now >= task.ends_at:
            _settle(record, task)
        else:
            elapsed = now - task.accepted_at
            shown = task.phases[0]
            for phase in task.phases:
                if phase.offset <= elapsed:
                    shown = phase
                else:
                    break
            launched = None
            if task.launched_offset is not None and elapsed >= task.launched_offset:
                launched = task.accepted_at + task.launched_offset
            return Observed(
                record,
                shown.vm_state,
                shown.task_state,
                task.accepted_at + shown.offset,
                None,
                launched,
            )
    fault = record.fault if record.vm_state == "error" else None
    return Observed(record, record.vm_state, None, record.updated_at, fault)


def observe(record: ServerRecord, now: float, *, lagged: bool = True) -> Observed:
    """What a GET shows at ``now``: during ``read_lag`` the pre-rebuild view (unless
    ``lagged`` is False, for the service's own checks), else the computed state."""
    if record.deleted_at is not None:
        return Observed(record, "deleted", None, record.deleted_at, record.fault)
    if lagged and record.previous is not None and now < record.lag_until:
        return _current(record.previous, now)
    return _current(record, now)


@attrs.frozen
class ServerTruth:
    """A server's true current state, ignoring read lag (for test assertions)."""

    id: str
    status: str
    vm_state: str
    task_state: str | None
    image_id: str
    name: str
    metadata: dict[str, str]
    key_name: str | None
    fault: str | None
    rebuilds: int
    updated_at: float
    locked: bool
    deleted: bool


def truth_of(record: ServerRecord, now: float) -> ServerTruth:
    seen = observe(record, now, lagged=False)
    return ServerTruth(
        id=record.id,
        status=seen.status,
        vm_state=seen.vm_state,
        task_state=seen.task_state,
        image_id=record.image_id,
        name=record.name,
        metadata=dict(record.metadata),
        key_name=record.key_name,
        fault=seen.fault.message if seen.fault else None,
        rebuilds=record.rebuilds,
        updated_at=seen.updated_at,
        locked=record.locked,
        deleted=record.deleted_at is not None,
    )
