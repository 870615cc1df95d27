"""A stateful fake of the ECS / OpenStack Nova compute service, for tests, demos and benchmarks.

```python
from ecs_rebuild_async.testing import FakeCompute

fake = FakeCompute(time_scale=0)              # frozen clock: step it with fake.advance()
server_id = fake.add_server(name="web-1")
async with httpx.AsyncClient(transport=fake.transport(), base_url=fake.compute_url) as http:
    ...
async with fake.serve_tcp() as base_url:      # or over loopback TCP
    ...
```
"""

from __future__ import annotations

from ._fake import IN_PROCESS_BASE, FakeCompute
from ._faults import FAULT_KINDS, FaultPlan, InjectedFault
from ._replies import RecordedRequest, Reply
from ._service import DEFAULT_IMAGES
from ._state import ServerTruth
from ._stats import Stats
from ._transport import FakeTransport

__all__ = [
    "DEFAULT_IMAGES",
    "FAULT_KINDS",
    "IN_PROCESS_BASE",
    "FakeCompute",
    "FakeTransport",
    "FaultPlan",
    "InjectedFault",
    "RecordedRequest",
    "Reply",
    "ServerTruth",
    "Stats",
]
