"""The journal of a durable run: a small store interface and its SQLite implementation.

Only the bulk runner talks to it. Records are attrs classes stored through the one converter;
no secret is stored (requests keep a keyed fingerprint of ``adminPass`` and ``user_data``).
"""

from .fingerprint import SECRET_FIELDS, fingerprint, new_salt, strip_secrets
from .outcomes import before_record, outcome_from_record, outcome_to_record, server_from_before
from .records import (
    BEGAN,
    CHECKPOINT,
    ENDED,
    FORWARD,
    PHASE,
    RESTARTED,
    ROLLBACK,
    BeforeRecord,
    Event,
    EventKind,
    JournalState,
    OutcomeRecord,
    Owner,
    RequestRecord,
    RolloutRecord,
    RunRecord,
    ServerRecord,
)
from .replay import Progress, Stage, never_started, replay
from .sqlite import SqliteJournal, read_journal
from .store import JournalStore
from .stored import request_from_body

__all__ = [
    "BEGAN",
    "CHECKPOINT",
    "ENDED",
    "FORWARD",
    "PHASE",
    "RESTARTED",
    "ROLLBACK",
    "SECRET_FIELDS",
    "BeforeRecord",
    "Event",
    "EventKind",
    "JournalState",
    "JournalStore",
    "OutcomeRecord",
    "Owner",
    "Progress",
    "RequestRecord",
    "RolloutRecord",
    "RunRecord",
    "ServerRecord",
    "SqliteJournal",
    "Stage",
    "before_record",
    "fingerprint",
    "never_started",
    "new_salt",
    "outcome_from_record",
    "outcome_to_record",
    "read_journal",
    "replay",
    "request_from_body",
    "server_from_before",
    "strip_secrets",
]
