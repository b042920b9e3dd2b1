"""The command line ``orch``: the only package that prints or configures logging.

``commands`` holds the click group and one function per command, ``operate`` the
operator's commands on queues and tasks, ``services`` the commands that run workers and
schedulers and check on them, ``serve`` the HTTP API (all registered on import below),
``options`` how each option is parsed and bound to its setting, ``views`` how queue state
becomes text.
See ARCHITECTURE.md for the layers.
"""

from . import (
    operate,  # noqa: F401  # registers status, tasks, inspect, events, retry, cancel, purge
    queues,  # noqa: F401  # registers the queues group (declare, shards)
    schedules,  # noqa: F401  # registers the schedules group
    serve,  # noqa: F401  # registers serve
    services,  # noqa: F401  # registers worker, scheduler, reaper, doctor on `orch`
)
from .commands import main, orch

__all__ = ["main", "orch"]
